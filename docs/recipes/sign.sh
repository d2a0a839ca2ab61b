# recipe:sign - sign in the token, verify with plain OpenSSL
echo "hello from softshield" > data.txt
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --sign --mechanism SHA256-RSA-PKCS --label recipe-rsa -i data.txt -o data.sig
openssl dgst -sha256 -verify recipe-rsa.pem -signature data.sig data.txt
