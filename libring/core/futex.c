/* SPDX-License-Identifier: MIT */
/*
 * The one futex helper (STYLE.md, Hot path). Waits use FUTEX_WAIT_BITSET with an absolute
 * CLOCK_MONOTONIC deadline, so a wait that is interrupted and retried never stretches its
 * timeout. The word is in MAP_SHARED memory: shared futexes, never FUTEX_PRIVATE_FLAG, so
 * that a v1 peer's plain FUTEX_WAKE (bitset "match any") wakes us and ours wakes it.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "futex.h"
#include "macro.h"
#include "time-util.h"

int futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns) {
        struct timespec ts;
        long r;

        if (deadline_ns != UINT64_MAX)
                ts = timespec_from_ns(deadline_ns);
        r = syscall(SYS_futex, (uint32_t *) word, FUTEX_WAIT_BITSET, expected,
                    deadline_ns == UINT64_MAX ? NULL : &ts, NULL, FUTEX_BITSET_MATCH_ANY);
        if (r == 0)
                return 0;
        switch (errno) {
        case EAGAIN:            /* the value had already changed: as good as a wake-up */
                return 0;
        case ETIMEDOUT:
                return -ETIMEDOUT;
        case EINTR:
                return -EINTR;
        default:
                return negative_errno();
        }
}

int futex_wake(_Atomic uint32_t *word, int n) {
        long r;

        r = syscall(SYS_futex, (uint32_t *) word, FUTEX_WAKE, n, NULL, NULL, 0);
        if (r < 0)
                return negative_errno();
        return (int) r;
}

int futex_waitv(_Atomic uint32_t *const *words, const uint32_t *expected, unsigned n, uint64_t deadline_ns) {
        struct futex_waitv w[FUTEX_WAITV_MAX];
        struct timespec ts;
        long r;

        if (n == 0 || n > FUTEX_WAITV_MAX)
                return -EINVAL;
        for (unsigned i = 0; i < n; i++)
                /* No FUTEX_PRIVATE_FLAG: the words are in shared mappings (see file comment). */
                w[i] = (struct futex_waitv) { .val = expected[i], .uaddr = (uintptr_t) words[i],
                                              .flags = FUTEX_32 };
        if (deadline_ns != UINT64_MAX)
                ts = timespec_from_ns(deadline_ns);
        r = syscall(SYS_futex_waitv, w, n, 0, deadline_ns == UINT64_MAX ? NULL : &ts, CLOCK_MONOTONIC);
        if (r >= 0)
                return (int) r;
        switch (errno) {
        case EAGAIN:
                return 0;
        case ETIMEDOUT:
                return -ETIMEDOUT;
        case EINTR:
                return -EINTR;
        default:
                return negative_errno();
        }
}
