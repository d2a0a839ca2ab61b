"""`pkcs11-tool --list-mechanisms` lists every registry row, with the functions its flags promise.

pkcs11-tool prints its own name for the numbers it knows and `mechtype-0x<HEX>` for the others, so
each row is looked up by either; the issue-4 additions are named explicitly."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pkcs11
from p11env import pkcs11_tool

from pkcs11_shim import constants
from pkcs11_shim.constants import Mechanism
from pkcs11_shim.constants import MechanismFlag as F
from pkcs11_shim.mechanisms.registry import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors"))

#: pkcs11-tool names that differ from the CKM_ name (with '_' -> '-').
ALIASES = {"EC-KEY-PAIR-GEN": "ECDSA-KEY-PAIR-GEN"}
#: What pkcs11-tool prints for each CK_MECHANISM_INFO flag it spells out.
FUNCTIONS = ((F.ENCRYPT, "encrypt"), (F.DECRYPT, "decrypt"), (F.DIGEST, "digest"), (F.SIGN, "sign"),
             (F.VERIFY, "verify"), (F.WRAP, "wrap"), (F.UNWRAP, "unwrap"), (F.DERIVE, "derive"),
             (F.GENERATE, "generate"), (F.GENERATE_KEY_PAIR, "generate_key_pair"))
#: The mechanisms issue 4 added, as pkcs11-tool (OpenSC 0.2x) prints them.
def _unnamed(number: int) -> str:
    """How pkcs11-tool prints a mechanism it has no name for."""
    return f"mechtype-0x{number:X}"


ADDED = ["ECDSA-SHA3-224", "ECDSA-SHA3-256", "ECDSA-SHA3-384", "ECDSA-SHA3-512", "ECDH1-COFACTOR-DERIVE",
         _unnamed(Mechanism.AES_CCM), _unnamed(Mechanism.AES_CTS), _unnamed(Mechanism.AES_OFB),
         _unnamed(Mechanism.AES_CFB8), _unnamed(Mechanism.AES_CFB128), "AES-MAC", "AES-MAC-GENERAL",
         _unnamed(constants.CKM_AES_XTS), _unnamed(constants.CKM_AES_XTS_KEY_GEN), "DES3-CMAC",
         _unnamed(Mechanism.DES3_CMAC_GENERAL), _unnamed(constants.CKM_HKDF_DERIVE), _unnamed(constants.CKM_HKDF_DATA),
         _unnamed(constants.CKM_HKDF_KEY_GEN), _unnamed(constants.CKM_SP800_108_COUNTER_KDF), "PKCS5-PBKD2",
         "CONCATENATE-BASE-AND-KEY", "CONCATENATE-BASE-AND-DATA", "CONCATENATE-DATA-AND-BASE",
         "XOR-BASE-AND-DATA", "EXTRACT-KEY-FROM-KEY", _unnamed(Mechanism.AES_KEY_WRAP_PKCS7)]


def _listed() -> dict[str, str]:
    out = pkcs11_tool("--list-mechanisms").stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\s+([A-Za-z0-9-]+(?:-0x[0-9A-F]+)?)(?:,\s*(.*))?$", line)
        if m and not line.startswith("Supported"):
            rows[m.group(1)] = m.group(2) or ""
    return rows


def test_every_row_is_listed_with_its_functions() -> None:
    listed = _listed()
    assert len(listed) == len(REGISTRY.all())
    for spec in REGISTRY.all():
        name = spec.name.removeprefix("CKM_").replace("_", "-")
        name = ALIASES.get(name, name)
        key = name if name in listed else f"mechtype-0x{spec.mechanism:X}"
        assert key in listed, f"{spec.name} missing from pkcs11-tool's list"
        printed = {part.strip() for part in listed[key].split(",")}
        for flag, word in FUNCTIONS:
            assert (word in printed) == bool(spec.flags & flag), f"{spec.name}: {word}"


def test_issue4_mechanisms_are_listed() -> None:
    listed = _listed()
    assert [name for name in ADDED if name not in listed] == []
    # AES-GCM and AES-CCM carry CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT (pkcs11-tool: "other flags=0x6").
    message = f"other flags={constants.CKF_MESSAGE_ENCRYPT | constants.CKF_MESSAGE_DECRYPT:#x}"
    assert message in listed["AES-GCM"] and message in listed[_unnamed(Mechanism.AES_CCM)]


def test_ec_params_by_oid_and_by_curve_name(session) -> None:
    """CKA_EC_PARAMS as a namedCurve OID or (Edwards/Montgomery, PKCS#11 3.0 §2.3.6) a PrintableString
    curve name, end to end: key pair generation, EdDSA, ECDH1 with X25519/X448."""
    import p11raw
    from pkcs11 import Attribute, KeyType, Mechanism

    ckm_montgomery = p11raw.mechanism(constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, "EC_MONTGOMERY_KEY_PAIR_GEN")
    ckk_montgomery = p11raw.key_type(constants.CKK_EC_MONTGOMERY, "EC_MONTGOMERY")
    for params in (bytes.fromhex("06032b6571"), b"\x13\x0aedwards448", b"\x13\x0cedwards25519"):
        public, private = session.generate_keypair(KeyType.EC_EDWARDS, mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                                                   public_template={Attribute.EC_PARAMS: params})
        ed448 = b"448" in params or params.endswith(b"\x71")
        # PKCS#11 3.0 §2.3.14: Ed448 takes CK_EDDSA_PARAMS (phFlag FALSE, no context: pure Ed448).
        param = p11raw.eddsa(False, b"") if ed448 else None
        signature = private.sign(b"message", mechanism=Mechanism.EDDSA, mechanism_param=param)
        assert len(signature) == (114 if ed448 else 64)
        assert public.verify(b"message", signature, mechanism=Mechanism.EDDSA, mechanism_param=param)
    for params in (bytes.fromhex("06032b656e"), b"\x13\x08curve448"):
        pairs = [session.generate_keypair(ckk_montgomery, mechanism=ckm_montgomery,
                                          public_template={Attribute.EC_PARAMS: params},
                                          private_template={Attribute.DERIVE: True},
                                          capabilities=pkcs11.MechanismFlag.DERIVE) for _ in range(2)]
        (pub_a, priv_a), (pub_b, priv_b) = pairs
        secrets = []
        for private, public in ((priv_a, pub_b), (priv_b, pub_a)):
            point = public[Attribute.EC_POINT]
            key = private.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE,
                                     mechanism_param=(pkcs11.KDF.NULL, None, point),
                                     template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
            secrets.append(key[Attribute.VALUE])
        assert secrets[0] == secrets[1]


def test_new_key_generation_rows(session) -> None:
    """CKM_AES_XTS_KEY_GEN and CKM_HKDF_KEY_GEN through C_GenerateKey, each key then used."""
    import p11raw
    from pkcs11 import Attribute, Mechanism

    xts_gen = p11raw.mechanism(constants.CKM_AES_XTS_KEY_GEN, "AES_XTS_KEY_GEN")
    xts = p11raw.mechanism(constants.CKM_AES_XTS, "AES_XTS")
    hkdf_gen = p11raw.mechanism(constants.CKM_HKDF_KEY_GEN, "HKDF_KEY_GEN")
    hkdf = p11raw.mechanism(constants.CKM_HKDF_DERIVE, "HKDF_DERIVE")
    ckk_xts, ckk_hkdf = p11raw.key_type(constants.CKK_AES_XTS, "AES_XTS"), p11raw.key_type(constants.CKK_HKDF, "HKDF")
    key = session.generate_key(ckk_xts, 512, mechanism=xts_gen, template={Attribute.TOKEN: False},
                               capabilities=pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT)
    tweak, data = bytes(16), b"a sector of data, more than one block"
    assert key.decrypt(key.encrypt(data, mechanism=xts, mechanism_param=tweak), mechanism=xts,
                       mechanism_param=tweak) == data
    base = session.generate_key(ckk_hkdf, 256, mechanism=hkdf_gen, template={Attribute.TOKEN: False},
                                capabilities=pkcs11.MechanismFlag.DERIVE)
    derived = base.derive_key(pkcs11.KeyType.AES, 128, mechanism=hkdf,
                              mechanism_param=p11raw.hkdf(True, True, Mechanism.SHA256, constants.CKF_HKDF_SALT_NULL,
                                                          info=b"ctx"),
                              template={Attribute.TOKEN: False})
    assert derived[Attribute.VALUE_LEN] == 16


def test_legacy_and_sha512_t_rows_through_the_library(session, lib) -> None:
    """Single DES (CKM_DES_KEY_GEN, CKM_DES_CBC_PAD), CKM_MD5 and the SHA-512/t HMACs are in the slot's
    mechanism list and run end to end (known answers: tests/vectors/test_legacy_vectors.py)."""
    import hashlib
    import hmac

    import p11raw
    from pkcs11 import Attribute, Mechanism, ObjectClass

    from pkcs11_shim import constants as c

    des_gen, des_cbc_pad = p11raw.mechanism(c.CKM_DES_KEY_GEN, "DES_KEY_GEN"), p11raw.mechanism(c.CKM_DES_CBC_PAD, "DES_CBC_PAD")
    md5, sha512_224_hmac = p11raw.mechanism(c.CKM_MD5, "MD5"), p11raw.mechanism(c.CKM_SHA512_224_HMAC, "SHA512_224_HMAC")
    ckk_des = p11raw.key_type(c.CKK_DES, "DES")
    offered = set(session.token.slot.get_mechanisms())
    assert {des_gen, des_cbc_pad, md5, sha512_224_hmac, Mechanism.SHA512_HMAC} <= offered
    key = session.generate_key(ckk_des, 64, mechanism=des_gen, template={Attribute.TOKEN: False},
                               capabilities=pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT)
    assert key[Attribute.VALUE_LEN] == 8 and key[Attribute.KEY_GEN_MECHANISM] == des_gen
    iv = bytes(8)
    ciphertext = key.encrypt(b"thirteen byte", mechanism=des_cbc_pad, mechanism_param=iv)
    assert len(ciphertext) == 16
    assert key.decrypt(ciphertext, mechanism=des_cbc_pad, mechanism_param=iv) == b"thirteen byte"
    assert session.digest(b"abc", mechanism=md5) == hashlib.md5(b"abc").digest()
    secret = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: pkcs11.KeyType.GENERIC_SECRET,
                                    Attribute.VALUE: b"k" * 32, Attribute.TOKEN: False, Attribute.SIGN: True})
    assert secret.sign(b"data", mechanism=sha512_224_hmac) == hmac.new(b"k" * 32, b"data", "sha512_224").digest()
