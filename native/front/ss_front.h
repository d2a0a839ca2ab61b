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

/* Generated (front_gen.c): the embedded module's entry points, looked up by name in its handle. */
int ss_embedded_bind(void *handle, const char **missing);
CK_RV ss_embedded_initialize(CK_VOID_PTR pInitArgs);
CK_RV ss_embedded_finalize(CK_VOID_PTR pReserved);

#endif
