/* SPDX-License-Identifier: MIT */
/*
 * Exposed functions (ring_fn_*): the service consumes its request arena, runs the handler and
 * produces each RpcResponse into the caller's reply segment. The response is written with
 * two iovecs (frame header and Avro fields before the result, most of them encoded once per
 * function; the handler's bytes), so the result is copied exactly once, into the caller's
 * ring. Requests are decoded in place without the control tables. Callers' reply segments
 * stay mapped in a small cache, the last one used looked at first: the steady state costs no
 * system call.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "avrobin.h"
#include "conn-internal.h"
#include "frame.h"
#include "macro.h"
#include "time-util.h"

#define REPLY_CACHE 16
/* A caller whose reply ring stays full this long loses the response (it will time out). */
#define RESPOND_TIMEOUT_NS (100 * NSEC_PER_MSEC)
/* Longest error message a response carries. */
#define RESPONSE_MESSAGE_MAX 400
/* Room for the frame header and the Avro fields of an RpcResponse before its result bytes. */
#define RESPONSE_HEAD_MAX CONTROL_RPC_RESPONSE_HEAD_MAX(RESPONSE_MESSAGE_MAX)
#define FN_SERVE_SLICE_NS (1 * NSEC_PER_SEC)

typedef struct ReplyTarget {
        Segment seg;
        size_t name_len;                /* strlen(seg.name) */
        RingBuf ring;
        uint64_t last_used;
} ReplyTarget;

struct ring_fn {
        struct ring_fn *next;
        ring_conn *conn;
        char *name;
        char *key;
        Schema req, resp;
        ControlRpcConst ok_const;       /* the fields of every successful response */
        ring_fn_handler handler;
        ring_fn_value_handler value_handler;
        void *userdata;
        uint64_t fn_id;
        ArenaSlot arena;
        pthread_mutex_t serve_lock;     /* one thread serves at a time */
        uint8_t *req_buf;               /* one request record */
        size_t req_buf_size;
        uint8_t *resp_buf;              /* the handler's response bytes */
        size_t resp_buf_size;
        ReplyTarget targets[REPLY_CACHE];
        ReplyTarget *last_target;       /* the one the previous request named */
        uint64_t uses;
        avro_value_t req_value, resp_value;
        bool have_values;
};

struct ring_fn *fn_next(struct ring_fn *f) {
        return f->next;
}

RingBuf *fn_watch_ring(struct ring_fn *f) {
        return &f->arena.current.ring;
}

static int expose(ring_fn *f, int timeout_ms, Arena *ret) {
        _cleanup_free_ uint8_t *record = NULL;
        _cleanup_free_ char *arena = NULL;
        ControlMsg req = { .type = CONTROL_EXPOSE_FUNCTION }, reply;
        int r;

        req.expose = (ControlExposeFunction) {
                .client_id = (int64_t) ring_conn_client_id(f->conn),
                .fn_name = text_from_cstr(f->name),
                .req_schema_json = text_from_cstr(f->req.json),
                .resp_schema_json = text_from_cstr(f->resp.json),
                .access_key = text_from_cstr(f->key),
        };
        r = conn_control_call(f->conn, &req, CONTROL_EXPOSE_REPLY, timeout_ms, &record, &reply);
        if (r < 0)
                return r;
        if ((uint64_t) reply.expose_reply.req_fp != f->req.fp || (uint64_t) reply.expose_reply.resp_fp != f->resp.fp) {
                error_set_message("the broker computed different schema fingerprints", 49);
                control_msg_done(&reply);
                return -EPROTO;
        }
        f->fn_id = (uint64_t) reply.expose_reply.fn_id;
        r = text_dup(reply.expose_reply.req_arena, &arena);
        control_msg_done(&reply);
        if (r < 0)
                return -EBADMSG;
        return conn_open_arena(f->conn, arena, true, ret);
}

int fn_reopen(ring_fn *f) {
        RingBuf current;
        uint64_t one = 1;
        Arena a;
        int r;

        r = expose(f, CONN_RECONNECT_CALL_MS, &a);
        if (r < 0)
                return r;
        /* Read before offering: only the serving thread switches, and only after. */
        current = f->arena.current.ring;
        r = arena_slot_offer(&f->arena, &a);
        if (r < 0) {
                arena_done(&a);
                return r;
        }
        /* Wake whoever serves it so it moves over now: ring_fn_serve() sleeps on the old
         * arena (kept mapped), ring_conn_run() sleeps in poll(). */
        ringbuf_poke_consumer(&current);
        (void) !write(f->conn->event_fd, &one, sizeof(one));
        return 0;
}

/* Switches to the arena made after a broker restart (serving thread only). */
static void take_next_arena(ring_fn *f) {
        if (!arena_slot_take(&f->arena, &f->conn->list_lock))
                return;
        if (f->req_buf_size < f->arena.current.ring.capacity) {
                uint8_t *b = realloc(f->req_buf, f->arena.current.ring.capacity);
                if (b) {
                        f->req_buf = b;
                        f->req_buf_size = f->arena.current.ring.capacity;
                }
        }
        /* The watcher may be asleep on the old arena: requests now land in the new one. */
        watch_refresh(f->conn);
}

/* True if t is a mapped target for the reply segment named segment. */
static bool target_is(const ReplyTarget *t, Text segment) {
        return t->seg.base && t->name_len == segment.len && memcmp(t->seg.name, segment.ptr, segment.len) == 0;
}

/* The producer handle of a caller's reply ring, from the cache or freshly mapped. */
static RingBuf *reply_target(ring_fn *f, Text segment) {
        char name[NAMES_SEGMENT_MAX];
        ReplyTarget *t = f->last_target, *victim = &f->targets[0];

        /* Calls come in runs from one caller: the previous request's target first. A cached
         * name is a checked one, so a request that names it exactly needs no other check. */
        if (t && target_is(t, segment)) {
                t->last_used = ++f->uses;
                return &t->ring;
        }
        if (segment.len == 0 || segment.len >= sizeof(name) || memchr(segment.ptr, 0, segment.len))
                return NULL;
        memcpy(name, segment.ptr, segment.len);
        name[segment.len] = 0;
        for (size_t i = 0; i < REPLY_CACHE; i++) {
                t = &f->targets[i];
                if (target_is(t, segment)) {
                        t->last_used = ++f->uses;
                        f->last_target = t;
                        return &t->ring;
                }
                if (t->last_used < victim->last_used)
                        victim = t;
        }
        /* Only reply segments of our own bus: a request cannot aim us at other memory. */
        if (!names_is_client_segment(&f->conn->bus, name))
                return NULL;
        segment_done(&victim->seg);
        victim->last_used = 0;
        if (segment_open(&victim->seg, name, ringbuf_size(RINGBUF_MIN_CAPACITY),
                         ringbuf_size(RINGBUF_MAX_CAPACITY)) < 0)
                return NULL;
        if (ringbuf_attach_producer(&victim->ring, victim->seg.base, victim->seg.size) < 0) {
                segment_done(&victim->seg);
                return NULL;
        }
        victim->name_len = segment.len;
        victim->last_used = ++f->uses;
        f->last_target = victim;
        return &victim->ring;
}

/* Writes an RpcResponse into the caller's ring: the frame header and the fields before the
 * result (head, n bytes, or the error that made it) in one part, the result in another. */
static int push_response(RingBuf *target, uint8_t *head, int n, const void *result, size_t result_len) {
        struct iovec iov[2];

        if (n < 0)
                return n;
        iov[0] = (struct iovec) { .iov_base = head, .iov_len = (size_t) n };
        iov[1] = (struct iovec) { .iov_base = (void *) result, .iov_len = result_len };
        return ringbuf_pushv(target, iov, 2, (int64_t) RESPOND_TIMEOUT_NS);
}

static void respond_error(ring_fn *f, RingBuf *target, int64_t correlation_id, int32_t status,
                          const char *message) {
        uint8_t head[RESPONSE_HEAD_MAX];
        Text msg = { .ptr = message, .len = MIN(strlen(message), (size_t) RESPONSE_MESSAGE_MAX) };
        int n;

        n = control_rpc_response_head(correlation_id, status, msg, (int64_t) f->resp.fp, 0, head, sizeof(head));
        (void) push_response(target, head, n, NULL, 0);
}

/* A successful response: only correlation_id and the result's length are encoded here. */
static void respond(ring_fn *f, RingBuf *target, int64_t correlation_id, const void *result,
                    size_t result_len) {
        uint8_t head[CONTROL_RPC_HEAD_MAX];
        int n;

        n = control_rpc_head(&f->ok_const, correlation_id, result_len, head);
        if (push_response(target, head, n, result, result_len) == -EMSGSIZE)
                respond_error(f, target, correlation_id, CONTROL_STATUS_INTERNAL,
                              "the response is larger than the caller's reply ring");
}

static void serve_one(ring_fn *f, const uint8_t *record, size_t len) {
        char message[160];
        ControlRpcRequest m;
        RingBuf *target;
        int n;

        if (control_decode_rpc_request(record, len, &m) < 0)
                return;         /* nothing names a reply segment: the caller will time out */
        target = reply_target(f, m.reply_segment);
        if (!target)
                return;
        if ((uint64_t) m.arg_fp != f->req.fp) {
                snprintf(message, sizeof(message), "request schema 0x%016" PRIx64 " does not match the function's "
                         "0x%016" PRIx64, (uint64_t) m.arg_fp, f->req.fp);
                respond_error(f, target, m.correlation_id, CONTROL_STATUS_SCHEMA_MISMATCH, message);
                return;
        }
        if (f->handler)
                n = f->handler(m.args.ptr, m.args.len, f->resp_buf, f->resp_buf_size, f->userdata);
        else {
                n = schema_decode_value(m.args.ptr, m.args.len, &f->req_value);
                if (n >= 0) {
                        avro_value_reset(&f->resp_value);
                        n = f->value_handler(&f->req_value, &f->resp_value, f->userdata);
                }
                if (n >= 0)
                        n = schema_encode_value(&f->resp, &f->resp_value, f->resp_buf, f->resp_buf_size);
        }
        if (n < 0 || (size_t) n > f->resp_buf_size) {
                snprintf(message, sizeof(message), "handler failed: %s", ring_strerror(n < 0 ? n : -EMSGSIZE));
                respond_error(f, target, m.correlation_id, CONTROL_STATUS_INTERNAL, message);
                return;
        }
        respond(f, target, m.correlation_id, f->resp_buf, (size_t) n);
}

int fn_dispatch(ring_fn *f, unsigned max) {
        int handled = 0, n;

        if (pthread_mutex_trylock(&f->serve_lock) != 0)
                return 0;       /* another thread serves it (ring_fn_serve) */
        take_next_arena(f);
        while ((unsigned) handled < max) {
                n = ringbuf_pop(&f->arena.current.ring, f->req_buf, f->req_buf_size);
                if (n == -EAGAIN)
                        break;
                if (n == -EBADMSG) {
                        ringbuf_discard_all(&f->arena.current.ring);
                        continue;
                }
                if (n < 0)
                        break;
                serve_one(f, f->req_buf, (size_t) n);
                handled++;
        }
        pthread_mutex_unlock(&f->serve_lock);
        return handled;
}

RING_EXPORT int ring_fn_serve(ring_fn *f, int timeout_ms) {
        uint64_t deadline, now;
        int served = 0, n;

        if (!f)
                return -EINVAL;
        deadline = deadline_after(timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        while (!atomic_load(&f->conn->stop)) {
                n = fn_dispatch(f, 64);
                if (n > 0) {
                        served += n;
                        deadline = deadline_after(timeout_ms < 0 ? -1 :
                                                  (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
                        continue;
                }
                now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline)
                        break;
                /* Sliced so that an arena replaced after a broker restart is picked up. */
                (void) ringbuf_wait(&f->arena.current.ring, (int64_t) MIN(deadline - now, FN_SERVE_SLICE_NS));
        }
        return served;
}

static void fn_free(ring_fn *f) {
        arena_slot_done(&f->arena);
        for (size_t i = 0; i < REPLY_CACHE; i++)
                segment_done(&f->targets[i].seg);
        if (f->have_values) {
                avro_value_decref(&f->req_value);
                avro_value_decref(&f->resp_value);
        }
        if (f->key) {
                sodium_memzero(f->key, strlen(f->key));
                free(f->key);
        }
        free(f->name);
        free(f->req_buf);
        free(f->resp_buf);
        schema_done(&f->req);
        schema_done(&f->resp);
        pthread_mutex_destroy(&f->serve_lock);
        free(f);
}

static int fn_expose(ring_conn *conn, const char *name, const char *req_schema, const char *resp_schema,
                     const char *access_key, ring_fn_handler handler, ring_fn_value_handler value_handler,
                     void *userdata, ring_fn **ret) {
        ring_fn *f;
        Arena a;
        int r;

        if (!conn || !name || !*name || !req_schema || !resp_schema || !ret || (!handler && !value_handler))
                return -EINVAL;
        error_clear_message();
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->conn = conn;
        arena_slot_init(&f->arena);
        for (size_t i = 0; i < REPLY_CACHE; i++)
                f->targets[i].seg = SEGMENT_NULL;
        pthread_mutex_init(&f->serve_lock, NULL);
        f->handler = handler;
        f->value_handler = value_handler;
        f->userdata = userdata;
        f->name = strdup(name);
        f->key = strdup(access_key ?: "");
        f->resp_buf_size = CONN_REPLY_CAPACITY - RESPONSE_HEAD_MAX - RINGBUF_RECORD_PREFIX;
        f->resp_buf = malloc(f->resp_buf_size);
        if (!f->name || !f->key || !f->resp_buf) {
                r = -ENOMEM;
                goto fail;
        }
        r = schema_parse(req_schema, &f->req);
        if (r >= 0)
                r = schema_parse(resp_schema, &f->resp);
        if (r >= 0)
                r = control_rpc_response_ok_const((int64_t) f->resp.fp, &f->ok_const);
        if (r < 0)
                goto fail;
        if (value_handler) {
                r = schema_new_value(&f->req, &f->req_value);
                if (r < 0)
                        goto fail;
                r = schema_new_value(&f->resp, &f->resp_value);
                if (r < 0) {
                        avro_value_decref(&f->req_value);
                        goto fail;
                }
                f->have_values = true;
        }
        r = expose(f, CONN_OPEN_TIMEOUT_MS, &a);
        if (r < 0)
                goto fail;
        arena_slot_set(&f->arena, a);
        f->req_buf_size = f->arena.current.ring.capacity;
        f->req_buf = malloc(f->req_buf_size);
        if (!f->req_buf) {
                r = -ENOMEM;
                goto fail;
        }
        pthread_mutex_lock(&conn->objects_lock);
        pthread_mutex_lock(&conn->list_lock);
        f->next = conn->fns;
        conn->fns = f;
        pthread_mutex_unlock(&conn->list_lock);
        pthread_mutex_unlock(&conn->objects_lock);
        watch_rings_changed(conn);
        *ret = f;
        return 0;
fail:
        fn_free(f);
        return r;
}

RING_EXPORT int ring_fn_expose(ring_conn *conn, const char *name, const char *req_schema, const char *resp_schema,
                               const char *access_key, ring_fn_handler handler, void *userdata, ring_fn **ret) {
        if (!handler)
                return -EINVAL;
        return fn_expose(conn, name, req_schema, resp_schema, access_key, handler, NULL, userdata, ret);
}

RING_EXPORT int ring_fn_expose_value(ring_conn *conn, const char *name, const char *req_schema,
                                     const char *resp_schema, const char *access_key,
                                     ring_fn_value_handler handler, void *userdata, ring_fn **ret) {
        if (!handler)
                return -EINVAL;
        return fn_expose(conn, name, req_schema, resp_schema, access_key, NULL, handler, userdata, ret);
}

RING_EXPORT void ring_fn_close(ring_fn *f) {
        ring_conn *c;

        if (!f)
                return;
        c = f->conn;
        /* v1 has no "unexpose": the broker keeps the name until the connection closes. */
        pthread_mutex_lock(&c->objects_lock);
        pthread_mutex_lock(&c->list_lock);
        for (ring_fn **pp = &c->fns; *pp; pp = &(*pp)->next)
                if (*pp == f) {
                        *pp = f->next;
                        break;
                }
        pthread_mutex_unlock(&c->list_lock);
        pthread_mutex_unlock(&c->objects_lock);
        watch_rings_changed(c);
        /* Wait for a thread still serving it. */
        pthread_mutex_lock(&f->serve_lock);
        pthread_mutex_unlock(&f->serve_lock);
        fn_free(f);
}

void fn_free_all(ring_conn *c) {
        while (c->fns) {
                ring_fn *f = c->fns;
                c->fns = f->next;
                fn_free(f);
        }
}
