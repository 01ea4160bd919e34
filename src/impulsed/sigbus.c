/* SPDX-License-Identifier: MIT */
/*
 * SIGBUS guard (sigbus.h). The handler jumps back into sigbus_run() of the faulting thread;
 * a SIGBUS outside any guarded call is a real bug and gets the default action (core dump).
 * sigsetjmp() does not save the signal mask (no system call per guarded call); SA_NODEFER keeps
 * SIGBUS unblocked after the jump.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "macro.h"
#include "sigbus.h"

static _Thread_local sigjmp_buf *guard;

static void on_sigbus(int sig, siginfo_t *si, void *uctx) {
        sigjmp_buf *g = guard;

        if (g)
                siglongjmp(*g, 1);
        signal(SIGBUS, SIG_DFL);
        raise(SIGBUS);
}

int sigbus_install(void) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, NULL) < 0)
                return negative_errno();
        return 0;
}

int sigbus_run(int (*fn)(void *arg), void *arg) {
        sigjmp_buf buf, *volatile saved = guard;
        int r;

        if (sigsetjmp(buf, 0)) {
                guard = saved;
                return -EFAULT;
        }
        guard = &buf;
        r = fn(arg);
        guard = saved;
        return r;
}
