/* SPDX-License-Identifier: MIT */
/*
 * Two buses (RING_BUS) side by side, each with its own real impulsed, through libring's public
 * API (ring.h) only: the same channel and function names live on both without -EEXIST; each
 * subscriber and caller sees only its own bus's publisher and service; a name that exists on
 * one bus is -ENOENT on the other; and killing one bus's broker leaves the other serving, its
 * clients never reconnecting.
 */
#include <errno.h>
#include <inttypes.h>
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

#define NEWS_SCHEMA \
        "{\"type\":\"record\",\"name\":\"News\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"bus\",\"type\":\"long\"},{\"name\":\"seq\",\"type\":\"long\"}]}"
#define MESSAGES 1000
#define CALL_TIMEOUT_MS 5000

static BrokerFixture bus_a, bus_b;

static void setup(void) {
        broker_fixture_init_start(&bus_a);
        broker_fixture_init_start(&bus_b);
        ck_assert_str_ne(bus_a.bus, bus_b.bus);
}

static void teardown(void) {
        broker_fixture_done(&bus_a);
        broker_fixture_done(&bus_b);
}

static void use_bus(const BrokerFixture *f) {
        ck_assert_int_eq(setenv("RING_BUS", f->bus, 1), 0);
}

/* On bus A "add" adds; on bus B the function of that name is "echo" (other schemas), and only
 * bus A has "only-a". */
static const ClientFn fns_a[] = {
        { "add", CLIENT_FN_ADD, NULL },
        { "only-a", CLIENT_FN_ADD, NULL },
};
static const ClientFn fns_b[] = {
        { "add", CLIENT_FN_ECHO, NULL },
};

/* A publisher of "news" on the current bus: 'R' when published, then MESSAGES records tagged
 * with tag on 'G'; leaves on 'D'. */
static pid_t fork_news(ClientPipes *p, int64_t tag) {
        pid_t pid;

        client_pipes_open(p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid > 0)
                return pid;
        ring_conn *conn = NULL;
        ring_pub *pub = NULL;
        uint8_t buf[32];
        char c;
        int r;

        r = ring_conn_open("buses-news", CLIENT_OPEN_TIMEOUT_MS, &conn);
        if (r >= 0)
                r = ring_pub_open(conn, "news", NEWS_SCHEMA, NULL, &pub);
        if (r < 0)
                CLIENT_CHILD_FAIL(2, "publish on bus %s: %s (%s)", getenv("RING_BUS"),
                                  ring_strerror(r),
                                  ring_last_error_message());
        if (write(p->up[1], "R", 1) != 1)
                CLIENT_CHILD_FAIL(3, "write");
        while (client_wait_byte(p->down[0], 60000, &c) == 0 && c == 'G')
                for (int64_t seq = 0; seq < MESSAGES; seq++) {
                        size_t n = client_put_long(buf, tag);
                        n += client_put_long(buf + n, seq);
                        r = ring_pub_send_raw(pub, buf, n, CALL_TIMEOUT_MS);
                        if (r < 0)
                                CLIENT_CHILD_FAIL(4, "send: %s", ring_strerror(r));
                }
        ring_pub_close(pub);
        ring_conn_close(conn);
        _exit(0);
}

static void receive_news(ring_sub *sub, int64_t tag) {
        uint8_t buf[32];
        int64_t got_tag, seq;
        size_t pos;
        int n;

        for (int64_t want = 0; want < MESSAGES; want++) {
                n = ring_sub_recv_raw(sub, buf, sizeof(buf), CALL_TIMEOUT_MS);
                ck_assert_msg(n > 0, "news %" PRId64 " of bus %" PRId64 ": %s", want, tag,
                              ring_strerror(n));
                pos = 0;
                ck_assert(client_get_long(buf, (size_t) n, &pos, &got_tag));
                ck_assert(client_get_long(buf, (size_t) n, &pos, &seq));
                ck_assert_msg(got_tag == tag,
                              "a subscriber of bus %" PRId64 " got news of bus %" PRId64, tag,
                              got_tag);
                ck_assert_int_eq(seq, want);
        }
        n = ring_sub_recv_raw(sub, buf, sizeof(buf), 100);
        ck_assert_msg(n == -ETIMEDOUT, "more news than sent on bus %" PRId64 ": %d", tag, n);
}

START_TEST(test_buses_do_not_see_each_other) {
        ClientPipes pa, pb, na, nb;
        pid_t svc_a, svc_b, news_a, news_b;
        ring_conn *ca, *cb;
        ring_rpc *rpc = NULL;
        ring_sub *sa = NULL, *sb = NULL;
        int64_t sum = 0;
        int r;

        /* Helpers first (this process has no threads yet), each with its bus in RING_BUS. */
        use_bus(&bus_a);
        svc_a = client_start_service(&pa, "buses-service", fns_a, 2, CLIENT_SERVE_RUN);
        news_a = fork_news(&na, 1);
        use_bus(&bus_b);
        svc_b = client_start_service(&pb, "buses-service", fns_b, 1, CLIENT_SERVE_RUN);
        news_b = fork_news(&nb, 2);
        ck_assert_int_eq(client_wait_byte(na.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        ck_assert_int_eq(client_wait_byte(nb.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);

        use_bus(&bus_a);
        ca = client_open("buses-client");
        use_bus(&bus_b);
        cb = client_open("buses-client");

        /* Functions: each bus resolves "add" to its own service. */
        r = ring_rpc_open(ca, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "\"add\" on bus A: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        r = client_call_add(rpc, 40, 2, CALL_TIMEOUT_MS, &sum);
        ck_assert_msg(r == 0 && sum == 42, "add on bus A: %s", ring_strerror(r));
        ring_rpc_close(rpc);
        rpc = NULL;
        r = ring_rpc_open(cb, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == -EPROTO, "\"add\" on bus B (an echo there): %d (%s)", r,
                      ring_strerror(r));
        r = ring_rpc_open(cb, "add", CLIENT_BLOB_SCHEMA, CLIENT_BLOB_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == 0, "\"add\" as echo on bus B: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        ring_rpc_close(rpc);
        rpc = NULL;
        r = ring_rpc_open(cb, "only-a", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA, NULL, &rpc);
        ck_assert_msg(r == -ENOENT, "\"only-a\" on bus B: %d (%s)", r, ring_strerror(r));

        /* Channels: both buses publish "news"; each subscriber gets only its own bus's. */
        r = ring_sub_open(ca, "news", NEWS_SCHEMA, NULL, &sa);
        ck_assert_msg(r == 0, "news on bus A: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        r = ring_sub_open(cb, "news", NEWS_SCHEMA, NULL, &sb);
        ck_assert_msg(r == 0, "news on bus B: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        client_send_byte(na.down[1], 'G');
        client_send_byte(nb.down[1], 'G');
        receive_news(sa, 1);
        receive_news(sb, 2);

        /* A channel only bus A has is unknown on bus B. */
        ring_pub *only = NULL;
        ring_sub *none = NULL;
        ck_assert_int_eq(ring_pub_open(ca, "only-on-a", NEWS_SCHEMA, NULL, &only), 0);
        r = ring_sub_open(cb, "only-on-a", NEWS_SCHEMA, NULL, &none);
        ck_assert_msg(r == -ENOENT, "a channel of bus A seen from bus B: %d (%s)", r,
                      ring_strerror(r));

        client_send_byte(na.down[1], 'D');
        client_send_byte(nb.down[1], 'D');
        client_expect_exit_ok(news_a, "publisher on bus A");
        client_expect_exit_ok(news_b, "publisher on bus B");
        ring_conn_close(ca);
        ring_conn_close(cb);
        client_stop_helper(svc_a, "service on bus A");
        client_stop_helper(svc_b, "service on bus B");

        /* Each bus's segments carry its own name only. */
        char names[2048];
        ck_assert_int_ge(broker_fixture_segments(&bus_a, names, sizeof(names)), 1);
        ck_assert_msg(!strstr(names, bus_b.bus), "bus A lists a segment of bus B: %s", names);
        ck_assert_int_ge(broker_fixture_segments(&bus_b, names, sizeof(names)), 1);
        ck_assert_msg(!strstr(names, bus_a.bus), "bus B lists a segment of bus A: %s", names);
}
END_TEST

/* Bus A's broker dies: bus B's clients keep working and never notice. */
START_TEST(test_one_broker_dies_the_other_serves) {
        ClientPipes pb;
        pid_t svc_b;
        ring_conn *ca, *cb;
        ring_rpc *rpc = NULL;
        int64_t sum = 0;
        int r;

        use_bus(&bus_b);
        svc_b = client_start_service(&pb, "buses-service", fns_a, 1, CLIENT_SERVE_RUN);
        use_bus(&bus_a);
        ca = client_open("buses-a");
        use_bus(&bus_b);
        cb = client_open("buses-b");
        ck_assert_int_eq(ring_rpc_open(cb, "add", CLIENT_ADD_REQ_SCHEMA, CLIENT_ADD_RESP_SCHEMA,
                                       NULL, &rpc), 0);

        broker_fixture_kill(&bus_a);
        for (int64_t i = 0; i < 500; i++) {
                r = client_call_add(rpc, i, 1, CALL_TIMEOUT_MS, &sum);
                ck_assert_msg(r == 0 && sum == i + 1, "bus B after bus A's broker died: %s",
                              ring_strerror(r));
        }
        ck_assert_uint_eq(ring_conn_reconnects(cb), 0);
        /* A new client of bus B still registers; one of bus A cannot. */
        ring_conn *late = NULL;
        ck_assert_int_eq(ring_conn_open("buses-late", CLIENT_OPEN_TIMEOUT_MS, &late), 0);
        ring_conn_close(late);
        use_bus(&bus_a);
        late = NULL;
        /* ring_conn_open(3): a crashed broker's control segment makes this -ETIMEDOUT. */
        r = ring_conn_open("buses-late", 500, &late);
        printf("# a client of bus A after its broker was killed: %s\n", ring_strerror(r));
        ck_assert_msg(r == -ENOTCONN || r == -ETIMEDOUT, "bus A without its broker: %d (%s)", r,
                      ring_strerror(r));
        ck_assert(broker_fixture_alive(&bus_b));

        ring_rpc_close(rpc);
        ring_conn_close(cb);
        ring_conn_close(ca);
        client_stop_helper(svc_b, "service on bus B");
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-buses");
        TCase *tc = tcase_create("buses");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_buses_do_not_see_each_other);
        tcase_add_test(tc, test_one_broker_dies_the_other_serves);
        suite_add_tcase(s, tc);
        return s;
}
