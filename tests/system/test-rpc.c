/* SPDX-License-Identifier: MIT */
/*
 * libring RPC against the real impulsed, through the public API (ring.h) only: 10,000 calls
 * from one thread and 10,000 from four threads sharing one ring_rpc, all with correct results;
 * calls from several processes at once; avro-c values on both sides; a service served by
 * ring_fn_serve() as well as ring_conn_run(); empty requests and responses larger than the
 * per-thread scratch buffer. Services run in helper processes (tests/lib/client-util.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avro.h>
#include <check.h>

#include "broker-fixture.h"
#include "client-util.h"
#include "ring.h"
#include "test-util.h"
#include "time-util.h"

#define CALL_COUNT 10000
#define THREADS 4
#define PROCESSES 4
#define PROCESS_CALLS 1000
#define VALUE_CALLS 2000
#define CALL_TIMEOUT_MS 5000

static BrokerFixture broker;
static uint64_t seed;

static const ClientFn service_fns[] = {
        { "add", CLIENT_FN_ADD, NULL },
        { "add-value", CLIENT_FN_ADD_VALUE, NULL },
        { "echo", CLIENT_FN_ECHO, NULL },
        { "ping", CLIENT_FN_PING, NULL },
};

static void setup(void) {
        broker_fixture_init_start(&broker);
        seed = test_seed();
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

/* Operands well away from the CLIENT_A_* specials and from overflow. */
static int64_t operand(uint64_t *state) {
        return (int64_t) (client_rng_next(state) % (UINT64_C(1) << 40));
}

static ring_rpc *open_add(ring_conn *conn, const char *name) {
        ring_rpc *rpc = NULL;
        int r;

        r = ring_rpc_open(conn, name, CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "ring_rpc_open(\"%s\"): %s (%s)", name, ring_strerror(r),
                      ring_last_error_message());
        return rpc;
}

/* count calls of add with operands from stream; the first wrong outcome, or 0. */
typedef struct Caller {
        ring_rpc *rpc;
        uint64_t rng;
        unsigned count;
        unsigned done;
        char failure[200];
} Caller;

static void *caller_run(void *arg) {
        Caller *c = arg;

        for (c->done = 0; c->done < c->count; c->done++) {
                int64_t a = operand(&c->rng), b = operand(&c->rng), sum = 0;
                int r = client_call_add(c->rpc, a, b, CALL_TIMEOUT_MS, &sum);

                if (r < 0) {
                        snprintf(c->failure, sizeof(c->failure),
                                 "call %u: add(%" PRId64 ", %" PRId64 "): %s (%s)",
                                 c->done, a, b, ring_strerror(r), ring_last_error_message());
                        break;
                }
                if (sum != a + b) {
                        snprintf(c->failure, sizeof(c->failure),
                                 "call %u: add(%" PRId64 ", %" PRId64 ") = %" PRId64,
                                 c->done, a, b, sum);
                        break;
                }
        }
        return NULL;
}

START_TEST(test_10k_calls) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "rpc-service", service_fns, 4, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("rpc-caller");
        Caller c = { .rpc = open_add(conn, "add"), .rng = seed, .count = CALL_COUNT };
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);

        caller_run(&c);
        ck_assert_msg(c.failure[0] == 0, "%s", c.failure);
        ck_assert_uint_eq(c.done, CALL_COUNT);
        printf("# %d calls in %.1f ms\n", CALL_COUNT, client_ms_since(t0));
        ring_rpc_close(c.rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* Four threads share one ring_rpc (ring.h: many calls may be in flight on one ring_rpc). */
START_TEST(test_10k_calls_from_4_threads) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "rpc-service", service_fns, 4, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("rpc-threads");
        ring_rpc *rpc = open_add(conn, "add");
        Caller c[THREADS];
        pthread_t t[THREADS];
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);

        for (unsigned i = 0; i < THREADS; i++) {
                c[i] = (Caller) { .rpc = rpc, .rng = seed + i * UINT64_C(7919),
                                 .count = CALL_COUNT / THREADS };
                ck_assert_int_eq(pthread_create(&t[i], NULL, caller_run, &c[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        for (unsigned i = 0; i < THREADS; i++) {
                ck_assert_msg(c[i].failure[0] == 0, "thread %u: %s", i, c[i].failure);
                ck_assert_uint_eq(c[i].done, CALL_COUNT / THREADS);
        }
        printf("# %d calls from %d threads in %.1f ms\n", CALL_COUNT, THREADS, client_ms_since(t0));
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* Callers in four processes at once, each with its own connection. */
START_TEST(test_calls_from_4_processes) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "rpc-service", service_fns, 4, CLIENT_SERVE_RUN);
        pid_t callers[PROCESSES];

        for (unsigned i = 0; i < PROCESSES; i++) {
                callers[i] = broker_fixture_fork_helper();
                ck_assert_int_ge(callers[i], 0);
                if (callers[i] == 0) {
                        ring_conn *conn = NULL;
                        ring_rpc *rpc = NULL;
                        int r;

                        r = ring_conn_open("rpc-process", CLIENT_OPEN_TIMEOUT_MS, &conn);
                        if (r >= 0)
                                r = ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA,
                                                  CLIENT_ADD_RESP_SCHEMA, NULL,
                                                  &rpc);
                        if (r < 0)
                                CLIENT_CHILD_FAIL(2, "open: %s", ring_strerror(r));
                        Caller c = { .rpc = rpc, .rng = seed ^ (i + 1), .count = PROCESS_CALLS };
                        caller_run(&c);
                        if (c.failure[0])
                                CLIENT_CHILD_FAIL(3, "%s", c.failure);
                        ring_rpc_close(rpc);
                        ring_conn_close(conn);
                        _exit(0);
                }
        }
        for (unsigned i = 0; i < PROCESSES; i++)
                client_expect_exit_ok(callers[i], "caller process");
        client_stop_helper(svc, "service");
}
END_TEST

/* ring_rpc_call with avro-c values against a ring_fn_expose_value handler, and against the raw
 * handler: the same results both ways. */
START_TEST(test_value_calls) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "rpc-service", service_fns, 4, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("rpc-values");
        ring_rpc *rpcs[2] = { open_add(conn, "add-value"), open_add(conn, "add") };
        uint64_t rng = seed;

        for (unsigned k = 0; k < 2; k++) {
                avro_value_t req, resp, f;

                ck_assert_int_eq(ring_rpc_new_request(rpcs[k], &req), 0);
                ck_assert_int_eq(ring_rpc_new_response(rpcs[k], &resp), 0);
                for (unsigned i = 0; i < VALUE_CALLS / 2; i++) {
                        int64_t a = operand(&rng), b = operand(&rng), sum = 0;
                        int r;

                        avro_value_get_by_name(&req, "a", &f, NULL);
                        avro_value_set_long(&f, a);
                        avro_value_get_by_name(&req, "b", &f, NULL);
                        avro_value_set_long(&f, b);
                        r = ring_rpc_call(rpcs[k], &req, &resp, CALL_TIMEOUT_MS);
                        ck_assert_msg(r == 0, "call %u: %s (%s)", i, ring_strerror(r),
                                      ring_last_error_message());
                        avro_value_get_by_name(&resp, "sum", &f, NULL);
                        avro_value_get_long(&f, &sum);
                        ck_assert_msg(sum == a + b, "add(%" PRId64 ", %" PRId64 ") = %" PRId64, a,
                                      b, sum);
                }
                avro_value_decref(&req);
                avro_value_decref(&resp);
        }
        ring_rpc_close(rpcs[0]);
        ring_rpc_close(rpcs[1]);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* A service thread in ring_fn_serve() (the dedicated-thread path) answers like ring_conn_run(). */
START_TEST(test_fn_serve) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "rpc-serve", service_fns, 1, CLIENT_SERVE_FN);
        ring_conn *conn = client_open("rpc-serve-caller");
        Caller c = { .rpc = open_add(conn, "add"), .rng = seed, .count = 2000 };

        caller_run(&c);
        ck_assert_msg(c.failure[0] == 0, "%s", c.failure);
        ring_rpc_close(c.rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* Zero-byte requests, and responses from 0 bytes to well past 64 KiB. */
START_TEST(test_empty_and_large_payloads) {
        static const size_t sizes[] = { 0, 1, 127, 128, 4096, 65535, 65536, 70000, 300000 };
        ClientPipes p;
        pid_t svc = client_start_service(&p, "rpc-service", service_fns, 4, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("rpc-payloads");
        ring_rpc *ping = NULL, *echo = NULL;
        uint8_t *req, *resp;
        char pong[8];
        int r;

        r = ring_rpc_open(conn, "ping", CLIENT_EMPTY_SCHEMA, CLIENT_STRING_SCHEMA, NULL, &ping);
        ck_assert_msg(r == 0, "ring_rpc_open(ping): %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        for (unsigned i = 0; i < 100; i++) {
                r = ring_rpc_call_raw(ping, NULL, 0, pong, sizeof(pong), CALL_TIMEOUT_MS);
                ck_assert_msg(r == 5, "ping: %d (%s)", r, r < 0 ? ring_strerror(r) : "");
                ck_assert(memcmp(pong, "\x08pong", 5) == 0);
        }

        r = ring_rpc_open(conn, "echo", CLIENT_BLOB_SCHEMA, CLIENT_BLOB_SCHEMA, NULL, &echo);
        ck_assert_msg(r == 0, "ring_rpc_open(echo): %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        req = malloc(300016);
        resp = malloc(300016);
        ck_assert(req && resp);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
                size_t n = client_put_long(req, (int64_t) sizes[k]);

                for (size_t i = 0; i < sizes[k]; i++)
                        req[n + i] = (uint8_t) (i * 13 + k + seed);
                n += sizes[k];
                memset(resp, 0, n);
                r = ring_rpc_call_raw(echo, req, n, resp, 300016, CALL_TIMEOUT_MS);
                ck_assert_msg(r == (int) n, "echo of %zu bytes: %d (%s) %s", sizes[k], r,
                              r < 0 ? ring_strerror(r) : "",
                              ring_last_error_message());
                ck_assert_msg(memcmp(req, resp, n) == 0, "echo of %zu bytes came back different",
                              sizes[k]);
        }
        free(req);
        free(resp);
        ring_rpc_close(ping);
        ring_rpc_close(echo);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-rpc");
        TCase *tc = tcase_create("rpc");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_10k_calls);
        tcase_add_test(tc, test_10k_calls_from_4_threads);
        tcase_add_test(tc, test_calls_from_4_processes);
        tcase_add_test(tc, test_value_calls);
        tcase_add_test(tc, test_fn_serve);
        tcase_add_test(tc, test_empty_and_large_payloads);
        suite_add_tcase(s, tc);
        return s;
}
