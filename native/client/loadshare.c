/* softshield client library: several hardservers (modules of one Security World) sharing the load,
 * as nShield's CKNFAST_LOADSHARING spreads an application's sessions over the modules of a world.
 *
 * SOFTSHIELD_HARDSERVER=ADDR[,ADDR...]; each ADDR is `unix:PATH` or a bare path (or another
 * transport's address, which connection.c's connect chooses by its prefix). With one server nothing
 * here changes a call: session handles are the server's own. With several:
 * - C_OpenSession puts the session on the next usable server in turn and hands out a handle of its
 *   own, mapped to (server, the server's handle); every session call goes to that server with that
 *   server's handle. Object handles pass unchanged: a token object has the same handle on every
 *   module (pkcs11_shim.handles.token_handle); a session object exists on its session's module only.
 * - Calls without a session (slot, token and mechanism information) go to the first usable server.
 * - A login is per application and token (PKCS#11 3.0 §5.6), so C_Login (SO or user) fans out: the
 *   session's own server first, then every usable server on an "anchor" session of the slot that
 *   keeps the module's login while the application has no session there. C_Logout, closing the
 *   application's last session of the slot, and C_CloseAllSessions end it everywhere. The PIN stays
 *   in this process (which holds it anyway) until then, to log in a server that comes back.
 *   CKU_CONTEXT_SPECIFIC, C_LoginUser and the K-of-N vendor login reach the session's server only.
 * - A server found gone (a send or reply fails, the server closed its connection, or it refuses a
 *   new one) is lost: each of its sessions answers CKR_DEVICE_REMOVED once (the call that found it
 *   gone counts for its own session), then CKR_SESSION_HANDLE_INVALID. New sessions go to the other
 *   servers. A lost server is tried again, at most every SOFTSHIELD_HARDSERVER_RETRY seconds
 *   (default 5), when a call needs a server; once it answers with the same slot list and takes the
 *   replayed logins, it takes sessions again.
 * - C_Initialize refuses servers whose slot lists differ (not one world with the same tokens), with
 *   one line on stderr; at least one server must answer.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ss_client.h"

/* The generated forwarders (client_gen.c / front_gen.c) this file calls, pinned to one server. */
CK_RV ss_fwd_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                           CK_SESSION_HANDLE_PTR phSession);
CK_RV ss_fwd_C_CloseSession(CK_SESSION_HANDLE hSession);
CK_RV ss_fwd_C_CloseAllSessions(CK_SLOT_ID slotID);
CK_RV ss_fwd_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen);
CK_RV ss_fwd_C_Logout(CK_SESSION_HANDLE hSession);
CK_RV ss_fwd_C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount);
/* PKCS#11 numbers this file needs beyond ss_constants.h, generated from pkcs11_shim.constants. */
extern const CK_FLAGS ss_ls_session_ro, ss_ls_session_rw;
extern const CK_USER_TYPE ss_ls_user_so, ss_ls_user_context;

#define SS_LS_ADDRESS_MAX 1024
#define SS_LS_BUCKETS 256
#define SS_LS_MAX_SLOTS 1024

typedef struct ss_server {
    char address[SS_LS_ADDRESS_MAX];
    int up;            /* answering, and (after a loss) logged in again */
    int joining;       /* a thread is bringing it back: others skip it meanwhile */
    unsigned epoch;    /* bumped when it is found gone: sessions of older epochs have ended */
    long retry_at_ms;  /* a lost server is tried again from then on */
} ss_server;

typedef struct ss_session {
    CK_SESSION_HANDLE handle;  /* ours, given to the application */
    CK_SESSION_HANDLE remote;  /* the server's */
    CK_SLOT_ID slot;
    int server;
    unsigned epoch;
    int reported;              /* CKR_DEVICE_REMOVED was answered for it: next is HANDLE_INVALID */
    struct ss_session *next;
} ss_session;

typedef struct ss_login {
    CK_SLOT_ID slot;
    CK_USER_TYPE user;
    unsigned char *pin;
    CK_ULONG pin_len;
    int has_pin;                              /* NULL PIN: protected authentication path */
    CK_SESSION_HANDLE anchor[SS_MAX_SERVERS]; /* 0: no anchor on that server */
    unsigned anchor_epoch[SS_MAX_SERVERS];
    struct ss_login *next;
} ss_login;

static pthread_mutex_t ss_ls_lock = PTHREAD_MUTEX_INITIALIZER;
static ss_server ss_servers[SS_MAX_SERVERS];
static int ss_nservers;
static int ss_next_server;                     /* where the next session goes */
static ss_session *ss_sessions[SS_LS_BUCKETS];
static CK_SESSION_HANDLE ss_next_handle = 1;
static ss_login *ss_logins;
static CK_SLOT_ID ss_slots[SS_LS_MAX_SLOTS];   /* the slot list every server must have */
static CK_ULONG ss_nslots;
/* The server a call of this thread is pinned to, plus one (0: routed normally). Set while this file
 * calls a forwarder for one particular server; such calls carry the server's own handles. */
static __thread int ss_pinned;

static long ss_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static long ss_retry_ms(void)
{
    char value[64];
    if (ss_config_value("SOFTSHIELD_HARDSERVER_RETRY", value, sizeof value) && value[0] != '\0')
        return (long)(atof(value) * 1000);
    return 5000;
}

/* ---- configuration --------------------------------------------------------------------------- */

int ss_ls_configure(const char *value)
{
    const char *p = value;
    int n = 0;
    pthread_mutex_lock(&ss_ls_lock);
    memset(ss_servers, 0, sizeof ss_servers);
    ss_nservers = 0;
    ss_next_server = 0;
    while (1) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 5 && strncmp(p, "unix:", 5) == 0)
            p += 5, len -= 5;
        if (len == 0 || len >= SS_LS_ADDRESS_MAX || n == SS_MAX_SERVERS) {
            pthread_mutex_unlock(&ss_ls_lock);
            fprintf(stderr, "softshield: SOFTSHIELD_HARDSERVER=%s: %s\n", value,
                    n == SS_MAX_SERVERS ? "more than 16 servers" : len == 0 ? "an empty server address"
                                                                            : "a server address too long");
            return 0;
        }
        memcpy(ss_servers[n].address, p, len);
        ss_servers[n].address[len] = '\0';
        n++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    ss_nservers = n;
    pthread_mutex_unlock(&ss_ls_lock);
    return n;
}

int ss_ls_count(void)
{
    return ss_nservers;
}

const char *ss_ls_address(int server)
{
    return ss_servers[server].address;
}

unsigned ss_ls_epoch(int server)
{
    unsigned epoch;
    pthread_mutex_lock(&ss_ls_lock);
    epoch = ss_servers[server].epoch;
    pthread_mutex_unlock(&ss_ls_lock);
    return epoch;
}

/* ---- the session table ----------------------------------------------------------------------- */

static ss_session **ss_find_locked(CK_SESSION_HANDLE h)
{
    ss_session **at = &ss_sessions[h % SS_LS_BUCKETS];
    while (*at != NULL && (*at)->handle != h)
        at = &(*at)->next;
    return at;
}

static void ss_forget_locked(CK_SESSION_HANDLE h)
{
    ss_session **at = ss_find_locked(h);
    if (*at != NULL) {
        ss_session *s = *at;
        *at = s->next;
        free(s);
    }
}

/* Whether the application has a live session with the slot (a lost module's sessions have ended). */
static int ss_slot_in_use_locked(CK_SLOT_ID slot)
{
    for (int b = 0; b < SS_LS_BUCKETS; b++)
        for (ss_session *s = ss_sessions[b]; s != NULL; s = s->next)
            if (s->slot == slot && s->epoch == ss_servers[s->server].epoch)
                return 1;
    return 0;
}

static void ss_free_login(ss_login *l)
{
    if (l->pin != NULL) {
        explicit_bzero(l->pin, l->pin_len);
        free(l->pin);
    }
    free(l);
}

static ss_login *ss_take_login_locked(CK_SLOT_ID slot)
{
    for (ss_login **at = &ss_logins; *at != NULL; at = &(*at)->next)
        if ((*at)->slot == slot) {
            ss_login *l = *at;
            *at = l->next;
            return l;
        }
    return NULL;
}

static void ss_clear_locked(void)
{
    for (int b = 0; b < SS_LS_BUCKETS; b++)
        while (ss_sessions[b] != NULL) {
            ss_session *s = ss_sessions[b];
            ss_sessions[b] = s->next;
            free(s);
        }
    while (ss_logins != NULL) {
        ss_login *l = ss_logins;
        ss_logins = l->next;
        ss_free_login(l);
    }
    ss_nservers = 0;
    ss_next_server = 0;
    ss_nslots = 0;
}

void ss_ls_reset(void)
{
    pthread_mutex_lock(&ss_ls_lock);
    ss_clear_locked();
    pthread_mutex_unlock(&ss_ls_lock);
}

/* The child of a fork is a new application (PKCS#11 3.0 §5.1.2): nothing of the parent's is its own. */
void ss_ls_forked(void)
{
    pthread_mutex_init(&ss_ls_lock, NULL);
    ss_clear_locked();
}

/* ---- servers lost and found ------------------------------------------------------------------ */

void ss_ls_lost(int server, unsigned epoch)
{
    int was_up = 0;
    if (ss_nservers <= 1)
        return; /* one server: each call reconnects, as without load sharing */
    pthread_mutex_lock(&ss_ls_lock);
    if (ss_servers[server].epoch == epoch) {
        was_up = ss_servers[server].up;
        ss_servers[server].epoch++;
        ss_servers[server].up = 0;
        ss_servers[server].retry_at_ms = ss_now_ms() + ss_retry_ms();
    }
    pthread_mutex_unlock(&ss_ls_lock);
    if (was_up)
        fprintf(stderr, "softshield: hardserver %s went away: its sessions end, new sessions go to the "
                        "other servers\n", ss_servers[server].address);
    ss_drop_idle_server(server);
}

/* The slot list of one server (pinned calls): a length query first, as the module re-reads its
 * tokens then (PKCS#11 3.0 §5.5.1), so a token another host synced in is listed. */
static CK_RV ss_slot_list(int server, CK_SLOT_ID *slots, CK_ULONG *count)
{
    CK_ULONG needed = 0;
    CK_RV rv;
    ss_pinned = server + 1;
    rv = ss_fwd_C_GetSlotList(0, NULL, &needed);
    if (rv == CKR_OK && needed > *count)
        rv = CKR_BUFFER_TOO_SMALL;
    if (rv == CKR_OK)
        rv = ss_fwd_C_GetSlotList(0, slots, count);
    ss_pinned = 0;
    return rv;
}

/* Log a server in on the slot of `l` with an anchor session of its own. */
static CK_RV ss_anchor_login(ss_login *l, int server)
{
    CK_SESSION_HANDLE anchor = 0;
    unsigned epoch = ss_ls_epoch(server);
    CK_RV rv;
    ss_pinned = server + 1;
    /* §5.6.2: an SO login is refused while read-only sessions exist; the SO's anchor is read/write. */
    rv = ss_fwd_C_OpenSession(l->slot, l->user == ss_ls_user_so ? ss_ls_session_rw : ss_ls_session_ro,
                              NULL, NULL, &anchor);
    if (rv == CKR_OK) {
        rv = ss_fwd_C_Login(anchor, l->user, l->has_pin ? l->pin : NULL, l->pin_len);
        if (rv == CKR_USER_ALREADY_LOGGED_IN)
            rv = CKR_OK; /* the application's own session on this server logged it in */
        if (rv != CKR_OK)
            ss_fwd_C_CloseSession(anchor);
    }
    ss_pinned = 0;
    if (rv == CKR_OK) {
        pthread_mutex_lock(&ss_ls_lock);
        l->anchor[server] = anchor;
        l->anchor_epoch[server] = epoch;
        pthread_mutex_unlock(&ss_ls_lock);
    }
    return rv;
}

/* Log out and close the anchors of a login taken out of the list. */
static void ss_end_login(ss_login *l)
{
    for (int s = 0; s < ss_nservers; s++) {
        if (l->anchor[s] == 0 || l->anchor_epoch[s] != ss_ls_epoch(s))
            continue;
        ss_pinned = s + 1;
        ss_fwd_C_Logout(l->anchor[s]);
        ss_fwd_C_CloseSession(l->anchor[s]);
        ss_pinned = 0;
    }
    ss_free_login(l);
}

/* A lost server answers again: same slots, and every login of the application replayed. */
static int ss_rejoin(int server)
{
    CK_SLOT_ID slots[SS_LS_MAX_SLOTS];
    CK_ULONG count = SS_LS_MAX_SLOTS;
    ss_login *copies = NULL;
    int failed = 0;
    CK_RV rv = ss_slot_list(server, slots, &count);
    if (rv != CKR_OK)
        return -1;
    if (count != ss_nslots || memcmp(slots, ss_slots, count * sizeof *slots) != 0) {
        fprintf(stderr, "softshield: hardserver %s came back with other slots: not used\n",
                ss_servers[server].address);
        return -1;
    }
    /* Replayed from copies: another thread may end a login meanwhile. */
    pthread_mutex_lock(&ss_ls_lock);
    for (ss_login *l = ss_logins; l != NULL; l = l->next) {
        ss_login *c = calloc(1, sizeof *c);
        if (c == NULL || (l->has_pin && (c->pin = malloc(l->pin_len ? l->pin_len : 1)) == NULL)) {
            free(c);
            failed = 1;
            break;
        }
        c->slot = l->slot;
        c->user = l->user;
        c->has_pin = l->has_pin;
        c->pin_len = l->pin_len;
        if (l->has_pin)
            memcpy(c->pin, l->pin, l->pin_len);
        c->next = copies;
        copies = c;
    }
    pthread_mutex_unlock(&ss_ls_lock);
    while (copies != NULL) {
        ss_login *c = copies, *live = NULL;
        copies = c->next;
        if (!failed && ss_anchor_login(c, server) != CKR_OK)
            failed = 1;
        else if (!failed) {
            pthread_mutex_lock(&ss_ls_lock);
            for (live = ss_logins; live != NULL && live->slot != c->slot; live = live->next)
                ;
            if (live != NULL) {
                live->anchor[server] = c->anchor[server];
                live->anchor_epoch[server] = c->anchor_epoch[server];
                c->anchor[server] = 0;
            }
            pthread_mutex_unlock(&ss_ls_lock);
        }
        if (c->anchor[server] != 0) { /* logged out meanwhile, or a later replay failed */
            ss_pinned = server + 1;
            ss_fwd_C_Logout(c->anchor[server]);
            ss_fwd_C_CloseSession(c->anchor[server]);
            ss_pinned = 0;
            c->anchor[server] = 0;
        }
        ss_free_login(c);
    }
    return failed ? -1 : 0;
}

/* Whether a server may take a call now: up, or lost long enough ago and answering again. */
static int ss_usable(int server)
{
    ss_server *s = &ss_servers[server];
    int ok;
    unsigned epoch;
    pthread_mutex_lock(&ss_ls_lock);
    if (s->up || s->joining || ss_now_ms() < s->retry_at_ms) {
        ok = s->up;
        pthread_mutex_unlock(&ss_ls_lock);
        return ok;
    }
    s->joining = 1;
    epoch = s->epoch;
    pthread_mutex_unlock(&ss_ls_lock);
    ok = ss_probe(server) == 0 && ss_rejoin(server) == 0;
    if (!ok)
        ss_ls_lost(server, ss_ls_epoch(server));
    pthread_mutex_lock(&ss_ls_lock);
    s->joining = 0;
    if (ok && s->epoch == epoch)
        s->up = 1;
    else if (ok)
        ok = 0; /* lost again meanwhile */
    else
        s->retry_at_ms = ss_now_ms() + ss_retry_ms();
    pthread_mutex_unlock(&ss_ls_lock);
    if (ok)
        fprintf(stderr, "softshield: hardserver %s answers again: it takes new sessions\n", s->address);
    return ok;
}

CK_RV ss_ls_initialize(void)
{
    int live = 0, first = -1;
    for (int s = 0; s < ss_nservers; s++) {
        const char *address = ss_servers[s].address;
        if (strstr(address, "://") == NULL && ss_check_socket_path(address) != CKR_OK)
            return CKR_DEVICE_ERROR; /* a socket folder others could write: said on stderr */
        if (ss_probe(s) != 0) {
            pthread_mutex_lock(&ss_ls_lock);
            ss_servers[s].retry_at_ms = ss_now_ms() + ss_retry_ms();
            pthread_mutex_unlock(&ss_ls_lock);
            /* Said as a module that goes away later is: an operator reading the client's stderr
             * learns that one module carries the load. */
            fprintf(stderr, "softshield: hardserver %s does not answer: new sessions go to the others until it does\n",
                    address);
            continue;
        }
        live++;
        if (first < 0) {
            CK_ULONG count = SS_LS_MAX_SLOTS;
            if (ss_slot_list(s, ss_slots, &count) != CKR_OK)
                return CKR_DEVICE_ERROR;
            ss_nslots = count;
            first = s;
        } else {
            CK_SLOT_ID slots[SS_LS_MAX_SLOTS];
            CK_ULONG count = SS_LS_MAX_SLOTS;
            if (ss_slot_list(s, slots, &count) != CKR_OK)
                return CKR_DEVICE_ERROR;
            if (count != ss_nslots || memcmp(slots, ss_slots, count * sizeof *slots) != 0) {
                fprintf(stderr, "softshield: hardservers %s and %s list different slots (%lu and %lu): load "
                                "sharing needs modules of one world with the same tokens\n",
                        ss_servers[first].address, address, (unsigned long)ss_nslots, (unsigned long)count);
                return CKR_DEVICE_ERROR;
            }
        }
        pthread_mutex_lock(&ss_ls_lock);
        ss_servers[s].up = 1;
        pthread_mutex_unlock(&ss_ls_lock);
    }
    if (live == 0) {
        fprintf(stderr, "softshield: none of the hardservers in SOFTSHIELD_HARDSERVER answers\n");
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

/* ---- routing one call ------------------------------------------------------------------------ */

/* A call without a session: the pinned server, else the first usable one. */
CK_RV ss_call_begin(ss_call *c, uint32_t function_id)
{
    int pinned = ss_pinned - 1;
    memset(c, 0, sizeof *c);
    if (pinned >= 0 || ss_nservers <= 1)
        return ss_call_begin_on(c, function_id, pinned >= 0 ? pinned : 0);
    for (int s = 0; s < ss_nservers; s++) {
        if (!ss_usable(s))
            continue;
        if (ss_call_begin_on(c, function_id, s) == CKR_OK || c->rv != CKR_DEVICE_REMOVED)
            return c->rv;
        memset(c, 0, sizeof *c);
    }
    c->failed = 1;
    c->rv = ss_initialized() ? CKR_DEVICE_REMOVED : CKR_CRYPTOKI_NOT_INITIALIZED;
    return c->rv;
}

/* A session call: to the session's server, with the server's handle (ss_call.session). */
CK_RV ss_call_begin_session(ss_call *c, uint32_t function_id, CK_SESSION_HANDLE hSession)
{
    int pinned = ss_pinned - 1, server = 0;
    unsigned epoch = 0;
    ss_session **at, *s;
    CK_RV rv = CKR_OK;
    memset(c, 0, sizeof *c);
    c->session = hSession;
    if (pinned >= 0 || ss_nservers <= 1)
        return ss_call_begin_on(c, function_id, pinned >= 0 ? pinned : 0);
    if (!ss_initialized())
        rv = CKR_CRYPTOKI_NOT_INITIALIZED;
    pthread_mutex_lock(&ss_ls_lock);
    at = ss_find_locked(hSession);
    s = *at;
    if (rv != CKR_OK) {
    } else if (s == NULL) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else if (s->epoch != ss_servers[s->server].epoch) {
        /* Its server was lost: say so once, then the handle is gone. */
        if (!s->reported) {
            s->reported = 1;
            rv = CKR_DEVICE_REMOVED;
        } else {
            ss_forget_locked(hSession);
            rv = CKR_SESSION_HANDLE_INVALID;
        }
    } else {
        c->session = s->remote;
        c->client_session = hSession;
        server = s->server;
        epoch = s->epoch;
    }
    pthread_mutex_unlock(&ss_ls_lock);
    if (rv != CKR_OK) {
        c->failed = 1;
        c->rv = rv;
        return rv;
    }
    if (ss_call_begin_on(c, function_id, server) != CKR_OK)
        return c->rv;
    if (ss_ls_epoch(server) != epoch) {
        /* Getting the connection found the server gone (its pooled connection closed) and reached
         * a restarted one: that server never had this session. */
        c->failed = 1;
        c->rv = CKR_DEVICE_REMOVED;
    }
    return c->rv;
}

/* After every call: a session whose call found its server gone has had its CKR_DEVICE_REMOVED. */
void ss_ls_call_done(ss_call *c)
{
    if (c->client_session == 0 || c->rv != CKR_DEVICE_REMOVED)
        return;
    pthread_mutex_lock(&ss_ls_lock);
    ss_session *s = *ss_find_locked(c->client_session);
    if (s != NULL)
        s->reported = 1;
    pthread_mutex_unlock(&ss_ls_lock);
}

/* ---- the functions whose meaning spans servers ----------------------------------------------- */

static int ss_routed(void)
{
    return ss_pinned == 0 && ss_nservers > 1;
}

CK_RV ss_ls_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                          CK_SESSION_HANDLE_PTR phSession)
{
    if (!ss_routed() || phSession == NULL)
        return ss_fwd_C_OpenSession(slotID, flags, pApplication, Notify, phSession);
    if (!ss_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    for (int tries = 0; tries < ss_nservers; tries++) {
        int server = -1;
        unsigned epoch;
        CK_SESSION_HANDLE remote = 0;
        CK_RV rv;
        ss_session *s;
        for (int i = 0; i < ss_nservers && server < 0; i++) {
            int candidate;
            pthread_mutex_lock(&ss_ls_lock);
            candidate = (ss_next_server + i) % ss_nservers;
            pthread_mutex_unlock(&ss_ls_lock);
            if (ss_usable(candidate))
                server = candidate;
        }
        if (server < 0)
            return CKR_DEVICE_REMOVED;
        pthread_mutex_lock(&ss_ls_lock);
        ss_next_server = (server + 1) % ss_nservers;
        pthread_mutex_unlock(&ss_ls_lock);
        ss_pinned = server + 1;
        rv = ss_fwd_C_OpenSession(slotID, flags, pApplication, Notify, &remote);
        ss_pinned = 0;
        epoch = ss_ls_epoch(server); /* after: the call may have reconnected to a restarted server */
        if (rv == CKR_DEVICE_REMOVED)
            continue; /* lost on the way: the next server */
        if (rv != CKR_OK)
            return rv;
        s = calloc(1, sizeof *s);
        if (s == NULL) {
            ss_pinned = server + 1;
            ss_fwd_C_CloseSession(remote);
            ss_pinned = 0;
            return CKR_HOST_MEMORY;
        }
        pthread_mutex_lock(&ss_ls_lock);
        s->handle = ss_next_handle++;
        s->remote = remote;
        s->slot = slotID;
        s->server = server;
        s->epoch = epoch;
        s->next = ss_sessions[s->handle % SS_LS_BUCKETS];
        ss_sessions[s->handle % SS_LS_BUCKETS] = s;
        *phSession = s->handle;
        pthread_mutex_unlock(&ss_ls_lock);
        return CKR_OK;
    }
    return CKR_DEVICE_REMOVED;
}

/* The slot of one of our sessions, or -1. */
static int ss_slot_of(CK_SESSION_HANDLE h, CK_SLOT_ID *slot)
{
    ss_session *s;
    pthread_mutex_lock(&ss_ls_lock);
    s = *ss_find_locked(h);
    if (s != NULL)
        *slot = s->slot;
    pthread_mutex_unlock(&ss_ls_lock);
    return s != NULL ? 0 : -1;
}

CK_RV ss_ls_C_CloseSession(CK_SESSION_HANDLE hSession)
{
    CK_SLOT_ID slot;
    ss_login *ended = NULL;
    CK_RV rv;
    if (!ss_routed())
        return ss_fwd_C_CloseSession(hSession);
    rv = ss_fwd_C_CloseSession(hSession);
    if (rv != CKR_OK || ss_slot_of(hSession, &slot) != 0)
        return rv;
    pthread_mutex_lock(&ss_ls_lock);
    ss_forget_locked(hSession);
    /* §5.6.7: closing the application's last session with a token ends its login there. */
    if (!ss_slot_in_use_locked(slot))
        ended = ss_take_login_locked(slot);
    pthread_mutex_unlock(&ss_ls_lock);
    if (ended != NULL)
        ss_end_login(ended);
    return CKR_OK;
}

CK_RV ss_ls_C_CloseAllSessions(CK_SLOT_ID slotID)
{
    CK_RV first_error = CKR_OK;
    int answered = 0;
    ss_login *ended;
    if (!ss_routed())
        return ss_fwd_C_CloseAllSessions(slotID);
    if (!ss_initialized())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    for (int s = 0; s < ss_nservers; s++) {
        CK_RV rv;
        if (!ss_usable(s))
            continue; /* a lost server's sessions are gone already */
        ss_pinned = s + 1;
        rv = ss_fwd_C_CloseAllSessions(slotID);
        ss_pinned = 0;
        if (rv == CKR_OK)
            answered++;
        else if (rv != CKR_DEVICE_REMOVED && first_error == CKR_OK)
            first_error = rv;
    }
    if (first_error != CKR_OK)
        return first_error;
    if (answered == 0)
        return CKR_DEVICE_REMOVED;
    pthread_mutex_lock(&ss_ls_lock);
    for (int b = 0; b < SS_LS_BUCKETS; b++)
        for (ss_session **at = &ss_sessions[b]; *at != NULL;) {
            ss_session *s = *at;
            if (s->slot == slotID) {
                *at = s->next;
                free(s);
            } else {
                at = &s->next;
            }
        }
    ended = ss_take_login_locked(slotID); /* its anchors were closed with the rest */
    pthread_mutex_unlock(&ss_ls_lock);
    if (ended != NULL)
        ss_free_login(ended);
    return CKR_OK;
}

CK_RV ss_ls_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
    ss_login *l;
    CK_SLOT_ID slot;
    CK_RV rv;
    if (!ss_routed() || userType == ss_ls_user_context)
        return ss_fwd_C_Login(hSession, userType, pPin, ulPinLen);
    rv = ss_fwd_C_Login(hSession, userType, pPin, ulPinLen);
    if (rv != CKR_OK || ss_slot_of(hSession, &slot) != 0)
        return rv;
    l = calloc(1, sizeof *l);
    if (l != NULL && pPin != NULL && (l->pin = malloc(ulPinLen ? ulPinLen : 1)) == NULL) {
        free(l);
        l = NULL;
    }
    if (l == NULL) {
        ss_fwd_C_Logout(hSession);
        return CKR_HOST_MEMORY;
    }
    l->slot = slot;
    l->user = userType;
    l->has_pin = pPin != NULL;
    l->pin_len = ulPinLen;
    if (pPin != NULL)
        memcpy(l->pin, pPin, ulPinLen);
    for (int s = 0; s < ss_nservers; s++) {
        if (!ss_usable(s))
            continue;
        rv = ss_anchor_login(l, s);
        if (rv != CKR_OK && rv != CKR_DEVICE_REMOVED) {
            /* A module of the world that refuses what another accepted: no half login. */
            ss_end_login(l);
            ss_fwd_C_Logout(hSession);
            return rv;
        }
    }
    pthread_mutex_lock(&ss_ls_lock);
    l->next = ss_logins;
    ss_logins = l;
    pthread_mutex_unlock(&ss_ls_lock);
    return CKR_OK;
}

CK_RV ss_ls_C_Logout(CK_SESSION_HANDLE hSession)
{
    CK_SLOT_ID slot;
    ss_login *ended = NULL;
    CK_RV rv;
    if (!ss_routed())
        return ss_fwd_C_Logout(hSession);
    rv = ss_fwd_C_Logout(hSession);
    if (rv != CKR_OK || ss_slot_of(hSession, &slot) != 0)
        return rv;
    pthread_mutex_lock(&ss_ls_lock);
    ended = ss_take_login_locked(slot);
    pthread_mutex_unlock(&ss_ls_lock);
    if (ended != NULL)
        ss_end_login(ended);
    return CKR_OK;
}
