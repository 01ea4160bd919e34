/* SPDX-License-Identifier: MIT */
/*
 * Survives SIGBUS from shared memory that another process truncated under us. Any client with
 * write access to a segment can ftruncate() it; touching the lost pages then raises SIGBUS,
 * which would kill the broker. Work on such memory runs through sigbus_run(), which turns the
 * signal into -EFAULT for that one call.
 */
#pragma once

/* Installs the process-wide handler; call once before any guarded access. */
int sigbus_install(void);
/* Runs fn(arg) and returns its result, or -EFAULT if it touched a truncated mapping. fn must not
 * hold locks or allocations that a jump out of it would leak: it is abandoned mid-way. */
int sigbus_run(int (*fn)(void *arg), void *arg);
