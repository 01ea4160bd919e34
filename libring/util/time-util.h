/* SPDX-License-Identifier: MIT */
/*
 * Monotonic time and deadlines in nanoseconds. clock_gettime(CLOCK_MONOTONIC) is served by
 * the vDSO, so reading the clock on the hot path costs no system call.
 */
#pragma once

#include <stdint.h>
#include <time.h>

#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define NSEC_PER_SEC UINT64_C(1000000000)

/* A timeout argument: negative waits forever, 0 never waits, positive waits that long. */
#define TIMEOUT_INFINITE INT64_C(-1)

static inline uint64_t now_ns(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* Absolute CLOCK_MONOTONIC deadline for a relative timeout; UINT64_MAX means never. */
static inline uint64_t deadline_after(int64_t timeout_ns) {
        if (timeout_ns < 0)
                return UINT64_MAX;
        return now_ns(CLOCK_MONOTONIC) + (uint64_t) timeout_ns;
}

static inline struct timespec timespec_from_ns(uint64_t ns) {
        return (struct timespec) {
                .tv_sec = (time_t) (ns / NSEC_PER_SEC),
                .tv_nsec = (long) (ns % NSEC_PER_SEC),
        };
}
