/* A PKCS#11 2.40 module that does no work: the measuring instrument of bench/floorprobe.py.
 *
 * Every function answers at once, so timing python-pkcs11 against this module measures the
 * client's own cost per call (building templates and mechanisms in Python, make_object()'s two
 * C_GetAttributeValue calls and its type() per object, destroy()): the floor under any real
 * library's figure. It keeps no object table: a handle's low two bits say what kind of key it
 * is, which is all C_GetAttributeValue needs. Functions the probe never reaches answer
 * CKR_FUNCTION_NOT_SUPPORTED; pointers are checked so that a misuse returns CKR_ARGUMENTS_BAD.
 *
 * Built by bench/floorprobe.py: cc -O2 -shared -fPIC -o build/bench/libnullmodule.so nullmodule.c
 */

#include <string.h>

#include "../../native/pkcs11_types.h"

#define CKR_OK 0x000UL
#define CKR_SLOT_ID_INVALID 0x003UL
#define CKR_ARGUMENTS_BAD 0x007UL
#define CKR_ATTRIBUTE_TYPE_INVALID 0x012UL
#define CKR_FUNCTION_NOT_SUPPORTED 0x054UL
#define CKR_MECHANISM_INVALID 0x070UL
#define CKR_OBJECT_HANDLE_INVALID 0x082UL
#define CKR_SESSION_HANDLE_INVALID 0x0B3UL
#define CKR_SESSION_PARALLEL_NOT_SUPPORTED 0x0B4UL
#define CKR_BUFFER_TOO_SMALL 0x150UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define CK_UNAVAILABLE_INFORMATION (~0UL)

#define CKF_TOKEN_PRESENT 0x001UL
#define CKF_LOGIN_REQUIRED 0x004UL
#define CKF_USER_PIN_INITIALIZED 0x008UL
#define CKF_TOKEN_INITIALIZED 0x400UL
#define CKF_RW_SESSION 0x002UL
#define CKF_SERIAL_SESSION 0x004UL
#define CKF_GENERATE 0x8000UL
#define CKF_GENERATE_KEY_PAIR 0x10000UL
#define CKF_WRAP 0x20000UL
#define CKF_UNWRAP 0x40000UL
#define CKS_RW_USER_FUNCTIONS 3UL

#define CKO_PUBLIC_KEY 2UL
#define CKO_PRIVATE_KEY 3UL
#define CKO_SECRET_KEY 4UL
#define CKK_RSA 0x00UL
#define CKK_AES 0x1FUL

#define CKA_CLASS 0x000UL
#define CKA_KEY_TYPE 0x100UL
#define CKA_ENCRYPT 0x104UL
#define CKA_DECRYPT 0x105UL
#define CKA_WRAP 0x106UL
#define CKA_UNWRAP 0x107UL
#define CKA_SIGN 0x108UL
#define CKA_VERIFY 0x10AUL
#define CKA_DERIVE 0x10CUL
#define CKA_MODULUS_BITS 0x121UL
#define CKA_VALUE_LEN 0x161UL

#define CKM_RSA_PKCS_KEY_PAIR_GEN 0x0000UL
#define CKM_RSA_PKCS_OAEP 0x0009UL
#define CKM_RSA_AES_KEY_WRAP 0x1054UL
#define CKM_AES_KEY_GEN 0x1080UL
#define CKM_AES_KEY_WRAP 0x2109UL
#define CKM_AES_KEY_WRAP_PAD 0x210AUL
#define CKM_AES_KEY_WRAP_KWP 0x210BUL

struct CK_FUNCTION_LIST;
typedef struct CK_FUNCTION_LIST *CK_FUNCTION_LIST_PTR;
typedef CK_FUNCTION_LIST_PTR *CK_FUNCTION_LIST_PTR_PTR;

/* CK_FUNCTION_LIST in its 2.40 order (from native/functions.txt). OWN: answered below; NONE: a
 * stub returning CKR_FUNCTION_NOT_SUPPORTED. One list makes the table, the prototypes and the
 * stubs, so a signature cannot differ between them. */
#define FUNCTIONS(X) \
    X(OWN, C_Initialize, (CK_VOID_PTR pInitArgs)) \
    X(OWN, C_Finalize, (CK_VOID_PTR pReserved)) \
    X(OWN, C_GetInfo, (CK_INFO_PTR pInfo)) \
    X(OWN, C_GetFunctionList, (CK_FUNCTION_LIST_PTR_PTR ppFunctionList)) \
    X(OWN, C_GetSlotList, (CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)) \
    X(OWN, C_GetSlotInfo, (CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)) \
    X(OWN, C_GetTokenInfo, (CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)) \
    X(OWN, C_GetMechanismList, (CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)) \
    X(OWN, C_GetMechanismInfo, (CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)) \
    X(NONE, C_InitToken, (CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)) \
    X(NONE, C_InitPIN, (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)) \
    X(NONE, C_SetPIN, (CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)) \
    X(OWN, C_OpenSession, (CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)) \
    X(OWN, C_CloseSession, (CK_SESSION_HANDLE hSession)) \
    X(NONE, C_CloseAllSessions, (CK_SLOT_ID slotID)) \
    X(OWN, C_GetSessionInfo, (CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)) \
    X(NONE, C_GetOperationState, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG_PTR pulOperationStateLen)) \
    X(NONE, C_SetOperationState, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey)) \
    X(OWN, C_Login, (CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)) \
    X(OWN, C_Logout, (CK_SESSION_HANDLE hSession)) \
    X(NONE, C_CreateObject, (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phObject)) \
    X(NONE, C_CopyObject, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)) \
    X(OWN, C_DestroyObject, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)) \
    X(NONE, C_GetObjectSize, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)) \
    X(OWN, C_GetAttributeValue, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)) \
    X(NONE, C_SetAttributeValue, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)) \
    X(OWN, C_FindObjectsInit, (CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)) \
    X(OWN, C_FindObjects, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)) \
    X(OWN, C_FindObjectsFinal, (CK_SESSION_HANDLE hSession)) \
    X(NONE, C_EncryptInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_Encrypt, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)) \
    X(NONE, C_EncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)) \
    X(NONE, C_EncryptFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart, CK_ULONG_PTR pulLastEncryptedPartLen)) \
    X(NONE, C_DecryptInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_Decrypt, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)) \
    X(NONE, C_DecryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)) \
    X(NONE, C_DecryptFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen)) \
    X(NONE, C_DigestInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)) \
    X(NONE, C_Digest, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)) \
    X(NONE, C_DigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)) \
    X(NONE, C_DigestKey, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_DigestFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)) \
    X(NONE, C_SignInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_Sign, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)) \
    X(NONE, C_SignUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)) \
    X(NONE, C_SignFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)) \
    X(NONE, C_SignRecoverInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_SignRecover, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)) \
    X(NONE, C_VerifyInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_Verify, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)) \
    X(NONE, C_VerifyUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)) \
    X(NONE, C_VerifyFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)) \
    X(NONE, C_VerifyRecoverInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)) \
    X(NONE, C_VerifyRecover, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)) \
    X(NONE, C_DigestEncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)) \
    X(NONE, C_DecryptDigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)) \
    X(NONE, C_SignEncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)) \
    X(NONE, C_DecryptVerifyUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)) \
    X(OWN, C_GenerateKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)) \
    X(OWN, C_GenerateKeyPair, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)) \
    X(OWN, C_WrapKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)) \
    X(OWN, C_UnwrapKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)) \
    X(NONE, C_DeriveKey, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)) \
    X(NONE, C_SeedRandom, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)) \
    X(OWN, C_GenerateRandom, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen)) \
    X(NONE, C_GetFunctionStatus, (CK_SESSION_HANDLE hSession)) \
    X(NONE, C_CancelFunction, (CK_SESSION_HANDLE hSession)) \
    X(NONE, C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved))

#define PROTOTYPE(kind, name, params) CK_RV name params;
FUNCTIONS(PROTOTYPE)

#define STUB_OWN(name, params)
#define STUB_NONE(name, params) \
    CK_RV name params { return CKR_FUNCTION_NOT_SUPPORTED; }
#define STUB(kind, name, params) STUB_##kind(name, params)
FUNCTIONS(STUB)

struct CK_FUNCTION_LIST {
    CK_VERSION version;
#define FIELD(kind, name, params) CK_RV (*name) params;
    FUNCTIONS(FIELD)
};

static struct CK_FUNCTION_LIST function_list = {
    {2, 40},
#define ENTRY(kind, name, params) name,
    FUNCTIONS(ENTRY)
};

/* --- state: only counters, so that no call costs more than a few instructions */

enum key_kind { SECRET = 0, PUBLIC = 1, PRIVATE = 2 };
#define KIND_BITS 2
#define KIND_OF(handle) ((handle) & ((1UL << KIND_BITS) - 1))

static const CK_SLOT_ID SLOT = 1;
static int initialized;
static CK_ULONG next_session = 1;
static CK_ULONG next_key = 1;

static const CK_MECHANISM_TYPE mechanisms[] = {
    CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS_OAEP, CKM_RSA_AES_KEY_WRAP, CKM_AES_KEY_GEN,
    CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP,
};
#define MECHANISM_COUNT (sizeof mechanisms / sizeof mechanisms[0])

static void pad(CK_UTF8CHAR *field, size_t size, const char *text) {
    size_t n = strlen(text);
    memset(field, ' ', size);
    memcpy(field, text, n < size ? n : size);
}

static CK_OBJECT_HANDLE new_key(enum key_kind kind) {
    CK_ULONG serial = __atomic_fetch_add(&next_key, 1, __ATOMIC_RELAXED);
    return (serial << KIND_BITS) | (CK_ULONG)kind;
}

static CK_RV check_session(CK_SESSION_HANDLE session) {
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (session == 0 || session >= __atomic_load_n(&next_session, __ATOMIC_RELAXED))
        return CKR_SESSION_HANDLE_INVALID;
    return CKR_OK;
}

static CK_RV check_key(CK_OBJECT_HANDLE key) {
    return (key >> KIND_BITS) == 0 || KIND_OF(key) > PRIVATE ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
}

/* --- general, slot and token */

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
    if (ppFunctionList == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &function_list;
    return CKR_OK;
}

CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
    (void)pInitArgs;
    if (initialized)
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    initialized = 1;
    return CKR_OK;
}

CK_RV C_Finalize(CK_VOID_PTR pReserved) {
    if (pReserved != NULL)
        return CKR_ARGUMENTS_BAD;
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    initialized = 0;
    return CKR_OK;
}

CK_RV C_GetInfo(CK_INFO_PTR pInfo) {
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof *pInfo);
    pInfo->cryptokiVersion = (CK_VERSION){2, 40};
    pad(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "softshield bench");
    pad(pInfo->libraryDescription, sizeof pInfo->libraryDescription, "null module (client floor)");
    pInfo->libraryVersion = (CK_VERSION){1, 0};
    return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
    (void)tokenPresent;
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pSlotList != NULL) {
        if (*pulCount < 1) {
            *pulCount = 1;
            return CKR_BUFFER_TOO_SMALL;
        }
        pSlotList[0] = SLOT;
    }
    *pulCount = 1;
    return CKR_OK;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != SLOT)
        return CKR_SLOT_ID_INVALID;
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof *pInfo);
    pad(pInfo->slotDescription, sizeof pInfo->slotDescription, "null slot");
    pad(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "softshield bench");
    pInfo->flags = CKF_TOKEN_PRESENT;
    return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != SLOT)
        return CKR_SLOT_ID_INVALID;
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof *pInfo);
    pad(pInfo->label, sizeof pInfo->label, "floor");
    pad(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "softshield bench");
    pad(pInfo->model, sizeof pInfo->model, "null");
    pad(pInfo->serialNumber, sizeof pInfo->serialNumber, "0");
    pInfo->flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED;
    pInfo->ulMaxSessionCount = pInfo->ulMaxRwSessionCount = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulSessionCount = pInfo->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulMaxPinLen = 64;
    pInfo->ulMinPinLen = 4;
    pInfo->ulTotalPublicMemory = pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulTotalPrivateMemory = pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    pad(pInfo->utcTime, sizeof pInfo->utcTime, "");
    return CKR_OK;
}

CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) {
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != SLOT)
        return CKR_SLOT_ID_INVALID;
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pMechanismList != NULL) {
        if (*pulCount < MECHANISM_COUNT) {
            *pulCount = MECHANISM_COUNT;
            return CKR_BUFFER_TOO_SMALL;
        }
        memcpy(pMechanismList, mechanisms, sizeof mechanisms);
    }
    *pulCount = MECHANISM_COUNT;
    return CKR_OK;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) {
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != SLOT)
        return CKR_SLOT_ID_INVALID;
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    switch (type) {
    case CKM_RSA_PKCS_KEY_PAIR_GEN:
        *pInfo = (CK_MECHANISM_INFO){2048, 4096, CKF_GENERATE_KEY_PAIR};
        return CKR_OK;
    case CKM_RSA_PKCS_OAEP:
    case CKM_RSA_AES_KEY_WRAP:
        *pInfo = (CK_MECHANISM_INFO){2048, 4096, CKF_WRAP | CKF_UNWRAP};
        return CKR_OK;
    case CKM_AES_KEY_GEN:
        *pInfo = (CK_MECHANISM_INFO){16, 32, CKF_GENERATE};
        return CKR_OK;
    case CKM_AES_KEY_WRAP:
    case CKM_AES_KEY_WRAP_PAD:
    case CKM_AES_KEY_WRAP_KWP:
        *pInfo = (CK_MECHANISM_INFO){16, 32, CKF_WRAP | CKF_UNWRAP};
        return CKR_OK;
    default:
        return CKR_MECHANISM_INVALID;
    }
}

/* --- sessions */

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                    CK_SESSION_HANDLE_PTR phSession) {
    (void)pApplication;
    (void)Notify;
    if (!initialized)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != SLOT)
        return CKR_SLOT_ID_INVALID;
    if (!(flags & CKF_SERIAL_SESSION))
        return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (phSession == NULL)
        return CKR_ARGUMENTS_BAD;
    *phSession = __atomic_fetch_add(&next_session, 1, __ATOMIC_RELAXED);
    return CKR_OK;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession) {
    return check_session(hSession);
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
    CK_RV rv = check_session(hSession);
    if (rv != CKR_OK)
        return rv;
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    *pInfo = (CK_SESSION_INFO){SLOT, CKS_RW_USER_FUNCTIONS, CKF_SERIAL_SESSION | CKF_RW_SESSION, 0};
    return CKR_OK;
}

CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    (void)userType;
    CK_RV rv = check_session(hSession);
    if (rv != CKR_OK)
        return rv;
    return pPin == NULL && ulPinLen != 0 ? CKR_ARGUMENTS_BAD : CKR_OK;
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession) {
    return check_session(hSession);
}

/* --- objects */

CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject) {
    CK_RV rv = check_session(hSession);
    return rv != CKR_OK ? rv : check_key(hObject);
}

/* One attribute of a key of this kind: its value into buffer (size bytes at most), or 0 when the
 * key has no such attribute. AES keys have the capabilities python-pkcs11 gives them by default;
 * RSA keys the halves of those that their side of the pair can do. */
static size_t attribute(enum key_kind kind, CK_ATTRIBUTE_TYPE type, CK_BYTE buffer[sizeof(CK_ULONG)]) {
    CK_ULONG number;
    CK_BBOOL flag;
    switch (type) {
    case CKA_CLASS:
        number = kind == SECRET ? CKO_SECRET_KEY : kind == PUBLIC ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY;
        goto ulong;
    case CKA_KEY_TYPE:
        number = kind == SECRET ? CKK_AES : CKK_RSA;
        goto ulong;
    case CKA_VALUE_LEN:
        if (kind != SECRET)
            return 0;
        number = 32;
        goto ulong;
    case CKA_MODULUS_BITS:
        if (kind == SECRET)
            return 0;
        number = 2048;
        goto ulong;
    case CKA_ENCRYPT: case CKA_VERIFY: case CKA_WRAP:
        flag = kind != PRIVATE;
        goto bbool;
    case CKA_DECRYPT: case CKA_SIGN: case CKA_UNWRAP:
        flag = kind != PUBLIC;
        goto bbool;
    case CKA_DERIVE:
        flag = 0;
        goto bbool;
    default:  /* CKA_ENCAPSULATE, CKA_DECAPSULATE (3.0/3.2) and the rest: not on this token */
        return 0;
    }
ulong:
    memcpy(buffer, &number, sizeof number);
    return sizeof number;
bbool:
    buffer[0] = flag;
    return sizeof flag;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                          CK_ULONG ulCount) {
    CK_RV rv = check_session(hSession);
    if (rv == CKR_OK)
        rv = check_key(hObject);
    if (rv != CKR_OK)
        return rv;
    if (pTemplate == NULL && ulCount != 0)
        return CKR_ARGUMENTS_BAD;
    enum key_kind kind = (enum key_kind)KIND_OF(hObject);
    for (CK_ULONG i = 0; i < ulCount; i++) {
        CK_BYTE value[sizeof(CK_ULONG)];
        size_t size = attribute(kind, pTemplate[i].type, value);
        if (size == 0) {
            pTemplate[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
        } else if (pTemplate[i].pValue == NULL) {
            pTemplate[i].ulValueLen = size;
        } else if (pTemplate[i].ulValueLen < size) {
            pTemplate[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            if (rv == CKR_OK)
                rv = CKR_BUFFER_TOO_SMALL;
        } else {
            memcpy(pTemplate[i].pValue, value, size);
            pTemplate[i].ulValueLen = size;
        }
    }
    return rv;
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
    CK_RV rv = check_session(hSession);
    if (rv != CKR_OK)
        return rv;
    return pTemplate == NULL && ulCount != 0 ? CKR_ARGUMENTS_BAD : CKR_OK;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,
                    CK_ULONG_PTR pulObjectCount) {
    (void)ulMaxObjectCount;
    CK_RV rv = check_session(hSession);
    if (rv != CKR_OK)
        return rv;
    if (phObject == NULL || pulObjectCount == NULL)
        return CKR_ARGUMENTS_BAD;
    *pulObjectCount = 0;
    return CKR_OK;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession) {
    return check_session(hSession);
}

/* --- keys: new handles, fixed-size zero blobs */

static CK_RV check_key_call(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism) {
    CK_RV rv = check_session(hSession);
    if (rv != CKR_OK)
        return rv;
    return pMechanism == NULL ? CKR_ARGUMENTS_BAD : CKR_OK;
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,
                    CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey) {
    CK_RV rv = check_key_call(hSession, pMechanism);
    if (rv != CKR_OK)
        return rv;
    if ((pTemplate == NULL && ulCount != 0) || phKey == NULL)
        return CKR_ARGUMENTS_BAD;
    *phKey = new_key(SECRET);
    return CKR_OK;
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                        CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
                        CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey) {
    CK_RV rv = check_key_call(hSession, pMechanism);
    if (rv != CKR_OK)
        return rv;
    if ((pPublicKeyTemplate == NULL && ulPublicKeyAttributeCount != 0)
        || (pPrivateKeyTemplate == NULL && ulPrivateKeyAttributeCount != 0)
        || phPublicKey == NULL || phPrivateKey == NULL)
        return CKR_ARGUMENTS_BAD;
    *phPublicKey = new_key(PUBLIC);
    *phPrivateKey = new_key(PRIVATE);
    return CKR_OK;
}

/* The length a real token returns for an AES-256 target: the RSA-2048 block plus a KWP blob for
 * RSA_AES_KEY_WRAP, the KW/KWP blob alone otherwise. */
static CK_ULONG wrapped_length(CK_MECHANISM_TYPE mechanism) {
    return mechanism == CKM_RSA_AES_KEY_WRAP ? 256 + 40 : 40;
}

CK_RV C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey,
                CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen) {
    CK_RV rv = check_key_call(hSession, pMechanism);
    if (rv == CKR_OK)
        rv = check_key(hWrappingKey);
    if (rv == CKR_OK)
        rv = check_key(hKey);
    if (rv != CKR_OK)
        return rv;
    if (pulWrappedKeyLen == NULL)
        return CKR_ARGUMENTS_BAD;
    CK_ULONG length = wrapped_length(pMechanism->mechanism);
    if (pWrappedKey != NULL) {
        if (*pulWrappedKeyLen < length) {
            *pulWrappedKeyLen = length;
            return CKR_BUFFER_TOO_SMALL;
        }
        memset(pWrappedKey, 0, length);
    }
    *pulWrappedKeyLen = length;
    return CKR_OK;
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey,
                  CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate,
                  CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey) {
    CK_RV rv = check_key_call(hSession, pMechanism);
    if (rv == CKR_OK)
        rv = check_key(hUnwrappingKey);
    if (rv != CKR_OK)
        return rv;
    if ((pWrappedKey == NULL && ulWrappedKeyLen != 0) || (pTemplate == NULL && ulAttributeCount != 0)
        || phKey == NULL)
        return CKR_ARGUMENTS_BAD;
    *phKey = new_key(SECRET);
    return CKR_OK;
}

CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen) {
    CK_RV rv = check_session(hSession);
    if (rv != CKR_OK)
        return rv;
    if (RandomData == NULL)
        return ulRandomLen == 0 ? CKR_OK : CKR_ARGUMENTS_BAD;
    memset(RandomData, 0, ulRandomLen);  /* a measuring instrument, not a source of randomness */
    return CKR_OK;
}
