# recipe:export-pubkey - the public key as PEM
pkcs11-tool --module "$SO" --token-label "$TOKEN" --read-object --type pubkey --label recipe-rsa -o recipe-rsa.der
openssl pkey -pubin -inform DER -in recipe-rsa.der -out recipe-rsa.pem
