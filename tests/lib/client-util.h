/* SPDX-License-Identifier: MIT */
/*
 * What the libring system tests (tests/system/test-{pubsub,rpc,errors,resilience,buses,
 * eventloop}.c) share: Avro longs by hand for the raw path, pipes between the test and its
 * helper processes (waited on with deadlines), a service process with test functions, and
 * checks of a helper's exit. Everything here uses only libring's public API (ring.h), as an
 * application would, and must not reach into libring's internals.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <avro.h>
#include <check.h>

#include "broker-fixture.h"
#include "ring.h"
#include "time-util.h"

#define CLIENT_OPEN_TIMEOUT_MS 5000
#define CLIENT_READY_TIMEOUT_MS 10000
#define CLIENT_EXIT_TIMEOUT_NS ((int64_t) (15 * NSEC_PER_SEC))

/* The request and response of the test functions: a + b = sum (Avro longs). */
#define CLIENT_ADD_REQ_SCHEMA \
        "{\"type\":\"record\",\"name\":\"AddReq\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"a\",\"type\":\"long\"},{\"name\":\"b\",\"type\":\"long\"}]}"
#define CLIENT_ADD_RESP_SCHEMA \
        "{\"type\":\"record\",\"name\":\"AddResp\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"sum\",\"type\":\"long\"}]}"
/* "echo": bytes in, the same bytes out. */
#define CLIENT_BLOB_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Blob\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"data\",\"type\":\"bytes\"}]}"
/* "ping": an empty record in (zero bytes of Avro), the string "pong" out. */
#define CLIENT_EMPTY_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Empty\",\"namespace\":\"ring.test\",\"fields\":[]}"
#define CLIENT_STRING_SCHEMA "\"string\""

/* Requests to the raw "add" handler whose `a` is one of these do something else. */
#define CLIENT_A_FAIL INT64_C(-1000001)         /* the handler fails with -EINVAL */
#define CLIENT_A_SLOW INT64_C(-1000002)         /* sleeps b ms, then answers a + b */
#define CLIENT_A_DIE INT64_C(-1000003)          /* the service process dies (SIGKILL) */
#define CLIENT_A_BLOCK INT64_C(-1000004)        /* writes 'B' up, waits for a byte down, answers */

/* Zig-zag varint, as Avro encodes int and long. Returns the bytes written (at most 10). */
static inline size_t client_put_long(uint8_t *p, int64_t v) {
        uint64_t z = ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);
        size_t n = 0;

        while (z >= 0x80) {
                p[n++] = (uint8_t) (z | 0x80);
                z >>= 7;
        }
        p[n++] = (uint8_t) z;
        return n;
}

static inline bool client_get_long(const uint8_t *p, size_t len, size_t *pos, int64_t *ret) {
        uint64_t z = 0;

        for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
                uint8_t b = p[(*pos)++];
                z |= (uint64_t) (b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = (int64_t) (z >> 1) ^ -(int64_t) (z & 1);
                        return true;
                }
        }
        return false;
}

/* An AddReq; returns its length. */
static inline size_t client_encode_add(uint8_t *buf, int64_t a, int64_t b) {
        size_t n = client_put_long(buf, a);

        return n + client_put_long(buf + n, b);
}

/* splitmix64: each thread and process its own reproducible stream. */
static inline uint64_t client_rng_next(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

/* Reads one byte from fd within timeout_ms: 0, -ETIMEDOUT, or -EPIPE at end of file. */
static inline int client_wait_byte(int fd, int timeout_ms, char *ret) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t deadline = deadline_after(timeout_ms < 0 ? -1 :
                                           (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        ssize_t k;
        char c;
        int n;

        for (;;) {
                uint64_t now = now_ns(CLOCK_MONOTONIC);
                int left = deadline == UINT64_MAX ? -1 : now >= deadline ? 0 :
                           (int) ((deadline - now) / NSEC_PER_MSEC) + 1;

                n = poll(&p, 1, left);
                if (n >= 0 || errno != EINTR)
                        break;
        }
        if (n < 0)
                return -errno;
        if (n == 0)
                return -ETIMEDOUT;
        do
                k = read(fd, &c, 1);
        while (k < 0 && errno == EINTR);
        if (k == 1) {
                if (ret)
                        *ret = c;
                return 0;
        }
        return k == 0 ? -EPIPE : -errno;
}

static inline void client_send_byte(int fd, char c) {
        ck_assert_int_eq(write(fd, &c, 1), 1);
}

/* Two pipes between the test and one helper process. */
typedef struct ClientPipes {
        int up[2];      /* helper -> test ("ready", "in the handler") */
        int down[2];    /* test -> helper ("go", "done") */
} ClientPipes;

static inline void client_pipes_open(ClientPipes *p) {
        ck_assert_int_eq(pipe2(p->up, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(p->down, O_CLOEXEC), 0);
}

static inline void client_pipes_close(ClientPipes *p) {
        for (unsigned i = 0; i < 2; i++) {
                if (p->up[i] >= 0)
                        close(p->up[i]);
                if (p->down[i] >= 0)
                        close(p->down[i]);
                p->up[i] = p->down[i] = -1;
        }
}

/* In a helper process: report why on stdout as a TAP comment and leave with code. */
#define CLIENT_CHILD_FAIL(code, ...)                                    \
        do {                                                            \
                printf("# helper %ld: ", (long) getpid());              \
                printf(__VA_ARGS__);                                    \
                printf("\n");                                           \
                fflush(stdout);                                         \
                _exit(code);                                            \
        } while (0)

/* Waits for helper pid (killing it if it does not exit in time) and asserts it exited 0. */
static inline void client_expect_exit_ok(pid_t pid, const char *what) {
        int status, r;

        r = broker_fixture_wait_pid(pid, CLIENT_EXIT_TIMEOUT_NS, &status);
        if (r < 0) {
                kill(pid, SIGKILL);
                (void) broker_fixture_wait_pid(pid, CLIENT_EXIT_TIMEOUT_NS, NULL);
                ck_abort_msg("%s (pid %ld) did not exit within %llu s", what, (long) pid,
                             (unsigned long long) (CLIENT_EXIT_TIMEOUT_NS / NSEC_PER_SEC));
        }
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "%s (pid %ld) failed: wait status 0x%x",
                      what, (long) pid, (unsigned) status);
}

/* SIGTERM, then as client_expect_exit_ok(). */
static inline void client_stop_helper(pid_t pid, const char *what) {
        ck_assert_int_eq(kill(pid, SIGTERM), 0);
        client_expect_exit_ok(pid, what);
}

/* Opens a connection on the current $RING_BUS or fails the test. */
static inline ring_conn *client_open(const char *app) {
        ring_conn *conn = NULL;
        int r;

        r = ring_conn_open(app, CLIENT_OPEN_TIMEOUT_MS, &conn);
        ck_assert_msg(r == 0, "ring_conn_open(\"%s\"): %s", app, ring_strerror(r));
        return conn;
}

static inline double client_ms_since(uint64_t t0) {
        return (double) (now_ns(CLOCK_MONOTONIC) - t0) / (double) NSEC_PER_MSEC;
}

/* ---- a service process ---- */

typedef enum ClientFnKind {
        CLIENT_FN_ADD,          /* raw handler, with the CLIENT_A_* specials */
        CLIENT_FN_ADD_VALUE,    /* avro-c value handler: sum = a + b */
        CLIENT_FN_ECHO,         /* raw, CLIENT_BLOB_SCHEMA */
        CLIENT_FN_PING,         /* raw, CLIENT_EMPTY_SCHEMA -> CLIENT_STRING_SCHEMA */
} ClientFnKind;

typedef struct ClientFn {
        const char *name;
        ClientFnKind kind;
        const char *key;        /* NULL: none */
} ClientFn;

typedef enum ClientServeMode {
        CLIENT_SERVE_RUN,       /* ring_conn_run() */
        CLIENT_SERVE_FN,        /* ring_fn_serve() on the first function */
} ClientServeMode;

static ring_conn *client_service_conn;
static ClientPipes *client_service_pipes;

static inline void client_service_on_term(int sig) {
        (void) sig;
        ring_conn_stop(client_service_conn);
}

static inline int client_add_handler(const void *req, size_t len, void *resp, size_t size,
                                     void *userdata) {
        const uint8_t *p = req;
        size_t pos = 0;
        int64_t a, b;
        char c;

        (void) userdata;
        if (!client_get_long(p, len, &pos, &a) || !client_get_long(p, len, &pos, &b) || pos != len)
                return -EBADMSG;
        if (size < 10)
                return -EMSGSIZE;
        switch (a) {
        case CLIENT_A_FAIL:
                return -EINVAL;
        case CLIENT_A_SLOW: {
                struct timespec ts = timespec_from_ns((uint64_t) b * NSEC_PER_MSEC);
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
                break;
        }
        case CLIENT_A_DIE:
                fflush(stdout);
                raise(SIGKILL);
                break;
        case CLIENT_A_BLOCK:
                if (write(client_service_pipes->up[1], "B", 1) != 1 ||
                    client_wait_byte(client_service_pipes->down[0], 60000, &c) < 0)
                        return -EIO;
                break;
        default:
                break;
        }
        return (int) client_put_long(resp, a + b);
}

static inline int client_add_value_handler(const struct avro_value *req, struct avro_value *resp,
                                           void *userdata) {
        avro_value_t fa, fb, fs;
        int64_t a, b;

        (void) userdata;
        if (avro_value_get_by_name((avro_value_t *) req, "a", &fa, NULL) != 0 ||
            avro_value_get_by_name((avro_value_t *) req, "b", &fb, NULL) != 0 ||
            avro_value_get_long(&fa, &a) != 0 || avro_value_get_long(&fb, &b) != 0)
                return -EBADMSG;
        if (a == CLIENT_A_FAIL)
                return -EINVAL;
        if (avro_value_get_by_name(resp, "sum", &fs, NULL) != 0 || avro_value_set_long(&fs,
                                                                                       a + b) != 0)
                return -EINVAL;
        return 0;
}

static inline int client_echo_handler(const void *req, size_t len, void *resp, size_t size,
                                      void *userdata) {
        (void) userdata;
        if (len > size)
                return -EMSGSIZE;
        memcpy(resp, req, len);
        return (int) len;
}

static inline int client_ping_handler(const void *req, size_t len, void *resp, size_t size,
                                      void *userdata) {
        (void) req;
        (void) userdata;
        if (len != 0)
                return -EBADMSG;
        if (size < 5)
                return -EMSGSIZE;
        ((uint8_t *) resp)[0] = 8;      /* the string's length 4, zig-zag */
        memcpy((uint8_t *) resp + 1, "pong", 4);
        return 5;
}

/* In a forked helper: connects as app, exposes fns, writes 'R' up, serves until SIGTERM
 * (ring_conn_stop() from the signal handler), closes and exits 0; any failure exits non-zero. */
static inline _Noreturn void client_service(ClientPipes *p, const char *app, const ClientFn *fns,
                                            size_t n,
                                            ClientServeMode mode) {
        struct sigaction sa = { .sa_handler = client_service_on_term };
        ring_fn *fn[8] = { NULL };
        int r;

        client_service_pipes = p;
        if (n > 8)
                CLIENT_CHILD_FAIL(2, "too many functions");
        r = ring_conn_open(app, CLIENT_OPEN_TIMEOUT_MS, &client_service_conn);
        if (r < 0)
                CLIENT_CHILD_FAIL(2, "ring_conn_open: %s", ring_strerror(r));
        for (size_t i = 0; i < n; i++) {
                ring_conn *c = client_service_conn;
                const char *name = fns[i].name, *key = fns[i].key;

                switch (fns[i].kind) {
                case CLIENT_FN_ADD:
                        r = ring_fn_expose(c, name, CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                           key, client_add_handler, NULL, &fn[i]);
                        break;
                case CLIENT_FN_ADD_VALUE:
                        r = ring_fn_expose_value(c, name, CLIENT_ADD_REQ_SCHEMA,
                                                 CLIENT_ADD_RESP_SCHEMA, key,
                                                 client_add_value_handler, NULL, &fn[i]);
                        break;
                case CLIENT_FN_ECHO:
                        r = ring_fn_expose(c, name, CLIENT_BLOB_SCHEMA, CLIENT_BLOB_SCHEMA, key,
                                           client_echo_handler, NULL, &fn[i]);
                        break;
                case CLIENT_FN_PING:
                        r = ring_fn_expose(c, name, CLIENT_EMPTY_SCHEMA, CLIENT_STRING_SCHEMA, key,
                                           client_ping_handler, NULL, &fn[i]);
                        break;
                }
                if (r < 0)
                        CLIENT_CHILD_FAIL(3, "ring_fn_expose(\"%s\"): %s (%s)", name,
                                          ring_strerror(r), ring_last_error_message());
        }
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) < 0)
                CLIENT_CHILD_FAIL(4, "sigaction");
        if (write(p->up[1], "R", 1) != 1)
                CLIENT_CHILD_FAIL(4, "write ready");
        if (mode == CLIENT_SERVE_RUN) {
                r = ring_conn_run(client_service_conn);
                if (r < 0)
                        CLIENT_CHILD_FAIL(5, "ring_conn_run: %s", ring_strerror(r));
        } else {
                r = ring_fn_serve(fn[0], -1);
                if (r < 0)
                        CLIENT_CHILD_FAIL(5, "ring_fn_serve: %s", ring_strerror(r));
        }
        for (size_t i = 0; i < n; i++)
                ring_fn_close(fn[i]);
        ring_conn_close(client_service_conn);
        _exit(0);
}

/* Forks a service helper and waits until it serves; returns its pid. */
static inline pid_t client_start_service(ClientPipes *p, const char *app, const ClientFn *fns,
                                         size_t n,
                                         ClientServeMode mode) {
        pid_t pid;
        int r;

        client_pipes_open(p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                client_service(p, app, fns, n, mode);
        r = client_wait_byte(p->up[0], CLIENT_READY_TIMEOUT_MS, NULL);
        ck_assert_msg(r == 0, "service %s not ready: %s", app, strerror(-r));
        return pid;
}

/* Calls the raw "add": the sum, or a negative error. */
static inline int client_call_add(ring_rpc *rpc, int64_t a, int64_t b, int timeout_ms,
                                  int64_t *ret_sum) {
        uint8_t req[20], resp[32];
        size_t pos = 0;
        int n;

        n = ring_rpc_call_raw(rpc, req, client_encode_add(req, a, b), resp, sizeof(resp),
                              timeout_ms);
        if (n < 0)
                return n;
        if (!client_get_long(resp, (size_t) n, &pos, ret_sum) || pos != (size_t) n)
                return -EBADMSG;
        return 0;
}
