/* SPDX-License-Identifier: MIT */
/*
 * libring's errors against the real impulsed, through the public API (ring.h) only: schema
 * mismatch (-EPROTO), wrong access key (-EACCES), unknown channel or function (-ENOENT) and a
 * taken name (-EEXIST) each give their own code and a non-empty ring_last_error_message(); a
 * failing handler reaches the caller as -EREMOTEIO with its message; no broker is -ENOTCONN at
 * once; bad arguments are -EINVAL; buffers too small are -EMSGSIZE; timeouts are -ETIMEDOUT
 * and -EAGAIN; ring_strerror() describes every documented code.
 */
#include <errno.h>
#include <inttypes.h>
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

#define MSG_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Msg\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"n\",\"type\":\"long\"}]}"
/* Same name, another field type: another fingerprint. */
#define OTHER_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Msg\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"n\",\"type\":\"int\"}]}"
#define KEY "correct horse battery staple"
#define CALL_TIMEOUT_MS 5000

static BrokerFixture broker;

static void setup(void) {
        broker_fixture_init_start(&broker);
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

/* Asserts that a call failed with want and left a message (the broker's, or libring's own for
 * checks it makes itself). */
#define EXPECT_FAIL(r, want, what)                                                      \
        do {                                                                            \
                int r_ = (r);                                                           \
                ck_assert_msg(r_ == (want), "%s: %d (%s), expected %s", (what), r_,     \
                              r_ < 0 ? ring_strerror(r_) : "success",                   \
                              ring_strerror(want));                                     \
                ck_assert_msg(ring_last_error_message()[0] != 0,                        \
                              "%s: %s without a message", (what), ring_strerror(want)); \
                printf("# %s: %s: \"%s\"\n", (what), ring_strerror(r_),                 \
                       ring_last_error_message());                                      \
        } while (0)

/* The codes each kind of refusal gives are distinct, per kind and per object. */
START_TEST(test_channel_refusals_have_their_own_codes) {
        ring_conn *pubc = client_open("errors-pub"), *subc = client_open("errors-sub"),
                  *third = client_open("errors-third");
        ring_pub *pub = NULL, *dup = NULL;
        ring_sub *sub = NULL, *sub2 = NULL;
        int r;

        r = ring_pub_open(pubc, "keyed", MSG_SCHEMA, KEY, &pub);
        ck_assert_msg(r == 0, "ring_pub_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());

        EXPECT_FAIL(ring_sub_open(subc, "no-such-channel", MSG_SCHEMA, KEY, &sub), -ENOENT,
                    "unknown channel");
        ck_assert_ptr_null(sub);
        EXPECT_FAIL(ring_sub_open(subc, "keyed", OTHER_SCHEMA, KEY, &sub), -EPROTO,
                    "channel schema mismatch");
        ck_assert_ptr_null(sub);
        EXPECT_FAIL(ring_sub_open(subc, "keyed", MSG_SCHEMA, "wrong key", &sub), -EACCES,
                    "wrong channel key");
        EXPECT_FAIL(ring_sub_open(subc, "keyed", MSG_SCHEMA, NULL, &sub), -EACCES,
                    "no channel key");
        EXPECT_FAIL(ring_sub_open(subc, "keyed", MSG_SCHEMA, "", &sub), -EACCES,
                    "empty channel key");
        ck_assert_ptr_null(sub);
        EXPECT_FAIL(ring_pub_open(third, "keyed", MSG_SCHEMA, KEY, &dup), -EEXIST,
                    "channel published twice");
        ck_assert_ptr_null(dup);

        /* After every refusal the right request still works, and a second subscriber is refused. */
        r = ring_sub_open(subc, "keyed", MSG_SCHEMA, KEY, &sub);
        ck_assert_msg(r == 0, "ring_sub_open with the key: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        EXPECT_FAIL(ring_sub_open(third, "keyed", MSG_SCHEMA, KEY, &sub2), -EEXIST,
                    "second subscriber");
        ck_assert_ptr_null(sub2);

        uint8_t buf[16];
        ck_assert_int_eq(ring_pub_send_raw(pub, buf, client_put_long(buf, 42), 1000), 0);
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
        ck_assert_int_eq(r, 1);
        ck_assert_int_eq(buf[0], 84);

        ring_sub_close(sub);
        ring_pub_close(pub);
        ring_conn_close(third);
        ring_conn_close(subc);
        ring_conn_close(pubc);
}
END_TEST

static const ClientFn keyed_fns[] = {
        { "keyed-add", CLIENT_FN_ADD, KEY },
        { "add", CLIENT_FN_ADD, NULL },
        { "add-value", CLIENT_FN_ADD_VALUE, NULL },
};

START_TEST(test_function_refusals_have_their_own_codes) {
        ClientPipes p;
        pid_t svc = client_start_service(&p, "errors-service", keyed_fns, 3, CLIENT_SERVE_RUN);
        ring_conn *conn = client_open("errors-caller");
        ring_rpc *rpc = NULL;
        ring_fn *fn = NULL;
        int64_t sum = 0;
        int r;

        EXPECT_FAIL(ring_rpc_open(conn, "no-such-function", CLIENT_ADD_REQ_SCHEMA,
                                  CLIENT_ADD_RESP_SCHEMA, NULL, &rpc),
                    -ENOENT, "unknown function");
        EXPECT_FAIL(ring_rpc_open(conn, "add", OTHER_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc),
                    -EPROTO,
                    "request schema mismatch");
        EXPECT_FAIL(ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, OTHER_SCHEMA, NULL, &rpc),
                    -EPROTO,
                    "response schema mismatch");
        EXPECT_FAIL(ring_rpc_open(conn, "keyed-add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                  "wrong", &rpc),
                    -EACCES, "wrong function key");
        EXPECT_FAIL(ring_rpc_open(conn, "keyed-add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                  NULL, &rpc),
                    -EACCES, "no function key");
        ck_assert_ptr_null(rpc);
        EXPECT_FAIL(ring_fn_expose(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL,
                                   client_add_handler, NULL, &fn),
                    -EEXIST, "function exposed twice");
        ck_assert_ptr_null(fn);

        r = ring_rpc_open(conn, "keyed-add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, KEY,
                          &rpc);
        ck_assert_msg(r == 0, "ring_rpc_open with the key: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        r = client_call_add(rpc, 20, 22, CALL_TIMEOUT_MS, &sum);
        ck_assert_msg(r == 0 && sum == 42, "keyed add: %s, sum %" PRId64, ring_strerror(r), sum);

        /* A failing handler: -EREMOTEIO with its message, and the next call works. */
        r = client_call_add(rpc, CLIENT_A_FAIL, 0, CALL_TIMEOUT_MS, &sum);
        EXPECT_FAIL(r, -EREMOTEIO, "handler failed");
        ck_assert_msg(strstr(ring_last_error_message(), ring_strerror(-EINVAL)),
                      "the message \"%s\" does not carry the handler's error",
                      ring_last_error_message());
        r = client_call_add(rpc, 1, 2, CALL_TIMEOUT_MS, &sum);
        ck_assert_msg(r == 0 && sum == 3, "after a failed call: %s", ring_strerror(r));
        ring_rpc_close(rpc);

        /* The same through avro-c values: the value handler fails. */
        r = ring_rpc_open(conn, "add-value", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL,
                          &rpc);
        ck_assert_int_eq(r, 0);
        avro_value_t req, resp, f;
        ck_assert_int_eq(ring_rpc_new_request(rpc, &req), 0);
        ck_assert_int_eq(ring_rpc_new_response(rpc, &resp), 0);
        avro_value_get_by_name(&req, "a", &f, NULL);
        avro_value_set_long(&f, CLIENT_A_FAIL);
        EXPECT_FAIL(ring_rpc_call(rpc, &req, &resp, CALL_TIMEOUT_MS), -EREMOTEIO,
                    "value handler failed");

        /* A response larger than the caller's buffer: -EMSGSIZE. */
        ring_rpc *raw = NULL;
        uint8_t in[20], out[1];
        ck_assert_int_eq(ring_rpc_open(conn, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                       NULL, &raw), 0);
        r = ring_rpc_call_raw(raw, in, client_encode_add(in, 1000, 1000), out, sizeof(out),
                              CALL_TIMEOUT_MS);
        ck_assert_msg(r == -EMSGSIZE, "a 2-byte response into 1 byte: %d (%s)", r,
                      ring_strerror(r));
        r = client_call_add(raw, 5, 6, CALL_TIMEOUT_MS, &sum);
        ck_assert_msg(r == 0 && sum == 11, "after -EMSGSIZE: %s", ring_strerror(r));

        /* A value of another schema is refused before anything is sent. */
        avro_schema_t other = NULL;
        avro_value_iface_t *iface;
        avro_value_t wrong;
        ck_assert_int_eq(avro_schema_from_json_literal(OTHER_SCHEMA, &other), 0);
        iface = avro_generic_class_from_schema(other);
        ck_assert_int_eq(avro_generic_value_new(iface, &wrong), 0);
        r = ring_rpc_call(rpc, &wrong, &resp, CALL_TIMEOUT_MS);
        ck_assert_msg(r == -EPROTO || r == -EINVAL, "a request value of another schema: %d (%s)", r,
                      ring_strerror(r));
        r = ring_rpc_call(rpc, &req, &wrong, CALL_TIMEOUT_MS);
        ck_assert_msg(r == -EPROTO || r == -EINVAL || r == -EREMOTEIO,
                      "a response value of another schema: %d (%s)", r, ring_strerror(r));
        avro_value_decref(&wrong);
        avro_value_iface_decref(iface);
        avro_schema_decref(other);
        avro_value_decref(&req);
        avro_value_decref(&resp);

        ring_rpc_close(raw);
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        client_stop_helper(svc, "service");
}
END_TEST

START_TEST(test_no_broker_and_bad_bus) {
        char bus[NAMES_BUS_MAX + 1], *saved = strdup(getenv("RING_BUS") ?: "");
        ring_conn *conn = NULL;
        uint64_t t0;
        int r;

        /* A bus nobody serves, and the fixture's broker once stopped. */
        test_unique_bus(bus, sizeof(bus));
        setenv("RING_BUS", bus, 1);
        t0 = now_ns(CLOCK_MONOTONIC);
        r = ring_conn_open("errors-nobody", 5000, &conn);
        ck_assert_msg(r == -ENOTCONN, "no broker: %d (%s)", r, ring_strerror(r));
        ck_assert_ptr_null(conn);
        ck_assert_msg(client_ms_since(t0) < 1000, "-ENOTCONN took %.1f ms", client_ms_since(t0));

        /* An invalid RING_BUS never falls back to the default bus (libring(3), BUSES). */
        setenv("RING_BUS", "no/such bus", 1);
        r = ring_conn_open("errors-badbus", 5000, &conn);
        ck_assert_msg(r == -EINVAL, "RING_BUS=\"no/such bus\": %d (%s)", r, ring_strerror(r));
        setenv("RING_BUS", "b23456789012345678901234567890123", 1);
        r = ring_conn_open("errors-badbus", 5000, &conn);
        ck_assert_msg(r == -EINVAL, "a 33-character RING_BUS: %d (%s)", r, ring_strerror(r));

        setenv("RING_BUS", saved, 1);
        ck_assert_int_eq(broker_fixture_stop(&broker, NULL), 0);
        t0 = now_ns(CLOCK_MONOTONIC);
        r = ring_conn_open("errors-stopped", 5000, &conn);
        ck_assert_msg(r == -ENOTCONN, "stopped broker: %d (%s)", r, ring_strerror(r));
        ck_assert_msg(client_ms_since(t0) < 1000, "-ENOTCONN took %.1f ms", client_ms_since(t0));
        free(saved);
}
END_TEST

START_TEST(test_bad_arguments_are_einval) {
        ring_conn *conn = client_open("errors-args"), *none = NULL;
        ring_pub *pub = NULL;
        ring_sub *sub = NULL;
        ring_rpc *rpc = NULL;
        ring_fn *fn = NULL;
        uint64_t fp;
        char name[300];
        avro_value_t v;
        uint8_t buf[8];

        ck_assert_int_eq(ring_conn_open(NULL, 1000, &none), -EINVAL);
        ck_assert_int_eq(ring_conn_open("", 1000, &none), -EINVAL);
        ck_assert_int_eq(ring_conn_open("x", 1000, NULL), -EINVAL);
        ck_assert_ptr_null(none);

        ck_assert_int_eq(ring_pub_open(NULL, "c", MSG_SCHEMA, NULL, &pub), -EINVAL);
        ck_assert_int_eq(ring_pub_open(conn, NULL, MSG_SCHEMA, NULL, &pub), -EINVAL);
        ck_assert_int_eq(ring_pub_open(conn, "", MSG_SCHEMA, NULL, &pub), -EINVAL);
        ck_assert_int_eq(ring_pub_open(conn, "c", NULL, NULL, &pub), -EINVAL);
        ck_assert_int_eq(ring_pub_open(conn, "c", MSG_SCHEMA, NULL, NULL), -EINVAL);
        EXPECT_FAIL(ring_pub_open(conn, "c", "{\"type\":\"record\",", NULL, &pub), -EINVAL,
                    "unparsable schema");
        EXPECT_FAIL(ring_pub_open(conn, "c", "{\"type\":\"nosuchtype\"}", NULL, &pub), -EINVAL,
                    "unknown type");
        ck_assert_ptr_null(pub);
        EXPECT_FAIL(ring_schema_fingerprint("[not a schema", &fp), -EINVAL,
                    "fingerprint of garbage");
        ck_assert_int_eq(ring_schema_fingerprint(NULL, &fp), -EINVAL);
        ck_assert_int_eq(ring_schema_fingerprint(MSG_SCHEMA, NULL), -EINVAL);

        ck_assert_int_eq(ring_sub_open(NULL, "c", MSG_SCHEMA, NULL, &sub), -EINVAL);
        ck_assert_int_eq(ring_sub_open(conn, "", MSG_SCHEMA, NULL, &sub), -EINVAL);
        ck_assert_int_eq(ring_sub_open(conn, "c", NULL, NULL, &sub), -EINVAL);
        ck_assert_int_eq(ring_sub_open(conn, "c", MSG_SCHEMA, NULL, NULL), -EINVAL);
        ck_assert_int_eq(ring_sub_recv(NULL, &v, 0), -EINVAL);
        ck_assert_int_eq(ring_sub_recv_raw(NULL, buf, sizeof(buf), 0), -EINVAL);
        ck_assert_int_eq(ring_sub_new_value(NULL, &v), -EINVAL);
        ck_assert_int_eq(ring_sub_resubscribe(NULL, 0), -EINVAL);
        ck_assert_int_eq(ring_sub_set_callback(NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(ring_pub_send(NULL, &v, 0), -EINVAL);
        ck_assert_int_eq(ring_pub_send_raw(NULL, buf, 1, 0), -EINVAL);

        ck_assert_int_eq(ring_fn_expose(conn, "f", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                        NULL, NULL, NULL, &fn),
                         -EINVAL);
        ck_assert_int_eq(ring_fn_expose_value(conn, "f", CLIENT_ADD_REQ_SCHEMA,
                                              CLIENT_ADD_RESP_SCHEMA, NULL, NULL,
                                              NULL, &fn), -EINVAL);
        ck_assert_int_eq(ring_fn_expose(NULL, "f", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                        NULL,
                                        client_add_handler, NULL, &fn), -EINVAL);
        ck_assert_int_eq(ring_fn_expose(conn, "", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                        NULL,
                                        client_add_handler, NULL, &fn), -EINVAL);
        ck_assert_int_eq(ring_fn_serve(NULL, 0), -EINVAL);
        ck_assert_ptr_null(fn);
        ck_assert_int_eq(ring_rpc_open(conn, NULL, CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                       NULL, &rpc), -EINVAL);
        ck_assert_int_eq(ring_rpc_open(conn, "f", NULL, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc),
                         -EINVAL);
        ck_assert_int_eq(ring_rpc_call_raw(NULL, buf, 1, buf, sizeof(buf), 0), -EINVAL);
        ck_assert_int_eq(ring_rpc_call(NULL, &v, &v, 0), -EINVAL);
        ck_assert_int_eq(ring_rpc_call_async(NULL, buf, 1, 0, NULL, NULL), -EINVAL);
        ck_assert_int_eq(ring_rpc_new_request(NULL, &v), -EINVAL);
        ck_assert_int_eq(ring_rpc_new_response(NULL, &v), -EINVAL);
        ck_assert_int_eq(ring_conn_fd(NULL), -EINVAL);
        ck_assert_int_eq(ring_conn_dispatch(NULL), -EINVAL);
        ck_assert_int_eq(ring_conn_run(NULL), -EINVAL);
        ck_assert_ptr_null(rpc);

        /* A name the bus cannot take is refused, with a reason. */
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0;
        int r = ring_pub_open(conn, name, MSG_SCHEMA, NULL, &pub);
        ck_assert_msg(r < 0, "a 299-character channel name was accepted");
        printf("# a 299-character channel name: %s \"%s\"\n", ring_strerror(r),
               ring_last_error_message());
        ck_assert_ptr_null(pub);

        /* NULL is fine for every destructor; the getters say 0. */
        ring_pub_close(NULL);
        ring_sub_close(NULL);
        ring_fn_close(NULL);
        ring_rpc_close(NULL);
        ring_conn_close(NULL);
        ring_conn_stop(NULL);
        ck_assert_uint_eq(ring_pub_fingerprint(NULL), 0);
        ck_assert_uint_eq(ring_sub_fingerprint(NULL), 0);
        ck_assert_uint_eq(ring_conn_client_id(NULL), 0);
        ck_assert_uint_ne(ring_conn_client_id(conn), 0);
        ck_assert_uint_eq(ring_conn_reconnects(conn), 0);
        ring_conn_close(conn);
}
END_TEST

/* Receive errors: -EAGAIN / -ETIMEDOUT when nothing comes, -EMSGSIZE for a short buffer (the
 * message stays), and a value of another schema is refused. */
START_TEST(test_receive_errors) {
        ring_conn *conn = client_open("errors-recv");
        ring_pub *pub = NULL;
        ring_sub *sub = NULL;
        uint8_t buf[16];
        uint64_t t0;
        int r;

        ck_assert_int_eq(ring_pub_open(conn, "plain", MSG_SCHEMA, NULL, &pub), 0);
        ck_assert_int_eq(ring_sub_open(conn, "plain", MSG_SCHEMA, NULL, &sub), 0);
        t0 = now_ns(CLOCK_MONOTONIC);
        ck_assert_int_eq(ring_sub_recv_raw(sub, buf, sizeof(buf), 0), -EAGAIN);
        ck_assert_msg(client_ms_since(t0) < 50, "a receive with timeout 0 took %.1f ms",
                      client_ms_since(t0));
        t0 = now_ns(CLOCK_MONOTONIC);
        ck_assert_int_eq(ring_sub_recv_raw(sub, buf, sizeof(buf), 100), -ETIMEDOUT);
        ck_assert_msg(client_ms_since(t0) >= 95 && client_ms_since(t0) < 2000,
                      "a 100 ms receive took %.1f ms",
                      client_ms_since(t0));

        ck_assert_int_eq(ring_pub_send_raw(pub, buf, client_put_long(buf, 1000000), 1000), 0);
        r = ring_sub_recv_raw(sub, buf, 1, 1000);
        ck_assert_msg(r == -EMSGSIZE, "3 bytes into 1: %d (%s)", r, ring_strerror(r));
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
        ck_assert_msg(r == 3, "the message did not stay after -EMSGSIZE: %d (%s)", r,
                      ring_strerror(r));

        /* Values of another schema are refused on both ends. */
        avro_schema_t other = NULL;
        avro_value_iface_t *iface;
        avro_value_t wrong;
        ck_assert_int_eq(avro_schema_from_json_literal(OTHER_SCHEMA, &other), 0);
        iface = avro_generic_class_from_schema(other);
        ck_assert_int_eq(avro_generic_value_new(iface, &wrong), 0);
        r = ring_pub_send(pub, &wrong, 0);
        ck_assert_msg(r == -EPROTO || r == -EINVAL, "sending a value of another schema: %d (%s)", r,
                      ring_strerror(r));
        ck_assert_int_eq(ring_sub_recv_raw(sub, buf, sizeof(buf), 0), -EAGAIN);
        avro_value_decref(&wrong);
        avro_value_iface_decref(iface);
        avro_schema_decref(other);

        /* Bytes that are not Avro of the schema: the raw path carries them, the value path says
         * -EBADMSG. */
        ck_assert_int_eq(ring_pub_send_raw(pub, "\xff", 1, 1000), 0);
        avro_value_t v;
        ck_assert_int_eq(ring_sub_new_value(sub, &v), 0);
        r = ring_sub_recv(sub, &v, 1000);
        ck_assert_msg(r == -EBADMSG, "undecodable bytes into a value: %d (%s)", r,
                      ring_strerror(r));
        avro_value_decref(&v);

        ring_sub_close(sub);
        ring_pub_close(pub);
        ring_conn_close(conn);
}
END_TEST

START_TEST(test_strerror_covers_every_code) {
        /* Every code of libring(3), ERRORS. */
        static const int codes[] = { EINVAL, ENOTCONN, ENOENT, ECONNRESET, EACCES, ETIMEDOUT,
                                     EPROTO, EAGAIN, EEXIST, EMSGSIZE, EREMOTEIO, EBADMSG, ENOMEM };
        const size_t n = sizeof(codes) / sizeof(codes[0]);

        for (size_t i = 0; i < n; i++) {
                const char *s = ring_strerror(-codes[i]);

                ck_assert_msg(s && s[0], "ring_strerror(-%d) is empty", codes[i]);
                ck_assert_str_eq(s, ring_strerror(codes[i]));
                for (size_t j = 0; j < i; j++)
                        ck_assert_msg(strcmp(s, ring_strerror(-codes[j])) != 0,
                                      "-%d and -%d share \"%s\"", codes[i],
                                      codes[j], s);
                printf("# %s\n", s);
        }
        ck_assert(ring_strerror(0) && ring_strerror(0)[0]);
        ck_assert(ring_strerror(-9999) && ring_strerror(-9999)[0]);
        ck_assert(ring_strerror(INT32_MIN + 1) != NULL);
        ck_assert(ring_version() && ring_version()[0]);
        printf("# libring %s\n", ring_version());
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-errors");
        TCase *tc = tcase_create("errors");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_channel_refusals_have_their_own_codes);
        tcase_add_test(tc, test_function_refusals_have_their_own_codes);
        tcase_add_test(tc, test_no_broker_and_bad_bus);
        tcase_add_test(tc, test_bad_arguments_are_einval);
        tcase_add_test(tc, test_receive_errors);
        tcase_add_test(tc, test_strerror_covers_every_code);
        suite_add_tcase(s, tc);
        return s;
}
