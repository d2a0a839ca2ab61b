/* softshield front end (libsoftshield-pkcs11.so): how one process is served. front.c decides;
 * the generated entry points (pkcs11_shim/client_build.py) call the embedded module through the
 * table ss_embedded_bind fills, or forward through the client runtime. */
#ifndef SS_FRONT_H
#define SS_FRONT_H

#include <stddef.h>
#include "ss_client.h" /* pkcs11_types.h has no include guard (cffi reads it) */

enum ss_mode { SS_MODE_UNDECIDED, SS_MODE_EMBEDDED, SS_MODE_HARDSERVER, SS_MODE_REFUSED };

/* front.c */
int ss_mode_embedded(void);
int ss_mode_current(void);
CK_RV ss_front_initialize(CK_VOID_PTR pInitArgs);
CK_RV ss_front_finalize(CK_VOID_PTR pReserved);

/* held_wrap.c: C_WrapKey in embedded mode (a length query answered with the wrap, held for the
 * data call); every other embedded entry point calls ss_held_forget_all first. */
typedef CK_RV (*ss_wrap_fn)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, CK_BYTE_PTR,
                            CK_ULONG_PTR);
CK_RV ss_front_wrap_key(ss_wrap_fn wrap, CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey,
                        CK_ULONG_PTR pulWrappedKeyLen);

/* Generated (front_gen.c): the embedded module's entry points, looked up by name in its handle. */
int ss_embedded_bind(void *handle, const char **missing);
CK_RV ss_embedded_initialize(CK_VOID_PTR pInitArgs);
CK_RV ss_embedded_finalize(CK_VOID_PTR pReserved);

#endif
