# recipe:python - python-pkcs11: generate an EC key, sign, verify, list the token's keys
import os

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

lib = pkcs11.lib(os.environ["SO"])
token = lib.get_token(token_label=os.environ["TOKEN"])
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    public, private = params.generate_keypair(store=True, label="recipe-ec")
    signature = private.sign(b"message", mechanism=Mechanism.ECDSA_SHA256)
    assert public.verify(b"message", signature, mechanism=Mechanism.ECDSA_SHA256)
    labels = sorted(k.label for k in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    print("private keys:", ", ".join(labels))
