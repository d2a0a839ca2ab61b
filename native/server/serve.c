/* softshield hardserver: the C per-call path's runtime (see ss_serve.h).
 *
 * The decoders mirror pkcs11_shim/hardserver/codec.py check for check: a call this file accepts is
 * one the Python codec accepts and decodes to the same C arguments, and the reply is byte for byte
 * the one Codec.encode writes. Where the codec would refuse (ProtocolError), the decoder only marks
 * the call, and the frame goes to the Python path, which refuses it with its own message. */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ss_serve.h"

#define SS_PAYLOAD_TIMEOUT_MS 30000 /* protocol.PAYLOAD_TIMEOUT */

/* ---- a small map: u64 key -> u64 value (open addressing, linear probing) ---------------------- */

typedef struct ss_map {
    uint64_t *keys, *values;
    unsigned char *used;
    size_t cap, count;
} ss_map;

static size_t ss_hash(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static int ss_map_find(const ss_map *m, uint64_t key, size_t *at)
{
    if (m->cap == 0)
        return 0;
    for (size_t i = ss_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->used[i])
            return 0;
        if (m->keys[i] == key) {
            *at = i;
            return 1;
        }
    }
}

static int ss_map_get(const ss_map *m, uint64_t key, uint64_t *value)
{
    size_t at;
    if (!ss_map_find(m, key, &at))
        return 0;
    *value = m->values[at];
    return 1;
}

static int ss_map_put(ss_map *m, uint64_t key, uint64_t value);

static int ss_map_grow(ss_map *m)
{
    ss_map bigger = {0};
    bigger.cap = m->cap ? m->cap * 2 : 16;
    bigger.keys = calloc(bigger.cap, sizeof(uint64_t));
    bigger.values = calloc(bigger.cap, sizeof(uint64_t));
    bigger.used = calloc(bigger.cap, 1);
    if (bigger.keys == NULL || bigger.values == NULL || bigger.used == NULL) {
        free(bigger.keys);
        free(bigger.values);
        free(bigger.used);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i])
            ss_map_put(&bigger, m->keys[i], m->values[i]);
    free(m->keys);
    free(m->values);
    free(m->used);
    *m = bigger;
    return 0;
}

static int ss_map_put(ss_map *m, uint64_t key, uint64_t value)
{
    size_t at;
    if (ss_map_find(m, key, &at)) {
        m->values[at] = value;
        return 0;
    }
    if ((m->count + 1) * 4 > m->cap * 3 && ss_map_grow(m) != 0)
        return -1;
    for (at = ss_hash(key, m->cap); m->used[at]; at = (at + 1) & (m->cap - 1))
        ;
    m->used[at] = 1;
    m->keys[at] = key;
    m->values[at] = value;
    m->count++;
    return 0;
}

static void ss_map_del(ss_map *m, uint64_t key)
{
    size_t at, next;
    if (!ss_map_find(m, key, &at))
        return;
    m->used[at] = 0;
    m->count--;
    /* Backward-shift deletion: move up every entry of the run that would no longer be found. */
    for (next = (at + 1) & (m->cap - 1); m->used[next]; next = (next + 1) & (m->cap - 1)) {
        size_t home = ss_hash(m->keys[next], m->cap);
        int movable = at <= next ? (home <= at || home > next) : (home <= at && home > next);
        if (movable) {
            m->keys[at] = m->keys[next];
            m->values[at] = m->values[next];
            m->used[at] = 1;
            m->used[next] = 0;
            at = next;
        }
    }
}

static void ss_map_free(ss_map *m)
{
    free(m->keys);
    free(m->values);
    free(m->used);
    memset(m, 0, sizeof *m);
}

/* ---- per-client state, kept up to date by the Python path (fastpath.Mirror) ----------------- */

struct ss_srv_client {
    uint64_t id;          /* the same for every connection of one client token */
    int refs;             /* the Python side's and each connection's */
    ss_map sessions;      /* session handle -> 1 when another client holds the login on its slot */
};

static pthread_mutex_t ss_state_lock = PTHREAD_MUTEX_INITIALIZER;
static ss_map ss_owners;  /* session object handle -> owning client id (visibility.SessionObjects) */

ss_srv_client *ss_srv_client_new(uint64_t id)
{
    ss_srv_client *client = calloc(1, sizeof *client);
    if (client != NULL) {
        client->id = id;
        client->refs = 1;
    }
    return client;
}

static void ss_client_release(ss_srv_client *client)
{
    int last;
    pthread_mutex_lock(&ss_state_lock);
    last = --client->refs == 0;
    if (last)
        ss_map_free(&client->sessions);
    pthread_mutex_unlock(&ss_state_lock);
    if (last)
        free(client);
}

/* The client is gone for the Python side: no session of it is answered in C any more, and the
 * memory goes with its last connection. */
void ss_srv_client_free(ss_srv_client *client)
{
    if (client == NULL)
        return;
    pthread_mutex_lock(&ss_state_lock);
    ss_map_free(&client->sessions);
    pthread_mutex_unlock(&ss_state_lock);
    ss_client_release(client);
}

void ss_srv_session_set(ss_srv_client *client, CK_SESSION_HANDLE h, int public_view)
{
    pthread_mutex_lock(&ss_state_lock);
    if (ss_map_put(&client->sessions, h, public_view ? 1 : 0) != 0)
        ss_map_del(&client->sessions, h); /* out of memory: the Python path answers for it */
    pthread_mutex_unlock(&ss_state_lock);
}

/* Only a session the client still has: a login change never brings back a closed one. */
void ss_srv_session_mark(ss_srv_client *client, CK_SESSION_HANDLE h, int public_view)
{
    uint64_t old;
    pthread_mutex_lock(&ss_state_lock);
    if (ss_map_get(&client->sessions, h, &old))
        ss_map_put(&client->sessions, h, public_view ? 1 : 0);
    pthread_mutex_unlock(&ss_state_lock);
}

void ss_srv_session_drop(ss_srv_client *client, CK_SESSION_HANDLE h)
{
    pthread_mutex_lock(&ss_state_lock);
    ss_map_del(&client->sessions, h);
    pthread_mutex_unlock(&ss_state_lock);
}

/* An owner the map cannot hold makes every handle foreign: the Python path then decides. */
static int ss_owners_broken = 0;

void ss_srv_owner_set(CK_OBJECT_HANDLE h, uint64_t owner)
{
    pthread_mutex_lock(&ss_state_lock);
    if (ss_map_put(&ss_owners, h, owner) != 0)
        ss_owners_broken = 1;
    pthread_mutex_unlock(&ss_state_lock);
}

void ss_srv_owner_drop(CK_OBJECT_HANDLE h)
{
    pthread_mutex_lock(&ss_state_lock);
    ss_map_del(&ss_owners, h);
    pthread_mutex_unlock(&ss_state_lock);
}

/* ---- the module -------------------------------------------------------------------------------- */

int ss_srv_bind(const char *module_path, char *err, size_t errlen)
{
    /* The server loaded the module already (codec.load_module): take that very copy. */
    void *handle = dlopen(module_path, RTLD_NOW | RTLD_NOLOAD);
    const char *missing = NULL;
    if (handle == NULL) {
        snprintf(err, errlen, "%s is not loaded: %s", module_path, dlerror());
        return -1;
    }
    if (ss_srv_bind_module(handle, &missing) != 0) {
        snprintf(err, errlen, "%s has no %s", module_path, missing);
        return -1;
    }
    return 0;
}

/* ---- connections ------------------------------------------------------------------------------ */

struct ss_srv_conn {
    int fd;
    ss_srv_client *client;
    /* Received bytes: [start, end) not yet consumed; a frame is read whole into it. */
    unsigned char *rbuf;
    size_t rcap, start, end;
    unsigned char *out;
    size_t out_cap;
    uint64_t answered;
    ss_srv_event event;
};

ss_srv_conn *ss_srv_conn_new(int fd, ss_srv_client *client)
{
    ss_srv_conn *conn = calloc(1, sizeof *conn);
    if (conn != NULL) {
        conn->fd = fd;
        conn->client = client;
        pthread_mutex_lock(&ss_state_lock);
        client->refs++;
        pthread_mutex_unlock(&ss_state_lock);
    }
    return conn;
}

void ss_srv_conn_free(ss_srv_conn *conn)
{
    if (conn == NULL)
        return;
    ss_client_release(conn->client);
    free(conn->rbuf);
    free(conn->out);
    free(conn);
}

uint64_t ss_srv_answered(ss_srv_conn *conn)
{
    return conn->answered;
}

/* Make [start, start + n) of the receive buffer hold received bytes, reading as much as arrives
 * (a whole frame, often the next one too, in one recv). Returns 0, or an event kind; *got is what
 * of the n bytes arrived. timeout_ms < 0: wait as long as it takes. */
static int ss_fill(ss_srv_conn *conn, size_t n, int timeout_ms, size_t *got)
{
    if (conn->start + n > conn->rcap) {
        /* Move what is left to the front, and grow for a frame larger than the buffer. */
        size_t held = conn->end - conn->start;
        if (conn->start > 0) {
            memmove(conn->rbuf, conn->rbuf + conn->start, held);
            conn->start = 0;
            conn->end = held;
        }
        if (n > conn->rcap) {
            size_t cap = conn->rcap ? conn->rcap : 65536;
            unsigned char *b;
            while (cap < n)
                cap *= 2;
            b = realloc(conn->rbuf, cap);
            if (b == NULL) {
                errno = ENOMEM;
                *got = held;
                return SS_EV_OSERROR;
            }
            conn->rbuf = b;
            conn->rcap = cap;
        }
    }
    while (conn->end - conn->start < n) {
        /* Waiting for a header: a blocking descriptor sleeps in recv itself (one system call per
         * frame); with a deadline, poll first. */
        ssize_t r = recv(conn->fd, conn->rbuf + conn->end, conn->rcap - conn->end, timeout_ms < 0 ? 0 : MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {conn->fd, POLLIN, 0};
            int ready = poll(&p, 1, timeout_ms);
            if (ready < 0 && errno != EINTR) {
                *got = conn->end - conn->start;
                return SS_EV_OSERROR;
            }
            if (ready == 0) {
                *got = conn->end - conn->start;
                return SS_EV_TIMEOUT;
            }
            continue;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *got = conn->end - conn->start;
            return SS_EV_OSERROR;
        }
        if (r == 0) {
            *got = conn->end - conn->start;
            return SS_EV_TRUNCATED;
        }
        conn->end += (size_t)r;
    }
    *got = n;
    return 0;
}

static int ss_write_all(int fd, const unsigned char *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, buf + done, n - done, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd p = {fd, POLLOUT, 0};
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                    return -1;
                continue;
            }
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

static void ss_put_le16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void ss_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t ss_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- call memory ------------------------------------------------------------------------------ */

static void *ss_alloc(ss_srv_call *c, size_t n)
{
    void *p;
    if (c->nkeep == c->capkeep) {
        size_t cap = c->capkeep ? c->capkeep * 2 : 16;
        void **keep = realloc(c->keep, cap * sizeof(void *));
        if (keep == NULL) {
            c->bad = 1;
            return NULL;
        }
        c->keep = keep;
        c->capkeep = cap;
    }
    p = calloc(1, n ? n : 1);  /* zeroed, as cffi's ffi.new */
    if (p == NULL) {
        c->bad = 1;
        return NULL;
    }
    c->keep[c->nkeep++] = p;
    return p;
}

static void ss_call_free(ss_srv_call *c)
{
    for (size_t i = 0; i < c->nkeep; i++)
        free(c->keep[i]);
    free(c->keep);
    c->keep = NULL;
    c->nkeep = c->capkeep = 0;
}

/* ---- decoders: protocol.Reader and the codec's per-operation decoders ------------------------- */

static const unsigned char *ss_take(ss_srv_call *c, uint64_t n)
{
    const unsigned char *p;
    if (c->bad || n > c->in_len - c->pos) {
        c->bad = 1;
        return NULL;
    }
    p = c->in + c->pos;
    c->pos += n;
    return p;
}

static uint64_t ss_u64(ss_srv_call *c)
{
    const unsigned char *p = ss_take(c, 8);
    uint64_t v = 0;
    if (p != NULL)
        memcpy(&v, p, 8); /* little-endian hosts only, as the client (ss_rd64) */
    return v;
}

static unsigned ss_u8(ss_srv_call *c)
{
    const unsigned char *p = ss_take(c, 1);
    return p != NULL ? p[0] : 0;
}

/* codec._capacity */
static uint64_t ss_capacity(uint64_t n, uint64_t unit)
{
    return n > SS_MAX_PAYLOAD / unit ? SS_MAX_PAYLOAD / unit : n;
}

void ss_d_ulong(ss_srv_call *c, ss_op *o)
{
    o->value = ss_u64(c);
}

/* _in_bytes: a copy of the input, as the codec makes one (a zero-length input is still a valid
 * pointer, and nothing the module does to an input reaches the next call). */
void ss_d_in_bytes(ss_srv_call *c, ss_op *o, int fixed)
{
    unsigned present = ss_u8(c);
    o->length = ss_u64(c);
    o->buf = NULL;
    if (present && fixed && o->length != (uint64_t)fixed) {
        c->bad = 1;
        return;
    }
    if (present) {
        const unsigned char *p = ss_take(c, o->length);
        o->buf = ss_alloc(c, o->length);
        if (p != NULL && o->buf != NULL && o->length)
            memcpy(o->buf, p, o->length);
    }
}

/* _counted_output: the two-call convention (buffer, capacity). */
void ss_d_out_bytes(ss_srv_call *c, ss_op *o, size_t unit)
{
    unsigned flags = ss_u8(c);
    o->capacity = ss_capacity(ss_u64(c), unit);
    o->buf = (flags & 1) && !c->bad ? ss_alloc(c, (o->capacity ? o->capacity : 1) * unit) : NULL;
    o->pcount = NULL;
    if ((flags & 2) && !c->bad) {
        o->pcount = ss_alloc(c, sizeof(CK_ULONG));
        if (o->pcount != NULL)
            *o->pcount = o->capacity;
    }
}

void ss_d_out_fixed(ss_srv_call *c, ss_op *o)
{
    unsigned present = ss_u8(c);
    o->length = ss_u64(c);
    if (o->length > SS_MAX_PAYLOAD - 64) {
        c->bad = 1;
        return;
    }
    o->buf = present && !c->bad ? ss_alloc(c, o->length) : NULL;
}

void ss_d_out_handles(ss_srv_call *c, ss_op *o)
{
    unsigned present = ss_u8(c), count_present;
    uint64_t count_value;
    o->capacity = ss_capacity(ss_u64(c), 8);
    count_present = ss_u8(c);
    count_value = ss_u64(c);
    if (c->bad)
        return;
    o->buf = present ? ss_alloc(c, (o->capacity ? o->capacity : 1) * sizeof(CK_OBJECT_HANDLE)) : NULL;
    o->pcount = count_present ? ss_alloc(c, sizeof(CK_ULONG)) : NULL;
    if (o->pcount != NULL)
        *o->pcount = count_value;
}

void ss_d_out_ulong(ss_srv_call *c, ss_op *o)
{
    unsigned present = ss_u8(c);
    uint64_t value = ss_u64(c);
    o->pcount = present && !c->bad ? ss_alloc(c, sizeof(CK_ULONG)) : NULL;
    if (o->pcount != NULL)
        *o->pcount = value;
}

void ss_d_out_struct(ss_srv_call *c, ss_op *o, size_t size)
{
    unsigned present = ss_u8(c);
    o->length = ss_u64(c);
    if (o->length != size) {
        c->bad = 1;
        return;
    }
    o->buf = present && !c->bad ? ss_alloc(c, size) : NULL;
}

static int ss_is_nested(CK_ATTRIBUTE_TYPE type)
{
    size_t lo = 0, hi = ss_nested_attr_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ss_nested_attrs[mid] == type)
            return 1;
        if (ss_nested_attrs[mid] < type)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Codec._template */
static void ss_d_tmpl(ss_srv_call *c, ss_tmpl *t, int io, int depth)
{
    unsigned present = ss_u8(c);
    t->count = ss_u64(c);
    t->attrs = NULL;
    t->entries = NULL;
    if (!present || c->bad)
        return;
    if (t->count > SS_MAX_TEMPLATE || depth > SS_MAX_DEPTH) {
        c->bad = 1;
        return;
    }
    t->attrs = ss_alloc(c, (t->count ? t->count : 1) * sizeof(CK_ATTRIBUTE));
    t->entries = ss_alloc(c, (t->count ? t->count : 1) * sizeof(ss_tent));
    for (CK_ULONG i = 0; i < t->count && !c->bad; i++) {
        CK_ATTRIBUTE *a = &t->attrs[i];
        ss_tent *e = &t->entries[i];
        unsigned flags;
        uint64_t length;
        a->type = ss_u64(c);
        flags = ss_u8(c);
        length = ss_u64(c);
        a->ulValueLen = length;
        if (c->bad)
            return;
        if (flags != 0 && flags != 1 && flags != 3) {
            c->bad = 1;
            return;
        }
        if (flags & 2) {
            if (!ss_is_nested(a->type)) {
                c->bad = 1;
                return;
            }
            e->nested = ss_alloc(c, sizeof(ss_tmpl));
            if (e->nested == NULL)
                return;
            ss_d_tmpl(c, e->nested, io, depth + 1);
            if (c->bad)
                return;
            if (e->nested->attrs == NULL || e->nested->count != length / sizeof(CK_ATTRIBUTE)) {
                c->bad = 1;
                return;
            }
            a->pValue = e->nested->attrs;
        } else if (flags & 1) {
            if (io) {
                uint64_t capacity = length == CK_UNAVAILABLE_INFORMATION ? 0 : ss_capacity(length, 1);
                if (length != CK_UNAVAILABLE_INFORMATION)
                    a->ulValueLen = capacity;
                a->pValue = ss_alloc(c, capacity);
            } else {
                const unsigned char *p = ss_take(c, length);
                a->pValue = p != NULL ? ss_alloc(c, length) : NULL;
                if (a->pValue != NULL && length)
                    memcpy(a->pValue, p, length);
            }
        } else {
            a->pValue = NULL;
        }
        e->present = flags & 1;
        e->capacity = a->ulValueLen;
    }
}

void ss_d_template(ss_srv_call *c, ss_op *o, int io)
{
    ss_d_tmpl(c, &o->tmpl, io, 0);
}

/* Codec._node: bytes, then relocations patched in as pointers. */
static ss_node *ss_d_node(ss_srv_call *c, int depth)
{
    ss_node *node;
    unsigned writeback;
    uint64_t relocations;
    const unsigned char *bytes;
    if (depth > SS_MAX_DEPTH) {
        c->bad = 1;
        return NULL;
    }
    writeback = ss_u8(c);
    node = ss_alloc(c, sizeof *node);
    if (node == NULL)
        return NULL;
    node->length = ss_u64(c);
    bytes = ss_take(c, node->length);
    if (bytes == NULL)
        return NULL;
    node->buf = ss_alloc(c, node->length);
    if (node->buf == NULL)
        return NULL;
    if (node->length)
        memcpy(node->buf, bytes, node->length);
    if (writeback) {
        if (c->nwb >= (int)(sizeof c->wb_buf / sizeof c->wb_buf[0])) {
            c->python = 1; /* more than this loop keeps: the Python path answers */
            return NULL;
        }
        c->wb_buf[c->nwb] = node->buf;
        c->wb_len[c->nwb] = node->length;
        c->nwb++;
    }
    relocations = ss_u64(c);
    if (c->bad || relocations > SS_MAX_RELOCATIONS) {
        c->bad = 1;
        return NULL;
    }
    for (uint64_t r = 0; r < relocations; r++) {
        uint64_t offset = ss_u64(c);
        ss_node *child;
        if (c->bad || offset > node->length || node->length - offset < sizeof(void *)) {
            c->bad = 1;
            return NULL;
        }
        for (size_t k = 0; k < node->nchildren; k++)
            if (node->child_off[k] == offset) {
                c->bad = 1;
                return NULL;
            }
        child = ss_d_node(c, depth + 1);
        if (child == NULL)
            return NULL;
        node->child_off[node->nchildren] = offset;
        node->child[node->nchildren++] = child;
        memcpy(node->buf + offset, &child->buf, sizeof(void *));
    }
    return node;
}

static ss_node *ss_child_at(const ss_node *node, uint64_t offset)
{
    for (size_t k = 0; k < node->nchildren; k++)
        if (node->child_off[k] == offset)
            return node->child[k];
    return NULL;
}

/* Codec._no_stray for `elements` structs of `layout` (layout NULL: no pointer may be patched in). */
static int ss_no_stray(const ss_node *node, const ss_layout *layout, uint64_t elements)
{
    for (size_t k = 0; k < node->nchildren; k++) {
        uint64_t off = node->child_off[k];
        int ok = 0;
        if (layout != NULL && off / layout->size < elements)
            for (size_t j = 0; j < layout->nfields && !ok; j++)
                ok = off % layout->size == layout->fields[j].ptr_off;
        if (!ok)
            return 0;
    }
    return 1;
}

/* Codec._check_struct */
static int ss_check_struct(const ss_node *node, const ss_layout *layout, uint64_t base, int depth)
{
    static const unsigned char zero[sizeof(void *)];
    if (depth > SS_MAX_DEPTH)
        return 0;
    for (size_t j = 0; j < layout->nfields; j++) {
        const ss_field *f = &layout->fields[j];
        uint64_t offset = base + f->ptr_off, declared = 0, element, needed, elements;
        const ss_node *child = ss_child_at(node, offset);
        if (child == NULL) {
            if (memcmp(node->buf + offset, zero, sizeof zero) != 0)
                return 0;
            continue;
        }
        if (f->len_kind == SS_LEN_DROP)
            return 0;
        if (f->len_kind == SS_LEN_BYTES || f->len_kind == SS_LEN_BITS || f->len_kind == SS_LEN_ARRAY) {
            CK_ULONG v;
            memcpy(&v, node->buf + base + f->len_off, sizeof v);
            declared = v;
        }
        element = f->sub != NULL ? f->sub->size : 1;
        switch (f->len_kind) {
        case SS_LEN_BYTES:
            needed = declared;
            break;
        case SS_LEN_BITS:
            needed = declared / 8 + (declared % 8 != 0);
            break;
        case SS_LEN_FIXED:
            needed = element;
            break;
        default: /* SS_LEN_ARRAY */
            if (declared > child->length / element)
                return 0;
            needed = declared * element;
            break;
        }
        if (child->length != needed)
            return 0;
        elements = f->sub != NULL ? child->length / element : 0;
        if (!ss_no_stray(child, f->sub, elements))
            return 0;
        for (uint64_t e = 0; e < elements; e++)
            if (!ss_check_struct(child, f->sub, e * element, depth + 1))
                return 0;
    }
    return 1;
}

/* _mechanism and _parameter: the parameter checked against its mechanism's layout. */
void ss_d_mechanism(ss_srv_call *c, ss_op *o)
{
    CK_MECHANISM *m;
    unsigned has_param;
    o->mech = NULL;
    if (!ss_u8(c))
        return;
    m = ss_alloc(c, sizeof *m);
    if (m == NULL)
        return;
    m->mechanism = ss_u64(c);
    has_param = ss_u8(c);
    m->ulParameterLen = ss_u64(c);
    m->pParameter = NULL;
    o->mech = m;
    if (c->bad)
        return;
    if (ss_parameter_names_keys(m->mechanism))
        c->python = 1; /* visibility.PARAMETER_HANDLES: the Python path checks those keys */
    if (has_param) {
        const char *kind = ss_srv_mech_kind(m->mechanism);
        const ss_layout *layout = kind != NULL ? ss_layout_for_kind(kind) : NULL;
        ss_node *node = ss_d_node(c, 0);
        if (node == NULL)
            return;
        if (node->length != m->ulParameterLen) {
            c->bad = 1;
            return;
        }
        if (layout == NULL || node->length < layout->size) {
            if (node->nchildren)
                c->bad = 1;
        } else if (!ss_no_stray(node, layout, 1) || !ss_check_struct(node, layout, 0, 0)) {
            c->bad = 1;
        }
        m->pParameter = node->buf;
    }
}

int ss_d_done(ss_srv_call *c)
{
    if (!c->bad && c->pos != c->in_len)
        c->bad = 1;
    return !c->bad && !c->python;
}

/* ---- the per-application rules (clients.ClientTable.dispatch) --------------------------------- */

/* The session is the client's, and no other client holds the login on its slot. */
int ss_session_ok(ss_srv_call *c, CK_SESSION_HANDLE h)
{
    uint64_t public_view;
    int mine;
    pthread_mutex_lock(&ss_state_lock);
    mine = ss_map_get(&c->conn->client->sessions, h, &public_view);
    pthread_mutex_unlock(&ss_state_lock);
    return mine && !public_view;
}

/* The handle is another client's session object. */
int ss_foreign(ss_srv_call *c, CK_OBJECT_HANDLE h)
{
    uint64_t owner;
    int foreign;
    pthread_mutex_lock(&ss_state_lock);
    foreign = ss_owners_broken || (ss_map_get(&ss_owners, h, &owner) && owner != c->conn->client->id);
    pthread_mutex_unlock(&ss_state_lock);
    return foreign;
}

int ss_any_owners(void)
{
    int any;
    pthread_mutex_lock(&ss_state_lock);
    any = ss_owners_broken || ss_owners.count != 0;
    pthread_mutex_unlock(&ss_state_lock);
    return any;
}

/* ---- reply encoders: protocol.Writer and the codec's reply closures --------------------------- */

static void ss_out_reserve(ss_srv_call *c, size_t n)
{
    if (c->out == NULL || c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        unsigned char *out;
        while (c->out_len + n > cap)
            cap *= 2;
        out = realloc(c->out, cap);
        if (out == NULL) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
            return;
        }
        c->out = out;
        c->out_cap = cap;
    }
}

static void ss_w_raw(ss_srv_call *c, const void *p, size_t n)
{
    ss_out_reserve(c, n);
    if (c->out != NULL && n) {
        memcpy(c->out + c->out_len, p, n);
        c->out_len += n;
    }
}

static void ss_w_u64(ss_srv_call *c, uint64_t v)
{
    ss_w_raw(c, &v, 8);
}

static void ss_w_u8(ss_srv_call *c, unsigned v)
{
    unsigned char b = (unsigned char)v;
    ss_w_raw(c, &b, 1);
}

void ss_e_rv(ss_srv_call *c, CK_RV rv)
{
    ss_w_u64(c, rv);
}

void ss_e_out_bytes(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    uint64_t count = o->pcount != NULL ? *o->pcount : 0;
    int has = rv == CKR_OK && o->buf != NULL && count <= o->capacity;
    ss_w_u64(c, count);
    ss_w_u8(c, has);
    if (has)
        ss_w_raw(c, o->buf, count);
}

void ss_e_out_ulongs(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    uint64_t count = o->pcount != NULL ? *o->pcount : 0;
    int has = rv == CKR_OK && o->buf != NULL && count <= o->capacity;
    ss_w_u64(c, count);
    ss_w_u8(c, has);
    if (has)
        for (uint64_t i = 0; i < count; i++)
            ss_w_u64(c, ((CK_ULONG *)o->buf)[i]);
}

void ss_e_out_fixed(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    int has = rv == CKR_OK && o->buf != NULL;
    ss_w_u8(c, has);
    if (has)
        ss_w_raw(c, o->buf, o->length);
}

void ss_e_out_handles(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    uint64_t found = o->pcount != NULL ? *o->pcount : 0;
    uint64_t n = rv == CKR_OK && o->buf != NULL ? (found < o->capacity ? found : o->capacity) : 0;
    ss_w_u64(c, n);
    for (uint64_t i = 0; i < n; i++)
        ss_w_u64(c, ((CK_OBJECT_HANDLE *)o->buf)[i]);
    ss_w_u64(c, found);
}

void ss_e_out_ulong(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    ss_w_u64(c, o->pcount != NULL ? *o->pcount : 0);
}

void ss_e_out_struct(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    int has = rv == CKR_OK && o->buf != NULL;
    ss_w_u8(c, has);
    if (has)
        ss_w_raw(c, o->buf, o->length);
}

/* Codec._template_reply */
static void ss_e_tmpl(ss_srv_call *c, const ss_tmpl *t, int depth)
{
    ss_w_u64(c, t->count);
    if (t->attrs == NULL)
        return;
    for (CK_ULONG i = 0; i < t->count; i++) {
        const CK_ATTRIBUTE *a = &t->attrs[i];
        const ss_tent *e = &t->entries[i];
        CK_ULONG length = a->ulValueLen;
        if (depth)
            ss_w_u64(c, a->type);
        ss_w_u64(c, length);
        if (e->nested != NULL && length != CK_UNAVAILABLE_INFORMATION) {
            ss_w_u8(c, 2);
            ss_e_tmpl(c, e->nested, depth + 1);
        } else if (e->present && e->nested == NULL && length != CK_UNAVAILABLE_INFORMATION &&
                   length <= e->capacity) {
            ss_w_u8(c, 1);
            ss_w_raw(c, a->pValue, length);
        } else {
            ss_w_u8(c, 0);
        }
    }
}

void ss_e_template(ss_srv_call *c, ss_op *o, CK_RV rv)
{
    ss_e_tmpl(c, &o->tmpl, 0);
}

void ss_e_writebacks(ss_srv_call *c)
{
    if (c->nwb == 0)
        return;
    ss_w_u64(c, (uint64_t)c->nwb);
    for (int i = 0; i < c->nwb; i++)
        ss_w_raw(c, c->wb_buf[i], c->wb_len[i]);
}

/* ---- the loop --------------------------------------------------------------------------------- */

static ss_srv_event *ss_event(ss_srv_conn *conn, int kind)
{
    conn->event.kind = kind;
    return &conn->event;
}

/* Answer one CALL frame in C. Returns 1 answered (reply written), 0 for the Python path, or -1 with
 * the event set (the connection failed while writing). */
static int ss_answer(ss_srv_conn *conn, uint32_t fid, const unsigned char *payload, uint64_t length)
{
    ss_srv_fn fn = ss_srv_lookup(fid);
    ss_srv_call c;
    int answered;
    if (fn == NULL)
        return 0;
    memset(&c, 0, sizeof c);
    c.in = payload;
    c.in_len = length;
    c.conn = conn;
    c.out = conn->out;
    c.out_cap = conn->out_cap;
    c.out_len = 16; /* the header, filled in below */
    ss_out_reserve(&c, 0);
    answered = fn(&c);
    ss_call_free(&c);
    conn->out = c.out;
    conn->out_cap = c.out_cap;
    if (!answered)
        return 0;
    if (c.out == NULL) {
        conn->event.err = ENOMEM;
        ss_event(conn, SS_EV_OSERROR);
        return -1;
    }
    if (c.out_len - 16 > SS_MAX_PAYLOAD) {
        conn->event.length = c.out_len - 16;
        conn->event.fid = fid;
        ss_event(conn, SS_EV_REPLY_TOO_LARGE);
        return -1;
    }
    memcpy(c.out, "SSHS", 4);
    ss_put_le16(c.out + 4, SS_PROTO_VERSION);
    ss_put_le16(c.out + 6, SS_FRAME_REPLY);
    ss_put_le32(c.out + 8, fid);
    ss_put_le32(c.out + 12, (uint32_t)(c.out_len - 16));
    if (ss_write_all(conn->fd, c.out, c.out_len) != 0) {
        conn->event.err = errno;
        ss_event(conn, SS_EV_OSERROR);
        return -1;
    }
    conn->answered++;
    return 1;
}

/* Serve frames until one needs the Python path or the connection ends: what happened is the event
 * (its payload stays valid until the next ss_srv_serve of this connection). */
ss_srv_event *ss_srv_serve(ss_srv_conn *conn)
{
    for (;;) {
        unsigned char *h = conn->event.header;
        size_t got;
        uint32_t length;
        int ftype, r;
        if (conn->start == conn->end)
            conn->start = conn->end = 0;
        memset(&conn->event, 0, sizeof conn->event);
        r = ss_fill(conn, 16, -1, &got);
        if (r != 0) {
            conn->event.err = errno;
            conn->event.got = got;
            conn->event.want = 16;
            conn->event.what_header = 1;
            return ss_event(conn, r == SS_EV_TRUNCATED && got == 0 ? SS_EV_GONE : r);
        }
        memcpy(h, conn->rbuf + conn->start, 16);
        ftype = h[6] | h[7] << 8;
        length = ss_le32(h + 12);
        /* Only a CALL the Python path would take too; protocol.parse_header refuses the rest. */
        if (memcmp(h, "SSHS", 4) != 0 || (h[4] | h[5] << 8) != SS_PROTO_VERSION || length > SS_MAX_PAYLOAD ||
            (ftype != SS_FRAME_HELLO && ftype != SS_FRAME_CALL))
            return ss_event(conn, SS_EV_HEADER);
        r = ss_fill(conn, 16 + (size_t)length, SS_PAYLOAD_TIMEOUT_MS, &got);
        if (r != 0) {
            conn->event.err = errno;
            conn->event.got = got > 16 ? got - 16 : 0;
            conn->event.want = length;
            return ss_event(conn, r);
        }
        conn->event.ftype = ftype;
        conn->event.fid = ss_le32(h + 8);
        conn->event.payload = conn->rbuf + conn->start + 16;
        conn->event.length = length;
        conn->start += 16 + (size_t)length; /* consumed; the payload stays until the next call */
        if (ftype == SS_FRAME_CALL) {
            r = ss_answer(conn, conn->event.fid, conn->event.payload, length);
            if (r > 0)
                continue;
            if (r < 0)
                return &conn->event;
        }
        return ss_event(conn, SS_EV_PYTHON);
    }
}
