/* softshield client library: the hardserver's socket folder checks, and starting the hardserver on
 * demand when nobody listens (as gpg-agent and pcscd are started by their first client).
 *
 * Files beside the socket (STEM is the socket path less a trailing ".sock"):
 *   STEM.lock  flock()ed by the process that starts a server: two first clients start one server
 *   STEM.log   the started server's stdout and stderr
 *   STEM.pid   written by the server (pkcs11_shim/hardserver/server.py)
 * The server is started detached (its own session, no inherited descriptors but a "ready" pipe it
 * closes once it listens), with the Python the embedded module was built for, and exits after
 * SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT seconds without clients (default 300; 0 = never). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ss_client.h"

extern char **environ;

#define SS_DEFAULT_IDLE_TIMEOUT "300"
#define SS_DEFAULT_START_TIMEOUT_MS 4500

int ss_library_dir(char *out, size_t outlen)
{
    Dl_info info;
    char *slash;
    if (dladdr((void *)&ss_library_dir, &info) == 0 || info.dli_fname == NULL)
        return -1;
    if (realpath(info.dli_fname, out) == NULL && snprintf(out, outlen, "%s", info.dli_fname) >= (int)outlen)
        return -1;
    slash = strrchr(out, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    return 0;
}

int ss_embedded_path(char *out, size_t outlen)
{
    char dir[PATH_MAX];
    const char *env = getenv("SOFTSHIELD_EMBEDDED_LIBRARY");
    if (env != NULL && env[0] != '\0')
        return snprintf(out, outlen, "%s", env) < (int)outlen ? 0 : -1;
    if (ss_library_dir(dir, sizeof dir) != 0)
        return -1;
    return snprintf(out, outlen, "%s/%s", dir, SS_EMBEDDED_LIBRARY) < (int)outlen ? 0 : -1;
}

static void ss_sibling(const char *socket_path, const char *suffix, char *out, size_t outlen)
{
    size_t n = strlen(socket_path);
    if (n > 5 && strcmp(socket_path + n - 5, ".sock") == 0)
        n -= 5;
    snprintf(out, outlen, "%.*s%s", (int)n, socket_path, suffix);
}

static long ss_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* A socket another user could have placed or replaced is never used: the folder must be ours and
 * writable by nobody else, and a socket in it must be ours. */
CK_RV ss_check_socket_path(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    struct stat st;
    uid_t me = geteuid();
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || st.st_uid != me || (st.st_mode & 022) != 0) {
            fprintf(stderr, "softshield: refusing the hardserver socket folder %s (owner uid %u, mode %04o): it "
                            "must be a folder owned by uid %u that nobody else can write; remove it or set "
                            "SOFTSHIELD_HARDSERVER to a socket in a private folder\n",
                    dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)me);
            return CKR_DEVICE_ERROR;
        }
    }
    if (lstat(path, &st) == 0 && (!S_ISSOCK(st.st_mode) || st.st_uid != me)) {
        fprintf(stderr, "softshield: refusing %s: it is %s owned by uid %u, not a socket of uid %u; remove it\n",
                path, S_ISSOCK(st.st_mode) ? "a socket" : "not a socket", (unsigned)st.st_uid, (unsigned)me);
        return CKR_DEVICE_ERROR;
    }
    return CKR_OK;
}

/* Is a server listening on the socket? (A plain connect: the HELLO comes with the real connection.) */
static int ss_listening(const char *path)
{
    struct sockaddr_un addr;
    int fd, ok;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path)
        return 0;
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

static int ss_mkdirs(const char *dir)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* The last non-empty line of the server's log, for the one line a failed start prints. */
static void ss_log_tail(const char *log, char *out, size_t outlen)
{
    char buf[4096];
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    off_t size;
    ssize_t n;
    char *end, *start;
    out[0] = '\0';
    if (fd < 0)
        return;
    size = lseek(fd, 0, SEEK_END);
    lseek(fd, size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0, SEEK_SET);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    end = buf + n;
    while (end > buf && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        *--end = '\0';
    start = strrchr(buf, '\n');
    snprintf(out, outlen, "%s", start ? start + 1 : buf);
}

static int ss_lock_until(int fd, long deadline)
{
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (ss_now_ms() >= deadline)
            return -1;
        usleep(20000);
    }
    return 0;
}

/* The environment the server starts with: the caller's, less what would point its Python at the
 * host's own interpreter (a Python 3.12 host's PYTHONHOME or PYTHONPATH). */
static char **ss_server_environment(char *pythonpath, size_t cap)
{
    size_t n = 0, k = 0;
    char **env;
    const char *override = getenv("SOFTSHIELD_PYTHONPATH");
    while (environ[n] != NULL)
        n++;
    env = calloc(n + 2, sizeof *env);
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "PYTHON", 6) != 0)
            env[k++] = environ[i];
    if (override != NULL && override[0] != '\0') {
        snprintf(pythonpath, cap, "PYTHONPATH=%s", override);
        env[k++] = pythonpath;
    }
    env[k] = NULL;
    return env;
}

static int ss_spawn(const char *socket_path, const char *log, long deadline)
{
    char python[PATH_MAX], library[PATH_MAX], idle[32], pythonpath[PATH_MAX + 16], tail[PATH_MAX];
    char exec_failed[PATH_MAX + 64];
    const char *env_python = getenv("SOFTSHIELD_PYTHON");
    char **envp;
    int ready[2], logfd, devnull;
    pid_t child;
    char answer[16];
    size_t got = 0;

    snprintf(python, sizeof python, "%s", env_python && env_python[0] ? env_python : ss_recorded_python);
    if (ss_embedded_path(library, sizeof library) != 0) {
        fprintf(stderr, "softshield: cannot tell where %s is; set SOFTSHIELD_EMBEDDED_LIBRARY\n", SS_EMBEDDED_LIBRARY);
        return -1;
    }
    if (!ss_config_value("SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT", idle, sizeof idle) || idle[0] == '\0')
        snprintf(idle, sizeof idle, "%s", SS_DEFAULT_IDLE_TIMEOUT);
    char *argv[] = {python, "-m", "softshield_cli.main", "hardserver", "--socket", (char *)socket_path,
                    "--library", library, "--idle-timeout", idle, "--ready-fd", "3", NULL};
    snprintf(exec_failed, sizeof exec_failed, "softshield: cannot execute %s (set SOFTSHIELD_PYTHON)\n", python);
    envp = ss_server_environment(pythonpath, sizeof pythonpath);
    if (envp == NULL)
        return -1;
    logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || devnull < 0 || pipe2(ready, O_CLOEXEC) != 0) {
        fprintf(stderr, "softshield: cannot start the hardserver: %s: %s\n", log, strerror(errno));
        if (logfd >= 0)
            close(logfd);
        if (devnull >= 0)
            close(devnull);
        free(envp);
        return -1;
    }
    /* Only async-signal-safe calls between fork and exec: the host may have other threads. */
    child = fork();
    if (child == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        dup2(ready[1], 3); /* dup2 clears close-on-exec on the copy */
        dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        closefrom(4);
        if (chdir("/") != 0)
            _exit(126);
        execve(python, argv, envp);
        if (write(2, exec_failed, strlen(exec_failed)) < 0)
            _exit(127);
        _exit(127);
    }
    close(ready[1]);
    close(logfd);
    close(devnull);
    free(envp);
    if (child < 0) {
        close(ready[0]);
        fprintf(stderr, "softshield: cannot start the hardserver: fork: %s\n", strerror(errno));
        return -1;
    }
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        ;
    for (;;) {
        struct pollfd p = {ready[0], POLLIN, 0};
        long left = deadline - ss_now_ms();
        ssize_t n;
        if (left <= 0) {
            close(ready[0]);
            fprintf(stderr, "softshield: the hardserver did not start listening on %s in time (log: %s); "
                            "start it with `softshield hardserver` or raise SOFTSHIELD_HARDSERVER_START_TIMEOUT\n",
                    socket_path, log);
            return -1;
        }
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        n = read(ready[0], answer + got, sizeof answer - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            got += (size_t)n;
            answer[got] = '\0';
            if (strstr(answer, "ready") != NULL)
                break;
            if (got < sizeof answer - 1)
                continue;
        }
        close(ready[0]);
        ss_log_tail(log, tail, sizeof tail);
        fprintf(stderr, "softshield: the hardserver exited before it listened (log: %s): %s\n", log,
                tail[0] ? tail : "no message");
        return -1;
    }
    close(ready[0]);
    return 0;
}

static long ss_start_timeout_ms(void)
{
    char value[32];
    long ms = SS_DEFAULT_START_TIMEOUT_MS;
    if (ss_config_value("SOFTSHIELD_HARDSERVER_START_TIMEOUT", value, sizeof value) && atof(value) > 0)
        ms = (long)(atof(value) * 1000);
    return ms;
}

int ss_autostart_enabled(void)
{
    char value[16];
    if (!ss_config_value("SOFTSHIELD_HARDSERVER_AUTOSTART", value, sizeof value))
        return 1;
    return !(strcmp(value, "0") == 0 || strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0);
}

int ss_autostart(const char *socket_path)
{
    char dir[PATH_MAX], lock[PATH_MAX], log[PATH_MAX];
    char *slash;
    long deadline = ss_now_ms() + ss_start_timeout_ms();
    int fd, rc;

    snprintf(dir, sizeof dir, "%s", socket_path);
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (ss_mkdirs(dir) != 0) {
            fprintf(stderr, "softshield: cannot create the hardserver socket folder %s: %s\n", dir, strerror(errno));
            return -1;
        }
    }
    /* The folder may have been made by someone else between our check and mkdir. */
    if (ss_check_socket_path(socket_path) != CKR_OK)
        return -1;
    ss_sibling(socket_path, ".lock", lock, sizeof lock);
    ss_sibling(socket_path, ".log", log, sizeof log);
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "softshield: cannot open %s: %s\n", lock, strerror(errno));
        return -1;
    }
    if (ss_lock_until(fd, deadline) != 0) {
        close(fd);
        fprintf(stderr, "softshield: another process has been starting the hardserver on %s for too long "
                        "(lock %s)\n", socket_path, lock);
        return -1;
    }
    /* Whoever held the lock before us may have started it already. */
    rc = ss_listening(socket_path) ? 0 : ss_spawn(socket_path, log, deadline);
    close(fd); /* releases the lock */
    return rc;
}
