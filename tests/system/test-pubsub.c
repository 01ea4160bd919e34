/* SPDX-License-Identifier: MIT */
/*
 * libring publish/subscribe against the real impulsed, through the public API (ring.h) only:
 * 100,000 records from a publisher process reach a subscriber process none lost, duplicated or
 * reordered; avro-c values and raw Avro bytes interoperate in both directions; a full channel
 * applies backpressure (a blocking send waits, a non-blocking one fails at once) and never
 * drops a message; records sent before the publisher exits are still delivered.
 * Helpers are forked before this process opens a connection (libring starts threads).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <avro.h>
#include <check.h>

#include "broker-fixture.h"
#include "client-util.h"
#include "ring.h"
#include "test-util.h"
#include "time-util.h"

#define SEQ_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Seq\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"},{\"name\":\"payload\",\"type\":\"bytes\"}]}"
#define RICH_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Rich\",\"namespace\":\"ring.test\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"},{\"name\":\"host\",\"type\":\"string\"}," \
        "{\"name\":\"value\",\"type\":\"double\"},{\"name\":\"ok\",\"type\":\"boolean\"}," \
        "{\"name\":\"opt\",\"type\":[\"null\",\"long\"]}," \
        "{\"name\":\"samples\",\"type\":{\"type\":\"array\",\"items\":\"int\"}}]}"

#define BULK_COUNT 100000
#define RICH_COUNT 2000
#define TAIL_COUNT 5000
#define PAYLOAD_MAX 64
#define RECORD_MAX (2 * 10 + PAYLOAD_MAX)
#define SEND_TIMEOUT_MS 10000
#define RECV_TIMEOUT_MS 10000
#define SMALL_ARENA "4096"

static BrokerFixture broker;
static uint64_t seed;

static void setup(void) {
        broker_fixture_init(&broker);
        seed = test_seed();
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

/* ---- records of the Seq schema, raw ---- */

/* The payload of record seq: its length and bytes follow from seq and the seed, so the
 * subscriber can check every byte without being told. */
static size_t payload_len(int64_t seq) {
        return (size_t) (((uint64_t) seq * 2654435761u ^ seed) % (PAYLOAD_MAX + 1));
}

static uint8_t payload_byte(int64_t seq, size_t i) {
        return (uint8_t) ((uint64_t) seq * 31 + i * 7 + seed);
}

static size_t encode_seq(uint8_t *buf, int64_t seq) {
        size_t n = client_put_long(buf, seq), len = payload_len(seq);

        n += client_put_long(buf + n, (int64_t) len);
        for (size_t i = 0; i < len; i++)
                buf[n + i] = payload_byte(seq, i);
        return n + len;
}

/* Decodes a Seq record and checks its payload; returns its seq or -1 (with a message). */
static int64_t check_seq(const uint8_t *buf, size_t len, char *why, size_t why_size) {
        size_t pos = 0;
        int64_t seq, plen;

        if (!client_get_long(buf, len, &pos, &seq) || !client_get_long(buf, len, &pos, &plen)) {
                snprintf(why, why_size, "undecodable record of %zu bytes", len);
                return -1;
        }
        if (plen < 0 || (size_t) plen != len - pos || (size_t) plen != payload_len(seq)) {
                snprintf(why, why_size,
                         "seq %" PRId64 ": payload of %" PRId64 " bytes in a record of %zu, "
                         "expected %zu", seq, plen, len, payload_len(seq));
                return -1;
        }
        for (size_t i = 0; i < (size_t) plen; i++)
                if (buf[pos + i] != payload_byte(seq, i)) {
                        snprintf(why, why_size, "seq %" PRId64 ": payload byte %zu differs", seq,
                                 i);
                        return -1;
                }
        return seq;
}

/* Publishes "seq" and sends records first..first+count-1 raw, then waits for the test's 'D'
 * (unless linger is false) before it leaves. */
static _Noreturn void seq_publisher(ClientPipes *p, int64_t count, bool linger) {
        ring_conn *conn = NULL;
        ring_pub *pub = NULL;
        uint8_t buf[RECORD_MAX];
        int r;

        r = ring_conn_open("pubsub-publisher", 5000, &conn);
        if (r < 0)
                CLIENT_CHILD_FAIL(2, "ring_conn_open: %s", ring_strerror(r));
        r = ring_pub_open(conn, "seq", SEQ_SCHEMA, NULL, &pub);
        if (r < 0)
                CLIENT_CHILD_FAIL(3, "ring_pub_open: %s (%s)", ring_strerror(r),
                                  ring_last_error_message());
        if (write(p->up[1], "R", 1) != 1)
                CLIENT_CHILD_FAIL(4, "write ready");
        for (int64_t seq = 0; seq < count; seq++) {
                r = ring_pub_send_raw(pub, buf, encode_seq(buf, seq), SEND_TIMEOUT_MS);
                if (r < 0)
                        CLIENT_CHILD_FAIL(5, "ring_pub_send_raw of seq %" PRId64 ": %s", seq,
                                          ring_strerror(r));
        }
        if (linger && client_wait_byte(p->down[0], 30000, NULL) < 0)
                CLIENT_CHILD_FAIL(6, "no word from the test");
        ring_pub_close(pub);
        ring_conn_close(conn);
        _exit(0);
}

static void receive_seqs(ring_sub *sub, int64_t first, int64_t count) {
        uint8_t buf[RECORD_MAX + 16];
        char why[160];
        int n;

        for (int64_t want = first; want < first + count; want++) {
                n = ring_sub_recv_raw(sub, buf, sizeof(buf), RECV_TIMEOUT_MS);
                ck_assert_msg(n >= 0, "record %" PRId64 " (after %" PRId64 " received): %s", want,
                              want - first,
                              ring_strerror(n));
                int64_t seq = check_seq(buf, (size_t) n, why, sizeof(why));
                ck_assert_msg(seq >= 0, "record %" PRId64 ": %s", want, why);
                ck_assert_msg(seq == want, "expected seq %" PRId64 ", got %" PRId64 " (%s)", want,
                              seq,
                              seq < want ? "duplicated or reordered" : "lost or reordered");
        }
}

/* The issue's headline: 100,000 records across processes, none lost, duplicated or reordered.
 * The arena (1 MiB) holds only part of them, so the publisher also meets backpressure. */
START_TEST(test_100k_records_across_processes) {
        uint8_t buf[RECORD_MAX + 16];
        ring_conn *conn;
        ring_sub *sub = NULL;
        uint64_t t0;
        ClientPipes p;
        pid_t pid;
        int r;

        broker_fixture_start(&broker, NULL);
        client_pipes_open(&p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
                seq_publisher(&p, BULK_COUNT, true);
        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);

        conn = client_open("pubsub-subscriber");
        r = ring_sub_open(conn, "seq", SEQ_SCHEMA, NULL, &sub);
        ck_assert_msg(r == 0, "ring_sub_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        t0 = now_ns(CLOCK_MONOTONIC);
        receive_seqs(sub, 0, BULK_COUNT);
        printf("# %d records in %.1f ms\n", BULK_COUNT,
               (double) (now_ns(CLOCK_MONOTONIC) - t0) / 1e6);

        /* Nothing more: a duplicate would show up here. */
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 200);
        ck_assert_msg(r == -ETIMEDOUT, "after the last record: %d (%s)", r,
                      r < 0 ? ring_strerror(r) : "a record");
        client_send_byte(p.down[1], 'D');
        client_expect_exit_ok(pid, "publisher");
        ring_sub_close(sub);
        ring_conn_close(conn);
}
END_TEST

/* Records a publisher sent before it closed and exited are all delivered. */
START_TEST(test_records_outlive_their_publisher) {
        uint8_t buf[RECORD_MAX + 16];
        ring_conn *conn;
        ring_sub *sub = NULL;
        ClientPipes p;
        pid_t pid;
        int r;

        broker_fixture_start(&broker, NULL);
        client_pipes_open(&p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* Subscribed before it sends: wait for the test's go. */
                ring_conn *c = NULL;
                ring_pub *pub = NULL;
                uint8_t rec[RECORD_MAX];

                if (ring_conn_open("pubsub-short-lived", 5000, &c) < 0 ||
                    ring_pub_open(c, "seq", SEQ_SCHEMA, NULL, &pub) < 0)
                        CLIENT_CHILD_FAIL(2, "cannot publish");
                if (write(p.up[1], "R", 1) != 1 || client_wait_byte(p.down[0], 30000, NULL) < 0)
                        CLIENT_CHILD_FAIL(3, "no go");
                for (int64_t seq = 0; seq < TAIL_COUNT; seq++) {
                        r = ring_pub_send_raw(pub, rec, encode_seq(rec, seq), SEND_TIMEOUT_MS);
                        if (r < 0)
                                CLIENT_CHILD_FAIL(4, "send %" PRId64 ": %s", seq, ring_strerror(r));
                }
                ring_pub_close(pub);
                ring_conn_close(c);
                _exit(0);
        }
        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        conn = client_open("pubsub-tail");
        r = ring_sub_open(conn, "seq", SEQ_SCHEMA, NULL, &sub);
        ck_assert_msg(r == 0, "ring_sub_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        client_send_byte(p.down[1], 'G');
        /* The publisher is gone before we read anything. */
        client_expect_exit_ok(pid, "publisher");
        receive_seqs(sub, 0, TAIL_COUNT);
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 100);
        ck_assert_msg(r == -ETIMEDOUT || r == -ECONNRESET, "after the last record: %d", r);
        ring_sub_close(sub);
        ring_conn_close(conn);
}
END_TEST

/* ---- avro-c values and raw bytes ---- */

static void set_rich(avro_value_t *v, int64_t seq) {
        avro_value_t f, branch, item;
        char host[32];

        snprintf(host, sizeof(host), "host-%" PRId64, seq % 97);
        avro_value_get_by_name(v, "seq", &f, NULL);
        avro_value_set_long(&f, seq);
        avro_value_get_by_name(v, "host", &f, NULL);
        avro_value_set_string(&f, host);
        avro_value_get_by_name(v, "value", &f, NULL);
        avro_value_set_double(&f, (double) seq * 0.5 + 0.25);
        avro_value_get_by_name(v, "ok", &f, NULL);
        avro_value_set_boolean(&f, seq % 3 == 0);
        avro_value_get_by_name(v, "opt", &f, NULL);
        if (seq % 2) {
                avro_value_set_branch(&f, 1, &branch);
                avro_value_set_long(&branch, -seq);
        } else {
                avro_value_set_branch(&f, 0, &branch);
                avro_value_set_null(&branch);
        }
        avro_value_get_by_name(v, "samples", &f, NULL);
        avro_value_reset(&f);
        for (int64_t i = 0; i < seq % 5; i++) {
                avro_value_append(&f, &item, NULL);
                avro_value_set_int(&item, (int32_t) (seq + i));
        }
}

static void check_rich(avro_value_t *v, int64_t want) {
        avro_value_t f, branch, item;
        const char *host;
        char host_want[32];
        int64_t l;
        double d;
        int b, disc;
        int32_t n;
        size_t len, count;

        snprintf(host_want, sizeof(host_want), "host-%" PRId64, want % 97);
        avro_value_get_by_name(v, "seq", &f, NULL);
        avro_value_get_long(&f, &l);
        ck_assert_msg(l == want, "expected seq %" PRId64 ", got %" PRId64, want, l);
        avro_value_get_by_name(v, "host", &f, NULL);
        avro_value_get_string(&f, &host, &len);
        ck_assert_str_eq(host, host_want);
        avro_value_get_by_name(v, "value", &f, NULL);
        avro_value_get_double(&f, &d);
        ck_assert(d == (double) want * 0.5 + 0.25);
        avro_value_get_by_name(v, "ok", &f, NULL);
        avro_value_get_boolean(&f, &b);
        ck_assert_int_eq(!!b, want % 3 == 0);
        avro_value_get_by_name(v, "opt", &f, NULL);
        avro_value_get_discriminant(&f, &disc);
        ck_assert_int_eq(disc, want % 2 ? 1 : 0);
        if (disc == 1) {
                avro_value_get_current_branch(&f, &branch);
                avro_value_get_long(&branch, &l);
                ck_assert(l == -want);
        }
        avro_value_get_by_name(v, "samples", &f, NULL);
        avro_value_get_size(&f, &count);
        ck_assert_uint_eq(count, (size_t) (want % 5));
        for (size_t i = 0; i < count; i++) {
                avro_value_get_by_index(&f, i, &item, NULL);
                avro_value_get_int(&item, &n);
                ck_assert_int_eq(n, (int32_t) (want + (int64_t) i));
        }
}

/* Encodes a value to Avro bytes with avro-c (what a raw user would do). */
static size_t encode_value(avro_value_t *v, uint8_t *buf, size_t size) {
        avro_writer_t w = avro_writer_memory((const char *) buf, (int64_t) size);
        size_t len;

        ck_assert_ptr_nonnull(w);
        ck_assert_int_eq(avro_value_write(w, v), 0);
        len = (size_t) avro_writer_tell(w);
        avro_writer_free(w);
        return len;
}

/* Values and raw bytes interoperate: the publisher process alternates ring_pub_send (avro-c
 * value) and ring_pub_send_raw (bytes encoded by avro-c); the subscriber alternates, offset by
 * one, ring_sub_recv into a value and ring_sub_recv_raw decoded by avro-c. */
START_TEST(test_values_and_raw_interoperate) {
        avro_schema_t schema = NULL;
        avro_value_iface_t *iface;
        avro_value_t got, decoded;
        uint8_t buf[4096];
        ring_conn *conn;
        ring_sub *sub = NULL;
        ClientPipes p;
        pid_t pid;
        int r;

        broker_fixture_start(&broker, NULL);
        client_pipes_open(&p);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                ring_conn *c = NULL;
                ring_pub *pub = NULL;
                avro_schema_t s = NULL;
                avro_value_iface_t *cls;
                avro_value_t v;
                uint8_t rec[4096];

                if (ring_conn_open("pubsub-values", 5000, &c) < 0 ||
                    ring_pub_open(c, "rich", RICH_SCHEMA, NULL, &pub) < 0)
                        CLIENT_CHILD_FAIL(2, "cannot publish");
                if (avro_schema_from_json_literal(RICH_SCHEMA, &s) != 0)
                        CLIENT_CHILD_FAIL(3, "schema: %s", avro_strerror());
                cls = avro_generic_class_from_schema(s);
                avro_generic_value_new(cls, &v);
                if (write(p.up[1], "R", 1) != 1)
                        CLIENT_CHILD_FAIL(4, "write");
                for (int64_t seq = 0; seq < RICH_COUNT; seq++) {
                        set_rich(&v, seq);
                        if (seq % 2 == 0)
                                r = ring_pub_send(pub, &v, SEND_TIMEOUT_MS);
                        else {
                                avro_writer_t w = avro_writer_memory((const char *) rec,
                                                                     sizeof(rec));
                                avro_value_write(w, &v);
                                r = ring_pub_send_raw(pub, rec, (size_t) avro_writer_tell(w),
                                                      SEND_TIMEOUT_MS);
                                avro_writer_free(w);
                        }
                        if (r < 0)
                                CLIENT_CHILD_FAIL(5, "send %" PRId64 ": %s", seq, ring_strerror(r));
                }
                if (client_wait_byte(p.down[0], 30000, NULL) < 0)
                        CLIENT_CHILD_FAIL(6, "no word from the test");
                avro_value_decref(&v);
                avro_value_iface_decref(cls);
                avro_schema_decref(s);
                ring_pub_close(pub);
                ring_conn_close(c);
                _exit(0);
        }
        ck_assert_int_eq(client_wait_byte(p.up[0], CLIENT_READY_TIMEOUT_MS, NULL), 0);
        conn = client_open("pubsub-values-sub");
        r = ring_sub_open(conn, "rich", RICH_SCHEMA, NULL, &sub);
        ck_assert_msg(r == 0, "ring_sub_open: %s (%s)", ring_strerror(r),
                      ring_last_error_message());
        ck_assert_int_eq(ring_sub_new_value(sub, &got), 0);
        ck_assert_int_eq(avro_schema_from_json_literal(RICH_SCHEMA, &schema), 0);
        iface = avro_generic_class_from_schema(schema);
        ck_assert_int_eq(avro_generic_value_new(iface, &decoded), 0);

        for (int64_t seq = 0; seq < RICH_COUNT; seq++) {
                if (seq % 3 != 2) {
                        r = ring_sub_recv(sub, &got, RECV_TIMEOUT_MS);
                        ck_assert_msg(r == 0, "ring_sub_recv of %" PRId64 ": %s", seq,
                                      ring_strerror(r));
                        check_rich(&got, seq);
                } else {
                        r = ring_sub_recv_raw(sub, buf, sizeof(buf), RECV_TIMEOUT_MS);
                        ck_assert_msg(r > 0, "ring_sub_recv_raw of %" PRId64 ": %s", seq,
                                      ring_strerror(r));
                        avro_reader_t rd = avro_reader_memory((const char *) buf, r);
                        avro_value_reset(&decoded);
                        ck_assert_int_eq(avro_value_read(rd, &decoded), 0);
                        avro_reader_free(rd);
                        check_rich(&decoded, seq);
                        /* The same bytes as avro-c writes for the value we expect. */
                        set_rich(&decoded, seq);
                        uint8_t again[4096];
                        ck_assert_uint_eq(encode_value(&decoded, again, sizeof(again)), (size_t) r);
                        ck_assert(memcmp(again, buf, (size_t) r) == 0);
                }
        }
        client_send_byte(p.down[1], 'D');
        client_expect_exit_ok(pid, "publisher");
        avro_value_decref(&got);
        avro_value_decref(&decoded);
        avro_value_iface_decref(iface);
        avro_schema_decref(schema);
        ring_sub_close(sub);
        ring_conn_close(conn);
}
END_TEST

/* The subscriber's and publisher's fingerprints are the schema's CRC-64-AVRO; a schema written
 * differently (spacing, attribute order, a doc string) has the same canonical form and
 * subscribes fine. */
START_TEST(test_fingerprint_is_canonical) {
        const char *respelled =
                "{ \"namespace\" : \"ring.test\", \"name\":\"Seq\", \"type\":\"record\","
                "  \"doc\":\"same\", \"fields\":[ {\"type\":\"long\",\"name\":\"seq\"},"
                "  {\"name\":\"payload\",\"type\":\"bytes\"} ] }";
        ring_conn *conn;
        ring_pub *pub = NULL;
        ring_sub *sub = NULL;
        uint64_t fp = 0, fp2 = 0;
        uint8_t buf[RECORD_MAX];
        char why[160];
        int n;

        broker_fixture_start(&broker, NULL);
        ck_assert_int_eq(ring_schema_fingerprint(SEQ_SCHEMA, &fp), 0);
        ck_assert_int_eq(ring_schema_fingerprint(respelled, &fp2), 0);
        ck_assert_uint_eq(fp, fp2);
        conn = client_open("pubsub-fp");
        ck_assert_int_eq(ring_pub_open(conn, "seq", SEQ_SCHEMA, NULL, &pub), 0);
        n = ring_sub_open(conn, "seq", respelled, NULL, &sub);
        ck_assert_msg(n == 0, "ring_sub_open with a respelled schema: %s (%s)", ring_strerror(n),
                      ring_last_error_message());
        ck_assert_uint_eq(ring_pub_fingerprint(pub), fp);
        ck_assert_uint_eq(ring_sub_fingerprint(sub), fp);
        ck_assert_int_eq(ring_pub_send_raw(pub, buf, encode_seq(buf, 7), 1000), 0);
        n = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(check_seq(buf, (size_t) n, why, sizeof(why)), 7);
        ring_sub_close(sub);
        ring_pub_close(pub);
        ring_conn_close(conn);
}
END_TEST

/* ---- backpressure ---- */

typedef struct BlockedSend {
        ring_pub *pub;
        int64_t seq;
        _Atomic bool done;
        int result;
        uint64_t returned_ns;
} BlockedSend;

static size_t encode_fixed(uint8_t *buf, int64_t seq) {
        /* A fixed 100-byte payload, so that every record needs the same room. */
        size_t n = client_put_long(buf, seq);

        n += client_put_long(buf + n, 100);
        memset(buf + n, (int) (seq & 0xff), 100);
        return n + 100;
}

static void *blocked_send(void *arg) {
        BlockedSend *b = arg;
        uint8_t buf[128];

        b->result = ring_pub_send_raw(b->pub, buf, encode_fixed(buf, b->seq), SEND_TIMEOUT_MS);
        b->returned_ns = now_ns(CLOCK_MONOTONIC);
        atomic_store(&b->done, true);
        return NULL;
}

/* Waits up to ms for flag; true if it became set. */
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

static int64_t seq_of(const uint8_t *buf, size_t len) {
        size_t pos = 0;
        int64_t seq = -1;

        ck_assert(client_get_long(buf, len, &pos, &seq));
        return seq;
}

START_TEST(test_full_channel_applies_backpressure) {
        static const char *const args[] = { "--arena-capacity", SMALL_ARENA, NULL };
        uint8_t buf[16384];
        ring_conn *pc, *sc;
        ring_pub *pub = NULL;
        ring_sub *sub = NULL;
        BlockedSend b = { 0 };
        pthread_t thread;
        int64_t n = 0, next = 0;
        uint64_t t0, took;
        int r;

        broker_fixture_start(&broker, args);
        pc = client_open("pubsub-bp-pub");
        sc = client_open("pubsub-bp-sub");
        ck_assert_int_eq(ring_pub_open(pc, "seq", SEQ_SCHEMA, NULL, &pub), 0);
        ck_assert_int_eq(ring_sub_open(sc, "seq", SEQ_SCHEMA, NULL, &sub), 0);

        /* Non-blocking: fills up, then -EAGAIN at once. */
        for (;;) {
                t0 = now_ns(CLOCK_MONOTONIC);
                r = ring_pub_send_raw(pub, buf, encode_fixed(buf, n), 0);
                if (r < 0)
                        break;
                n++;
                ck_assert_int_lt(n, 4096 / 100 + 1);
        }
        took = now_ns(CLOCK_MONOTONIC) - t0;
        ck_assert_msg(r == -EAGAIN, "a full channel with timeout 0: %d (%s), expected -EAGAIN", r,
                      ring_strerror(r));
        ck_assert_msg(took < 200 * NSEC_PER_MSEC, "a non-blocking send took %.1f ms",
                      (double) took / 1e6);
        ck_assert_int_gt(n, 10);
        printf("# a %s-byte arena took %" PRId64 " records of 100-byte payload\n", SMALL_ARENA, n);

        /* Blocking: waits its timeout, then -ETIMEDOUT; the record is not sent. */
        t0 = now_ns(CLOCK_MONOTONIC);
        r = ring_pub_send_raw(pub, buf, encode_fixed(buf, n), 200);
        took = now_ns(CLOCK_MONOTONIC) - t0;
        ck_assert_msg(r == -ETIMEDOUT, "a full channel with timeout 200: %d (%s)", r,
                      ring_strerror(r));
        ck_assert_msg(took >= 190 * NSEC_PER_MSEC && took < 2 * NSEC_PER_SEC,
                      "the 200 ms send took %.1f ms",
                      (double) took / 1e6);

        /* A sender blocked on the full channel goes on once the subscriber makes room. */
        b.pub = pub;
        b.seq = n;
        ck_assert_int_eq(pthread_create(&thread, NULL, blocked_send, &b), 0);
        ck_assert_msg(!flag_within(&b.done, 150),
                      "a send into a full channel returned %d without waiting",
                      b.result);
        t0 = now_ns(CLOCK_MONOTONIC);
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
        ck_assert_int_gt(r, 0);
        ck_assert_int_eq(seq_of(buf, (size_t) r), next++);
        ck_assert_msg(flag_within(&b.done, 5000), "the blocked send did not go on after a receive");
        pthread_join(thread, NULL);
        ck_assert_msg(b.result == 0, "the blocked send: %s", ring_strerror(b.result));
        ck_assert(b.returned_ns >= t0);

        /* Everything sent arrives, in order, nothing else. */
        while (next <= n) {
                r = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
                ck_assert_msg(r > 0, "record %" PRId64 ": %s", next, ring_strerror(r));
                ck_assert_int_eq(seq_of(buf, (size_t) r), next++);
        }
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 0);
        ck_assert_msg(r == -EAGAIN, "an empty channel with timeout 0: %d, expected -EAGAIN", r);

        /* libring(3): a message is at most the ring's capacity minus 20 bytes. One more can
         * never fit: -EMSGSIZE at once, not a wait. */
        memset(buf, 0, sizeof(buf));
        t0 = now_ns(CLOCK_MONOTONIC);
        r = ring_pub_send_raw(pub, buf, 4096 - 20 + 1, 2000);
        ck_assert_msg(r == -EMSGSIZE, "a record of capacity - 19 bytes: %d (%s)", r,
                      ring_strerror(r));
        r = ring_pub_send_raw(pub, buf, 8192, 2000);
        ck_assert_msg(r == -EMSGSIZE, "a record larger than the ring: %d (%s)", r,
                      ring_strerror(r));
        ck_assert(now_ns(CLOCK_MONOTONIC) - t0 < NSEC_PER_SEC);
        r = ring_pub_send_raw(pub, buf, 4096 - 20, 2000);
        ck_assert_msg(r == 0, "a record of capacity - 20 bytes: %d (%s)", r, ring_strerror(r));
        r = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
        ck_assert_int_eq(r, 4096 - 20);

        ring_sub_close(sub);
        ring_pub_close(pub);
        ring_conn_close(sc);
        ring_conn_close(pc);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("libring-pubsub");
        TCase *tc = tcase_create("pubsub");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_100k_records_across_processes);
        tcase_add_test(tc, test_records_outlive_their_publisher);
        tcase_add_test(tc, test_values_and_raw_interoperate);
        tcase_add_test(tc, test_fingerprint_is_canonical);
        tcase_add_test(tc, test_full_channel_applies_backpressure);
        suite_add_tcase(s, tc);
        return s;
}
