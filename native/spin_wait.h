/* softshield: a short spin before a blocking read, for the hardserver's request-reply rhythm.
 *
 * One forwarded call is a request and a reply; the peer answers within tens of microseconds. A
 * thread that blocks in recv() at once pays a sleep and a wake-up per call on each side (the
 * scheduler, often an idle core woken), as much as the module's own work for a wrap. Polling
 * without blocking for a bounded while first keeps a thread that is about to get its answer on its
 * core; sched_yield() between polls hands the core to any other runnable thread, so a machine with
 * more work than cores loses little to the spin. SOFTSHIELD_SPIN_US sets the budget in
 * microseconds (0 turns the spin off). */
#ifndef SS_SPIN_WAIT_H
#define SS_SPIN_WAIT_H

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#define SS_SPIN_DEFAULT_US 50

static long ss_spin_budget_ns(void)
{
    static long budget = -1;
    long b = __atomic_load_n(&budget, __ATOMIC_RELAXED);
    if (b < 0) {
        const char *text = getenv("SOFTSHIELD_SPIN_US");
        long us = text != NULL && text[0] != '\0' ? strtol(text, NULL, 10) : SS_SPIN_DEFAULT_US;
        b = us > 0 && us < 100000 ? us * 1000 : 0;
        __atomic_store_n(&budget, b, __ATOMIC_RELAXED);
    }
    return b;
}

/* 1 once `fd` has something to read (or an error or hang-up to report), 0 when the budget ran out. */
static int ss_spin_until_readable(int fd)
{
    long budget = ss_spin_budget_ns();
    struct timespec start, now;
    if (budget == 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) != 0)
            return 1;
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) >= budget)
            return 0;
    }
}

#endif
