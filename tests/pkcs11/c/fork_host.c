/* A threaded C host that forks while its other threads are inside the library
 * (tests/pkcs11/test_fork_threads.py).
 *
 *     fork_host <library.so> <token-label> <forks> <looping-threads> <child-timeout-seconds> [busy]
 *
 * The host has no Python of its own, so the library starts its interpreter. It initialises with
 * CKF_OS_LOCKING_OK and starts <looping-threads> threads that call the library until told to stop,
 * each call running the library's Python. What they call is <busy>:
 *   sessions    (the default) C_GenerateRandom and C_GetSessionInfo on a session it opened on the
 *               token labelled <token-label>;
 *   initialize  (one thread) C_Finalize and C_Initialize, which read the world from disk.
 * Meanwhile the main thread forks <forks> times. Each child is a
 * new application (PKCS#11 3.0 §5.1.2): it calls C_GetSlotList (which must be refused until it
 * initialised), C_Initialize, C_GetSlotList and C_Finalize, sends the four return codes to the parent
 * over a pipe and exits. The parent waits for each child at most
 * <child-timeout-seconds>; a child still running then is killed and reported as stuck, and no further
 * child is made. Lines printed:
 *
 *     child <n> 0x<C_GetSlotList> 0x<C_Initialize> 0x<C_GetSlotList> 0x<C_Finalize>
 *     child <n> stuck        (killed after the timeout)
 *     child <n> lost         (ended without sending its codes)
 *     loopers calls=<total> rv=0x<first code other than CKR_OK, else 0>
 *     done 0x<C_Finalize of the parent>
 *
 * Build: gcc -std=c11 -Wall -Wextra -I native -I <folder of ck_numbers.h> -o fork_host fork_host.c -ldl -lpthread
 */

#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pkcs11_types.h"

#include "ck_numbers.h" /* the PKCS#11 numbers, written by the test from pkcs11_shim.constants */

#define CK_TRUE 1
#define CK_FALSE 0
#define MAX_LOOPERS 8

typedef CK_RV (*initialize_fn)(CK_VOID_PTR);
typedef CK_RV (*finalize_fn)(CK_VOID_PTR);
typedef CK_RV (*get_slot_list_fn)(CK_BBOOL, CK_SLOT_ID_PTR, CK_ULONG_PTR);
typedef CK_RV (*get_token_info_fn)(CK_SLOT_ID, CK_TOKEN_INFO_PTR);
typedef CK_RV (*open_session_fn)(CK_SLOT_ID, CK_FLAGS, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR);
typedef CK_RV (*close_session_fn)(CK_SESSION_HANDLE);
typedef CK_RV (*get_session_info_fn)(CK_SESSION_HANDLE, CK_SESSION_INFO_PTR);
typedef CK_RV (*generate_random_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);

static initialize_fn p_initialize;
static finalize_fn p_finalize;
static get_slot_list_fn p_get_slot_list;
static get_token_info_fn p_get_token_info;
static open_session_fn p_open_session;
static close_session_fn p_close_session;
static get_session_info_fn p_get_session_info;
static generate_random_fn p_generate_random;

static CK_SESSION_HANDLE session;
static volatile int stop = 0;
static unsigned long calls[MAX_LOOPERS];
static CK_RV first_failure[MAX_LOOPERS];

static void *symbol(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (p == NULL) {
        fprintf(stderr, "%s: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

/* The other kind of busy thread: C_Finalize and C_Initialize again, without pause. */
static void *reinitialize(void *arg)
{
    size_t me = (size_t)arg;
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        CK_RV rv = p_finalize(NULL);
        if (rv == CKR_OK)
            rv = p_initialize(&args);
        if (rv != CKR_OK && first_failure[me] == CKR_OK)
            first_failure[me] = rv;
        calls[me] += 2;
    }
    return NULL;
}

static void *loop(void *arg)
{
    size_t me = (size_t)arg;
    CK_BYTE random[32];
    CK_SESSION_INFO info;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        CK_RV rv = p_generate_random(session, random, sizeof random);
        if (rv == CKR_OK)
            rv = p_get_session_info(session, &info);
        if (rv != CKR_OK && first_failure[me] == CKR_OK)
            first_failure[me] = rv;
        calls[me] += 2;
    }
    return NULL;
}

/* The child: a new application that must initialise before anything else. */
static void child(int out)
{
    CK_RV rv[4];
    CK_ULONG count = 0;
    rv[0] = p_get_slot_list(CK_FALSE, NULL, &count); /* refused: the parent's initialisation is not ours */
    rv[1] = p_initialize(NULL);
    rv[2] = p_get_slot_list(CK_FALSE, NULL, &count);
    rv[3] = p_finalize(NULL);
    if (write(out, rv, sizeof rv) != (ssize_t)sizeof rv)
        _exit(3);
    exit(rv[1] == CKR_OK && rv[2] == CKR_OK && rv[3] == CKR_OK ? 0 : 1);
}

/* Waits for `pid` at most `seconds`; 1 if it ended, 0 if it was still running (then it is killed). */
static int reap(pid_t pid, double seconds)
{
    struct timespec pause = {0, 2 * 1000 * 1000};
    double waited = 0;
    int status;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            return 1;
        if (done < 0 && errno != EINTR) {
            perror("waitpid");
            exit(2);
        }
        if (waited >= seconds) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 0;
        }
        nanosleep(&pause, NULL);
        waited += 0.002;
    }
}

static CK_SLOT_ID slot_of(const char *label)
{
    CK_SLOT_ID slots[64];
    CK_ULONG count = 64, i;
    char padded[32];
    size_t n = strlen(label);
    memset(padded, ' ', sizeof padded);
    memcpy(padded, label, n < sizeof padded ? n : sizeof padded);
    if (p_get_slot_list(CK_TRUE, slots, &count) != CKR_OK) {
        fprintf(stderr, "C_GetSlotList failed\n");
        exit(2);
    }
    for (i = 0; i < count; i++) {
        CK_TOKEN_INFO info;
        if (p_get_token_info(slots[i], &info) == CKR_OK && memcmp(info.label, padded, sizeof padded) == 0)
            return slots[i];
    }
    fprintf(stderr, "no token labelled %s\n", label);
    exit(2);
}

int main(int argc, char **argv)
{
    CK_C_INITIALIZE_ARGS args;
    pthread_t threads[MAX_LOOPERS];
    void *lib;
    int forks, loopers, reinitializes, i;
    double timeout;
    unsigned long total = 0;
    CK_RV failure = CKR_OK, rv;

    if (argc < 6 || argc > 7 || (loopers = atoi(argv[4])) < 1 || loopers > MAX_LOOPERS ||
        (argc == 7 && strcmp(argv[6], "sessions") != 0 && strcmp(argv[6], "initialize") != 0) ||
        (argc == 7 && strcmp(argv[6], "initialize") == 0 && loopers != 1)) {
        fprintf(stderr, "usage: %s <library.so> <token-label> <forks> <looping-threads 1-%d> <child-timeout> "
                        "[sessions | initialize (one thread)]\n", argv[0], MAX_LOOPERS);
        return 2;
    }
    reinitializes = argc == 7 && strcmp(argv[6], "initialize") == 0;
    forks = atoi(argv[3]);
    timeout = atof(argv[5]);
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    p_initialize = (initialize_fn)symbol(lib, "C_Initialize");
    p_finalize = (finalize_fn)symbol(lib, "C_Finalize");
    p_get_slot_list = (get_slot_list_fn)symbol(lib, "C_GetSlotList");
    p_get_token_info = (get_token_info_fn)symbol(lib, "C_GetTokenInfo");
    p_open_session = (open_session_fn)symbol(lib, "C_OpenSession");
    p_close_session = (close_session_fn)symbol(lib, "C_CloseSession");
    p_get_session_info = (get_session_info_fn)symbol(lib, "C_GetSessionInfo");
    p_generate_random = (generate_random_fn)symbol(lib, "C_GenerateRandom");

    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK; /* a threaded host */
    if ((rv = p_initialize(&args)) != CKR_OK) {
        fprintf(stderr, "C_Initialize: 0x%lx\n", rv);
        return 2;
    }
    if (!reinitializes &&
        (rv = p_open_session(slot_of(argv[2]), CKF_SERIAL_SESSION, NULL, NULL, &session)) != CKR_OK) {
        fprintf(stderr, "C_OpenSession: 0x%lx\n", rv);
        return 2;
    }
    for (i = 0; i < loopers; i++)
        pthread_create(&threads[i], NULL, reinitializes ? reinitialize : loop, (void *)(size_t)i);

    for (i = 0; i < forks; i++) {
        int fds[2];
        pid_t pid;
        CK_RV codes[4];
        if (pipe(fds) != 0) {
            perror("pipe");
            return 2;
        }
        fflush(stdout); /* the child must not print the parent's buffered lines again */
        pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            close(fds[0]);
            child(fds[1]);
        }
        close(fds[1]);
        if (!reap(pid, timeout)) {
            printf("child %d stuck\n", i);
            close(fds[0]);
            break;
        }
        if (read(fds[0], codes, sizeof codes) != (ssize_t)sizeof codes)
            printf("child %d lost\n", i);
        else
            printf("child %d 0x%lx 0x%lx 0x%lx 0x%lx\n", i, codes[0], codes[1], codes[2], codes[3]);
        close(fds[0]);
    }

    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < loopers; i++) {
        pthread_join(threads[i], NULL);
        total += calls[i];
        if (failure == CKR_OK)
            failure = first_failure[i];
    }
    printf("loopers calls=%lu rv=0x%lx\n", total, failure);
    if (!reinitializes)
        p_close_session(session);
    printf("done 0x%lx\n", p_finalize(NULL));
    return 0;
}
