/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the test programs: the suite hook, unique bus names, temporary shm names,
 * and deadlines for waiting on events (tests never sleep to synchronise).
 */
#pragma once

#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Each test program defines its suite; tests/lib/check-main.c runs it. */
Suite *test_suite(void);

/* A bus name unique to this process and call, for RING_BUS isolation. */
void test_unique_bus(char *buf, size_t size);
/* A shm name "/ring-test.<pid>.<n>.<tag>" unique to this process and call. */
void test_shm_name(char *buf, size_t size, const char *tag);
/* Waits for child pid and returns its exit status, or -1 if it did not exit normally. */
int test_wait_child(pid_t pid);
/* Seed from $TEST_SEED or the clock; printed as a TAP comment so a failure can be replayed. */
uint64_t test_seed(void);
/* xorshift64*: the next number of the stream in *state (which must not be 0), reproducible
 * for a given seed. */
uint64_t test_rng_next(uint64_t *state);
/* Sleeps ms milliseconds (resumed after signals): a polling loop's pause between looks at a
 * deadline, never a way to synchronise. */
void test_nap_ms(unsigned ms);
/* The absolute path of a file under the source tree ($TOP_SRCDIR, else ".."). */
const char *test_srcdir_path(const char *rel, char *buf, size_t size);
