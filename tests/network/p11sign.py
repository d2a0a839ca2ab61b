"""Run under another Python (.venv312): python-pkcs11 loads libsoftshield-pkcs11.so, which forwards to the
hardserver that SOFTSHIELD_HARDSERVER names (tls://...), and signs with the module's key.

    p11sign.py LIBRARY LABEL MESSAGE  ->  library description, signature hex, modulus hex, public exponent
"""

import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_label="loadshared accelerator").open() as session:
    private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=sys.argv[2])
    public = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label=sys.argv[2])
    signature = private.sign(sys.argv[3].encode(), mechanism=Mechanism.SHA256_RSA_PKCS)
    print(lib.library_description.strip())
    print(signature.hex())
    print(public[Attribute.MODULUS].hex())
    print(int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"))
