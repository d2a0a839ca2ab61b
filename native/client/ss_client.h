/* softshield client library: the C-only PKCS#11 module that forwards every call to a hardserver.
 *
 * The entry points are generated from native/functions.txt by pkcs11_shim/client_build.py; each one
 * serializes its arguments with the ss_put_* helpers, sends one frame (ss_call_*), and writes the
 * reply's outputs back with the ss_get_* helpers. No Python runs in the host process.
 *
 * Wire protocol (version SS_PROTO_VERSION, little-endian, CK_ULONG and lengths as u64):
 *   header  magic "SSHS" | u16 version | u16 frame type | u32 function id | u32 payload length
 *   HELLO   u32 sizeof(CK_ULONG) | u32 sizeof(void *) | u64 pid | 16-byte client token
 *   CALL    the arguments of one function, in declaration order (see the ss_put_* helpers), then
 *           the caller's values of the environment variables the module reads for that call
 *   REPLY   u64 rv | the outputs, in declaration order (a nested template's entries: u64 type first)
 *   ERROR   u64 rv | u8 the server closes the connection | UTF-8 message
 * A payload is at most SS_MAX_PAYLOAD bytes in either direction.
 */
#ifndef SS_CLIENT_H
#define SS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "pkcs11_types.h"

#define SS_PROTO_VERSION 2 /* 2: nested template replies carry each entry's type */
#define SS_MAX_PAYLOAD (16u * 1024u * 1024u)
#define SS_FRAME_HELLO 1
#define SS_FRAME_CALL 2
#define SS_FRAME_REPLY 3
#define SS_FRAME_ERROR 4

#include "ss_constants.h" /* CKR_*, CKF_*: generated from pkcs11_shim.constants by the build */

/* The message-based operation families (PKCS#11 3.0 §5.11+): their per-message parameter layout
 * depends on the mechanism given to C_Message*Init, which the client remembers per session. */
enum ss_msg_family { SS_MSG_ENCRYPT, SS_MSG_DECRYPT, SS_MSG_SIGN, SS_MSG_VERIFY, SS_MSG_FAMILIES };

/* One call in flight: the request being built, then the reply being read. */
typedef struct ss_call {
    unsigned char *buf;
    size_t len, cap;
    size_t pos;          /* read position in the reply */
    int failed;          /* a put/get failed: rv holds why */
    int drop;            /* the connection is unusable (lost, timed out, or closed by an ERROR frame) */
    CK_RV rv;
    struct ss_conn *conn;
    uint32_t fid;
    int server;                       /* which configured server the call goes to (loadshare.c) */
    CK_SESSION_HANDLE session;        /* the session handle sent: the server's own */
    CK_SESSION_HANDLE client_session; /* the caller's handle of that session (load sharing), or 0 */
    /* Writeback nodes of the mechanism/message parameter, in the order the server returns them. */
    void *writeback[16];
    size_t writeback_len[16];
    int writebacks;
    /* A held function's call (held.c): it leaves held results valid; a length query sent as a
     * call with a buffer, and what to keep if the module answers it with the bytes. */
    int keeps_held;
    unsigned char *held_request;
    size_t held_request_len;
    uint64_t held_generation;
    CK_ULONG held_saved_len;
} ss_call;

/* Mechanism-parameter layouts: where a parameter struct holds pointers, and how long each pointed-to
 * buffer is. The per-mechanism table (generated from the mechanism registry) names a layout; the
 * layouts are generated from pkcs11_shim/hardserver/layouts.py. */
/* SS_LEN_DROP: a pointer the server never receives (it sees NULL). */
enum ss_len_kind { SS_LEN_BYTES, SS_LEN_BITS, SS_LEN_FIXED, SS_LEN_ARRAY, SS_LEN_DROP };
typedef struct ss_layout ss_layout;
typedef struct ss_field {
    size_t ptr_off;
    size_t len_off;        /* CK_ULONG holding the length (bytes, bits or element count) */
    enum ss_len_kind len_kind;
    size_t unit;           /* SS_LEN_FIXED: size; SS_LEN_ARRAY: element size */
    const ss_layout *sub;  /* layout of the pointed-to struct (FIXED) or of each element (ARRAY) */
    int writeback;         /* the module writes into this buffer (message IV/tag) */
} ss_field;
struct ss_layout {
    const char *kind;      /* the registry's param_kind */
    size_t size;
    size_t nfields;
    const ss_field *fields;
};
typedef struct ss_mech_kind {
    CK_MECHANISM_TYPE mechanism;
    const char *kind;
} ss_mech_kind;

/* Generated tables (client_gen.c). */
extern const ss_mech_kind ss_mech_kinds[];
extern const size_t ss_mech_kind_count;
/* Attributes whose value is a CK_ATTRIBUTE array (nested on the wire), from the in-process kind
 * table (pkcs11_shim.attributes.codecs, Kind.TEMPLATE), sorted: not the CKF_ARRAY_ATTRIBUTE bit,
 * which 3.2's CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE lack and CKA_ALLOWED_MECHANISMS
 * (an array of CK_MECHANISM_TYPE) carries. */
extern const CK_ATTRIBUTE_TYPE ss_nested_attrs[];
extern const size_t ss_nested_attr_count;
int ss_is_nested(CK_ATTRIBUTE_TYPE type); /* layouts.c */
extern const ss_layout *const ss_layouts[];        /* from pkcs11_shim/hardserver/layouts.py */
extern const size_t ss_layout_count;
extern const ss_layout *const ss_message_layouts[];
extern const size_t ss_message_layout_count;
const ss_layout *ss_layout_for_kind(const char *kind);
const ss_layout *ss_message_layout_for_kind(const char *kind);

/* Library state (connection.c). */
CK_RV ss_initialize(CK_VOID_PTR pInitArgs);
CK_RV ss_finalize(CK_VOID_PTR pReserved);
int ss_initialized(void);

/* Configuration and the hardserver's start (connection.c, autostart.c). */
int ss_config_value(const char *key, char *out, size_t outlen);
CK_RV ss_check_socket_path(const char *path);
int ss_autostart_enabled(void);
int ss_autostart(const char *socket_path);
int ss_library_dir(char *out, size_t outlen);
int ss_embedded_path(char *out, size_t outlen);
void ss_describe(CK_INFO *info, int embedded);
/* Recorded by the build (generated source): the Python the embedded module runs on, and its
 * libpython, which the front end compares with any Python already in the process. */
#define SS_EMBEDDED_LIBRARY "libsoftshield-embedded.so"
extern const char ss_recorded_python[];
extern const char ss_recorded_libpython[];

/* The mutual-TLS transport to a network-attached module, tls://HOST[:PORT] (transport_tls.c). */
struct ss_tls;
int ss_tls_address(const char *addr);
int ss_tls_open(const char *addr, int timeout_s, struct ss_tls **tls); /* the fd, or -1 (said on stderr) */
int ss_tls_write_all(struct ss_tls *t, const unsigned char *p, size_t n);
int ss_tls_read_all(struct ss_tls *t, unsigned char *p, size_t n);
void ss_tls_close(struct ss_tls *t);

/* Load sharing (loadshare.c): SOFTSHIELD_HARDSERVER may name several servers (modules of one
 * world), comma-separated; each session lives on one of them. */
#define SS_MAX_SERVERS 16
int ss_ls_configure(const char *value);      /* parse the list; 0 (and one stderr line) if unusable */
int ss_ls_count(void);
const char *ss_ls_address(int server);       /* the transport address ("unix:" taken off) */
unsigned ss_ls_epoch(int server);            /* bumped each time the server is found gone */
void ss_ls_lost(int server, unsigned epoch); /* a call found the server gone (several servers only) */
CK_RV ss_ls_initialize(void);                /* C_Initialize with several servers */
void ss_ls_reset(void);                      /* C_Finalize: forget every session and login */
void ss_ls_forked(void);                     /* the child of a fork: the same, and a new lock */
void ss_ls_call_done(ss_call *c);
CK_RV ss_call_begin_session(ss_call *c, uint32_t function_id, CK_SESSION_HANDLE hSession);
CK_RV ss_call_begin_on(ss_call *c, uint32_t function_id, int server);
int ss_probe(int server);
void ss_drop_idle_server(int server);

/* Shared by connection.c and marshal.c. */
void ss_fail(ss_call *c, CK_RV rv);
void ss_put_raw(ss_call *c, const void *p, size_t n);
void ss_put_u8(ss_call *c, unsigned v);
void ss_put_u64(ss_call *c, uint64_t v);
uint64_t ss_rd64(const unsigned char *p);

/* One call. */
CK_RV ss_call_begin(ss_call *c, uint32_t function_id);
CK_RV ss_call_exchange(ss_call *c);   /* send, wait for the reply, read rv */
CK_RV ss_call_end(ss_call *c);        /* return the connection, free buffers; returns c->rv */

/* Request encoders. */
void ss_put_ulong(ss_call *c, CK_ULONG v);
void ss_put_in_bytes(ss_call *c, const void *p, CK_ULONG len);
void ss_put_in_fixed(ss_call *c, const void *p, size_t len);
void ss_put_out_bytes(ss_call *c, const void *p, const CK_ULONG *plen);
void ss_put_out_fixed(ss_call *c, const void *p, CK_ULONG len);
void ss_put_out_ulongs(ss_call *c, const void *p, const CK_ULONG *pcount);
void ss_put_out_handles(ss_call *c, const void *p, CK_ULONG max);
void ss_put_out_ulong(ss_call *c, const CK_ULONG *p);
void ss_put_out_struct(ss_call *c, const void *p, size_t size);
void ss_put_template(ss_call *c, const CK_ATTRIBUTE *t, CK_ULONG count);
void ss_put_template_io(ss_call *c, const CK_ATTRIBUTE *t, CK_ULONG count);
void ss_put_mechanism(ss_call *c, const CK_MECHANISM *m);
void ss_put_msg_param(ss_call *c, CK_SESSION_HANDLE h, enum ss_msg_family f, void *p, CK_ULONG len);
void ss_put_env(ss_call *c, const char *name);

/* Reply decoders (in the same order as the request's outputs). */
void ss_get_out_bytes(ss_call *c, void *p, CK_ULONG *plen);
void ss_get_out_fixed(ss_call *c, void *p, CK_ULONG len);
void ss_get_out_ulongs(ss_call *c, void *p, CK_ULONG *pcount);
void ss_get_out_handles(ss_call *c, void *p, CK_ULONG max);
void ss_get_out_ulong(ss_call *c, CK_ULONG *p);
void ss_get_out_struct(ss_call *c, void *p, size_t size);
void ss_get_template_io(ss_call *c, CK_ATTRIBUTE *t, CK_ULONG count);
void ss_get_writebacks(ss_call *c);

/* A wrapped key the host asked only the length of, held for its next call (held.c). */
#define SS_HELD_MAX 8192u
void ss_held_forget_all(void);
uint64_t ss_held_now(void);
int ss_held_answer(CK_SESSION_HANDLE session, const unsigned char *request, size_t request_len, void *p,
                   CK_ULONG *plen, CK_RV *rv);
void ss_held_keep(CK_SESSION_HANDLE session, unsigned char *request, size_t request_len, uint64_t generation,
                  const void *bytes, size_t n);
int ss_held_take(ss_call *c, CK_SESSION_HANDLE session, void *p, CK_ULONG *plen);
void ss_put_held_out_bytes(ss_call *c, const void *p, const CK_ULONG *plen);
void ss_get_held_out_bytes(ss_call *c, CK_SESSION_HANDLE session, void *p, CK_ULONG *plen);
const unsigned char *ss_get_out_bytes_view(ss_call *c, uint64_t *n, int *has);

/* Message-parameter bookkeeping. */
void ss_msg_remember(CK_SESSION_HANDLE h, enum ss_msg_family f, const CK_MECHANISM *m);

#endif
