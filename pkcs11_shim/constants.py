"""PKCS#11 numbers.

python-pkcs11's enums are the one source for object classes, attributes, key types, mechanisms and
flags; this module re-exports them and adds only what python-pkcs11 does not define: return values
(CKR_*), a few 3.x flags and the nCipher vendor values. Never define a second copy of a number
python-pkcs11 already has.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from enum import IntEnum, IntFlag


class _PackageOnFirstUse(types.ModuleType):
    """python-pkcs11's `pkcs11` package, its `__init__` run on first use of a name it defines.

    Importing `pkcs11.constants` runs the package's `__init__`, which imports its util modules and
    asn1crypto with them (~20 ms a process pays before its first answer). The enum modules need none
    of that, so in a process that has not imported python-pkcs11 (a C host) the package is entered in
    `sys.modules` with its `__path__` only; the import system loads the enum submodules into it as
    usual, and the first attribute it does not have yet (`pkcs11.lib`, `pkcs11.Attribute`, ...) runs
    the real `__init__` in place, so a later `import pkcs11` sees the whole package.
    """

    # Re-entrant: the `__init__` it runs reads names of its own package; another thread that asks
    # meanwhile waits for the whole package, as it would for any module being imported.
    _lock = threading.RLock()
    _ran = False

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        with _PackageOnFirstUse._lock:
            if not _PackageOnFirstUse._ran:
                _PackageOnFirstUse._ran = True
                try:
                    self.__spec__.loader.exec_module(self)
                except BaseException:
                    _PackageOnFirstUse._ran = False
                    raise
                self.__class__ = types.ModuleType  # from here on an ordinary, complete package
        return object.__getattribute__(self, name)


def _python_pkcs11_package() -> None:
    if "pkcs11" in sys.modules:
        return  # a python-pkcs11 host: its enums are the ones every caller compares with
    spec = importlib.util.find_spec("pkcs11")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # let the plain import below report what is missing
    package = importlib.util.module_from_spec(spec)
    package.__class__ = _PackageOnFirstUse
    sys.modules["pkcs11"] = package


_python_pkcs11_package()

from pkcs11.constants import (  # noqa: E402,F401  (re-exported)
    Attribute,
    CertificateType,
    MechanismFlag,
    ObjectClass,
    SlotFlag,
    TokenFlag,
    UserType,
)
from pkcs11.mechanisms import MGF, KDF, KeyType, Mechanism  # noqa: E402,F401  (re-exported)


class CKR(IntEnum):
    """Return values, PKCS#11 3.0 §5.1 (python-pkcs11 keeps them only in its Cython layer)."""

    OK = 0x000
    CANCEL = 0x001
    HOST_MEMORY = 0x002
    SLOT_ID_INVALID = 0x003
    GENERAL_ERROR = 0x005
    FUNCTION_FAILED = 0x006
    ARGUMENTS_BAD = 0x007
    NO_EVENT = 0x008
    NEED_TO_CREATE_THREADS = 0x009
    CANT_LOCK = 0x00A
    ATTRIBUTE_READ_ONLY = 0x010
    ATTRIBUTE_SENSITIVE = 0x011
    ATTRIBUTE_TYPE_INVALID = 0x012
    ATTRIBUTE_VALUE_INVALID = 0x013
    ACTION_PROHIBITED = 0x01B
    DATA_INVALID = 0x020
    DATA_LEN_RANGE = 0x021
    DEVICE_ERROR = 0x030
    DEVICE_MEMORY = 0x031
    DEVICE_REMOVED = 0x032
    ENCRYPTED_DATA_INVALID = 0x040
    ENCRYPTED_DATA_LEN_RANGE = 0x041
    AEAD_DECRYPT_FAILED = 0x042
    FUNCTION_CANCELED = 0x050
    FUNCTION_NOT_PARALLEL = 0x051
    FUNCTION_NOT_SUPPORTED = 0x054
    KEY_HANDLE_INVALID = 0x060
    KEY_SIZE_RANGE = 0x062
    KEY_TYPE_INCONSISTENT = 0x063
    KEY_NOT_NEEDED = 0x064
    KEY_CHANGED = 0x065
    KEY_NEEDED = 0x066
    KEY_INDIGESTIBLE = 0x067
    KEY_FUNCTION_NOT_PERMITTED = 0x068
    KEY_NOT_WRAPPABLE = 0x069
    KEY_UNEXTRACTABLE = 0x06A
    MECHANISM_INVALID = 0x070
    MECHANISM_PARAM_INVALID = 0x071
    OBJECT_HANDLE_INVALID = 0x082
    OPERATION_ACTIVE = 0x090
    OPERATION_NOT_INITIALIZED = 0x091
    PIN_INCORRECT = 0x0A0
    PIN_INVALID = 0x0A1
    PIN_LEN_RANGE = 0x0A2
    PIN_EXPIRED = 0x0A3
    PIN_LOCKED = 0x0A4
    SESSION_CLOSED = 0x0B0
    SESSION_COUNT = 0x0B1
    SESSION_HANDLE_INVALID = 0x0B3
    SESSION_PARALLEL_NOT_SUPPORTED = 0x0B4
    SESSION_READ_ONLY = 0x0B5
    SESSION_EXISTS = 0x0B6
    SESSION_READ_ONLY_EXISTS = 0x0B7
    SESSION_READ_WRITE_SO_EXISTS = 0x0B8
    SIGNATURE_INVALID = 0x0C0
    SIGNATURE_LEN_RANGE = 0x0C1
    TEMPLATE_INCOMPLETE = 0x0D0
    TEMPLATE_INCONSISTENT = 0x0D1
    TOKEN_NOT_PRESENT = 0x0E0
    TOKEN_NOT_RECOGNIZED = 0x0E1
    TOKEN_WRITE_PROTECTED = 0x0E2
    UNWRAPPING_KEY_HANDLE_INVALID = 0x0F0
    UNWRAPPING_KEY_SIZE_RANGE = 0x0F1
    UNWRAPPING_KEY_TYPE_INCONSISTENT = 0x0F2
    USER_ALREADY_LOGGED_IN = 0x100
    USER_NOT_LOGGED_IN = 0x101
    USER_PIN_NOT_INITIALIZED = 0x102
    USER_TYPE_INVALID = 0x103
    USER_ANOTHER_ALREADY_LOGGED_IN = 0x104
    USER_TOO_MANY_TYPES = 0x105
    WRAPPED_KEY_INVALID = 0x110
    WRAPPED_KEY_LEN_RANGE = 0x112
    WRAPPING_KEY_HANDLE_INVALID = 0x113
    WRAPPING_KEY_SIZE_RANGE = 0x114
    WRAPPING_KEY_TYPE_INCONSISTENT = 0x115
    RANDOM_SEED_NOT_SUPPORTED = 0x120
    RANDOM_NO_RNG = 0x121
    DOMAIN_PARAMS_INVALID = 0x130
    CURVE_NOT_SUPPORTED = 0x140
    BUFFER_TOO_SMALL = 0x150
    SAVED_STATE_INVALID = 0x160
    INFORMATION_SENSITIVE = 0x170
    STATE_UNSAVEABLE = 0x180
    CRYPTOKI_NOT_INITIALIZED = 0x190
    CRYPTOKI_ALREADY_INITIALIZED = 0x191
    MUTEX_BAD = 0x1A0
    MUTEX_NOT_LOCKED = 0x1A1
    NEW_PIN_MODE = 0x1B0
    NEXT_OTP = 0x1B1
    EXCEEDED_MAX_ITERATIONS = 0x1B5
    FIPS_SELF_TEST_FAILED = 0x1B6
    LIBRARY_LOAD_FAILED = 0x1B7
    PIN_TOO_WEAK = 0x1B8
    PUBLIC_KEY_INVALID = 0x1B9
    FUNCTION_REJECTED = 0x200
    TOKEN_RESOURCE_EXCEEDED = 0x201
    OPERATION_CANCEL_FAILED = 0x202
    # PKCS#11 3.2 §5.1.
    KEY_EXHAUSTED = 0x203
    PENDING = 0x204
    SESSION_ASYNC_NOT_SUPPORTED = 0x205
    SEED_RANDOM_REQUIRED = 0x206
    OPERATION_NOT_VALIDATED = 0x207
    TOKEN_NOT_INITIALIZED = 0x208
    PARAMETER_SET_NOT_SUPPORTED = 0x209
    VENDOR_DEFINED = 0x80000000


class InitFlag(IntFlag):
    """CK_C_INITIALIZE_ARGS.flags (§5.4)."""

    LIBRARY_CANT_CREATE_OS_THREADS = 0x1
    OS_LOCKING_OK = 0x2


class SessionFlag(IntFlag):
    """CK_SESSION_INFO.flags and C_OpenSession flags (§5.6)."""

    RW_SESSION = 0x2
    SERIAL_SESSION = 0x4


class SessionState(IntEnum):
    """CK_STATE (§5.6)."""

    RO_PUBLIC_SESSION = 0
    RO_USER_FUNCTIONS = 1
    RW_PUBLIC_SESSION = 2
    RW_USER_FUNCTIONS = 3
    RW_SO_FUNCTIONS = 4


class InterfaceFlag(IntFlag):
    """CK_INTERFACE.flags (3.0 §5.4)."""

    FORK_SAFE = 0x1


#: CK_USER_TYPE for re-authentication on CKA_ALWAYS_AUTHENTICATE keys (python-pkcs11's UserType lacks it).
CKU_CONTEXT_SPECIFIC = 2
#: C_WaitForSlotEvent flag (§5.5).
CKF_DONT_BLOCK = 0x1
#: 3.0 message-based calls: C_EncryptMessageNext flag marking the last part.
CKF_END_OF_MESSAGE = 0x1
#: C_SessionCancel flags are the CKF_* mechanism flags of the operations to cancel, and this one
#: for a C_FindObjectsInit search (3.0 §5.6.9).
CKF_FIND_OBJECTS = 0x40
#: CK_UNAVAILABLE_INFORMATION (§3.6): (CK_ULONG)~0 on LP64.
CK_UNAVAILABLE_INFORMATION = 0xFFFFFFFFFFFFFFFF
#: CK_EFFECTIVELY_INFINITE for session counts in CK_TOKEN_INFO.
CK_EFFECTIVELY_INFINITE = 0
#: Bit set in attribute types whose value is an array of CK_ATTRIBUTE (CKA_WRAP_TEMPLATE etc.).
CKF_ARRAY_ATTRIBUTE = 0x40000000

#: nCipher vendor base (nShield's cknfast headers): CKA_NCIPHER = VENDOR | base.
NFCK_VENDOR_NCIPHER = 0xDE436972
CKA_VENDOR_DEFINED = 0x80000000
CKA_NCIPHER = CKA_VENDOR_DEFINED | NFCK_VENDOR_NCIPHER


class NCipherAttribute(IntEnum):
    """nShield's vendor attributes that tools such as cklist print."""

    NFKM_APPNAME = CKA_NCIPHER + 0x3
    NFKM_HASH = CKA_NCIPHER + 0x18
    NFKM_ID = CKA_NCIPHER + 0x102

#: Ours, not nShield's (none is public): in a C_CopyObject template with CKA_WRAP_WITH_TRUSTED made
#: by the accelerator's SO, the key hash (20 bytes) of the one trusted wrapping key the copy may be
#: exported under (management.copy_object; KeyTransferRemote -ModifyAcls).
CKA_SOFTSHIELD_WRAP_KEY_HASH = CKA_VENDOR_DEFINED | 0x536F0001

# Numbers python-pkcs11 0.10.1's enums lack (PKCS#11 3.0 pkcs11t.h values).
CKM_SHA512_224 = 0x00000048
CKM_SHA512_256 = 0x0000004C
CKM_RSA_AES_KEY_WRAP = 0x00001054
CKM_EC_MONTGOMERY_KEY_PAIR_GEN = 0x00001056
CKK_EC_MONTGOMERY = 0x00000041
CKA_NAME_HASH_ALGORITHM = 0x0000008C
CKA_PUBLIC_KEY_INFO = 0x00000129
#: CK_RSA_PKCS_OAEP_SOURCE_TYPE (§2.1.8).
CKZ_DATA_SPECIFIED = 0x00000001
# More 3.0 numbers python-pkcs11 0.10.1 lacks (pkcs11t.h 3.0) for the mechanisms the registry offers.
CKM_ECDSA_SHA3_224 = 0x00001047
CKM_ECDSA_SHA3_256 = 0x00001048
CKM_ECDSA_SHA3_384 = 0x00001049
CKM_ECDSA_SHA3_512 = 0x0000104A
CKM_AES_XTS = 0x00001071
CKM_AES_XTS_KEY_GEN = 0x00001072
CKM_SP800_108_COUNTER_KDF = 0x000003AC
CKM_HKDF_DERIVE = 0x0000402A
CKM_HKDF_DATA = 0x0000402B
CKM_HKDF_KEY_GEN = 0x0000402C
CKK_AES_XTS = 0x00000035
CKK_HKDF = 0x00000042
#: SHA-512/224 and SHA-512/256 HMAC (pkcs11t.h 3.0; the digests are CKM_SHA512_224/256 above).
CKM_SHA512_224_HMAC = 0x00000049
CKM_SHA512_224_HMAC_GENERAL = 0x0000004A
CKM_SHA512_256_HMAC = 0x0000004D
CKM_SHA512_256_HMAC_GENERAL = 0x0000004E
CKK_SHA512_224_HMAC = 0x00000043
CKK_SHA512_256_HMAC = 0x00000044
# The legacy set (single DES, MD5): python-pkcs11 0.10.1 keeps these numbers only as deprecated,
# underscore-named members; they are named here once, from its enums.
CKM_MD5 = int(Mechanism["_MD5"])
CKM_MD5_HMAC = int(Mechanism["_MD5_HMAC"])
CKM_MD5_HMAC_GENERAL = int(Mechanism["_MD5_HMAC_GENERAL"])
CKM_DES_KEY_GEN = int(Mechanism["_DES_KEY_GEN"])
CKM_DES_ECB = int(Mechanism["_DES_ECB"])
CKM_DES_CBC = int(Mechanism["_DES_CBC"])
CKM_DES_CBC_PAD = int(Mechanism["_DES_CBC_PAD"])
CKK_DES = int(KeyType["_DES"])
CKK_MD5_HMAC = int(KeyType["_MD5_HMAC"])
#: CK_HKDF_PARAMS.ulSaltType (3.0 §2.43.1).
CKF_HKDF_SALT_NULL = 0x1
CKF_HKDF_SALT_DATA = 0x2
CKF_HKDF_SALT_KEY = 0x4
#: CK_PRF_DATA_TYPE of CK_SP800_108_KDF_PARAMS data parameters (§2.42.1).
CK_SP800_108_ITERATION_VARIABLE = 0x1
CK_SP800_108_OPTIONAL_COUNTER = 0x2
CK_SP800_108_DKM_LENGTH = 0x3
CK_SP800_108_BYTE_ARRAY = 0x4
CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS = 0x1
CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS = 0x2
#: CK_PKCS5_PBKD2 salt source and PRFs (§2.36.x).
CKZ_SALT_SPECIFIED = 0x1
CKP_PKCS5_PBKD2_HMAC_SHA1 = 0x1
CKP_PKCS5_PBKD2_HMAC_SHA224 = 0x3
CKP_PKCS5_PBKD2_HMAC_SHA256 = 0x4
CKP_PKCS5_PBKD2_HMAC_SHA384 = 0x5
CKP_PKCS5_PBKD2_HMAC_SHA512 = 0x6
CKP_PKCS5_PBKD2_HMAC_SHA512_224 = 0x7
CKP_PKCS5_PBKD2_HMAC_SHA512_256 = 0x8
#: CK_GENERATOR_FUNCTION of the message-based AEAD parameters (3.0 §2.14.x).
CKG_NO_GENERATE = 0x0
CKG_GENERATE = 0x1
CKG_GENERATE_COUNTER = 0x2
CKG_GENERATE_RANDOM = 0x3
#: 3.0 CK_MECHANISM_INFO flags for message-based operations.
CKF_MESSAGE_ENCRYPT = 0x2
CKF_MESSAGE_DECRYPT = 0x4
CKF_MESSAGE_SIGN = 0x8
CKF_MESSAGE_VERIFY = 0x10

# PKCS#11 3.2 numbers python-pkcs11 0.10.1 lacks (its ML-DSA/ML-KEM enums are there).
CKM_HASH_ML_DSA = 0x0000001F
CKM_HASH_ML_DSA_SHA224 = 0x00000023
CKM_HASH_ML_DSA_SHA256 = 0x00000024
CKM_HASH_ML_DSA_SHA384 = 0x00000025
CKM_HASH_ML_DSA_SHA512 = 0x00000026
CKM_HASH_ML_DSA_SHA3_224 = 0x00000027
CKM_HASH_ML_DSA_SHA3_256 = 0x00000028
CKM_HASH_ML_DSA_SHA3_384 = 0x00000029
CKM_HASH_ML_DSA_SHA3_512 = 0x0000002A
CKM_HASH_ML_DSA_SHAKE128 = 0x0000002B
CKM_HASH_ML_DSA_SHAKE256 = 0x0000002C
#: CK_HEDGE_TYPE (3.2 §6.x, CK_SIGN_ADDITIONAL_CONTEXT.hedgeVariant).
CKH_HEDGE_PREFERRED = 0x0
CKH_HEDGE_REQUIRED = 0x1
CKH_DETERMINISTIC_REQUIRED = 0x2
#: C_GetSessionValidationFlags type (3.2 §5.6.x).
CKS_LAST_VALIDATION_OK = 0x1
#: C_OpenSession / CK_SESSION_INFO flag of asynchronous sessions (3.2), never granted here.
CKF_ASYNC_SESSION = 0x8
