# recipe:import-pkcs8 - import a PKCS#8 private key made outside the module
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out imported.p8.pem
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --write-object imported.p8.pem --type privkey --label imported-ec --id 20
