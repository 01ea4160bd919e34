/* SPDX-License-Identifier: MIT */
/*
 * libring callers (the public API, ring.h) against a hostile service: a helper process built
 * on the wire core (tests/lib/v1client) that exposes "add" like any service but writes garbage
 * into the caller's reply ring around each real response: bytes that are no frame, frames of
 * no control record, responses for correlation ids nobody waits for (one of them larger than
 * the caller's per-thread reply buffer), and now and then a corrupt ring record, after which it
 * waits until the caller has resynchronised (libring drops what the ring held). Garbage comes
 * before the real response or after it, so that some lingers for the next call. Every call
 * must still get its own sum: one thread, then four threads sharing one ring_rpc, then calls
 * interleaved with asynchronous ones (the reader hands those over to dispatch).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
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
#include "control.h"
#include "frame.h"
#include "futex.h"
#include "ring.h"
#include "ringbuf-layout.h"
#include "ringbuf.h"
#include "segment.h"
#include "test-util.h"
#include "time-util.h"
#include "unaligned.h"
#include "v1client.h"

#define CALLS 2000
#define THREADS 4
#define ASYNC_BATCH 16
#define CALL_TIMEOUT_MS 10000
/* Larger than libring's per-thread reply buffer (64 KiB). */
#define BIG_GARBAGE (70 * 1024)
/* Every this many requests, a corrupt record in the reply ring. */
#define CORRUPT_EVERY 97

static BrokerFixture broker;
static uint64_t seed;

static void setup(void) {
        broker_fixture_init_start(&broker);
        seed = test_seed();
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

/* ---- the hostile service (a forked helper; never asserts, exits non-zero on failure) ---- */

static volatile sig_atomic_t hostile_stop;

static void hostile_on_term(int sig) {
        (void) sig;
        hostile_stop = 1;
}

static int push_response(RingBuf *out, int64_t corr, int64_t result_fp, const void *result, size_t len) {
        ControlMsg m = { .type = CONTROL_RPC_RESPONSE };
        size_t size;
        uint8_t *buf;
        int n;

        m.rpc_response = (ControlRpcResponse) {
                .correlation_id = corr,
                .message = TEXT_NULL,
                .result_fp = result_fp,
                .result = { .ptr = result, .len = len },
        };
        size = control_encoded_size(&m);
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        n = control_encode(&m, buf, size);
        if (n >= 0)
                n = ringbuf_push(out, buf, (size_t) n, (int64_t) NSEC_PER_SEC);
        free(buf);
        return n;
}

/* A record whose length prefix claims more than the ring holds, published as a producer does
 * (under the lock); then waits until the consumer has dropped it. */
static int push_corrupt_record(RingBuf *out) {
        RingShared *s = out->shared;
        uint64_t deadline = deadline_after((int64_t) (5 * NSEC_PER_SEC)), head;
        uint32_t expected = 0;
        uint8_t prefix[4];

        while (!atomic_compare_exchange_strong(&s->prod_lock, &expected, 1)) {
                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return -ETIMEDOUT;
                expected = 0;
        }
        head = atomic_load(&s->head);
        unaligned_write_le32(prefix, UINT32_C(0xFFFFFFF0));
        for (uint32_t i = 0; i < 8; i++)
                out->data[(head + i) & out->mask] = i < 4 ? prefix[i] : 0xAB;
        atomic_store_explicit(&s->head, head + 8, memory_order_release);
        if (atomic_exchange(&s->prod_lock, 0) == 2)
                futex_wake(&s->prod_lock, 1);
        atomic_fetch_add(&s->data_seq, 1);
        futex_wake(&s->data_seq, 1);
        /* A caller waits for the response we have not sent yet, so someone reads: it drops
         * what the ring holds and hands the space back. What we push from then on must not be
         * dropped with it. */
        while ((int64_t) (atomic_load(&s->tail) - (head + 8)) < 0) {
                struct timespec ts = { .tv_nsec = 100000 };

                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return -ETIMEDOUT;
                nanosleep(&ts, NULL);
        }
        return 0;
}

/* Pushes the garbage of request k (correlation id corr). */
static int push_garbage(RingBuf *out, unsigned k, int64_t corr, int64_t result_fp, const uint8_t *big) {
        static const uint8_t junk[] = "garbage";
        uint8_t frame[FRAME_HEADER_SIZE + 3] = { 0 };
        int r = 0;

        switch (k % 5) {
        case 0:
                r = ringbuf_push(out, junk, sizeof(junk) - 1, (int64_t) NSEC_PER_SEC);
                break;
        case 1:
                frame_header_encode(frame, UINT64_C(0x0123456789abcdef), 3);
                r = ringbuf_push(out, frame, sizeof(frame), (int64_t) NSEC_PER_SEC);
                break;
        case 2:
                /* Ids nobody uses: libring's start at 1 and stay far below this. */
                r = push_response(out, corr + 1000000, result_fp, "\x02", 1);
                if (r >= 0)
                        r = push_response(out, -corr, result_fp, "\x04", 1);
                break;
        case 3:
                r = push_response(out, INT64_MAX - (int64_t) k, result_fp, big, BIG_GARBAGE);
                break;
        case 4:
                /* A frame too short to hold a correlation id. */
                frame_header_encode(frame, control_fingerprint(CONTROL_RPC_RESPONSE), 0);
                r = ringbuf_push(out, frame, FRAME_HEADER_SIZE, (int64_t) NSEC_PER_SEC);
                break;
        }
        return r;
}

static _Noreturn void hostile_service(ClientPipes *p) {
        struct sigaction sa = { .sa_handler = hostile_on_term };
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        Segment arena = SEGMENT_NULL, out_seg = SEGMENT_NULL;
        RingBuf in, out;
        char name[NAMES_SEGMENT_MAX];
        uint8_t *req, *big, result[32];
        int64_t result_fp;
        int r;

        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) < 0)
                CLIENT_CHILD_FAIL(2, "sigaction");
        r = v1client_open(&c, NULL, 0);
        if (r >= 0)
                r = v1client_register(&c, "hostile", 0, getpid(), &reply);
        v1client_reply_done(&reply);
        if (r >= 0)
                r = v1client_expose(&c, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, "", 0, &reply);
        if (r < 0 || v1client_reply_status(&reply) != CONTROL_STATUS_OK)
                CLIENT_CHILD_FAIL(3, "register/expose: %d status %d", r, v1client_reply_status(&reply));
        result_fp = reply.msg.expose_reply.resp_fp;
        snprintf(name, sizeof(name), "%.*s", (int) reply.msg.expose_reply.req_arena.len,
                 reply.msg.expose_reply.req_arena.ptr);
        v1client_reply_done(&reply);
        r = segment_open(&arena, name, 1, SIZE_MAX);
        if (r >= 0)
                r = ringbuf_attach_consumer(&in, arena.base, arena.size);
        if (r < 0)
                CLIENT_CHILD_FAIL(4, "request arena %s: %s", name, strerror(-r));
        req = malloc(in.capacity);
        big = calloc(1, BIG_GARBAGE);
        if (!req || !big)
                CLIENT_CHILD_FAIL(4, "malloc");
        if (write(p->up[1], "R", 1) != 1)
                CLIENT_CHILD_FAIL(4, "write ready");

        for (unsigned k = 0; !hostile_stop;) {
                ControlMsg m;
                int n = ringbuf_pop(&in, req, in.capacity);

                if (n == -EAGAIN) {
                        (void) ringbuf_wait(&in, (int64_t) (100 * NSEC_PER_MSEC));
                        continue;
                }
                if (n < 0 || control_decode(req, (size_t) n, &m) < 0 || m.type != CONTROL_RPC_REQUEST)
                        CLIENT_CHILD_FAIL(5, "request %u: %d", k, n);
                /* The caller's reply ring (one caller connection per test). */
                if (m.rpc_request.reply_segment.len >= sizeof(name))
                        CLIENT_CHILD_FAIL(5, "reply segment name too long");
                if (!out_seg.base || !text_eq_cstr(m.rpc_request.reply_segment, out_seg.name)) {
                        snprintf(name, sizeof(name), "%.*s", (int) m.rpc_request.reply_segment.len,
                                 m.rpc_request.reply_segment.ptr);
                        segment_done(&out_seg);
                        r = segment_open(&out_seg, name, 1, SIZE_MAX);
                        if (r >= 0)
                                r = ringbuf_attach_producer(&out, out_seg.base, out_seg.size);
                        if (r < 0)
                                CLIENT_CHILD_FAIL(6, "reply segment %s: %s", name, strerror(-r));
                }
                n = client_add_handler(m.rpc_request.args.ptr, m.rpc_request.args.len, result,
                                       sizeof(result), NULL);
                if (n < 0)
                        CLIENT_CHILD_FAIL(7, "request %u: add: %d", k, n);
                k++;
                r = 0;
                /* Garbage before the response, or after it (left for the next call). */
                if (k % 3 == 0) {
                        if (k % CORRUPT_EVERY == 0)
                                r = push_corrupt_record(&out);
                        if (r >= 0)
                                r = push_response(&out, m.rpc_request.correlation_id, result_fp, result,
                                                  (size_t) n);
                        if (r >= 0)
                                r = push_garbage(&out, k, m.rpc_request.correlation_id, result_fp, big);
                } else {
                        r = push_garbage(&out, k, m.rpc_request.correlation_id, result_fp, big);
                        if (r >= 0 && k % CORRUPT_EVERY == 0)
                                r = push_corrupt_record(&out);
                        if (r >= 0)
                                r = push_response(&out, m.rpc_request.correlation_id, result_fp, result,
                                                  (size_t) n);
                }
                if (r < 0)
                        CLIENT_CHILD_FAIL(8, "request %u: push: %s", k, strerror(-r));
        }
        free(req);
        free(big);
        segment_done(&out_seg);
        segment_done(&arena);
        v1client_close(&c);
        _exit(0);
}

static pid_t start_hostile(ClientPipes *p) {
        pid_t pid;
        int r;

        client_pipes_open(p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                hostile_service(p);
        r = client_wait_byte(p->up[0], CLIENT_READY_TIMEOUT_MS, NULL);
        ck_assert_msg(r == 0, "hostile service not ready: %s", strerror(-r));
        return pid;
}

/* ---- callers ---- */

typedef struct Caller {
        ring_rpc *rpc;
        uint64_t rng;
        unsigned count, done;
        char failure[200];
} Caller;

static void *caller_run(void *arg) {
        Caller *c = arg;

        for (c->done = 0; c->done < c->count; c->done++) {
                int64_t a = (int64_t) (client_rng_next(&c->rng) >> 24);
                int64_t b = (int64_t) (client_rng_next(&c->rng) >> 24), sum = 0;
                int r = client_call_add(c->rpc, a, b, CALL_TIMEOUT_MS, &sum);

                if (r < 0 || sum != a + b) {
                        snprintf(c->failure, sizeof(c->failure), "call %u: add(%" PRId64 ", %" PRId64
                                 ") = %" PRId64 ": %s (%s)", c->done, a, b, sum, ring_strerror(r),
                                 ring_last_error_message());
                        break;
                }
        }
        return NULL;
}

static ring_rpc *open_add(ring_conn *conn) {
        ring_rpc *rpc = NULL;
        int r;

        r = ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "ring_rpc_open: %s (%s)", ring_strerror(r), ring_last_error_message());
        return rpc;
}

START_TEST(test_one_thread_among_garbage) {
        ClientPipes p;
        pid_t svc = start_hostile(&p);
        ring_conn *conn = client_open("hostile-caller");
        Caller c = { .rpc = open_add(conn), .rng = seed, .count = CALLS };

        caller_run(&c);
        ck_assert_msg(c.failure[0] == 0, "%s", c.failure);
        ring_rpc_close(c.rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "hostile service");
}
END_TEST

/* Followers sleep while another thread reads; the reader hands them their replies and the
 * reader role. */
START_TEST(test_four_threads_among_garbage) {
        ClientPipes p;
        pid_t svc = start_hostile(&p);
        ring_conn *conn = client_open("hostile-threads");
        ring_rpc *rpc = open_add(conn);
        Caller c[THREADS];
        pthread_t t[THREADS];

        for (unsigned i = 0; i < THREADS; i++) {
                c[i] = (Caller) { .rpc = rpc, .rng = seed + i * UINT64_C(7919), .count = CALLS / THREADS };
                ck_assert_int_eq(pthread_create(&t[i], NULL, caller_run, &c[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        for (unsigned i = 0; i < THREADS; i++) {
                ck_assert_msg(c[i].failure[0] == 0, "thread %u: %s", i, c[i].failure);
                ck_assert_uint_eq(c[i].done, CALLS / THREADS);
        }
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "hostile service");
}
END_TEST

typedef struct Async {
        int64_t a, b, sum;
        int error;
        unsigned calls;
} Async;

static void on_done(int error, const void *resp, size_t resp_len, const char *message, void *userdata) {
        Async *x = userdata;
        size_t pos = 0;

        (void) message;
        x->calls++;
        x->error = error;
        if (error == 0 && (!client_get_long(resp, resp_len, &pos, &x->sum) || pos != resp_len))
                x->error = -EBADMSG;
}

/* Synchronous calls in two threads while the main thread keeps asynchronous calls in flight
 * and dispatches: a synchronous reader meets async replies and hands them to dispatch, and
 * dispatch meets synchronous replies and hands them to their sleeping threads. */
START_TEST(test_sync_and_async_among_garbage) {
        ClientPipes p;
        pid_t svc = start_hostile(&p);
        ring_conn *conn = client_open("hostile-mixed");
        ring_rpc *rpc = open_add(conn);
        Caller c[2];
        pthread_t t[2];
        uint64_t rng = seed ^ UINT64_C(0xabcdef);
        int fd = ring_conn_fd(conn);

        ck_assert_int_ge(fd, 0);
        for (unsigned i = 0; i < 2; i++) {
                c[i] = (Caller) { .rpc = rpc, .rng = seed + (i + 11) * UINT64_C(7919), .count = CALLS / 4 };
                ck_assert_int_eq(pthread_create(&t[i], NULL, caller_run, &c[i]), 0);
        }
        for (unsigned batch = 0; batch < CALLS / 4 / ASYNC_BATCH; batch++) {
                Async xs[ASYNC_BATCH];
                uint64_t deadline = deadline_after((int64_t) CALL_TIMEOUT_MS * (int64_t) NSEC_PER_MSEC);
                unsigned finished = 0;

                for (unsigned i = 0; i < ASYNC_BATCH; i++) {
                        uint8_t req[20];
                        int r;

                        xs[i] = (Async) { .a = (int64_t) (client_rng_next(&rng) >> 24),
                                          .b = (int64_t) (client_rng_next(&rng) >> 24) };
                        r = ring_rpc_call_async(rpc, req, client_encode_add(req, xs[i].a, xs[i].b),
                                                CALL_TIMEOUT_MS, on_done, &xs[i]);
                        ck_assert_msg(r == 0, "ring_rpc_call_async: %s", ring_strerror(r));
                }
                while (finished < ASYNC_BATCH) {
                        struct pollfd pfd = { .fd = fd, .events = POLLIN };

                        ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline,
                                      "batch %u: %u of %d async calls completed", batch, finished,
                                      ASYNC_BATCH);
                        (void) poll(&pfd, 1, 100);
                        ck_assert_int_ge(ring_conn_dispatch(conn), 0);
                        finished = 0;
                        for (unsigned i = 0; i < ASYNC_BATCH; i++)
                                finished += xs[i].calls > 0;
                }
                for (unsigned i = 0; i < ASYNC_BATCH; i++) {
                        ck_assert_uint_eq(xs[i].calls, 1);
                        ck_assert_msg(xs[i].error == 0, "batch %u call %u: %s", batch, i,
                                      ring_strerror(xs[i].error));
                        ck_assert_int_eq(xs[i].sum, xs[i].a + xs[i].b);
                }
        }
        for (unsigned i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
        for (unsigned i = 0; i < 2; i++) {
                ck_assert_msg(c[i].failure[0] == 0, "thread %u: %s", i, c[i].failure);
                ck_assert_uint_eq(c[i].done, CALLS / 4);
        }
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "hostile service");
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-rpc-hostile");
        TCase *tc = tcase_create("hostile");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_one_thread_among_garbage);
        tcase_add_test(tc, test_four_threads_among_garbage);
        tcase_add_test(tc, test_sync_and_async_among_garbage);
        suite_add_tcase(s, tc);
        return s;
}
