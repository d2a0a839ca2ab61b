/* A C host for the PKCS#11 3.2 interface tests (tests/pqc/test_c_interfaces.py).
 *
 *     host32 <library.so> <token-label> <user-pin>
 *
 * dlopen()s the library with RTLD_LOCAL|RTLD_NOW, asks C_GetInterface for "PKCS 11" 3.2, 3.0 and
 * 2.40 and calls functions of each table: C_GetInfo through each (it reports the version of the
 * interface in use), C_GetSlotList/C_OpenSession/C_Login/C_GenerateKeyPair through 2.40,
 * C_SessionCancel through 3.0, C_EncapsulateKey/C_DecapsulateKey/C_VerifySignatureInit through 3.2.
 * Each check prints "<check> 0x<rv> [key=value ...]"; the last line is "done 0x0".
 *
 * The tables are declared here by hand, one pointer per function in the order of the OASIS 3.2
 * pkcs11f.h (CK_FUNCTION_LIST_3_2 = the 2.40 functions, the 3.0 additions, the 3.2 additions),
 * independently of native/functions.txt. Types come from native/pkcs11_types.h.
 */

#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11_types.h"

#define CK_TRUE 1
#define CK_FALSE 0

#include "ck_numbers.h" /* the PKCS#11 numbers, written by the test from pkcs11_shim.constants */

#define FUNCTIONS_2_40(X) \
    X(C_Initialize) X(C_Finalize) X(C_GetInfo) X(C_GetFunctionList) X(C_GetSlotList) X(C_GetSlotInfo) \
    X(C_GetTokenInfo) X(C_GetMechanismList) X(C_GetMechanismInfo) X(C_InitToken) X(C_InitPIN) X(C_SetPIN) \
    X(C_OpenSession) X(C_CloseSession) X(C_CloseAllSessions) X(C_GetSessionInfo) X(C_GetOperationState) \
    X(C_SetOperationState) X(C_Login) X(C_Logout) X(C_CreateObject) X(C_CopyObject) X(C_DestroyObject) \
    X(C_GetObjectSize) X(C_GetAttributeValue) X(C_SetAttributeValue) X(C_FindObjectsInit) X(C_FindObjects) \
    X(C_FindObjectsFinal) X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate) X(C_EncryptFinal) \
    X(C_DecryptInit) X(C_Decrypt) X(C_DecryptUpdate) X(C_DecryptFinal) X(C_DigestInit) X(C_Digest) \
    X(C_DigestUpdate) X(C_DigestKey) X(C_DigestFinal) X(C_SignInit) X(C_Sign) X(C_SignUpdate) \
    X(C_SignFinal) X(C_SignRecoverInit) X(C_SignRecover) X(C_VerifyInit) X(C_Verify) X(C_VerifyUpdate) \
    X(C_VerifyFinal) X(C_VerifyRecoverInit) X(C_VerifyRecover) X(C_DigestEncryptUpdate) \
    X(C_DecryptDigestUpdate) X(C_SignEncryptUpdate) X(C_DecryptVerifyUpdate) X(C_GenerateKey) \
    X(C_GenerateKeyPair) X(C_WrapKey) X(C_UnwrapKey) X(C_DeriveKey) X(C_SeedRandom) X(C_GenerateRandom) \
    X(C_GetFunctionStatus) X(C_CancelFunction) X(C_WaitForSlotEvent)
#define FUNCTIONS_3_0(X) \
    X(C_GetInterfaceList) X(C_GetInterface) X(C_LoginUser) X(C_SessionCancel) X(C_MessageEncryptInit) \
    X(C_EncryptMessage) X(C_EncryptMessageBegin) X(C_EncryptMessageNext) X(C_MessageEncryptFinal) \
    X(C_MessageDecryptInit) X(C_DecryptMessage) X(C_DecryptMessageBegin) X(C_DecryptMessageNext) \
    X(C_MessageDecryptFinal) X(C_MessageSignInit) X(C_SignMessage) X(C_SignMessageBegin) \
    X(C_SignMessageNext) X(C_MessageSignFinal) X(C_MessageVerifyInit) X(C_VerifyMessage) \
    X(C_VerifyMessageBegin) X(C_VerifyMessageNext) X(C_MessageVerifyFinal)
#define FUNCTIONS_3_2(X) \
    X(C_EncapsulateKey) X(C_DecapsulateKey) X(C_VerifySignatureInit) X(C_VerifySignature) \
    X(C_VerifySignatureUpdate) X(C_VerifySignatureFinal) X(C_GetSessionValidationFlags) X(C_AsyncComplete) \
    X(C_AsyncGetID) X(C_AsyncJoin) X(C_WrapKeyAuthenticated) X(C_UnwrapKeyAuthenticated)

#define MEMBER(name) void *name;
typedef struct { CK_VERSION version; FUNCTIONS_2_40(MEMBER) } LIST_2_40;
typedef struct { CK_VERSION version; FUNCTIONS_2_40(MEMBER) FUNCTIONS_3_0(MEMBER) } LIST_3_0;
typedef struct { CK_VERSION version; FUNCTIONS_2_40(MEMBER) FUNCTIONS_3_0(MEMBER) FUNCTIONS_3_2(MEMBER) } LIST_3_2;

typedef CK_RV (*fn_init)(CK_VOID_PTR);
typedef CK_RV (*fn_info)(CK_INFO_PTR);
typedef CK_RV (*fn_slots)(CK_BBOOL, CK_SLOT_ID_PTR, CK_ULONG_PTR);
typedef CK_RV (*fn_open)(CK_SLOT_ID, CK_FLAGS, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR);
typedef CK_RV (*fn_token)(CK_SLOT_ID, CK_TOKEN_INFO_PTR);
typedef CK_RV (*fn_login)(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG);
typedef CK_RV (*fn_pair)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_ATTRIBUTE_PTR, CK_ULONG, CK_ATTRIBUTE_PTR,
                         CK_ULONG, CK_OBJECT_HANDLE_PTR, CK_OBJECT_HANDLE_PTR);
typedef CK_RV (*fn_getattr)(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG);
typedef CK_RV (*fn_cancel)(CK_SESSION_HANDLE, CK_FLAGS);
typedef CK_RV (*fn_encap)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG,
                          CK_BYTE_PTR, CK_ULONG_PTR, CK_OBJECT_HANDLE_PTR);
typedef CK_RV (*fn_decap)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG,
                          CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
typedef CK_RV (*fn_vsinit)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_BYTE_PTR, CK_ULONG);
typedef CK_RV (*fn_getinterface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
typedef CK_RV (*fn_getfunctionlist)(LIST_2_40 **);

static void report(const char *check, CK_RV rv, const char *extra)
{
    printf("%s 0x%lx%s%s\n", check, (unsigned long)rv, extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

static void *table(fn_getinterface get_interface, CK_BYTE major, CK_BYTE minor, const char *check)
{
    CK_VERSION wanted = {major, minor};
    CK_INTERFACE_PTR iface = NULL;
    CK_RV rv = get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &wanted, &iface, 0);
    char extra[96] = "";
    if (rv == CKR_OK && iface != NULL) {
        CK_VERSION *v = (CK_VERSION *)iface->pFunctionList;
        snprintf(extra, sizeof extra, "major=%d minor=%d", v->major, v->minor);
    }
    report(check, rv, extra);
    return rv == CKR_OK && iface != NULL ? iface->pFunctionList : NULL;
}

static void info(void *get_info, const char *check)
{
    CK_INFO ci;
    char extra[64];
    memset(&ci, 0, sizeof ci);
    CK_RV rv = ((fn_info)get_info)(&ci);
    snprintf(extra, sizeof extra, "major=%d minor=%d", ci.cryptokiVersion.major, ci.cryptokiVersion.minor);
    report(check, rv, extra);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s <library.so> <token-label> <user-pin>\n", argv[0]);
        return 2;
    }
    void *so = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (so == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    fn_getinterface get_interface = (fn_getinterface)dlsym(so, "C_GetInterface");
    LIST_3_2 *t32 = table(get_interface, 3, 2, "interface.3.2");
    LIST_3_0 *t30 = table(get_interface, 3, 0, "interface.3.0");
    LIST_2_40 *t240 = table(get_interface, 2, 40, "interface.2.40");
    if (t32 == NULL || t30 == NULL || t240 == NULL)
        return 1;
    report("same-initialize", CKR_OK, t32->C_Initialize == t240->C_Initialize ? "same=1" : "same=0");
    report("2.40.C_Initialize", ((fn_init)t240->C_Initialize)(NULL), NULL);
    /* CK_INFO.cryptokiVersion is the version the library is written to, whichever table asks. */
    info(t240->C_GetInfo, "2.40.C_GetInfo");

    /* 2.40: find the token, open a session, log in, make an ML-KEM-768 key pair. */
    /* Ask for the count first: the suite's shared kmdata holds as many tokens as earlier tests made. */
    CK_ULONG count = 0, i;
    CK_SLOT_ID slot = (CK_SLOT_ID)-1;
    CK_RV slots_rv = ((fn_slots)t240->C_GetSlotList)(CK_TRUE, NULL, &count);
    CK_SLOT_ID *slots = calloc(count ? count : 1, sizeof *slots);
    if (slots_rv == CKR_OK && slots == NULL)
        slots_rv = CKR_HOST_MEMORY;
    if (slots_rv == CKR_OK)
        slots_rv = ((fn_slots)t240->C_GetSlotList)(CK_TRUE, slots, &count);
    report("2.40.C_GetSlotList", slots_rv, NULL);
    for (i = 0; i < count; i++) {
        CK_TOKEN_INFO ti;
        char label[33];
        if (((fn_token)t240->C_GetTokenInfo)(slots[i], &ti) != CKR_OK)
            continue;
        memcpy(label, ti.label, 32);
        label[32] = '\0';
        for (int j = 31; j >= 0 && label[j] == ' '; j--)
            label[j] = '\0';
        if (strcmp(label, argv[2]) == 0)
            slot = slots[i];
    }
    CK_SESSION_HANDLE session = 0;
    report("2.40.C_OpenSession", ((fn_open)t240->C_OpenSession)(slot, CKF_RW_SESSION | CKF_SERIAL_SESSION, NULL,
                                                                NULL, &session), NULL);
    CK_RV rv = ((fn_login)t240->C_Login)(session, CKU_USER, (CK_UTF8CHAR_PTR)argv[3], strlen(argv[3]));
    report("2.40.C_Login", rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv, NULL);
    CK_ULONG pset = CKP_ML_KEM_768;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    CK_ATTRIBUTE pub_tpl[] = {{CKA_PARAMETER_SET, &pset, sizeof pset}};
    CK_ATTRIBUTE priv_tpl[] = {{CKA_PRIVATE, &no, sizeof no}};
    CK_MECHANISM keygen = {CKM_ML_KEM_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    report("2.40.C_GenerateKeyPair", ((fn_pair)t240->C_GenerateKeyPair)(session, &keygen, pub_tpl, 1, priv_tpl, 1,
                                                                        &pub, &priv), NULL);

    /* 3.0: a 3.0-only function through the 3.0 table. */
    info(t30->C_GetInfo, "3.0.C_GetInfo");
    /* python-pkcs11's order: C_GetFunctionList (the 2.40 table), then C_GetInfo. */
    LIST_2_40 *listed = NULL;
    rv = ((fn_getfunctionlist)dlsym(so, "C_GetFunctionList"))(&listed);
    report("C_GetFunctionList", rv, listed == t240 ? "table=2.40" : "table=other");
    info(listed->C_GetInfo, "C_GetFunctionList.C_GetInfo");
    report("3.0.C_SessionCancel", ((fn_cancel)t30->C_SessionCancel)(session, CKF_SIGN), NULL);

    /* 3.2: encapsulate (two-call ciphertext), decapsulate, compare the two secrets. */
    table(get_interface, 3, 2, "interface.3.2-again");
    info(t32->C_GetInfo, "3.2.C_GetInfo");
    CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
    CK_KEY_TYPE generic = CKK_GENERIC_SECRET;
    CK_ULONG len32 = 32;
    CK_ATTRIBUTE secret_tpl[] = {
        {CKA_CLASS, &secret_class, sizeof secret_class}, {CKA_KEY_TYPE, &generic, sizeof generic},
        {CKA_VALUE_LEN, &len32, sizeof len32}, {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes}, /* CKA_VALUE is read below; the default is FALSE */
    };
    CK_MECHANISM kem = {CKM_ML_KEM, NULL, 0};
    CK_BYTE ciphertext[2048];
    CK_ULONG ct_len = 0;
    CK_OBJECT_HANDLE k_enc = 0, k_dec = 0;
    char extra[64];
    rv = ((fn_encap)t32->C_EncapsulateKey)(session, &kem, pub, secret_tpl, 5, NULL, &ct_len, &k_enc);
    snprintf(extra, sizeof extra, "length=%lu key=%lu", ct_len, k_enc);
    report("3.2.C_EncapsulateKey.length", rv, extra);
    rv = ((fn_encap)t32->C_EncapsulateKey)(session, &kem, pub, secret_tpl, 5, ciphertext, &ct_len, &k_enc);
    report("3.2.C_EncapsulateKey", rv, NULL);
    rv = ((fn_decap)t32->C_DecapsulateKey)(session, &kem, priv, secret_tpl, 5, ciphertext, ct_len, &k_dec);
    report("3.2.C_DecapsulateKey", rv, NULL);
    CK_BYTE v1[32], v2[32];
    CK_ATTRIBUTE a1 = {CKA_VALUE, v1, sizeof v1}, a2 = {CKA_VALUE, v2, sizeof v2};
    CK_RV r1 = ((fn_getattr)t32->C_GetAttributeValue)(session, k_enc, &a1, 1);
    CK_RV r2 = ((fn_getattr)t32->C_GetAttributeValue)(session, k_dec, &a2, 1);
    report("3.2.same-secret", r1 | r2, memcmp(v1, v2, 32) == 0 ? "equal=1" : "equal=0");
    /* C_VerifySignatureInit with a mechanism the ML-KEM key cannot do: the key type is checked. */
    CK_MECHANISM mldsa = {CKM_ML_DSA, NULL, 0};
    CK_BYTE sig[4] = {0};
    report("3.2.C_VerifySignatureInit", ((fn_vsinit)t32->C_VerifySignatureInit)(session, &mldsa, pub, sig, 4), NULL);
    free(slots);
    report("done", CKR_OK, NULL);
    return 0;
}
