"""A python-pkcs11 program run under another Python (3.12) against libsoftshield-pkcs11.so, which
forwards it to the hardserver(s) SOFTSHIELD_HARDSERVER names.

    python ls_worker.py SO genkey LABEL DATA_HEX   a token RSA-2048 pair on the accelerator slot
                                                   (module-protected); prints modulus hex, public
                                                   exponent hex, SHA256_RSA_PKCS signature hex of DATA
    python ls_worker.py SO sign LABEL DATA_HEX     the signature of DATA by the private key LABEL
"""

from __future__ import annotations

import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass


def main(so: str, command: str, label: str, data_hex: str) -> None:
    lib = pkcs11.lib(so)
    token = lib.get_slots(token_present=True)[0].get_token()  # the accelerator: module protection
    data = bytes.fromhex(data_hex)
    with token.open(rw=True) as session:
        if command == "genkey":
            pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=True, label=label,
                                                 private_template={Attribute.PRIVATE: False})
            print(pub[Attribute.MODULUS].hex(), pub[Attribute.PUBLIC_EXPONENT].hex())
        else:
            priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        print(priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS).hex())


if __name__ == "__main__":
    main(*sys.argv[1:])
