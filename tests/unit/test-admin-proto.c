/* SPDX-License-Identifier: MIT */
/*
 * Tests of src/shared/admin-proto.c: request and response encoding and decoding, the size
 * limits, rejection of malformed JSON, and where the control socket is.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin-proto.h"
#include "macro.h"
#include "test-util.h"

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}
#define _cleanup_json_ _cleanup_(decref_jsonp)

static int decode(const char *s, AdminCommand *ret) {
        return admin_request_decode(s, strlen(s), ret);
}

START_TEST(test_command_names) {
        for (int c = 0; c < _ADMIN_COMMAND_MAX; c++) {
                const char *name = admin_command_to_string((AdminCommand) c);

                ck_assert_ptr_nonnull(name);
                ck_assert_int_eq(admin_command_from_string(name), c);
        }
        ck_assert_str_eq(admin_command_to_string(ADMIN_COMMAND_STATUS), "status");
        ck_assert_str_eq(admin_command_to_string(ADMIN_COMMAND_FUNCTIONS), "functions");
        ck_assert_ptr_null(admin_command_to_string(_ADMIN_COMMAND_MAX));
        ck_assert_ptr_null(admin_command_to_string((AdminCommand) -1));
        ck_assert_int_eq(admin_command_from_string("reboot"), -EOPNOTSUPP);
        ck_assert_int_eq(admin_command_from_string("Status"), -EOPNOTSUPP);
        ck_assert_int_eq(admin_command_from_string(""), -EOPNOTSUPP);
        ck_assert_int_eq(admin_command_from_string(NULL), -EINVAL);
}
END_TEST

START_TEST(test_request_roundtrip) {
        char buf[ADMIN_REQUEST_MAX];

        for (int c = 0; c < _ADMIN_COMMAND_MAX; c++) {
                AdminCommand got = _ADMIN_COMMAND_MAX;
                int n = admin_request_encode((AdminCommand) c, buf, sizeof(buf));

                ck_assert_int_gt(n, 0);
                ck_assert_uint_eq(strlen(buf), (size_t) n);
                ck_assert_int_eq(admin_request_decode(buf, (size_t) n, &got), 0);
                ck_assert_int_eq(got, c);
        }
        ck_assert_int_eq(admin_request_encode(ADMIN_COMMAND_STATUS, buf, 5), -ENOBUFS);
        ck_assert_int_eq(admin_request_encode(_ADMIN_COMMAND_MAX, buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(admin_request_encode(ADMIN_COMMAND_STATUS, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_request_decode) {
        AdminCommand c = _ADMIN_COMMAND_MAX;

        ck_assert_int_eq(decode("{\"command\":\"clients\"}", &c), 0);
        ck_assert_int_eq(c, ADMIN_COMMAND_CLIENTS);
        /* Whitespace, and members a later version may add, are fine. */
        ck_assert_int_eq(decode(" { \"version\": 2, \"command\" : \"channels\" } \n", &c), 0);
        ck_assert_int_eq(c, ADMIN_COMMAND_CHANNELS);
        /* Without the terminating NUL: the length counts, not the C string. */
        ck_assert_int_eq(admin_request_decode("{\"command\":\"status\"}garbage", 20, &c), 0);
        ck_assert_int_eq(c, ADMIN_COMMAND_STATUS);

        ck_assert_int_eq(decode("{\"command\":\"shutdown\"}", &c), -EOPNOTSUPP);
        ck_assert_int_eq(c, ADMIN_COMMAND_STATUS);
}
END_TEST

START_TEST(test_request_malformed) {
        static const char *const bad[] = {
                "",
                "status",
                "{",
                "{\"command\":\"status\"",
                "{\"command\":\"status\"}}",
                "{\"command\":\"status\"} {}",
                "[\"status\"]",
                "\"status\"",
                "null",
                "{}",
                "{\"cmd\":\"status\"}",
                "{\"command\":1}",
                "{\"command\":null}",
                "{\"command\":[\"status\"]}",
                /* Two readers could pick different duplicates. */
                "{\"command\":\"status\",\"command\":\"clients\"}",
                /* NUL inside a string would make the C string differ from the JSON one. */
                "{\"command\":\"status\\u0000x\"}",
                "{\"command\":\"stat\xff\"}",
                "{'command':'status'}",
        };
        AdminCommand c = ADMIN_COMMAND_FUNCTIONS;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(decode(bad[i], &c) == -EBADMSG, "accepted [%zu] %s", i, bad[i]);
        /* A NUL byte in the message itself. */
        ck_assert_int_eq(admin_request_decode("{\"command\":\"status\"}\0", 21, &c), -EBADMSG);
        ck_assert_int_eq(c, ADMIN_COMMAND_FUNCTIONS);
        ck_assert_int_eq(admin_request_decode(NULL, 0, &c), -EINVAL);
        ck_assert_int_eq(admin_request_decode("{}", 2, NULL), -EINVAL);
}
END_TEST

START_TEST(test_request_limit) {
        char buf[ADMIN_REQUEST_MAX + 2];
        AdminCommand c;
        int n;

        /* Valid JSON padded with spaces to exactly the limit, then one byte over. */
        n = snprintf(buf, sizeof(buf), "{\"command\":\"status\"}");
        memset(buf + n, ' ', sizeof(buf) - (size_t) n);
        ck_assert_int_eq(admin_request_decode(buf, ADMIN_REQUEST_MAX, &c), 0);
        ck_assert_int_eq(c, ADMIN_COMMAND_STATUS);
        ck_assert_int_eq(admin_request_decode(buf, ADMIN_REQUEST_MAX + 1, &c), -EMSGSIZE);
}
END_TEST

START_TEST(test_response_ok) {
        _cleanup_json_ json_t *result = json_pack("{s:i, s:s, s:[i,i]}", "clients", 3, "bus", "b",
                                                  "list", 1, 2);
        _cleanup_free_ char *buf = NULL;
        AdminResponse r = {};
        size_t n = 0;

        ck_assert_int_eq(admin_response_encode_ok(result, ADMIN_RESPONSE_MAX, &buf, &n), 0);
        ck_assert_uint_eq(strlen(buf), n);
        /* One line: a message, not a document. */
        ck_assert_ptr_null(strchr(buf, '\n'));
        ck_assert_int_eq(admin_response_decode(buf, n, &r), 0);
        ck_assert(r.ok);
        ck_assert_ptr_null(r.message);
        ck_assert(json_equal(r.result, result));
        admin_response_done(&r);
        ck_assert_ptr_null(r.result);
        /* The caller's object is untouched and still its own. */
        ck_assert_int_eq(result->refcount, 1);
}
END_TEST

START_TEST(test_response_limit) {
        _cleanup_json_ json_t *result = json_object();
        _cleanup_free_ char *big = malloc(ADMIN_RESPONSE_MAX);
        char *buf = NULL;
        size_t n = 0;

        ck_assert_ptr_nonnull(big);
        memset(big, 'a', ADMIN_RESPONSE_MAX - 1);
        big[ADMIN_RESPONSE_MAX - 1] = '\0';
        ck_assert_int_eq(json_object_set_new(result, "s", json_string(big)), 0);
        ck_assert_int_eq(admin_response_encode_ok(result, ADMIN_RESPONSE_MAX, &buf, &n), -EMSGSIZE);
        /* A smaller caller limit counts, a larger one is capped. */
        ck_assert_int_eq(admin_response_encode_ok(result, SIZE_MAX, &buf, &n), -EMSGSIZE);
        json_object_set_new(result, "s", json_string("small"));
        ck_assert_int_eq(admin_response_encode_ok(result, 10, &buf, &n), -EMSGSIZE);
        ck_assert_int_eq(admin_response_encode_ok(result, 100, &buf, &n), 0);
        free(buf);
}
END_TEST

START_TEST(test_response_not_object) {
        _cleanup_json_ json_t *array = json_array();
        char *buf = NULL;
        size_t n = 0;

        ck_assert_int_eq(admin_response_encode_ok(array, 100, &buf, &n), -EINVAL);
        ck_assert_int_eq(admin_response_encode_ok(NULL, 100, &buf, &n), -EINVAL);
        ck_assert_int_eq(admin_response_encode_error(-EIO, NULL, &buf, &n), -EINVAL);
        ck_assert_ptr_null(buf);
}
END_TEST

START_TEST(test_response_decode_limit) {
        _cleanup_free_ char *buf = malloc(ADMIN_RESPONSE_MAX + 1);
        AdminResponse r;

        ck_assert_ptr_nonnull(buf);
        memset(buf, ' ', ADMIN_RESPONSE_MAX + 1);
        memcpy(buf, "{\"ok\":true,\"result\":{}}", 23);
        ck_assert_int_eq(admin_response_decode(buf, ADMIN_RESPONSE_MAX, &r), 0);
        admin_response_done(&r);
        ck_assert_int_eq(admin_response_decode(buf, ADMIN_RESPONSE_MAX + 1, &r), -EMSGSIZE);
}
END_TEST

START_TEST(test_response_error) {
        static const struct {
                int error;
                int decoded;
                const char *code;
        } cases[] = {
                { -EACCES, -EACCES, "\"EACCES\"" },
                { -EBADMSG, -EBADMSG, "\"EBADMSG\"" },
                { -EOPNOTSUPP, -EOPNOTSUPP, "\"EOPNOTSUPP\"" },
                { -EMSGSIZE, -EMSGSIZE, "\"EMSGSIZE\"" },
                { -EBUSY, -EBUSY, "\"EBUSY\"" },
                { -EIO, -EIO, "\"EIO\"" },
                /* Errors without a name of their own in the protocol are EIO. */
                { -ENOSPC, -EIO, "\"EIO\"" },
                { 0, -EIO, "\"EIO\"" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *buf = NULL;
                AdminResponse r = {};
                size_t n;

                ck_assert_int_eq(admin_response_encode_error(cases[i].error, "permission denied",
                                                             &buf, &n), 0);
                ck_assert_ptr_nonnull(strstr(buf, cases[i].code));
                ck_assert_int_eq(admin_response_decode(buf, n, &r), 0);
                ck_assert(!r.ok);
                ck_assert_ptr_null(r.result);
                ck_assert_int_eq(r.error, cases[i].decoded);
                ck_assert_str_eq(r.message, "permission denied");
                admin_response_done(&r);
        }
}
END_TEST

START_TEST(test_response_error_lenient) {
        AdminResponse r = {};
        const char *s;

        /* From a broker of another version: an unknown code, or none, or no message. */
        s = "{\"ok\":false,\"error\":\"new thing\",\"code\":\"ENEWTHING\"}";
        ck_assert_int_eq(admin_response_decode(s, strlen(s), &r), 0);
        ck_assert_int_eq(r.error, -EIO);
        ck_assert_str_eq(r.message, "new thing");
        admin_response_done(&r);
        s = "{\"ok\":false}";
        ck_assert_int_eq(admin_response_decode(s, strlen(s), &r), 0);
        ck_assert_int_eq(r.error, -EIO);
        ck_assert_str_eq(r.message, "unknown error");
        admin_response_done(&r);
        admin_response_done(NULL);
}
END_TEST

START_TEST(test_response_malformed) {
        static const char *const bad[] = {
                "",
                "{",
                "[]",
                "true",
                "{}",
                "{\"ok\":1,\"result\":{}}",
                "{\"ok\":\"true\",\"result\":{}}",
                "{\"ok\":true}",
                "{\"ok\":true,\"result\":[]}",
                "{\"ok\":true,\"result\":null}",
                "{\"ok\":true,\"ok\":false,\"result\":{}}",
                "{\"ok\":true,\"result\":{\"a\":\"\\u0000\"}}",
        };
        AdminResponse r = { .ok = true };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(admin_response_decode(bad[i], strlen(bad[i]), &r) == -EBADMSG,
                              "accepted [%zu] %s", i, bad[i]);
        /* Outputs are set only on success. */
        ck_assert(r.ok);
        ck_assert_ptr_null(r.result);
}
END_TEST

START_TEST(test_json_string) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "sensor", "sensor" },
                { "", "" },
                { "gr\xc3\xbc\xc3\x9f \xe6\x97\xa5 \xf0\x9f\x99\x82",
                  "gr\xc3\xbc\xc3\x9f \xe6\x97\xa5 \xf0\x9f\x99\x82" },
                /* Controls are valid UTF-8: JSON escapes them, they are kept. */
                { "a\nb\x1b", "a\nb\x1b" },
                { "a\xff" "b", "a\xef\xbf\xbd" "b" },
                { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },
                { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
                { "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
                { "end\xe2\x82", "end\xef\xbf\xbd\xef\xbf\xbd" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_json_ json_t *j = admin_json_string(cases[i].in);

                ck_assert_ptr_nonnull(j);
                ck_assert_msg(json_is_string(j), "case %zu", i);
                ck_assert_msg(strcmp(json_string_value(j), cases[i].out) == 0, "case %zu", i);
        }
        ck_assert(json_is_null(admin_json_string(NULL)));
}
END_TEST

START_TEST(test_socket_path) {
        char buf[ADMIN_SOCKET_PATH_MAX], small[8], big[300], out[150];

        unsetenv(ADMIN_SOCKET_ENV);
        unsetenv("RING_BUS");
        ck_assert_int_eq(admin_socket_path(NULL, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/run/impulsed/control");
        ck_assert_int_eq(admin_socket_path("", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/run/impulsed/control");
        ck_assert_int_eq(admin_socket_path("test-1", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/run/impulsed/control-test-1");

        setenv("RING_BUS", "envbus", 1);
        ck_assert_int_eq(admin_socket_path(NULL, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/run/impulsed/control-envbus");
        /* An explicit bus wins over $RING_BUS. */
        ck_assert_int_eq(admin_socket_path("other", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/run/impulsed/control-other");

        /* A bus name must not lead out of /run/impulsed. */
        ck_assert_int_eq(admin_socket_path("../../etc/x", buf, sizeof(buf)), -EINVAL);
        setenv("RING_BUS", "a/b", 1);
        ck_assert_int_eq(admin_socket_path(NULL, buf, sizeof(buf)), -EINVAL);

        /* $RING_ADMIN_SOCKET wins over everything, even an invalid bus. */
        setenv(ADMIN_SOCKET_ENV, "/tmp/x/control", 1);
        ck_assert_int_eq(admin_socket_path(NULL, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/tmp/x/control");
        setenv(ADMIN_SOCKET_ENV, "", 1);
        unsetenv("RING_BUS");
        ck_assert_int_eq(admin_socket_path(NULL, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/run/impulsed/control");

        memset(big, 'a', sizeof(big) - 1);
        big[0] = '/';
        big[sizeof(big) - 1] = '\0';
        setenv(ADMIN_SOCKET_ENV, big, 1);
        ck_assert_int_eq(admin_socket_path(NULL, buf, sizeof(buf)), -ENAMETOOLONG);
        /* 107 bytes fit a sockaddr_un with its NUL, 108 do not. */
        big[107] = '\0';
        setenv(ADMIN_SOCKET_ENV, big, 1);
        ck_assert_int_eq(admin_socket_path(NULL, out, sizeof(out)), 0);
        big[107] = 'a';
        big[108] = '\0';
        setenv(ADMIN_SOCKET_ENV, big, 1);
        ck_assert_int_eq(admin_socket_path(NULL, out, sizeof(out)), -ENAMETOOLONG);
        unsetenv(ADMIN_SOCKET_ENV);
        ck_assert_int_eq(admin_socket_path(NULL, small, sizeof(small)), -ENAMETOOLONG);
        ck_assert_int_eq(admin_socket_path(NULL, NULL, 0), -EINVAL);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("admin-proto");
        TCase *tc;

        tc = tcase_create("request");
        tcase_add_test(tc, test_command_names);
        tcase_add_test(tc, test_request_roundtrip);
        tcase_add_test(tc, test_request_decode);
        tcase_add_test(tc, test_request_malformed);
        tcase_add_test(tc, test_request_limit);
        suite_add_tcase(s, tc);

        tc = tcase_create("response");
        tcase_add_test(tc, test_response_ok);
        tcase_add_test(tc, test_response_limit);
        tcase_add_test(tc, test_response_not_object);
        tcase_add_test(tc, test_response_decode_limit);
        tcase_add_test(tc, test_response_error);
        tcase_add_test(tc, test_response_error_lenient);
        tcase_add_test(tc, test_response_malformed);
        tcase_add_test(tc, test_json_string);
        suite_add_tcase(s, tc);

        tc = tcase_create("socket-path");
        tcase_add_test(tc, test_socket_path);
        suite_add_tcase(s, tc);
        return s;
}
