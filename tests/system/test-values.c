/* SPDX-License-Identifier: MIT */
/*
 * libring's check of avro-c values against a channel's or function's schema, against the real
 * impulsed, through the public API (ring.h) only. Accepted: values of ring_pub_new_value() and
 * ring_sub_new_value(), values of the program's own parse of the schema (another
 * avro_schema_t, the same canonical form), also when spelled differently and when there are
 * more such parses than libring remembers. Refused with -EPROTO on every attempt, before or
 * after accepted ones: values of another schema, also one that a freed, accepted schema's
 * memory may be reused for. A refused send sends nothing, a refused receive takes nothing.
 * Many threads calling one ring_rpc with values of their own parses get right answers, and
 * the ones with a wrong schema get -EPROTO every time. Values of every size arrive intact.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <check.h>

#include "broker-fixture.h"
#include "client-util.h"
#include "ring.h"
#include "test-util.h"

#define REC_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Rec\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"},{\"name\":\"payload\",\"type\":\"bytes\"}]}"
/* The same canonical form, written differently. */
#define REC_SCHEMA_RESPELLED \
        "{ \"fields\": [ {\"type\":\"long\", \"name\":\"seq\", \"doc\":\"n\"}," \
        " {\"name\":\"payload\", \"type\":\"bytes\"} ], \"name\": \"Rec\", \"type\": \"record\"," \
        " \"namespace\": \"ring.test\" }"
/* Another schema of the same shape (so that avro-c allocates alike for it): payload is a
 * string, so the fingerprint differs. */
#define OTHER_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Rec\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"},{\"name\":\"payload\",\"type\":\"string\"}]}"
/* AddReq with ints instead of longs: refused by "add-value". */
#define OTHER_ADD_REQ_SCHEMA \
        "{\"type\":\"record\",\"name\":\"AddReq\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"b\",\"type\":\"int\"}]}"

/* More parses of one schema than libring remembers per channel (4), so that some are
 * fingerprinted on every use. */
#define PARSES 9
#define REUSE_ROUNDS 16
#define THREADS 8
#define THREAD_CALLS 300
#define IO_TIMEOUT_MS 5000

static BrokerFixture broker;
static uint64_t seed;

static const ClientFn service_fns[] = {
        { "add-value", CLIENT_FN_ADD_VALUE, NULL },
};

static void setup(void) {
        broker_fixture_init_start(&broker);
        seed = test_seed();
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

/* A value of a fresh parse of json; the value holds the only references to schema and class. */
static void parse_value(const char *json, avro_value_t *ret) {
        avro_schema_t schema = NULL;
        avro_value_iface_t *iface;

        ck_assert_msg(avro_schema_from_json_length(json, strlen(json), &schema) == 0, "%s: %s", json,
                      avro_strerror());
        iface = avro_generic_class_from_schema(schema);
        ck_assert_ptr_nonnull(iface);
        ck_assert_int_eq(avro_generic_value_new(iface, ret), 0);
        avro_value_iface_decref(iface);
        avro_schema_decref(schema);
}

static uint8_t payload_byte(int64_t seq, size_t i) {
        return (uint8_t) ((uint64_t) seq * 131 + i * 7 + seed);
}

/* Fills a Rec value: seq and len bytes of payload that follow from both. */
static void set_rec(avro_value_t *v, int64_t seq, size_t len) {
        uint8_t *payload = malloc(len ?: 1);
        avro_value_t f;

        ck_assert_ptr_nonnull(payload);
        for (size_t i = 0; i < len; i++)
                payload[i] = payload_byte(seq, i);
        ck_assert_int_eq(avro_value_get_by_name(v, "seq", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_long(&f, seq), 0);
        ck_assert_int_eq(avro_value_get_by_name(v, "payload", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_bytes(&f, payload, len), 0);
        free(payload);
}

/* Fills a value of OTHER_SCHEMA. */
static void set_other(avro_value_t *v, int64_t seq) {
        avro_value_t f;

        ck_assert_int_eq(avro_value_get_by_name(v, "seq", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_long(&f, seq), 0);
        ck_assert_int_eq(avro_value_get_by_name(v, "payload", &f, NULL), 0);
        ck_assert_int_eq(avro_value_set_string(&f, "not a Rec"), 0);
}

static void check_rec(avro_value_t *v, int64_t seq, size_t len) {
        const void *p;
        avro_value_t f;
        int64_t got;
        size_t n;

        ck_assert_int_eq(avro_value_get_by_name(v, "seq", &f, NULL), 0);
        ck_assert_int_eq(avro_value_get_long(&f, &got), 0);
        ck_assert_msg(got == seq, "received seq %" PRId64 ", expected %" PRId64, got, seq);
        ck_assert_int_eq(avro_value_get_by_name(v, "payload", &f, NULL), 0);
        ck_assert_int_eq(avro_value_get_bytes(&f, &p, &n), 0);
        ck_assert_msg(n == len, "seq %" PRId64 ": payload of %zu bytes, expected %zu", seq, n, len);
        for (size_t i = 0; i < len; i++)
                ck_assert_msg(((const uint8_t *) p)[i] == payload_byte(seq, i),
                              "seq %" PRId64 ": payload byte %zu differs", seq, i);
}

/* A refusal as the man pages promise it: -EPROTO, with both fingerprints in the message. */
static void expect_refused(int r, uint64_t fp, const char *what) {
        char want[32];

        ck_assert_msg(r == -EPROTO, "%s: %d (%s), expected -EPROTO", what, r, ring_strerror(r));
        snprintf(want, sizeof(want), "0x%016" PRIx64, fp);
        ck_assert_msg(strstr(ring_last_error_message(), want) && strstr(ring_last_error_message(), "fingerprint"),
                      "%s: the message \"%s\" does not name the fingerprint %s", what,
                      ring_last_error_message(), want);
}

/* Sends value as seq and receives it into got. */
static void send_and_receive(ring_pub *pub, ring_sub *sub, avro_value_t *value, avro_value_t *got,
                             int64_t seq, size_t len, const char *what) {
        int r;

        set_rec(value, seq, len);
        r = ring_pub_send(pub, value, IO_TIMEOUT_MS);
        ck_assert_msg(r == 0, "%s: ring_pub_send of seq %" PRId64 ": %s (%s)", what, seq, ring_strerror(r),
                      ring_last_error_message());
        r = ring_sub_recv(sub, got, IO_TIMEOUT_MS);
        ck_assert_msg(r == 0, "%s: ring_sub_recv of seq %" PRId64 ": %s (%s)", what, seq, ring_strerror(r),
                      ring_last_error_message());
        check_rec(got, seq, len);
}

START_TEST(test_pubsub_values_by_schema) {
        static const size_t sizes[] = { 0, 1, 64, 200, 5000, 3, 70000, 300000, 17 };
        avro_value_t mine, got, other, own[PARSES], respelled;
        ring_conn *conn = client_open("values-pubsub");
        ring_pub *pub = NULL;
        ring_sub *sub = NULL;
        uint64_t fp;
        int64_t seq = 0;
        int r;

        ck_assert_int_eq(ring_pub_open(conn, "values", REC_SCHEMA, NULL, &pub), 0);
        ck_assert_int_eq(ring_sub_open(conn, "values", REC_SCHEMA, NULL, &sub), 0);
        fp = ring_pub_fingerprint(pub);
        ck_assert_int_eq(ring_pub_new_value(NULL, &mine), -EINVAL);
        ck_assert_int_eq(ring_pub_new_value(pub, NULL), -EINVAL);
        ck_assert_int_eq(ring_pub_new_value(pub, &mine), 0);
        ck_assert_int_eq(ring_sub_new_value(sub, &got), 0);

        /* The publisher's own values, of every size: the encode buffer grows as needed. */
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
                send_and_receive(pub, sub, &mine, &got, seq++, sizes[i], "ring_pub_new_value()");
        /* Larger than the ring (1 MiB): refused, and the next one goes through. */
        set_rec(&mine, seq, 2 << 20);
        r = ring_pub_send(pub, &mine, IO_TIMEOUT_MS);
        ck_assert_msg(r == -EMSGSIZE, "a 2 MiB value: %d (%s), expected -EMSGSIZE", r, ring_strerror(r));
        send_and_receive(pub, sub, &mine, &got, seq++, 10, "after -EMSGSIZE");

        /* Values of the program's own parses, more of them than libring remembers, each used
         * several times and interleaved with values of another schema, which are refused every
         * time, before and after the accepted ones. */
        parse_value(OTHER_SCHEMA, &other);
        set_other(&other, 99);
        for (unsigned i = 0; i < PARSES; i++)
                parse_value(REC_SCHEMA, &own[i]);
        parse_value(REC_SCHEMA_RESPELLED, &respelled);
        for (unsigned round = 0; round < 3; round++) {
                expect_refused(ring_pub_send(pub, &other, IO_TIMEOUT_MS), fp, "sending another schema's value");
                for (unsigned i = 0; i < PARSES; i++) {
                        send_and_receive(pub, sub, &own[i], &got, seq++, 8 + i, "a parse of the program's");
                        expect_refused(ring_pub_send(pub, &other, IO_TIMEOUT_MS), fp,
                                       "sending another schema's value");
                }
                send_and_receive(pub, sub, &respelled, &got, seq++, 5, "a respelled schema's value");
        }

        /* Receiving into a value of another schema is refused without taking the message;
         * the program's own parse receives it. */
        set_rec(&mine, seq, 33);
        ck_assert_int_eq(ring_pub_send(pub, &mine, IO_TIMEOUT_MS), 0);
        for (unsigned i = 0; i < 3; i++)
                expect_refused(ring_sub_recv(sub, &other, IO_TIMEOUT_MS), fp, "receiving into another schema's value");
        r = ring_sub_recv(sub, &own[PARSES - 1], IO_TIMEOUT_MS);
        ck_assert_msg(r == 0, "the message after refused receives: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        check_rec(&own[PARSES - 1], seq++, 33);
        /* The refused sends sent nothing. */
        ck_assert_int_eq(ring_sub_recv(sub, &got, 0), -EAGAIN);

        avro_value_decref(&other);
        avro_value_decref(&respelled);
        for (unsigned i = 0; i < PARSES; i++)
                avro_value_decref(&own[i]);
        avro_value_decref(&mine);
        avro_value_decref(&got);
        ring_sub_close(sub);
        ring_pub_close(pub);
        ring_conn_close(conn);
}
END_TEST

/* A schema libring accepted may be freed by the program; another schema may then be allocated
 * at its address. That one must still be refused: libring keeps what it remembers alive. Each
 * round frees an accepted parse and makes a non-matching one of the same shape, which glibc's
 * allocator tends to place where the freed one was. */
START_TEST(test_freed_schema_address_reused) {
        ring_conn *conn = client_open("values-reuse");
        ring_pub *pub = NULL;
        ring_sub *sub = NULL;
        avro_value_t got;
        uint64_t fp;
        int r;

        ck_assert_int_eq(ring_pub_open(conn, "reuse", REC_SCHEMA, NULL, &pub), 0);
        ck_assert_int_eq(ring_sub_open(conn, "reuse", REC_SCHEMA, NULL, &sub), 0);
        ck_assert_int_eq(ring_sub_new_value(sub, &got), 0);
        fp = ring_pub_fingerprint(pub);
        for (int64_t round = 0; round < REUSE_ROUNDS; round++) {
                avro_value_t v;

                parse_value(REC_SCHEMA, &v);
                send_and_receive(pub, sub, &v, &got, round, 4, "a fresh parse");
                avro_value_decref(&v);
                parse_value(OTHER_SCHEMA, &v);
                set_other(&v, round);
                r = ring_pub_send(pub, &v, IO_TIMEOUT_MS);
                avro_value_decref(&v);
                expect_refused(r, fp, "another schema after a freed parse");
        }
        ck_assert_int_eq(ring_sub_recv(sub, &got, 0), -EAGAIN);
        avro_value_decref(&got);
        ring_sub_close(sub);
        ring_pub_close(pub);
        ring_conn_close(conn);
}
END_TEST

typedef enum CallerKind {
        CALLER_LIBRING,         /* ring_rpc_new_request() and ring_rpc_new_response() */
        CALLER_OWN,             /* its own parses of both schemas */
        CALLER_WRONG_REQUEST,   /* a request of another schema: refused before sending */
        CALLER_WRONG_RESPONSE,  /* a response value of another schema: refused at decoding */
} CallerKind;

typedef struct Caller {
        ring_rpc *rpc;
        CallerKind kind;
        pthread_barrier_t *start;
        uint64_t rng;
        char failure[256];
} Caller;

static void *caller_run(void *arg) {
        Caller *c = arg;
        avro_value_t req, resp, f;
        int r;

        /* Check's assertions belong to the test's thread: failures are written down here. */
        if (c->kind == CALLER_LIBRING) {
                r = ring_rpc_new_request(c->rpc, &req);
                if (r == 0)
                        r = ring_rpc_new_response(c->rpc, &resp);
                if (r < 0) {
                        snprintf(c->failure, sizeof(c->failure), "new values: %s", ring_strerror(r));
                        return NULL;
                }
        } else {
                avro_schema_t s[2] = { NULL, NULL };
                const char *json[2] = {
                        c->kind == CALLER_WRONG_REQUEST ? OTHER_ADD_REQ_SCHEMA : CLIENT_ADD_REQ_SCHEMA,
                        c->kind == CALLER_WRONG_RESPONSE ? CLIENT_BLOB_SCHEMA : CLIENT_ADD_RESP_SCHEMA,
                };
                avro_value_t *v[2] = { &req, &resp };

                for (unsigned i = 0; i < 2; i++) {
                        avro_value_iface_t *iface;

                        if (avro_schema_from_json_length(json[i], strlen(json[i]), &s[i]) != 0 ||
                            !(iface = avro_generic_class_from_schema(s[i]))) {
                                snprintf(c->failure, sizeof(c->failure), "parse: %s", avro_strerror());
                                return NULL;
                        }
                        r = avro_generic_value_new(iface, v[i]);
                        avro_value_iface_decref(iface);
                        avro_schema_decref(s[i]);
                        if (r != 0) {
                                snprintf(c->failure, sizeof(c->failure), "value: %s", avro_strerror());
                                return NULL;
                        }
                }
        }

        pthread_barrier_wait(c->start);
        for (unsigned i = 0; i < THREAD_CALLS && !c->failure[0]; i++) {
                int64_t a = (int64_t) (client_rng_next(&c->rng) % (UINT64_C(1) << 30));
                int64_t b = (int64_t) (client_rng_next(&c->rng) % (UINT64_C(1) << 30)), sum = 0;

                avro_value_get_by_name(&req, "a", &f, NULL);
                if (c->kind == CALLER_WRONG_REQUEST)
                        avro_value_set_int(&f, (int32_t) a);
                else
                        avro_value_set_long(&f, a);
                avro_value_get_by_name(&req, "b", &f, NULL);
                if (c->kind == CALLER_WRONG_REQUEST)
                        avro_value_set_int(&f, (int32_t) b);
                else
                        avro_value_set_long(&f, b);
                r = ring_rpc_call(c->rpc, &req, &resp, IO_TIMEOUT_MS);
                if (c->kind == CALLER_WRONG_REQUEST || c->kind == CALLER_WRONG_RESPONSE) {
                        if (r != -EPROTO || !strstr(ring_last_error_message(), "fingerprint"))
                                snprintf(c->failure, sizeof(c->failure),
                                         "call %u with a value of another schema: %d (%s), \"%s\"", i, r,
                                         ring_strerror(r), ring_last_error_message());
                        continue;
                }
                if (r < 0) {
                        snprintf(c->failure, sizeof(c->failure), "call %u: %s (%s)", i, ring_strerror(r),
                                 ring_last_error_message());
                        continue;
                }
                avro_value_get_by_name(&resp, "sum", &f, NULL);
                avro_value_get_long(&f, &sum);
                if (sum != a + b)
                        snprintf(c->failure, sizeof(c->failure), "call %u: add(%" PRId64 ", %" PRId64 ") = %" PRId64,
                                 i, a, b, sum);
        }
        avro_value_decref(&req);
        avro_value_decref(&resp);
        return NULL;
}

/* One ring_rpc shares its two schemas between all the threads that call it. Threads start
 * together, each with values of its own parse (more parses than libring remembers) or of
 * libring's, and two with a schema of the wrong fingerprint. */
START_TEST(test_rpc_values_from_threads) {
        static const CallerKind kinds[THREADS] = {
                CALLER_OWN, CALLER_WRONG_REQUEST, CALLER_OWN, CALLER_LIBRING,
                CALLER_OWN, CALLER_WRONG_RESPONSE, CALLER_OWN, CALLER_OWN,
        };
        ClientPipes p;
        pid_t svc = client_start_service(&p, "values-service", service_fns, 1,
                                         CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("values-caller");
        pthread_barrier_t start;
        pthread_t threads[THREADS];
        Caller callers[THREADS];
        ring_rpc *rpc = NULL;
        int r;

        r = ring_rpc_open(conn, "add-value", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "ring_rpc_open: %s (%s)", ring_strerror(r), ring_last_error_message());
        ck_assert_int_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
        for (unsigned i = 0; i < THREADS; i++) {
                callers[i] = (Caller) { .rpc = rpc, .kind = kinds[i], .start = &start, .rng = seed + i };
                ck_assert_int_eq(pthread_create(&threads[i], NULL, caller_run, &callers[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++)
                pthread_join(threads[i], NULL);
        for (unsigned i = 0; i < THREADS; i++)
                ck_assert_msg(callers[i].failure[0] == 0, "thread %u: %s", i, callers[i].failure);
        pthread_barrier_destroy(&start);
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
        client_pipes_close(&p);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-values");
        TCase *tc = tcase_create("values");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_pubsub_values_by_schema);
        tcase_add_test(tc, test_freed_schema_address_reused);
        tcase_add_test(tc, test_rpc_values_from_threads);
        suite_add_tcase(s, tc);
        return s;
}
