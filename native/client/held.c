/* softshield client library: a wrapped key the host asked only the length of, held for its next call.
 *
 * PKCS#11's two-call convention (§5.2) makes a host ask C_WrapKey for the length, then call again
 * with a buffer: two round trips to the hardserver per wrap. The module itself keeps a wrap result
 * the caller could not take for the next call with the same arguments (pkcs11_shim.keymgmt.wrap_key,
 * "wrap-pending"); the client does the same one hop earlier. A length query is sent as a call with a
 * buffer of SS_HELD_MAX bytes: the module checks and wraps as for the data call, the host gets the
 * length, and the bytes wait here for the host's next C_WrapKey on that session with the same
 * mechanism, parameter and keys, which then needs no round trip.
 *
 * The result is handed out only while nothing it depends on can have changed in this process: any
 * other forwarded call from any thread (a key destroyed or changed, a logout, a session closed)
 * makes every held result stale, and the next C_WrapKey goes to the server again. A wrap too large
 * for SS_HELD_MAX stays with the module's own pending result (its answer is the length, as for a
 * length query).
 *
 * The in-process front end holds a wrap the same way (native/front/held_wrap.c), with the slots below:
 * there the second call would be a second entry into the module's Python and its interpreter lock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fork_safe_lock.h"
#include "ss_client.h"

#define SS_HELD_SLOTS 32

typedef struct ss_held {
    CK_SESSION_HANDLE session;
    unsigned char *request;   /* the call's arguments up to the output, as sent */
    size_t request_len;
    unsigned char *data;
    size_t len;
    uint64_t generation;
} ss_held;

static ss_held ss_held_slots[SS_HELD_SLOTS];
static pthread_mutex_t ss_held_lock = PTHREAD_MUTEX_INITIALIZER;
SS_FORK_SAFE_LOCK(ss_held_lock)
static uint64_t ss_held_generation = 1;

static void ss_held_clear(ss_held *h)
{
    free(h->request);
    free(h->data);
    memset(h, 0, sizeof *h);
}

/* Every call but the held function's own: whatever it did, held results are stale. */
void ss_held_forget_all(void)
{
    __atomic_add_fetch(&ss_held_generation, 1, __ATOMIC_SEQ_CST);
}

/* The child of a fork is a new application (PKCS#11 3.0 §5.1.2): nothing its parent held is its. */
static void ss_held_forked(void)
{
    ss_held_forget_all();
}

__attribute__((constructor)) static void ss_held_setup(void)
{
    pthread_atfork(NULL, NULL, ss_held_forked);
}

/* A result held for `session` whose request (the call's arguments up to the output, encoded) is
 * `request`: answered into p / *plen with *rv set (1), or 0. A held result of the session for other
 * arguments is dropped: the host moved on. */
int ss_held_answer(CK_SESSION_HANDLE session, const unsigned char *request, size_t request_len, void *p,
                   CK_ULONG *plen, CK_RV *rv)
{
    ss_held *h = &ss_held_slots[session % SS_HELD_SLOTS];
    int answered = 0;
    pthread_mutex_lock(&ss_held_lock);
    if (h->data != NULL && h->session == session && h->request_len == request_len &&
        memcmp(h->request, request, request_len) == 0 &&
        h->generation == __atomic_load_n(&ss_held_generation, __ATOMIC_SEQ_CST)) {
        answered = 1;
        if (p == NULL) {
            *rv = CKR_OK;
        } else if (*plen < h->len) {
            *rv = CKR_BUFFER_TOO_SMALL; /* as the module: the result stays for the next call */
        } else {
            memcpy(p, h->data, h->len);
            *rv = CKR_OK;
        }
        *plen = (CK_ULONG)h->len;
        if (*rv == CKR_OK && p != NULL)
            ss_held_clear(h);
    } else if (h->data != NULL && h->session == session) {
        ss_held_clear(h); /* the host moved on */
    }
    pthread_mutex_unlock(&ss_held_lock);
    return answered;
}

/* The generation a result computed from now on is valid in (read before the call that makes it). */
uint64_t ss_held_now(void)
{
    return __atomic_load_n(&ss_held_generation, __ATOMIC_SEQ_CST);
}

/* Holds `n` bytes for the session's next call with `request`, made in `generation`: the slot takes
 * `request` (malloc'd) in every case. */
void ss_held_keep(CK_SESSION_HANDLE session, unsigned char *request, size_t request_len, uint64_t generation,
                  const void *bytes, size_t n)
{
    ss_held *h = &ss_held_slots[session % SS_HELD_SLOTS];
    unsigned char *data = malloc(n ? n : 1);
    pthread_mutex_lock(&ss_held_lock);
    ss_held_clear(h);
    if (data != NULL) {
        memcpy(data, bytes, n);
        h->session = session;
        h->request = request;
        h->request_len = request_len;
        h->data = data;
        h->len = n;
        h->generation = generation;
        request = NULL;
    }
    pthread_mutex_unlock(&ss_held_lock);
    free(request);
}

/* The host's call matches a held result: answer it here. Returns 1 when answered (c->rv set). */
int ss_held_take(ss_call *c, CK_SESSION_HANDLE session, void *p, CK_ULONG *plen)
{
    c->keeps_held = 1;
    if (c->failed || plen == NULL)
        return 0;
    return ss_held_answer(session, c->buf, c->len, p, plen, &c->rv);
}

/* The output of a held function: a length query goes out as a call with a buffer. */
void ss_put_held_out_bytes(ss_call *c, const void *p, const CK_ULONG *plen)
{
    if (p == NULL && plen != NULL && !c->failed) {
        c->held_request = malloc(c->len ? c->len : 1);
        if (c->held_request != NULL) {
            memcpy(c->held_request, c->buf, c->len);
            c->held_request_len = c->len;
            c->held_generation = ss_held_now();
            c->held_saved_len = *plen;
            ss_put_u8(c, 3);
            ss_put_u64(c, SS_HELD_MAX);
            return;
        }
    }
    ss_put_out_bytes(c, p, plen);
}

/* The reply of a held function's call. */
void ss_get_held_out_bytes(ss_call *c, CK_SESSION_HANDLE session, void *p, CK_ULONG *plen)
{
    uint64_t n;
    int has;
    const unsigned char *b = NULL;
    if (c->held_request == NULL) {
        ss_get_out_bytes(c, p, plen);
        return;
    }
    b = ss_get_out_bytes_view(c, &n, &has);
    if (c->failed)
        return;
    if (c->rv == CKR_BUFFER_TOO_SMALL) {
        /* Longer than SS_HELD_MAX: the module holds it; the host's query gets the length. */
        c->rv = CKR_OK;
        *plen = (CK_ULONG)n;
    } else if (c->rv == CKR_OK && has && b != NULL) {
        *plen = (CK_ULONG)n;
        ss_held_keep(session, c->held_request, c->held_request_len, c->held_generation, b, n);
        c->held_request = NULL; /* the slot owns it */
    } else if (c->rv == CKR_OK) {
        *plen = (CK_ULONG)n; /* the length without the bytes: what a length query answers */
    } else {
        *plen = c->held_saved_len; /* a refused call leaves the host's length as it was */
    }
}
