/* A C-level PKCS#11 host for softshield's boundary tests (tests/pkcs11/test_c_boundary.py).
 *
 *     host <library.so> <scenario> [scenario arguments]
 *
 * dlopen()s the library with RTLD_LOCAL|RTLD_NOW -- the way that breaks naive cffi embeddings,
 * because libpython's symbols stay hidden from the extension modules Python loads later -- and runs
 * one named scenario. Each check prints one line
 *
 *     <check-name> 0x<rv-hex> [key=value ...]
 *
 * and the pytest compares every line with its table of expected codes. The last line of a scenario
 * that ran to its end is "done 0x0". Nothing here links against libpython.
 *
 * Scenarios: tables, before-init, init-args, bad-input <label> <so-pin> <user-pin>, python-failed.
 *
 * Types come from native/pkcs11_types.h; the function tables are declared here by hand in the order
 * of the OASIS headers (CK_FUNCTION_LIST 2.40, CK_FUNCTION_LIST_3_0), independently of
 * native/functions.txt, so a wrong order in the library's generated tables shows up as a mismatch
 * in the "tables" scenario. Build: gcc -std=c11 -Wall -Wextra -I native -o host host.c -ldl -lpthread
 */

#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11_types.h"

/* ---- numbers (PKCS#11 3.0) ------------------------------------------------------------------- */
#define CK_TRUE 1
#define CK_FALSE 0
#define CK_UNAVAILABLE_INFORMATION (~0UL)

#include "ck_numbers.h" /* the PKCS#11 numbers, written by the test from pkcs11_shim.constants */

#define CKA_UNDEFINED_TYPE 0x0FFFUL /* not defined by any PKCS#11 version, not vendor-defined */
#define CKM_UNDEFINED 0x7FFFFFF0UL /* below CKM_VENDOR_DEFINED, assigned to nothing */

/* ---- the function tables, in OASIS order --------------------------------------------------- */
#define FUNCTIONS_2_40(X)                                                                          \
    X(C_Initialize, (CK_VOID_PTR))                                                                 \
    X(C_Finalize, (CK_VOID_PTR))                                                                   \
    X(C_GetInfo, (CK_INFO_PTR))                                                                    \
    X(C_GetFunctionList, (void *))                                                                 \
    X(C_GetSlotList, (CK_BBOOL, CK_SLOT_ID_PTR, CK_ULONG_PTR))                                     \
    X(C_GetSlotInfo, (CK_SLOT_ID, CK_SLOT_INFO_PTR))                                               \
    X(C_GetTokenInfo, (CK_SLOT_ID, CK_TOKEN_INFO_PTR))                                             \
    X(C_GetMechanismList, (CK_SLOT_ID, CK_MECHANISM_TYPE_PTR, CK_ULONG_PTR))                       \
    X(C_GetMechanismInfo, (CK_SLOT_ID, CK_MECHANISM_TYPE, CK_MECHANISM_INFO_PTR))                  \
    X(C_InitToken, (CK_SLOT_ID, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR))                       \
    X(C_InitPIN, (CK_SESSION_HANDLE, CK_UTF8CHAR_PTR, CK_ULONG))                                   \
    X(C_SetPIN, (CK_SESSION_HANDLE, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR, CK_ULONG))         \
    X(C_OpenSession, (CK_SLOT_ID, CK_FLAGS, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR))        \
    X(C_CloseSession, (CK_SESSION_HANDLE))                                                         \
    X(C_CloseAllSessions, (CK_SLOT_ID))                                                            \
    X(C_GetSessionInfo, (CK_SESSION_HANDLE, CK_SESSION_INFO_PTR))                                  \
    X(C_GetOperationState, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR))                         \
    X(C_SetOperationState,                                                                         \
      (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE))              \
    X(C_Login, (CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG))                       \
    X(C_Logout, (CK_SESSION_HANDLE))                                                               \
    X(C_CreateObject, (CK_SESSION_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR))       \
    X(C_CopyObject, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG,              \
                     CK_OBJECT_HANDLE_PTR))                                                        \
    X(C_DestroyObject, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE))                                      \
    X(C_GetObjectSize, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ULONG_PTR))                        \
    X(C_GetAttributeValue, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG))      \
    X(C_SetAttributeValue, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG))      \
    X(C_FindObjectsInit, (CK_SESSION_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG))                          \
    X(C_FindObjects, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE_PTR, CK_ULONG, CK_ULONG_PTR))            \
    X(C_FindObjectsFinal, (CK_SESSION_HANDLE))                                                     \
    X(C_EncryptInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                      \
    X(C_Encrypt, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))            \
    X(C_EncryptUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))      \
    X(C_EncryptFinal, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR))                              \
    X(C_DecryptInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                      \
    X(C_Decrypt, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))            \
    X(C_DecryptUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))      \
    X(C_DecryptFinal, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR))                              \
    X(C_DigestInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR))                                         \
    X(C_Digest, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))             \
    X(C_DigestUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG))                                  \
    X(C_DigestKey, (CK_SESSION_HANDLE, CK_OBJECT_HANDLE))                                          \
    X(C_DigestFinal, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR))                               \
    X(C_SignInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                         \
    X(C_Sign, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))               \
    X(C_SignUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG))                                    \
    X(C_SignFinal, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR))                                 \
    X(C_SignRecoverInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                  \
    X(C_SignRecover, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))        \
    X(C_VerifyInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                       \
    X(C_Verify, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG))                 \
    X(C_VerifyUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG))                                  \
    X(C_VerifyFinal, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG))                                   \
    X(C_VerifyRecoverInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                \
    X(C_VerifyRecover, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))      \
    X(C_DigestEncryptUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))\
    X(C_DecryptDigestUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))\
    X(C_SignEncryptUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))  \
    X(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))\
    X(C_GenerateKey, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_ATTRIBUTE_PTR, CK_ULONG,             \
                      CK_OBJECT_HANDLE_PTR))                                                       \
    X(C_GenerateKeyPair, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_ATTRIBUTE_PTR, CK_ULONG,         \
                          CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR, CK_OBJECT_HANDLE_PTR)) \
    X(C_WrapKey, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE,         \
                  CK_BYTE_PTR, CK_ULONG_PTR))                                                      \
    X(C_UnwrapKey, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_BYTE_PTR, CK_ULONG,  \
                    CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR))                             \
    X(C_DeriveKey, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR,       \
                    CK_ULONG, CK_OBJECT_HANDLE_PTR))                                               \
    X(C_SeedRandom, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG))                                    \
    X(C_GenerateRandom, (CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG))                                \
    X(C_GetFunctionStatus, (CK_SESSION_HANDLE))                                                    \
    X(C_CancelFunction, (CK_SESSION_HANDLE))                                                       \
    X(C_WaitForSlotEvent, (CK_FLAGS, CK_SLOT_ID_PTR, CK_VOID_PTR))

#define FUNCTIONS_3_0_ADDED(X)                                                                     \
    X(C_GetInterfaceList, (CK_INTERFACE_PTR, CK_ULONG_PTR))                                        \
    X(C_GetInterface, (CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS))           \
    X(C_LoginUser, (CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR,   \
                    CK_ULONG))                                                                     \
    X(C_SessionCancel, (CK_SESSION_HANDLE, CK_FLAGS))                                              \
    X(C_MessageEncryptInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))               \
    X(C_EncryptMessage, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,          \
                         CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))                        \
    X(C_EncryptMessageBegin, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG))    \
    X(C_EncryptMessageNext, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,      \
                             CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS))                                 \
    X(C_MessageEncryptFinal, (CK_SESSION_HANDLE))                                                  \
    X(C_MessageDecryptInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))               \
    X(C_DecryptMessage, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,          \
                         CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR))                        \
    X(C_DecryptMessageBegin, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG))    \
    X(C_DecryptMessageNext, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,      \
                             CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS))                                 \
    X(C_MessageDecryptFinal, (CK_SESSION_HANDLE))                                                  \
    X(C_MessageSignInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                  \
    X(C_SignMessage, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,             \
                      CK_BYTE_PTR, CK_ULONG_PTR))                                                  \
    X(C_SignMessageBegin, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG))                              \
    X(C_SignMessageNext, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,         \
                          CK_BYTE_PTR, CK_ULONG_PTR))                                              \
    X(C_MessageSignFinal, (CK_SESSION_HANDLE))                                                     \
    X(C_MessageVerifyInit, (CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE))                \
    X(C_VerifyMessage, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,           \
                        CK_BYTE_PTR, CK_ULONG))                                                    \
    X(C_VerifyMessageBegin, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG))                            \
    X(C_VerifyMessageNext, (CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,       \
                            CK_BYTE_PTR, CK_ULONG))                                                \
    X(C_MessageVerifyFinal, (CK_SESSION_HANDLE))

#define MEMBER(name, params) CK_RV(*name) params;
typedef struct FUNCTION_LIST_2_40 {
    CK_VERSION version;
    FUNCTIONS_2_40(MEMBER)
} FUNCTION_LIST_2_40;
typedef struct FUNCTION_LIST_3_0 {
    CK_VERSION version;
    FUNCTIONS_2_40(MEMBER)
    FUNCTIONS_3_0_ADDED(MEMBER)
} FUNCTION_LIST_3_0;
#undef MEMBER

#define NAME(name, params) #name,
static const char *const NAMES_3_0[] = {FUNCTIONS_2_40(NAME) FUNCTIONS_3_0_ADDED(NAME)};
#undef NAME
#define COUNT_2_40 68
#define COUNT_3_0 92

typedef CK_RV (*GetFunctionList_fn)(FUNCTION_LIST_2_40 **);
typedef CK_RV (*GetInterfaceList_fn)(CK_INTERFACE_PTR, CK_ULONG_PTR);
typedef CK_RV (*GetInterface_fn)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);

/* ---- output ------------------------------------------------------------------------------- */
static void report(const char *name, CK_RV rv, const char *fmt, ...)
{
    printf("%s 0x%lx", name, (unsigned long)rv);
    if (fmt != NULL && fmt[0] != '\0') {
        va_list ap;
        va_start(ap, fmt);
        putchar(' ');
        vprintf(fmt, ap);
        va_end(ap);
    }
    putchar('\n');
    fflush(stdout);
}

static void reportp(const char *prefix, const char *name, CK_RV rv)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    report(full, rv, NULL);
}

static void die(const char *what)
{
    printf("fatal 0x1 what=%s\n", what);
    fflush(stdout);
    exit(2);
}

/* ---- the library -------------------------------------------------------------------------- */
static void *library;
static FUNCTION_LIST_3_0 *F;
static int have_3_0 = 1; /* F's 3.0 entries exist */
/* HOST_SKIP_HUGE=1 leaves out the 1<<40-length calls (for checking this host against libraries
 * that read such lengths, e.g. SoftHSM2; never set by the pytest). */
static int skip_huge;

static void *sym(const char *name)
{
    return dlsym(library, name);
}

static void load(const char *path)
{
    library = dlopen(path, RTLD_LOCAL | RTLD_NOW);
    if (library == NULL) {
        printf("dlopen 0x1 error=%s\n", dlerror());
        exit(2);
    }
    GetInterface_fn get_interface = (GetInterface_fn)sym("C_GetInterface");
    CK_INTERFACE_PTR iface = NULL;
    if (get_interface == NULL) {
        /* A 2.40-only library (SoftHSM2, for checking this host itself): no 3.0 entries. */
        GetFunctionList_fn get_function_list = (GetFunctionList_fn)sym("C_GetFunctionList");
        FUNCTION_LIST_2_40 *v2 = NULL;
        if (get_function_list == NULL || get_function_list(&v2) != CKR_OK || v2 == NULL)
            die("C_GetFunctionList");
        F = (FUNCTION_LIST_3_0 *)v2;
        have_3_0 = 0;
        return;
    }
    CK_RV rv = get_interface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &iface, 0);
    if (rv != CKR_OK || iface == NULL)
        die("C_GetInterface");
    F = (FUNCTION_LIST_3_0 *)iface->pFunctionList;
}

/* ---- attribute helpers -------------------------------------------------------------------- */
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS class_data = CKO_DATA, class_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE key_aes = CKK_AES;

#define ATTR(t, v) {(t), (CK_VOID_PTR)(v), sizeof(*(v))}
#define ATTRN(t, v, n) {(t), (CK_VOID_PTR)(v), (n)}
#define COUNT(a) ((CK_ULONG)(sizeof(a) / sizeof((a)[0])))

static CK_UTF8CHAR PIN[] = "1234";
static CK_UTF8CHAR NEW_PIN[] = "5678";
static CK_UTF8CHAR SO_PIN_DEFAULT[] = "12345678";
static CK_UTF8CHAR LABEL32[32];

/* Scratch space shared by the "call every function" lists. */
static CK_BYTE scratch_in[512], scratch_out[4096], scratch_sig[512];
static CK_ULONG scratch_len;

/* Every function that takes neither a session nor a slot. */
static void call_global_functions(const char *prefix)
{
    CK_INFO info;
    CK_ULONG count = 0;
    CK_SLOT_ID slot = 0;
    reportp(prefix, "C_GetInfo", F->C_GetInfo(&info));
    reportp(prefix, "C_GetSlotList", F->C_GetSlotList(CK_TRUE, NULL, &count));
    reportp(prefix, "C_WaitForSlotEvent", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL));
}

/* Every function that takes a slot ID, with well-formed arguments. */
static void call_slot_functions(const char *prefix, CK_SLOT_ID s)
{
    CK_SLOT_INFO slot_info;
    CK_TOKEN_INFO token_info;
    CK_MECHANISM_INFO mech_info;
    CK_ULONG count = 0;
    CK_SESSION_HANDLE h = 0;
    reportp(prefix, "C_GetSlotInfo", F->C_GetSlotInfo(s, &slot_info));
    reportp(prefix, "C_GetTokenInfo", F->C_GetTokenInfo(s, &token_info));
    reportp(prefix, "C_GetMechanismList", F->C_GetMechanismList(s, NULL, &count));
    reportp(prefix, "C_GetMechanismInfo", F->C_GetMechanismInfo(s, CKM_AES_KEY_GEN, &mech_info));
    reportp(prefix, "C_InitToken", F->C_InitToken(s, SO_PIN_DEFAULT, 8, LABEL32));
    reportp(prefix, "C_OpenSession",
            F->C_OpenSession(s, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    reportp(prefix, "C_CloseAllSessions", F->C_CloseAllSessions(s));
}

/* Every function that takes a session handle, with well-formed arguments, in table order. */
static void call_session_functions(const char *prefix, CK_SESSION_HANDLE h)
{
    static CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
    static CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0};
    static CK_MECHANISM rsa_sha256 = {CKM_SHA256_RSA_PKCS, NULL, 0};
    static CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0};
    static CK_MECHANISM rsa_gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    static CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
    static CK_MECHANISM gcm = {CKM_AES_GCM, NULL, 0};
    static CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
    static CK_BYTE iv[12];
    static CK_BYTE tag[16];
    CK_GCM_MESSAGE_PARAMS msg = {iv, sizeof iv, 0, 0, tag, 128};
    CK_ULONG value_len = 16, bits = 2048;
    CK_ATTRIBUTE data_tmpl[] = {ATTR(CKA_CLASS, &class_data), ATTR(CKA_TOKEN, &no)};
    CK_ATTRIBUTE aes_tmpl[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes),
                               ATTR(CKA_VALUE_LEN, &value_len), ATTR(CKA_TOKEN, &no)};
    CK_ATTRIBUTE pub_tmpl[] = {ATTR(CKA_MODULUS_BITS, &bits), ATTR(CKA_TOKEN, &no)};
    CK_ATTRIBUTE priv_tmpl[] = {ATTR(CKA_TOKEN, &no)};
    CK_BYTE label[] = "x";
    CK_ATTRIBUTE label_tmpl[] = {ATTRN(CKA_LABEL, label, 1)};
    CK_ATTRIBUTE get_tmpl[] = {ATTRN(CKA_LABEL, NULL, 0)};
    CK_OBJECT_HANDLE obj = 0, obj2 = 0, handles[4];
    CK_ULONG count = 0;
    CK_SESSION_INFO info;
    CK_OBJECT_HANDLE key = 1, key2 = 2;
    CK_ULONG *len = &scratch_len;
    CK_BYTE *in = scratch_in, *out = scratch_out, *sig = scratch_sig;

#define SC(name, args)                                                                             \
    do {                                                                                           \
        scratch_len = sizeof scratch_out;                                                          \
        reportp(prefix, #name, F->name args);                                                      \
    } while (0)
    SC(C_InitPIN, (h, PIN, 4));
    SC(C_SetPIN, (h, PIN, 4, NEW_PIN, 4));
    SC(C_CloseSession, (h));
    SC(C_GetSessionInfo, (h, &info));
    SC(C_GetOperationState, (h, NULL, len));
    SC(C_SetOperationState, (h, in, 16, 0, 0));
    SC(C_Login, (h, CKU_USER, PIN, 4));
    SC(C_Logout, (h));
    SC(C_CreateObject, (h, data_tmpl, COUNT(data_tmpl), &obj));
    SC(C_CopyObject, (h, key, label_tmpl, COUNT(label_tmpl), &obj));
    SC(C_DestroyObject, (h, key));
    SC(C_GetObjectSize, (h, key, len));
    SC(C_GetAttributeValue, (h, key, get_tmpl, COUNT(get_tmpl)));
    SC(C_SetAttributeValue, (h, key, label_tmpl, COUNT(label_tmpl)));
    SC(C_FindObjectsInit, (h, NULL, 0));
    SC(C_FindObjects, (h, handles, 4, &count));
    SC(C_FindObjectsFinal, (h));
    SC(C_EncryptInit, (h, &ecb, key));
    SC(C_Encrypt, (h, in, 16, out, len));
    SC(C_EncryptUpdate, (h, in, 16, out, len));
    SC(C_EncryptFinal, (h, out, len));
    SC(C_DecryptInit, (h, &ecb, key));
    SC(C_Decrypt, (h, in, 16, out, len));
    SC(C_DecryptUpdate, (h, in, 16, out, len));
    SC(C_DecryptFinal, (h, out, len));
    SC(C_DigestInit, (h, &sha256));
    SC(C_Digest, (h, in, 16, out, len));
    SC(C_DigestUpdate, (h, in, 16));
    SC(C_DigestKey, (h, key));
    SC(C_DigestFinal, (h, out, len));
    SC(C_SignInit, (h, &rsa_sha256, key));
    SC(C_Sign, (h, in, 16, out, len));
    SC(C_SignUpdate, (h, in, 16));
    SC(C_SignFinal, (h, out, len));
    SC(C_SignRecoverInit, (h, &rsa_sha256, key));
    SC(C_SignRecover, (h, in, 16, out, len));
    SC(C_VerifyInit, (h, &rsa_sha256, key));
    SC(C_Verify, (h, in, 16, sig, 256));
    SC(C_VerifyUpdate, (h, in, 16));
    SC(C_VerifyFinal, (h, sig, 256));
    SC(C_VerifyRecoverInit, (h, &rsa_sha256, key));
    SC(C_VerifyRecover, (h, sig, 256, out, len));
    SC(C_DigestEncryptUpdate, (h, in, 16, out, len));
    SC(C_DecryptDigestUpdate, (h, in, 16, out, len));
    SC(C_SignEncryptUpdate, (h, in, 16, out, len));
    SC(C_DecryptVerifyUpdate, (h, in, 16, out, len));
    SC(C_GenerateKey, (h, &aes_gen, aes_tmpl, COUNT(aes_tmpl), &obj));
    SC(C_GenerateKeyPair, (h, &rsa_gen, pub_tmpl, COUNT(pub_tmpl), priv_tmpl, COUNT(priv_tmpl),
                           &obj, &obj2));
    SC(C_WrapKey, (h, &kw, key, key2, out, len));
    SC(C_UnwrapKey, (h, &kw, key, in, 24, aes_tmpl, 2, &obj));
    SC(C_DeriveKey, (h, &ecb, key, aes_tmpl, COUNT(aes_tmpl), &obj));
    SC(C_SeedRandom, (h, in, 16));
    SC(C_GenerateRandom, (h, out, 16));
    SC(C_GetFunctionStatus, (h));
    SC(C_CancelFunction, (h));
    if (!have_3_0)
        return;
    SC(C_LoginUser, (h, CKU_USER, PIN, 4, (CK_UTF8CHAR_PTR) "user", 4));
    SC(C_SessionCancel, (h, 0));
    SC(C_MessageEncryptInit, (h, &gcm, key));
    SC(C_EncryptMessage, (h, &msg, sizeof msg, NULL, 0, in, 16, out, len));
    SC(C_EncryptMessageBegin, (h, &msg, sizeof msg, NULL, 0));
    SC(C_EncryptMessageNext, (h, &msg, sizeof msg, in, 16, out, len, 0));
    SC(C_MessageEncryptFinal, (h));
    SC(C_MessageDecryptInit, (h, &gcm, key));
    SC(C_DecryptMessage, (h, &msg, sizeof msg, NULL, 0, in, 16, out, len));
    SC(C_DecryptMessageBegin, (h, &msg, sizeof msg, NULL, 0));
    SC(C_DecryptMessageNext, (h, &msg, sizeof msg, in, 16, out, len, 0));
    SC(C_MessageDecryptFinal, (h));
    SC(C_MessageSignInit, (h, &hmac, key));
    SC(C_SignMessage, (h, NULL, 0, in, 16, out, len));
    SC(C_SignMessageBegin, (h, NULL, 0));
    SC(C_SignMessageNext, (h, NULL, 0, in, 16, out, len));
    SC(C_MessageSignFinal, (h));
    SC(C_MessageVerifyInit, (h, &hmac, key));
    SC(C_VerifyMessage, (h, NULL, 0, in, 16, sig, 32));
    SC(C_VerifyMessageBegin, (h, NULL, 0));
    SC(C_VerifyMessageNext, (h, NULL, 0, in, 16, sig, 32));
    SC(C_MessageVerifyFinal, (h));
#undef SC
}

/* Every function that needs Python (all but the three table functions), C_Initialize first. */
static void call_every_python_function(const char *prefix, CK_SLOT_ID s, CK_SESSION_HANDLE h)
{
    call_global_functions(prefix);
    call_slot_functions(prefix, s);
    call_session_functions(prefix, h);
    reportp(prefix, "C_Finalize", F->C_Finalize(NULL));
}

/* ---- scenario: tables --------------------------------------------------------------------- */
static int scenario_tables(void)
{
    GetFunctionList_fn get_function_list = (GetFunctionList_fn)sym("C_GetFunctionList");
    GetInterfaceList_fn get_interface_list = (GetInterfaceList_fn)sym("C_GetInterfaceList");
    GetInterface_fn get_interface = (GetInterface_fn)sym("C_GetInterface");
    FUNCTION_LIST_2_40 *v2 = NULL;
    CK_RV rv;
    int i, missing = 0, mismatched = 0;

    report("tables.symbols", CKR_OK, "get_function_list=%d get_interface_list=%d get_interface=%d",
           get_function_list != NULL, get_interface_list != NULL, get_interface != NULL);
    if (get_function_list == NULL || get_interface_list == NULL || get_interface == NULL)
        return 1;

    rv = get_function_list(&v2);
    report("tables.getfunctionlist", rv, "major=%d minor=%d", v2 ? v2->version.major : -1,
           v2 ? v2->version.minor : -1);
    report("tables.getfunctionlist.null", get_function_list(NULL), NULL);

    /* Every exported C_* symbol, and every table slot, is the same function. */
    {
        void *const *entries3 = (void *const *)&F->C_Initialize;
        void *const *entries2 = v2 ? (void *const *)&v2->C_Initialize : NULL;
        int mismatched2 = 0;
        for (i = 0; i < COUNT_3_0; i++) {
            void *address = sym(NAMES_3_0[i]);
            if (address == NULL) {
                missing++;
                printf("tables.missing-symbol 0x1 name=%s\n", NAMES_3_0[i]);
            } else if (address != entries3[i]) {
                mismatched++;
                printf("tables.mismatch-3.0 0x1 name=%s\n", NAMES_3_0[i]);
            }
            if (i < COUNT_2_40 && entries2 != NULL && entries2[i] != entries3[i]) {
                mismatched2++;
                printf("tables.mismatch-2.40 0x1 name=%s\n", NAMES_3_0[i]);
            }
        }
        report("tables.symbols-3.0", CKR_OK, "missing=%d mismatched=%d", missing, mismatched);
        report("tables.table-2.40", CKR_OK, "mismatched=%d", mismatched2);
    }

    /* C_GetInterfaceList: two-call convention (3.0 §5.4.5). */
    {
        CK_ULONG count = 0;
        CK_INTERFACE list[4];
        memset(list, 0, sizeof list);
        report("tables.interfacelist.null-count", get_interface_list(NULL, NULL), NULL);
        rv = get_interface_list(NULL, &count);
        report("tables.interfacelist.count", rv, "count=%lu", count);
        count = 1;
        rv = get_interface_list(list, &count);
        report("tables.interfacelist.too-small", rv, "count=%lu", count);
        count = 4;
        rv = get_interface_list(list, &count);
        report("tables.interfacelist", rv, "count=%lu", count);
        for (i = 0; i < (int)count && i < 4; i++) {
            CK_VERSION *version = (CK_VERSION *)list[i].pFunctionList;
            char name[32];
            snprintf(name, sizeof name, "tables.interface%d", i);
            report(name, CKR_OK, "name=\"%s\" major=%d minor=%d flags=%lu same_as_getfunctionlist=%d",
                   list[i].pInterfaceName ? (char *)list[i].pInterfaceName : "(null)",
                   version ? version->major : -1, version ? version->minor : -1, list[i].flags,
                   (void *)list[i].pFunctionList == (void *)v2);
        }
    }
    return 0;
}

/* ---- scenario: before-init ---------------------------------------------------------------- */
static void interface_check(const char *name, const char *iface_name, CK_VERSION *version,
                            CK_FLAGS flags)
{
    GetInterface_fn get_interface = (GetInterface_fn)sym("C_GetInterface");
    CK_INTERFACE_PTR iface = (CK_INTERFACE_PTR)0x1; /* must be overwritten or left alone */
    CK_RV rv = get_interface((CK_UTF8CHAR_PTR)iface_name, version, &iface, flags);
    if (rv == CKR_OK && iface != NULL && iface != (CK_INTERFACE_PTR)0x1) {
        CK_VERSION *offered = (CK_VERSION *)iface->pFunctionList;
        report(name, rv, "name=\"%s\" major=%d minor=%d", (char *)iface->pInterfaceName,
               offered->major, offered->minor);
    } else {
        report(name, rv, NULL);
    }
}

static int scenario_before_init(void)
{
    GetFunctionList_fn get_function_list = (GetFunctionList_fn)sym("C_GetFunctionList");
    GetInterfaceList_fn get_interface_list = (GetInterfaceList_fn)sym("C_GetInterfaceList");
    GetInterface_fn get_interface = (GetInterface_fn)sym("C_GetInterface");
    FUNCTION_LIST_2_40 *v2 = NULL;
    CK_ULONG count = 0;
    CK_RV rv;
    CK_VERSION v240 = {2, 40}, v30 = {3, 0}, v99 = {9, 9}, v21 = {2, 1};

    /* The table functions work before C_Initialize (they are answered in C). */
    rv = get_function_list(&v2);
    report("getfunctionlist", rv, "major=%d minor=%d", v2 ? v2->version.major : -1,
           v2 ? v2->version.minor : -1);
    rv = get_interface_list(NULL, &count);
    report("getinterfacelist.count", rv, "count=%lu", count);
    interface_check("getinterface.default", NULL, NULL, 0);
    interface_check("getinterface.name-only", "PKCS 11", NULL, 0);
    interface_check("getinterface.v2.40", "PKCS 11", &v240, 0);
    interface_check("getinterface.v3.0", "PKCS 11", &v30, 0);
    interface_check("getinterface.v3.0-no-name", NULL, &v30, 0);
    interface_check("getinterface.unknown-name", "PKCS 12", NULL, 0);
    interface_check("getinterface.unknown-version", "PKCS 11", &v99, 0);
    interface_check("getinterface.old-version", "PKCS 11", &v21, 0);
    report("getinterface.null-out", get_interface(NULL, NULL, NULL, 0), NULL);

    /* Every other function: CKR_CRYPTOKI_NOT_INITIALIZED. */
    call_every_python_function("before", 0, 1);

    /* The 2.40 table answers the same. */
    if (v2 != NULL) {
        CK_INFO info;
        report("before.v2.C_GetInfo", v2->C_GetInfo(&info), NULL);
    }

    /* And the library still initialises afterwards. */
    report("after.C_Initialize", F->C_Initialize(NULL), NULL);
    {
        CK_INFO info;
        rv = F->C_GetInfo(&info);
        report("after.C_GetInfo", rv, "major=%d minor=%d", info.cryptokiVersion.major,
               info.cryptokiVersion.minor);
    }
    report("after.C_Finalize", F->C_Finalize(NULL), NULL);
    return 0;
}

/* ---- scenario: init-args ------------------------------------------------------------------ */
static unsigned long mutex_created, mutex_destroyed, mutex_locked, mutex_unlocked;

static CK_RV app_create_mutex(CK_VOID_PTR_PTR ppMutex)
{
    pthread_mutex_t *m;
    if (ppMutex == NULL)
        return CKR_ARGUMENTS_BAD;
    m = malloc(sizeof *m);
    if (m == NULL)
        return CKR_HOST_MEMORY;
    pthread_mutex_init(m, NULL);
    __atomic_add_fetch(&mutex_created, 1, __ATOMIC_SEQ_CST);
    *ppMutex = m;
    return CKR_OK;
}

static CK_RV app_destroy_mutex(CK_VOID_PTR pMutex)
{
    if (pMutex == NULL)
        return CKR_MUTEX_BAD;
    pthread_mutex_destroy((pthread_mutex_t *)pMutex);
    free(pMutex);
    __atomic_add_fetch(&mutex_destroyed, 1, __ATOMIC_SEQ_CST);
    return CKR_OK;
}

static CK_RV app_lock_mutex(CK_VOID_PTR pMutex)
{
    if (pMutex == NULL)
        return CKR_MUTEX_BAD;
    pthread_mutex_lock((pthread_mutex_t *)pMutex);
    __atomic_add_fetch(&mutex_locked, 1, __ATOMIC_SEQ_CST);
    return CKR_OK;
}

static CK_RV app_unlock_mutex(CK_VOID_PTR pMutex)
{
    if (pMutex == NULL)
        return CKR_MUTEX_BAD;
    __atomic_add_fetch(&mutex_unlocked, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock((pthread_mutex_t *)pMutex);
    return CKR_OK;
}

/* A few ordinary calls on the accelerator slot (slot 0 always holds an initialised token). */
static CK_RV some_calls(void)
{
    CK_INFO info;
    CK_ULONG count = 0;
    CK_SESSION_HANDLE h = 0;
    CK_BYTE random[16];
    CK_RV rv;
    if ((rv = F->C_GetInfo(&info)) != CKR_OK)
        return rv;
    if ((rv = F->C_GetSlotList(CK_TRUE, NULL, &count)) != CKR_OK)
        return rv;
    if ((rv = F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK)
        return rv;
    if ((rv = F->C_GenerateRandom(h, random, sizeof random)) != CKR_OK)
        return rv;
    return F->C_CloseSession(h);
}

#define WORKERS 4
#define WORKER_ROUNDS 25
static void *worker(void *arg)
{
    CK_RV *result = arg;
    int i;
    *result = CKR_OK;
    for (i = 0; i < WORKER_ROUNDS && *result == CKR_OK; i++)
        *result = some_calls();
    return NULL;
}

static void threaded_calls(const char *name)
{
    pthread_t threads[WORKERS];
    CK_RV results[WORKERS];
    int i, failures = 0;
    CK_RV first = CKR_OK;
    for (i = 0; i < WORKERS; i++)
        pthread_create(&threads[i], NULL, worker, &results[i]);
    for (i = 0; i < WORKERS; i++) {
        pthread_join(threads[i], NULL);
        if (results[i] != CKR_OK) {
            failures++;
            if (first == CKR_OK)
                first = results[i];
        }
    }
    report(name, first, "failures=%d", failures);
}

static int scenario_init_args(void)
{
    CK_C_INITIALIZE_ARGS args;
    CK_INFO info;
    CK_RV rv;
    unsigned long locks_before;

    memset(&args, 0, sizeof args);
    args.pReserved = &args;
    report("init.reserved-non-null", F->C_Initialize(&args), NULL);
    report("init.reserved-non-null.then-getinfo", F->C_GetInfo(&info), NULL);

    memset(&args, 0, sizeof args);
    args.CreateMutex = app_create_mutex;
    args.DestroyMutex = app_destroy_mutex;
    report("init.two-of-four-callbacks", F->C_Initialize(&args), NULL);
    args.LockMutex = app_lock_mutex;
    report("init.three-of-four-callbacks", F->C_Initialize(&args), NULL);
    memset(&args, 0, sizeof args);
    args.UnlockMutex = app_unlock_mutex;
    args.flags = CKF_OS_LOCKING_OK;
    report("init.one-callback-with-os-locking", F->C_Initialize(&args), NULL);
    report("init.partial.then-getinfo", F->C_GetInfo(&info), NULL);

    /* Case 3 (§5.4.1): callbacks, no flag -> the library must use the application's mutexes. */
    memset(&args, 0, sizeof args);
    args.CreateMutex = app_create_mutex;
    args.DestroyMutex = app_destroy_mutex;
    args.LockMutex = app_lock_mutex;
    args.UnlockMutex = app_unlock_mutex;
    report("init.app-mutex", F->C_Initialize(&args), NULL);
    report("init.app-mutex.calls", some_calls(), NULL);
    threaded_calls("init.app-mutex.threads");
    report("init.app-mutex.counts", CKR_OK, "created=%lu locked=%lu unlocked=%lu",
           mutex_created, mutex_locked, mutex_unlocked);
    report("init.second-initialize", F->C_Initialize(NULL), NULL);
    report("init.second-initialize-with-args", F->C_Initialize(&args), NULL);
    report("finalize.reserved-non-null", F->C_Finalize(&args), NULL);
    report("finalize.app-mutex", F->C_Finalize(NULL), NULL);
    report("finalize.app-mutex.counts", CKR_OK, "created=%lu destroyed=%lu locked=%lu unlocked=%lu",
           mutex_created, mutex_destroyed, mutex_locked, mutex_unlocked);

    /* After C_Finalize, everything is CKR_CRYPTOKI_NOT_INITIALIZED again. */
    call_every_python_function("after-finalize", 0, 1);

    /* Case 2: CKF_OS_LOCKING_OK alone; the application's callbacks are no longer used. */
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    locks_before = mutex_locked;
    report("init.os-locking", F->C_Initialize(&args), NULL);
    report("init.os-locking.calls", some_calls(), NULL);
    threaded_calls("init.os-locking.threads");
    report("init.os-locking.app-locks", CKR_OK, "used=%lu", mutex_locked - locks_before);
    report("finalize.os-locking", F->C_Finalize(NULL), NULL);

    /* Case 4: callbacks and the flag (either kind of lock is fine). */
    memset(&args, 0, sizeof args);
    args.CreateMutex = app_create_mutex;
    args.DestroyMutex = app_destroy_mutex;
    args.LockMutex = app_lock_mutex;
    args.UnlockMutex = app_unlock_mutex;
    args.flags = CKF_OS_LOCKING_OK;
    report("init.both", F->C_Initialize(&args), NULL);
    report("init.both.calls", some_calls(), NULL);
    report("finalize.both", F->C_Finalize(NULL), NULL);

    /* The library starts no threads of its own, so it needs none from the application. */
    memset(&args, 0, sizeof args);
    args.flags = CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK;
    report("init.cant-create-threads", F->C_Initialize(&args), NULL);
    report("init.cant-create-threads.calls", some_calls(), NULL);
    report("finalize.cant-create-threads", F->C_Finalize(NULL), NULL);

    /* Case 1: NULL (what python-pkcs11 passes) and an all-zero structure. */
    report("init.null", F->C_Initialize(NULL), NULL);
    threaded_calls("init.null.threads");
    report("finalize.null", F->C_Finalize(NULL), NULL);
    memset(&args, 0, sizeof args);
    report("init.zeroed", F->C_Initialize(&args), NULL);
    report("finalize.zeroed", F->C_Finalize(NULL), NULL);
    report("finalize.twice", F->C_Finalize(NULL), NULL);
    rv = F->C_GetInfo(&info);
    report("after-all.C_GetInfo", rv, NULL);
    return 0;
}

/* ---- scenario: bad-input ------------------------------------------------------------------ */
static CK_SLOT_ID find_slot(const char *label)
{
    /* Sized by asking first: the suite's shared kmdata holds as many tokens as earlier tests made. */
    CK_ULONG count = 0, i;
    CK_BYTE padded[32];
    CK_RV rv = F->C_GetSlotList(CK_TRUE, NULL, &count);
    CK_SLOT_ID *slots = rv == CKR_OK ? calloc(count ? count : 1, sizeof *slots) : NULL;
    if (rv == CKR_OK && slots == NULL)
        rv = CKR_HOST_MEMORY;
    if (rv == CKR_OK)
        rv = F->C_GetSlotList(CK_TRUE, slots, &count);
    size_t n = strlen(label);
    if (rv != CKR_OK) {
        report("setup.slotlist", rv, NULL);
        exit(2);
    }
    memset(padded, ' ', sizeof padded);
    memcpy(padded, label, n > 32 ? 32 : n);
    for (i = 0; i < count; i++) {
        CK_TOKEN_INFO info;
        if (F->C_GetTokenInfo(slots[i], &info) == CKR_OK && memcmp(info.label, padded, 32) == 0) {
            CK_SLOT_ID found = slots[i];
            report("setup.slot", CKR_OK, "slot=%lu", found);
            free(slots);
            return found;
        }
    }
    report("setup.slot", CKR_TOKEN_NOT_PRESENT, "label=%s", label);
    exit(2);
}

static CK_OBJECT_HANDLE create(CK_SESSION_HANDLE h, const char *name, CK_ATTRIBUTE *tmpl,
                               CK_ULONG n)
{
    CK_OBJECT_HANDLE obj = 0;
    CK_RV rv = F->C_CreateObject(h, tmpl, n, &obj);
    report(name, rv, NULL);
    return obj;
}

static int scenario_bad_input(const char *label, const char *so_pin, const char *user_pin)
{
    CK_SLOT_ID slot, slots[64];
    CK_SESSION_HANDLE h = 0, ro = 0, dummy = 0;
    CK_SESSION_INFO session_info;
    CK_ULONG count, len, ul_pin = strlen(user_pin), ul_so = strlen(so_pin);
    CK_UTF8CHAR_PTR upin = (CK_UTF8CHAR_PTR)user_pin, sopin = (CK_UTF8CHAR_PTR)so_pin;
    CK_OBJECT_HANDLE obj = 0, handles[8];
    CK_RV rv;
    CK_BYTE buf[4096], out[4096];
    const CK_ULONG HUGE_LEN = 1UL << 40;
    const CK_OBJECT_HANDLE BAD_OBJECT = 0xDEAD0001UL;
    int i;

    memset(buf, 0xA5, sizeof buf);
    report("setup.C_Initialize", F->C_Initialize(NULL), NULL);
    slot = find_slot(label);

    /* NULL output pointers on the slot-level functions. */
    {
        CK_MECHANISM_INFO mech_info;
        count = 64;
        report("null.C_GetInfo", F->C_GetInfo(NULL), NULL);
        report("null.C_GetSlotList.count", F->C_GetSlotList(CK_TRUE, slots, NULL), NULL);
        report("null.C_GetSlotList.both", F->C_GetSlotList(CK_FALSE, NULL, NULL), NULL);
        report("null.C_GetSlotInfo", F->C_GetSlotInfo(slot, NULL), NULL);
        report("null.C_GetTokenInfo", F->C_GetTokenInfo(slot, NULL), NULL);
        report("null.C_GetMechanismList", F->C_GetMechanismList(slot, NULL, NULL), NULL);
        report("null.C_GetMechanismInfo", F->C_GetMechanismInfo(slot, CKM_AES_KEY_GEN, NULL), NULL);
        report("null.C_OpenSession",
               F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, NULL), NULL);
        report("null.C_WaitForSlotEvent", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), NULL);
        report("waitforslotevent.reserved", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &dummy, &dummy), NULL);
        report("waitforslotevent.dont-block", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &dummy, NULL), NULL);
        (void)mech_info;
    }

    /* Two-call convention on the list functions (§5.2). */
    count = 0;
    rv = F->C_GetSlotList(CK_TRUE, NULL, &count);
    report("slotlist.length", rv, "count=%lu", count);
    len = 0;
    rv = F->C_GetSlotList(CK_TRUE, slots, &len);
    report("slotlist.too-small", rv, "count=%lu needed=%lu", len, count);
    count = 0;
    rv = F->C_GetMechanismList(slot, NULL, &count);
    report("mechanismlist.length", rv, "count=%lu", count);
    len = count ? count - 1 : 0;
    {
        CK_MECHANISM_TYPE mechs[512];
        rv = F->C_GetMechanismList(slot, mechs, &len);
        report("mechanismlist.too-small", rv, "count=%lu needed=%lu", len, count);
    }

    /* An invalid slot ID, on every function that takes one. */
    call_slot_functions("badslot", 0x7FFFUL);

    /* Sessions. */
    report("session.not-serial", F->C_OpenSession(slot, CKF_RW_SESSION, NULL, NULL, &dummy), NULL);
    report("session.open-rw", F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), NULL);
    report("session.open-ro", F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), NULL);
    report("null.C_GetSessionInfo", F->C_GetSessionInfo(h, NULL), NULL);

    /* An invalid session handle, on every function that takes one. */
    call_session_functions("badsession", 0xDEAD0000UL);
    call_session_functions("zerosession", 0UL);

    /* Login. */
    {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ATTRIBUTE private_data[] = {ATTR(CKA_CLASS, &cls), ATTR(CKA_PRIVATE, &yes),
                                       ATTR(CKA_TOKEN, &no)};
        report("login.bad-user-type", F->C_Login(h, 7UL, upin, ul_pin), NULL);
        report("logout.not-logged-in", F->C_Logout(h), NULL);
        report("login.context-specific-without-operation", F->C_Login(h, CKU_CONTEXT_SPECIFIC, upin, ul_pin), NULL);
        report("create.private-logged-out", F->C_CreateObject(h, private_data, COUNT(private_data), &obj), NULL);
        report("login.so-with-ro-session", F->C_Login(h, CKU_SO, sopin, ul_so), NULL);
        report("login.wrong-pin", F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "0000wrong", 9), NULL);
        report("login.null-pin", F->C_Login(h, CKU_USER, NULL, ul_pin), NULL);
        report("login.user", F->C_Login(h, CKU_USER, upin, ul_pin), NULL);
        report("login.twice", F->C_Login(h, CKU_USER, upin, ul_pin), NULL);
        report("login.twice-other-session", F->C_Login(ro, CKU_USER, upin, ul_pin), NULL);
        rv = F->C_GetSessionInfo(ro, &session_info);
        report("sessioninfo.ro-after-login", rv, "state=%lu flags=%lu", session_info.state, session_info.flags);
        rv = F->C_GetSessionInfo(h, &session_info);
        report("sessioninfo.rw-after-login", rv, "state=%lu flags=%lu slot_ok=%d", session_info.state,
               session_info.flags, session_info.slotID == slot);
    }

    /* Read-only sessions cannot make token objects (§5.6.1, §4.4). */
    {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ULONG value_len = 16;
        CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0};
        CK_ATTRIBUTE token_data[] = {ATTR(CKA_CLASS, &cls), ATTR(CKA_TOKEN, &yes)};
        CK_ATTRIBUTE token_aes[] = {ATTR(CKA_TOKEN, &yes), ATTR(CKA_VALUE_LEN, &value_len)};
        report("readonly.create-token-object", F->C_CreateObject(ro, token_data, COUNT(token_data), &obj), NULL);
        report("readonly.generate-token-key", F->C_GenerateKey(ro, &aes_gen, token_aes, COUNT(token_aes), &obj), NULL);
    }

    /* NULL pointers, NULL templates, NULL data, huge lengths. */
    {
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_ULONG value_len = 16;
        CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0};
        CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0};
        CK_ATTRIBUTE data_tmpl[] = {ATTR(CKA_CLASS, &cls), ATTR(CKA_TOKEN, &no)};
        CK_ATTRIBUTE aes_tmpl[] = {ATTR(CKA_TOKEN, &no), ATTR(CKA_VALUE_LEN, &value_len)};
        CK_ATTRIBUTE huge_value[] = {ATTR(CKA_CLASS, &cls), ATTRN(CKA_LABEL, buf, HUGE_LEN)};
        CK_ATTRIBUTE null_value[] = {ATTR(CKA_CLASS, &cls), ATTRN(CKA_LABEL, NULL, 5)};
        CK_OBJECT_HANDLE data_obj;
        CK_ATTRIBUTE get_label[] = {ATTRN(CKA_LABEL, NULL, 0)};

        report("null.C_CreateObject.handle", F->C_CreateObject(h, data_tmpl, COUNT(data_tmpl), NULL), NULL);
        report("null.C_GenerateKey.handle", F->C_GenerateKey(h, &aes_gen, aes_tmpl, COUNT(aes_tmpl), NULL), NULL);
        report("null.C_CreateObject.template", F->C_CreateObject(h, NULL, 3, &obj), NULL);
        report("null.C_GenerateKey.template", F->C_GenerateKey(h, &aes_gen, NULL, 2, &obj), NULL);
        report("null.C_GenerateKey.mechanism", F->C_GenerateKey(h, NULL, aes_tmpl, COUNT(aes_tmpl), &obj), NULL);
        report("null.C_FindObjectsInit.template", F->C_FindObjectsInit(h, NULL, 2), NULL);
        report("null.C_CreateObject.attribute-value", F->C_CreateObject(h, null_value, COUNT(null_value), &obj), NULL);
        data_obj = create(h, "setup.data-object", data_tmpl, COUNT(data_tmpl));
        report("null.C_GetAttributeValue.template", F->C_GetAttributeValue(h, data_obj, NULL, 1), NULL);
        report("null.C_SetAttributeValue.template", F->C_SetAttributeValue(h, data_obj, NULL, 1), NULL);
        report("null.C_GetObjectSize", F->C_GetObjectSize(h, data_obj, NULL), NULL);

        report("find.init", F->C_FindObjectsInit(h, NULL, 0), NULL);
        report("null.C_FindObjects.handles", F->C_FindObjects(h, NULL, 5, &count), NULL);
        report("null.C_FindObjects.count", F->C_FindObjects(h, handles, 5, NULL), NULL);
        report("find.init-twice", F->C_FindObjectsInit(h, NULL, 0), NULL);
        count = 99;
        rv = F->C_FindObjects(h, handles, 8, &count);
        report("find.objects", rv, "count=%lu", count);
        report("find.final", F->C_FindObjectsFinal(h), NULL);

        report("null.C_GenerateRandom", F->C_GenerateRandom(h, NULL, 16), NULL);
        report("null.C_SeedRandom", F->C_SeedRandom(h, NULL, 16), NULL);
        report("generaterandom.zero", F->C_GenerateRandom(h, out, 0), NULL);
        report("generaterandom", F->C_GenerateRandom(h, out, 32), NULL);

        report("digest.init", F->C_DigestInit(h, &sha256), NULL);
        len = sizeof out;
        report("null.C_Digest.data", F->C_Digest(h, NULL, 16, out, &len), NULL);
        /* §5.12.2: C_Digest always terminates the operation unless it returns CKR_BUFFER_TOO_SMALL
         * or is a successful length query. */
        report("digest.after-error.reinit", F->C_DigestInit(h, &sha256), NULL);
        len = sizeof out;
        report("null.C_DigestUpdate.data", F->C_DigestUpdate(h, NULL, 16), NULL);
        F->C_DigestInit(h, &sha256); /* make sure one is active, whatever happened above */
        len = sizeof out;
        if (!skip_huge)
        report("huge.C_Digest", F->C_Digest(h, buf, HUGE_LEN, out, &len), NULL);
        F->C_DigestInit(h, &sha256);
        if (!skip_huge)
        report("huge.C_DigestUpdate", F->C_DigestUpdate(h, buf, HUGE_LEN), NULL);
        F->C_DigestInit(h, &sha256);
        len = sizeof out;
        report("null.C_Digest.length", F->C_Digest(h, buf, 16, out, NULL), NULL);
        F->C_DigestInit(h, &sha256);
        len = sizeof out;
        rv = F->C_Digest(h, (CK_BYTE_PTR) "abc", 3, out, &len);
        report("digest.sha256-abc", rv, "len=%lu kat=%d", len,
               len == 32 && memcmp(out, "\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23"
                                        "\xb0\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad", 32) == 0);
        if (!skip_huge) {
        report("huge.C_GenerateRandom", F->C_GenerateRandom(h, out, HUGE_LEN), NULL);
        report("huge.C_SeedRandom", F->C_SeedRandom(h, buf, HUGE_LEN), NULL);
        report("huge.C_CreateObject.count", F->C_CreateObject(h, data_tmpl, HUGE_LEN, &obj), NULL);
        report("huge.C_FindObjectsInit.count", F->C_FindObjectsInit(h, data_tmpl, HUGE_LEN), NULL);
        report("huge.C_GetAttributeValue.count", F->C_GetAttributeValue(h, data_obj, get_label, HUGE_LEN), NULL);
        report("huge.C_SetAttributeValue.count", F->C_SetAttributeValue(h, data_obj, data_tmpl, HUGE_LEN), NULL);
        report("huge.C_GenerateKey.count", F->C_GenerateKey(h, &aes_gen, aes_tmpl, HUGE_LEN, &obj), NULL);
        report("huge.C_CreateObject.value-len", F->C_CreateObject(h, huge_value, COUNT(huge_value), &obj), NULL);
        report("huge.C_Login.pin-len", F->C_Login(h, CKU_USER, upin, HUGE_LEN), NULL);
        }
        rv = F->C_GetSessionInfo(h, &session_info);
        report("huge.still-alive", rv, NULL);
    }

    /* Templates (§4, §5.7.1). */
    {
        CK_OBJECT_CLASS cls = CKO_DATA, bad_class = 0x7777UL;
        CK_BYTE x = 'x', y = 'y';
        CK_BYTE sixteen[16] = {0};
        CK_ATTRIBUTE class_len3[] = {ATTRN(CKA_CLASS, &cls, 3), ATTR(CKA_TOKEN, &no)};
        CK_ATTRIBUTE class_bad[] = {ATTR(CKA_CLASS, &bad_class), ATTR(CKA_TOKEN, &no)};
        CK_ATTRIBUTE unknown_type[] = {ATTR(CKA_CLASS, &cls), ATTR(CKA_TOKEN, &no),
                                       ATTRN(CKA_UNDEFINED_TYPE, &x, 1)};
        CK_ATTRIBUTE aes_no_value[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes),
                                       ATTR(CKA_TOKEN, &no)};
        CK_ATTRIBUTE secret_no_type[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_TOKEN, &no),
                                         ATTR(CKA_VALUE, &sixteen)};
        CK_ATTRIBUTE twice[] = {ATTR(CKA_CLASS, &cls), ATTR(CKA_TOKEN, &no), ATTRN(CKA_LABEL, &x, 1),
                                ATTRN(CKA_LABEL, &y, 1)};
        CK_ATTRIBUTE aes_local[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes),
                                    ATTR(CKA_TOKEN, &no), ATTR(CKA_VALUE, &sixteen), ATTR(CKA_LOCAL, &yes)};
        CK_ATTRIBUTE aes_bad_len[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes),
                                      ATTR(CKA_TOKEN, &no), ATTRN(CKA_VALUE, &sixteen, 15)};
        CK_ATTRIBUTE gen_no_len[] = {ATTR(CKA_TOKEN, &no)};
        CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0};
        report("template.empty", F->C_CreateObject(h, class_bad, 0, &obj), NULL);
        report("template.class-len-3", F->C_CreateObject(h, class_len3, COUNT(class_len3), &obj), NULL);
        report("template.class-unknown", F->C_CreateObject(h, class_bad, COUNT(class_bad), &obj), NULL);
        report("template.unknown-attribute", F->C_CreateObject(h, unknown_type, COUNT(unknown_type), &obj), NULL);
        report("template.aes-without-value", F->C_CreateObject(h, aes_no_value, COUNT(aes_no_value), &obj), NULL);
        report("template.secret-without-key-type", F->C_CreateObject(h, secret_no_type, COUNT(secret_no_type), &obj), NULL);
        report("template.same-attribute-twice", F->C_CreateObject(h, twice, COUNT(twice), &obj), NULL);
        report("template.read-only-local", F->C_CreateObject(h, aes_local, COUNT(aes_local), &obj), NULL);
        report("template.aes-15-byte-value", F->C_CreateObject(h, aes_bad_len, COUNT(aes_bad_len), &obj), NULL);
        report("template.generate-without-value-len", F->C_GenerateKey(h, &aes_gen, gen_no_len, COUNT(gen_no_len), &obj), NULL);
    }

    /* Keys for the rest. */
    static CK_BYTE kat_key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                  0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
    static CK_BYTE kat_plain[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    static CK_BYTE kat_cipher[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
                                     0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a}; /* FIPS-197 C.1 */
    static CK_BYTE wrap_value[16] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,
                                     0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    static CK_BYTE sens_value[16] = {0x5e, 0x45, 0x51, 0x71, 0x5e, 0x45, 0x51, 0x71,
                                     0x5e, 0x45, 0x51, 0x71, 0x5e, 0x45, 0x51, 0x71};
    static CK_BYTE label_text[] = "hello-label";
    CK_ATTRIBUTE kat_tmpl[] = {
        ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes), ATTR(CKA_TOKEN, &no),
        ATTR(CKA_VALUE, &kat_key), ATTR(CKA_ENCRYPT, &yes), ATTR(CKA_DECRYPT, &yes),
        ATTR(CKA_SIGN, &no), ATTR(CKA_WRAP, &no), ATTR(CKA_SENSITIVE, &no),
        ATTR(CKA_EXTRACTABLE, &yes), ATTRN(CKA_LABEL, label_text, 11)};
    CK_ATTRIBUTE wrap_tmpl[] = {
        ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes), ATTR(CKA_TOKEN, &no),
        ATTR(CKA_VALUE, &wrap_value), ATTR(CKA_WRAP, &yes), ATTR(CKA_UNWRAP, &yes),
        ATTR(CKA_ENCRYPT, &no), ATTR(CKA_DECRYPT, &no)};
    CK_ATTRIBUTE sens_tmpl[] = {
        ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes), ATTR(CKA_TOKEN, &no),
        ATTR(CKA_VALUE, &sens_value), ATTR(CKA_SENSITIVE, &yes), ATTR(CKA_EXTRACTABLE, &no),
        ATTR(CKA_ENCRYPT, &no), ATTR(CKA_DECRYPT, &yes)};
    CK_OBJECT_HANDLE k_kat = create(h, "setup.kat-key", kat_tmpl, COUNT(kat_tmpl));
    CK_OBJECT_HANDLE k_wrap = create(h, "setup.wrap-key", wrap_tmpl, COUNT(wrap_tmpl));
    CK_OBJECT_HANDLE k_sens = create(h, "setup.sensitive-key", sens_tmpl, COUNT(sens_tmpl));
    CK_OBJECT_HANDLE pub = 0, priv = 0, pub_nosign = 0, priv_nosign = 0;
    {
        CK_ULONG bits = 2048;
        CK_BYTE e[] = {0x01, 0x00, 0x01};
        CK_MECHANISM rsa_gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
        CK_ATTRIBUTE pub_tmpl[] = {ATTR(CKA_TOKEN, &no), ATTR(CKA_VERIFY, &yes), ATTR(CKA_ENCRYPT, &yes),
                                   ATTR(CKA_MODULUS_BITS, &bits), ATTRN(CKA_PUBLIC_EXPONENT, e, 3)};
        CK_ATTRIBUTE priv_tmpl[] = {ATTR(CKA_TOKEN, &no), ATTR(CKA_PRIVATE, &yes), ATTR(CKA_SENSITIVE, &yes),
                                    ATTR(CKA_SIGN, &yes), ATTR(CKA_DECRYPT, &yes)};
        CK_ATTRIBUTE priv_nosign_tmpl[] = {ATTR(CKA_TOKEN, &no), ATTR(CKA_PRIVATE, &yes),
                                           ATTR(CKA_SENSITIVE, &yes), ATTR(CKA_SIGN, &no),
                                           ATTR(CKA_DECRYPT, &yes)};
        report("setup.rsa-pair", F->C_GenerateKeyPair(h, &rsa_gen, pub_tmpl, COUNT(pub_tmpl), priv_tmpl,
                                                      COUNT(priv_tmpl), &pub, &priv), NULL);
        report("setup.rsa-pair-nosign", F->C_GenerateKeyPair(h, &rsa_gen, pub_tmpl, COUNT(pub_tmpl),
                                                             priv_nosign_tmpl, COUNT(priv_nosign_tmpl),
                                                             &pub_nosign, &priv_nosign), NULL);
    }

    /* C_GetAttributeValue (§5.7.5). */
    {
        CK_BYTE small[2], value[64], label_buf[64];
        CK_KEY_TYPE kt = 0;
        CK_ATTRIBUTE a_sens[] = {ATTRN(CKA_VALUE, value, sizeof value)};
        CK_ATTRIBUTE a_sens_and_type[] = {ATTRN(CKA_VALUE, value, sizeof value), ATTR(CKA_KEY_TYPE, &kt)};
        CK_ATTRIBUTE a_unknown[] = {ATTRN(CKA_UNDEFINED_TYPE, value, sizeof value)};
        CK_ATTRIBUTE a_small[] = {ATTRN(CKA_LABEL, small, sizeof small)};
        CK_ATTRIBUTE a_null[] = {ATTRN(CKA_LABEL, NULL, 0)};
        CK_ATTRIBUTE a_label[] = {ATTRN(CKA_LABEL, label_buf, sizeof label_buf)};
        CK_ATTRIBUTE a_value[] = {ATTRN(CKA_VALUE, value, sizeof value)};
        CK_ATTRIBUTE a_priv_exp[] = {ATTRN(CKA_PRIVATE_EXPONENT, value, sizeof value)};
        CK_ATTRIBUTE a_modulus[] = {ATTRN(CKA_MODULUS, NULL, 0)};

        rv = F->C_GetAttributeValue(h, k_sens, a_sens, 1);
        report("getattr.sensitive-value", rv, "len=0x%lx", a_sens[0].ulValueLen);
        a_sens_and_type[0].ulValueLen = sizeof value;
        rv = F->C_GetAttributeValue(h, k_sens, a_sens_and_type, 2);
        report("getattr.sensitive-and-key-type", rv, "len0=0x%lx len1=%lu key_type=0x%lx",
               a_sens_and_type[0].ulValueLen, a_sens_and_type[1].ulValueLen, kt);
        rv = F->C_GetAttributeValue(h, priv, a_priv_exp, 1);
        report("getattr.rsa-private-exponent", rv, "len=0x%lx", a_priv_exp[0].ulValueLen);
        rv = F->C_GetAttributeValue(h, pub, a_modulus, 1);
        report("getattr.rsa-modulus-length", rv, "len=%lu", a_modulus[0].ulValueLen);
        rv = F->C_GetAttributeValue(h, k_kat, a_unknown, 1);
        report("getattr.unknown-attribute", rv, "len=0x%lx", a_unknown[0].ulValueLen);
        rv = F->C_GetAttributeValue(h, k_kat, a_small, 1);
        report("getattr.too-small", rv, "len=0x%lx", a_small[0].ulValueLen);
        rv = F->C_GetAttributeValue(h, k_kat, a_null, 1);
        report("getattr.null-value", rv, "len=%lu", a_null[0].ulValueLen);
        rv = F->C_GetAttributeValue(h, k_kat, a_label, 1);
        report("getattr.label", rv, "len=%lu match=%d", a_label[0].ulValueLen,
               a_label[0].ulValueLen == 11 && memcmp(label_buf, label_text, 11) == 0);
        rv = F->C_GetAttributeValue(h, k_kat, a_value, 1);
        report("getattr.plain-value", rv, "len=%lu match=%d", a_value[0].ulValueLen,
               a_value[0].ulValueLen == 16 && memcmp(value, kat_key, 16) == 0);
    }

    /* Invalid object and key handles. */
    {
        CK_BYTE v[16];
        CK_ATTRIBUTE a[] = {ATTRN(CKA_LABEL, v, sizeof v)};
        CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
        CK_MECHANISM rsa_sha256 = {CKM_SHA256_RSA_PKCS, NULL, 0};
        CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0};
        CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
        CK_ULONG sz = 0;
        CK_ATTRIBUTE unwrap_tmpl[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes),
                                      ATTR(CKA_TOKEN, &no)};
        report("badobject.C_GetAttributeValue", F->C_GetAttributeValue(h, BAD_OBJECT, a, 1), NULL);
        report("badobject.C_SetAttributeValue", F->C_SetAttributeValue(h, BAD_OBJECT, a, 1), NULL);
        report("badobject.C_GetObjectSize", F->C_GetObjectSize(h, BAD_OBJECT, &sz), NULL);
        report("badobject.C_CopyObject", F->C_CopyObject(h, BAD_OBJECT, a, 1, &obj), NULL);
        report("badobject.C_DestroyObject", F->C_DestroyObject(h, BAD_OBJECT), NULL);
        report("badobject.C_DestroyObject.zero", F->C_DestroyObject(h, 0), NULL);
        report("badkey.C_EncryptInit", F->C_EncryptInit(h, &ecb, BAD_OBJECT), NULL);
        report("badkey.C_DecryptInit", F->C_DecryptInit(h, &ecb, BAD_OBJECT), NULL);
        report("badkey.C_SignInit", F->C_SignInit(h, &rsa_sha256, BAD_OBJECT), NULL);
        report("badkey.C_VerifyInit", F->C_VerifyInit(h, &rsa_sha256, BAD_OBJECT), NULL);
        report("badkey.C_EncryptInit.zero", F->C_EncryptInit(h, &ecb, 0), NULL);
        report("digest.init-for-digestkey", F->C_DigestInit(h, &sha256), NULL);
        report("badkey.C_DigestKey", F->C_DigestKey(h, BAD_OBJECT), NULL);
        len = sizeof out;
        F->C_DigestFinal(h, out, &len);
        len = sizeof out;
        report("badkey.C_WrapKey.wrapping", F->C_WrapKey(h, &kw, BAD_OBJECT, k_kat, out, &len), NULL);
        len = sizeof out;
        report("badkey.C_WrapKey.target", F->C_WrapKey(h, &kw, k_wrap, BAD_OBJECT, out, &len), NULL);
        report("badkey.C_UnwrapKey", F->C_UnwrapKey(h, &kw, BAD_OBJECT, buf, 24, unwrap_tmpl,
                                                    COUNT(unwrap_tmpl), &obj), NULL);
    }

    /* Operations (§5.8-5.13). */
    {
        CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
        CK_BYTE iv5[5] = {0}, iv16[16] = {0};
        CK_MECHANISM cbc_iv5 = {CKM_AES_CBC, iv5, sizeof iv5};
        CK_MECHANISM cbc_null = {CKM_AES_CBC, NULL, 0};
        CK_MECHANISM cbc_huge = {CKM_AES_CBC, iv16, HUGE_LEN};
        CK_MECHANISM gcm_null = {CKM_AES_GCM, NULL, 0};
        CK_MECHANISM unknown = {CKM_UNDEFINED, NULL, 0};
        CK_MECHANISM rsa_pkcs = {CKM_RSA_PKCS, NULL, 0};
        CK_MECHANISM rsa_sha256 = {CKM_SHA256_RSA_PKCS, NULL, 0};
        CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0};
        CK_MECHANISM ecb_digest = {CKM_AES_ECB, NULL, 0};
        CK_BYTE data32[32], cipher[64], plain[64];
        CK_MECHANISM_INFO info;

        for (i = 0; i < 32; i++)
            data32[i] = (CK_BYTE)i;

        len = sizeof out;
        report("notinit.C_Encrypt", F->C_Encrypt(h, data32, 16, out, &len), NULL);
        len = sizeof out;
        report("notinit.C_EncryptUpdate", F->C_EncryptUpdate(h, data32, 16, out, &len), NULL);
        len = sizeof out;
        report("notinit.C_EncryptFinal", F->C_EncryptFinal(h, out, &len), NULL);
        len = sizeof out;
        report("notinit.C_Decrypt", F->C_Decrypt(h, data32, 16, out, &len), NULL);
        len = sizeof out;
        report("notinit.C_DecryptFinal", F->C_DecryptFinal(h, out, &len), NULL);
        len = sizeof out;
        report("notinit.C_Sign", F->C_Sign(h, data32, 16, out, &len), NULL);
        report("notinit.C_SignUpdate", F->C_SignUpdate(h, data32, 16), NULL);
        len = sizeof out;
        report("notinit.C_SignFinal", F->C_SignFinal(h, out, &len), NULL);
        report("notinit.C_Verify", F->C_Verify(h, data32, 16, out, 256), NULL);
        report("notinit.C_VerifyFinal", F->C_VerifyFinal(h, out, 256), NULL);
        len = sizeof out;
        report("notinit.C_Digest", F->C_Digest(h, data32, 16, out, &len), NULL);
        report("notinit.C_DigestUpdate", F->C_DigestUpdate(h, data32, 16), NULL);
        report("notinit.C_DigestKey", F->C_DigestKey(h, k_kat), NULL);
        len = sizeof out;
        report("notinit.C_DigestFinal", F->C_DigestFinal(h, out, &len), NULL);
        count = 0;
        report("notinit.C_FindObjects", F->C_FindObjects(h, handles, 8, &count), NULL);
        report("notinit.C_FindObjectsFinal", F->C_FindObjectsFinal(h), NULL);
        len = sizeof out;
        report("notinit.C_GetOperationState", F->C_GetOperationState(h, NULL, &len), NULL);
        report("setoperationstate.garbage", F->C_SetOperationState(h, buf, 40, 0, 0), NULL);

        report("mechanism.unknown.C_EncryptInit", F->C_EncryptInit(h, &unknown, k_kat), NULL);
        report("mechanism.unknown.C_DigestInit", F->C_DigestInit(h, &unknown), NULL);
        report("mechanism.unknown.C_GenerateKey", F->C_GenerateKey(h, &unknown, NULL, 0, &obj), NULL);
        report("mechanism.unknown.C_GetMechanismInfo", F->C_GetMechanismInfo(slot, CKM_UNDEFINED, &info), NULL);
        report("mechanism.not-a-digest.C_DigestInit", F->C_DigestInit(h, &ecb_digest), NULL);
        /* 3.0 §5.8.1: C_EncryptInit with a NULL mechanism terminates the active encryption. */
        report("terminate.encrypt-init", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        report("terminate.encrypt-init-null", F->C_EncryptInit(h, NULL, k_kat), NULL);
        len = sizeof out;
        report("terminate.then-encrypt", F->C_Encrypt(h, data32, 16, out, &len), NULL);
        report("keytype.aes-with-rsa-pkcs", F->C_EncryptInit(h, &rsa_pkcs, k_kat), NULL);
        report("keytype.aes-with-sha256-rsa-pkcs", F->C_SignInit(h, &rsa_sha256, k_kat), NULL);
        report("keytype.rsa-with-aes-ecb", F->C_EncryptInit(h, &ecb, pub), NULL);
        report("function.sign-without-cka-sign", F->C_SignInit(h, &rsa_sha256, priv_nosign), NULL);
        report("function.encrypt-without-cka-encrypt", F->C_EncryptInit(h, &ecb, k_sens), NULL);
        report("param.cbc-iv-5", F->C_EncryptInit(h, &cbc_iv5, k_kat), NULL);
        report("param.cbc-iv-null", F->C_EncryptInit(h, &cbc_null, k_kat), NULL);
        if (!skip_huge)
            report("param.cbc-iv-huge", F->C_EncryptInit(h, &cbc_huge, k_kat), NULL);
        report("param.gcm-null", F->C_EncryptInit(h, &gcm_null, k_kat), NULL);

        /* Second Init while one is active. */
        report("active.encrypt-init", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        report("active.encrypt-init-again", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        len = sizeof out;
        report("active.encrypt-finish", F->C_Encrypt(h, data32, 16, out, &len), NULL);
        report("active.digest-init", F->C_DigestInit(h, &sha256), NULL);
        report("active.digest-init-again", F->C_DigestInit(h, &sha256), NULL);
        len = sizeof out;
        report("active.digest-finish", F->C_Digest(h, data32, 16, out, &len), NULL);

        /* CKM_AES_ECB needs whole blocks. */
        report("ecb.init-15", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        len = sizeof out;
        report("ecb.encrypt-15-bytes", F->C_Encrypt(h, data32, 15, out, &len), NULL);
        report("ecb.after-error.reinit", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        len = sizeof out;
        F->C_Encrypt(h, data32, 16, out, &len);
        report("ecb.decrypt-init-15", F->C_DecryptInit(h, &ecb, k_kat), NULL);
        len = sizeof out;
        report("ecb.decrypt-15-bytes", F->C_Decrypt(h, data32, 15, out, &len), NULL);

        /* The two-call convention on C_Encrypt (§5.2, §5.8.2). */
        report("twocall.init", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        len = 0;
        rv = F->C_Encrypt(h, data32, 32, NULL, &len);
        report("twocall.length-query", rv, "len=%lu", len);
        len = 8;
        rv = F->C_Encrypt(h, data32, 32, cipher, &len);
        report("twocall.too-small", rv, "len=%lu", len);
        len = sizeof cipher;
        rv = F->C_Encrypt(h, data32, 32, cipher, &len);
        report("twocall.encrypt", rv, "len=%lu", len);
        len = sizeof out;
        report("twocall.after-success", F->C_Encrypt(h, data32, 32, out, &len), NULL);
        report("twocall.decrypt-init", F->C_DecryptInit(h, &ecb, k_kat), NULL);
        len = sizeof plain;
        rv = F->C_Decrypt(h, cipher, 32, plain, &len);
        report("twocall.decrypt", rv, "len=%lu match=%d", len, len == 32 && memcmp(plain, data32, 32) == 0);

        /* FIPS-197 appendix C.1 through the library. */
        report("kat.init", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        len = sizeof out;
        rv = F->C_Encrypt(h, kat_plain, 16, out, &len);
        report("kat.aes128-ecb", rv, "len=%lu match=%d", len, len == 16 && memcmp(out, kat_cipher, 16) == 0);
        /* Multi-part: two updates and a final give the same as one call. */
        report("multipart.init", F->C_EncryptInit(h, &ecb, k_kat), NULL);
        {
            CK_ULONG l1 = sizeof out, l2, l3;
            CK_RV r1 = F->C_EncryptUpdate(h, data32, 10, out, &l1);
            l2 = sizeof out - l1;
            CK_RV r2 = F->C_EncryptUpdate(h, data32 + 10, 22, out + l1, &l2);
            l3 = sizeof out - l1 - l2;
            CK_RV r3 = F->C_EncryptFinal(h, out + l1 + l2, &l3);
            rv = r1 ? r1 : r2 ? r2 : r3;
            report("multipart.encrypt", rv, "len=%lu match=%d", l1 + l2 + l3,
                   l1 + l2 + l3 == 32 && memcmp(out, cipher, 32) == 0);
        }

        /* Signatures (§5.11-5.12). */
        {
            CK_BYTE sig[512];
            CK_ULONG sig_len;
            report("sign.init", F->C_SignInit(h, &rsa_sha256, priv), NULL);
            report("sign.init-again", F->C_SignInit(h, &rsa_sha256, priv), NULL);
            sig_len = 0;
            rv = F->C_Sign(h, data32, 32, NULL, &sig_len);
            report("sign.length-query", rv, "len=%lu", sig_len);
            sig_len = 10;
            rv = F->C_Sign(h, data32, 32, sig, &sig_len);
            report("sign.too-small", rv, "len=%lu", sig_len);
            sig_len = sizeof sig;
            rv = F->C_Sign(h, data32, 32, sig, &sig_len);
            report("sign.sign", rv, "len=%lu", sig_len);
            report("verify.init", F->C_VerifyInit(h, &rsa_sha256, pub), NULL);
            report("verify.good", F->C_Verify(h, data32, 32, sig, sig_len), NULL);
            report("verify.after-success", F->C_Verify(h, data32, 32, sig, sig_len), NULL);
            sig[17] ^= 0x40;
            report("verify.bad.init", F->C_VerifyInit(h, &rsa_sha256, pub), NULL);
            report("verify.bad-signature", F->C_Verify(h, data32, 32, sig, sig_len), NULL);
            sig[17] ^= 0x40;
            report("verify.short.init", F->C_VerifyInit(h, &rsa_sha256, pub), NULL);
            report("verify.short-signature", F->C_Verify(h, data32, 32, sig, sig_len - 1), NULL);
            report("verify.multipart.init", F->C_VerifyInit(h, &rsa_sha256, pub), NULL);
            {
                CK_RV r1 = F->C_VerifyUpdate(h, data32, 7);
                CK_RV r2 = F->C_VerifyUpdate(h, data32 + 7, 25);
                CK_RV r3 = F->C_VerifyFinal(h, sig, sig_len);
                report("verify.multipart", r1 ? r1 : r2 ? r2 : r3, NULL);
            }
            report("sign.multipart.init", F->C_SignInit(h, &rsa_sha256, priv), NULL);
            {
                CK_BYTE sig2[512];
                CK_ULONG sig2_len = sizeof sig2;
                CK_RV r1 = F->C_SignUpdate(h, data32, 20);
                CK_RV r2 = F->C_SignUpdate(h, data32 + 20, 12);
                CK_RV r3 = F->C_SignFinal(h, sig2, &sig2_len);
                /* PKCS#1 v1.5 is deterministic: the same signature as the single-part call. */
                report("sign.multipart", r1 ? r1 : r2 ? r2 : r3, "len=%lu same=%d", sig2_len,
                       sig2_len == sig_len && memcmp(sig, sig2, sig_len) == 0);
            }
            report("sign.public-key.init", F->C_SignInit(h, &rsa_sha256, pub), NULL);
        }

        /* Wrapping (§5.18). */
        {
            CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
            CK_BYTE wrapped[64], value[32], garbage[24];
            CK_ULONG wrapped_len;
            CK_OBJECT_HANDLE unwrapped = 0;
            CK_ATTRIBUTE unwrap_tmpl[] = {ATTR(CKA_CLASS, &class_secret), ATTR(CKA_KEY_TYPE, &key_aes),
                                          ATTR(CKA_TOKEN, &no), ATTR(CKA_SENSITIVE, &no),
                                          ATTR(CKA_EXTRACTABLE, &yes), ATTR(CKA_ENCRYPT, &yes)};
            CK_ATTRIBUTE get_value[] = {ATTRN(CKA_VALUE, value, sizeof value)};
            memset(garbage, 0x3C, sizeof garbage);
            wrapped_len = sizeof wrapped;
            report("wrap.unextractable", F->C_WrapKey(h, &kw, k_wrap, k_sens, wrapped, &wrapped_len), NULL);
            wrapped_len = 0;
            rv = F->C_WrapKey(h, &kw, k_wrap, k_kat, NULL, &wrapped_len);
            report("wrap.length-query", rv, "len=%lu", wrapped_len);
            wrapped_len = 4;
            rv = F->C_WrapKey(h, &kw, k_wrap, k_kat, wrapped, &wrapped_len);
            report("wrap.too-small", rv, "len=%lu", wrapped_len);
            wrapped_len = sizeof wrapped;
            rv = F->C_WrapKey(h, &kw, k_wrap, k_kat, wrapped, &wrapped_len);
            report("wrap.wrap", rv, "len=%lu", wrapped_len);
            rv = F->C_UnwrapKey(h, &kw, k_wrap, wrapped, wrapped_len, unwrap_tmpl, COUNT(unwrap_tmpl), &unwrapped);
            report("unwrap.good", rv, NULL);
            rv = F->C_GetAttributeValue(h, unwrapped, get_value, 1);
            report("unwrap.value", rv, "len=%lu match=%d", get_value[0].ulValueLen,
                   get_value[0].ulValueLen == 16 && memcmp(value, kat_key, 16) == 0);
            rv = F->C_UnwrapKey(h, &kw, k_wrap, garbage, 24, unwrap_tmpl, COUNT(unwrap_tmpl), &unwrapped);
            report("unwrap.garbage-24", rv, NULL);
            rv = F->C_UnwrapKey(h, &kw, k_wrap, garbage, 13, unwrap_tmpl, COUNT(unwrap_tmpl), &unwrapped);
            report("unwrap.garbage-13", rv, NULL);
            rv = F->C_UnwrapKey(h, &kw, k_wrap, garbage, 8, unwrap_tmpl, COUNT(unwrap_tmpl), &unwrapped);
            report("unwrap.garbage-8", rv, NULL);
            rv = F->C_UnwrapKey(h, &kw, k_wrap, NULL, 24, unwrap_tmpl, COUNT(unwrap_tmpl), &unwrapped);
            report("null.C_UnwrapKey.wrapped", rv, NULL);
            wrapped_len = sizeof wrapped;
            report("null.C_WrapKey.length", F->C_WrapKey(h, &kw, k_wrap, k_kat, wrapped, NULL), NULL);
        }
    }

    /* Objects go with their session; sessions go with C_CloseAllSessions (§5.6.4). */
    report("logout", F->C_Logout(h), NULL);
    report("logout.twice", F->C_Logout(h), NULL);
    report("close.ro", F->C_CloseSession(ro), NULL);
    report("close.ro-twice", F->C_CloseSession(ro), NULL);
    report("login.user-again", F->C_Login(h, CKU_USER, upin, ul_pin), NULL);
    report("login.so-while-user", F->C_Login(h, CKU_SO, sopin, ul_so), NULL);
    report("closeall", F->C_CloseAllSessions(slot), NULL);
    report("closeall.then-session-info", F->C_GetSessionInfo(h, &session_info), NULL);
    report("teardown.C_Finalize", F->C_Finalize(NULL), NULL);
    return 0;
}

/* ---- scenario: python-failed -------------------------------------------------------------- */
static int scenario_python_failed(void)
{
    GetFunctionList_fn get_function_list = (GetFunctionList_fn)sym("C_GetFunctionList");
    GetInterfaceList_fn get_interface_list = (GetInterfaceList_fn)sym("C_GetInterfaceList");
    FUNCTION_LIST_2_40 *v2 = NULL;
    CK_ULONG count = 0;
    CK_RV rv;
    rv = get_function_list(&v2);
    report("pyfail.getfunctionlist", rv, "major=%d minor=%d", v2 ? v2->version.major : -1,
           v2 ? v2->version.minor : -1);
    rv = get_interface_list(NULL, &count);
    report("pyfail.getinterfacelist", rv, "count=%lu", count);
    interface_check("pyfail.getinterface", NULL, NULL, 0);
    report("pyfail.C_Initialize", F->C_Initialize(NULL), NULL);
    report("pyfail.C_Initialize.again", F->C_Initialize(NULL), NULL);
    call_every_python_function("pyfail", 0, 1);
    if (v2 != NULL)
        report("pyfail.v2.C_Initialize", v2->C_Initialize(NULL), NULL);
    return 0;
}

int main(int argc, char **argv)
{
    int status;
    setvbuf(stdout, NULL, _IOLBF, 0);
    skip_huge = getenv("HOST_SKIP_HUGE") != NULL;
    memset(LABEL32, ' ', sizeof LABEL32);
    memcpy(LABEL32, "never-initialised", 17);
    if (argc < 3) {
        fprintf(stderr, "usage: %s <library.so> <scenario> [args]\n", argv[0]);
        return 2;
    }
    load(argv[1]);
    if (strcmp(argv[2], "tables") == 0)
        status = scenario_tables();
    else if (strcmp(argv[2], "before-init") == 0)
        status = scenario_before_init();
    else if (strcmp(argv[2], "init-args") == 0)
        status = scenario_init_args();
    else if (strcmp(argv[2], "bad-input") == 0 && argc == 6)
        status = scenario_bad_input(argv[3], argv[4], argv[5]);
    else if (strcmp(argv[2], "python-failed") == 0)
        status = scenario_python_failed();
    else {
        fprintf(stderr, "unknown scenario or wrong arguments: %s\n", argv[2]);
        return 2;
    }
    report("done", (CK_RV)status, NULL);
    return status;
}
