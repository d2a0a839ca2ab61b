/* softshield: C_GenerateRandom's output, read from the kernel by the C entry point.
 *
 * The Python handler makes every check (library initialised in this process, session handle, NULL
 * buffer, length: abi/keys.py); when it answers CKR_OK, the entry point fills the caller's buffer
 * with getrandom(2), the kernel CSPRNG os.urandom reads. Read in Python, the same bytes cost a
 * bytes object and a copy into the caller's buffer while holding the GIL: a fifth of a 32-byte call. */
#ifndef SS_RANDOM_FILL_H
#define SS_RANDOM_FILL_H

#include <errno.h>
#include <sys/random.h>

static CK_RV ss_random_fill(CK_BYTE_PTR out, CK_ULONG length)
{
    while (length > 0) {
        ssize_t got = getrandom(out, length, 0); /* blocks only before the pool is first seeded */
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return CKR_FUNCTION_FAILED;
        }
        out += got;
        length -= (CK_ULONG)got;
    }
    return CKR_OK;
}

#endif
