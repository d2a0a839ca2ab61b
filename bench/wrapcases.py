"""The key-wrap hot path, built once per implementation: keys, then one callable per case.

SoftHSM2 2.6.1 has no CKM_RSA_AES_KEY_WRAP (it came in 2.7.0); its closest composite is what a
client does instead: generate an ephemeral AES key, OAEP-wrap it (SHA-1: SoftHSM2 accepts OAEP with
SHA-1 and no label only), KWP-wrap the target (_PAD is its KWP), destroy the ephemeral key; unwrap is
OAEP-unwrap then KWP-unwrap. Those figures are labelled "composite".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

from backends import CKM_RSA_AES_KEY_WRAP, rsa_aes_key_wrap_param

OAEP_SHA1 = (Mechanism.SHA_1, MGF.SHA1, None)
OAEP_SHA256 = (Mechanism.SHA256, MGF.SHA256, None)
KWP_MECH = {"ours": Mechanism.AES_KEY_WRAP_KWP, "softhsm": Mechanism.AES_KEY_WRAP_PAD}
EXTRACTABLE = {Attribute.EXTRACTABLE: True}


@dataclass
class Keys:
    impl: str
    session: object = None
    rsa: dict = None  # bits -> (public, private)
    aes_wrapping: object = None
    aes_target: object = None
    rsa_target: object = None


def make_keys(impl: str, session) -> Keys:
    keys = Keys(impl, session, {})
    if impl == "cryptography":
        for bits in (2048, 3072):
            private = rsa.generate_private_key(65537, bits)
            keys.rsa[bits] = (private.public_key(), private)
        keys.aes_wrapping, keys.aes_target = os.urandom(32), os.urandom(32)
        keys.rsa_target = rsa.generate_private_key(65537, 2048)
        return keys
    for bits in (2048, 3072):
        keys.rsa[bits] = session.generate_keypair(KeyType.RSA, bits, store=False, label=f"rsa{bits}")
    keys.aes_wrapping = session.generate_key(KeyType.AES, 256, store=False, label="kek")
    keys.aes_target = session.generate_key(KeyType.AES, 256, store=False, label="target", template=EXTRACTABLE)
    _pub, keys.rsa_target = session.generate_keypair(KeyType.RSA, 2048, store=False, label="rsa-target",
                                                     private_template=EXTRACTABLE)
    return keys


_KEYS: dict[str, Keys] = {}


def keys_for(impl: str, sessions: dict) -> Keys:
    """One set of keys per implementation for the whole run (their labels must stay unique)."""
    if impl not in _KEYS:
        _KEYS[impl] = make_keys(impl, sessions.get(impl))
    return _KEYS[impl]


def _oaep(sha: str) -> padding.OAEP:
    h = hashes.SHA1() if sha == "sha1" else hashes.SHA256()
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def _softhsm_composite_wrap(keys: Keys, public, target) -> Callable[[], bytes]:
    session = keys.session

    def run() -> bytes:
        ephemeral = session.generate_key(KeyType.AES, 256, store=False, template=EXTRACTABLE)
        try:
            return (public.wrap_key(ephemeral, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP_SHA1)
                    + ephemeral.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_PAD))
        finally:
            ephemeral.destroy()

    return run


def _softhsm_composite_unwrap(keys: Keys, private, blob: bytes) -> Callable[[], None]:
    k = private.key_length // 8

    def run() -> None:
        ephemeral = private.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob[:k],
                                       mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP_SHA1, store=False)
        try:
            ephemeral.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob[k:],
                                 mechanism=Mechanism.AES_KEY_WRAP_PAD, store=False).destroy()
        finally:
            ephemeral.destroy()

    return run


def rsa_aes_wrap(keys: Keys, bits: int, sha: str, target: str = "aes") -> tuple[Callable, str]:
    """(callable, note) for RSA_AES_KEY_WRAP of the AES-256 (or RSA-2048 private) target."""
    public, private = keys.rsa[bits]
    if keys.impl == "cryptography":
        oaep = _oaep(sha)
        if target == "aes":
            def run() -> bytes:
                temporary = os.urandom(32)
                return public.encrypt(temporary, oaep) + keywrap.aes_key_wrap_with_padding(temporary, keys.aes_target)
        else:
            def run() -> bytes:
                pkcs8 = keys.rsa_target.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption())
                temporary = os.urandom(32)
                return public.encrypt(temporary, oaep) + keywrap.aes_key_wrap_with_padding(temporary, pkcs8)
        return run, ""
    key = keys.aes_target if target == "aes" else keys.rsa_target
    if keys.impl == "softhsm":
        return _softhsm_composite_wrap(keys, public, key), "composite OAEP-SHA1+KWP"
    param = rsa_aes_key_wrap_param(sha)
    return (lambda: public.wrap_key(key, mechanism=CKM_RSA_AES_KEY_WRAP, mechanism_param=param)), ""


def rsa_aes_unwrap(keys: Keys, bits: int, sha: str) -> tuple[Callable, str]:
    public, private = keys.rsa[bits]
    if keys.impl == "cryptography":
        oaep = _oaep(sha)
        blob = public.encrypt(os.urandom(32), oaep)
        temporary = private.decrypt(blob, oaep)
        blob += keywrap.aes_key_wrap_with_padding(temporary, keys.aes_target)
        k = bits // 8

        def run() -> bytes:
            return keywrap.aes_key_unwrap_with_padding(private.decrypt(blob[:k], oaep), blob[k:])
        return run, ""
    if keys.impl == "softhsm":
        blob = _softhsm_composite_wrap(keys, public, keys.aes_target)()
        return _softhsm_composite_unwrap(keys, private, blob), "composite OAEP-SHA1+KWP"
    param = rsa_aes_key_wrap_param(sha)
    blob = public.wrap_key(keys.aes_target, mechanism=CKM_RSA_AES_KEY_WRAP, mechanism_param=param)

    def run() -> None:
        private.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=CKM_RSA_AES_KEY_WRAP,
                           mechanism_param=param, store=False).destroy()
    return run, ""


def oaep_wrap(keys: Keys) -> tuple[Callable, str]:
    public, _private = keys.rsa[2048]
    if keys.impl == "cryptography":
        oaep = _oaep("sha1")
        return (lambda: public.encrypt(keys.aes_target, oaep)), ""
    return (lambda: public.wrap_key(keys.aes_target, mechanism=Mechanism.RSA_PKCS_OAEP,
                                    mechanism_param=OAEP_SHA1)), ""


def oaep_unwrap(keys: Keys) -> tuple[Callable, str]:
    public, private = keys.rsa[2048]
    if keys.impl == "cryptography":
        oaep = _oaep("sha1")
        blob = public.encrypt(keys.aes_target, oaep)
        return (lambda: private.decrypt(blob, oaep)), ""
    blob = public.wrap_key(keys.aes_target, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=OAEP_SHA1)
    return (lambda: private.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=Mechanism.RSA_PKCS_OAEP,
                                       mechanism_param=OAEP_SHA1, store=False).destroy()), ""


def aes_wrap(keys: Keys, kind: str) -> tuple[Callable, str]:
    if keys.impl == "cryptography":
        fn = keywrap.aes_key_wrap if kind == "kw" else keywrap.aes_key_wrap_with_padding
        return (lambda: fn(keys.aes_wrapping, keys.aes_target)), ""
    mech = Mechanism.AES_KEY_WRAP if kind == "kw" else KWP_MECH[keys.impl]
    note = "CKM_AES_KEY_WRAP_PAD" if kind == "kwp" and keys.impl == "softhsm" else ""
    return (lambda: keys.aes_wrapping.wrap_key(keys.aes_target, mechanism=mech)), note


def aes_unwrap(keys: Keys, kind: str) -> tuple[Callable, str]:
    if keys.impl == "cryptography":
        wrap = keywrap.aes_key_wrap if kind == "kw" else keywrap.aes_key_wrap_with_padding
        unwrap = keywrap.aes_key_unwrap if kind == "kw" else keywrap.aes_key_unwrap_with_padding
        blob = wrap(keys.aes_wrapping, keys.aes_target)
        return (lambda: unwrap(keys.aes_wrapping, blob)), ""
    mech = Mechanism.AES_KEY_WRAP if kind == "kw" else KWP_MECH[keys.impl]
    note = "CKM_AES_KEY_WRAP_PAD" if kind == "kwp" and keys.impl == "softhsm" else ""
    blob = keys.aes_wrapping.wrap_key(keys.aes_target, mechanism=mech)
    return (lambda: keys.aes_wrapping.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=mech,
                                                 store=False).destroy()), note
