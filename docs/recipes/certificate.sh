# recipe:certificate - a certificate object beside its key (same CKA_ID)
openssl req -new -x509 -days 30 -subj /CN=recipe-rsa -key imported.p8.pem -outform DER -out cert.der
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --write-object cert.der --type cert --label imported-ec --id 20
pkcs11-tool --module "$SO" --token-label "$TOKEN" --list-objects --type cert
