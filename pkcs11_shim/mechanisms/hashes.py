"""Which hash each PKCS#11 number names: digest mechanisms, MGF1 variants, ECDH KDFs.

The values are `emulator.crypto.digest` hash names; the registry rows translate numbers through these
tables and never branch on them.
"""

from __future__ import annotations

from .. import constants
from ..constants import KDF, MGF, Mechanism

#: Digest mechanism -> hash name. Also the `hashAlg` values OAEP and PSS accept.
DIGEST_MECHANISMS: dict[int, str] = {
    Mechanism.SHA_1: "SHA1",
    Mechanism.SHA224: "SHA224",
    Mechanism.SHA256: "SHA256",
    Mechanism.SHA384: "SHA384",
    Mechanism.SHA512: "SHA512",
    constants.CKM_SHA512_224: "SHA512_224",
    constants.CKM_SHA512_256: "SHA512_256",
    Mechanism.SHA3_224: "SHA3_224",
    Mechanism.SHA3_256: "SHA3_256",
    Mechanism.SHA3_384: "SHA3_384",
    Mechanism.SHA3_512: "SHA3_512",
}

#: Digest mechanisms offered for C_Digest only: MD5 (RFC 1321) is broken for collisions, so no
#: parameter (OAEP, PSS, HKDF, SP 800-108) may name it.
LEGACY_DIGESTS: dict[int, str] = {
    constants.CKM_MD5: "MD5",
}

#: CKG_MGF1_* -> hash name.
MGF1_HASHES: dict[int, str] = {
    MGF.SHA1: "SHA1",
    MGF.SHA224: "SHA224",
    MGF.SHA256: "SHA256",
    MGF.SHA384: "SHA384",
    MGF.SHA512: "SHA512",
    MGF.SHA3_224: "SHA3_224",
    MGF.SHA3_256: "SHA3_256",
    MGF.SHA3_384: "SHA3_384",
    MGF.SHA3_512: "SHA3_512",
}

#: CKD_* X9.63 KDFs -> hash name; CKD_NULL is handled by the ECDH row itself.
X963_KDF_HASHES: dict[int, str] = {
    KDF.SHA1: "SHA1",
    KDF.SHA224: "SHA224",
    KDF.SHA256: "SHA256",
    KDF.SHA384: "SHA384",
    KDF.SHA512: "SHA512",
    KDF.SHA3_224_KDF: "SHA3_224",
    KDF.SHA3_256_KDF: "SHA3_256",
    KDF.SHA3_384_KDF: "SHA3_384",
    KDF.SHA3_512_KDF: "SHA3_512",
}
