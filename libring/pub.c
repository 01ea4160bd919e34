/* SPDX-License-Identifier: MIT */
/*
 * Publishing (ring_pub_*). A publisher is the producer of its channel's arena. Sending frames
 * the message with two iovecs (header, body): the raw path copies the caller's bytes straight
 * into shared memory and allocates nothing; the value path first encodes into a buffer kept
 * between sends. After a broker restart the supervisor publishes
 * the channel again and offers the new arena (arena.c); the sending thread switches at its
 * next send, so the hot path needs no lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "conn-internal.h"
#include "frame.h"
#include "macro.h"
#include "time-util.h"

struct ring_pub {
        struct ring_pub *next;
        ring_conn *conn;
        char *channel;
        char *key;                      /* kept to publish again after a broker restart */
        Schema schema;
        uint64_t channel_id;
        ArenaSlot arena;
        uint8_t *value_buf;             /* encode buffer for avro-c values, kept between sends */
        size_t value_buf_size;
};

struct ring_pub *pub_next(struct ring_pub *p) {
        return p->next;
}

static int publish(ring_pub *p, int timeout_ms, Arena *ret) {
        _cleanup_free_ uint8_t *record = NULL;
        ControlMsg req = { .type = CONTROL_PUBLISH_CHANNEL }, reply;
        _cleanup_free_ char *arena = NULL;
        int r;

        req.publish = (ControlPublishChannel) {
                .client_id = (int64_t) ring_conn_client_id(p->conn),
                .channel = text_from_cstr(p->channel),
                .schema_json = text_from_cstr(p->schema.json),
                .access_key = text_from_cstr(p->key),
        };
        r = conn_control_call(p->conn, &req, CONTROL_PUBLISH_REPLY, timeout_ms, &record, &reply);
        if (r < 0)
                return r;
        if ((uint64_t) reply.publish_reply.schema_fp != p->schema.fp) {
                /* The broker fingerprints the schema itself; a different answer means the two
                 * disagree on canonical form, and subscribers would be refused. */
                error_set_message("the broker computed a different schema fingerprint", 51);
                control_msg_done(&reply);
                return -EPROTO;
        }
        p->channel_id = (uint64_t) reply.publish_reply.channel_id;
        r = text_dup(reply.publish_reply.arena, &arena);
        control_msg_done(&reply);
        if (r < 0)
                return -EBADMSG;
        return conn_open_arena(p->conn, arena, false, ret);
}

int pub_reopen(ring_pub *p) {
        Arena a;
        int r;

        r = publish(p, CONN_RECONNECT_CALL_MS, &a);
        if (r < 0)
                return r;
        r = arena_slot_offer(&p->arena, &a);
        if (r < 0)
                arena_done(&a);
        return r;
}

RING_EXPORT int ring_pub_open(ring_conn *conn, const char *channel, const char *schema_json,
                              const char *access_key, ring_pub **ret) {
        ring_pub *p;
        Arena a;
        int r;

        if (!conn || !channel || !*channel || !schema_json || !ret)
                return -EINVAL;
        error_clear_message();
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->conn = conn;
        arena_slot_init(&p->arena);
        p->channel = strdup(channel);
        p->key = strdup(access_key ?: "");
        if (!p->channel || !p->key) {
                r = -ENOMEM;
                goto fail;
        }
        r = schema_parse(schema_json, &p->schema);
        if (r < 0)
                goto fail;
        r = publish(p, CONN_OPEN_TIMEOUT_MS, &a);
        if (r < 0)
                goto fail;
        arena_slot_set(&p->arena, a);

        pthread_mutex_lock(&conn->objects_lock);
        pthread_mutex_lock(&conn->list_lock);
        p->next = conn->pubs;
        conn->pubs = p;
        pthread_mutex_unlock(&conn->list_lock);
        pthread_mutex_unlock(&conn->objects_lock);
        *ret = p;
        return 0;
fail:
        arena_slot_done(&p->arena);
        if (p->key)
                sodium_memzero(p->key, strlen(p->key));
        free(p->key);
        free(p->channel);
        schema_done(&p->schema);
        free(p);
        return r;
}

RING_EXPORT int ring_pub_send_raw(ring_pub *p, const void *avro_bytes, size_t len, int timeout_ms) {
        uint8_t header[FRAME_HEADER_SIZE];
        struct iovec iov[2];
        int r;

        if (!p || (len && !avro_bytes) || len > UINT32_MAX)
                return -EINVAL;
        /* After a broker restart the channel lives in a new arena. */
        (void) arena_slot_take(&p->arena, &p->conn->list_lock);
        frame_header_encode(header, p->schema.fp, (uint32_t) len);
        iov[0] = (struct iovec) { .iov_base = header, .iov_len = sizeof(header) };
        iov[1] = (struct iovec) { .iov_base = (void *) avro_bytes, .iov_len = len };
        r = ringbuf_pushv(&p->arena.current.ring, iov, 2, timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        if (r == -EBADMSG)
                return -ECONNRESET;     /* the arena's cursors are corrupt: a peer misbehaved */
        return r;
}

RING_EXPORT int ring_pub_send(ring_pub *p, const struct avro_value *value, int timeout_ms) {
        int n;

        if (!p || !value)
                return -EINVAL;
        /* Straight into the buffer of earlier messages, grown only for a value that does not fit. */
        n = schema_encode_value_grow(&p->schema, value, &p->value_buf, &p->value_buf_size);
        if (n < 0)
                return n;
        return ring_pub_send_raw(p, p->value_buf, (size_t) n, timeout_ms);
}

RING_EXPORT int ring_pub_new_value(ring_pub *p, struct avro_value *value) {
        if (!p || !value)
                return -EINVAL;
        return schema_new_value(&p->schema, value);
}

RING_EXPORT uint64_t ring_pub_fingerprint(const ring_pub *p) {
        return p ? p->schema.fp : 0;
}

static void pub_free(ring_pub *p) {
        arena_slot_done(&p->arena);
        sodium_memzero(p->key, strlen(p->key));
        free(p->key);
        free(p->channel);
        free(p->value_buf);
        schema_done(&p->schema);
        free(p);
}

RING_EXPORT void ring_pub_close(ring_pub *p) {
        ring_conn *c;

        if (!p)
                return;
        c = p->conn;
        /* v1 has no "unpublish": the broker keeps the name until the connection closes. */
        pthread_mutex_lock(&c->objects_lock);
        pthread_mutex_lock(&c->list_lock);
        for (ring_pub **pp = &c->pubs; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        pthread_mutex_unlock(&c->list_lock);
        pthread_mutex_unlock(&c->objects_lock);
        pub_free(p);
}

void pub_free_all(ring_conn *c) {
        while (c->pubs) {
                ring_pub *p = c->pubs;
                c->pubs = p->next;
                pub_free(p);
        }
}
