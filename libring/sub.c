/* SPDX-License-Identifier: MIT */
/*
 * Subscribing (ring_sub_*). A subscriber resolves the channel by name (ListChannels), subscribes
 * with its own schema's fingerprint and its key, and consumes the arena. Every frame's
 * fingerprint is checked against the subscription's again. After a broker restart channel ids
 * change: the subscriber first drains what is left in the old arena, then reports -ECONNRESET
 * once, and ring_sub_resubscribe() resolves the channel again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "conn-internal.h"
#include "frame.h"
#include "macro.h"
#include "time-util.h"

/* Longest single sleep of a blocking receive: it then checks for a broker restart. */
#define RECV_SLICE_NS (1 * NSEC_PER_SEC)
/* While re-subscribing, how often to look whether the publisher is back. */
#define RESUBSCRIBE_RETRY_NS (50 * NSEC_PER_MSEC)

struct ring_sub {
        struct ring_sub *next;
        ring_conn *conn;
        char *channel;
        char *key;
        Schema schema;
        ArenaSlot arena;                /* .attached: subscribed (false after a reset) */
        uint64_t generation;            /* of the connection when we subscribed */
        uint8_t *buf;                   /* one record, for value and callback delivery */
        size_t buf_size;
        ring_sub_callback callback;
        void *userdata;
};

struct ring_sub *sub_next(struct ring_sub *s) {
        return s->next;
}

RingBuf *sub_watch_ring(struct ring_sub *s) {
        return s->arena.attached && s->callback ? &s->arena.current.ring : NULL;
}

void sub_connection_reset(struct ring_sub *s) {
        /* Wake a receive sleeping on the old arena so it notices the restart now. */
        if (s->arena.attached)
                ringbuf_poke_consumer(&s->arena.current.ring);
}

/* Finds the channel's id in the broker's list; -ENOENT if nobody publishes it. */
static int resolve(ring_sub *s, int timeout_ms, uint64_t *ret_id) {
        _cleanup_free_ uint8_t *record = NULL;
        ControlMsg req = { .type = CONTROL_LIST_CHANNELS }, reply;
        int r = -ENOENT;

        req.list_channels.client_id = (int64_t) ring_conn_client_id(s->conn);
        r = conn_control_call(s->conn, &req, CONTROL_CHANNEL_LIST, timeout_ms, &record, &reply);
        if (r < 0)
                return r;
        r = -ENOENT;
        for (size_t i = 0; i < reply.channel_list.n_channels; i++) {
                const ControlChannelInfo *ci = &reply.channel_list.channels[i];
                if (!text_eq_cstr(ci->name, s->channel))
                        continue;
                if ((uint64_t) ci->schema_fp != s->schema.fp) {
                        error_set_message("the channel's schema differs from the subscriber's", 50);
                        r = -EPROTO;
                } else {
                        *ret_id = (uint64_t) ci->channel_id;
                        r = 0;
                }
                break;
        }
        if (r == -ENOENT)
                error_set_message("no channel of that name is published", 36);
        control_msg_done(&reply);
        return r;
}

static int subscribe(ring_sub *s, int timeout_ms) {
        _cleanup_free_ uint8_t *record = NULL;
        _cleanup_free_ char *arena = NULL;
        ControlMsg req = { .type = CONTROL_SUBSCRIBE }, reply;
        uint64_t generation = atomic_load(&s->conn->generation), id;
        Arena a;
        int r;

        r = resolve(s, timeout_ms, &id);
        if (r < 0)
                return r;
        req.subscribe = (ControlSubscribe) {
                .client_id = (int64_t) ring_conn_client_id(s->conn),
                .channel_id = (int64_t) id,
                .access_key = text_from_cstr(s->key),
                .expected_fp = (int64_t) s->schema.fp,
        };
        r = conn_control_call(s->conn, &req, CONTROL_SUBSCRIBE_REPLY, timeout_ms, &record, &reply);
        if (r < 0)
                return r;
        r = text_dup(reply.subscribe_reply.arena, &arena);
        control_msg_done(&reply);
        if (r < 0)
                return -EBADMSG;
        r = conn_open_arena(s->conn, arena, true, &a);
        if (r < 0)
                return r;
        /* Under list_lock: the watcher reads the slot. */
        pthread_mutex_lock(&s->conn->list_lock);
        arena_slot_set(&s->arena, a);
        s->generation = generation;
        pthread_mutex_unlock(&s->conn->list_lock);
        /* The watcher must sleep on the new arena too when messages go to a callback. */
        if (s->callback)
                watch_rings_changed(s->conn);
        if (s->buf_size < a.ring.capacity) {
                uint8_t *grown = realloc(s->buf, a.ring.capacity);
                if (!grown)
                        return -ENOMEM;
                s->buf = grown;
                s->buf_size = a.ring.capacity;
        }
        return 0;
}

static void sub_free(ring_sub *s) {
        arena_slot_done(&s->arena);
        if (s->key) {
                sodium_memzero(s->key, strlen(s->key));
                free(s->key);
        }
        free(s->channel);
        free(s->buf);
        schema_done(&s->schema);
        free(s);
}

RING_EXPORT int ring_sub_open(ring_conn *conn, const char *channel, const char *schema_json,
                              const char *access_key, ring_sub **ret) {
        ring_sub *s;
        int r;

        if (!conn || !channel || !*channel || !schema_json || !ret)
                return -EINVAL;
        error_clear_message();
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->conn = conn;
        arena_slot_init(&s->arena);
        s->channel = strdup(channel);
        s->key = strdup(access_key ?: "");
        if (!s->channel || !s->key) {
                r = -ENOMEM;
                goto fail;
        }
        r = schema_parse(schema_json, &s->schema);
        if (r < 0)
                goto fail;
        r = subscribe(s, CONN_OPEN_TIMEOUT_MS);
        if (r < 0)
                goto fail;
        pthread_mutex_lock(&conn->objects_lock);
        pthread_mutex_lock(&conn->list_lock);
        s->next = conn->subs;
        conn->subs = s;
        pthread_mutex_unlock(&conn->list_lock);
        pthread_mutex_unlock(&conn->objects_lock);
        *ret = s;
        return 0;
fail:
        sub_free(s);
        return r;
}

RING_EXPORT int ring_sub_resubscribe(ring_sub *s, int timeout_ms) {
        uint64_t deadline = deadline_after(timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        int r;

        if (!s)
                return -EINVAL;
        error_clear_message();
        r = conn_wait_connected(s->conn, deadline);
        if (r < 0)
                return r;
        /* The publisher re-publishes on its own after a restart: until then the name is
         * unknown, so keep looking until the deadline. */
        for (;;) {
                r = subscribe(s, timeout_ms);
                if (r != -ENOENT && r != -ENOTCONN)
                        return r;
                if (now_ns(CLOCK_MONOTONIC) + RESUBSCRIBE_RETRY_NS >= deadline)
                        return r;
                struct timespec ts = timespec_from_ns(RESUBSCRIBE_RETRY_NS);
                nanosleep(&ts, NULL);
        }
}

/* -ECONNRESET once the broker restarted and the old arena is drained; -ENOTCONN after. */
static int check_connection(ring_sub *s) {
        if (!s->arena.attached)
                return -ENOTCONN;
        if (_likely_(atomic_load_explicit(&s->conn->generation, memory_order_relaxed) == s->generation))
                return 0;
        if (ringbuf_has_data(&s->arena.current.ring))
                return 0;
        pthread_mutex_lock(&s->conn->list_lock);
        arena_slot_retire(&s->arena);
        pthread_mutex_unlock(&s->conn->list_lock);
        error_set_message("the broker restarted: subscribe again", 37);
        return -ECONNRESET;
}

/* Pops one message: its header into a local copy, its body into buf. */
static int pop_message(ring_sub *s, void *buf, size_t size) {
        uint8_t header[FRAME_HEADER_SIZE];
        struct iovec iov[2] = {
                { .iov_base = header, .iov_len = sizeof(header) },
                { .iov_base = buf, .iov_len = size },
        };
        Frame f;
        int n;

        n = ringbuf_popv(&s->arena.current.ring, iov, 2);
        if (n == -EBADMSG) {
                ringbuf_discard_all(&s->arena.current.ring);
                return -EBADMSG;
        }
        if (n < 0)
                return n;
        /* frame_decode() reads only the 16 header bytes; the body is in buf. */
        if (frame_decode(header, (size_t) n, &f) < 0)
                return -EBADMSG;
        if (f.schema_fp != s->schema.fp)
                return -EPROTO;
        return n - FRAME_HEADER_SIZE;
}

RING_EXPORT int ring_sub_recv_raw(ring_sub *s, void *buf, size_t size, int timeout_ms) {
        uint64_t deadline = 0, now;
        int n, r;

        if (!s || (size && !buf))
                return -EINVAL;
        for (;;) {
                r = check_connection(s);
                if (r < 0)
                        return r;
                n = pop_message(s, buf, size);
                if (n != -EAGAIN)
                        return n;
                if (timeout_ms == 0)
                        return -EAGAIN;
                if (deadline == 0)
                        deadline = deadline_after(timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
                now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = ringbuf_wait(&s->arena.current.ring, (int64_t) MIN(deadline - now, RECV_SLICE_NS));
                if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN)
                        return r;
        }
}

RING_EXPORT int ring_sub_recv(ring_sub *s, struct avro_value *value, int timeout_ms) {
        int n;

        if (!s || !value)
                return -EINVAL;
        /* Before a message is taken, so that a value of another schema loses none. */
        n = schema_check_value(&s->schema, value);
        if (n < 0)
                return n;
        n = ring_sub_recv_raw(s, s->buf, s->buf_size, timeout_ms);
        if (n < 0)
                return n;
        return schema_decode_value(s->buf, (size_t) n, value);
}

RING_EXPORT int ring_sub_new_value(ring_sub *s, struct avro_value *value) {
        if (!s || !value)
                return -EINVAL;
        return schema_new_value(&s->schema, value);
}

RING_EXPORT int ring_sub_set_callback(ring_sub *s, ring_sub_callback callback, void *userdata) {
        if (!s)
                return -EINVAL;
        s->callback = callback;
        s->userdata = userdata;
        watch_rings_changed(s->conn);
        return 0;
}

int sub_dispatch(ring_sub *s) {
        int handled = 0, n;

        if (!s->callback)
                return 0;
        while (handled < 256) {
                if (check_connection(s) < 0)
                        break;
                n = pop_message(s, s->buf, s->buf_size);
                if (n == -EAGAIN)
                        break;
                if (n >= 0)
                        s->callback(s, s->buf, (size_t) n, s->userdata);
                handled++;
        }
        return handled;
}

RING_EXPORT uint64_t ring_sub_fingerprint(const ring_sub *s) {
        return s ? s->schema.fp : 0;
}

RING_EXPORT void ring_sub_close(ring_sub *s) {
        ring_conn *c;

        if (!s)
                return;
        c = s->conn;
        pthread_mutex_lock(&c->objects_lock);
        pthread_mutex_lock(&c->list_lock);
        for (ring_sub **pp = &c->subs; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        pthread_mutex_unlock(&c->list_lock);
        pthread_mutex_unlock(&c->objects_lock);
        watch_rings_changed(c);
        sub_free(s);
}

void sub_free_all(ring_conn *c) {
        while (c->subs) {
                ring_sub *s = c->subs;
                c->subs = s->next;
                sub_free(s);
        }
}
