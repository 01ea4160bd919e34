/* SPDX-License-Identifier: MIT */
/*
 * libring's event-loop integration against the real impulsed, through the public API (ring.h)
 * only: ring_conn_fd() becomes readable (seen by poll(2) with a timeout) when an exposed
 * function gets a request, when an asynchronous call completes, fails or times out, and when a
 * subscription with a callback gets messages; ring_conn_dispatch() then runs the handler,
 * completion or callback in the calling thread. ring_conn_run() stops on ring_conn_stop() from
 * another thread or a handler. Objects may be exposed, closed and given callbacks between
 * dispatches. After a broker restart, an async call fails with -ENOTCONN and a callback
 * subscription resumes after ring_sub_resubscribe().
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
#include "ring.h"
#include "test-util.h"
#include "time-util.h"

#define SEQ_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Tick\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"}]}"
#define CALLS 50
#define ASYNC_CALLS 100
#define TICKS 5000
#define READABLE_MS 5000
#define CALL_TIMEOUT_MS 5000
/* An operation that must not block: how long it may take before the test calls it a hang. */
#define HANG_MS 5000

static BrokerFixture broker;

static const ClientFn add_fn[] = { { "add", CLIENT_FN_ADD, NULL } };

static void setup(void) {
        broker_fixture_init_start(&broker);
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

static bool readable(int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int n;

        do
                n = poll(&p, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        return n == 1 && (p.revents & POLLIN);
}

/* ---- a function served from poll() ---- */

static _Atomic unsigned served;
static _Atomic bool dispatching;
static _Atomic bool handler_outside_dispatch;

static int counting_add(const void *req, size_t len, void *resp, size_t size, void *userdata) {
        if (!atomic_load(&dispatching))
                atomic_store(&handler_outside_dispatch, true);
        atomic_fetch_add(&served, 1);
        return client_add_handler(req, len, resp, size, userdata);
}

static int dispatch(ring_conn *conn) {
        int n;

        atomic_store(&dispatching, true);
        n = ring_conn_dispatch(conn);
        atomic_store(&dispatching, false);
        ck_assert_msg(n >= 0, "ring_conn_dispatch: %s", ring_strerror(n));
        return n;
}

/* A caller process: waits for 'G', then makes count calls of "add" and checks them. */
static pid_t fork_caller(ClientPipes *p, unsigned count) {
        pid_t pid;

        client_pipes_open(p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid > 0)
                return pid;
        ring_conn *conn = NULL;
        ring_rpc *rpc = NULL;
        int r;

        if (client_wait_byte(p->down[0], 30000, NULL) < 0)
                CLIENT_CHILD_FAIL(2, "no go");
        r = ring_conn_open("eventloop-caller", CLIENT_OPEN_TIMEOUT_MS, &conn);
        if (r >= 0)
                r = ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL,
                                  &rpc);
        if (r < 0)
                CLIENT_CHILD_FAIL(3, "open: %s (%s)", ring_strerror(r), ring_last_error_message());
        for (unsigned i = 0; i < count; i++) {
                int64_t sum = 0;

                r = client_call_add(rpc, i, 100, CALL_TIMEOUT_MS, &sum);
                if (r < 0 || sum != (int64_t) i + 100)
                        CLIENT_CHILD_FAIL(4, "call %u: %s, sum %" PRId64, i, ring_strerror(r), sum);
        }
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        _exit(0);
}

START_TEST(test_fd_readable_on_request) {
        ClientPipes p;
        pid_t caller = fork_caller(&p, CALLS);
        ring_conn *conn = client_open("eventloop-service");
        ring_fn *fn = NULL;
        unsigned wakeups = 0;
        int fd, r;

        r = ring_fn_expose(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL,
                           counting_add, NULL, &fn);
        ck_assert_msg(r == 0, "ring_fn_expose: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        fd = ring_conn_fd(conn);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ring_conn_fd(conn), fd);
        ck_assert_int_eq(dispatch(conn), 0);
        ck_assert_msg(!readable(fd, 100), "ring_conn_fd() is readable with no work");

        client_send_byte(p.down[1], 'G');
        while (atomic_load(&served) < CALLS) {
                ck_assert_msg(readable(fd, READABLE_MS),
                              "ring_conn_fd() not readable %d ms after request %u",
                              READABLE_MS, atomic_load(&served));
                wakeups++;
                dispatch(conn);
        }
        client_expect_exit_ok(caller, "caller");
        ck_assert_msg(!atomic_load(&handler_outside_dispatch),
                      "a handler ran outside ring_conn_dispatch()");
        printf("# %d requests served in %u wake-ups\n", CALLS, wakeups);
        ck_assert_int_eq(dispatch(conn), 0);
        ck_assert_msg(!readable(fd, 100), "ring_conn_fd() is readable after all work was done");
        ring_conn_close(conn);
}
END_TEST

/* ---- asynchronous calls ---- */

typedef struct Completion {
        int64_t a, b;
        unsigned calls;
        int error;
        int64_t sum;
        bool had_message;
        char message[200];
        uint64_t when;
} Completion;

static _Atomic bool completion_outside_dispatch;

static void on_done(int error, const void *resp, size_t resp_len, const char *message,
                    void *userdata) {
        Completion *c = userdata;
        size_t pos = 0;

        if (!atomic_load(&dispatching))
                atomic_store(&completion_outside_dispatch, true);
        c->calls++;
        c->error = error;
        c->when = now_ns(CLOCK_MONOTONIC);
        c->had_message = message != NULL;
        snprintf(c->message, sizeof(c->message), "%s", message ?: "");
        if (error == 0 && (!client_get_long(resp, resp_len, &pos, &c->sum) || pos != resp_len))
                c->error = -EBADMSG;
}

static int start_async(ring_rpc *rpc, Completion *c, int64_t a, int64_t b, int timeout_ms) {
        uint8_t req[20];

        *c = (Completion) { .a = a, .b = b };
        return ring_rpc_call_async(rpc, req, client_encode_add(req, a, b), timeout_ms, on_done, c);
}

/* Polls and dispatches until every completion in cs ran once, or timeout_ms pass. */
static bool complete_all(ring_conn *conn, Completion *cs, size_t n, unsigned timeout_ms) {
        uint64_t deadline = deadline_after((int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        int fd = ring_conn_fd(conn);

        for (;;) {
                size_t done = 0;

                for (size_t i = 0; i < n; i++)
                        done += cs[i].calls > 0;
                if (done == n)
                        return true;
                uint64_t now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return false;
                if (readable(fd, (int) ((deadline - now) / NSEC_PER_MSEC) + 1))
                        dispatch(conn);
        }
}

START_TEST(test_async_calls_complete_through_dispatch) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "eventloop-service", add_fn, 1, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("eventloop-async");
        ring_rpc *rpc = NULL;
        Completion cs[ASYNC_CALLS], slow, fail;
        uint64_t t0;
        int r, fd;

        r = ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "ring_rpc_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        fd = ring_conn_fd(conn);
        ck_assert_int_ge(fd, 0);

        /* Many in flight at once; each completes once, from dispatch, with its own result. */
        for (unsigned i = 0; i < ASYNC_CALLS; i++) {
                r = start_async(rpc, &cs[i], i, 1000 * i, CALL_TIMEOUT_MS);
                ck_assert_msg(r == 0, "ring_rpc_call_async %u: %s", i, ring_strerror(r));
        }
        ck_assert_msg(readable(fd, READABLE_MS), "ring_conn_fd() not readable after %d async calls",
                      ASYNC_CALLS);
        ck_assert_msg(complete_all(conn, cs, ASYNC_CALLS, 10000),
                      "async calls did not complete in 10 s");
        for (unsigned i = 0; i < ASYNC_CALLS; i++) {
                ck_assert_msg(cs[i].error == 0, "async call %u: %s (%s)", i,
                              ring_strerror(cs[i].error), cs[i].message);
                ck_assert_int_eq(cs[i].sum, cs[i].a + cs[i].b);
                ck_assert_uint_eq(cs[i].calls, 1);
        }

        /* A handler's failure reaches the completion with its message. */
        ck_assert_int_eq(start_async(rpc, &fail, CLIENT_A_FAIL, 0, CALL_TIMEOUT_MS), 0);
        ck_assert(complete_all(conn, &fail, 1, 10000));
        ck_assert_msg(fail.error == -EREMOTEIO, "a failing handler: %d (%s)", fail.error,
                      ring_strerror(fail.error));
        ck_assert_msg(fail.had_message && fail.message[0], "a failed async call without a message");

        /* The deadline passes: the descriptor wakes the loop for it, -ETIMEDOUT, once. */
        t0 = now_ns(CLOCK_MONOTONIC);
        ck_assert_int_eq(start_async(rpc, &slow, CLIENT_A_SLOW, 800, 100), 0);
        ck_assert(complete_all(conn, &slow, 1, 5000));
        double took = (double) (slow.when - t0) / 1e6;
        printf("# an async call with a 100 ms timeout completed after %.1f ms: %s\n", took,
               ring_strerror(slow.error));
        ck_assert_msg(slow.error == -ETIMEDOUT, "a 100 ms async call of an 800 ms handler: %d (%s)",
                      slow.error,
                      ring_strerror(slow.error));
        ck_assert_msg(took >= 95 && took < 1500, "the 100 ms async timeout fired after %.1f ms",
                      took);
        /* The late response (after 800 ms) does not complete it again. */
        uint64_t until = deadline_after((int64_t) 1200 * (int64_t) NSEC_PER_MSEC);
        while (now_ns(CLOCK_MONOTONIC) < until)
                if (readable(fd, 100))
                        dispatch(conn);
        ck_assert_uint_eq(slow.calls, 1);

        /* A call after all that is fine. */
        ck_assert_int_eq(start_async(rpc, &cs[0], 2, 3, CALL_TIMEOUT_MS), 0);
        ck_assert(complete_all(conn, cs, 1, 5000));
        ck_assert_int_eq(cs[0].error, 0);
        ck_assert_int_eq(cs[0].sum, 5);
        ck_assert_msg(!atomic_load(&completion_outside_dispatch),
                      "a completion ran outside ring_conn_dispatch()");
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* The service process is killed while an async call waits in its handler: -ECONNRESET through
 * dispatch, before the timeout. */
START_TEST(test_async_call_service_killed) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "eventloop-service", add_fn, 1, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("eventloop-async");
        ring_rpc *rpc = NULL;
        Completion c;
        uint64_t t0;
        char in;

        ck_assert_int_eq(ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                       NULL, &rpc), 0);
        ck_assert_int_ge(ring_conn_fd(conn), 0);
        ck_assert_int_eq(start_async(rpc, &c, CLIENT_A_BLOCK, 0, 10000), 0);
        ck_assert_int_eq(client_wait_byte(p.up[0], CALL_TIMEOUT_MS, &in), 0);
        t0 = now_ns(CLOCK_MONOTONIC);
        ck_assert_int_eq(kill(svc, SIGKILL), 0);
        ck_assert_msg(complete_all(conn, &c, 1, 9000),
                      "the async call did not complete 9 s after its service died");
        printf("# async call whose service was killed: %s after %.1f ms\n", ring_strerror(c.error),
               (double) (c.when - t0) / 1e6);
        ck_assert_msg(c.error == -ECONNRESET, "service killed: %d (%s)", c.error,
                      ring_strerror(c.error));
        ck_assert_int_eq(broker_fixture_wait_pid(svc, CLIENT_EXIT_TIMEOUT_NS, NULL), 0);
        ring_rpc_close(rpc);
        ring_conn_close(conn);
}
END_TEST

/* ---- subscriptions with a callback ---- */

typedef struct Ticks {
        ring_sub *sub;
        int64_t next;           /* the seq expected next; -1: any */
        int64_t count;
        char failure[160];
} Ticks;

static void on_tick(ring_sub *sub, const void *bytes, size_t len, void *userdata) {
        Ticks *t = userdata;
        size_t pos = 0;
        int64_t seq;

        if (!atomic_load(&dispatching) && !t->failure[0])
                snprintf(t->failure, sizeof(t->failure),
                         "a callback ran outside ring_conn_dispatch()");
        if (sub != t->sub && !t->failure[0])
                snprintf(t->failure, sizeof(t->failure), "the callback got another ring_sub");
        if (!client_get_long(bytes, len, &pos, &seq) || pos != len) {
                snprintf(t->failure, sizeof(t->failure), "undecodable message of %zu bytes", len);
                return;
        }
        if (t->next >= 0 && seq != t->next && !t->failure[0])
                snprintf(t->failure, sizeof(t->failure), "seq %" PRId64 ", expected %" PRId64, seq,
                         t->next);
        t->next = seq + 1;
        t->count++;
}

/* A publisher process of "ticks": 'R' when published; for each 'G' it gets, sends n records
 * (continuing the sequence); leaves on EOF or 'D'. With n = 0 it sends without pause until
 * SIGTERM, retrying failed sends, and exits 0 if it reconnected once. */
static volatile sig_atomic_t ticker_stop;

static void ticker_on_term(int sig) {
        (void) sig;
        ticker_stop = 1;
}

static pid_t fork_ticker(ClientPipes *p, int64_t n) {
        struct sigaction sa = { .sa_handler = ticker_on_term };
        pid_t pid;

        client_pipes_open(p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid > 0)
                return pid;
        ring_conn *conn = NULL;
        ring_pub *pub = NULL;
        int64_t seq = 0;
        uint8_t buf[16];
        char c;
        int r;

        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        r = ring_conn_open("eventloop-ticker", CLIENT_OPEN_TIMEOUT_MS, &conn);
        if (r >= 0)
                r = ring_pub_open(conn, "ticks", SEQ_SCHEMA, NULL, &pub);
        if (r < 0)
                CLIENT_CHILD_FAIL(2, "publish: %s", ring_strerror(r));
        if (write(p->up[1], "R", 1) != 1)
                CLIENT_CHILD_FAIL(3, "write");
        if (n == 0) {
                while (!ticker_stop) {
                        r = ring_pub_send_raw(pub, buf, client_put_long(buf, seq), 200);
                        if (r == 0) {
                                seq++;
                                continue;
                        }
                        if (r != -ETIMEDOUT && r != -ENOTCONN && r != -ECONNRESET)
                                CLIENT_CHILD_FAIL(4, "send: %s", ring_strerror(r));
                        struct timespec ts = timespec_from_ns(10 * NSEC_PER_MSEC);
                        nanosleep(&ts, NULL);
                }
                if (ring_conn_reconnects(conn) != 1)
                        CLIENT_CHILD_FAIL(5, "reconnected %u times", ring_conn_reconnects(conn));
        } else
                while (client_wait_byte(p->down[0], 60000, &c) == 0 && c == 'G')
                        for (int64_t i = 0; i < n; i++, seq++) {
                                r = ring_pub_send_raw(pub, buf, client_put_long(buf, seq),
                                                      CALL_TIMEOUT_MS);
                                if (r < 0)
                                        CLIENT_CHILD_FAIL(4, "send %" PRId64 ": %s", seq,
                                                          ring_strerror(r));
                        }
        ring_conn_close(conn);
        _exit(0);
}

static void dispatch_until(ring_conn *conn, Ticks *t, int64_t count, unsigned timeout_ms) {
        uint64_t deadline = deadline_after((int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        int fd = ring_conn_fd(conn);

        while (t->count < count) {
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline,
                              "%" PRId64 " of %" PRId64 " messages in %u ms",
                              t->count, count, timeout_ms);
                ck_assert_msg(readable(fd, READABLE_MS),
                              "ring_conn_fd() not readable after %" PRId64 " messages",
                              t->count);
                dispatch(conn);
                ck_assert_msg(!t->failure[0], "%s", t->failure);
        }
}

START_TEST(test_sub_callback) {
        ClientPipes p;
        pid_t pub = fork_ticker(&p, TICKS);
        ring_conn *conn;
        ring_sub *sub = NULL;
        Ticks t = { .next = 0 };
        int r, fd;

        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        conn = client_open("eventloop-sub");
        r = ring_sub_open(conn, "ticks", SEQ_SCHEMA, NULL, &sub);
        ck_assert_msg(r == 0, "ring_sub_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        t.sub = sub;
        /* As libring(3)'s example: the callback first, then the descriptor. */
        ck_assert_int_eq(ring_sub_set_callback(sub, on_tick, &t), 0);
        fd = ring_conn_fd(conn);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(dispatch(conn), 0);
        ck_assert(!readable(fd, 100));

        client_send_byte(p.down[1], 'G');
        dispatch_until(conn, &t, TICKS, 20000);
        ck_assert_int_eq(t.count, TICKS);
        ck_assert_int_eq(dispatch(conn), 0);
        ck_assert_int_eq(t.count, TICKS);
        ck_assert(!readable(fd, 100));
        /* A second burst after the loop went idle. */
        client_send_byte(p.down[1], 'G');
        dispatch_until(conn, &t, 2 * TICKS, 20000);
        ck_assert_int_eq(t.count, 2 * TICKS);
        client_send_byte(p.down[1], 'D');
        client_expect_exit_ok(pub, "publisher");
        ring_conn_close(conn);
}
END_TEST

/* ---- ring_conn_run() and ring_conn_stop() ---- */

typedef struct Runner {
        ring_conn *conn;
        pthread_t thread;
        _Atomic bool done;
        int result;
} Runner;

static void *runner_run(void *arg) {
        Runner *r = arg;

        r->result = ring_conn_run(r->conn);
        atomic_store(&r->done, true);
        return NULL;
}

static bool flag_within(_Atomic bool *flag, unsigned ms) {
        uint64_t deadline = deadline_after((int64_t) ms * (int64_t) NSEC_PER_MSEC);

        while (!atomic_load(flag)) {
                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return false;
                struct timespec ts = timespec_from_ns(NSEC_PER_MSEC);
                nanosleep(&ts, NULL);
        }
        return true;
}

static ring_conn *stopper_conn;

static int stopping_add(const void *req, size_t len, void *resp, size_t size, void *userdata) {
        ring_conn_stop(stopper_conn);
        return client_add_handler(req, len, resp, size, userdata);
}

START_TEST(test_run_and_stop) {
        ClientPipes p;
        pid_t caller = fork_caller(&p, 1);
        ring_conn *conn = client_open("eventloop-run");
        ring_fn *fn = NULL;
        Runner run = { .conn = conn };

        stopper_conn = conn;
        ck_assert_int_eq(ring_fn_expose(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                        NULL,
                                        stopping_add, NULL, &fn), 0);

        /* A stop requested while nothing runs is remembered: run() returns at once. */
        ring_conn_stop(conn);
        ck_assert_int_eq(ring_conn_run(conn), 0);

        /* Stopped from another thread while it sleeps. */
        ck_assert_int_eq(pthread_create(&run.thread, NULL, runner_run, &run), 0);
        ck_assert_msg(!flag_within(&run.done, 100), "ring_conn_run() returned %d without a stop",
                      run.result);
        ring_conn_stop(conn);
        ck_assert_msg(flag_within(&run.done, 1000),
                      "ring_conn_run() still runs 1 s after ring_conn_stop()");
        pthread_join(run.thread, NULL);
        ck_assert_int_eq(run.result, 0);

        /* Stopped by a handler it runs: it returns after that dispatch, and the caller has its
         * answer. */
        client_send_byte(p.down[1], 'G');
        run = (Runner) { .conn = conn };
        ck_assert_int_eq(pthread_create(&run.thread, NULL, runner_run, &run), 0);
        ck_assert_msg(flag_within(&run.done, 10000),
                      "ring_conn_run() still runs 10 s after a handler stopped it");
        pthread_join(run.thread, NULL);
        ck_assert_int_eq(run.result, 0);
        client_expect_exit_ok(caller, "caller");
        ring_conn_close(conn);
}
END_TEST

/* ---- changing the set of objects between dispatches (not from handlers) ---- */

typedef struct Op {
        void (*fn)(void *arg);
        void *arg;
        _Atomic bool done;
} Op;

static void *op_run(void *arg) {
        Op *o = arg;

        o->fn(o->arg);
        atomic_store(&o->done, true);
        return NULL;
}

/* Runs fn(arg) in a thread; fails the test if it has not returned within HANG_MS. */
static void must_return(const char *what, void (*fn)(void *), void *arg) {
        static Op op;
        pthread_t thread;
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);

        op = (Op) { .fn = fn, .arg = arg };
        ck_assert_int_eq(pthread_create(&thread, NULL, op_run, &op), 0);
        ck_assert_msg(flag_within(&op.done, HANG_MS),
                      "%s, called between dispatches, still blocks after %d ms", what,
                      HANG_MS);
        pthread_join(thread, NULL);
        if (client_ms_since(t0) > 100)
                printf("# %s took %.1f ms\n", what, client_ms_since(t0));
}

static void do_fn_close(void *arg) {
        ring_fn_close(arg);
}

static void do_sub_close(void *arg) {
        ring_sub_close(arg);
}

typedef struct ExposeArgs {
        ring_conn *conn;
        ring_fn *fn;
        int r;
} ExposeArgs;

static void do_expose(void *arg) {
        ExposeArgs *e = arg;

        e->r = ring_fn_expose(e->conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL,
                              counting_add, NULL,
                              &e->fn);
}

typedef struct CallbackArgs {
        ring_sub *sub;
        ring_sub_callback cb;
        void *userdata;
        int r;
} CallbackArgs;

static void do_set_callback(void *arg) {
        CallbackArgs *c = arg;

        c->r = ring_sub_set_callback(c->sub, c->cb, c->userdata);
}

/* ring_fn_expose() and ring_fn_close() after the watcher started. */
START_TEST(test_expose_and_close_function_between_dispatches) {
        ClientPipes p;
        pid_t caller = fork_caller(&p, 10);
        ring_conn *conn = client_open("eventloop-changes");
        ExposeArgs e = { .conn = conn };
        int fd = ring_conn_fd(conn);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(dispatch(conn), 0);
        must_return("ring_fn_expose()", do_expose, &e);
        ck_assert_msg(e.r == 0, "ring_fn_expose: %s", ring_strerror(e.r));
        client_send_byte(p.down[1], 'G');
        atomic_store(&served, 0);
        while (atomic_load(&served) < 10) {
                ck_assert_msg(readable(fd, READABLE_MS),
                              "no request after ring_fn_expose() on a watched connection");
                dispatch(conn);
        }
        client_expect_exit_ok(caller, "caller");
        must_return("ring_fn_close()", do_fn_close, e.fn);
        ring_conn_close(conn);
}
END_TEST

/* ring_sub_set_callback() on and off, and ring_sub_close(), after the watcher started. */
START_TEST(test_callback_and_close_subscription_between_dispatches) {
        ClientPipes p;
        pid_t pub = fork_ticker(&p, 100);
        ring_conn *conn;
        ring_sub *sub = NULL;
        Ticks t = { .next = 0 };
        CallbackArgs c;
        uint8_t buf[16];
        int fd, r;

        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        conn = client_open("eventloop-changes");
        ck_assert_int_eq(ring_sub_open(conn, "ticks", SEQ_SCHEMA, NULL, &sub), 0);
        t.sub = sub;
        fd = ring_conn_fd(conn);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(dispatch(conn), 0);

        c = (CallbackArgs) { .sub = sub, .cb = on_tick, .userdata = &t };
        must_return("ring_sub_set_callback(on)", do_set_callback, &c);
        ck_assert_int_eq(c.r, 0);
        client_send_byte(p.down[1], 'G');
        dispatch_until(conn, &t, 100, 10000);

        c = (CallbackArgs) { .sub = sub };
        must_return("ring_sub_set_callback(NULL)", do_set_callback, &c);
        ck_assert_int_eq(c.r, 0);
        client_send_byte(p.down[1], 'G');
        for (int64_t seq = 100; seq < 200; seq++) {
                r = ring_sub_recv_raw(sub, buf, sizeof(buf), CALL_TIMEOUT_MS);
                ck_assert_msg(r > 0, "ring_sub_recv_raw after the callback was removed: %s",
                              ring_strerror(r));
        }
        ck_assert_int_eq(t.count, 100);
        must_return("ring_sub_close()", do_sub_close, sub);
        client_send_byte(p.down[1], 'D');
        client_expect_exit_ok(pub, "publisher");
        ring_conn_close(conn);
}
END_TEST

/* ---- broker restart ---- */

static bool reconnected_while_dispatching(ring_conn *conn, unsigned ms) {
        uint64_t deadline = deadline_after((int64_t) ms * (int64_t) NSEC_PER_MSEC);
        int fd = ring_conn_fd(conn);

        while (ring_conn_reconnects(conn) == 0) {
                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return false;
                if (readable(fd, 5))
                        dispatch(conn);
        }
        return true;
}

/* An async call pending when the broker dies completes with -ENOTCONN through dispatch. */
START_TEST(test_async_call_broker_killed) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "eventloop-service", add_fn, 1, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("eventloop-async");
        ring_rpc *rpc = NULL;
        Completion c;
        uint64_t t0;
        char in;

        ck_assert_int_eq(ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                       NULL, &rpc), 0);
        ck_assert_int_ge(ring_conn_fd(conn), 0);
        ck_assert_int_eq(start_async(rpc, &c, CLIENT_A_BLOCK, 0, 20000), 0);
        ck_assert_int_eq(client_wait_byte(p.up[0], CALL_TIMEOUT_MS, &in), 0);
        t0 = now_ns(CLOCK_MONOTONIC);
        broker_fixture_kill(&broker);
        ck_assert_msg(complete_all(conn, &c, 1, 5000),
                      "an async call still pending 5 s after the broker died");
        printf("# async call pending when the broker died: %s after %.1f ms\n",
               ring_strerror(c.error),
               (double) (c.when - t0) / 1e6);
        ck_assert_msg(c.error == -ENOTCONN, "broker killed: %d (%s)", c.error,
                      ring_strerror(c.error));
        client_send_byte(p.down[1], 'C');
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

/* A callback subscription after a broker restart: ring_sub_resubscribe() between dispatches,
 * and callbacks resume with new traffic. */
START_TEST(test_sub_callback_after_broker_restart) {
        ClientPipes p;
        pid_t pub = fork_ticker(&p, 0);
        ring_conn *conn;
        ring_sub *sub = NULL;
        Ticks t = { .next = 0 };
        int64_t before;
        int r;

        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        conn = client_open("eventloop-sub");
        ck_assert_int_eq(ring_sub_open(conn, "ticks", SEQ_SCHEMA, NULL, &sub), 0);
        t.sub = sub;
        ck_assert_int_eq(ring_sub_set_callback(sub, on_tick, &t), 0);
        dispatch_until(conn, &t, 1000, 10000);

        broker_fixture_kill(&broker);
        broker_fixture_start(&broker, NULL);
        ck_assert_msg(reconnected_while_dispatching(conn, 10000),
                      "no re-registration within 10 s of the restart");
        ck_assert_msg(!t.failure[0], "%s", t.failure);
        before = t.count;
        r = ring_sub_resubscribe(sub, 10000);
        ck_assert_msg(r == 0, "ring_sub_resubscribe: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        /* Records of the old ring may be lost; the new ones come in order. */
        t.next = -1;
        dispatch_until(conn, &t, before + 1000, 10000);
        printf("# %" PRId64 " callbacks before the re-subscription, %" PRId64 " after\n", before,
               t.count - before);
        client_stop_helper(pub, "publisher");
        ring_conn_close(conn);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-eventloop");
        TCase *tc = tcase_create("eventloop"), *changes = tcase_create("changes"),
              *restart = tcase_create("restart");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_fd_readable_on_request);
        tcase_add_test(tc, test_async_calls_complete_through_dispatch);
        tcase_add_test(tc, test_async_call_service_killed);
        tcase_add_test(tc, test_sub_callback);
        tcase_add_test(tc, test_run_and_stop);
        suite_add_tcase(s, tc);

        tcase_set_timeout(changes, 120);
        tcase_add_unchecked_fixture(changes, broker_fixture_guard_setup,
                                    broker_fixture_guard_teardown);
        tcase_add_checked_fixture(changes, setup, teardown);
        tcase_add_test(changes, test_expose_and_close_function_between_dispatches);
        tcase_add_test(changes, test_callback_and_close_subscription_between_dispatches);
        suite_add_tcase(s, changes);

        tcase_set_timeout(restart, 120);
        tcase_add_unchecked_fixture(restart, broker_fixture_guard_setup,
                                    broker_fixture_guard_teardown);
        tcase_add_checked_fixture(restart, setup, teardown);
        tcase_add_test(restart, test_async_call_broker_killed);
        tcase_add_test(restart, test_sub_callback_after_broker_restart);
        suite_add_tcase(s, restart);
        return s;
}
