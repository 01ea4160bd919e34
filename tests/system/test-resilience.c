/* SPDX-License-Identifier: MIT */
/*
 * libring when peers fail, against the real impulsed, through the public API (ring.h) only. A
 * pending call ends with a clear error, never a hang: when its timeout passes (-ETIMEDOUT),
 * when the service process dies (-ECONNRESET, before the timeout) and when the broker dies
 * (-ENOTCONN). The broker killed with SIGKILL and restarted on the same bus mid-stream: a
 * publisher process keeps sending after a pause, the subscriber gets -ECONNRESET once,
 * re-subscribes with ring_sub_resubscribe() and sees new traffic; a service keeps serving
 * (through ring_conn_run() and through ring_fn_serve()) and the caller's calls succeed again
 * after a few failures.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "broker-fixture.h"
#include "client-util.h"
#include "ring.h"
#include "test-util.h"
#include "time-util.h"

#define SEQ_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Tick\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"}]}"
#define CALL_TIMEOUT_MS 5000
/* How long traffic may take to resume after the broker came back. */
#define RECOVERY_MS 10000
#define BEFORE_RESTART 1000
#define AFTER_RESTART 1000

static BrokerFixture broker;

static const ClientFn add_fn[] = { { "add", CLIENT_FN_ADD, NULL } };

static void setup(void) {
        broker_fixture_init_start(&broker);
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

static ring_rpc *open_add(ring_conn *conn) {
        ring_rpc *rpc = NULL;
        int r;

        r = ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "ring_rpc_open(\"add\"): %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        return rpc;
}

static void expect_sum(ring_rpc *rpc, int64_t a, int64_t b) {
        int64_t sum = 0;
        int r = client_call_add(rpc, a, b, CALL_TIMEOUT_MS, &sum);

        ck_assert_msg(r == 0, "add(%" PRId64 ", %" PRId64 "): %s (%s)", a, b, ring_strerror(r),
                      ring_last_error_message());
        ck_assert_msg(sum == a + b, "add(%" PRId64 ", %" PRId64 ") = %" PRId64, a, b, sum);
}

/* A call in another thread, so that the test can act while it is pending. */
typedef struct PendingCall {
        ring_rpc *rpc;
        int64_t a, b;
        int timeout_ms;
        pthread_t thread;
        _Atomic bool done;
        int result;
        int64_t sum;
        char message[256];
        uint64_t started, ended;
} PendingCall;

static void *pending_call_run(void *arg) {
        PendingCall *c = arg;

        c->started = now_ns(CLOCK_MONOTONIC);
        c->result = client_call_add(c->rpc, c->a, c->b, c->timeout_ms, &c->sum);
        c->ended = now_ns(CLOCK_MONOTONIC);
        snprintf(c->message, sizeof(c->message), "%s", ring_last_error_message());
        atomic_store(&c->done, true);
        return NULL;
}

static void pending_call_start(PendingCall *c, ring_rpc *rpc, int64_t a, int64_t b,
                               int timeout_ms) {
        *c = (PendingCall) { .rpc = rpc, .a = a, .b = b, .timeout_ms = timeout_ms };
        ck_assert_int_eq(pthread_create(&c->thread, NULL, pending_call_run, c), 0);
}

/* Waits up to ms for the call to end (joins it); false if it is still pending. */
static bool pending_call_wait(PendingCall *c, unsigned ms) {
        uint64_t deadline = deadline_after((int64_t) ms * (int64_t) NSEC_PER_MSEC);

        while (!atomic_load(&c->done)) {
                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return false;
                struct timespec ts = timespec_from_ns(NSEC_PER_MSEC);
                nanosleep(&ts, NULL);
        }
        pthread_join(c->thread, NULL);
        return true;
}

static double pending_call_ms(const PendingCall *c) {
        return (double) (c->ended - c->started) / (double) NSEC_PER_MSEC;
}

/* ---- service death ---- */

/* The service's handler kills its own process while the caller waits. */
START_TEST(test_service_dies_in_the_handler) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "resilience-service", add_fn, 1, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("resilience-caller");
        ring_rpc *rpc = open_add(conn);
        int64_t sum;
        uint64_t t0;
        int r, status;

        expect_sum(rpc, 1, 2);
        t0 = now_ns(CLOCK_MONOTONIC);
        r = client_call_add(rpc, CLIENT_A_DIE, 0, CALL_TIMEOUT_MS, &sum);
        printf("# a call whose service died: %s after %.1f ms (\"%s\")\n", ring_strerror(r),
               client_ms_since(t0),
               ring_last_error_message());
        ck_assert_msg(r == -ECONNRESET, "the service died mid-call: %d (%s), expected -ECONNRESET",
                      r,
                      ring_strerror(r));
        ck_assert_msg(client_ms_since(t0) < CALL_TIMEOUT_MS - 500,
                      "the error came only after %.1f ms",
                      client_ms_since(t0));
        ck_assert_int_eq(broker_fixture_wait_pid(svc, CLIENT_EXIT_TIMEOUT_NS, &status), 0);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* Later calls to the dead service fail at once too. */
        t0 = now_ns(CLOCK_MONOTONIC);
        r = client_call_add(rpc, 1, 2, CALL_TIMEOUT_MS, &sum);
        ck_assert_msg(r == -ECONNRESET || r == -ENOENT, "a call to a dead service: %d (%s)", r,
                      ring_strerror(r));
        ck_assert_msg(client_ms_since(t0) < CALL_TIMEOUT_MS - 500,
                      "the error came only after %.1f ms",
                      client_ms_since(t0));
        ring_rpc_close(rpc);
        ring_conn_close(conn);
}
END_TEST

/* The service is killed from outside while its handler holds the request; then a new service
 * process exposes the name again and a fresh ring_rpc reaches it. */
START_TEST(test_service_killed_mid_call) {
        ClientPipes p, p2;
        pid_t svc = client_start_service(&p, "resilience-service", add_fn, 1,
                                         CLIENT_SERVE_RUN), svc2;
        ring_conn *conn;
        ring_rpc *rpc, *fresh;
        PendingCall c;
        int64_t sum;
        char in;
        int r;

        /* The second service is forked now, before this process has threads; it waits for the
         * name to become free. */
        client_pipes_open(&p2);
        svc2 = broker_fixture_fork_helper();
        ck_assert_int_ge(svc2, 0);
        if (svc2 == 0) {
                if (client_wait_byte(p2.down[0], 60000, NULL) < 0)
                        CLIENT_CHILD_FAIL(9, "no go");
                client_service(&p2, "resilience-service-2", add_fn, 1, CLIENT_SERVE_RUN);
        }

        conn = client_open("resilience-caller");
        rpc = open_add(conn);
        expect_sum(rpc, 1, 2);
        pending_call_start(&c, rpc, CLIENT_A_BLOCK, 1, CALL_TIMEOUT_MS);
        ck_assert_int_eq(client_wait_byte(p.up[0], CALL_TIMEOUT_MS, &in), 0);
        ck_assert_int_eq(in, 'B');
        ck_assert_int_eq(kill(svc, SIGKILL), 0);
        ck_assert_msg(pending_call_wait(&c, CALL_TIMEOUT_MS + 2000),
                      "the call is still pending after its timeout");
        printf("# a call whose service was killed: %s after %.1f ms (\"%s\")\n",
               ring_strerror(c.result),
               pending_call_ms(&c), c.message);
        ck_assert_msg(c.result == -ECONNRESET,
                      "the service was killed mid-call: %d (%s), expected -ECONNRESET",
                      c.result, ring_strerror(c.result));
        ck_assert_msg(pending_call_ms(&c) < CALL_TIMEOUT_MS - 500,
                      "the error came only after %.1f ms",
                      pending_call_ms(&c));
        ck_assert_int_eq(broker_fixture_wait_pid(svc, CLIENT_EXIT_TIMEOUT_NS, NULL), 0);

        /* A successor exposes "add" once the broker has reaped the dead one. */
        client_send_byte(p2.down[1], 'G');
        ck_assert_int_eq(client_wait_byte(p2.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        r = ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &fresh);
        ck_assert_msg(r == 0, "ring_rpc_open of the successor: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        expect_sum(fresh, 40, 2);
        /* ring.h promises nothing for the old handle; say what it does. */
        r = client_call_add(rpc, 1, 1, 1000, &sum);
        printf("# the old ring_rpc after the service was replaced: %s\n",
               r < 0 ? ring_strerror(r) : "works");
        ring_rpc_close(fresh);
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc2, "successor service");
}
END_TEST

/* ---- timeouts ---- */

START_TEST(test_call_timeout_passes) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "resilience-service", add_fn, 1, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("resilience-caller");
        ring_rpc *rpc = open_add(conn);
        int64_t sum;
        uint64_t t0;
        int r;

        /* The handler takes 1.5 s; the caller gives it 200 ms. */
        t0 = now_ns(CLOCK_MONOTONIC);
        r = client_call_add(rpc, CLIENT_A_SLOW, 1500, 200, &sum);
        ck_assert_msg(r == -ETIMEDOUT, "a 200 ms call of a 1.5 s handler: %d (%s)", r,
                      ring_strerror(r));
        ck_assert_msg(client_ms_since(t0) >= 190 && client_ms_since(t0) < 1400,
                      "the 200 ms timeout took %.1f ms",
                      client_ms_since(t0));

        /* The late response of the first call is not taken for the next call's. */
        for (int64_t i = 0; i < 20; i++)
                expect_sum(rpc, i, 1000);

        /* Threads whose calls time out and threads whose calls succeed, at once. */
        PendingCall slow[2], quick[2];
        pending_call_start(&slow[0], rpc, CLIENT_A_SLOW, 800, 100);
        pending_call_start(&slow[1], rpc, CLIENT_A_SLOW, 800, 100);
        pending_call_start(&quick[0], rpc, 7, 8, CALL_TIMEOUT_MS);
        pending_call_start(&quick[1], rpc, 9, 10, CALL_TIMEOUT_MS);
        for (unsigned i = 0; i < 2; i++) {
                ck_assert(pending_call_wait(&slow[i], CALL_TIMEOUT_MS));
                ck_assert_msg(slow[i].result == -ETIMEDOUT, "slow call %u: %s", i,
                              ring_strerror(slow[i].result));
                ck_assert_msg(pending_call_ms(&slow[i]) < 1000,
                              "slow call %u with 100 ms took %.1f ms", i,
                              pending_call_ms(&slow[i]));
        }
        for (unsigned i = 0; i < 2; i++) {
                ck_assert(pending_call_wait(&quick[i], CALL_TIMEOUT_MS + 1000));
                ck_assert_msg(quick[i].result == 0, "quick call %u: %s (%s)", i,
                              ring_strerror(quick[i].result),
                              quick[i].message);
                ck_assert_int_eq(quick[i].sum, quick[i].a + quick[i].b);
        }
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* ---- broker death and restart ---- */

/* Calls until one succeeds or RECOVERY_MS pass; the failures on the way must be transitional. */
static void calls_resume(ring_rpc *rpc, const char *who) {
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        uint64_t deadline = deadline_after((int64_t) RECOVERY_MS * (int64_t) NSEC_PER_MSEC);
        unsigned failures = 0;
        int64_t sum = 0;
        int r, last = 0;

        for (;;) {
                r = client_call_add(rpc, 20, 22, 1000, &sum);
                if (r == 0)
                        break;
                ck_assert_msg(r == -ENOTCONN || r == -ECONNRESET || r == -ENOENT || r == -ETIMEDOUT,
                              "%s: a call after the broker restarted: %d (%s: %s)", who, r,
                              ring_strerror(r), ring_last_error_message());
                if (r != last)
                        printf("# %s: a call after the restart: %s\n", who, ring_strerror(r));
                last = r;
                failures++;
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline,
                              "%s: calls did not succeed again within %d ms of the restart "
                              "(last: %s)", who, RECOVERY_MS, ring_strerror(r));
                struct timespec ts = timespec_from_ns(20 * NSEC_PER_MSEC);
                nanosleep(&ts, NULL);
        }
        ck_assert_int_eq(sum, 42);
        printf("# %s: calls succeed again %.1f ms after the restart, after %u failed\n", who,
               client_ms_since(t0),
               failures);
        for (int64_t i = 0; i < 1000; i++)
                expect_sum(rpc, i, -i * 3);
}

/* ring.h has no event for a re-registration: look at the counter until the deadline. */
static bool reconnected_within(ring_conn *conn, unsigned ms) {
        uint64_t deadline = deadline_after((int64_t) ms * (int64_t) NSEC_PER_MSEC);

        while (ring_conn_reconnects(conn) == 0) {
                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return false;
                struct timespec ts = timespec_from_ns(5 * NSEC_PER_MSEC);
                nanosleep(&ts, NULL);
        }
        return true;
}

static void service_survives_restart(ClientServeMode mode) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "resilience-service", add_fn, 1, mode);
        ring_conn *conn = client_open("resilience-caller");
        ring_rpc *rpc = open_add(conn);
        uint64_t id = ring_conn_client_id(conn);
        PendingCall c;
        uint64_t t0;
        int64_t sum;
        char in;
        int r;

        for (int64_t i = 0; i < 100; i++)
                expect_sum(rpc, i, i);

        /* A call pending in the handler when the broker dies ends with -ENOTCONN, at once. */
        pending_call_start(&c, rpc, CLIENT_A_BLOCK, 1, 20000);
        ck_assert_int_eq(client_wait_byte(p.up[0], CALL_TIMEOUT_MS, &in), 0);
        broker_fixture_kill(&broker);
        ck_assert_msg(pending_call_wait(&c, 5000),
                      "a call is still pending 5 s after the broker died");
        printf("# a call pending when the broker died: %s after %.1f ms\n", ring_strerror(c.result),
               pending_call_ms(&c));
        ck_assert_msg(c.result == -ENOTCONN,
                      "the broker died mid-call: %d (%s), expected -ENOTCONN", c.result,
                      ring_strerror(c.result));
        client_send_byte(p.down[1], 'C');

        /* While no broker runs, calls never hang: they end with -ENOTCONN or their timeout, or
         * succeed, since the data plane is peer to peer and both peers still map the ring. */
        t0 = now_ns(CLOCK_MONOTONIC);
        r = client_call_add(rpc, 1, 1, 300, &sum);
        printf("# a call while no broker runs: %s\n", r < 0 ? ring_strerror(r) : "succeeded");
        ck_assert_msg(r == -ENOTCONN || r == -ETIMEDOUT || (r == 0 && sum == 2),
                      "a call without a broker: %d (%s)",
                      r, ring_strerror(r));
        ck_assert_msg(client_ms_since(t0) < 1500, "a 300 ms call without a broker took %.1f ms",
                      client_ms_since(t0));

        /* Calls through the old ring may still work: wait until the caller has re-registered
         * with the new broker, so that the calls below go through the new one. */
        broker_fixture_start(&broker, NULL);
        ck_assert_msg(reconnected_within(conn, RECOVERY_MS),
                      "the caller did not re-register within %d ms",
                      RECOVERY_MS);
        calls_resume(rpc, "caller");
        ck_assert_uint_eq(ring_conn_reconnects(conn), 1);
        ck_assert_uint_ne(ring_conn_client_id(conn), id);
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}

START_TEST(test_run_service_survives_broker_restart) {
        service_survives_restart(CLIENT_SERVE_RUN);
}
END_TEST

START_TEST(test_serve_service_survives_broker_restart) {
        service_survives_restart(CLIENT_SERVE_FN);
}
END_TEST

static volatile sig_atomic_t publisher_stop;

static void publisher_on_term(int sig) {
        (void) sig;
        publisher_stop = 1;
}

/* Sends Tick records as fast as the channel takes them; a failed send is retried with the
 * same seq after a pause. Exits 0 on SIGTERM if it reconnected once, reporting its counts. */
static _Noreturn void publisher(ClientPipes *p) {
        struct sigaction sa = { .sa_handler = publisher_on_term };
        ring_conn *conn = NULL;
        ring_pub *pub = NULL;
        unsigned failures = 0;
        int64_t seq = 0;
        uint8_t buf[16];
        int r, last = 0;

        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        r = ring_conn_open("resilience-publisher", CLIENT_OPEN_TIMEOUT_MS, &conn);
        if (r < 0)
                CLIENT_CHILD_FAIL(2, "ring_conn_open: %s", ring_strerror(r));
        r = ring_pub_open(conn, "ticks", SEQ_SCHEMA, NULL, &pub);
        if (r < 0)
                CLIENT_CHILD_FAIL(3, "ring_pub_open: %s", ring_strerror(r));
        if (write(p->up[1], "R", 1) != 1)
                CLIENT_CHILD_FAIL(4, "write");
        while (!publisher_stop) {
                r = ring_pub_send_raw(pub, buf, client_put_long(buf, seq), 200);
                if (r == 0) {
                        seq++;
                        continue;
                }
                if (r != -ETIMEDOUT && r != -ENOTCONN && r != -ECONNRESET)
                        CLIENT_CHILD_FAIL(5, "send of %" PRId64 ": %s", seq, ring_strerror(r));
                if (r != last)
                        printf("# publisher: a send failed with %s; pausing and going on\n",
                               ring_strerror(r));
                last = r;
                failures++;
                struct timespec ts = timespec_from_ns(10 * NSEC_PER_MSEC);
                nanosleep(&ts, NULL);
        }
        printf("# publisher: sent %" PRId64 " records, %u sends failed, %u reconnect(s)\n", seq,
               failures,
               ring_conn_reconnects(conn));
        if (ring_conn_reconnects(conn) != 1)
                CLIENT_CHILD_FAIL(6, "reconnected %u times", ring_conn_reconnects(conn));
        ring_pub_close(pub);
        ring_conn_close(conn);
        _exit(0);
}

static int64_t tick_seq(const uint8_t *buf, int n) {
        size_t pos = 0;
        int64_t seq = -1;

        ck_assert_msg(n > 0 && client_get_long(buf, (size_t) n, &pos, &seq) && pos == (size_t) n,
                      "a bad record");
        return seq;
}

START_TEST(test_pubsub_survives_broker_restart) {
        ClientPipes p;
        ring_conn *conn;
        ring_sub *sub = NULL;
        uint8_t buf[64];
        int64_t last = -1, seq, drained = 0;
        uint64_t t0;
        pid_t pid;
        int r;

        client_pipes_open(&p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                publisher(&p);
        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        conn = client_open("resilience-subscriber");
        r = ring_sub_open(conn, "ticks", SEQ_SCHEMA, NULL, &sub);
        ck_assert_msg(r == 0, "ring_sub_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());

        for (int64_t i = 0; i < BEFORE_RESTART; i++) {
                r = ring_sub_recv_raw(sub, buf, sizeof(buf), CALL_TIMEOUT_MS);
                ck_assert_msg(r > 0, "record %" PRId64 ": %s", i, ring_strerror(r));
                seq = tick_seq(buf, r);
                ck_assert_msg(seq == last + 1,
                              "record %" PRId64 " has seq %" PRId64 " after %" PRId64, i, seq,
                              last);
                last = seq;
        }

        broker_fixture_kill(&broker);
        broker_fixture_start(&broker, NULL);
        t0 = now_ns(CLOCK_MONOTONIC);

        /* What is left in the old ring first, in order; then -ECONNRESET once. */
        for (;;) {
                r = ring_sub_recv_raw(sub, buf, sizeof(buf), RECOVERY_MS);
                if (r < 0)
                        break;
                seq = tick_seq(buf, r);
                ck_assert_msg(seq == last + 1, "from the old ring: seq %" PRId64 " after %" PRId64,
                              seq, last);
                last = seq;
                drained++;
        }
        ck_assert_msg(r == -ECONNRESET, "after the broker restarted: %d (%s), expected -ECONNRESET",
                      r,
                      ring_strerror(r));
        printf("# -ECONNRESET %.1f ms after the restart, after %" PRId64 " more records from the "
               "old ring\n", client_ms_since(t0), drained);
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 0);
        ck_assert_msg(r == -ENOTCONN, "a receive after -ECONNRESET: %d (%s), expected -ENOTCONN", r,
                      ring_strerror(r));

        r = ring_sub_resubscribe(sub, RECOVERY_MS);
        ck_assert_msg(r == 0, "ring_sub_resubscribe: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        printf("# re-subscribed %.1f ms after the restart\n", client_ms_since(t0));

        /* New traffic: strictly increasing (records in the old ring may be lost, none repeats). */
        for (int64_t i = 0; i < AFTER_RESTART; i++) {
                r = ring_sub_recv_raw(sub, buf, sizeof(buf), RECOVERY_MS);
                ck_assert_msg(r > 0, "record %" PRId64 " after re-subscribing: %s", i,
                              ring_strerror(r));
                seq = tick_seq(buf, r);
                ck_assert_msg(seq > last, "after re-subscribing: seq %" PRId64 " after %" PRId64,
                              seq, last);
                if (i == 0)
                        printf("# first record after re-subscribing: seq %" PRId64
                               " (last before: %" PRId64 ")\n", seq, last);
                else
                        ck_assert_msg(seq == last + 1,
                                      "after re-subscribing: seq %" PRId64 " after %" PRId64, seq,
                                      last);
                last = seq;
        }
        ck_assert_uint_eq(ring_conn_reconnects(conn), 1);
        client_stop_helper(pid, "publisher");
        ring_sub_close(sub);
        ring_conn_close(conn);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-resilience");
        TCase *tc = tcase_create("resilience");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_service_dies_in_the_handler);
        tcase_add_test(tc, test_service_killed_mid_call);
        tcase_add_test(tc, test_call_timeout_passes);
        tcase_add_test(tc, test_run_service_survives_broker_restart);
        tcase_add_test(tc, test_serve_service_survives_broker_restart);
        tcase_add_test(tc, test_pubsub_survives_broker_restart);
        suite_add_tcase(s, tc);
        return s;
}
