/* SPDX-License-Identifier: MIT */
/*
 * Running helper programs from tests (ringctl, systemd-socket-activate) and waiting for what
 * they write, always with deadlines: output is read until end of file, a child is killed if
 * it overstays, and a file is watched with inotify rather than polled in a sleep loop.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct RunCreds {
        uid_t uid;
        gid_t gid;
        const gid_t *groups;    /* supplementary groups */
        size_t n_groups;
} RunCreds;

typedef struct RunResult {
        int status;             /* wait status */
        char *out;              /* standard output, NUL-terminated */
        char *err;              /* standard error, NUL-terminated */
} RunResult;

/* Runs argv (argv[0] is a path) with env applied to a copy of our environment ("NAME=value"
 * sets, "NAME" unsets; NULL-terminated, may be NULL), as creds if not NULL, stdin from
 * /dev/null, and captures its output. The child dies with the caller (PR_SET_PDEATHSIG).
 * Returns 0, or -ETIMEDOUT after timeout_ns (the child is then killed and reaped), or a
 * negative errno. */
int run_capture(const char *const *argv, const char *const *env, const RunCreds *creds,
                int64_t timeout_ns, RunResult *ret);
void run_result_done(RunResult *r);
/* True if the child exited normally with status code. */
bool run_exited(const RunResult *r, int code);

/* Waits until the file at path contains needle, watching its directory with inotify: 0, or
 * -ETIMEDOUT. */
int run_wait_file_contains(const char *path, const char *needle, int64_t timeout_ns);

/* The program in environment variable name, or NULL if it is unset or empty. */
const char *run_program(const char *name);
