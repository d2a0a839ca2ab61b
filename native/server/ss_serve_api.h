/* softshield hardserver: the C loop's interface to the server's Python, read both by the C sources
 * (through ss_serve.h) and, as it stands, by cffi's ABI mode in pkcs11_shim/hardserver/fastpath.py:
 * one declaration for both sides. Only declarations cffi parses belong here (no macros); the
 * CK_* handle types come from ss_client.h in C and are declared by fastpath for cffi. */
#ifndef SS_SERVE_API_H
#define SS_SERVE_API_H

/* What ss_srv_serve returns to the connection's Python thread. */
enum ss_srv_event_kind {
    SS_EV_PYTHON = 1,      /* a whole frame for the Python path: ftype, fid, payload */
    SS_EV_GONE = 2,        /* the peer closed between frames */
    SS_EV_TRUNCATED = 3,   /* the peer closed inside a frame: got of want bytes of `what` */
    SS_EV_TIMEOUT = 4,     /* the payload did not arrive in time */
    SS_EV_HEADER = 5,      /* a header the C loop does not take: header[] for protocol.parse_header */
    SS_EV_OSERROR = 6,     /* errno */
    SS_EV_REPLY_TOO_LARGE = 7, /* a reply of `length` bytes: answered with an ERROR frame by Python */
};

typedef struct ss_srv_event {
    int kind;
    int ftype;
    uint32_t fid;
    const unsigned char *payload;
    uint64_t length;
    uint64_t got, want;
    int what_header;       /* SS_EV_TRUNCATED: 1 the header, 0 the payload */
    int err;
    unsigned char header[16];
} ss_srv_event;

typedef struct ss_srv_client ss_srv_client;
typedef struct ss_srv_conn ss_srv_conn;

int ss_srv_bind(const char *module_path, char *err, size_t errlen);
ss_srv_client *ss_srv_client_new(uint64_t id);
void ss_srv_client_free(ss_srv_client *client);
void ss_srv_session_set(ss_srv_client *client, CK_SESSION_HANDLE h, int public_view);
void ss_srv_session_mark(ss_srv_client *client, CK_SESSION_HANDLE h, int public_view);
void ss_srv_session_drop(ss_srv_client *client, CK_SESSION_HANDLE h);
void ss_srv_owner_set(CK_OBJECT_HANDLE h, uint64_t owner);
void ss_srv_owner_drop(CK_OBJECT_HANDLE h);
ss_srv_conn *ss_srv_conn_new(int fd, ss_srv_client *client);
void ss_srv_conn_free(ss_srv_conn *conn);
ss_srv_event *ss_srv_serve(ss_srv_conn *conn);
uint64_t ss_srv_answered(ss_srv_conn *conn);

#endif
