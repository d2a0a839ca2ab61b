"""Known answers THROUGH THE .so: python-pkcs11 loads build/libsoftshield-pkcs11.so in this process,
imports each vector's key with C_CreateObject (session objects) and runs the operation through
PKCS#11 (C_Encrypt, C_Sign, C_Verify, C_Digest, C_DeriveKey, C_GenerateKey ...).

Families (counted in the session summary as `so-<family>`): aes (ECB, CBC, CFB8, CFB128, OFB, GCM,
CCM, XTS), kw (KW, KWP), rsa (PSS verify, OAEP decrypt), ecdsa (FIPS 186-3 SigVer), eddsa (RFC 8032
Ed25519 / Ed448), hmac (RFC 4231), hkdf (RFC 5869), sha3 (SHA3VS), kbkdf (SP 800-108 counter mode),
pbkdf2 (RFC 6070). The registry-level files beside this one keep testing the rows directly.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))
import p11env
import p11raw
import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import MechanismParamInvalid
from vectorfiles import lines, nist_records, pkcs1_vectors, sample, unhex

from p11ctypes import CK_ATTRIBUTE, CK_MECHANISM, CK_SP800_108_COUNTER_FORMAT
from pkcs11_shim import constants
from pkcs11_shim.constants import CKR

CKK_AES_XTS = p11raw.key_type(constants.CKK_AES_XTS, "AES_XTS")
CKM_AES_XTS = p11raw.mechanism(constants.CKM_AES_XTS, "AES_XTS")
CKM_HKDF_DERIVE = p11raw.mechanism(constants.CKM_HKDF_DERIVE, "HKDF_DERIVE")
CKM_SP800_108_COUNTER_KDF = p11raw.mechanism(constants.CKM_SP800_108_COUNTER_KDF, "SP800_108_COUNTER_KDF")
OID_ED25519, OID_ED448 = bytes.fromhex("06032b6570"), bytes.fromhex("06032b6571")
EC_OIDS = {"P-256": bytes.fromhex("06082a8648ce3d030107"), "P-384": bytes.fromhex("06052b81040022"),
           "P-521": bytes.fromhex("06052b81040023")}
#: Bytes of the EC curve orders, for r || s.
EC_HALF = {"P-256": 32, "P-384": 48, "P-521": 66}


@pytest.fixture(scope="module")
def session():
    assert p11env.SO.exists(), "build the library first: make"
    label = p11env.init_token()
    token = pkcs11.lib(str(p11env.SO)).get_token(token_label=label)
    with token.open(user_pin=p11env.USER_PIN, rw=True) as s:
        yield s


def _secret(session, key_type, value: bytes, **extra):
    template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type, Attribute.VALUE: value,
                Attribute.TOKEN: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.SIGN: True,
                Attribute.VERIFY: True, Attribute.DERIVE: True, Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True, **extra}
    return session.create_object(template)


def _aes(session, value: bytes):
    return _secret(session, KeyType.AES, value)


def _chunks(data: bytes, size: int = 13) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


# --- AES block and stream modes ----------------------------------------------------------------

def _nist_modes() -> list:
    out = []
    files = (("ECB", Mechanism.AES_ECB, "ECB/ECB{kind}{bits}"), ("CBC", Mechanism.AES_CBC, "CBC/CBC{kind}{bits}"),
             ("CFB8", Mechanism.AES_CFB8, "CFB/CFB8{kind}{bits}"),
             ("CFB128", Mechanism.AES_CFB128, "CFB/CFB128{kind}{bits}"), ("OFB", Mechanism.AES_OFB, "OFB/OFB{kind}{bits}"))
    for name, mechanism, pattern in files:
        records = []
        for kind in ("GFSbox", "KeySbox", "MMT", "VarTxt"):
            for bits in (128, 192, 256):
                records += nist_records("ciphers/AES/" + pattern.format(kind=kind, bits=bits) + ".rsp", "COUNT")
        for i, r in enumerate(sample(records, 40)):
            out.append(pytest.param(mechanism, r, id=f"{name}-{i}"))
    return out


@pytest.mark.parametrize(("mechanism", "vector"), _nist_modes())
def test_aes_modes(session, mechanism, vector: dict) -> None:
    key = _aes(session, unhex(vector["KEY"]))
    iv = unhex(vector["IV"]) if "IV" in vector else None
    plain, cipher = unhex(vector["PLAINTEXT"]), unhex(vector["CIPHERTEXT"])
    if vector["section"] == "ENCRYPT":
        assert key.encrypt(plain, mechanism=mechanism, mechanism_param=iv) == cipher
    else:
        assert key.decrypt(cipher, mechanism=mechanism, mechanism_param=iv) == plain


def _gcm() -> list:
    out = []
    for bits in (128, 192, 256):
        records = [r for r in nist_records(f"ciphers/AES/GCM/gcmEncryptExtIV{bits}.rsp", "Count")
                   if 64 <= int(r["IVlen"]) <= 1024]
        out += [pytest.param(r, id=f"{bits}-{i}") for i, r in enumerate(sample(records, 20))]
    return out


@pytest.mark.parametrize("vector", _gcm())
def test_aes_gcm(session, vector: dict) -> None:
    key = _aes(session, unhex(vector["Key"]))
    param = p11raw.gcm(unhex(vector["IV"]), unhex(vector["AAD"]), int(vector["Taglen"]))
    plain, sealed = unhex(vector["PT"]), unhex(vector["CT"]) + unhex(vector["Tag"])
    assert key.encrypt(plain, mechanism=Mechanism.AES_GCM, mechanism_param=param) == sealed
    assert key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=param) == plain


def _flatten(record: dict) -> dict:
    """DVPT files put several settings in one header: "[Alen = 0, Plen = 0, Nlen = 7, Tlen = 4]"."""
    for key, value in list(record.items()):
        if isinstance(value, str) and "," in value and "=" in value:
            first, *rest = value.split(",")
            record[key] = first.strip()
            for part in rest:
                k, v = part.split("=", 1)
                record[k.strip()] = v.strip()
    return record


def _ccm() -> list:
    out = []
    for stem in ("VADT", "VNT", "VPT", "VTT", "DVPT"):
        for bits in (128, 192, 256):
            records = [_flatten(r) for r in nist_records(f"ciphers/AES/CCM/{stem}{bits}.rsp", "Count")]
            records = [r for r in records
                       if "Payload" in r and "CT" in r and not r.get("Result", "Pass").startswith("Fail")]
            out += [pytest.param(r, id=f"{stem}{bits}-{i}") for i, r in enumerate(sample(records, 4))]
    return out


@pytest.mark.parametrize("vector", _ccm())
def test_aes_ccm(session, vector: dict) -> None:
    key = _aes(session, unhex(vector["Key"]))
    plen, alen, tlen = int(vector["Plen"]), int(vector["Alen"]), int(vector["Tlen"])
    plain = unhex(vector["Payload"])[:plen]
    aad = unhex(vector["Adata"])[:alen]
    sealed = unhex(vector["CT"])
    param = p11raw.ccm(plen, unhex(vector["Nonce"]), aad, tlen)
    assert key.encrypt(plain, mechanism=Mechanism.AES_CCM, mechanism_param=param) == sealed
    assert key.decrypt(sealed, mechanism=Mechanism.AES_CCM, mechanism_param=param) == plain


def _xts() -> list:
    out = []
    for bits in (128, 256):
        records = [r for r in nist_records(f"ciphers/AES/XTS/tweak-128hexstr/XTSGenAES{bits}.rsp", "COUNT")
                   if int(r["DataUnitLen"]) % 8 == 0]
        out += [pytest.param(r, id=f"{bits}-{r['section']}-{r['COUNT']}") for r in sample(records, 30)]
    return out


@pytest.mark.parametrize("vector", _xts())
def test_aes_xts(session, vector: dict) -> None:
    key = _secret(session, CKK_AES_XTS, unhex(vector["Key"]))
    tweak, plain, cipher = unhex(vector["i"]), unhex(vector["PT"]), unhex(vector["CT"])
    if vector["section"] == "ENCRYPT":
        assert key.encrypt(plain, mechanism=CKM_AES_XTS, mechanism_param=tweak) == cipher
    else:
        assert key.decrypt(cipher, mechanism=CKM_AES_XTS, mechanism_param=tweak) == plain


# --- AES key wrap (as ciphers) -----------------------------------------------------------------

def _kw() -> list:
    out = []
    for kind, mechanism in (("KW", Mechanism.AES_KEY_WRAP), ("KWP", Mechanism.AES_KEY_WRAP_KWP)):
        for bits in (128, 192, 256):
            for direction in ("AE", "AD"):
                records = nist_records(f"keywrap/kwtestvectors/{kind}_{direction}_{bits}.txt", "COUNT")
                out += [pytest.param(mechanism, direction, r, id=f"{kind}-{direction}-{bits}-{r['COUNT']}")
                        for r in sample(records, 10)]
    return out


@pytest.mark.parametrize(("mechanism", "direction", "vector"), _kw())
def test_kw(session, mechanism, direction: str, vector: dict) -> None:
    kek = _aes(session, unhex(vector["K"]))
    wrapped = unhex(vector["C"])
    if direction == "AE":
        assert kek.encrypt(unhex(vector["P"]), mechanism=mechanism) == wrapped
    elif vector.get("FAIL"):
        with pytest.raises(pkcs11.exceptions.EncryptedDataInvalid):
            kek.decrypt(wrapped, mechanism=mechanism)
    else:
        assert kek.decrypt(wrapped, mechanism=mechanism) == unhex(vector["P"])


# --- RSA -----------------------------------------------------------------------------------------

def _rsa_private(session, key: dict):
    be = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
    return session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
        Attribute.MODULUS: be(key["n"]), Attribute.PUBLIC_EXPONENT: be(key["e"]),
        Attribute.PRIVATE_EXPONENT: be(key["d"]), Attribute.PRIME_1: be(key["p"]), Attribute.PRIME_2: be(key["q"]),
        Attribute.EXPONENT_1: be(key["dmp1"]), Attribute.EXPONENT_2: be(key["dmq1"]),
        Attribute.COEFFICIENT: be(key["iqmp"]), Attribute.DECRYPT: True, Attribute.SIGN: True})


def _rsa_public(session, key: dict):
    be = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
    return session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
        Attribute.MODULUS: be(key["n"]), Attribute.PUBLIC_EXPONENT: be(key["e"]), Attribute.VERIFY: True,
        Attribute.ENCRYPT: True})


def _pkcs1(path: str) -> list:
    return [pytest.param(k, e, id=f"key{i}-{j}") for i, k in enumerate(pkcs1_vectors(path))
            for j, e in enumerate(k["examples"])]


@pytest.mark.parametrize(("key", "example"), _pkcs1("asymmetric/RSA/pkcs-1v2-1d2-vec/pss-vect.txt"))
def test_rsa_pss_verify(session, key: dict, example: dict) -> None:
    public = _rsa_public(session, key)
    param = p11raw.pss(Mechanism.SHA_1, 1, len(example["salt"]))  # CKG_MGF1_SHA1
    assert public.verify(example["message"], example["signature"], mechanism=Mechanism.SHA1_RSA_PKCS_PSS,
                         mechanism_param=param)
    assert not public.verify(example["message"] + b"x", example["signature"],
                             mechanism=Mechanism.SHA1_RSA_PKCS_PSS, mechanism_param=param)


@pytest.mark.parametrize(("key", "example"), _pkcs1("asymmetric/RSA/pkcs-1v2-1d2-vec/oaep-vect.txt"))
def test_rsa_oaep_decrypt(session, key: dict, example: dict) -> None:
    private = _rsa_private(session, key)
    param = p11raw.oaep(Mechanism.SHA_1, 1)
    assert private.decrypt(example["encryption"], mechanism=Mechanism.RSA_PKCS_OAEP,
                           mechanism_param=param) == example["message"]


# --- ECDSA ---------------------------------------------------------------------------------------

HASHED = {"SHA-1": Mechanism.ECDSA_SHA1, "SHA-224": Mechanism.ECDSA_SHA224, "SHA-256": Mechanism.ECDSA_SHA256,
          "SHA-384": Mechanism.ECDSA_SHA384, "SHA-512": Mechanism.ECDSA_SHA512}


def _sigver() -> list:
    records = [r for r in nist_records("asymmetric/ECDSA/FIPS_186-3/SigVer.rsp", "Msg")
               if r["section"].split(",")[0] in EC_OIDS]
    return [pytest.param(r, id=f"{r['section']}-{i}") for i, r in enumerate(sample(records, 90))]


@pytest.mark.parametrize("vector", _sigver())
def test_ecdsa_sigver(session, vector: dict) -> None:
    curve, hash_label = vector["section"].split(",")
    half = EC_HALF[curve]
    point = b"\x04" + int(vector["Qx"], 16).to_bytes(half, "big") + int(vector["Qy"], 16).to_bytes(half, "big")
    valid = vector["Result"].startswith("P")
    try:
        public = session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC, Attribute.TOKEN: False,
            Attribute.EC_PARAMS: EC_OIDS[curve], Attribute.EC_POINT: b"\x04" + bytes([len(point)]) + point
            if len(point) < 128 else b"\x04\x81" + bytes([len(point)]) + point, Attribute.VERIFY: True})
    except pkcs11.exceptions.PKCS11Error:
        assert not valid  # an off-curve Q is one of the failing cases
        return
    signature = int(vector["R"], 16).to_bytes(half, "big") + int(vector["S"], 16).to_bytes(half, "big")
    assert public.verify(unhex(vector["Msg"]), signature, mechanism=HASHED[hash_label]) == valid


# --- EdDSA (RFC 8032) --------------------------------------------------------------------------------

def _edwards_private(session, oid: bytes, seed: bytes):
    return session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.TOKEN: False,
        Attribute.EC_PARAMS: oid, Attribute.VALUE: seed, Attribute.SIGN: True})


def _ed25519() -> list:
    out = []
    for i, line in enumerate(sample(list(lines("asymmetric/Ed25519/sign.input")), 60)):
        secret_public, _public, message, signature_message, _ = line.split(":")
        out.append(pytest.param(OID_ED25519, unhex(secret_public)[:32], unhex(message),
                                unhex(signature_message)[:64], b"", id=f"ed25519-{i}"))
    for r in nist_records("asymmetric/Ed448/rfc8032.txt", "COUNT"):
        out.append(pytest.param(OID_ED448, unhex(r["SECRET"]), unhex(r["MESSAGE"]), unhex(r["SIGNATURE"]),
                                unhex(r.get("CONTEXT", "")), id=f"ed448-{r['COUNT']}"))
    return out


@pytest.mark.parametrize(("oid", "seed", "message", "signature", "context"), _ed25519())
def test_eddsa(session, oid: bytes, seed: bytes, message: bytes, signature: bytes, context: bytes) -> None:
    private = _edwards_private(session, oid, seed)
    if context:
        # `cryptography` implements pure Ed448 only: a context is refused, never silently ignored.
        with pytest.raises(MechanismParamInvalid):
            private.sign(message, mechanism=Mechanism.EDDSA, mechanism_param=p11raw.eddsa(False, context))
        return
    if oid == OID_ED448:
        # Ed448 needs CK_EDDSA_PARAMS (phFlag FALSE, no context: pure Ed448); without it, refused.
        with pytest.raises(MechanismParamInvalid):
            private.sign(message, mechanism=Mechanism.EDDSA)
        assert private.sign(message, mechanism=Mechanism.EDDSA, mechanism_param=p11raw.eddsa(False, b"")) == signature
        return
    assert private.sign(message, mechanism=Mechanism.EDDSA) == signature
    # With the parameter an Ed25519 key would sign Ed25519ctx, which is not offered.
    with pytest.raises(MechanismParamInvalid):
        private.sign(message, mechanism=Mechanism.EDDSA, mechanism_param=p11raw.eddsa(False, b""))


# --- HMAC (RFC 4231), SHA-3 ------------------------------------------------------------------------

def _hmac() -> list:
    out = []
    for name, plain, general, size in (("sha224", Mechanism.SHA224_HMAC, Mechanism.SHA224_HMAC_GENERAL, 28),
                                       ("sha256", Mechanism.SHA256_HMAC, Mechanism.SHA256_HMAC_GENERAL, 32),
                                       ("sha384", Mechanism.SHA384_HMAC, Mechanism.SHA384_HMAC_GENERAL, 48),
                                       ("sha512", Mechanism.SHA512_HMAC, Mechanism.SHA512_HMAC_GENERAL, 64)):
        for i, r in enumerate(nist_records(f"HMAC/rfc-4231-{name}.txt", "Len")):
            out.append(pytest.param(plain, general, size, r, id=f"{name}-{i}"))
    return out


@pytest.mark.parametrize(("plain", "general", "size", "vector"), _hmac())
def test_hmac(session, plain, general, size: int, vector: dict) -> None:
    key = _secret(session, KeyType.GENERIC_SECRET, unhex(vector["Key"]))
    message, expected = unhex(vector["Msg"]), unhex(vector["MD"])
    if len(expected) == size:
        assert key.sign(message, mechanism=plain) == expected
        assert key.sign(iter(_chunks(message)), mechanism=plain) == expected
    else:
        param = p11raw.ulong(len(expected))
        assert key.sign(message, mechanism=general, mechanism_param=param) == expected
    assert key.verify(message, expected, **({"mechanism": plain} if len(expected) == size
                                             else {"mechanism": general, "mechanism_param": p11raw.ulong(len(expected))}))


def _sha3() -> list:
    out = []
    for bits, mechanism in ((224, Mechanism.SHA3_224), (256, Mechanism.SHA3_256), (384, Mechanism.SHA3_384),
                            (512, Mechanism.SHA3_512)):
        records = [r for r in nist_records(f"hashes/SHA3/SHA3_{bits}ShortMsg.rsp", "Len") if int(r["Len"]) % 8 == 0]
        out += [pytest.param(mechanism, r, id=f"{bits}-{r['Len']}") for r in sample(records, 30)]
    return out


@pytest.mark.parametrize(("mechanism", "vector"), _sha3())
def test_sha3(session, mechanism, vector: dict) -> None:
    message = unhex(vector["Msg"])[: int(vector["Len"]) // 8]
    assert session.digest(message, mechanism=mechanism) == unhex(vector["MD"])


# --- KDFs ----------------------------------------------------------------------------------------

def _derived_value(base, mechanism, param: bytes, length: int) -> bytes:
    derived = base.derive_key(KeyType.GENERIC_SECRET, 8 * length, mechanism=mechanism, mechanism_param=param,
                              template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                                        Attribute.TOKEN: False})
    return derived[Attribute.VALUE]


def _hkdf() -> list:
    out = []
    for name in ("SHA1", "SHA256"):
        for r in nist_records(f"KDF/rfc-5869-HKDF-{name}.txt", "COUNT"):
            out.append(pytest.param(r, id=f"{name}-{r['COUNT']}"))
    return out


HKDF_HASHES = {"SHA-1": Mechanism.SHA_1, "SHA-256": Mechanism.SHA256}


def _hkdf_data(session, base, param: bytes, length: int) -> bytes:
    """CKM_HKDF_DATA makes a CKO_DATA object; python-pkcs11's derive_key adds key attributes to the
    template, so C_DeriveKey is called with ctypes (class, token, value length only)."""
    so = ctypes.CDLL(str(p11env.SO))
    raw = ctypes.create_string_buffer(param, len(param))
    cls, token, value_len = ctypes.c_ulong(ObjectClass.DATA), ctypes.c_ubyte(0), ctypes.c_ulong(length)
    attr = CK_ATTRIBUTE
    template = (attr * 3)(attr(Attribute.CLASS, ctypes.cast(ctypes.byref(cls), ctypes.c_void_p), 8),
                          attr(Attribute.TOKEN, ctypes.cast(ctypes.byref(token), ctypes.c_void_p), 1),
                          attr(Attribute.VALUE_LEN, ctypes.cast(ctypes.byref(value_len), ctypes.c_void_p), 8))
    handle = ctypes.c_ulong(0)
    mech = CK_MECHANISM(constants.CKM_HKDF_DATA, ctypes.cast(raw, ctypes.c_void_p), len(param))
    rv = so.C_DeriveKey(ctypes.c_ulong(session.handle), ctypes.byref(mech), ctypes.c_ulong(base.handle),
                        ctypes.cast(template, ctypes.c_void_p), ctypes.c_ulong(3), ctypes.byref(handle))
    assert rv == CKR.OK
    (obj,) = [o for o in session.get_objects({Attribute.CLASS: ObjectClass.DATA}) if o.handle == handle.value]
    value = obj[Attribute.VALUE]
    obj.destroy()
    return value


@pytest.mark.parametrize("vector", _hkdf())
def test_hkdf(session, vector: dict) -> None:
    prf = HKDF_HASHES[vector["Hash"]]
    ikm, salt, info = unhex(vector["IKM"]), unhex(vector["salt"]), unhex(vector["info"])
    base = _secret(session, KeyType.GENERIC_SECRET, ikm)
    length = int(vector["L"])
    salt_type = constants.CKF_HKDF_SALT_DATA if salt else constants.CKF_HKDF_SALT_NULL
    param = p11raw.hkdf(True, True, prf, salt_type, salt, 0, info)
    assert _derived_value(base, CKM_HKDF_DERIVE, param, length) == unhex(vector["OKM"])
    assert _hkdf_data(session, base, param, length) == unhex(vector["OKM"])  # CKM_HKDF_DATA
    # Extract only yields the PRK; expand only from the PRK gives the OKM again.
    prk = _derived_value(base, CKM_HKDF_DERIVE, p11raw.hkdf(True, False, prf, salt_type, salt), len(unhex(vector["PRK"])))
    assert prk == unhex(vector["PRK"])
    prk_key = _secret(session, KeyType.GENERIC_SECRET, prk)
    assert _derived_value(prk_key, CKM_HKDF_DERIVE, p11raw.hkdf(False, True, prf, 0, b"", 0, info), length) \
        == unhex(vector["OKM"])
    if salt:  # the same salt as a key (CKF_HKDF_SALT_KEY)
        salt_key = _secret(session, KeyType.GENERIC_SECRET, salt)
        param = p11raw.hkdf(True, True, prf, constants.CKF_HKDF_SALT_KEY, b"", salt_key.handle, info)
        assert _derived_value(base, CKM_HKDF_DERIVE, param, length) == unhex(vector["OKM"])


KBKDF_PRFS = {"HMAC_SHA1": Mechanism.SHA_1_HMAC, "HMAC_SHA224": Mechanism.SHA224_HMAC,
              "HMAC_SHA256": Mechanism.SHA256_HMAC, "HMAC_SHA384": Mechanism.SHA384_HMAC,
              "HMAC_SHA512": Mechanism.SHA512_HMAC, "CMAC_AES128": Mechanism.AES_CMAC,
              "CMAC_AES192": Mechanism.AES_CMAC, "CMAC_AES256": Mechanism.AES_CMAC}


def _kbkdf() -> list:
    records = [r for r in nist_records("KDF/nist-800-108-KBKDF-CTR.txt", "COUNT")
               if r.get("PRF") in KBKDF_PRFS and r.get("CTRLOCATION") in ("BEFORE_FIXED", "AFTER_FIXED")
               and int(r["L"]) % 8 == 0]
    return [pytest.param(r, id=f"{r['PRF']}-{r['CTRLOCATION']}-{r['RLEN']}-{r['COUNT']}") for r in sample(records, 60)]


@pytest.mark.parametrize("vector", _kbkdf())
def test_kbkdf_counter(session, vector: dict) -> None:
    prf = KBKDF_PRFS[vector["PRF"]]
    ki = unhex(vector["KI"])
    base = _aes(session, ki) if prf == Mechanism.AES_CMAC else _secret(session, KeyType.GENERIC_SECRET, ki)
    width = int(vector["RLEN"].split("_")[0])
    counter = (constants.CK_SP800_108_ITERATION_VARIABLE, CK_SP800_108_COUNTER_FORMAT(0, width))
    fixed = (constants.CK_SP800_108_BYTE_ARRAY, unhex(vector["FixedInputData"]))
    items = [counter, fixed] if vector["CTRLOCATION"] == "BEFORE_FIXED" else [fixed, counter]
    length = int(vector["L"]) // 8
    assert _derived_value(base, CKM_SP800_108_COUNTER_KDF, p11raw.sp800_108(prf, items), length) == unhex(vector["KO"])


def _pbkdf2() -> list:
    return [pytest.param(r, id=r["COUNT"]) for r in nist_records("KDF/rfc-6070-PBKDF2-SHA1.txt", "COUNT")
            if int(r["ITERATIONS"]) <= 4096]


@pytest.mark.parametrize("vector", _pbkdf2())
def test_pbkdf2(session, vector: dict) -> None:
    password, salt = vector["PASSWORD"].encode().replace(b"\\0", b"\0"), vector["SALT"].encode().replace(b"\\0", b"\0")
    length = int(vector["LENGTH"])
    param = p11raw.pbkd2(password, salt, int(vector["ITERATIONS"]), constants.CKP_PKCS5_PBKD2_HMAC_SHA1)
    key = session.generate_key(KeyType.GENERIC_SECRET, 8 * length, mechanism=Mechanism.PKCS5_PBKD2,
                               mechanism_param=param,
                               template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                                         Attribute.TOKEN: False})
    assert key[Attribute.VALUE] == unhex(vector["DERIVED_KEY"])
