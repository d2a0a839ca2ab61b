/* softshield client library: finding the hardserver, connections, framing, library state, one call.
 * The argument encoders and reply decoders are in marshal.c; ss_client.h has the wire protocol. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spin_wait.h"
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

/* One configuration value: the environment wins, then the first cknfastrc-style file that sets it. */
int ss_config_value(const char *key, char *out, size_t outlen)
{
    const char *env = getenv(key);
    const char *rc = getenv("SOFTSHIELD_CKNFASTRC");
    const char *home = getenv("NFAST_HOME");
    const char *user = getenv("HOME");
    char path[4096];
    if (env != NULL) {
        snprintf(out, outlen, "%s", env);
        return 1;
    }
    if (rc != NULL && rc[0] != '\0' && ss_rc_lookup(rc, key, out, outlen))
        return 1;
    if (home != NULL && home[0] != '\0') {
        snprintf(path, sizeof path, "%s/cknfastrc", home);
        if (ss_rc_lookup(path, key, out, outlen))
            return 1;
    }
    if (user != NULL && user[0] != '\0') {
        snprintf(path, sizeof path, "%s/.config/softshield/cknfastrc", user);
        if (ss_rc_lookup(path, key, out, outlen))
            return 1;
    }
    return 0;
}

static void ss_socket_path(char *out, size_t outlen)
{
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    if (ss_config_value("SOFTSHIELD_HARDSERVER", out, outlen) && out[0] != '\0')
        return;
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
    struct ss_tls *tls;  /* a tls:// connection (transport_tls.c); NULL on the Unix socket */
    unsigned generation;
    int server;          /* index into the configured servers (loadshare.c) */
    unsigned epoch;      /* the server's epoch when connected: a lost server's connections are dropped */
    struct ss_conn *next;
} ss_conn;

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static ss_conn *ss_idle[SS_MAX_SERVERS];
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

static void ss_conn_close(ss_conn *c)
{
    if (c->tls != NULL)
        ss_tls_close(c->tls); /* closes the fd too */
    else if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void ss_drop_idle_server_locked(int server)
{
    while (ss_idle[server] != NULL) {
        ss_conn *c = ss_idle[server];
        ss_idle[server] = c->next;
        ss_conn_close(c);
    }
}

static void ss_drop_idle_locked(void)
{
    for (int i = 0; i < SS_MAX_SERVERS; i++)
        ss_drop_idle_server_locked(i);
}

/* A server went away (loadshare.c): its pooled connections are dead or belong to its old epoch. */
void ss_drop_idle_server(int server)
{
    pthread_mutex_lock(&ss_lock);
    ss_drop_idle_server_locked(server);
    pthread_mutex_unlock(&ss_lock);
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
    ss_ls_forked();
}

static pthread_once_t ss_once = PTHREAD_ONCE_INIT;
static void ss_setup_once(void)
{
    pthread_atfork(NULL, NULL, ss_atfork_child);
    ss_new_token();
}

static int ss_write_all(ss_conn *c, const unsigned char *p, size_t n)
{
    int fd = c->fd;
    if (c->tls != NULL)
        return ss_tls_write_all(c->tls, p, n);
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

static int ss_read_all(ss_conn *c, unsigned char *p, size_t n)
{
    int fd = c->fd;
    if (c->tls != NULL)
        return ss_tls_read_all(c->tls, p, n);
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
uint64_t ss_rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int ss_send_frame(ss_conn *c, uint16_t type, uint32_t fid, const unsigned char *payload, size_t len)
{
    unsigned char h[16];
    memcpy(h, "SSHS", 4);
    ss_le16(h + 4, SS_PROTO_VERSION);
    ss_le16(h + 6, type);
    ss_le32(h + 8, fid);
    ss_le32(h + 12, (uint32_t)len);
    if (c->tls != NULL) {
        /* One TLS record for the whole frame: half the records to seal and to open per call. */
        unsigned char *frame;
        int rc;
        if (len == 0 || len > 65536)
            return ss_write_all(c, h, sizeof h) != 0 ? -1 : len ? ss_write_all(c, payload, len) : 0;
        frame = malloc(sizeof h + len);
        if (frame == NULL)
            return -1;
        memcpy(frame, h, sizeof h);
        memcpy(frame + sizeof h, payload, len);
        rc = ss_write_all(c, frame, sizeof h + len);
        free(frame);
        return rc;
    }
    /* Header and payload in one send: the server wakes once per frame and reads it in one go. */
    struct iovec iov[2] = {{h, sizeof h}, {(void *)payload, len}};
    struct msghdr msg;
    ssize_t w;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = len ? 2 : 1;
    do
        w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    if ((size_t)w < sizeof h) /* a short send: the rest as it goes */
        return ss_write_all(c, h + w, sizeof h - (size_t)w) != 0 ? -1 : len ? ss_write_all(c, payload, len) : 0;
    w -= (ssize_t)sizeof h;
    return (size_t)w < len ? ss_write_all(c, payload + w, len - (size_t)w) : 0;
}

/* Reads one frame; the caller frees *payload. Returns the frame type, or -1 when the connection
 * is gone or the frame is not ours. */
static int ss_recv_frame(ss_conn *c, unsigned char **payload, size_t *len)
{
    /* The header and, usually, the whole reply in one recv; the server sends nothing unasked, so
     * whatever arrives belongs to this frame. */
    unsigned char first[16 + 4096];
    size_t got = 0, have;
    uint32_t n;
    *payload = NULL;
    *len = 0;
    if (c->tls != NULL) {
        if (ss_read_all(c, first, 16) != 0)
            return -1;
        got = 16;
    }
    if (got == 0)
        ss_spin_until_readable(c->fd);
    while (got < 16) {
        ssize_t r = recv(c->fd, first + got, sizeof first - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    n = ss_rd32(first + 12);
    if (memcmp(first, "SSHS", 4) != 0 || (first[4] | first[5] << 8) != SS_PROTO_VERSION || n > SS_MAX_PAYLOAD)
        return -1;
    have = got - 16;
    if (have > n)
        return -1; /* more than the frame: out of step */
    *payload = malloc(n ? n : 1);
    if (*payload == NULL)
        return -1;
    memcpy(*payload, first + 16, have);
    if (n > have && ss_read_all(c, *payload + have, n - have) != 0) {
        free(*payload);
        *payload = NULL;
        return -1;
    }
    *len = n;
    return first[6] | first[7] << 8;
}

static int ss_unix_open(const char *path)
{
    struct sockaddr_un addr;
    struct timeval tv;
    int fd;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path)
        return -1;
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    tv.tv_sec = ss_timeout_seconds();
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static ss_conn *ss_connect(int server, unsigned generation)
{
    const char *ss_path = ss_ls_address(server);
    unsigned char hello[32];
    unsigned char *reply;
    size_t rlen;
    int type = -1;
    uint64_t pid = (uint64_t)getpid();
    ss_conn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    /* The transport: tls://HOST:PORT is a network-attached module (transport_tls.c), else a socket path. */
    c->fd = ss_tls_address(ss_path) ? ss_tls_open(ss_path, ss_timeout_seconds(), &c->tls) : ss_unix_open(ss_path);
    if (c->fd < 0) {
        ss_conn_close(c);
        return NULL;
    }
    ss_le32(hello, (uint32_t)sizeof(CK_ULONG));
    ss_le32(hello + 4, (uint32_t)sizeof(void *));
    for (int i = 0; i < 8; i++)
        hello[8 + i] = (unsigned char)(pid >> (8 * i));
    memcpy(hello + 16, ss_token, 16);
    if (ss_send_frame(c, SS_FRAME_HELLO, 0, hello, sizeof hello) != 0 ||
        (type = ss_recv_frame(c, &reply, &rlen)) != SS_FRAME_REPLY || rlen < 8 || ss_rd64(reply) != CKR_OK) {
        if (type == SS_FRAME_ERROR && rlen > 9) /* the server says why it will not serve us */
            fprintf(stderr, "softshield: the hardserver at %s refused this client: %.*s\n", ss_path, (int)(rlen - 9),
                    (const char *)reply + 9);
        if (type >= 0)
            free(reply);
        ss_conn_close(c);
        return NULL;
    }
    free(reply);
    c->generation = generation;
    c->server = server;
    c->epoch = ss_ls_epoch(server);
    return c;
}

/* An idle connection whose server closed it (exited, restarted): poll sees the end of the stream. */
static int ss_conn_dead(const ss_conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) != 0;
}

/* An idle connection to `server` of this generation, or a new one. With several servers an idle
 * connection the server has closed tells that the server went away (or restarted): the server is
 * marked lost, so its sessions end, before a new connection is tried. */
static ss_conn *ss_acquire(int server, CK_RV *rv)
{
    ss_conn *c;
    unsigned generation;
    pthread_mutex_lock(&ss_lock);
    if (!ss_is_initialized) {
        pthread_mutex_unlock(&ss_lock);
        *rv = CKR_CRYPTOKI_NOT_INITIALIZED;
        return NULL;
    }
    c = ss_idle[server];
    if (c != NULL)
        ss_idle[server] = c->next;
    generation = ss_generation;
    pthread_mutex_unlock(&ss_lock);
    if (c != NULL && ss_ls_count() > 1 && (c->epoch != ss_ls_epoch(server) || ss_conn_dead(c))) {
        unsigned epoch = c->epoch;
        close(c->fd);
        free(c);
        c = NULL;
        ss_ls_lost(server, epoch);
    }
    if (c != NULL)
        return c;
    c = ss_connect(server, generation);
    if (c == NULL) {
        *rv = CKR_DEVICE_REMOVED;
        ss_ls_lost(server, ss_ls_epoch(server));
    }
    return c;
}

static void ss_release(ss_conn *c, int broken)
{
    pthread_mutex_lock(&ss_lock);
    if (!broken && ss_is_initialized && c->generation == ss_generation && c->epoch == ss_ls_epoch(c->server)) {
        c->next = ss_idle[c->server];
        ss_idle[c->server] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&ss_lock);
    if (c != NULL)
        ss_conn_close(c);
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
        if (ss_ls_configure(ss_path) == 0)
            rv = CKR_DEVICE_ERROR; /* loadshare.c said what is wrong with the list */
        else {
            ss_is_initialized = 1;
            ss_generation++;
        }
    }
    pthread_mutex_unlock(&ss_lock);
    if (rv != CKR_OK)
        return rv;
    if (ss_ls_count() > 1)
        probe = NULL, rv = ss_ls_initialize();
    else {
        const char *path = ss_ls_address(0);
        int remote = ss_tls_address(path);
        /* Fail here, not on the first real call, when no hardserver answers and none can be
         * started: as nShield's library does when its hardserver is not running. A remote module
         * is not ours to start. */
        rv = remote ? CKR_OK : ss_check_socket_path(path);
        probe = rv == CKR_OK ? ss_acquire(0, &rv) : NULL;
        if (probe == NULL && rv != CKR_DEVICE_ERROR && !remote) {
            if (!ss_autostart_enabled())
                fprintf(stderr, "softshield: no hardserver on %s; start one with `softshield hardserver` "
                                "(SOFTSHIELD_HARDSERVER_AUTOSTART is off)\n", path);
            else if (ss_autostart(path) == 0)
                probe = ss_acquire(0, &rv);
        }
        rv = probe != NULL ? CKR_OK : CKR_DEVICE_ERROR;
    }
    if (rv != CKR_OK) {
        pthread_mutex_lock(&ss_lock);
        ss_is_initialized = 0;
        ss_generation++;
        ss_drop_idle_locked();
        pthread_mutex_unlock(&ss_lock);
        ss_ls_reset();
        return CKR_DEVICE_ERROR;
    }
    if (probe != NULL)
        ss_release(probe, 0);
    return CKR_OK;
}

/* Whether `server` answers (a pooled or new connection); with several servers a failure marks it
 * lost. */
int ss_probe(int server)
{
    CK_RV rv;
    ss_conn *c = ss_acquire(server, &rv);
    if (c == NULL)
        return -1;
    ss_release(c, 0);
    return 0;
}

/* CK_INFO.libraryDescription says how this process is served (32 blank-padded bytes, §3.4). */
void ss_describe(CK_INFO *info, int embedded)
{
    const char *text = embedded ? "softshield embedded" : "softshield via hardserver";
    size_t n = strlen(text);
    memset(info->libraryDescription, ' ', sizeof info->libraryDescription);
    memcpy(info->libraryDescription, text, n);
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
    ss_ls_reset();
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

void ss_fail(ss_call *c, CK_RV rv)
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

void ss_put_raw(ss_call *c, const void *p, size_t n)
{
    ss_reserve(c, n);
    if (c->failed)
        return;
    if (n)
        memcpy(c->buf + c->len, p, n);
    c->len += n;
}

void ss_put_u8(ss_call *c, unsigned v)
{
    unsigned char b = (unsigned char)v;
    ss_put_raw(c, &b, 1);
}

void ss_put_u64(ss_call *c, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    ss_put_raw(c, b, 8);
}

/* One call to one server (loadshare.c chooses which: ss_call_begin, ss_call_begin_session). */
CK_RV ss_call_begin_on(ss_call *c, uint32_t function_id, int server)
{
    CK_RV rv = CKR_OK;
    c->server = server;
    c->conn = ss_acquire(server, &rv);
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
    if (ss_send_frame(c->conn, SS_FRAME_CALL, c->fid, c->buf, c->len) != 0) {
        c->drop = 1;
        ss_fail(c, CKR_DEVICE_REMOVED);
        ss_ls_lost(c->server, c->conn->epoch);
        return c->rv;
    }
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    type = ss_recv_frame(c->conn, &reply, &rlen);
    if (type < 0 || rlen < 8) {
        if (type >= 0)
            free(reply);
        c->drop = 1;
        ss_fail(c, CKR_DEVICE_REMOVED); /* the server went away (or timed out) mid-call */
        ss_ls_lost(c->server, c->conn->epoch);
        return c->rv;
    }
    c->buf = reply;
    c->len = c->cap = rlen;
    c->pos = 8;
    c->rv = (CK_RV)ss_rd64(reply);
    if (type != SS_FRAME_REPLY) {
        /* An ERROR frame: the server refused the call; byte 8 says whether it closes the connection. */
        c->failed = 1;
        c->drop = rlen < 9 || reply[8] != 0;
        if (c->rv == CKR_OK)
            c->rv = CKR_GENERAL_ERROR;
    }
    return c->rv;
}

CK_RV ss_call_end(ss_call *c)
{
    /* A call that failed before anything was sent leaves the connection as it was; a reply we
     * could not read (DEVICE_ERROR from a decoder) leaves it out of step: drop it too. */
    int broken = c->drop || (c->failed && c->rv == CKR_DEVICE_ERROR);
    /* Whatever this call changed, a held wrap result may depend on it; dropped once the call is done,
     * so that a wrap another thread held while it ran does not outlive it. */
    if (!c->keeps_held)
        ss_held_forget_all();
    ss_ls_call_done(c);
    if (c->conn != NULL)
        ss_release(c->conn, broken);
    free(c->buf);
    free(c->held_request);
    c->buf = NULL;
    c->held_request = NULL;
    c->conn = NULL;
    return c->rv;
}
