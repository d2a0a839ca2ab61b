/* softshield client library: the argument encoders and reply decoders (one per wire operation of
 * pkcs11_shim/client_build.py OPS), mechanism-parameter flattening, message-parameter bookkeeping. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ss_client.h"

/* ---- request encoders ------------------------------------------------------------------------ */

void ss_put_ulong(ss_call *c, CK_ULONG v)
{
    ss_put_u64(c, v);
}

/* An input buffer: present flag, length, bytes (the length travels even with a NULL pointer, so
 * the module answers exactly as in-process). */
void ss_put_in_bytes(ss_call *c, const void *p, CK_ULONG len)
{
    ss_put_u8(c, p != NULL);
    ss_put_u64(c, len);
    if (p != NULL)
        ss_put_raw(c, p, len);
}

void ss_put_in_fixed(ss_call *c, const void *p, size_t len)
{
    ss_put_in_bytes(c, p, p != NULL ? len : 0);
}

/* An environment variable of this process the module reads during the call (client_build
 * FORWARDED_ENV): sent like an input buffer, NULL when unset. */
void ss_put_env(ss_call *c, const char *name)
{
    const char *value = getenv(name);
    ss_put_in_bytes(c, value, value != NULL ? (CK_ULONG)strlen(value) : 0);
}

/* An output buffer with the two-call convention: whether the host gave a buffer, and its size. */
void ss_put_out_bytes(ss_call *c, const void *p, const CK_ULONG *plen)
{
    ss_put_u8(c, (p != NULL) | (plen != NULL) << 1);
    ss_put_u64(c, plen != NULL ? *plen : 0);
}

void ss_put_out_fixed(ss_call *c, const void *p, CK_ULONG len)
{
    ss_put_u8(c, p != NULL);
    ss_put_u64(c, len);
}

void ss_put_out_ulongs(ss_call *c, const void *p, const CK_ULONG *pcount)
{
    ss_put_out_bytes(c, p, pcount);
}

void ss_put_out_handles(ss_call *c, const void *p, CK_ULONG max)
{
    ss_put_u8(c, p != NULL);
    ss_put_u64(c, max);
}

void ss_put_out_ulong(ss_call *c, const CK_ULONG *p)
{
    ss_put_u8(c, p != NULL);
    ss_put_u64(c, p != NULL ? *p : 0);
}

void ss_put_out_struct(ss_call *c, const void *p, size_t size)
{
    ss_put_u8(c, p != NULL);
    ss_put_u64(c, size);
}

/* Templates nest one level per attribute-array value (CKA_WRAP_TEMPLATE and friends, by kind). */
#define SS_MAX_TEMPLATE_DEPTH 4

static void ss_put_template_depth(ss_call *c, const CK_ATTRIBUTE *t, CK_ULONG count, int io, int depth)
{
    if (depth > SS_MAX_TEMPLATE_DEPTH) {
        ss_fail(c, CKR_ARGUMENTS_BAD);
        return;
    }
    ss_put_u8(c, t != NULL);
    ss_put_u64(c, count);
    if (t == NULL)
        return;
    for (CK_ULONG i = 0; i < count && !c->failed; i++) {
        int nested = ss_is_nested(t[i].type) && t[i].pValue != NULL &&
                     t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION;
        ss_put_u64(c, t[i].type);
        ss_put_u8(c, (t[i].pValue != NULL) | nested << 1);
        ss_put_u64(c, t[i].ulValueLen);
        if (nested)
            ss_put_template_depth(c, t[i].pValue, t[i].ulValueLen / sizeof(CK_ATTRIBUTE), io, depth + 1);
        else if (t[i].pValue != NULL && !io)
            ss_put_raw(c, t[i].pValue, t[i].ulValueLen);
    }
}

void ss_put_template(ss_call *c, const CK_ATTRIBUTE *t, CK_ULONG count)
{
    ss_put_template_depth(c, t, count, 0, 0);
}

void ss_put_template_io(ss_call *c, const CK_ATTRIBUTE *t, CK_ULONG count)
{
    ss_put_template_depth(c, t, count, 1, 0);
}

/* A parameter node: the struct's bytes with every described pointer zeroed, then one relocation
 * per non-NULL pointer (offset, writeback flag, child node). The server rebuilds the pointers in
 * its own memory, so it never needs to know the mechanism's struct. */
static void ss_put_node(ss_call *c, const void *p, size_t len, const ss_layout *layout, int writeback, int depth);

static size_t ss_field_len(const ss_field *f, const unsigned char *base, size_t *elements)
{
    CK_ULONG n = (f->len_kind == SS_LEN_FIXED || f->len_kind == SS_LEN_DROP) ? 0 : *(const CK_ULONG *)(base + f->len_off);
    *elements = 0;
    switch (f->len_kind) {
    case SS_LEN_BYTES:
        return n;
    case SS_LEN_BITS:
        return (n + 7) / 8;
    case SS_LEN_FIXED:
        return f->unit;
    case SS_LEN_DROP:
        return 0;
    case SS_LEN_ARRAY:
        *elements = n;
        return n > SS_MAX_PAYLOAD / (f->unit ? f->unit : 1) ? SS_MAX_PAYLOAD + 1 : n * f->unit;
    }
    return 0;
}

static void ss_put_node(ss_call *c, const void *p, size_t len, const ss_layout *layout, int writeback, int depth)
{
    unsigned char *copy;
    size_t nrel = 0;
    if (depth > 4) {
        ss_fail(c, CKR_ARGUMENTS_BAD);
        return;
    }
    if (len > SS_MAX_PAYLOAD) {
        ss_fail(c, CKR_DEVICE_MEMORY);
        return;
    }
    if (writeback) {
        if (c->writebacks >= (int)(sizeof c->writeback / sizeof c->writeback[0])) {
            ss_fail(c, CKR_ARGUMENTS_BAD);
            return;
        }
        c->writeback[c->writebacks] = (void *)p;
        c->writeback_len[c->writebacks] = len;
        c->writebacks++;
    }
    ss_put_u8(c, writeback);
    ss_put_u64(c, len);
    if (layout == NULL || len < layout->size) {
        /* Opaque bytes (an IV, a CK_ULONG, a pointer-free struct), or too short for its struct:
         * sent as they are; the module's reader refuses a short struct by its length. */
        copy = NULL;
        ss_put_raw(c, p, len);
        ss_put_u64(c, 0);
        return;
    }
    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        ss_fail(c, CKR_HOST_MEMORY);
        return;
    }
    memcpy(copy, p, len);
    for (size_t i = 0; i < layout->nfields; i++) {
        void *ptr = *(void **)(copy + layout->fields[i].ptr_off);
        memset(copy + layout->fields[i].ptr_off, 0, sizeof(void *));
        if (ptr != NULL && layout->fields[i].len_kind != SS_LEN_DROP)
            nrel++;
    }
    ss_put_raw(c, copy, len);
    free(copy);
    ss_put_u64(c, nrel);
    for (size_t i = 0; i < layout->nfields && !c->failed; i++) {
        const ss_field *f = &layout->fields[i];
        const unsigned char *base = p;
        void *ptr = *(void *const *)(base + f->ptr_off);
        size_t elements, flen;
        if (ptr == NULL || f->len_kind == SS_LEN_DROP)
            continue;
        flen = ss_field_len(f, base, &elements);
        ss_put_u64(c, f->ptr_off);
        if (f->len_kind == SS_LEN_ARRAY && f->sub != NULL) {
            /* An array of structs with pointers: one node holding the array, relocations per element. */
            if (flen > SS_MAX_PAYLOAD) {
                ss_fail(c, CKR_DEVICE_MEMORY);
                return;
            }
            unsigned char *arr = malloc(flen ? flen : 1);
            size_t inner = 0;
            if (arr == NULL) {
                ss_fail(c, CKR_HOST_MEMORY);
                return;
            }
            memcpy(arr, ptr, flen);
            for (size_t e = 0; e < elements; e++)
                for (size_t j = 0; j < f->sub->nfields; j++) {
                    void **q = (void **)(arr + e * f->unit + f->sub->fields[j].ptr_off);
                    if (*q != NULL)
                        inner++;
                    *q = NULL;
                }
            ss_put_u8(c, 0);
            ss_put_u64(c, flen);
            ss_put_raw(c, arr, flen);
            free(arr);
            ss_put_u64(c, inner);
            for (size_t e = 0; e < elements && !c->failed; e++) {
                const unsigned char *el = (const unsigned char *)ptr + e * f->unit;
                for (size_t j = 0; j < f->sub->nfields && !c->failed; j++) {
                    const ss_field *g = &f->sub->fields[j];
                    void *q = *(void *const *)(el + g->ptr_off);
                    size_t sub_elements, glen;
                    if (q == NULL)
                        continue;
                    glen = ss_field_len(g, el, &sub_elements);
                    ss_put_u64(c, e * f->unit + g->ptr_off);
                    ss_put_node(c, q, glen, g->sub, g->writeback, depth + 2);
                }
            }
        } else {
            ss_put_node(c, ptr, flen, f->sub, f->writeback, depth + 1);
        }
    }
}

static const char *ss_mech_kind_of(CK_MECHANISM_TYPE m)
{
    size_t lo = 0, hi = ss_mech_kind_count;
    while (lo < hi) { /* the generated table is sorted by mechanism */
        size_t mid = (lo + hi) / 2;
        if (ss_mech_kinds[mid].mechanism == m)
            return ss_mech_kinds[mid].kind;
        if (ss_mech_kinds[mid].mechanism < m)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void ss_put_mechanism(ss_call *c, const CK_MECHANISM *m)
{
    ss_put_u8(c, m != NULL);
    if (m == NULL)
        return;
    ss_put_u64(c, m->mechanism);
    ss_put_u8(c, m->pParameter != NULL);
    ss_put_u64(c, m->ulParameterLen);
    if (m->pParameter != NULL) {
        const char *kind = ss_mech_kind_of(m->mechanism);
        ss_put_node(c, m->pParameter, m->ulParameterLen, kind ? ss_layout_for_kind(kind) : NULL, 0, 0);
    }
}

/* ---- message-based operations: which mechanism each session's message operation uses -------- */

typedef struct ss_msg_entry {
    CK_SESSION_HANDLE session;
    CK_MECHANISM_TYPE mechanism[SS_MSG_FAMILIES];
    struct ss_msg_entry *next;
} ss_msg_entry;
static ss_msg_entry *ss_msg_entries = NULL;
static pthread_mutex_t ss_msg_lock = PTHREAD_MUTEX_INITIALIZER;

void ss_msg_remember(CK_SESSION_HANDLE h, enum ss_msg_family f, const CK_MECHANISM *m)
{
    ss_msg_entry *e;
    if (m == NULL)
        return;
    pthread_mutex_lock(&ss_msg_lock);
    for (e = ss_msg_entries; e != NULL && e->session != h; e = e->next)
        ;
    if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        e->session = h;
        e->next = ss_msg_entries;
        ss_msg_entries = e;
    }
    if (e != NULL)
        e->mechanism[f] = m->mechanism;
    pthread_mutex_unlock(&ss_msg_lock);
}

void ss_put_msg_param(ss_call *c, CK_SESSION_HANDLE h, enum ss_msg_family f, void *p, CK_ULONG len)
{
    const ss_msg_entry *e;
    const char *kind = NULL;
    CK_MECHANISM_TYPE mech = ~0UL;
    pthread_mutex_lock(&ss_msg_lock);
    for (e = ss_msg_entries; e != NULL && e->session != h; e = e->next)
        ;
    if (e != NULL)
        mech = e->mechanism[f];
    pthread_mutex_unlock(&ss_msg_lock);
    if (mech != ~0UL)
        kind = ss_mech_kind_of(mech);
    ss_put_u8(c, p != NULL);
    ss_put_u64(c, len);
    if (p != NULL)
        ss_put_node(c, p, len, kind ? ss_message_layout_for_kind(kind) : NULL, 0, 0);
}

/* ---- reply decoders -------------------------------------------------------------------------- */

static const unsigned char *ss_take(ss_call *c, size_t n)
{
    const unsigned char *p;
    if (c->failed)
        return NULL;
    if (c->pos + n > c->len || c->pos + n < c->pos) {
        ss_fail(c, CKR_DEVICE_ERROR); /* a reply shorter than its function's outputs */
        return NULL;
    }
    p = c->buf + c->pos;
    c->pos += n;
    return p;
}

static uint64_t ss_get_u64(ss_call *c)
{
    const unsigned char *p = ss_take(c, 8);
    return p ? ss_rd64(p) : 0;
}

static int ss_get_u8(ss_call *c)
{
    const unsigned char *p = ss_take(c, 1);
    return p ? p[0] : 0;
}

/* Reply of an output buffer: u64 length; u8 has-bytes; the bytes (never more than the host's
 * buffer: the server passed the module exactly that size). */
void ss_get_out_bytes(ss_call *c, void *p, CK_ULONG *plen)
{
    uint64_t n = ss_get_u64(c);
    int has = ss_get_u8(c);
    CK_ULONG cap = plen != NULL ? *plen : 0;
    if (has) {
        const unsigned char *b = ss_take(c, n);
        if (b != NULL && p != NULL && n <= cap)
            memcpy(p, b, n);
    }
    if (plen != NULL && !c->failed)
        *plen = (CK_ULONG)n;
}

/* The same reply, left in place: its length, whether bytes follow, and where they are. */
const unsigned char *ss_get_out_bytes_view(ss_call *c, uint64_t *n, int *has)
{
    *n = ss_get_u64(c);
    *has = ss_get_u8(c);
    return *has ? ss_take(c, *n) : NULL;
}

void ss_get_out_fixed(ss_call *c, void *p, CK_ULONG len)
{
    int has = ss_get_u8(c);
    if (has) {
        const unsigned char *b = ss_take(c, len);
        if (b != NULL && p != NULL)
            memcpy(p, b, len);
    }
}

void ss_get_out_ulongs(ss_call *c, void *p, CK_ULONG *pcount)
{
    uint64_t n = ss_get_u64(c);
    int has = ss_get_u8(c);
    CK_ULONG cap = pcount != NULL ? *pcount : 0;
    if (has) {
        for (uint64_t i = 0; i < n && !c->failed; i++) {
            uint64_t v = ss_get_u64(c);
            if (p != NULL && i < cap)
                ((CK_ULONG *)p)[i] = (CK_ULONG)v;
        }
    }
    if (pcount != NULL && !c->failed)
        *pcount = (CK_ULONG)n;
}

void ss_get_out_handles(ss_call *c, void *p, CK_ULONG max)
{
    uint64_t n = ss_get_u64(c);
    for (uint64_t i = 0; i < n && !c->failed; i++) {
        uint64_t v = ss_get_u64(c);
        if (p != NULL && i < max)
            ((CK_ULONG *)p)[i] = (CK_ULONG)v;
    }
}

void ss_get_out_ulong(ss_call *c, CK_ULONG *p)
{
    uint64_t v = ss_get_u64(c);
    if (p != NULL && !c->failed)
        *p = (CK_ULONG)v;
}

void ss_get_out_struct(ss_call *c, void *p, size_t size)
{
    int has = ss_get_u8(c);
    if (has) {
        const unsigned char *b = ss_take(c, size);
        if (b != NULL && p != NULL)
            memcpy(p, b, size);
    }
}

static void ss_get_template_depth(ss_call *c, CK_ATTRIBUTE *t, CK_ULONG count, int depth)
{
    uint64_t n = ss_get_u64(c);
    if (t == NULL || n != count || depth > SS_MAX_TEMPLATE_DEPTH) {
        if (n != count && t != NULL)
            ss_fail(c, CKR_DEVICE_ERROR);
        return;
    }
    for (CK_ULONG i = 0; i < count && !c->failed; i++) {
        /* Inside an attribute array the module wrote the entries' types as well. */
        uint64_t type = depth > 0 ? ss_get_u64(c) : t[i].type;
        uint64_t len = ss_get_u64(c);
        int kind = ss_get_u8(c); /* 0 length only, 1 bytes follow, 2 nested template follows */
        if (kind == 1) {
            const unsigned char *b = ss_take(c, len);
            if (b != NULL && t[i].pValue != NULL && len <= t[i].ulValueLen)
                memcpy(t[i].pValue, b, len);
        } else if (kind == 2) {
            ss_get_template_depth(c, t[i].pValue, t[i].ulValueLen / sizeof(CK_ATTRIBUTE), depth + 1);
        }
        if (!c->failed) {
            t[i].type = (CK_ATTRIBUTE_TYPE)type;
            t[i].ulValueLen = (CK_ULONG)len;
        }
    }
}

void ss_get_template_io(ss_call *c, CK_ATTRIBUTE *t, CK_ULONG count)
{
    ss_get_template_depth(c, t, count, 0);
}

/* The writeback nodes' contents, in the order they were sent. */
void ss_get_writebacks(ss_call *c)
{
    uint64_t n = ss_get_u64(c);
    if (n != (uint64_t)c->writebacks) {
        if (n != 0)
            ss_fail(c, CKR_DEVICE_ERROR);
        return;
    }
    for (int i = 0; i < c->writebacks && !c->failed; i++) {
        const unsigned char *b = ss_take(c, c->writeback_len[i]);
        /* Only what the module changed: a decrypt's IV and tag may sit in read-only memory. */
        if (b != NULL && memcmp(c->writeback[i], b, c->writeback_len[i]) != 0)
            memcpy(c->writeback[i], b, c->writeback_len[i]);
    }
}
