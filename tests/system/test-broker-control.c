/* SPDX-License-Identifier: MIT */
/*
 * The v1 control plane against a real impulsed (issue 3), driven by the raw v1 client of
 * tests/lib (the wire core only, never libring's public API): Register in both forms,
 * PublishChannel/ListChannels/Subscribe with good and bad keys and fingerprints,
 * ExposeFunction in both forms with req_arena_cap, LookupFunction, Heartbeat and Unregister,
 * one registration per reply segment, and the data plane flowing peer to peer through a
 * broker-made arena. Every error reply must carry a message.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "avrobin.h"
#include "broker-fixture.h"
#include "fingerprint.h"
#include "frame.h"
#include "macro.h"
#include "ringbuf.h"
#include "segment.h"
#include "test-util.h"
#include "v1client.h"

/* Known arena sizes for the req_arena_cap checks. */
#define ARENA_CAPACITY 131072
#define MAX_ARENA_CAPACITY 1048576

static const char *const broker_args[] = {
        "--arena-capacity", "131072", "--max-arena-capacity", "1048576", NULL,
};

static const char TICK_SCHEMA[] =
        "{\"type\":\"record\",\"name\":\"Tick\",\"namespace\":\"test.ring\",\"fields\":["
        "{\"name\":\"seq\",\"type\":\"long\"},{\"name\":\"note\",\"type\":\"string\"}]}";
/* The same record with another field type: another fingerprint. */
static const char TICK_SCHEMA_V2[] =
        "{\"type\":\"record\",\"name\":\"Tick\",\"namespace\":\"test.ring\",\"fields\":["
        "{\"name\":\"seq\",\"type\":\"int\"},{\"name\":\"note\",\"type\":\"string\"}]}";
static const char REQ_SCHEMA[] =
        "{\"type\":\"record\",\"name\":\"AddReq\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"},"
        "{\"name\":\"b\",\"type\":\"long\"}]}";
static const char RESP_SCHEMA[] =
        "{\"type\":\"record\",\"name\":\"AddResp\",\"fields\":[{\"name\":\"sum\",\"type\":\"long\"}]}";

static BrokerFixture broker;

static void setup(void) {
        broker_fixture_init(&broker);
        broker_fixture_start(&broker, broker_args);
}

/* Every test ends with a clean shutdown: SIGTERM, exit 0 (under ASan: no leak either). */
static void teardown(void) {
        if (broker.pid > 0)
                broker_fixture_expect_clean_stop(&broker);
        broker_fixture_done(&broker);
}

static uint64_t schema_fp(const char *json) {
        uint64_t fp;

        ck_assert_int_eq(fingerprint_schema_json(json, strlen(json), &fp, NULL, NULL), 0);
        return fp;
}

/* Copies a reply's string into buf as a C string. */
static void text_copy(char *buf, size_t size, Text t) {
        ck_assert_uint_lt(t.len, size);
        memcpy(buf, t.ptr, t.len);
        buf[t.len] = 0;
}

/* Opens a client on the test bus and registers it (current form, with our pid). */
static void client_open(V1Client *c, const char *app) {
        V1Reply reply = V1REPLY_NULL;
        int r;

        r = v1client_open(c, broker.bus, 0);
        ck_assert_msg(r == 0, "v1client_open: %s", strerror(-r));
        r = v1client_register(c, app, 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        ck_assert_int_gt(reply.msg.register_reply.client_id, 0);
        v1client_reply_done(&reply);
}

/* Publishes and expects OK; returns channel id and arena name (buf). */
static int64_t publish_ok(V1Client *c, const char *channel, const char *schema, const char *key,
                          char *arena, size_t size) {
        V1Reply reply = V1REPLY_NULL;
        int64_t id;
        int r;

        r = v1client_publish(c, channel, schema, key, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_OK);
        id = reply.msg.publish_reply.channel_id;
        ck_assert_int_gt(id, 0);
        ck_assert_uint_eq((uint64_t) reply.msg.publish_reply.schema_fp, schema_fp(schema));
        ck_assert_int_gt(reply.msg.publish_reply.arena.len, 0);
        text_copy(arena, size, reply.msg.publish_reply.arena);
        v1client_reply_done(&reply);
        return id;
}

/* An arena name the broker hands out: a valid shm name of this bus, and an existing ring. Returns
 * its ring capacity. */
static uint32_t check_arena(const char *arena) {
        Segment s = SEGMENT_NULL;
        RingBuf rb;
        uint32_t capacity;
        int r;

        ck_assert_msg(names_valid(arena), "arena name \"%s\" is no valid shm name", arena);
        ck_assert_msg(names_file_belongs_to_bus(&broker.names, arena + 1),
                      "arena \"%s\" is not a segment of bus %s", arena, broker.bus);
        r = segment_open(&s, arena, RINGBUF_HEADER_SIZE + RINGBUF_MIN_CAPACITY,
                         RINGBUF_HEADER_SIZE + (size_t) RINGBUF_MAX_CAPACITY);
        ck_assert_msg(r == 0, "arena %s: %s", arena, strerror(-r));
        r = ringbuf_attach_producer(&rb, s.base, s.size);
        ck_assert_msg(r == 0, "arena %s holds no ring at offset 0: %s", arena, strerror(-r));
        capacity = rb.capacity;
        segment_done(&s);
        return capacity;
}

static const ControlChannelInfo *find_channel(const V1Reply *list, const char *name) {
        ck_assert_int_eq(list->msg.type, CONTROL_CHANNEL_LIST);
        for (size_t i = 0; i < list->msg.channel_list.n_channels; i++)
                if (text_eq_cstr(list->msg.channel_list.channels[i].name, name))
                        return &list->msg.channel_list.channels[i];
        return NULL;
}

static bool segment_exists(const char *name) {
        Segment s = SEGMENT_NULL;

        if (segment_open(&s, name, 1, SIZE_MAX) < 0)
                return false;
        segment_done(&s);
        return true;
}

START_TEST(test_register_both_forms) {
        V1Client a = V1CLIENT_NULL, b = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        int64_t id_a, id_b;
        int r;

        ck_assert_int_eq(v1client_open(&a, broker.bus, 0), 0);
        ck_assert_int_eq(a.broker_pid, (uint32_t) broker.pid);
        ck_assert_uint_eq(a.epoch, broker.epoch);
        r = v1client_register(&a, "current-form", 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        id_a = reply.msg.register_reply.client_id;
        ck_assert_int_gt(id_a, 0);
        v1client_reply_done(&reply);

        /* An older v1 peer: Register without pid, recognised by its own fingerprint. */
        ck_assert_int_eq(v1client_open(&b, broker.bus, 0), 0);
        r = v1client_register_v0(&b, "older-form", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        id_b = reply.msg.register_reply.client_id;
        ck_assert_int_gt(id_b, 0);
        ck_assert_int_ne(id_a, id_b);
        v1client_reply_done(&reply);

        /* Both are served afterwards. */
        ck_assert_int_eq(v1client_list_channels(&a, &reply), 0);
        ck_assert_int_eq(reply.msg.type, CONTROL_CHANNEL_LIST);
        v1client_reply_done(&reply);
        ck_assert_int_eq(v1client_list_channels(&b, &reply), 0);
        ck_assert_int_eq(reply.msg.type, CONTROL_CHANNEL_LIST);
        v1client_reply_done(&reply);
        ck_assert_uint_eq(a.stray_replies + b.stray_replies, 0);

        v1client_close(&a);
        v1client_close(&b);
}
END_TEST

START_TEST(test_publish_exists_and_list) {
        V1Client pub = V1CLIENT_NULL, other = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        char arena_keyed[NAMES_SEGMENT_MAX], arena_open[NAMES_SEGMENT_MAX];
        const ControlChannelInfo *ci;
        int64_t id_keyed, id_open;
        int r;

        client_open(&pub, "publisher");
        client_open(&other, "other");

        id_keyed = publish_ok(&pub, "metrics", TICK_SCHEMA, "s3cret", arena_keyed, sizeof(arena_keyed));
        id_open = publish_ok(&pub, "events", TICK_SCHEMA_V2, "", arena_open, sizeof(arena_open));
        ck_assert_int_ne(id_keyed, id_open);
        ck_assert_str_ne(arena_keyed, arena_open);
        ck_assert_uint_eq(check_arena(arena_keyed), ARENA_CAPACITY);
        ck_assert_uint_eq(check_arena(arena_open), ARENA_CAPACITY);

        /* The name is taken, for its owner and for anyone else, whatever the schema. */
        r = v1client_publish(&pub, "metrics", TICK_SCHEMA, "s3cret", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_EXISTS);
        v1client_reply_done(&reply);
        r = v1client_publish(&other, "metrics", TICK_SCHEMA_V2, "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_PUBLISH_REPLY, CONTROL_STATUS_EXISTS);
        v1client_reply_done(&reply);

        r = v1client_list_channels(&other, &reply);
        ck_assert_int_eq(r, 0);
        ck_assert_uint_eq(reply.msg.channel_list.n_channels, 2);
        ci = find_channel(&reply, "metrics");
        ck_assert_ptr_nonnull(ci);
        ck_assert_int_eq(ci->channel_id, id_keyed);
        ck_assert(text_eq_cstr(ci->owner_app, "publisher"));
        ck_assert_uint_eq((uint64_t) ci->schema_fp, schema_fp(TICK_SCHEMA));
        ck_assert(ci->requires_key);
        ci = find_channel(&reply, "events");
        ck_assert_ptr_nonnull(ci);
        ck_assert_int_eq(ci->channel_id, id_open);
        ck_assert(text_eq_cstr(ci->owner_app, "publisher"));
        ck_assert_uint_eq((uint64_t) ci->schema_fp, schema_fp(TICK_SCHEMA_V2));
        ck_assert(!ci->requires_key);
        v1client_reply_done(&reply);

        v1client_close(&pub);
        v1client_close(&other);
}
END_TEST

START_TEST(test_publish_invalid_schema) {
        static const char *const bad[] = {
                "{not json",
                "",
                "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                "{\"name\":\"x\",\"type\":\"nosuchtype\"}]}",
                "{\"type\":\"nonsense\"}",
        };
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        char arena[NAMES_SEGMENT_MAX];
        int r;

        client_open(&c, "bad-schemas");
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int32_t status;
                Text msg;

                r = v1client_publish(&c, "bad", bad[i], "", &reply);
                ck_assert_msg(r == 0, "schema %zu: no reply: %s", i, strerror(-r));
                ck_assert_int_eq(reply.msg.type, CONTROL_PUBLISH_REPLY);
                status = reply.msg.publish_reply.status;
                msg = reply.msg.publish_reply.message;
                printf("# invalid schema %zu -> %s \"%.*s\"\n", i, control_status_name(status),
                       (int) msg.len, msg.ptr);
                /* ring-wire-v1 leaves the code open (a v1 broker answers INTERNAL); impulsed
                 * answers SCHEMA_MISMATCH: the client's schema is at fault, not the broker. */
                ck_assert_msg(status == CONTROL_STATUS_SCHEMA_MISMATCH, "schema %zu: status %s", i,
                              control_status_name(status));
                ck_assert_msg(msg.len > 0, "schema %zu: error without message", i);
                ck_assert_msg(memmem(msg.ptr, msg.len, "schema", 6) ||
                              memmem(msg.ptr, msg.len, "Schema", 6),
                              "schema %zu: message \"%.*s\" does not name the schema", i,
                              (int) msg.len, msg.ptr);
                ck_assert_int_eq(reply.msg.publish_reply.arena.len, 0);
                v1client_reply_done(&reply);
        }

        /* Nothing was created: the list is empty and the name is still free. */
        ck_assert_int_eq(v1client_list_channels(&c, &reply), 0);
        ck_assert_uint_eq(reply.msg.channel_list.n_channels, 0);
        v1client_reply_done(&reply);
        publish_ok(&c, "bad", TICK_SCHEMA, "", arena, sizeof(arena));
        v1client_close(&c);
}
END_TEST

START_TEST(test_subscribe_keys_and_fingerprints) {
        V1Client pub = V1CLIENT_NULL, sub = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        char arena_keyed[NAMES_SEGMENT_MAX], arena_open[NAMES_SEGMENT_MAX];
        int64_t id_keyed, id_open, fp = (int64_t) schema_fp(TICK_SCHEMA);
        int r;

        client_open(&pub, "publisher");
        client_open(&sub, "subscriber");
        id_keyed = publish_ok(&pub, "metrics", TICK_SCHEMA, "s3cret", arena_keyed, sizeof(arena_keyed));
        id_open = publish_ok(&pub, "open", TICK_SCHEMA, "", arena_open, sizeof(arena_open));

        /* Wrong and missing keys, with the right fingerprint. */
        r = v1client_subscribe(&sub, id_keyed, "wrong", fp, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_DENIED);
        ck_assert_int_eq(reply.msg.subscribe_reply.arena.len, 0);
        v1client_reply_done(&reply);
        r = v1client_subscribe(&sub, id_keyed, "", fp, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_DENIED);
        ck_assert_int_eq(reply.msg.subscribe_reply.arena.len, 0);
        v1client_reply_done(&reply);

        /* The right key with another schema's fingerprint. */
        r = v1client_subscribe(&sub, id_keyed, "s3cret", (int64_t) schema_fp(TICK_SCHEMA_V2), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_SCHEMA_MISMATCH);
        ck_assert_int_eq(reply.msg.subscribe_reply.arena.len, 0);
        v1client_reply_done(&reply);

        /* No such channel. */
        r = v1client_subscribe(&sub, id_keyed + id_open + 1000, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_NOT_FOUND);
        v1client_reply_done(&reply);
        r = v1client_subscribe(&sub, -1, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_NOT_FOUND);
        v1client_reply_done(&reply);

        /* Right key and fingerprint: the publisher's arena and fingerprint. */
        r = v1client_subscribe(&sub, id_keyed, "s3cret", fp, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_OK);
        ck_assert(text_eq_cstr(reply.msg.subscribe_reply.arena, arena_keyed));
        ck_assert_int_eq(reply.msg.subscribe_reply.schema_fp, fp);
        v1client_reply_done(&reply);

        /* expected_fp 0 means "no expectation" for v1 connectors (ring-wire-v1). */
        r = v1client_subscribe(&sub, id_open, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_OK);
        ck_assert(text_eq_cstr(reply.msg.subscribe_reply.arena, arena_open));
        ck_assert_int_eq(reply.msg.subscribe_reply.schema_fp, fp);
        v1client_reply_done(&reply);

        ck_assert_uint_eq(sub.stray_replies, 0);
        v1client_close(&pub);
        v1client_close(&sub);
}
END_TEST

#define TICKS 20000

/* One Tick datum: seq, then a note whose length varies with seq (records of odd sizes). */
static const char TICK_NOTE[] = "peer to peer through the broker-made arena";

static size_t tick_encode(uint8_t *buf, size_t size, int64_t seq) {
        AvroWriter w = { .buf = buf + FRAME_HEADER_SIZE, .size = size - FRAME_HEADER_SIZE };

        avrobin_put_long(&w, seq);
        avrobin_put_bytes(&w, TICK_NOTE, (size_t) (seq % (int64_t) sizeof(TICK_NOTE)));
        ck_assert(avrobin_fits(&w));
        frame_header_encode(buf, schema_fp(TICK_SCHEMA), (uint32_t) w.pos);
        return FRAME_HEADER_SIZE + w.pos;
}

START_TEST(test_data_plane_through_arena) {
        V1Client pub = V1CLIENT_NULL, sub = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        char arena[NAMES_SEGMENT_MAX];
        Segment seg = SEGMENT_NULL;
        RingBuf cons;
        uint64_t fp = schema_fp(TICK_SCHEMA);
        int64_t id;
        int status, r;
        pid_t child;

        client_open(&pub, "ticker");
        client_open(&sub, "listener");
        id = publish_ok(&pub, "ticks", TICK_SCHEMA, "k", arena, sizeof(arena));
        r = v1client_subscribe(&sub, id, "k", (int64_t) fp, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_SUBSCRIBE_REPLY, CONTROL_STATUS_OK);
        ck_assert(text_eq_cstr(reply.msg.subscribe_reply.arena, arena));
        v1client_reply_done(&reply);

        /* The subscriber consumes from the arena the reply named... */
        ck_assert_int_eq(segment_open(&seg, arena, RINGBUF_HEADER_SIZE + RINGBUF_MIN_CAPACITY,
                                      RINGBUF_HEADER_SIZE + (size_t) RINGBUF_MAX_CAPACITY), 0);
        ck_assert_int_eq(ringbuf_attach_consumer(&cons, seg.base, seg.size), 0);

        /* ...while the publisher, another process, produces into it: the broker is not involved. */
        child = broker_fixture_fork_helper();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                Segment ps = SEGMENT_NULL;
                RingBuf prod;
                uint8_t buf[256];

                if (segment_open(&ps, arena, RINGBUF_HEADER_SIZE + RINGBUF_MIN_CAPACITY,
                                 RINGBUF_HEADER_SIZE + (size_t) RINGBUF_MAX_CAPACITY) < 0 ||
                    ringbuf_attach_producer(&prod, ps.base, ps.size) < 0)
                        _exit(2);
                for (int64_t seq = 0; seq < TICKS; seq++)
                        if (ringbuf_push(&prod, buf, tick_encode(buf, sizeof(buf), seq),
                                         V1CLIENT_TIMEOUT_NS) < 0)
                                _exit(3);
                _exit(0);
        }

        for (int64_t seq = 0; seq < TICKS; seq++) {
                uint8_t buf[256];
                AvroReader rd;
                Frame f;
                int64_t got;
                Text note;
                int len;

                /* A wake-up without data is -EAGAIN: ringbuf_wait() leaves the loop to us. */
                do
                        r = ringbuf_wait(&cons, V1CLIENT_TIMEOUT_NS);
                while (r == -EAGAIN);
                ck_assert_msg(r == 0, "tick %" PRId64 ": %s", seq, strerror(-r));
                len = ringbuf_pop(&cons, buf, sizeof(buf));
                ck_assert_int_gt(len, 0);
                ck_assert_int_eq(frame_decode(buf, (size_t) len, &f), 0);
                ck_assert_uint_eq(f.schema_fp, fp);
                rd = (AvroReader) { .buf = f.body, .len = f.body_len };
                ck_assert_int_eq(avrobin_get_long(&rd, &got), 0);
                ck_assert_int_eq(got, seq);
                ck_assert_int_eq(avrobin_get_text(&rd, &note), 0);
                ck_assert_uint_eq(note.len, (size_t) (seq % (int64_t) sizeof(TICK_NOTE)));
                ck_assert(memcmp(note.ptr, TICK_NOTE, note.len) == 0);
                ck_assert_uint_eq(rd.pos, rd.len);
        }
        ck_assert_int_eq(broker_fixture_wait_pid(child, V1CLIENT_TIMEOUT_NS, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "publisher: wait status 0x%x", status);
        ck_assert(!ringbuf_has_data(&cons));

        segment_done(&seg);
        v1client_close(&pub);
        v1client_close(&sub);
}
END_TEST

START_TEST(test_expose_and_lookup) {
        V1Client svc = V1CLIENT_NULL, caller = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL, exposed = V1REPLY_NULL;
        uint64_t req_fp = schema_fp(REQ_SCHEMA), resp_fp = schema_fp(RESP_SCHEMA);
        char arena[NAMES_SEGMENT_MAX];
        int32_t status;
        uint32_t cap;
        int r;

        client_open(&svc, "service");
        client_open(&caller, "caller");

        /* Current form, keyed, with a request arena capacity inside the bounds. */
        r = v1client_expose(&svc, "add", REQ_SCHEMA, RESP_SCHEMA, "fn-key", 65536, &exposed);
        EXPECT_V1_REPLY(r, &exposed, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        ck_assert_int_gt(exposed.msg.expose_reply.fn_id, 0);
        ck_assert_uint_eq((uint64_t) exposed.msg.expose_reply.req_fp, req_fp);
        ck_assert_uint_eq((uint64_t) exposed.msg.expose_reply.resp_fp, resp_fp);
        ck_assert_int_gt(exposed.msg.expose_reply.req_arena.len, 0);
        text_copy(arena, sizeof(arena), exposed.msg.expose_reply.req_arena);
        ck_assert_uint_eq(check_arena(arena), 65536);

        r = v1client_expose(&caller, "add", REQ_SCHEMA, RESP_SCHEMA, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_EXISTS);
        v1client_reply_done(&reply);

        /* The older form (no req_arena_cap): the broker default, --arena-capacity. */
        r = v1client_expose_v0(&svc, "mul", REQ_SCHEMA, RESP_SCHEMA, "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        ck_assert_uint_eq((uint64_t) reply.msg.expose_reply.req_fp, req_fp);
        ck_assert_uint_eq((uint64_t) reply.msg.expose_reply.resp_fp, resp_fp);
        ck_assert_int_ne(reply.msg.expose_reply.fn_id, exposed.msg.expose_reply.fn_id);
        text_copy(arena, sizeof(arena), reply.msg.expose_reply.req_arena);
        ck_assert_uint_eq(check_arena(arena), ARENA_CAPACITY);
        v1client_reply_done(&reply);

        /* 0 in the current form is the default too. */
        r = v1client_expose(&svc, "sub", REQ_SCHEMA, RESP_SCHEMA, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        text_copy(arena, sizeof(arena), reply.msg.expose_reply.req_arena);
        ck_assert_uint_eq(check_arena(arena), ARENA_CAPACITY);
        v1client_reply_done(&reply);

        /* Not a power of two, inside the bounds: at least what was asked. */
        r = v1client_expose(&svc, "odd", REQ_SCHEMA, RESP_SCHEMA, "", 5000, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        text_copy(arena, sizeof(arena), reply.msg.expose_reply.req_arena);
        cap = check_arena(arena);
        printf("# req_arena_cap 5000 -> ring capacity %u\n", cap);
        ck_assert_uint_ge(cap, 5000);
        ck_assert_uint_le(cap, MAX_ARENA_CAPACITY);
        v1client_reply_done(&reply);

        /* Above --max-arena-capacity: never a bigger arena (clamped, or refused with a message). */
        r = v1client_expose(&svc, "huge", REQ_SCHEMA, RESP_SCHEMA, "", INT64_C(1) << 40, &reply);
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(reply.msg.type, CONTROL_EXPOSE_REPLY);
        status = reply.msg.expose_reply.status;
        printf("# req_arena_cap 2^40 -> %s \"%.*s\"\n", control_status_name(status),
               (int) reply.msg.expose_reply.message.len, reply.msg.expose_reply.message.ptr);
        if (status == CONTROL_STATUS_OK) {
                text_copy(arena, sizeof(arena), reply.msg.expose_reply.req_arena);
                cap = check_arena(arena);
                printf("# req_arena_cap 2^40 -> ring capacity %u\n", cap);
                ck_assert_uint_le(cap, MAX_ARENA_CAPACITY);
        } else
                ck_assert_int_gt(reply.msg.expose_reply.message.len, 0);
        v1client_reply_done(&reply);

        /* A negative capacity is no capacity. */
        r = v1client_expose(&svc, "negative", REQ_SCHEMA, RESP_SCHEMA, "", -4096, &reply);
        ck_assert_int_eq(r, 0);
        status = reply.msg.expose_reply.status;
        printf("# req_arena_cap -4096 -> %s \"%.*s\"\n", control_status_name(status),
               (int) reply.msg.expose_reply.message.len, reply.msg.expose_reply.message.ptr);
        if (status == CONTROL_STATUS_OK) {
                text_copy(arena, sizeof(arena), reply.msg.expose_reply.req_arena);
                cap = check_arena(arena);
                ck_assert_uint_le(cap, MAX_ARENA_CAPACITY);
        } else
                ck_assert_int_gt(reply.msg.expose_reply.message.len, 0);
        v1client_reply_done(&reply);

        /* Invalid schemas are refused with a message. */
        r = v1client_expose(&svc, "broken", "{oops", RESP_SCHEMA, "", 0, &reply);
        ck_assert_int_eq(r, 0);
        ck_assert_int_ne(reply.msg.expose_reply.status, CONTROL_STATUS_OK);
        ck_assert_int_gt(reply.msg.expose_reply.message.len, 0);
        v1client_reply_done(&reply);
        r = v1client_expose(&svc, "broken", REQ_SCHEMA, "[\"nosuchtype\"]", "", 0, &reply);
        ck_assert_int_eq(r, 0);
        ck_assert_int_ne(reply.msg.expose_reply.status, CONTROL_STATUS_OK);
        ck_assert_int_gt(reply.msg.expose_reply.message.len, 0);
        v1client_reply_done(&reply);

        /* Lookup: the right key gives what Expose answered; a wrong or missing key is DENIED. */
        r = v1client_lookup(&caller, "add", "fn-key", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_OK);
        ck_assert_int_eq(reply.msg.lookup_reply.fn_id, exposed.msg.expose_reply.fn_id);
        ck_assert_int_eq(reply.msg.lookup_reply.req_fp, exposed.msg.expose_reply.req_fp);
        ck_assert_int_eq(reply.msg.lookup_reply.resp_fp, exposed.msg.expose_reply.resp_fp);
        ck_assert_uint_eq(reply.msg.lookup_reply.req_arena.len, exposed.msg.expose_reply.req_arena.len);
        ck_assert(memcmp(reply.msg.lookup_reply.req_arena.ptr, exposed.msg.expose_reply.req_arena.ptr,
                         exposed.msg.expose_reply.req_arena.len) == 0);
        v1client_reply_done(&reply);
        r = v1client_lookup(&caller, "add", "not-the-key", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_DENIED);
        ck_assert_int_eq(reply.msg.lookup_reply.req_arena.len, 0);
        v1client_reply_done(&reply);
        r = v1client_lookup(&caller, "add", "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_DENIED);
        v1client_reply_done(&reply);

        /* An unkeyed function needs no key; an unknown one is NOT_FOUND. */
        r = v1client_lookup(&caller, "mul", "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_OK);
        ck_assert_uint_eq((uint64_t) reply.msg.lookup_reply.req_fp, req_fp);
        v1client_reply_done(&reply);
        r = v1client_lookup(&caller, "no-such-fn", "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_NOT_FOUND);
        v1client_reply_done(&reply);
        r = v1client_lookup(&caller, "broken", "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_NOT_FOUND);
        v1client_reply_done(&reply);

        ck_assert_uint_eq(caller.stray_replies + svc.stray_replies, 0);
        v1client_reply_done(&exposed);
        v1client_close(&svc);
        v1client_close(&caller);
}
END_TEST

START_TEST(test_heartbeat_has_no_reply) {
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        int r;

        r = v1client_open(&c, broker.bus, 0);
        ck_assert_int_eq(r, 0);
        r = v1client_register(&c, "beater", 10000, 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        v1client_reply_done(&reply);

        for (int64_t seq = 1; seq <= 5; seq++)
                ck_assert_int_eq(v1client_heartbeat(&c, seq), 0);
        /* The broker serves the ring in order: any answer to a heartbeat would arrive before
         * this reply and count as stray. */
        ck_assert_int_eq(v1client_list_channels(&c, &reply), 0);
        ck_assert_int_eq(reply.msg.type, CONTROL_CHANNEL_LIST);
        v1client_reply_done(&reply);
        ck_assert_uint_eq(c.stray_replies, 0);
        v1client_close(&c);
}
END_TEST

START_TEST(test_unregister_releases_everything) {
        V1Client gone = V1CLIENT_NULL, other = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        char arena[NAMES_SEGMENT_MAX], fn_arena[NAMES_SEGMENT_MAX], again[NAMES_SEGMENT_MAX];
        int r;

        client_open(&gone, "leaving");
        client_open(&other, "staying");
        publish_ok(&gone, "leaving-ch", TICK_SCHEMA, "", arena, sizeof(arena));
        r = v1client_expose(&gone, "leaving-fn", REQ_SCHEMA, RESP_SCHEMA, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        ck_assert_int_lt(reply.msg.expose_reply.req_arena.len, sizeof(fn_arena));
        text_copy(fn_arena, sizeof(fn_arena), reply.msg.expose_reply.req_arena);
        v1client_reply_done(&reply);
        ck_assert(segment_exists(arena));
        ck_assert(segment_exists(fn_arena));

        ck_assert_int_eq(v1client_unregister(&gone), 0);
        ck_assert_int_eq(gone.client_id, 0);

        /* Served in ring order after the Unregister: its channel and function are gone... */
        ck_assert_int_eq(v1client_list_channels(&other, &reply), 0);
        ck_assert_ptr_null(find_channel(&reply, "leaving-ch"));
        v1client_reply_done(&reply);
        r = v1client_lookup(&other, "leaving-fn", "", &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_LOOKUP_REPLY, CONTROL_STATUS_NOT_FOUND);
        v1client_reply_done(&reply);
        /* ...with their arenas, and the names are free again. */
        ck_assert_msg(!segment_exists(arena), "arena %s of an unregistered client is left", arena);
        ck_assert_msg(!segment_exists(fn_arena), "arena %s of an unregistered client is left", fn_arena);
        publish_ok(&other, "leaving-ch", TICK_SCHEMA, "", again, sizeof(again));
        r = v1client_expose(&other, "leaving-fn", REQ_SCHEMA, RESP_SCHEMA, "", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_EXPOSE_REPLY, CONTROL_STATUS_OK);
        v1client_reply_done(&reply);
        ck_assert_uint_eq(other.stray_replies, 0);

        v1client_close(&gone);
        v1client_close(&other);
}
END_TEST

#define BYSTANDERS 40

/* One registration per reply segment (v1 requests carry no credentials, so a live
 * registration is never replaced): a second Register naming the segment of a live client is
 * EXISTS, in both forms, answered into that segment, and the first registration stays. Once it
 * unregisters, the segment can be registered again. Other clients' segments are all in the
 * broker's index meanwhile. */
START_TEST(test_one_registration_per_reply_segment) {
        V1Client a = V1CLIENT_NULL, bystanders[BYSTANDERS];
        V1Reply reply = V1REPLY_NULL;
        int64_t first;
        Text msg;
        int r;

        for (size_t i = 0; i < BYSTANDERS; i++) {
                bystanders[i] = V1CLIENT_NULL;
                client_open(&bystanders[i], "bystander");
        }
        client_open(&a, "first");
        first = a.client_id;

        r = v1client_register(&a, "second", 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_EXISTS);
        ck_assert_int_eq(reply.msg.register_reply.client_id, 0);
        msg = reply.msg.register_reply.message;
        ck_assert_msg(memmem(msg.ptr, msg.len, a.reply_seg.name, strlen(a.reply_seg.name)),
                      "EXISTS message \"%.*s\" does not name the segment", (int) msg.len, msg.ptr);
        v1client_reply_done(&reply);
        r = v1client_register_v0(&a, "second-older-form", 0, &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_EXISTS);
        v1client_reply_done(&reply);
        ck_assert_int_eq(a.client_id, first);

        /* Every bystander's segment is taken too, and the first registration still works. */
        for (size_t i = 0; i < BYSTANDERS; i++) {
                int64_t id = bystanders[i].client_id;

                r = v1client_register(&bystanders[i], "again", 0, getpid(), &reply);
                EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_EXISTS);
                v1client_reply_done(&reply);
                ck_assert_int_eq(bystanders[i].client_id, id);
        }
        ck_assert_int_eq(v1client_list_channels(&a, &reply), 0);
        ck_assert_int_eq(reply.msg.type, CONTROL_CHANNEL_LIST);
        v1client_reply_done(&reply);

        /* Unregistered, the segment is free: a fresh registration, with a fresh id. The
         * Unregister is served first (ring order). */
        ck_assert_int_eq(v1client_unregister(&a), 0);
        r = v1client_register(&a, "first-again", 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        ck_assert_int_gt(reply.msg.register_reply.client_id, 0);
        ck_assert_int_ne(reply.msg.register_reply.client_id, first);
        v1client_reply_done(&reply);
        r = v1client_register(&a, "third", 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_EXISTS);
        v1client_reply_done(&reply);

        /* Half the bystanders leave: their segments are free, the others' still taken. */
        for (size_t i = 0; i < BYSTANDERS; i += 2)
                ck_assert_int_eq(v1client_unregister(&bystanders[i]), 0);
        for (size_t i = 0; i < BYSTANDERS; i++) {
                r = v1client_register(&bystanders[i], "back", 0, getpid(), &reply);
                EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY,
                                i % 2 == 0 ? CONTROL_STATUS_OK : CONTROL_STATUS_EXISTS);
                v1client_reply_done(&reply);
        }

        ck_assert_uint_eq(a.stray_replies, 0);
        v1client_close(&a);
        for (size_t i = 0; i < BYSTANDERS; i++)
                v1client_close(&bystanders[i]);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("broker-control");
        TCase *tc = tcase_create("control");

        tcase_set_timeout(tc, BROKER_FIXTURE_TCASE_TIMEOUT);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_register_both_forms);
        tcase_add_test(tc, test_publish_exists_and_list);
        tcase_add_test(tc, test_publish_invalid_schema);
        tcase_add_test(tc, test_subscribe_keys_and_fingerprints);
        tcase_add_test(tc, test_data_plane_through_arena);
        tcase_add_test(tc, test_expose_and_lookup);
        tcase_add_test(tc, test_heartbeat_has_no_reply);
        tcase_add_test(tc, test_unregister_releases_everything);
        tcase_add_test(tc, test_one_registration_per_reply_segment);
        suite_add_tcase(s, tc);
        return s;
}
