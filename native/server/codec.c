/* softshield hardserver, C per-call path: the argument decoders and reply encoders.
 *
 * They mirror pkcs11_shim/hardserver/codec.py check for check: a call these accept is one the Python
 * codec accepts and decodes to the same C arguments, and the reply is byte for byte the one
 * Codec.encode writes. Where the codec would refuse (ProtocolError), a decoder only marks the call,
 * and the frame goes to the Python path, which refuses it with its own message. */
#include <stdlib.h>
#include <string.h>

#include "ss_serve.h"

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

void ss_call_free(ss_srv_call *c)
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
        const unsigned char *p = ss_take(c, o->length); /* first: the length is the client's word */
        o->buf = p != NULL ? ss_alloc(c, o->length) : NULL;
        if (o->buf != NULL && o->length)
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
    /* Sized by what the frame says, so a node costs memory in proportion to the bytes it took. */
    if (relocations) {
        node->child_off = ss_alloc(c, relocations * sizeof(uint64_t));
        node->child = ss_alloc(c, relocations * sizeof(ss_node *));
        if (node->child_off == NULL || node->child == NULL)
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

/* ---- reply encoders: protocol.Writer and the codec's reply closures --------------------------- */

void ss_out_reserve(ss_srv_call *c, size_t n)
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

