/* softshield: the fork generation of a process that embeds the module.
 *
 * The child of a fork is a new application that must call C_Initialize itself (PKCS#11 3.0 §5.1.2):
 * the shim refuses it every other call with CKR_CRYPTOKI_NOT_INITIALIZED (library.state()), and
 * native/answers.h never replays a parent's answer in it. Telling a child from its parent with
 * getpid() costs a system call on every call (a C_GenerateRandom is ~3 us in all, of which getpid
 * is a tenth). The child handler of pthread_atfork moves this counter on instead: libc's fork()
 * runs it for a C host's own fork() and for Python's os.fork alike, and reading it is a load. */
#ifndef SS_FORKS_H
#define SS_FORKS_H

#include <pthread.h>

static volatile unsigned long ss_fork_generation = 0;

/* Runs in the child only, before fork() returns there: the child has one thread then. */
static void ss_forked(void)
{
    ss_fork_generation++;
}

__attribute__((constructor)) static void ss_watch_forks(void)
{
    pthread_atfork(NULL, NULL, ss_forked);
}

/* The counter's address, for the shim to read without calling into C (library.watch_forks). */
static volatile unsigned long *softshield_fork_generation(void)
{
    return &ss_fork_generation;
}

#endif
