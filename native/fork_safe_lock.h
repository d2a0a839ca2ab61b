/* softshield: a C lock that a fork never leaves held in the child. */
#ifndef SS_FORK_SAFE_LOCK_H
#define SS_FORK_SAFE_LOCK_H

#include <pthread.h>

/* A lock another thread may hold at the moment of a fork would stay held in the child, whose only
 * thread is the forking one: its next call would wait forever. The forking thread takes the lock
 * before the fork and releases it on both sides, so the child starts with it free. Only for locks
 * held over C work alone (never across a call into Python, which a fork also waits for). */
#define SS_FORK_SAFE_LOCK(lock)                                                                     \
    static void lock##_before_fork(void) { pthread_mutex_lock(&lock); }                             \
    static void lock##_after_fork(void) { pthread_mutex_unlock(&lock); }                            \
    __attribute__((constructor)) static void lock##_watch_forks(void)                              \
    {                                                                                               \
        pthread_atfork(lock##_before_fork, lock##_after_fork, lock##_after_fork);                   \
    }

#endif
