"""The numbers the mechanism rows need that python-pkcs11's enums lack, from `constants`."""

from ..constants import (  # noqa: F401  (re-exported for the family modules)
    CKK_EC_MONTGOMERY,
    CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
    CKM_RSA_AES_KEY_WRAP,
    CKM_SHA512_224,
    CKM_SHA512_256,
    CKZ_DATA_SPECIFIED,
)
