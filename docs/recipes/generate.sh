# recipe:generate - an RSA-2048 key pair in the token
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --keypairgen --key-type rsa:2048 --label recipe-rsa --id 10
