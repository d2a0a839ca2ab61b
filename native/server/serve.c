/* softshield hardserver, C per-call path: binding the module, connections, frame reading and
 * writing, and the loop (see ss_serve.h; decoders and encoders in codec.c, per-client state in
 * state.c). */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spin_wait.h"
#include "ss_serve.h"

#define SS_PAYLOAD_TIMEOUT_MS 30000 /* protocol.PAYLOAD_TIMEOUT */

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
        ss_srv_client_hold(client);
    }
    return conn;
}

void ss_srv_conn_free(ss_srv_conn *conn)
{
    if (conn == NULL)
        return;
    ss_srv_client_release(conn->client);
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
    if (timeout_ms < 0 && conn->end - conn->start < n)
        ss_spin_until_readable(conn->fd);
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
    c.client = conn->client;
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
