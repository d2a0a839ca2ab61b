# recipe:wrap-unwrap-pkcs11-tool - wrap an AES key under another (AES key wrap) and unwrap a copy, with pkcs11-tool
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --keygen --key-type AES:32 --label recipe-wrapkey --id 30 --usage-wrap
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --keygen --key-type AES:16 --label recipe-datakey --id 31 --sensitive --extractable
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --wrap --mechanism AES-KEY-WRAP --id 30 --application-id 31 --output-file datakey.wrapped
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --unwrap --mechanism AES-KEY-WRAP --id 30 --input-file datakey.wrapped \
    --key-type AES:16 --application-id 32 --application-label recipe-datakey-copy --sensitive
echo "wrapped and back" > plain.txt
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --encrypt --mechanism AES-CBC-PAD --id 31 --iv 000102030405060708090a0b0c0d0e0f -i plain.txt -o plain.enc
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --decrypt --mechanism AES-CBC-PAD --id 32 --iv 000102030405060708090a0b0c0d0e0f -i plain.enc -o plain.dec
cmp plain.txt plain.dec && echo "the unwrapped copy decrypts what the original encrypted"
