/* softshield hardserver, C per-call path: the per-client state the Python path keeps up to date
 * (fastpath.NativeMirror) and the per-application rules read from it (clients.ClientTable.dispatch):
 * which session handles are each client's, whether another client holds the login on a session's
 * slot, which object handles are whose session objects. One lock; every lookup is a hash probe. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ss_serve.h"

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

void ss_srv_client_release(ss_srv_client *client)
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
    ss_srv_client_release(client);
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

/* ---- the per-application rules (clients.ClientTable.dispatch) --------------------------------- */

/* The session is the client's, and no other client holds the login on its slot. */
int ss_session_ok(ss_srv_call *c, CK_SESSION_HANDLE h)
{
    uint64_t public_view;
    int mine;
    pthread_mutex_lock(&ss_state_lock);
    mine = ss_map_get(&c->client->sessions, h, &public_view);
    pthread_mutex_unlock(&ss_state_lock);
    return mine && !public_view;
}

/* The handle is another client's session object. */
int ss_foreign(ss_srv_call *c, CK_OBJECT_HANDLE h)
{
    uint64_t owner;
    int foreign;
    pthread_mutex_lock(&ss_state_lock);
    foreign = ss_owners_broken || (ss_map_get(&ss_owners, h, &owner) && owner != c->client->id);
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

void ss_srv_client_hold(ss_srv_client *client)
{
    pthread_mutex_lock(&ss_state_lock);
    client->refs++;
    pthread_mutex_unlock(&ss_state_lock);
}

