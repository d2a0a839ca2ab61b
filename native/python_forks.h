/* softshield: a C host's fork() never leaves the embedded interpreter's lock held in the child.
 *
 * Every entry point runs Python under the interpreter's lock (the GIL). If one host thread is inside
 * an entry point when another calls fork(), the child inherits a GIL held by a thread it does not
 * have, and its C_Initialize (PKCS#11 3.0 §5.1.2 asks a forked child for one) waits forever. Python's
 * os.fork avoids this by calling PyOS_BeforeFork / PyOS_AfterFork_Parent / PyOS_AfterFork_Child
 * around fork(); a C host's fork() does not, so these pthread_atfork handlers do what os.fork does:
 *   prepare  take the GIL (PyGILState_Ensure waits until no other thread runs Python), then
 *            PyOS_BeforeFork (Python's before-fork hooks, the import lock);
 *   parent   PyOS_AfterFork_Parent, then release the GIL;
 *   child    PyOS_AfterFork_Child (a new GIL held by this thread, the other threads' states
 *            dropped, the import lock reset, Python's after-fork hooks: threading, logging, random),
 *            then release the GIL. The child's fork generation (forks.h) has moved on already, so
 *            the child is refused until its own C_Initialize, which then finds the GIL free.
 * The GIL serialises forks: `ss_fork_gil` belongs to the one thread between prepare and parent/child.
 *
 * Only when the library started the interpreter (a C host: Py_IsInitialized() was false when the
 * library was loaded). In a Python host (python-pkcs11) os.fork already does this, and doing it again
 * inside os.fork can deadlock: Python's before-fork hooks would run twice on one thread, and one that
 * takes a plain lock (concurrent.futures' does) waits for itself. A Python host that calls libc's fork()
 * itself (through ctypes) skips os.fork's calls and gets none here either: that is the host's own
 * problem, as with any extension module.
 *
 * Registered once the interpreter runs (before that there is no GIL to hold) and so after the
 * fork-safe C locks' handlers (fork_safe_lock.h, registered when the library is loaded): prepare
 * handlers run in reverse order of registration, so the forking thread takes the GIL before any of
 * those locks, whose holders never wait for Python. In a C host the forking thread is never inside
 * our Python: no code the library runs forks (no os.fork, no subprocess; only the hardserver's
 * dispatcher starts processes, and it is a Python host). */
#ifndef SS_PYTHON_FORKS_H
#define SS_PYTHON_FORKS_H

#include <pthread.h>

/* Set by the library's constructor when the process had no Python of its own. */
static int ss_python_is_ours = 0;
static PyGILState_STATE ss_fork_gil;

static void ss_python_before_fork(void)
{
    ss_fork_gil = PyGILState_Ensure();
    PyOS_BeforeFork();
}

static void ss_python_after_fork_parent(void)
{
    PyOS_AfterFork_Parent();
    PyGILState_Release(ss_fork_gil);
}

static void ss_python_after_fork_child(void)
{
    PyOS_AfterFork_Child();
    PyGILState_Release(ss_fork_gil);
}

static void ss_python_register_forks(void)
{
    pthread_atfork(ss_python_before_fork, ss_python_after_fork_parent, ss_python_after_fork_child);
}

/* Called by every thread that finds the interpreter started for the first time; registers once. */
static void ss_python_watch_forks(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (ss_python_is_ours)
        pthread_once(&once, ss_python_register_forks);
}

#endif
