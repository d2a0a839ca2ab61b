/* softshield front end: an in-process C_WrapKey length query answered with the wrap itself.
 *
 * Hosts follow PKCS#11's two-call convention (§5.2): python-pkcs11 asks C_WrapKey for the length,
 * then calls again with a buffer. In-process, each call enters the module's Python and takes its
 * interpreter lock; with threads, every entry is a hand-over of that lock between them. So a length
 * query goes to the module as the wrap itself, with a buffer of SS_HELD_MAX bytes: the module checks
 * and wraps exactly as for the data call (Python computes every byte), the host gets the length, and
 * the bytes wait in the client runtime's held slots (native/client/held.c) for the host's next
 * C_WrapKey on that session with the same mechanism, parameter and keys, which then returns without
 * entering Python. The arguments are compared in their wire encoding (ss_put_mechanism follows the
 * parameter's pointers by the layouts the hardserver protocol uses), so a parameter that differs
 * anywhere, even behind a pointer, is another call.
 *
 * Validity is held.c's: every other entry point of the front end in embedded mode, from any thread,
 * makes every held result stale (ss_held_forget_all), as does a fork; a wrap too large for
 * SS_HELD_MAX stays with the module's own pending result. A wrap's errors therefore come with the
 * length query, as they do through the hardserver (docs/library.md). */
#include <stdlib.h>
#include <string.h>

#include "ss_client.h"
#include "ss_front.h"

/* The thread's output buffer for a length query sent as a wrap: a stack of 8 KB per call would be
 * a lot to ask of a host's threads. */
static __thread unsigned char ss_front_held_out[SS_HELD_MAX];

CK_RV ss_front_wrap_key(ss_wrap_fn wrap, CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                        CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey,
                        CK_ULONG_PTR pulWrappedKeyLen)
{
    ss_call c;
    CK_ULONG n = SS_HELD_MAX;
    CK_RV rv;
    uint64_t generation;
    if (pulWrappedKeyLen == NULL) /* the module says what is wrong */
        return wrap(hSession, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen);
    memset(&c, 0, sizeof c);
    ss_put_ulong(&c, hSession);
    ss_put_mechanism(&c, pMechanism);
    ss_put_ulong(&c, hWrappingKey);
    ss_put_ulong(&c, hKey);
    if (c.failed) { /* arguments the encoding refuses: the module answers them */
        free(c.buf);
        return wrap(hSession, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen);
    }
    if (ss_held_answer(hSession, c.buf, c.len, pWrappedKey, pulWrappedKeyLen, &rv)) {
        free(c.buf);
        return rv;
    }
    if (pWrappedKey != NULL) {
        free(c.buf);
        return wrap(hSession, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen);
    }
    generation = ss_held_now(); /* anything that runs during the wrap makes its result stale */
    rv = wrap(hSession, pMechanism, hWrappingKey, hKey, ss_front_held_out, &n);
    if (rv == CKR_OK) {
        ss_held_keep(hSession, c.buf, c.len, generation, ss_front_held_out, n); /* takes c.buf */
        *pulWrappedKeyLen = n;
        return CKR_OK;
    }
    free(c.buf);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        /* Longer than SS_HELD_MAX: the module keeps it for the data call; the query gets the length. */
        *pulWrappedKeyLen = n;
        return CKR_OK;
    }
    return rv; /* a refused call leaves the host's length as it was */
}
