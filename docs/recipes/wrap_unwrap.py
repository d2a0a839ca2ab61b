# recipe:wrap-unwrap - python-pkcs11: wrap an AES key under a wrapping key (AES key wrap) and unwrap it
import os

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

lib = pkcs11.lib(os.environ["SO"])
token = lib.get_token(token_label=os.environ["TOKEN"])
with token.open(user_pin=os.environ["PIN"], rw=True) as session:
    kek = session.generate_key(KeyType.AES, 256, label="recipe-kek",
                               template={Attribute.WRAP: True, Attribute.UNWRAP: True})
    key = session.generate_key(KeyType.AES, 128, label="recipe-data-key",
                               template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True})
    wrapped = kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP)
    copy = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, label="recipe-unwrapped",
                          mechanism=Mechanism.AES_KEY_WRAP)
    iv = bytes(16)
    assert copy.decrypt(key.encrypt(b"sixteen byte msg", mechanism_param=iv), mechanism_param=iv) == b"sixteen byte msg"
    print(f"wrapped {len(wrapped)} bytes; the unwrapped copy decrypts what the original encrypted")
