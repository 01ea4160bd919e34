/* SPDX-License-Identifier: MIT */
/*
 * Runs the real in-tree impulsed ($IMPULSED) as a child process on a private bus for system
 * tests, and guarantees the bus is gone afterwards even when a test fails or times out.
 *
 * Check runs every test in a forked child (CK_FORK) which exits at the first failed assertion,
 * so a checked teardown alone cannot clean up. Hence two layers:
 *   - per test, in the child: broker_fixture_init/start ... broker_fixture_done (checked
 *     fixture or explicit calls);
 *   - per TCase, in the parent: broker_fixture_guard_setup/teardown as the *unchecked* fixture.
 *     The guard records every fixture in a state directory, makes orphaned brokers its
 *     children (PR_SET_CHILD_SUBREAPER; brokers also die with their test via PDEATHSIG), and
 *     at teardown kills what is left, prints the broker's log tail as TAP comments and unlinks
 *     every segment of each recorded bus.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include "names.h"
#include "time-util.h"
#include "v1client.h"

#define BROKER_FIXTURE_START_TIMEOUT_NS ((int64_t) (10 * NSEC_PER_SEC))
#define BROKER_FIXTURE_STOP_TIMEOUT_NS ((int64_t) (10 * NSEC_PER_SEC))
/* TCase timeout (seconds) for system tests. */
#define BROKER_FIXTURE_TCASE_TIMEOUT 60

typedef struct BrokerFixture {
        char bus[NAMES_BUS_MAX + 1];    /* RING_BUS of the broker and of this test */
        BusNames names;
        char dir[64];                   /* mkdtemp(): control socket and log */
        char log_path[96];
        char socket_path[96];
        pid_t pid;                      /* running broker, 0 if none */
        uint64_t epoch;                 /* from its control segment once ready */
        bool trouble;                   /* something went wrong: print the log at done */
        unsigned long nofile;           /* > 0: the broker's RLIMIT_NOFILE, soft and hard; set
                                         * after init, applied by the next start or spawn */
} BrokerFixture;

/* Unchecked fixture (parent process), once per TCase. */
void broker_fixture_guard_setup(void);
void broker_fixture_guard_teardown(void);

/* Picks a unique bus (test_unique_bus()) and a temporary directory, and records both with the
 * guard. No broker runs yet. Aborts the test on failure. */
void broker_fixture_init(BrokerFixture *f);
/* Starts impulsed on f's bus with --control-socket <dir>/control --key-cost min --log-level
 * debug, then the NULL-terminated extra_args (may be NULL); stdout and stderr go to <dir>/log.
 * Sets RING_BUS for this process too. Returns once the control segment has the magic and this
 * child's pid; aborts the test (printing the log) if the broker exits or is not ready in
 * BROKER_FIXTURE_START_TIMEOUT_NS. May be called again after stop/kill (same bus). */
void broker_fixture_start(BrokerFixture *f, const char *const *extra_args);
/* As broker_fixture_init(), on the given bus name. */
void broker_fixture_init_bus(BrokerFixture *f, const char *bus);
/* Forks and execs impulsed as broker_fixture_start() does, but neither waits nor records the
 * child in f: returns its pid (for a second broker on the same bus). */
pid_t broker_fixture_spawn(BrokerFixture *f, const char *const *extra_args);
/* broker_fixture_init() then broker_fixture_start(f, NULL). */
void broker_fixture_init_start(BrokerFixture *f);
/* SIGTERM, then waits up to BROKER_FIXTURE_STOP_TIMEOUT_NS: 0 and the wait status, or
 * -ETIMEDOUT (the broker is then killed with SIGKILL). */
int broker_fixture_stop(BrokerFixture *f, int *ret_status);
/* broker_fixture_stop(), asserting it succeeded and the broker exited 0. */
void broker_fixture_expect_clean_stop(BrokerFixture *f);
/* SIGKILL and reap. */
void broker_fixture_kill(BrokerFixture *f);
/* True if the broker process is still running (reaps it and prints its log if it exited). */
bool broker_fixture_alive(BrokerFixture *f);
/* Kills a running broker, unlinks every segment left on the bus, removes the directory and
 * the guard record. Prints the log tail if something went wrong (or $RING_TEST_VERBOSE). */
void broker_fixture_done(BrokerFixture *f);

/* Prints the last `lines` lines of the broker's log as TAP comments. */
void broker_fixture_print_log(const BrokerFixture *f, unsigned lines);
/* Number of lines of the broker's log above debug level that contain needle (a broker must
 * not let one client flood its log; debug lines are off in production). */
int broker_fixture_log_count(const BrokerFixture *f, const char *needle);
/* Number of /dev/shm files that belong to f's bus; their names, space separated, into buf
 * (may be NULL). */
int broker_fixture_segments(const BrokerFixture *f, char *buf, size_t size);
/* Unlinks every /dev/shm file of the bus; returns how many. */
int broker_fixture_unlink_segments(const BusNames *bus);

/* fork() for helper processes of a test: the child gets SIGKILL when the test process dies
 * (PR_SET_PDEATHSIG), so a failed test leaves no helper behind. Returns as fork(). Children
 * must leave with _exit(). */
pid_t broker_fixture_fork_helper(void);
/* Waits up to timeout_ns for child pid to exit: 0 and its wait status, or -ETIMEDOUT. */
int broker_fixture_wait_pid(pid_t pid, int64_t timeout_ns, int *ret_status);

/* A fresh v1 client registers on f's bus and lists channels, each answered within
 * V1CLIENT_TIMEOUT_NS, and the broker process is still alive. */
void broker_fixture_assert_served(BrokerFixture *f);

/* Asserts that a call returned 0 and a reply of record type `type` with status `want`, and
 * that every non-OK reply carries a non-empty message. Failures name the caller's line. */
#define EXPECT_V1_REPLY(r, reply, type, want) \
        broker_fixture_expect_reply(__FILE__, __LINE__, (r), (reply), (type), (want))
void broker_fixture_expect_reply(const char *file, int line, int r, const V1Reply *reply,
                                 ControlType type, int32_t want);
