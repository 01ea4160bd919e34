/* SPDX-License-Identifier: MIT */
/*
 * Hostile input against a real impulsed (issue 3). Every kind of bad record a client can put
 * into the submission ring, every kind of bad reply segment it can name, a client that never
 * reads its replies, rings it corrupts or truncates under the broker, and a client that dies
 * holding the submission ring's producer lock. After each, the broker is still running, a
 * fresh good client is served within the normal timeouts, and SIGTERM still exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "avrobin.h"
#include "broker-fixture.h"
#include "control.h"
#include "frame.h"
#include "futex.h"
#include "macro.h"
#include "ringbuf-layout.h"
#include "ringbuf.h"
#include "segment.h"
#include "test-util.h"
#include "unaligned.h"
#include "v1client.h"

#define SCHEMA "{\"type\":\"record\",\"name\":\"H\",\"fields\":[{\"name\":\"x\",\"type\":\"long\"}]}"
#define SMALL_RING 4096

static BrokerFixture broker;

static void setup(void) {
        broker_fixture_init_start(&broker);
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

/* xorshift64* (test_rng_next()): reproducible from the printed TEST_SEED. */
static uint64_t rng_state;

static void rng_fill(uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (test_rng_next(&rng_state) >> 56);
}

/* After every hostile input: the broker runs and a fresh client is served. */
static void expect_served(const char *after) {
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);

        ck_assert_msg(broker_fixture_alive(&broker), "impulsed died after %s", after);
        broker_fixture_assert_served(&broker);
        printf("# after %s: good client served in %.1f ms\n", after,
               (double) (now_ns(CLOCK_MONOTONIC) - t0) / (double) NSEC_PER_MSEC);
}

/* At the end of every test: it still shuts down cleanly. */
static void expect_clean_stop(void) {
        int status;

        ck_assert_int_eq(broker_fixture_stop(&broker, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "impulsed did not exit 0 on SIGTERM after hostile input (wait status 0x%x)",
                      (unsigned) status);
}

static void raw_open(V1Client *c, uint32_t reply_capacity) {
        int r = v1client_open(c, broker.bus, reply_capacity);

        ck_assert_msg(r == 0, "v1client_open: %s", strerror(-r));
}

static void registered_open(V1Client *c, const char *app, uint32_t reply_capacity) {
        V1Reply reply = V1REPLY_NULL;
        int r;

        raw_open(c, reply_capacity);
        r = v1client_register(c, app, 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        v1client_reply_done(&reply);
}

static void push(V1Client *c, const void *bytes, size_t len) {
        int r = v1client_push_raw(c, bytes, len, V1CLIENT_TIMEOUT_NS);

        ck_assert_msg(r == 0, "push of %zu bytes: %s", len, strerror(-r));
}

/* A frame with the given fingerprint around body; header_len is what the header claims. */
static void push_frame(V1Client *c, uint64_t fp, const void *body, size_t len, uint32_t header_len) {
        _cleanup_free_ uint8_t *rec = malloc(FRAME_HEADER_SIZE + len);

        ck_assert_ptr_nonnull(rec);
        frame_header_encode(rec, fp, header_len);
        if (len)
                memcpy(rec + FRAME_HEADER_SIZE, body, len);
        push(c, rec, FRAME_HEADER_SIZE + len);
}

/* Encodes m into buf as a full frame; returns its length. */
static size_t encode(const ControlMsg *m, uint8_t *buf, size_t size) {
        int n = control_encode(m, buf, size);

        ck_assert_msg(n > 0, "control_encode: %s", strerror(-n));
        return (size_t) n;
}

/* A Register naming `segment` as the reply segment (with the given nonce). */
static void send_register_naming(V1Client *c, const char *segment, size_t segment_len, uint64_t nonce) {
        ControlMsg m = {
                .type = CONTROL_REGISTER,
                .reg = {
                        .correlation_id = v1client_next_cid(c),
                        .app_name = text_from_cstr("hostile"),
                        .nonce = (int64_t) nonce,
                        .reply_segment = { .ptr = segment, .len = segment_len },
                        .heartbeat_ms = 0,
                        .pid = getpid(),
                },
        };

        ck_assert_int_eq(v1client_send(c, &m), 0);
}

static uint64_t ring_head(const void *base) {
        const RingShared *s = base;

        return atomic_load_explicit(&s->head, memory_order_acquire);
}

/* --- garbage in the submission ring --- */

START_TEST(test_garbage_records) {
        static const size_t lengths[] = { 0, 1, 2, 3, 7, 15, 16, 17, 64, 255, 1000, 4096, 65536 };
        V1Client c = V1CLIENT_NULL;
        uint8_t *buf;

        rng_state = test_seed() | 1;
        raw_open(&c, 0);
        buf = malloc(65536 + FRAME_HEADER_SIZE);
        ck_assert_ptr_nonnull(buf);

        for (size_t i = 0; i < ELEMENTSOF(lengths); i++) {
                rng_fill(buf, lengths[i]);
                push(&c, buf, lengths[i]);
        }
        /* Garbage that passes the frame check: right magic, version and body_len. */
        for (size_t i = 0; i < ELEMENTSOF(lengths); i++) {
                rng_fill(buf + FRAME_HEADER_SIZE, lengths[i]);
                frame_header_encode(buf, test_rng_next(&rng_state), (uint32_t) lengths[i]);
                push(&c, buf, FRAME_HEADER_SIZE + lengths[i]);
        }
        /* Garbage bodies under every control fingerprint, requests and replies alike. */
        for (int t = 0; t < _CONTROL_TYPE_MAX; t++)
                for (unsigned k = 0; k < 8; k++) {
                        size_t len = (size_t) (test_rng_next(&rng_state) % 200);

                        rng_fill(buf + FRAME_HEADER_SIZE, len);
                        frame_header_encode(buf, control_fingerprint((ControlType) t), (uint32_t) len);
                        push(&c, buf, FRAME_HEADER_SIZE + len);
                }
        free(buf);
        expect_served("garbage records");
        /* Nothing in there was a Register naming our reply segment. */
        ck_assert(!ringbuf_has_data(&c.reply));
        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

START_TEST(test_unknown_and_unexpected_fingerprints) {
        static const uint64_t fps[] = { 0, 1, UINT64_MAX, UINT64_C(0xdeadbeefcafef00d) };
        static const ControlType unexpected[] = {
                CONTROL_REGISTER_REPLY, CONTROL_PUBLISH_REPLY, CONTROL_CHANNEL_LIST,
                CONTROL_SUBSCRIBE_REPLY, CONTROL_EXPOSE_REPLY, CONTROL_LOOKUP_REPLY,
                CONTROL_RPC_REQUEST, CONTROL_RPC_RESPONSE,
        };
        V1Client c = V1CLIENT_NULL;
        ControlMsg m = {
                .type = CONTROL_REGISTER,
                .reg = { .correlation_id = 1, .app_name = text_from_cstr("x"), .heartbeat_ms = 0 },
        };
        uint8_t buf[512];
        size_t n;

        raw_open(&c, 0);
        m.reg.nonce = (int64_t) c.nonce;
        m.reg.reply_segment = text_from_cstr(c.reply_seg.name);
        n = encode(&m, buf, sizeof(buf));

        /* A well-formed Register body under fingerprints that are no control record. */
        for (size_t i = 0; i < ELEMENTSOF(fps); i++)
                push_frame(&c, fps[i], buf + FRAME_HEADER_SIZE, n - FRAME_HEADER_SIZE,
                           (uint32_t) (n - FRAME_HEADER_SIZE));
        /* The v1 fingerprint of Register with one bit flipped. */
        push_frame(&c, control_fingerprint(CONTROL_REGISTER) ^ 1, buf + FRAME_HEADER_SIZE,
                   n - FRAME_HEADER_SIZE, (uint32_t) (n - FRAME_HEADER_SIZE));

        /* Well-formed records a client must never send the broker: replies and RPC traffic. */
        for (size_t i = 0; i < ELEMENTSOF(unexpected); i++) {
                ControlMsg u = { .type = unexpected[i] };

                u.heartbeat.correlation_id = 7;
                push(&c, buf, encode(&u, buf, sizeof(buf)));
        }
        expect_served("unknown and unexpected fingerprints");
        ck_assert_msg(!ringbuf_has_data(&c.reply), "the broker answered a record it must not accept");
        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

/* Pushes every proper prefix of the frame's body as a frame of its own. */
static void push_prefixes(V1Client *c, const uint8_t *frame, size_t len) {
        uint64_t fp = unaligned_read_le64(frame + 4);

        for (size_t cut = 0; cut < len - FRAME_HEADER_SIZE; cut++)
                push_frame(c, fp, frame + FRAME_HEADER_SIZE, cut, (uint32_t) cut);
}

START_TEST(test_truncated_avro) {
        V1Client c = V1CLIENT_NULL, owner = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        uint8_t reg[512], pub[512];
        size_t nreg, npub;
        ControlMsg m = {
                .type = CONTROL_REGISTER,
                .reg = {
                        .correlation_id = 99,
                        .app_name = text_from_cstr("truncated"),
                        .heartbeat_ms = 1000,
                },
        };
        ControlMsg p = {
                .type = CONTROL_PUBLISH_CHANNEL,
                .publish = {
                        .correlation_id = 98,
                        .channel = text_from_cstr("cut-short"),
                        .schema_json = text_from_cstr(SCHEMA),
                        .access_key = text_from_cstr("key"),
                },
        };

        raw_open(&c, 0);
        registered_open(&owner, "owner", 0);
        m.reg.nonce = (int64_t) c.nonce;
        m.reg.reply_segment = text_from_cstr(c.reply_seg.name);
        m.reg.pid = getpid();
        nreg = encode(&m, reg, sizeof(reg));
        p.publish.client_id = owner.client_id;
        npub = encode(&p, pub, sizeof(pub));

        /* Every proper prefix of the body, with the header telling the truth about it. */
        push_prefixes(&c, reg, nreg);
        m.wire_type = CONTROL_REGISTER_V0;
        nreg = encode(&m, reg, sizeof(reg));
        push_prefixes(&c, reg, nreg);
        push_prefixes(&c, pub, npub);

        /* The same cut records with the header still claiming the full body. */
        for (size_t cut = 0; cut < npub - FRAME_HEADER_SIZE; cut += 7)
                push_frame(&c, unaligned_read_le64(pub + 4), pub + FRAME_HEADER_SIZE, cut,
                           (uint32_t) (npub - FRAME_HEADER_SIZE));
        /* And frames cut inside the header. */
        for (size_t cut = 0; cut < FRAME_HEADER_SIZE; cut++)
                push(&c, pub, cut);

        expect_served("truncated Avro bodies");
        /* No cut Register was taken for a whole one, no cut PublishChannel made a channel. */
        ck_assert_msg(!ringbuf_has_data(&c.reply), "a truncated Register was answered");
        ck_assert_int_eq(v1client_list_channels(&owner, &reply), 0);
        ck_assert_uint_eq(reply.msg.channel_list.n_channels, 0);
        v1client_reply_done(&reply);
        v1client_close(&c);
        v1client_close(&owner);
        expect_clean_stop();
}
END_TEST

/* Appends raw bytes after what an AvroWriter wrote. */
static void put_raw(AvroWriter *w, const void *p, size_t n) {
        if (w->pos + n <= w->size)
                memcpy(w->buf + w->pos, p, n);
        w->pos += n;
}

START_TEST(test_oversized_lengths) {
        static const int64_t string_lengths[] = {
                INT64_C(1) << 40, 4, 1000, -1, -(INT64_C(1) << 40), INT64_MAX, INT64_MIN,
        };
        static const uint8_t overlong_varint[] = {
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        };
        V1Client c = V1CLIENT_NULL, owner = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        uint64_t reg_fp = control_fingerprint(CONTROL_REGISTER);
        uint64_t pub_fp = control_fingerprint(CONTROL_PUBLISH_CHANNEL);
        uint8_t body[1024], rec[1024];
        uint8_t *big;
        AvroWriter w;
        size_t n, max;

        raw_open(&c, 0);
        registered_open(&owner, "owner", 0);

        /* Register whose app_name claims more (or less than zero) bytes than the body holds. */
        for (size_t i = 0; i < ELEMENTSOF(string_lengths); i++) {
                w = (AvroWriter) { .buf = body, .size = sizeof(body) };
                avrobin_put_long(&w, 1);
                avrobin_put_long(&w, string_lengths[i]);
                put_raw(&w, "abc", 3);
                push_frame(&c, reg_fp, body, w.pos, (uint32_t) w.pos);
        }
        /* PublishChannel from a registered client with a 2 GiB schema_json in 40 bytes. */
        w = (AvroWriter) { .buf = body, .size = sizeof(body) };
        avrobin_put_long(&w, 2);
        avrobin_put_long(&w, owner.client_id);
        avrobin_put_bytes(&w, "chan", 4);
        avrobin_put_long(&w, INT64_C(1) << 31);
        put_raw(&w, "{\"type\":\"long\"}", 15);
        push_frame(&c, pub_fp, body, w.pos, (uint32_t) w.pos);
        /* An overlong varint where correlation_id belongs. */
        w = (AvroWriter) { .buf = body, .size = sizeof(body) };
        put_raw(&w, overlong_varint, sizeof(overlong_varint));
        push_frame(&c, reg_fp, body, w.pos, (uint32_t) w.pos);

        /* A valid Register with trailing bytes: a v1 body is exactly one datum. */
        {
                ControlMsg m = {
                        .type = CONTROL_REGISTER,
                        .reg = {
                                .correlation_id = 3,
                                .app_name = text_from_cstr("trailing"),
                                .nonce = (int64_t) c.nonce,
                                .reply_segment = text_from_cstr(c.reply_seg.name),
                                .pid = getpid(),
                        },
                };

                n = encode(&m, rec, sizeof(rec) - 8);
                memcpy(rec + n, "TRAILING", 8);
                push_frame(&c, reg_fp, rec + FRAME_HEADER_SIZE, n - FRAME_HEADER_SIZE + 8,
                           (uint32_t) (n - FRAME_HEADER_SIZE + 8));
        }
        /* Frame headers whose body_len disagrees with the record. */
        push_frame(&c, reg_fp, body, 8, UINT32_MAX);
        push_frame(&c, reg_fp, body, 8, 1u << 30);
        push_frame(&c, reg_fp, body, 8, 9);
        push_frame(&c, reg_fp, body, 8, 7);
        push_frame(&c, reg_fp, body, 8, 0);

        /* The largest record the submission ring takes: a broker with a smaller buffer must
         * drop it, not spin on it. */
        max = c.submit.capacity - RINGBUF_RECORD_PREFIX;
        big = malloc(max);
        ck_assert_ptr_nonnull(big);
        memset(big, 'A', max);
        frame_header_encode(big, pub_fp, (uint32_t) (max - FRAME_HEADER_SIZE));
        push(&c, big, max);
        /* A well-formed Register with a 256 KiB app name. */
        {
                size_t name_len = 256 * 1024;
                _cleanup_free_ uint8_t *frame = malloc(name_len + 1024);
                ControlMsg m = {
                        .type = CONTROL_REGISTER,
                        .reg = {
                                .correlation_id = 4,
                                .app_name = { .ptr = (const char *) big + FRAME_HEADER_SIZE,
                                              .len = name_len },
                                .nonce = (int64_t) c.nonce,
                                .reply_segment = text_from_cstr(c.reply_seg.name),
                                .pid = getpid(),
                        },
                };

                ck_assert_ptr_nonnull(frame);
                push(&c, frame, encode(&m, frame, name_len + 1024));
        }
        free(big);

        expect_served("oversized lengths");
        /* The trailing-bytes Register must not have been answered; the long-named one may be
         * (refused or accepted), with a message if refused. */
        while (ringbuf_has_data(&c.reply)) {
                Text msg;

                ck_assert_int_eq(v1client_recv(&c, -1, 0, &reply), 0);
                ck_assert_int_eq(reply.msg.type, CONTROL_REGISTER_REPLY);
                msg = reply.msg.register_reply.message;
                printf("# Register with a 256 KiB app name -> %s \"%.*s\"\n",
                       control_status_name(reply.msg.register_reply.status),
                       (int) (msg.len > 200 ? 200 : msg.len), msg.ptr);
                ck_assert_msg(reply.msg.register_reply.correlation_id == 4,
                              "a Register with trailing bytes was answered");
                if (reply.msg.register_reply.status != CONTROL_STATUS_OK)
                        ck_assert_int_gt(reply.msg.register_reply.message.len, 0);
                v1client_reply_done(&reply);
        }
        ck_assert_int_eq(v1client_list_channels(&owner, &reply), 0);
        ck_assert_uint_eq(reply.msg.channel_list.n_channels, 0);
        v1client_reply_done(&reply);
        v1client_close(&c);
        v1client_close(&owner);
        expect_clean_stop();
}
END_TEST

/* --- a corrupt record written straight into the submission ring's data region --- */

/* Publishes `advance` bytes starting with a record prefix claiming `claimed_len`, as a
 * producer that holds the lock; if set_head, head_value is stored as head instead. */
static uint64_t corrupt_submission(V1Client *c, uint32_t claimed_len, uint32_t advance, bool set_head,
                                   uint64_t head_value) {
        RingShared *s = c->submit.shared;
        uint64_t deadline = deadline_after(V1CLIENT_TIMEOUT_NS), head, new_head;
        uint32_t expected = 0;
        uint8_t prefix[4];

        /* Take the lock as a producer does, so no record of others interleaves. */
        while (!atomic_compare_exchange_strong(&s->prod_lock, &expected, 1)) {
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline, "submission lock never free");
                expected = 0;
                test_nap_ms(1);
        }
        atomic_store(&s->lock_owner, (uint32_t) getpid());
        head = atomic_load(&s->head);
        unaligned_write_le32(prefix, claimed_len);
        for (uint32_t i = 0; i < advance; i++)
                c->submit.data[(head + i) & c->submit.mask] = i < 4 ? prefix[i] : 0xAB;
        new_head = set_head ? head_value : head + advance;
        atomic_store_explicit(&s->head, new_head, memory_order_release);
        atomic_store(&s->lock_owner, 0);
        if (atomic_exchange(&s->prod_lock, 0) == 2)
                futex_wake(&s->prod_lock, 1);
        atomic_fetch_add(&s->data_seq, 1);
        futex_wake(&s->data_seq, 1);
        return new_head;
}

/* The broker has consumed or discarded everything up to head. */
static void wait_consumed(V1Client *c, uint64_t head, const char *what) {
        RingShared *s = c->submit.shared;
        uint64_t deadline = deadline_after(V1CLIENT_TIMEOUT_NS);

        while (atomic_load(&s->tail) != head || atomic_load(&s->head) != head) {
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline,
                              "%s: the broker did not resynchronise the submission ring in 5 s "
                              "(head %" PRIu64 " tail %" PRIu64 ")", what, atomic_load(&s->head),
                              atomic_load(&s->tail));
                test_nap_ms(1);
        }
}

START_TEST(test_corrupt_ring_records) {
        V1Client c = V1CLIENT_NULL;
        uint64_t head, tail;
        uint32_t cap;

        raw_open(&c, 0);
        cap = c.submit.capacity;

        head = corrupt_submission(&c, UINT32_C(0xFFFFFFF0), 8, false, 0);
        wait_consumed(&c, head, "record length 0xFFFFFFF0");
        expect_served("record length 0xFFFFFFF0");

        head = corrupt_submission(&c, cap, 8, false, 0);
        wait_consumed(&c, head, "record length == capacity");
        expect_served("record length == capacity");

        head = corrupt_submission(&c, 100, 8, false, 0);
        wait_consumed(&c, head, "record length beyond head");
        expect_served("record length beyond head");

        head = corrupt_submission(&c, 0, 2, false, 0);
        wait_consumed(&c, head, "head inside a record prefix");
        expect_served("head inside a record prefix");

        /* Cursors themselves: head far beyond the capacity, and behind the tail. */
        tail = atomic_load(&c.submit.shared->tail);
        head = corrupt_submission(&c, 8, 0, true, tail + 3 * (uint64_t) cap + 5);
        wait_consumed(&c, head, "head beyond the capacity");
        expect_served("head beyond the capacity");

        tail = atomic_load(&c.submit.shared->tail);
        head = corrupt_submission(&c, 8, 0, true, tail - 100);
        wait_consumed(&c, head, "head behind the tail");
        expect_served("head behind the tail");

        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

/* --- reply segments that are missing, not rings, or not ours to name --- */

START_TEST(test_reply_segment_missing) {
        V1Client c = V1CLIENT_NULL;
        char name[NAMES_SEGMENT_MAX];
        uint64_t nonce = UINT64_C(1234567890123);

        raw_open(&c, 0);
        ck_assert_int_eq(names_client(&broker.names, nonce, name, sizeof(name)), 0);
        send_register_naming(&c, name, strlen(name), nonce);
        expect_served("Register naming a missing reply segment");
        ck_assert_msg(segment_unlink(name) == -ENOENT,
                      "the broker created the reply segment %s a client named", name);
        ck_assert(!ringbuf_has_data(&c.reply));
        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

typedef struct BadSegment {
        const char *what;
        char name[NAMES_SEGMENT_MAX];
        uint64_t nonce;
        uint8_t *before;        /* contents at creation, compared afterwards (NULL: not compared) */
        size_t size;
} BadSegment;

static void bad_segment_name(BadSegment *b, const char *what) {
        b->what = what;
        b->nonce = test_rng_next(&rng_state) >> 1;
        ck_assert_int_eq(names_client(&broker.names, b->nonce, b->name, sizeof(b->name)), 0);
}

/* A regular shm file of `size` bytes under a client name, filled by fill() (may be NULL). */
static void bad_segment_file(BadSegment *b, const char *what, size_t size,
                             void (*fill)(uint8_t *p, size_t n)) {
        Segment s = SEGMENT_NULL;
        _cleanup_close_ int fd = -1;

        bad_segment_name(b, what);
        b->size = size;
        if (size == 0) {
                fd = shm_open(b->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                ck_assert_int_ge(fd, 0);
                return;
        }
        ck_assert_int_eq(segment_create(&s, b->name, size, 0600), 0);
        if (fill)
                fill(s.base, size);
        b->before = malloc(size);
        ck_assert_ptr_nonnull(b->before);
        memcpy(b->before, s.base, size);
        segment_done(&s);
}

static void bad_segment_check(const BadSegment *b) {
        Segment s = SEGMENT_NULL;

        if (!b->before)
                return;
        ck_assert_int_eq(segment_open(&s, b->name, 1, SIZE_MAX), 0);
        ck_assert_msg(s.size == b->size && memcmp(s.base, b->before, b->size) == 0,
                      "the broker wrote into a reply segment that is %s", b->what);
        segment_done(&s);
}

static void fill_random(uint8_t *p, size_t n) {
        rng_fill(p, n);
        p[0] = 0;       /* never the ring magic by chance */
}

static void fill_ring_bad_capacity(uint8_t *p, size_t n) {
        ringbuf_format(p, n, RINGBUF_MIN_CAPACITY);
        unaligned_write_le32(p + 4, UINT32_C(1) << 20);        /* more than the file holds */
}

static void fill_ring_odd_capacity(uint8_t *p, size_t n) {
        ringbuf_format(p, n, RINGBUF_MIN_CAPACITY);
        unaligned_write_le32(p + 4, 1000);                     /* not a power of two */
}

static void fill_ring_zero_capacity(uint8_t *p, size_t n) {
        ringbuf_format(p, n, RINGBUF_MIN_CAPACITY);
        unaligned_write_le32(p + 4, 0);
}

static void fill_ring_bad_cursors(uint8_t *p, size_t n) {
        RingShared *s = (RingShared *) p;

        ringbuf_format(p, n, SMALL_RING);
        atomic_store(&s->head, UINT64_C(10) * SMALL_RING + 17);
}

static void fill_ring_locked(uint8_t *p, size_t n) {
        RingShared *s = (RingShared *) p;

        /* Locked by a live process (this test) that never lets go. */
        ringbuf_format(p, n, SMALL_RING);
        atomic_store(&s->prod_lock, 1);
        atomic_store(&s->lock_owner, (uint32_t) getpid());
}

START_TEST(test_reply_segment_not_a_ring) {
        BadSegment bad[16] = {};
        size_t n = 0;
        V1Client c = V1CLIENT_NULL;
        char path[PATH_MAX], target[PATH_MAX];
        Segment victim = SEGMENT_NULL;
        _cleanup_close_ int vfd = -1;
        uint8_t *victim_before;
        size_t ring_bytes = ringbuf_size(SMALL_RING);

        rng_state = test_seed() | 1;
        raw_open(&c, 0);

        bad_segment_file(&bad[n++], "zero-filled", ring_bytes, NULL);
        bad_segment_file(&bad[n++], "random bytes", ring_bytes, fill_random);
        bad_segment_file(&bad[n++], "16 bytes long", 16, fill_random);
        bad_segment_file(&bad[n++], "empty", 0, NULL);
        bad_segment_file(&bad[n++], "a ring whose capacity exceeds the file",
                         ringbuf_size(RINGBUF_MIN_CAPACITY), fill_ring_bad_capacity);
        bad_segment_file(&bad[n++], "a ring with capacity 1000", ringbuf_size(1024),
                         fill_ring_odd_capacity);
        bad_segment_file(&bad[n++], "a ring with capacity 0", ringbuf_size(1024),
                         fill_ring_zero_capacity);
        bad_segment_file(&bad[n++], "a ring with corrupt cursors", ring_bytes, fill_ring_bad_cursors);
        bad_segment_file(&bad[n++], "a ring locked by a live process", ring_bytes, fill_ring_locked);
        /* Not comparable afterwards: the broker may attach to these two and fail to push. */
        free(bad[n - 1].before);
        bad[n - 1].before = NULL;
        free(bad[n - 2].before);
        bad[n - 2].before = NULL;

        /* Not regular files: a directory and a FIFO (opening one must not block the broker). */
        bad_segment_name(&bad[n], "a directory");
        snprintf(path, sizeof(path), "/dev/shm%s", bad[n].name);
        ck_assert_int_eq(mkdir(path, 0700), 0);
        n++;
        bad_segment_name(&bad[n], "a FIFO");
        snprintf(path, sizeof(path), "/dev/shm%s", bad[n].name);
        ck_assert_int_eq(mkfifo(path, 0600), 0);
        n++;

        /* A symlink planted in /dev/shm to a ring outside it: never followed. */
        snprintf(target, sizeof(target), "%s/victim-ring", broker.dir);
        vfd = open(target, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(vfd, 0);
        ck_assert_int_eq(ftruncate(vfd, (off_t) ring_bytes), 0);
        victim.base = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 0);
        ck_assert(victim.base != MAP_FAILED);
        victim.size = ring_bytes;
        ck_assert_int_eq(ringbuf_format(victim.base, ring_bytes, SMALL_RING), 0);
        victim_before = malloc(ring_bytes);
        ck_assert_ptr_nonnull(victim_before);
        memcpy(victim_before, victim.base, ring_bytes);
        bad_segment_name(&bad[n], "a symlink");
        snprintf(path, sizeof(path), "/dev/shm%s", bad[n].name);
        ck_assert_int_eq(symlink(target, path), 0);
        n++;

        for (size_t i = 0; i < n; i++) {
                send_register_naming(&c, bad[i].name, strlen(bad[i].name), bad[i].nonce);
                expect_served(bad[i].what);
        }
        for (size_t i = 0; i < n; i++)
                bad_segment_check(&bad[i]);
        ck_assert_msg(memcmp(victim.base, victim_before, ring_bytes) == 0,
                      "the broker followed a symlink in /dev/shm and wrote into its target");
        ck_assert(!ringbuf_has_data(&c.reply));

        munmap(victim.base, ring_bytes);
        free(victim_before);
        for (size_t i = 0; i < n; i++) {
                snprintf(path, sizeof(path), "/dev/shm%s", bad[i].name);
                (void) (unlink(path) == 0 || rmdir(path) == 0);
                free(bad[i].before);
        }
        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

START_TEST(test_reply_segment_bad_names) {
        V1Client c = V1CLIENT_NULL, owner = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        BrokerFixture other;
        char target[PATH_MAX], name[512], arena[NAMES_SEGMENT_MAX], fn_arena[NAMES_SEGMENT_MAX];
        char ctl[NAMES_SEGMENT_MAX];
        Segment seg = SEGMENT_NULL;
        _cleanup_close_ int vfd = -1;
        uint8_t *victim;
        size_t ring_bytes = ringbuf_size(SMALL_RING);
        int r;

        raw_open(&c, 0);
        registered_open(&owner, "owner", 0);

        /* A ring file outside /dev/shm that path-like names point at. */
        snprintf(target, sizeof(target), "%s/victim-ring", broker.dir);
        vfd = open(target, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(vfd, 0);
        ck_assert_int_eq(ftruncate(vfd, (off_t) ring_bytes), 0);
        victim = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 0);
        ck_assert(victim != MAP_FAILED);
        ck_assert_int_eq(ringbuf_format(victim, ring_bytes, SMALL_RING), 0);

        send_register_naming(&c, "", 0, 1);
        send_register_naming(&c, "/", 1, 1);
        send_register_naming(&c, "noslash", 7, 1);
        send_register_naming(&c, target, strlen(target), 1);
        snprintf(name, sizeof(name), "/../../../..%s", target);
        send_register_naming(&c, name, strlen(name), 1);
        snprintf(name, sizeof(name), "/%s.cli.1.v1/../../../..%s", broker.names.prefix, target);
        send_register_naming(&c, name, strlen(name), 1);
        snprintf(name, sizeof(name), "/%s.cli.%0300d.v1", broker.names.prefix, 1);
        send_register_naming(&c, name, strlen(name), 1);
        expect_served("Register naming paths and malformed names");
        ck_assert_msg(ring_head(victim) == 0, "the broker wrote replies into %s", target);

        /* Our own, valid reply segment with junk after a NUL inside the Avro string. */
        snprintf(name, sizeof(name), "%s%c/../junk", c.reply_seg.name, 0);
        send_register_naming(&c, name, strlen(c.reply_seg.name) + 9, c.nonce);
        expect_served("Register naming a segment with an embedded NUL");
        ck_assert_msg(!ringbuf_has_data(&c.reply),
                      "a reply segment name with an embedded NUL was accepted");

        /* Segments of this bus that are not client reply segments: the control segment, a
         * channel arena and a function request arena (rings at offset 0: replies there would
         * corrupt another client's data). */
        ck_assert_int_eq(names_control(&broker.names, ctl, sizeof(ctl)), 0);
        send_register_naming(&c, ctl, strlen(ctl), 1);
        r = v1client_publish(&owner, "data", SCHEMA, "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_OK);
        snprintf(arena, sizeof(arena), "%.*s", (int) reply.msg.publish_reply.arena.len,
                 reply.msg.publish_reply.arena.ptr);
        v1client_reply_done(&reply);
        r = v1client_expose(&owner, "fn", SCHEMA, SCHEMA, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        snprintf(fn_arena, sizeof(fn_arena), "%.*s", (int) reply.msg.expose_reply.req_arena.len,
                 reply.msg.expose_reply.req_arena.ptr);
        v1client_reply_done(&reply);
        send_register_naming(&c, arena, strlen(arena), 1);
        send_register_naming(&c, fn_arena, strlen(fn_arena), 1);
        expect_served("Register naming the control segment and arenas");
        ck_assert_int_eq(segment_open(&seg, arena, 1, SIZE_MAX), 0);
        ck_assert_msg(ring_head(seg.base) == 0, "the broker wrote replies into the channel arena %s",
                      arena);
        segment_done(&seg);
        ck_assert_int_eq(segment_open(&seg, fn_arena, 1, SIZE_MAX), 0);
        ck_assert_msg(ring_head(seg.base) == 0, "the broker wrote replies into the function arena %s",
                      fn_arena);
        segment_done(&seg);
        ck_assert_int_eq(v1client_probe(&broker.names, NULL, NULL), 0);

        /* A well-formed reply segment of another bus. */
        broker_fixture_init(&other);
        ck_assert_int_eq(names_client(&other.names, 4711, name, sizeof(name)), 0);
        ck_assert_int_eq(segment_create(&seg, name, ring_bytes, 0600), 0);
        ck_assert_int_eq(ringbuf_format(seg.base, seg.size, SMALL_RING), 0);
        send_register_naming(&c, name, strlen(name), 4711);
        expect_served("Register naming another bus's reply segment");
        ck_assert_msg(ring_head(seg.base) == 0, "the broker answered into %s of another bus", name);
        segment_done(&seg);
        segment_unlink(name);
        broker_fixture_done(&other);

        ck_assert(!ringbuf_has_data(&c.reply));
        munmap(victim, ring_bytes);
        v1client_close(&owner);
        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

/* --- clients that misuse their own reply ring --- */

START_TEST(test_reply_ring_never_read) {
        V1Client slow = V1CLIENT_NULL, owner = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        RingShared *s;
        char channel[64];
        uint64_t used;
        int r;

        registered_open(&owner, "owner", 0);
        for (int i = 0; i < 2; i++) {
                snprintf(channel, sizeof(channel), "a-channel-with-a-rather-long-name-%02d", i);
                r = v1client_publish(&owner, channel, SCHEMA, "", &reply);
                EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_OK);
                v1client_reply_done(&reply);
        }

        /* A 256-byte reply ring: one ChannelList fits, the second does not. */
        registered_open(&slow, "never-reads", 256);
        s = slow.reply.shared;
        for (int i = 0; i < 200; i++) {
                ControlMsg m = {
                        .type = CONTROL_LIST_CHANNELS,
                        .list_channels = { .client_id = slow.client_id },
                };

                m.list_channels.correlation_id = v1client_next_cid(&slow);
                ck_assert_int_eq(v1client_send(&slow, &m), 0);
        }
        expect_served("a client whose reply ring is full");
        used = atomic_load(&s->head) - atomic_load(&s->tail);
        printf("# the slow client's reply ring holds %" PRIu64 " of %u bytes\n", used,
               slow.reply.capacity);
        ck_assert_uint_gt(used, slow.reply.capacity / 2);

        /* Replies that can never fit its ring at all. */
        for (int i = 2; i < 12; i++) {
                snprintf(channel, sizeof(channel), "a-channel-with-a-rather-long-name-%02d", i);
                r = v1client_publish(&owner, channel, SCHEMA, "", &reply);
                EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_OK);
                v1client_reply_done(&reply);
        }
        ck_assert_int_eq(v1client_recv(&slow, -1, 0, &reply), 0);
        v1client_reply_done(&reply);
        for (int i = 0; i < 20; i++) {
                ControlMsg m = {
                        .type = CONTROL_LIST_CHANNELS,
                        .list_channels = { .client_id = slow.client_id },
                };

                m.list_channels.correlation_id = v1client_next_cid(&slow);
                ck_assert_int_eq(v1client_send(&slow, &m), 0);
        }
        expect_served("replies larger than a client's whole reply ring");

        v1client_close(&slow);
        v1client_close(&owner);
        expect_clean_stop();
}
END_TEST

START_TEST(test_client_corrupts_its_reply_ring) {
        V1Client a = V1CLIENT_NULL, b = V1CLIENT_NULL, t = V1CLIENT_NULL;
        char id[32];
        int lines;
        ControlMsg m = { .type = CONTROL_LIST_CHANNELS };

        registered_open(&a, "bad-magic", 0);
        registered_open(&b, "bad-cursors", 0);
        registered_open(&t, "truncated", 0);

        /* The magic wiped after registering. */
        atomic_store(&a.reply.shared->magic, 0);
        m.list_channels = (ControlListChannels) { .correlation_id = 1, .client_id = a.client_id };
        ck_assert_int_eq(v1client_send(&a, &m), 0);
        /* Cursors that make every push fail, and many requests: each reply fails, and the log
         * must not grow by a line per request. */
        atomic_store(&b.reply.shared->head,
                     atomic_load(&b.reply.shared->tail) + 10 * (uint64_t) b.reply.capacity);
        for (int i = 0; i < 200; i++) {
                m.list_channels = (ControlListChannels) { .correlation_id = i + 1, .client_id = b.client_id };
                ck_assert_int_eq(v1client_send(&b, &m), 0);
        }
        expect_served("clients that corrupted their reply rings");
        snprintf(id, sizeof(id), "%" PRId64, b.client_id);
        lines = broker_fixture_log_count(&broker, id);
        printf("# 200 requests from a client with a corrupt reply ring: %d log lines name it\n", lines);
        ck_assert_msg(lines <= 10, "200 failed replies to one client logged %d lines about it", lines);

        /* A reply segment truncated to nothing under the broker's mapping: its next store
         * there faults (SIGBUS) instead of failing. We must not touch our mapping either. */
        ck_assert_int_eq(ftruncate(t.reply_seg.fd, 0), 0);
        m.list_channels = (ControlListChannels) { .correlation_id = 1, .client_id = t.client_id };
        ck_assert_int_eq(v1client_send(&t, &m), 0);
        ck_assert_int_eq(v1client_send(&t, &m), 0);
        expect_served("a client that truncated its reply segment");

        v1client_close(&a);
        v1client_close(&b);
        v1client_close(&t);
        expect_clean_stop();
}
END_TEST

START_TEST(test_requests_from_unknown_client_ids) {
        static const int64_t ids[] = { 0, -1, 999999, INT64_MAX, INT64_MIN };
        V1Client c = V1CLIENT_NULL;

        raw_open(&c, 0);
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                ControlMsg msgs[] = {
                        { .type = CONTROL_LIST_CHANNELS, .list_channels = { .client_id = ids[i] } },
                        { .type = CONTROL_PUBLISH_CHANNEL,
                          .publish = { .client_id = ids[i], .channel = text_from_cstr("nobody"),
                                       .schema_json = text_from_cstr(SCHEMA) } },
                        { .type = CONTROL_SUBSCRIBE,
                          .subscribe = { .client_id = ids[i], .channel_id = 1 } },
                        { .type = CONTROL_EXPOSE_FUNCTION,
                          .expose = { .client_id = ids[i], .fn_name = text_from_cstr("nobody"),
                                      .req_schema_json = text_from_cstr(SCHEMA),
                                      .resp_schema_json = text_from_cstr(SCHEMA) } },
                        { .type = CONTROL_LOOKUP_FUNCTION,
                          .lookup = { .client_id = ids[i], .fn_name = text_from_cstr("x") } },
                        { .type = CONTROL_HEARTBEAT, .heartbeat = { .client_id = ids[i], .seq = 1 } },
                        { .type = CONTROL_UNREGISTER, .unregister = { .client_id = ids[i] } },
                };

                for (size_t k = 0; k < ELEMENTSOF(msgs); k++) {
                        msgs[k].heartbeat.correlation_id = v1client_next_cid(&c);
                        ck_assert_int_eq(v1client_send(&c, &msgs[k]), 0);
                }
        }
        expect_served("requests from unregistered client ids");
        {
                /* Nobody's channel was made. */
                V1Client g = V1CLIENT_NULL;
                V1Reply reply = V1REPLY_NULL;

                registered_open(&g, "checker", 0);
                ck_assert_int_eq(v1client_list_channels(&g, &reply), 0);
                ck_assert_uint_eq(reply.msg.channel_list.n_channels, 0);
                v1client_reply_done(&reply);
                v1client_close(&g);
        }
        ck_assert(!ringbuf_has_data(&c.reply));
        v1client_close(&c);
        expect_clean_stop();
}
END_TEST

START_TEST(test_wrong_key_flood) {
        V1Client owner = V1CLIENT_NULL, guesser = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        int64_t channel;
        char id[32];
        int lines, r;

        registered_open(&owner, "owner", 0);
        registered_open(&guesser, "guesser", 0);
        r = v1client_publish(&owner, "keyed", SCHEMA, "the-key", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_OK);
        channel = reply.msg.publish_reply.channel_id;
        v1client_reply_done(&reply);

        /* Guessing keys: every answer is DENIED (with a message), each within the timeout. */
        for (int i = 0; i < 200; i++) {
                char key[32];

                snprintf(key, sizeof(key), "guess-%d", i);
                r = v1client_subscribe(&guesser, channel, key, 0, &reply);
                EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_DENIED);
                v1client_reply_done(&reply);
        }
        printf("# 200 wrong keys answered in %.1f ms\n",
               (double) (now_ns(CLOCK_MONOTONIC) - t0) / (double) NSEC_PER_MSEC);
        expect_served("200 wrong access keys");
        snprintf(id, sizeof(id), "%" PRId64, guesser.client_id);
        lines = broker_fixture_log_count(&broker, id);
        printf("# 200 wrong keys from one client: %d log lines name it\n", lines);
        ck_assert_msg(lines <= 20, "200 wrong keys from one client logged %d lines about it", lines);

        v1client_close(&guesser);
        v1client_close(&owner);
        expect_clean_stop();
}
END_TEST

/* --- a client that dies holding the submission ring's producer lock --- */

/* A registered client (with its pid) that takes the submission lock as a producer does, and
 * records itself in lock_owner unless it plays a v1 connector (which knows no such field); it
 * writes 'L' to ready_fd once it holds the lock, then dies when die_fd reaches EOF (-1: at
 * once). */
static _Noreturn void lock_holder(int ready_fd, int die_fd, bool record_owner) {
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        RingShared *cs;
        uint32_t expected = 0;
        char x;

        if (v1client_open(&c, broker.bus, 0) < 0 ||
            v1client_register(&c, "dies-locked", 0, getpid(), &reply) < 0 ||
            v1client_reply_status(&reply) != CONTROL_STATUS_OK)
                _exit(2);
        cs = c.submit.shared;
        while (!atomic_compare_exchange_strong(&cs->prod_lock, &expected, 1))
                expected = 0;
        if (record_owner)
                atomic_store(&cs->lock_owner, (uint32_t) getpid());
        if (ready_fd >= 0 && write(ready_fd, "L", 1) != 1)
                _exit(3);
        if (die_fd >= 0)
                while (read(die_fd, &x, 1) > 0)
                        ;
        _exit(0);
}

START_TEST(test_lock_holder_dies) {
        V1Client view = V1CLIENT_NULL;
        RingShared *s;
        uint64_t t0;
        int status;
        pid_t child;

        raw_open(&view, 0);
        s = view.submit.shared;

        child = broker_fixture_fork_helper();
        ck_assert_int_ge(child, 0);
        if (child == 0)
                lock_holder(-1, -1, true);
        ck_assert_int_eq(broker_fixture_wait_pid(child, V1CLIENT_TIMEOUT_NS, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lock holder: wait status 0x%x", status);
        /* The broker may already have broken it (it watches registered pids). */
        printf("# after the holder died: prod_lock %u, lock_owner %u (holder was %d)\n",
               atomic_load(&s->prod_lock), atomic_load(&s->lock_owner), (int) child);

        /* A good client's Register and ListChannels go through within the push timeout (5 s). */
        t0 = now_ns(CLOCK_MONOTONIC);
        expect_served("a client died holding the submission lock");
        printf("# served %.1f ms after the lock holder died\n",
               (double) (now_ns(CLOCK_MONOTONIC) - t0) / (double) NSEC_PER_MSEC);
        ck_assert_uint_eq(atomic_load(&s->prod_lock), 0);
        ck_assert_uint_eq(atomic_load(&s->lock_owner), 0);

        v1client_close(&view);
        expect_clean_stop();
}
END_TEST

/* A v1 connector dies inside its push: the lock is held, lock_owner says nobody. */
START_TEST(test_v1_lock_holder_dies) {
        V1Client view = V1CLIENT_NULL;
        RingShared *s;
        uint64_t t0;
        int status;
        pid_t child;

        raw_open(&view, 0);
        s = view.submit.shared;

        child = broker_fixture_fork_helper();
        ck_assert_int_ge(child, 0);
        if (child == 0)
                lock_holder(-1, -1, false);
        ck_assert_int_eq(broker_fixture_wait_pid(child, V1CLIENT_TIMEOUT_NS, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lock holder: wait status 0x%x", status);

        t0 = now_ns(CLOCK_MONOTONIC);
        expect_served("a v1 client died holding the submission lock");
        printf("# served %.1f ms after the v1 lock holder died\n",
               (double) (now_ns(CLOCK_MONOTONIC) - t0) / (double) NSEC_PER_MSEC);
        ck_assert_uint_eq(atomic_load(&s->prod_lock), 0);

        v1client_close(&view);
        expect_clean_stop();
}
END_TEST

/* The same with a producer already waiting for the lock when its holder dies. */
START_TEST(test_lock_holder_dies_with_a_waiter) {
        V1Client view = V1CLIENT_NULL;
        RingShared *s;
        int ready[2], die[2], status;
        uint64_t deadline;
        pid_t holder, waiter;
        char x;

        raw_open(&view, 0);
        s = view.submit.shared;
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(die, O_CLOEXEC), 0);

        holder = broker_fixture_fork_helper();
        ck_assert_int_ge(holder, 0);
        if (holder == 0) {
                close(ready[0]);
                close(die[1]);
                lock_holder(ready[1], die[0], true);
        }
        close(ready[1]);
        close(die[0]);
        ck_assert_msg(read(ready[0], &x, 1) == 1, "the lock holder failed before taking the lock");
        close(ready[0]);

        /* A good client in another process blocks on the held lock. */
        waiter = broker_fixture_fork_helper();
        ck_assert_int_ge(waiter, 0);
        if (waiter == 0) {
                V1Client c = V1CLIENT_NULL;
                V1Reply reply = V1REPLY_NULL;

                close(die[1]);
                if (v1client_open(&c, broker.bus, 0) < 0)
                        _exit(2);
                if (v1client_register(&c, "waiter", 0, getpid(), &reply) < 0 ||
                    v1client_reply_status(&reply) != CONTROL_STATUS_OK)
                        _exit(3);
                v1client_reply_done(&reply);
                if (v1client_list_channels(&c, &reply) < 0 || reply.msg.type != CONTROL_CHANNEL_LIST)
                        _exit(4);
                v1client_reply_done(&reply);
                v1client_close(&c);
                _exit(0);
        }
        /* The lock word turns 2 ("locked, waiters") when the waiter sleeps on it. */
        deadline = deadline_after(V1CLIENT_TIMEOUT_NS);
        while (atomic_load(&s->prod_lock) != 2) {
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline, "the waiter never waited for the lock");
                test_nap_ms(1);
        }

        /* The holder dies; the waiter gets through. */
        close(die[1]);
        ck_assert_int_eq(broker_fixture_wait_pid(holder, V1CLIENT_TIMEOUT_NS, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lock holder: wait status 0x%x", status);
        ck_assert_int_eq(broker_fixture_wait_pid(waiter, 2 * V1CLIENT_TIMEOUT_NS, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "the waiting client was not served after the lock holder died "
                      "(wait status 0x%x)", status);
        expect_served("a client died holding the submission lock with a waiter");

        v1client_close(&view);
        expect_clean_stop();
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("broker-hostile");
        TCase *tc = tcase_create("hostile");

        tcase_set_timeout(tc, BROKER_FIXTURE_TCASE_TIMEOUT);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_garbage_records);
        tcase_add_test(tc, test_unknown_and_unexpected_fingerprints);
        tcase_add_test(tc, test_truncated_avro);
        tcase_add_test(tc, test_oversized_lengths);
        tcase_add_test(tc, test_corrupt_ring_records);
        tcase_add_test(tc, test_reply_segment_missing);
        tcase_add_test(tc, test_reply_segment_not_a_ring);
        tcase_add_test(tc, test_reply_segment_bad_names);
        tcase_add_test(tc, test_reply_ring_never_read);
        tcase_add_test(tc, test_client_corrupts_its_reply_ring);
        tcase_add_test(tc, test_requests_from_unknown_client_ids);
        tcase_add_test(tc, test_wrong_key_flood);
        tcase_add_test(tc, test_lock_holder_dies);
        tcase_add_test(tc, test_lock_holder_dies_with_a_waiter);
        tcase_add_test(tc, test_v1_lock_holder_dies);
        suite_add_tcase(s, tc);
        return s;
}
