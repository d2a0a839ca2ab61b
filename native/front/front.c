/* softshield front end: the one library every host loads (libsoftshield-pkcs11.so).
 *
 * Before it touches any Python, it decides how this process is served:
 *   embedded   the module runs inside the process: libsoftshield-embedded.so (cffi embedding, linked
 *              against the libpython it was built with) is loaded and every call goes to it;
 *   hardserver every call is forwarded to `softshield hardserver` (the client runtime in
 *              native/client/, started on demand by autostart.c).
 * Two interpreters in one process share symbol names, and an embedded start inside another Python
 * spins or crashes: so the module is embedded only when the process has no Python of its own, or has
 * exactly the libpython the module was built against. SOFTSHIELD_MODE (environment or cknfastrc)
 * says embedded, hardserver or auto (the default); a configured SOFTSHIELD_HARDSERVER means
 * hardserver under auto, as nShield's library talks to the hardserver it is pointed at.
 *
 * The mode is chosen once per process, at the first C_Initialize, and kept across C_Finalize and
 * fork: an embedded module cannot be unloaded from a process once its interpreter ran. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fork_safe_lock.h"
#include "ss_client.h"
#include "ss_front.h"

static int ss_mode = SS_MODE_UNDECIDED;
/* Held by every C_Initialize while it reads the mode, never across a call into the module: a fork
 * from another thread meanwhile must not leave it held in the child, whose C_Initialize needs it. */
static pthread_mutex_t ss_front_lock = PTHREAD_MUTEX_INITIALIZER;
SS_FORK_SAFE_LOCK(ss_front_lock)
static char ss_foreign[PATH_MAX]; /* the other Python found in the process, for messages */

int ss_mode_embedded(void)
{
    return __atomic_load_n(&ss_mode, __ATOMIC_ACQUIRE) == SS_MODE_EMBEDDED;
}

int ss_mode_current(void)
{
    return __atomic_load_n(&ss_mode, __ATOMIC_ACQUIRE);
}

static int ss_same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (realpath(a, ra) == NULL || realpath(b, rb) == NULL)
        return 0;
    return strcmp(ra, rb) == 0;
}

static int ss_is_libpython(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, "libpython", 9) == 0;
}

static int ss_find_other_libpython(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0' || !ss_is_libpython(info->dlpi_name))
        return 0;
    if (ss_same_file(info->dlpi_name, ss_recorded_libpython))
        return 0;
    snprintf(ss_foreign, sizeof ss_foreign, "%s", info->dlpi_name);
    return 1;
}

/* Does the process run a Python that is not the one the embedded module is linked against? A
 * Python executable exports the C API from itself (a static build) or from its libpython; either
 * way Py_GetVersion is in the global scope. A libpython opened privately (RTLD_LOCAL) by a plugin
 * shows only in the list of loaded objects. Nothing in a foreign Python is ever called. */
static int ss_foreign_python(void)
{
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "Py_GetVersion");
    if (sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL &&
        !ss_same_file(info.dli_fname, ss_recorded_libpython)) {
        snprintf(ss_foreign, sizeof ss_foreign, "%s", info.dli_fname);
        return 1;
    }
    return dl_iterate_phdr(ss_find_other_libpython, NULL) != 0;
}

static int ss_decide(void)
{
    char mode[64], server[16];
    if (!ss_config_value("SOFTSHIELD_MODE", mode, sizeof mode) || mode[0] == '\0')
        snprintf(mode, sizeof mode, "auto");
    if (strcmp(mode, "hardserver") == 0)
        return SS_MODE_HARDSERVER;
    if (strcmp(mode, "embedded") == 0) {
        if (ss_foreign_python()) {
            fprintf(stderr, "softshield: SOFTSHIELD_MODE=embedded, but this process already runs another "
                            "Python (%s) and the module needs its own (%s): use SOFTSHIELD_MODE=auto or "
                            "hardserver\n", ss_foreign, ss_recorded_libpython);
            return SS_MODE_REFUSED;
        }
        return SS_MODE_EMBEDDED;
    }
    if (strcmp(mode, "auto") != 0) {
        fprintf(stderr, "softshield: SOFTSHIELD_MODE=%s is not one of embedded, hardserver, auto\n", mode);
        return SS_MODE_REFUSED;
    }
    if (ss_config_value("SOFTSHIELD_HARDSERVER", server, sizeof server) && server[0] != '\0')
        return SS_MODE_HARDSERVER;
    return ss_foreign_python() ? SS_MODE_HARDSERVER : SS_MODE_EMBEDDED;
}

/* Loads the embedded module (once). RTLD_LOCAL: its C_* names stay out of the host's scope, and it
 * is linked -Bsymbolic, so its own tables never bind to ours. */
static int ss_load_embedded(void)
{
    static int loaded = 0;
    char path[PATH_MAX];
    void *handle;
    const char *missing = NULL;
    if (loaded)
        return 0;
    if (ss_embedded_path(path, sizeof path) != 0) {
        fprintf(stderr, "softshield: cannot tell where %s is; set SOFTSHIELD_EMBEDDED_LIBRARY\n",
                SS_EMBEDDED_LIBRARY);
        return -1;
    }
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "softshield: cannot load the embedded module: %s (rebuild with make, or use "
                        "SOFTSHIELD_MODE=hardserver)\n", dlerror());
        return -1;
    }
    if (ss_embedded_bind(handle, &missing) != 0) {
        fprintf(stderr, "softshield: %s lacks %s: it was built from another native/functions.txt "
                        "(rebuild with make)\n", path, missing);
        dlclose(handle);
        return -1;
    }
    loaded = 1;
    return 0;
}

CK_RV ss_front_initialize(CK_VOID_PTR pInitArgs)
{
    int mode;
    ss_held_forget_all(); /* a held wrap belongs to the sessions of the last initialization */
    pthread_mutex_lock(&ss_front_lock);
    mode = ss_mode;
    if (mode == SS_MODE_UNDECIDED) {
        mode = ss_decide();
        if (mode == SS_MODE_EMBEDDED && ss_load_embedded() != 0)
            mode = SS_MODE_UNDECIDED; /* nothing chosen: a later C_Initialize may try again */
        else if (mode != SS_MODE_REFUSED)
            __atomic_store_n(&ss_mode, mode, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&ss_front_lock);
    switch (mode) {
    case SS_MODE_EMBEDDED:
        return ss_embedded_initialize(pInitArgs);
    case SS_MODE_HARDSERVER:
        return ss_initialize(pInitArgs);
    default:
        return CKR_GENERAL_ERROR;
    }
}

CK_RV ss_front_finalize(CK_VOID_PTR pReserved)
{
    ss_held_forget_all();
    if (ss_mode_embedded())
        return ss_embedded_finalize(pReserved);
    return ss_finalize(pReserved);
}
