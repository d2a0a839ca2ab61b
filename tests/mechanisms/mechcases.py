"""The round-trip table: one or more cases per registry row (test_roundtrips checks every row has one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import CKH_HEDGE_REQUIRED, CKM_HASH_ML_DSA, KDF, MGF, Mechanism
from pkcs11_shim.mechanisms import params
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.mldsa import HASH_ML_DSA, SignAdditionalContext

DATA = bytes(range(48))  # three AES blocks, six DES blocks


@dataclass(frozen=True)
class Case:
    mechanism: int
    key: str = ""  # name in the `keys` fixture; asymmetric rows use its public half where the spec says
    param: Any = None
    data: bytes = DATA
    multipart: bool = True  # False: the row must refuse update/final (single-part only)
    deterministic: bool = True  # the same input gives the same output (signatures, encryption)
    wraps_private: bool = False  # wrap/unwrap of a PKCS#8 private key is supported
    digest_len: int = 0

    def id(self) -> str:
        from pkcs11_shim.mechanisms.registry import ckm_name

        return f"{ckm_name(self.mechanism)}-{self.key}" + (f"-{self.param!r}"[:40] if self.param is not None else "")


def public_of(material: Any) -> Any:
    return material if isinstance(material, SecretMaterial) else material.public()


IV16, IV8 = bytes(range(16)), bytes(range(8))
OAEP_SHA1 = params.OaepParams(Mechanism.SHA_1, MGF.SHA1, constants.CKZ_DATA_SPECIFIED, b"")
OAEP_SHA256_LABEL = params.OaepParams(Mechanism.SHA256, MGF.SHA256, constants.CKZ_DATA_SPECIFIED, b"a label")
OAEP_SHA512_MGF224 = params.OaepParams(Mechanism.SHA512, MGF.SHA224, constants.CKZ_DATA_SPECIFIED, b"")


def pss(hash_mech: int, mgf: int, salt: int) -> params.PssParams:
    return params.PssParams(hash_mech, mgf, salt)


SIGNED_DIGESTS = {Mechanism.SHA_1: 20, Mechanism.SHA224: 28, Mechanism.SHA256: 32, Mechanism.SHA384: 48,
                  Mechanism.SHA512: 64}

CASES: list[Case] = [
    # Digests.
    *(Case(m) for m in (Mechanism.SHA_1, Mechanism.SHA224, Mechanism.SHA256, Mechanism.SHA384, Mechanism.SHA512,
                        constants.CKM_SHA512_224, constants.CKM_SHA512_256, Mechanism.SHA3_224, Mechanism.SHA3_256,
                        Mechanism.SHA3_384, Mechanism.SHA3_512)),
    # HMAC and CMAC.
    *(Case(m, "hmac64") for m in (Mechanism.SHA_1_HMAC, Mechanism.SHA224_HMAC, Mechanism.SHA256_HMAC,
                                  Mechanism.SHA384_HMAC, Mechanism.SHA512_HMAC, Mechanism.SHA3_224_HMAC,
                                  Mechanism.SHA3_256_HMAC, Mechanism.SHA3_384_HMAC, Mechanism.SHA3_512_HMAC)),
    *(Case(m, "generic20", 12) for m in (Mechanism.SHA_1_HMAC_GENERAL, Mechanism.SHA224_HMAC_GENERAL,
                                         Mechanism.SHA256_HMAC_GENERAL, Mechanism.SHA384_HMAC_GENERAL,
                                         Mechanism.SHA512_HMAC_GENERAL, Mechanism.SHA3_224_HMAC_GENERAL,
                                         Mechanism.SHA3_256_HMAC_GENERAL, Mechanism.SHA3_384_HMAC_GENERAL,
                                         Mechanism.SHA3_512_HMAC_GENERAL)),
    Case(Mechanism.AES_CMAC, "aes128"),
    Case(Mechanism.AES_CMAC, "aes256"),
    Case(Mechanism.AES_CMAC_GENERAL, "aes192", 4),
    # Key generation rows (the `keys` fixture made its material through them; checked again here).
    Case(Mechanism.GENERIC_SECRET_KEY_GEN),
    Case(Mechanism.AES_KEY_GEN),
    Case(Mechanism.DES3_KEY_GEN),
    Case(Mechanism.RSA_PKCS_KEY_PAIR_GEN),
    Case(Mechanism.EC_KEY_PAIR_GEN),
    Case(Mechanism.EC_EDWARDS_KEY_PAIR_GEN),
    Case(constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN),
    # AES.
    *(Case(Mechanism.AES_ECB, k) for k in ("aes128", "aes192", "aes256")),
    *(Case(Mechanism.AES_CBC, k, IV16) for k in ("aes128", "aes256")),
    Case(Mechanism.AES_CBC_PAD, "aes128", IV16, data=DATA[:45], wraps_private=True),
    Case(Mechanism.AES_CBC_PAD, "aes256", IV16, data=DATA, wraps_private=True),
    Case(Mechanism.AES_CTR, "aes128", params.AesCtrParams(128, bytes(16)), data=DATA[:41]),
    Case(Mechanism.AES_CTR, "aes256", params.AesCtrParams(16, bytes(14) + b"\x00\x01"), data=DATA[:41]),
    Case(Mechanism.AES_GCM, "aes128", params.GcmParams(bytes(12), 96, b"header", 128), data=DATA[:41],
         wraps_private=True),
    Case(Mechanism.AES_GCM, "aes256", params.GcmParams(bytes(range(16)), 128, b"", 96), data=DATA,
         wraps_private=True),
    Case(Mechanism.AES_ECB_ENCRYPT_DATA, "aes128", DATA[:32]),
    Case(Mechanism.AES_CBC_ENCRYPT_DATA, "aes256", params.AesCbcEncryptDataParams(IV16, DATA[:32])),
    # AES key wrap family (single-part as ciphers).
    Case(Mechanism.AES_KEY_WRAP, "aes128", data=DATA[:40], multipart=False),
    Case(Mechanism.AES_KEY_WRAP, "aes256", bytes.fromhex("A6A6A6A6A6A6A6A6"), data=DATA[:16], multipart=False),
    Case(Mechanism.AES_KEY_WRAP_PAD, "aes192", data=DATA[:13], multipart=False, wraps_private=True),
    Case(Mechanism.AES_KEY_WRAP_KWP, "aes256", data=DATA[:1], multipart=False, wraps_private=True),
    Case(Mechanism.AES_KEY_WRAP_KWP, "aes128", bytes.fromhex("A65959A6"), data=DATA, multipart=False,
         wraps_private=True),
    # DES3.
    Case(Mechanism.DES3_ECB, "des3"),
    Case(Mechanism.DES3_CBC, "des3", IV8),
    Case(Mechanism.DES3_CBC_PAD, "des3", IV8, data=DATA[:43], wraps_private=True),
    # RSA.
    Case(Mechanism.RSA_PKCS, "rsa2048", data=DATA[:40], multipart=False, deterministic=False),
    Case(Mechanism.RSA_X_509, "rsa2048", data=DATA[:40], multipart=False),
    Case(Mechanism.RSA_PKCS_OAEP, "rsa2048", OAEP_SHA1, multipart=False, deterministic=False),
    Case(Mechanism.RSA_PKCS_OAEP, "rsa2048", OAEP_SHA256_LABEL, multipart=False, deterministic=False),
    Case(Mechanism.RSA_PKCS_OAEP, "rsa2048", OAEP_SHA512_MGF224, multipart=False, deterministic=False),
    Case(Mechanism.RSA_PKCS_PSS, "rsa2048", pss(Mechanism.SHA256, MGF.SHA256, 32), data=DATA[:32],
         multipart=False, deterministic=False),
    Case(Mechanism.RSA_PKCS_PSS, "rsa2048", pss(Mechanism.SHA384, MGF.SHA1, 0), data=DATA[:48],
         multipart=False),  # salt length 0: PSS is deterministic
    *(Case(m, "rsa2048") for m in (Mechanism.SHA1_RSA_PKCS, Mechanism.SHA224_RSA_PKCS, Mechanism.SHA256_RSA_PKCS,
                                   Mechanism.SHA384_RSA_PKCS, Mechanism.SHA512_RSA_PKCS,
                                   Mechanism.SHA3_224_RSA_PKCS, Mechanism.SHA3_256_RSA_PKCS,
                                   Mechanism.SHA3_384_RSA_PKCS, Mechanism.SHA3_512_RSA_PKCS)),
    *(Case(m, "rsa2048", pss(h, mgf, salt), deterministic=False) for m, h, mgf, salt in (
        (Mechanism.SHA1_RSA_PKCS_PSS, Mechanism.SHA_1, MGF.SHA1, 20),
        (Mechanism.SHA224_RSA_PKCS_PSS, Mechanism.SHA224, MGF.SHA224, 28),
        (Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.SHA256, MGF.SHA256, 32),
        (Mechanism.SHA384_RSA_PKCS_PSS, Mechanism.SHA384, MGF.SHA512, 48),
        (Mechanism.SHA512_RSA_PKCS_PSS, Mechanism.SHA512, MGF.SHA512, 64),
        (Mechanism.SHA3_224_RSA_PKCS_PSS, Mechanism.SHA3_224, MGF.SHA3_224, 28),
        (Mechanism.SHA3_256_RSA_PKCS_PSS, Mechanism.SHA3_256, MGF.SHA3_256, 32),
        (Mechanism.SHA3_384_RSA_PKCS_PSS, Mechanism.SHA3_384, MGF.SHA3_384, 48),
        (Mechanism.SHA3_512_RSA_PKCS_PSS, Mechanism.SHA3_512, MGF.SHA3_512, 64))),
    Case(constants.CKM_RSA_AES_KEY_WRAP, "rsa2048", params.RsaAesKeyWrapParams(256, OAEP_SHA256_LABEL),
         wraps_private=True, deterministic=False),
    Case(constants.CKM_RSA_AES_KEY_WRAP, "rsa2048", params.RsaAesKeyWrapParams(128, OAEP_SHA1),
         wraps_private=True, deterministic=False),
    # EC.
    *(Case(Mechanism.ECDSA, k, data=DATA[:n], multipart=False, deterministic=False)
      for k, n in (("p256", 32), ("p256", 20), ("p256", 48), ("p384", 48), ("p521", 64), ("p521", 28), ("k256", 32))),
    *(Case(m, k, deterministic=False) for m in (Mechanism.ECDSA_SHA1, Mechanism.ECDSA_SHA224, Mechanism.ECDSA_SHA256,
                                                Mechanism.ECDSA_SHA384, Mechanism.ECDSA_SHA512)
      for k in ("p256", "p521")),
    Case(Mechanism.ECDSA_SHA256, "k256", deterministic=False),
    Case(Mechanism.ECDH1_DERIVE, "p256", params.Ecdh1DeriveParams(KDF.NULL, b"", b"")),
    Case(Mechanism.ECDH1_DERIVE, "p384", params.Ecdh1DeriveParams(KDF.SHA256, b"shared info", b"")),
    Case(Mechanism.ECDH1_DERIVE, "x25519", params.Ecdh1DeriveParams(KDF.SHA3_256_KDF, b"", b"")),
    Case(Mechanism.EDDSA, "ed25519"),
    Case(Mechanism.EDDSA, "ed448", params.EddsaParams(False, b"")),
    # Issue 4 additions. Derive and parameterised generate rows are checked in test_kdf_rows.
    Case(Mechanism.AES_OFB, "aes128", IV16, data=DATA[:41]),
    Case(Mechanism.AES_CFB8, "aes192", IV16, data=DATA[:41]),
    Case(Mechanism.AES_CFB128, "aes256", IV16, data=DATA[:41]),
    Case(Mechanism.AES_CTS, "aes128", IV16, data=DATA[:41]),
    Case(Mechanism.AES_CTS, "aes256", IV16, data=DATA[:32]),
    Case(constants.CKM_AES_XTS, "xts64", IV16, data=DATA[:41], multipart=False),
    Case(constants.CKM_AES_XTS_KEY_GEN),
    Case(Mechanism.AES_CCM, "aes128", params.CcmParams(41, bytes(12), b"header", 16), data=DATA[:41]),
    Case(Mechanism.AES_CCM, "aes256", params.CcmParams(48, bytes(7), b"", 8), data=DATA),
    Case(Mechanism.AES_MAC, "aes128"),
    Case(Mechanism.AES_MAC_GENERAL, "aes256", 12, data=DATA[:41]),
    Case(Mechanism.DES3_CMAC, "des3"),
    Case(Mechanism.DES3_CMAC_GENERAL, "des3", 5),
    Case(Mechanism.AES_KEY_WRAP_PKCS7, "aes256", data=DATA[:13], multipart=False, wraps_private=True),
    *(Case(m, "p256", deterministic=False) for m in (constants.CKM_ECDSA_SHA3_224, constants.CKM_ECDSA_SHA3_256,
                                                     constants.CKM_ECDSA_SHA3_384, constants.CKM_ECDSA_SHA3_512)),
    Case(Mechanism.ECDH1_COFACTOR_DERIVE, "p256", params.Ecdh1DeriveParams(KDF.NULL, b"", b"")),
    *(Case(m, "generic32") for m in (constants.CKM_HKDF_DERIVE, constants.CKM_HKDF_DATA, constants.CKM_HKDF_KEY_GEN,
                                     constants.CKM_SP800_108_COUNTER_KDF, Mechanism.PKCS5_PBKD2,
                                     Mechanism.CONCATENATE_BASE_AND_KEY, Mechanism.CONCATENATE_BASE_AND_DATA,
                                     Mechanism.CONCATENATE_DATA_AND_BASE, Mechanism.XOR_BASE_AND_DATA,
                                     Mechanism.EXTRACT_KEY_FROM_KEY)),
    # SHA-512/t HMACs and the legacy set (MD5, HMAC-MD5, single DES).
    Case(constants.CKM_SHA512_224_HMAC, "hmac64"),
    Case(constants.CKM_SHA512_256_HMAC, "hmac64"),
    Case(constants.CKM_SHA512_224_HMAC_GENERAL, "generic20", 12),
    Case(constants.CKM_SHA512_256_HMAC_GENERAL, "generic20", 32),
    Case(constants.CKM_MD5),
    Case(constants.CKM_MD5_HMAC, "hmac64"),
    Case(constants.CKM_MD5_HMAC_GENERAL, "generic20", 10),
    Case(constants.CKM_DES_KEY_GEN),
    Case(constants.CKM_DES_ECB, "des"),
    Case(constants.CKM_DES_CBC, "des", IV8),
    Case(constants.CKM_DES_CBC_PAD, "des", IV8, data=DATA[:43], wraps_private=True),
    # PKCS#11 3.2 ML-DSA (always hedged: not deterministic) and ML-KEM (covered in tests/pqc).
    Case(Mechanism.ML_DSA_KEY_PAIR_GEN),
    Case(Mechanism.ML_DSA, "mldsa44", deterministic=False),
    Case(Mechanism.ML_DSA, "mldsa44", SignAdditionalContext(CKH_HEDGE_REQUIRED, b"context"), deterministic=False),
    Case(CKM_HASH_ML_DSA, "mldsa44", SignAdditionalContext(0, b"", Mechanism.SHA256), data=DATA[:32],
         multipart=False, deterministic=False),
    *(Case(m, "mldsa44", deterministic=False) for m in HASH_ML_DSA),
    Case(Mechanism.ML_KEM_KEY_PAIR_GEN),
    Case(Mechanism.ML_KEM, "mlkem768"),
]

#: Rows whose derive/generate need parameters or a second key: test_kdf_rows covers them.
KDF_ROWS = frozenset({constants.CKM_HKDF_DERIVE, constants.CKM_HKDF_DATA, constants.CKM_HKDF_KEY_GEN,
                      constants.CKM_SP800_108_COUNTER_KDF, Mechanism.PKCS5_PBKD2,
                      Mechanism.CONCATENATE_BASE_AND_KEY, Mechanism.CONCATENATE_BASE_AND_DATA,
                      Mechanism.CONCATENATE_DATA_AND_BASE, Mechanism.XOR_BASE_AND_DATA,
                      Mechanism.EXTRACT_KEY_FROM_KEY})
