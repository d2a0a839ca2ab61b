/* softshield client library: connections to the hardserver, framing, argument encoding.
 * See ss_client.h for the wire protocol. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ss_client.h"

/* ---- configuration: where the hardserver listens ------------------------------------------- */

/* As nShield's clients find their hardserver: the environment first, then the cknfastrc-style file
 * the in-process library reads (SOFTSHIELD_CKNFASTRC, $NFAST_HOME/cknfastrc,
 * ~/.config/softshield/cknfastrc), then the per-user runtime default the server also uses. */
static int ss_rc_lookup(const char *path, const char *key, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    size_t klen = strlen(key);
    int found = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char *s = line, *e;
        while (*s == ' ' || *s == '\t')
            s++;
        if (strncmp(s, key, klen) != 0)
            continue;
        s += klen;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '=')
            continue;
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        snprintf(out, outlen, "%s", s);
        found = 1;
    }
    fclose(f);
    return found;
}

static void ss_socket_path(char *out, size_t outlen)
{
    const char *env = getenv("SOFTSHIELD_HARDSERVER");
    const char *rc = getenv("SOFTSHIELD_CKNFASTRC");
    const char *home = getenv("NFAST_HOME");
    const char *user = getenv("HOME");
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    char path[4096];
    if (env != NULL && env[0] != '\0') {
        snprintf(out, outlen, "%s", env);
        return;
    }
    if (rc != NULL && rc[0] != '\0' && ss_rc_lookup(rc, "SOFTSHIELD_HARDSERVER", out, outlen))
        return;
    if (home != NULL && home[0] != '\0') {
        snprintf(path, sizeof path, "%s/cknfastrc", home);
        if (ss_rc_lookup(path, "SOFTSHIELD_HARDSERVER", out, outlen))
            return;
    }
    if (user != NULL && user[0] != '\0') {
        snprintf(path, sizeof path, "%s/.config/softshield/cknfastrc", user);
        if (ss_rc_lookup(path, "SOFTSHIELD_HARDSERVER", out, outlen))
            return;
    }
    if (runtime != NULL && runtime[0] != '\0')
        snprintf(out, outlen, "%s/softshield/hardserver.sock", runtime);
    else
        snprintf(out, outlen, "/tmp/softshield-%u/hardserver.sock", (unsigned)getuid());
}

/* A call never waits longer than this for the server (seconds): a dead or wedged server makes the
 * host fail with CKR_DEVICE_REMOVED instead of hanging. */
static int ss_timeout_seconds(void)
{
    const char *env = getenv("SOFTSHIELD_HARDSERVER_TIMEOUT");
    int v = env != NULL ? atoi(env) : 0;
    return v > 0 ? v : 120;
}

/* ---- connections ----------------------------------------------------------------------------- */

/* The server groups connections by the client token: sessions belong to the process, not to the
 * connection a thread happened to use, so a multi-threaded host may use a session from any thread. */
typedef struct ss_conn {
    int fd;
    unsigned generation;
    struct ss_conn *next;
} ss_conn;

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static ss_conn *ss_idle = NULL;
static int ss_is_initialized = 0;
static unsigned ss_generation = 0;   /* bumped by C_Finalize and fork: older connections are dropped */
static unsigned char ss_token[16];
static char ss_path[4096];

static void ss_new_token(void)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    size_t got = 0;
    if (fd >= 0) {
        while (got < sizeof ss_token) {
            ssize_t n = read(fd, ss_token + got, sizeof ss_token - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        close(fd);
    }
    if (got < sizeof ss_token) { /* no urandom: pid and time still make tokens distinct per process */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pid_t pid = getpid();
        memcpy(ss_token, &pid, sizeof pid);
        memcpy(ss_token + 4, &ts, sizeof ts < 12 ? sizeof ts : 12);
    }
}

static void ss_drop_idle_locked(void)
{
    while (ss_idle != NULL) {
        ss_conn *c = ss_idle;
        ss_idle = c->next;
        close(c->fd);
        free(c);
    }
}

/* The child of a fork shares the parent's sockets: it must not talk on them, and it is a new
 * application to the server (PKCS#11 3.0 §5.1.2: the child calls C_Initialize again). */
static void ss_atfork_child(void)
{
    pthread_mutex_init(&ss_lock, NULL);
    ss_drop_idle_locked();
    ss_is_initialized = 0;
    ss_generation++;
    ss_new_token();
}

static pthread_once_t ss_once = PTHREAD_ONCE_INIT;
static void ss_setup_once(void)
{
    pthread_atfork(NULL, NULL, ss_atfork_child);
    ss_new_token();
}

static int ss_write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int ss_read_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void ss_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void ss_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static uint32_t ss_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ss_rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int ss_send_frame(int fd, uint16_t type, uint32_t fid, const unsigned char *payload, size_t len)
{
    unsigned char h[16];
    memcpy(h, "SSHS", 4);
    ss_le16(h + 4, SS_PROTO_VERSION);
    ss_le16(h + 6, type);
    ss_le32(h + 8, fid);
    ss_le32(h + 12, (uint32_t)len);
    if (ss_write_all(fd, h, sizeof h) != 0)
        return -1;
    return len ? ss_write_all(fd, payload, len) : 0;
}

/* Reads one frame; the caller frees *payload. Returns the frame type, or -1 when the connection
 * is gone or the frame is not ours. */
static int ss_recv_frame(int fd, unsigned char **payload, size_t *len)
{
    unsigned char h[16];
    uint32_t n;
    *payload = NULL;
    *len = 0;
    if (ss_read_all(fd, h, sizeof h) != 0)
        return -1;
    n = ss_rd32(h + 12);
    if (memcmp(h, "SSHS", 4) != 0 || (h[4] | h[5] << 8) != SS_PROTO_VERSION || n > SS_MAX_PAYLOAD)
        return -1;
    *payload = malloc(n ? n : 1);
    if (*payload == NULL)
        return -1;
    if (n && ss_read_all(fd, *payload, n) != 0) {
        free(*payload);
        *payload = NULL;
        return -1;
    }
    *len = n;
    return h[6] | h[7] << 8;
}

static ss_conn *ss_connect(unsigned generation)
{
    struct sockaddr_un addr;
    struct timeval tv;
    unsigned char hello[32];
    unsigned char *reply;
    size_t rlen;
    int fd, type = -1;
    uint64_t pid = (uint64_t)getpid();
    ss_conn *c;

    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(ss_path) >= sizeof addr.sun_path)
        return NULL;
    strcpy(addr.sun_path, ss_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    tv.tv_sec = ss_timeout_seconds();
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return NULL;
    }
    ss_le32(hello, (uint32_t)sizeof(CK_ULONG));
    ss_le32(hello + 4, (uint32_t)sizeof(void *));
    for (int i = 0; i < 8; i++)
        hello[8 + i] = (unsigned char)(pid >> (8 * i));
    memcpy(hello + 16, ss_token, 16);
    if (ss_send_frame(fd, SS_FRAME_HELLO, 0, hello, sizeof hello) != 0 ||
        (type = ss_recv_frame(fd, &reply, &rlen)) != SS_FRAME_REPLY || rlen < 8 || ss_rd64(reply) != CKR_OK) {
        if (type >= 0)
            free(reply);
        close(fd);
        return NULL;
    }
    free(reply);
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->generation = generation;
    return c;
}

/* An idle connection of this generation, or a new one. */
static ss_conn *ss_acquire(CK_RV *rv)
{
    ss_conn *c;
    unsigned generation;
    pthread_mutex_lock(&ss_lock);
    if (!ss_is_initialized) {
        pthread_mutex_unlock(&ss_lock);
        *rv = CKR_CRYPTOKI_NOT_INITIALIZED;
        return NULL;
    }
    c = ss_idle;
    if (c != NULL)
        ss_idle = c->next;
    generation = ss_generation;
    pthread_mutex_unlock(&ss_lock);
    if (c != NULL)
        return c;
    c = ss_connect(generation);
    if (c == NULL)
        *rv = CKR_DEVICE_REMOVED;
    return c;
}

static void ss_release(ss_conn *c, int broken)
{
    pthread_mutex_lock(&ss_lock);
    if (!broken && ss_is_initialized && c->generation == ss_generation) {
        c->next = ss_idle;
        ss_idle = c;
        c = NULL;
    }
    pthread_mutex_unlock(&ss_lock);
    if (c != NULL) {
        close(c->fd);
        free(c);
    }
}

/* ---- library state --------------------------------------------------------------------------- */

CK_RV ss_initialize(CK_VOID_PTR pInitArgs)
{
    CK_RV rv = CKR_OK;
    ss_conn *probe;
    pthread_once(&ss_once, ss_setup_once);
    if (pInitArgs != NULL) {
        CK_C_INITIALIZE_ARGS *a = (CK_C_INITIALIZE_ARGS *)pInitArgs;
        int given = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) + (a->LockMutex != NULL) +
                    (a->UnlockMutex != NULL);
        /* PKCS#11 3.0 §5.4: all four mutex functions or none; pReserved must be NULL. */
        if (a->pReserved != NULL || (given != 0 && given != 4))
            return CKR_ARGUMENTS_BAD;
        /* We lock with pthreads; a host that offers only its own mutexes cannot be served. */
        if (given == 4 && !(a->flags & CKF_OS_LOCKING_OK))
            return CKR_CANT_LOCK;
    }
    pthread_mutex_lock(&ss_lock);
    if (ss_is_initialized)
        rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
    else {
        ss_socket_path(ss_path, sizeof ss_path);
        ss_is_initialized = 1;
        ss_generation++;
    }
    pthread_mutex_unlock(&ss_lock);
    if (rv != CKR_OK)
        return rv;
    /* Fail here, not on the first real call, when no hardserver answers: as nShield's library does
     * when its hardserver is not running. */
    probe = ss_acquire(&rv);
    if (probe == NULL) {
        pthread_mutex_lock(&ss_lock);
        ss_is_initialized = 0;
        pthread_mutex_unlock(&ss_lock);
        return CKR_DEVICE_ERROR;
    }
    ss_release(probe, 0);
    return CKR_OK;
}

CK_RV ss_finalize(CK_VOID_PTR pReserved)
{
    if (pReserved != NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&ss_lock);
    if (!ss_is_initialized) {
        pthread_mutex_unlock(&ss_lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    /* Closing our connections is the finalize: the server closes this client's sessions when its
     * last connection goes. Connections still in use are dropped when their call returns. */
    ss_is_initialized = 0;
    ss_generation++;
    ss_drop_idle_locked();
    pthread_mutex_unlock(&ss_lock);
    return CKR_OK;
}

int ss_initialized(void)
{
    int v;
    pthread_mutex_lock(&ss_lock);
    v = ss_is_initialized;
    pthread_mutex_unlock(&ss_lock);
    return v;
}

/* ---- one call -------------------------------------------------------------------------------- */

static void ss_fail(ss_call *c, CK_RV rv)
{
    if (!c->failed) {
        c->failed = 1;
        c->rv = rv;
    }
}

static void ss_reserve(ss_call *c, size_t more)
{
    size_t want;
    unsigned char *n;
    if (c->failed)
        return;
    if (more > SS_MAX_PAYLOAD || c->len + more > SS_MAX_PAYLOAD) {
        ss_fail(c, CKR_DEVICE_MEMORY); /* beyond the protocol's frame limit */
        return;
    }
    if (c->len + more <= c->cap)
        return;
    want = c->cap ? c->cap : 256;
    while (want < c->len + more)
        want *= 2;
    n = realloc(c->buf, want);
    if (n == NULL) {
        ss_fail(c, CKR_HOST_MEMORY);
        return;
    }
    c->buf = n;
    c->cap = want;
}

static void ss_put_raw(ss_call *c, const void *p, size_t n)
{
    ss_reserve(c, n);
    if (c->failed)
        return;
    if (n)
        memcpy(c->buf + c->len, p, n);
    c->len += n;
}

static void ss_put_u8(ss_call *c, unsigned v)
{
    unsigned char b = (unsigned char)v;
    ss_put_raw(c, &b, 1);
}

static void ss_put_u64(ss_call *c, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    ss_put_raw(c, b, 8);
}

CK_RV ss_call_begin(ss_call *c, uint32_t function_id)
{
    CK_RV rv = CKR_OK;
    memset(c, 0, sizeof *c);
    c->conn = ss_acquire(&rv);
    if (c->conn == NULL) {
        c->failed = 1;
        c->rv = rv;
        return rv;
    }
    c->fid = function_id;
    return CKR_OK;
}

CK_RV ss_call_exchange(ss_call *c)
{
    unsigned char *reply;
    size_t rlen;
    int type;
    if (c->failed)
        return c->rv;
    if (ss_send_frame(c->conn->fd, SS_FRAME_CALL, c->fid, c->buf, c->len) != 0) {
        ss_fail(c, CKR_DEVICE_REMOVED);
        return c->rv;
    }
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    type = ss_recv_frame(c->conn->fd, &reply, &rlen);
    if (type < 0 || rlen < 8) {
        if (type >= 0)
            free(reply);
        ss_fail(c, CKR_DEVICE_REMOVED); /* the server went away (or timed out) mid-call */
        return c->rv;
    }
    c->buf = reply;
    c->len = c->cap = rlen;
    c->pos = 8;
    c->rv = (CK_RV)ss_rd64(reply);
    if (type != SS_FRAME_REPLY) {
        /* An ERROR frame: the server refused our frame and closes the connection. */
        c->failed = 1;
        if (c->rv == CKR_OK)
            c->rv = CKR_GENERAL_ERROR;
    }
    return c->rv;
}

CK_RV ss_call_end(ss_call *c)
{
    int broken = c->failed && (c->rv == CKR_DEVICE_REMOVED || c->rv == CKR_GENERAL_ERROR ||
                               c->rv == CKR_DEVICE_MEMORY || c->rv == CKR_HOST_MEMORY);
    if (c->conn != NULL)
        ss_release(c->conn, broken || (c->failed && c->pos == 0));
    free(c->buf);
    c->buf = NULL;
    c->conn = NULL;
    return c->rv;
}

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

/* Templates nest one level per CKF_ARRAY_ATTRIBUTE value (CKA_WRAP_TEMPLATE and friends). */
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
        int nested = (t[i].type & CKF_ARRAY_ATTRIBUTE) && t[i].pValue != NULL &&
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
        uint64_t len = ss_get_u64(c);
        int kind = ss_get_u8(c); /* 0 length only, 1 bytes follow, 2 nested template follows */
        if (kind == 1) {
            const unsigned char *b = ss_take(c, len);
            if (b != NULL && t[i].pValue != NULL && len <= t[i].ulValueLen)
                memcpy(t[i].pValue, b, len);
        } else if (kind == 2) {
            ss_get_template_depth(c, t[i].pValue, t[i].ulValueLen / sizeof(CK_ATTRIBUTE), depth + 1);
        }
        if (!c->failed)
            t[i].ulValueLen = (CK_ULONG)len;
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

/* ---- C_GetInfo -------------------------------------------------------------------------------- */

static volatile unsigned int ss_version = (3u << 8) | 2u;

void ss_record_version(const CK_VERSION *v)
{
    ss_version = ((unsigned int)v->major << 8) | v->minor;
}

void ss_patch_info(CK_INFO *info)
{
    if (info == NULL)
        return;
    info->cryptokiVersion.major = (CK_BYTE)(ss_version >> 8);
    info->cryptokiVersion.minor = (CK_BYTE)(ss_version & 0xff);
}
