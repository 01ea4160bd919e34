/* SPDX-License-Identifier: MIT */
/*
 * The raw v1 test client (see v1client.h). It speaks the wire through libring/core only and
 * keeps no policy of libring's: tests use it to play a v1 connector, well-behaved or not. It
 * must not assert or print, since forked helper processes use it too.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "control.h"
#include "macro.h"
#include "unaligned.h"
#include "v1client.h"

/* The largest control segment we map: header plus the largest ring the core accepts. */
#define CONTROL_MAX_SIZE \
        (V1CLIENT_SUBMISSION_OFFSET + RINGBUF_HEADER_SIZE + (size_t) RINGBUF_MAX_CAPACITY)
#define CONTROL_MIN_SIZE (V1CLIENT_SUBMISSION_OFFSET + RINGBUF_HEADER_SIZE + RINGBUF_MIN_CAPACITY)

/* Checks the header of a mapped control segment and reads pid and epoch. */
static int control_header(const Segment *s, uint32_t *ret_pid, uint64_t *ret_epoch) {
        uint64_t magic;

        /* Acquire: pairs with the broker's release store of the magic, which it writes last. */
        magic = atomic_load_explicit((_Atomic uint64_t *) s->base, memory_order_acquire);
        if (le64toh(magic) != V1CLIENT_CONTROL_MAGIC ||
            unaligned_read_le32(s->base + 8) != V1CLIENT_CONTROL_VERSION)
                return -EBADMSG;
        if (ret_pid)
                *ret_pid = unaligned_read_le32(s->base + 12);
        if (ret_epoch)
                *ret_epoch = unaligned_read_le64(s->base + 16);
        return 0;
}

int v1client_probe(const BusNames *bus, uint32_t *ret_broker_pid, uint64_t *ret_epoch) {
        char name[NAMES_SEGMENT_MAX];
        Segment s = SEGMENT_NULL;
        int r;

        r = names_control(bus, name, sizeof(name));
        if (r < 0)
                return r;
        r = segment_open(&s, name, CONTROL_MIN_SIZE, CONTROL_MAX_SIZE);
        if (r < 0)
                return r;
        r = control_header(&s, ret_broker_pid, ret_epoch);
        segment_done(&s);
        return r;
}

static int random_u64(uint64_t *ret) {
        uint64_t v;
        ssize_t n;

        n = getrandom(&v, sizeof(v), 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof(v))
                return -EIO;
        *ret = v;
        return 0;
}

static int reply_segment_create(V1Client *c, uint32_t capacity) {
        char name[NAMES_SEGMENT_MAX];
        uint64_t nonce;
        int r;

        /* A random nonce names the segment; retry on the (unlikely) clash with a live one. */
        for (unsigned attempt = 0; attempt < 16; attempt++) {
                r = random_u64(&nonce);
                if (r < 0)
                        return r;
                r = names_client(&c->bus, nonce, name, sizeof(name));
                if (r < 0)
                        return r;
                r = segment_create(&c->reply_seg, name, ringbuf_size(capacity), 0600);
                if (r == -EEXIST)
                        continue;
                if (r < 0)
                        return r;
                c->nonce = nonce;
                r = ringbuf_format(c->reply_seg.base, c->reply_seg.size, capacity);
                if (r < 0)
                        return r;
                return ringbuf_attach_consumer(&c->reply, c->reply_seg.base, c->reply_seg.size);
        }
        return -EEXIST;
}

static int control_map(V1Client *c) {
        char name[NAMES_SEGMENT_MAX];
        int r;

        r = names_control(&c->bus, name, sizeof(name));
        if (r < 0)
                return r;
        r = segment_open(&c->control, name, CONTROL_MIN_SIZE, CONTROL_MAX_SIZE);
        if (r < 0)
                return r;
        r = control_header(&c->control, &c->broker_pid, &c->epoch);
        if (r >= 0)
                r = ringbuf_attach_producer(&c->submit, c->control.base + V1CLIENT_SUBMISSION_OFFSET,
                                            c->control.size - V1CLIENT_SUBMISSION_OFFSET);
        if (r < 0)
                segment_done(&c->control);
        return r;
}

int v1client_reopen_control(V1Client *c) {
        if (!c || !c->reply_seg.base)
                return -EINVAL;
        segment_done(&c->control);
        c->submit = (RingBuf) {};
        c->client_id = 0;
        return control_map(c);
}

int v1client_open(V1Client *ret, const char *bus, uint32_t reply_capacity) {
        V1Client c = V1CLIENT_NULL;
        int r;

        if (!ret)
                return -EINVAL;
        if (reply_capacity == 0)
                reply_capacity = V1CLIENT_REPLY_CAPACITY;

        r = bus ? names_bus_init(&c.bus, bus) : names_bus_from_env(&c.bus);
        if (r < 0)
                return r;
        r = control_map(&c);
        if (r < 0)
                return r;
        r = reply_segment_create(&c, reply_capacity);
        if (r < 0)
                goto fail;

        c.next_cid = 1;
        *ret = c;
        return 0;
fail:
        v1client_close(&c);
        return r;
}

void v1client_close(V1Client *c) {
        if (!c)
                return;
        if (c->client_id != 0 && c->control.base) {
                ControlMsg m = {
                        .type = CONTROL_UNREGISTER,
                        .unregister = {
                                .correlation_id = v1client_next_cid(c),
                                .client_id = c->client_id,
                        },
                };
                uint8_t buf[64];
                int n = control_encode(&m, buf, sizeof(buf));

                /* Best effort and never blocking: the broker may be gone or its ring wedged. */
                if (n > 0)
                        (void) ringbuf_push(&c->submit, buf, (size_t) n, 0);
                c->client_id = 0;
        }
        if (c->reply_seg.base) {
                (void) segment_unlink(c->reply_seg.name);
                segment_done(&c->reply_seg);
        }
        if (c->control.base)
                segment_done(&c->control);
        c->reply = (RingBuf) {};
        c->submit = (RingBuf) {};
}

void v1client_reply_done(V1Reply *r) {
        if (!r)
                return;
        if (r->buf)
                control_msg_done(&r->msg);
        free(r->buf);
        *r = V1REPLY_NULL;
}

int32_t v1client_reply_status(const V1Reply *r) {
        switch (r->msg.type) {
        case CONTROL_REGISTER_REPLY:
                return r->msg.register_reply.status;
        case CONTROL_PUBLISH_REPLY:
                return r->msg.publish_reply.status;
        case CONTROL_SUBSCRIBE_REPLY:
                return r->msg.subscribe_reply.status;
        case CONTROL_EXPOSE_REPLY:
                return r->msg.expose_reply.status;
        case CONTROL_LOOKUP_REPLY:
                return r->msg.lookup_reply.status;
        case CONTROL_RPC_RESPONSE:
                return r->msg.rpc_response.status;
        default:
                return -1;
        }
}

Text v1client_reply_message(const V1Reply *r) {
        switch (r->msg.type) {
        case CONTROL_REGISTER_REPLY:
                return r->msg.register_reply.message;
        case CONTROL_PUBLISH_REPLY:
                return r->msg.publish_reply.message;
        case CONTROL_SUBSCRIBE_REPLY:
                return r->msg.subscribe_reply.message;
        case CONTROL_EXPOSE_REPLY:
                return r->msg.expose_reply.message;
        case CONTROL_LOOKUP_REPLY:
                return r->msg.lookup_reply.message;
        case CONTROL_RPC_RESPONSE:
                return r->msg.rpc_response.message;
        default:
                return TEXT_NULL;
        }
}

int64_t v1client_next_cid(V1Client *c) {
        return c->next_cid++;
}

/* Every control record starts with correlation_id (ring-wire-v1, "Control records"), so the
 * union's structs share it as their common initial member (C11 6.5.2.3p6). */
int64_t v1client_msg_cid(const ControlMsg *m) {
        return m->heartbeat.correlation_id;
}

static void msg_set_cid(ControlMsg *m, int64_t cid) {
        m->heartbeat.correlation_id = cid;
}

int v1client_send(V1Client *c, const ControlMsg *m) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size;
        int n;

        if (!c || !m || !c->control.base)
                return -EINVAL;
        size = control_encoded_size(m);
        if (size == 0 || size > INT32_MAX)
                return -EINVAL;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        n = control_encode(m, buf, size);
        if (n < 0)
                return n;
        return ringbuf_push(&c->submit, buf, (size_t) n, V1CLIENT_TIMEOUT_NS);
}

int v1client_push_raw(V1Client *c, const void *bytes, size_t len, int64_t timeout_ns) {
        if (!c || !c->control.base)
                return -EINVAL;
        return ringbuf_push(&c->submit, bytes, len, timeout_ns);
}

int v1client_recv(V1Client *c, int64_t correlation_id, int64_t timeout_ns, V1Reply *ret) {
        uint64_t deadline, now;
        int r;

        if (!c || !ret || !c->reply_seg.base)
                return -EINVAL;
        deadline = deadline_after(timeout_ns);
        for (;;) {
                _cleanup_free_ uint8_t *buf = NULL;
                ControlMsg m;
                int len;

                now = now_ns(CLOCK_MONOTONIC);
                if (!ringbuf_has_data(&c->reply)) {
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        r = ringbuf_wait(&c->reply,
                                         deadline == UINT64_MAX ? -1 : (int64_t) (deadline - now));
                        /* -EAGAIN: woken without data (ringbuf_wait() lets callers loop). */
                        if (r < 0 && r != -EAGAIN)
                                return r;
                        continue;
                }
                len = ringbuf_peek_len(&c->reply);
                if (len < 0)
                        return len;
                /* The popped bytes are the storage of the decoded strings: the reply owns them. */
                buf = malloc(len > 0 ? (size_t) len : 1);
                if (!buf)
                        return -ENOMEM;
                len = ringbuf_pop(&c->reply, buf, (size_t) len);
                if (len < 0)
                        return len;
                r = control_decode(buf, (size_t) len, &m);
                if (r < 0)
                        return r;
                if (correlation_id < 0 || v1client_msg_cid(&m) == correlation_id) {
                        *ret = (V1Reply) { .msg = m, .buf = TAKE_PTR(buf), .len = (size_t) len };
                        return 0;
                }
                control_msg_done(&m);
                c->stray_replies++;
        }
}

int v1client_call(V1Client *c, ControlMsg *m, V1Reply *ret) {
        int64_t cid;
        int r;

        if (!c || !m || !ret)
                return -EINVAL;
        cid = v1client_next_cid(c);
        msg_set_cid(m, cid);
        r = v1client_send(c, m);
        if (r < 0)
                return r;
        return v1client_recv(c, cid, V1CLIENT_TIMEOUT_NS, ret);
}

static int do_register(V1Client *c, ControlType wire_type, const char *app, int64_t heartbeat_ms,
                       int64_t pid, V1Reply *ret) {
        ControlMsg m = {
                .type = CONTROL_REGISTER,
                .wire_type = wire_type,
                .reg = {
                        .app_name = text_from_cstr(app),
                        .nonce = (int64_t) c->nonce,
                        .reply_segment = text_from_cstr(c->reply_seg.name),
                        .heartbeat_ms = heartbeat_ms,
                        .pid = pid,
                },
        };
        V1Reply reply = V1REPLY_NULL;
        int r;

        r = v1client_call(c, &m, &reply);
        if (r < 0)
                return r;
        if (reply.msg.type == CONTROL_REGISTER_REPLY &&
            reply.msg.register_reply.status == CONTROL_STATUS_OK)
                c->client_id = reply.msg.register_reply.client_id;
        *ret = reply;
        return 0;
}

int v1client_register(V1Client *c, const char *app, int64_t heartbeat_ms, int64_t pid, V1Reply *ret) {
        return do_register(c, CONTROL_REGISTER, app, heartbeat_ms, pid, ret);
}

int v1client_register_v0(V1Client *c, const char *app, int64_t heartbeat_ms, V1Reply *ret) {
        return do_register(c, CONTROL_REGISTER_V0, app, heartbeat_ms, 0, ret);
}

int v1client_publish(V1Client *c, const char *channel, const char *schema_json, const char *key,
                     V1Reply *ret) {
        ControlMsg m = {
                .type = CONTROL_PUBLISH_CHANNEL,
                .publish = {
                        .client_id = c->client_id,
                        .channel = text_from_cstr(channel),
                        .schema_json = text_from_cstr(schema_json),
                        .access_key = text_from_cstr(key),
                },
        };

        return v1client_call(c, &m, ret);
}

int v1client_list_channels(V1Client *c, V1Reply *ret) {
        ControlMsg m = {
                .type = CONTROL_LIST_CHANNELS,
                .list_channels = { .client_id = c->client_id },
        };

        return v1client_call(c, &m, ret);
}

int v1client_subscribe(V1Client *c, int64_t channel_id, const char *key, int64_t expected_fp,
                       V1Reply *ret) {
        ControlMsg m = {
                .type = CONTROL_SUBSCRIBE,
                .subscribe = {
                        .client_id = c->client_id,
                        .channel_id = channel_id,
                        .access_key = text_from_cstr(key),
                        .expected_fp = expected_fp,
                },
        };

        return v1client_call(c, &m, ret);
}

static int do_expose(V1Client *c, ControlType wire_type, const char *fn, const char *req_schema,
                     const char *resp_schema, const char *key, int64_t req_arena_cap, V1Reply *ret) {
        ControlMsg m = {
                .type = CONTROL_EXPOSE_FUNCTION,
                .wire_type = wire_type,
                .expose = {
                        .client_id = c->client_id,
                        .fn_name = text_from_cstr(fn),
                        .req_schema_json = text_from_cstr(req_schema),
                        .resp_schema_json = text_from_cstr(resp_schema),
                        .access_key = text_from_cstr(key),
                        .req_arena_cap = req_arena_cap,
                },
        };

        return v1client_call(c, &m, ret);
}

int v1client_expose(V1Client *c, const char *fn, const char *req_schema, const char *resp_schema,
                    const char *key, int64_t req_arena_cap, V1Reply *ret) {
        return do_expose(c, CONTROL_EXPOSE_FUNCTION, fn, req_schema, resp_schema, key, req_arena_cap,
                         ret);
}

int v1client_expose_v0(V1Client *c, const char *fn, const char *req_schema, const char *resp_schema,
                       const char *key, V1Reply *ret) {
        return do_expose(c, CONTROL_EXPOSE_FUNCTION_V0, fn, req_schema, resp_schema, key, 0, ret);
}

int v1client_lookup(V1Client *c, const char *fn, const char *key, V1Reply *ret) {
        ControlMsg m = {
                .type = CONTROL_LOOKUP_FUNCTION,
                .lookup = {
                        .client_id = c->client_id,
                        .fn_name = text_from_cstr(fn),
                        .access_key = text_from_cstr(key),
                },
        };

        return v1client_call(c, &m, ret);
}

int v1client_unregister(V1Client *c) {
        ControlMsg m = {
                .type = CONTROL_UNREGISTER,
                .unregister = { .correlation_id = v1client_next_cid(c), .client_id = c->client_id },
        };
        int r;

        r = v1client_send(c, &m);
        if (r < 0)
                return r;
        c->client_id = 0;
        return 0;
}

int v1client_heartbeat(V1Client *c, int64_t seq) {
        ControlMsg m = {
                .type = CONTROL_HEARTBEAT,
                .heartbeat = {
                        .correlation_id = v1client_next_cid(c),
                        .client_id = c->client_id,
                        .seq = seq,
                },
        };

        return v1client_send(c, &m);
}
