# recipe:list - the token's objects (log in to see private ones)
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" --list-objects
