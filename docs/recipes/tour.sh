# A Security World with an ACS of 2 of 3 cards, a module-protected RSA key in it, a signature from a
# C host (pkcs11-tool) and one from Python, and the key packaged for a cloud vault as a .byok.
export NFAST_KMDATA=$PWD/tour-kmdata
printf 'acs-1.card 1111\nacs-2.card 2222\nacs-3.card 3333\n' > acs-pins.txt   # <card file> <PIN>
softshield new-world --initialize --acs-quorum=2/3 --pin-file acs-pins.txt
softshield generatekey --batch simple type=RSA size=2048 protect=module ident=tourkey plainname=tourkey
softshield nfkminfo -k simple tourkey

# a C host: pkcs11-tool signs in the module slot, OpenSSL checks the signature
echo 'signed in the module' > msg.txt
pkcs11-tool --module "$SO" --slot-index 0 --sign -m SHA256-RSA-PKCS --label tourkey -i msg.txt -o msg.sig
pkcs11-tool --module "$SO" --slot-index 0 --read-object --type pubkey --label tourkey -o tourkey.der
openssl dgst -sha256 -verify tourkey.der -keyform DER -signature msg.sig msg.txt

# Python (python-pkcs11), through the same library
python - "$SO" <<'PY'
import sys, pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass
lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_label="loadshared accelerator").open() as session:
    key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label="tourkey")
    signature = key.sign(b"signed from Python", mechanism=Mechanism.SHA256_RSA_PKCS)
    print(f"{lib.library_description}: {len(signature)}-byte signature")
PY

# a cloud vault's Key Exchange Key as `az keyvault key download --encoding PEM` writes it (made here
# with openssl), and the key packaged for it under the ACS quorum
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out vault-kek.key
openssl pkey -in vault-kek.key -pubout -out kek.pem
printf 'acs-1.card 1111\nacs-3.card 3333\n' > quorum.txt   # any 2 of the 3 cards
softshield byok package --kek kek.pem --kek-kid https://myvault.vault.azure.net/keys/KEK/1 \
    --key simple:tourkey --out tourkey.byok --pin-file quorum.txt
