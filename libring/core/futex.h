/* SPDX-License-Identifier: MIT */
/*
 * The one futex helper. Ring futexes live in shared memory and are used across processes
 * (and across language runtimes), so these are never FUTEX_PRIVATE_FLAG operations.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

/* Sleeps while *word == expected, until woken or the absolute CLOCK_MONOTONIC deadline
 * (UINT64_MAX = none). Returns 0 when woken or the value differed, -ETIMEDOUT, or -EINTR. */
int futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns);
/* Wakes up to n waiters; returns how many were woken, or a negative errno. */
int futex_wake(_Atomic uint32_t *word, int n);

/* Sleeps until any of the n words (n <= 128) differs from its expected value or is woken, or
 * the deadline passes (FUTEX_WAITV, Linux 5.16+). Returns the index of a woken word (>= 0), 0 if
 * a value already differed, -ETIMEDOUT, -EINTR, or -ENOSYS on older kernels. */
int futex_waitv(_Atomic uint32_t *const *words, const uint32_t *expected, unsigned n, uint64_t deadline_ns);
