"""A python-pkcs11 program run under another Python (3.12, 3.13) against the client library.

    python client_worker.py CLIENT_SO COMMAND TOKEN_LABEL [ARGS...]

Commands: tour (the mechanisms python-pkcs11 and pkcs11-tool users reach for), genkey KEY (a token
AES key; prints the CBC encryption of a known block), keep KEY (genkey, then "ready", and stays
until a line on stdin), encrypt KEY (that encryption with another client's token key), stress KEY N
(N rounds against a shared token key), pool KEY N (N tasks of a 6-thread pool on one session),
hold N (N sessions, then operations until killed), wait (a session, then after a line on stdin the
result of using it twice). Prints one result line per step; exits 1 on failure.
"""

from __future__ import annotations

import os
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

import p11raw

from pkcs11_shim.constants import CKM_RSA_AES_KEY_WRAP

PIN = "1234"
IV = bytes(range(16))


def tour(session) -> None:
    aes = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.EXTRACTABLE: True,
                                                                        Attribute.SENSITIVE: False})
    data = os.urandom(100)
    assert aes.decrypt(aes.encrypt(data, mechanism_param=IV), mechanism_param=IV) == data  # CBC_PAD, IV
    gcm = p11raw.gcm(bytes(12), b"header", 128)
    sealed = aes.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=gcm)
    assert len(sealed) == len(data) + 16
    assert aes.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=gcm) == data
    pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=False)
    oaep = (Mechanism.SHA256, pkcs11.MGF.SHA256, b"label")
    assert priv.decrypt(pub.encrypt(b"secret", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=oaep),
                        mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=oaep) == b"secret"
    pss = (Mechanism.SHA256, pkcs11.MGF.SHA256, 32)
    sig = priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=pss)
    assert pub.verify(data, sig, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=pss)
    assert not pub.verify(data + b"x", sig, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=pss)
    # RSA_AES_KEY_WRAP: the parameter points at an OAEP parameter (a nested pointer).
    ckm_rsa_aes = p11raw.mechanism(CKM_RSA_AES_KEY_WRAP, "RSA_AES_KEY_WRAP")
    param = p11raw.rsa_aes_key_wrap(256, Mechanism.SHA256, pkcs11.MGF.SHA256)
    wrapped = pub.wrap_key(aes, mechanism=ckm_rsa_aes, mechanism_param=param)
    assert len(wrapped) == 256 + 40
    back = priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=ckm_rsa_aes, mechanism_param=param,
                           store=False, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert back[Attribute.VALUE] == aes[Attribute.VALUE]
    # ECDH1_DERIVE: the other party's public point travels behind a pointer.
    params = pkcs11.util.ec.encode_named_curve_parameters("secp256r1")
    pairs = [session.generate_keypair(KeyType.EC, store=False, public_template={Attribute.EC_PARAMS: params},
                                      private_template={Attribute.DERIVE: True},
                                      capabilities=pkcs11.MechanismFlag.DERIVE) for _ in range(2)]
    secrets = []
    for (_pub, mine), (theirs, _priv) in ((pairs[0], pairs[1]), (pairs[1], pairs[0])):
        key = mine.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE,
                              mechanism_param=(pkcs11.KDF.NULL, None, theirs[Attribute.EC_POINT]),
                              template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
        secrets.append(key[Attribute.VALUE])
    assert secrets[0] == secrets[1] and len(secrets[0]) == 32
    digest = session.digest(b"abc", mechanism=Mechanism.SHA256)
    assert digest.hex().startswith("ba7816bf")  # FIPS 180-2 "abc"
    print("tour ok", sys.version.split()[0])


def main() -> int:
    so, command, label, *rest = sys.argv[1:]
    lib = pkcs11.lib(so)
    token = lib.get_token(token_label=label)
    if command == "tour":
        with token.open(user_pin=PIN, rw=True) as session:
            tour(session)
    elif command == "genkey":
        with token.open(user_pin=PIN, rw=True) as session:
            key = session.generate_key(KeyType.AES, 256, label=rest[0], id=b"\x42", store=True)
            print(key.encrypt(bytes(16), mechanism=Mechanism.AES_CBC, mechanism_param=IV).hex())
    elif command == "keep":
        # genkey, then stay connected (logged in) until a line on stdin.
        with token.open(user_pin=PIN, rw=True) as session:
            key = session.generate_key(KeyType.AES, 256, label=rest[0], store=True)
            print(key.encrypt(bytes(16), mechanism=Mechanism.AES_CBC, mechanism_param=IV).hex(), flush=True)
            print("ready", flush=True)
            sys.stdin.readline()
    elif command == "encrypt":
        # The CBC encryption of a zero block under the token key KEY, made by another client.
        with token.open(user_pin=PIN) as session:
            key = session.get_key(label=rest[0], key_type=KeyType.AES)
            print(key.encrypt(bytes(16), mechanism=Mechanism.AES_CBC, mechanism_param=IV).hex())
    elif command == "pool":
        # A thread pool sharing one session (and one key in it): calls from several threads at once,
        # so the client library opens several connections.
        from concurrent.futures import ThreadPoolExecutor

        session = token.open(user_pin=PIN, rw=True)
        shared = session.get_key(label=rest[0], key_type=KeyType.AES)

        def task(i: int) -> bytes:
            data = os.urandom(64 + i % 32)
            assert shared.decrypt(shared.encrypt(data, mechanism_param=IV), mechanism_param=IV) == data
            own = session.generate_key(KeyType.AES, 128, store=False)
            assert own.decrypt(own.encrypt(data, mechanism_param=IV), mechanism_param=IV) == data
            return session.generate_random(256)

        with ThreadPoolExecutor(max_workers=6) as pool:
            randoms = list(pool.map(task, range(int(rest[1]))))
        assert len(set(randoms)) == len(randoms) and {len(r) for r in randoms} == {32}
        session.close()
        print("pool ok", os.getpid())
    elif command == "stress":
        with token.open(user_pin=PIN, rw=True) as session:
            shared = session.get_key(label=rest[0], key_type=KeyType.AES)
            for _ in range(int(rest[1])):
                data = os.urandom(64)
                assert shared.decrypt(shared.encrypt(data, mechanism_param=IV), mechanism_param=IV) == data
                own = session.generate_key(KeyType.AES, 128, store=False)
                assert own.decrypt(own.encrypt(data, mechanism_param=IV), mechanism_param=IV) == data
            print("stress ok", os.getpid())
    elif command == "threads":
        # One process, many threads: the client library pools connections, and a session opened on
        # one connection is used on whichever connection a thread picks up next.
        import threading

        first = token.open(user_pin=PIN, rw=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with token.open(rw=True) as session:
                    shared = session.get_key(label=rest[0], key_type=KeyType.AES)
                    for _ in range(int(rest[1])):
                        data = os.urandom(256)
                        assert shared.decrypt(shared.encrypt(data, mechanism_param=IV), mechanism_param=IV) == data
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first.close()
        if errors:
            raise errors[0]
        print("threads ok")
    elif command == "hold":
        sessions = [token.open(user_pin=PIN if i == 0 else None, rw=True) for i in range(int(rest[0]))]
        key = sessions[0].generate_key(KeyType.AES, 256, store=False)
        print("ready", flush=True)
        while True:  # killed somewhere in here, mid-call or between calls
            key.encrypt(os.urandom(1 << 16), mechanism_param=IV)
    elif command == "wait":
        session = token.open(user_pin=PIN, rw=True)
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(2):
            try:
                session.generate_random(64)
                print("ok", flush=True)
            except pkcs11.PKCS11Error as exc:
                print(type(exc).__name__, flush=True)
    else:
        raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
