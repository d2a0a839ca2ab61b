/* softshield: C_GetAttributeValue answered in C for the key a session's C_UnwrapKey or C_GenerateKey
 * just made, or the two halves its C_GenerateKeyPair just made.
 *
 * Clients read the attributes of every object they make (python-pkcs11 reads ten, twice: the
 * lengths, then the values); each of those calls entering Python costs more than the rest of a
 * software unwrap, and takes the GIL twice. C_UnwrapKey's and C_GenerateKey's Python handlers stage the encoded values
 * of the usual attributes of the new session object in the thread's staging area
 * (`softshield_answer_area`); the C entry point makes them the session's slot for the returned
 * handle only if no entry point that could change attributes or their visibility ran meanwhile.
 *
 * Validity: every C entry point except C_GetAttributeValue, C_UnwrapKey, C_GenerateKey and
 * C_DestroyObject moves
 * `ss_answer_epoch` on (C_SetAttributeValue, C_CopyObject, C_Login/C_Logout, C_CloseSession,
 * C_Finalize, ... all do); a slot answers only in the epoch it was committed in, in the process that
 * made it (its fork generation, native/forks.h: a forked child gets CKR_CRYPTOKI_NOT_INITIALIZED from
 * Python), and only when every type
 * asked for is in it. C_DestroyObject forgets the slot of the handle it destroys. Anything else
 * goes to Python, which is the reference: the staged values are what it would answer (abi/answers.py). */
#ifndef SS_ANSWERS_H
#define SS_ANSWERS_H

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "fork_safe_lock.h"
#include "forks.h"

#define SS_ANSWER_SLOTS 64
#define SS_ANSWER_TYPES 32
#define SS_ANSWER_BYTES 1024

typedef struct {
    int state; /* 0 empty, 2 committed to `object` */
    unsigned long forks; /* the fork generation it was committed in */
    unsigned long epoch;
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE object;
    CK_ULONG count;
    CK_ATTRIBUTE_TYPE types[SS_ANSWER_TYPES];
    CK_ULONG lengths[SS_ANSWER_TYPES]; /* CK_UNAVAILABLE_INFORMATION: not an attribute of the object */
    CK_ULONG offsets[SS_ANSWER_TYPES];
    unsigned char data[SS_ANSWER_BYTES];
} ss_answer;

/* Two per session: a key pair's public half answers from the first, its private half from the second. */
#define SS_ANSWER_HALVES 2
static ss_answer ss_answers[SS_ANSWER_SLOTS][SS_ANSWER_HALVES];
static unsigned long ss_answer_epoch = 1;
static pthread_mutex_t ss_answer_lock = PTHREAD_MUTEX_INITIALIZER;
SS_FORK_SAFE_LOCK(ss_answer_lock)

/* The handler of C_UnwrapKey or C_GenerateKey writes its answer into the calling thread's staging area (the address
 * Python asks for once per thread): a C function called from Python would release and take the
 * GIL again. Layout: count, then count x (type, length), then the values of the available ones in
 * that order; CK_ULONG in native order. A count of 0 means nothing staged. C_GenerateKeyPair's
 * handler writes the public half's answer there and the private half's SOFTSHIELD_ANSWER_AREA_SIZE
 * bytes further on. */
#define SOFTSHIELD_ANSWER_AREA_SIZE 2048
static __thread unsigned char ss_answer_staging[SS_ANSWER_HALVES][SOFTSHIELD_ANSWER_AREA_SIZE];

static unsigned char *softshield_answer_area(void)
{
    return ss_answer_staging[0];
}

static ss_answer *ss_answer_slot(CK_SESSION_HANDLE session)
{
    return ss_answers[session % SS_ANSWER_SLOTS];
}

/* Every entry point that may change an object's attributes or visibility. */
static void ss_answer_touch(void)
{
    __atomic_add_fetch(&ss_answer_epoch, 1, __ATOMIC_SEQ_CST);
}

/* C_UnwrapKey / C_GenerateKey / C_GenerateKeyPair, before its handler runs: the session's slots are
 * emptied, the epoch noted. */
static unsigned long ss_answer_begin(CK_SESSION_HANDLE session)
{
    ss_answer *slots = ss_answer_slot(session);
    unsigned long epoch;
    int half;
    for (half = 0; half < SS_ANSWER_HALVES; half++)
        memset(ss_answer_staging[half], 0, sizeof(CK_ULONG));
    pthread_mutex_lock(&ss_answer_lock);
    for (half = 0; half < SS_ANSWER_HALVES; half++)
        if (slots[half].session == session)
            slots[half].state = 0;
    epoch = __atomic_load_n(&ss_answer_epoch, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&ss_answer_lock);
    return epoch;
}

/* C_UnwrapKey / C_GenerateKey (half 0), C_GenerateKeyPair (0: public, 1: private), after its handler
 * returned CKR_OK with `object`: the staged answer becomes the session's slot if no entry point that
 * could change attributes ran since `ss_answer_begin`. */
static void ss_answer_commit(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, unsigned long epoch, int half)
{
    ss_answer *slot = &ss_answer_slot(session)[half];
    const unsigned char *blob = ss_answer_staging[half];
    CK_ULONG count, i, offset = 0, header;
    memcpy(&count, blob, sizeof count);
    if (count == 0 || count > SS_ANSWER_TYPES)
        return;
    header = sizeof(CK_ULONG) * (1 + 2 * count);
    pthread_mutex_lock(&ss_answer_lock);
    if (epoch != __atomic_load_n(&ss_answer_epoch, __ATOMIC_SEQ_CST)) {
        pthread_mutex_unlock(&ss_answer_lock);
        return;
    }
    slot->state = 0;
    for (i = 0; i < count; i++) {
        memcpy(&slot->types[i], blob + sizeof(CK_ULONG) * (1 + 2 * i), sizeof(CK_ULONG));
        memcpy(&slot->lengths[i], blob + sizeof(CK_ULONG) * (2 + 2 * i), sizeof(CK_ULONG));
        slot->offsets[i] = offset;
        if (slot->lengths[i] != CK_UNAVAILABLE_INFORMATION)
            offset += slot->lengths[i];
        if (offset > SS_ANSWER_BYTES || header + offset > SOFTSHIELD_ANSWER_AREA_SIZE) {
            pthread_mutex_unlock(&ss_answer_lock);
            return;
        }
    }
    memcpy(slot->data, blob + header, offset);
    slot->count = count;
    slot->session = session;
    slot->object = object;
    slot->epoch = epoch;
    slot->forks = ss_fork_generation;
    slot->state = 2;
    pthread_mutex_unlock(&ss_answer_lock);
}

/* C_DestroyObject: no slot answers for the handle any more. */
static void ss_answer_forget(CK_OBJECT_HANDLE object)
{
    CK_ULONG i;
    int half;
    pthread_mutex_lock(&ss_answer_lock);
    for (i = 0; i < SS_ANSWER_SLOTS; i++)
        for (half = 0; half < SS_ANSWER_HALVES; half++)
            if (ss_answers[i][half].state == 2 && ss_answers[i][half].object == object)
                ss_answers[i][half].state = 0;
    pthread_mutex_unlock(&ss_answer_lock);
}

/* C_GetAttributeValue: 1 with *rv set when the slot answered every attribute asked for, else 0
 * (nothing written; Python answers). The per-attribute rules and the precedence of the codes are
 * those of PKCS#11 3.0 §5.7.5 as abi/objects.py applies them. */
static int ss_answer_get(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR template,
                         CK_ULONG count, CK_RV *rv)
{
    ss_answer *slot = ss_answer_slot(session);
    CK_ULONG at[SS_ANSWER_TYPES];
    CK_ULONG i, j;
    int invalid = 0, too_small = 0;
    if (template == NULL || count == 0 || count > SS_ANSWER_TYPES)
        return 0;
    pthread_mutex_lock(&ss_answer_lock);
    if (slot[0].object != object)
        slot++; /* the other half of a pair, if either */
    if (slot->state != 2 || slot->session != session || slot->object != object ||
        slot->epoch != __atomic_load_n(&ss_answer_epoch, __ATOMIC_SEQ_CST) || slot->forks != ss_fork_generation) {
        pthread_mutex_unlock(&ss_answer_lock);
        return 0;
    }
    for (i = 0; i < count; i++) {
        for (j = 0; j < slot->count && slot->types[j] != template[i].type; j++)
            ;
        if (j == slot->count) {
            pthread_mutex_unlock(&ss_answer_lock);
            return 0;
        }
        at[i] = j;
    }
    for (i = 0; i < count; i++) {
        CK_ULONG length = slot->lengths[at[i]];
        if (length == CK_UNAVAILABLE_INFORMATION) {
            template[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            invalid = 1;
        } else if (template[i].pValue == NULL) {
            template[i].ulValueLen = length;
        } else if (template[i].ulValueLen < length) {
            template[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            too_small = 1;
        } else {
            memcpy(template[i].pValue, slot->data + slot->offsets[at[i]], length);
            template[i].ulValueLen = length;
        }
    }
    pthread_mutex_unlock(&ss_answer_lock);
    *rv = invalid ? CKR_ATTRIBUTE_TYPE_INVALID : too_small ? CKR_BUFFER_TOO_SMALL : CKR_OK;
    return 1;
}

#endif
