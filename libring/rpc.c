/* SPDX-License-Identifier: MIT */
/*
 * Calling functions (ring_rpc_*). A ring_rpc is a looked-up function: its request arena, whose
 * producer we are, and its checked fingerprints. A call writes the RpcRequest with two iovecs
 * (frame header and Avro fields before the arguments, from fields encoded once per lookup; the
 * caller's bytes) and waits for the RpcResponse on the connection's reply ring; a thread alone
 * on the ring reads its response straight from shared memory into a per-thread buffer
 * (waiter.c). While it waits it checks every slice that the function's arena still exists:
 * when the service dies the broker removes it, and the call ends with -ECONNRESET instead of
 * running into its timeout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "avrobin.h"
#include "conn-internal.h"
#include "frame.h"
#include "macro.h"
#include "time-util.h"

/* Replies up to this size are received into a per-thread buffer instead of a malloc'd one. */
#define REPLY_SCRATCH (64 * 1024)

typedef struct Target {
        Arena arena;
        dev_t dev;
        ino_t ino;
        uint64_t generation;
        _Atomic bool dead;              /* its service went away: look the name up again */
} Target;

struct ring_rpc {
        struct ring_rpc *next;
        ring_conn *conn;
        char *name;
        char *key;
        Schema req, resp;
        /* caller_id, reply_segment and arg_fp of every request: the connection keeps its reply
         * segment for life, so they never change. */
        ControlRpcConst req_const;
        pthread_mutex_t lock;           /* lookups; the current target is read without it */
        _Atomic(Target *) current;
        Target **retired;               /* earlier targets, unmapped at close */
        size_t n_retired;
};

/* A thread's buffers for its calls (a thread makes one call at a time), freed when it exits. */
typedef struct Scratch {
        uint8_t *req;                   /* ring_rpc_call()'s encoded request, grown as needed */
        size_t req_size;
        uint8_t reply[REPLY_SCRATCH];   /* where the reply record lands */
} Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
        Scratch *s = p;

        free(s->req);
        free(s);
}

static void scratch_init(void) {
        (void) pthread_key_create(&scratch_key, scratch_free);
}

static Scratch *scratch(void) {
        Scratch *s;

        pthread_once(&scratch_once, scratch_init);
        s = pthread_getspecific(scratch_key);
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (s && pthread_setspecific(scratch_key, s) != 0) {
                        free(s);
                        s = NULL;
                }
        }
        return s;
}

/* LookupFunction and open its arena; installs it as the current target. */
static int lookup(ring_rpc *rpc, int timeout_ms) {
        _cleanup_free_ uint8_t *record = NULL;
        _cleanup_free_ char *arena = NULL;
        ControlMsg req = { .type = CONTROL_LOOKUP_FUNCTION }, reply;
        uint64_t generation = atomic_load(&rpc->conn->generation);
        Target *t, **grown;
        struct stat st;
        int r;

        req.lookup = (ControlLookupFunction) {
                .client_id = (int64_t) ring_conn_client_id(rpc->conn),
                .fn_name = text_from_cstr(rpc->name),
                .access_key = text_from_cstr(rpc->key),
        };
        r = conn_control_call(rpc->conn, &req, CONTROL_LOOKUP_REPLY, timeout_ms, &record, &reply);
        if (r < 0)
                return r;
        /* v1 lookups carry no fingerprint: the caller compares (spec/bootstrap.md). */
        if ((uint64_t) reply.lookup_reply.req_fp != rpc->req.fp || (uint64_t) reply.lookup_reply.resp_fp != rpc->resp.fp) {
                char msg[200];
                int n = snprintf(msg, sizeof(msg), "function \"%s\" has request/response schemas 0x%016llx/0x%016llx, "
                                 "the caller 0x%016llx/0x%016llx", rpc->name,
                                 (unsigned long long) reply.lookup_reply.req_fp,
                                 (unsigned long long) reply.lookup_reply.resp_fp,
                                 (unsigned long long) rpc->req.fp, (unsigned long long) rpc->resp.fp);
                error_set_message(msg, (size_t) MAX(n, 0));
                control_msg_done(&reply);
                return -EPROTO;
        }
        r = text_dup(reply.lookup_reply.req_arena, &arena);
        control_msg_done(&reply);
        if (r < 0)
                return -EBADMSG;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        r = conn_open_arena(rpc->conn, arena, false, &t->arena);
        if (r < 0 || fstat(t->arena.seg.fd, &st) < 0) {
                if (r >= 0)
                        arena_done(&t->arena);
                free(t);
                return r < 0 ? r : -EIO;
        }
        t->dev = st.st_dev;
        t->ino = st.st_ino;
        t->generation = generation;

        grown = reallocarray(rpc->retired, rpc->n_retired + 1, sizeof(Target *));
        if (!grown) {
                arena_done(&t->arena);
                free(t);
                return -ENOMEM;
        }
        rpc->retired = grown;
        /* Every target ever installed lives until close: calls in flight may still use one. */
        rpc->retired[rpc->n_retired++] = t;
        atomic_store_explicit(&rpc->current, t, memory_order_release);
        return 0;
}

/* The target to call: the current one (0), or a fresh lookup after a broker restart (1). */
static int current_target(ring_rpc *rpc, uint64_t deadline, Target **ret) {
        Target *t = atomic_load_explicit(&rpc->current, memory_order_acquire);
        int r = 0;

        if (_likely_(t && t->generation == atomic_load_explicit(&rpc->conn->generation, memory_order_relaxed) &&
                     !atomic_load_explicit(&t->dead, memory_order_relaxed))) {
                *ret = t;
                return 0;
        }
        r = conn_wait_connected(rpc->conn, deadline);
        if (r < 0)
                return r == -ETIMEDOUT ? -ENOTCONN : r;
        pthread_mutex_lock(&rpc->lock);
        t = atomic_load(&rpc->current);
        if (!t || t->generation != atomic_load(&rpc->conn->generation) || atomic_load(&t->dead))
                r = lookup(rpc, CONN_RECONNECT_CALL_MS);
        pthread_mutex_unlock(&rpc->lock);
        if (r < 0)
                return r;
        *ret = atomic_load(&rpc->current);
        return 1;
}

/* The service is alive while the arena the broker made for it is still there. */
static int target_alive(void *arg) {
        Target *t = arg;
        char path[sizeof("/dev/shm") + NAMES_SEGMENT_MAX];
        struct stat st;

        snprintf(path, sizeof(path), "/dev/shm%s", t->arena.seg.name);
        if (stat(path, &st) < 0 || st.st_dev != t->dev || st.st_ino != t->ino) {
                /* The next call looks the name up again: a new service may have taken it. */
                atomic_store(&t->dead, true);
                error_set_message("the service went away", 21);
                return -ECONNRESET;
        }
        return 0;
}

static int send_request(const ControlRpcConst *k, Target *t, int64_t correlation_id, const void *req,
                        size_t req_len, int64_t timeout_ns) {
        uint8_t head[CONTROL_RPC_HEAD_MAX];
        struct iovec iov[2];
        int n, r;

        /* RpcRequest: args (bytes) last, so the caller's bytes go straight from its buffer
         * into the ring; only correlation_id and the length of args are encoded per call. */
        n = control_rpc_head(k, correlation_id, req_len, head);
        if (n < 0)
                return n;
        iov[0] = (struct iovec) { .iov_base = head, .iov_len = (size_t) n };
        iov[1] = (struct iovec) { .iov_base = (void *) req, .iov_len = req_len };
        r = ringbuf_pushv(&t->arena.ring, iov, 2, timeout_ns);
        if (r == -EBADMSG)
                return -ECONNRESET;
        return r;
}

/* Decodes a response record; on success *ret_result views its result bytes. */
static int decode_response(ring_rpc *rpc, const uint8_t *record, size_t len, Text *ret_result) {
        ControlRpcResponse m;
        int r;

        if (control_decode_rpc_response(record, len, &m) < 0)
                return -EBADMSG;
        if (m.status != CONTROL_STATUS_OK) {
                r = error_from_status(m.status, m.message);
                /* A handler's failure reaches the caller as INTERNAL. */
                return r == -ENOENT || r == -EACCES || r == -EEXIST ? -EREMOTEIO : r;
        }
        if ((uint64_t) m.result_fp != rpc->resp.fp) {
                error_set_message("the response carries another schema", 35);
                return -EPROTO;
        }
        *ret_result = m.result;
        return 0;
}

typedef struct Request {
        const ControlRpcConst *req_const;
        Target *target;
        int64_t correlation_id;
        const void *bytes;
        size_t len;
} Request;

static int send_cb(void *arg, int64_t timeout_ns) {
        Request *q = arg;

        return send_request(q->req_const, q->target, q->correlation_id, q->bytes, q->len, timeout_ns);
}

/* Makes one call; on success *ret_result views the result in w's record, in the thread's
 * scratch buffer or malloc'd (w->owns_record, freed by the caller whatever the outcome). */
static int call(ring_rpc *rpc, Scratch *s, const void *req, size_t req_len, int timeout_ms, Waiter *w,
                Text *ret_result) {
        int64_t timeout_ns = timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC;
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : now + (uint64_t) timeout_ns;
        Request q = { .req_const = &rpc->req_const, .bytes = req, .len = req_len };
        int r;

        error_clear_message();
        r = current_target(rpc, deadline, &q.target);
        if (r < 0)
                return r;
        if (r > 0)
                now = now_ns(CLOCK_MONOTONIC);  /* the lookup took a while */
        q.correlation_id = w->correlation_id = conn_next_correlation(rpc->conn);
        w->buf = s ? s->reply : NULL;
        w->buf_size = s ? sizeof(s->reply) : 0;
        r = waiter_call(rpc->conn, w, send_cb, &q, timeout_ns, now, deadline, target_alive, q.target);
        if (r < 0)
                return r == -EAGAIN ? -ETIMEDOUT : r;
        return decode_response(rpc, w->record, w->len, ret_result);
}

RING_EXPORT int ring_rpc_call_raw(ring_rpc *rpc, const void *req, size_t req_len, void *resp, size_t resp_size,
                                  int timeout_ms) {
        Waiter w = { 0 };
        Text result;
        int r;

        if (!rpc || (req_len && !req) || (resp_size && !resp))
                return -EINVAL;
        r = call(rpc, scratch(), req, req_len, timeout_ms, &w, &result);
        if (r >= 0 && result.len > resp_size)
                r = -EMSGSIZE;
        if (r >= 0) {
                memcpy(resp, result.ptr, result.len);
                r = (int) result.len;
        }
        if (w.owns_record)
                free(w.record);
        return r;
}

RING_EXPORT int ring_rpc_call(ring_rpc *rpc, const struct avro_value *req, struct avro_value *resp, int timeout_ms) {
        Scratch *s;
        Waiter w = { 0 };
        Text result;
        int n, r;

        if (!rpc || !req || !resp)
                return -EINVAL;
        s = scratch();
        if (!s)
                return -ENOMEM;
        /* The thread's request buffer grows to the largest request it sent, and stays. */
        n = schema_encode_value_grow(&rpc->req, req, &s->req, &s->req_size);
        if (n < 0)
                return n;
        /* The response is decoded where it landed: no buffer of the largest possible size. */
        r = call(rpc, s, s->req, (size_t) n, timeout_ms, &w, &result);
        if (r >= 0)
                r = schema_check_value(&rpc->resp, resp);
        if (r >= 0)
                r = schema_decode_value(result.ptr, result.len, resp);
        if (w.owns_record)
                free(w.record);
        return r;
}

RING_EXPORT int ring_rpc_call_async(ring_rpc *rpc, const void *req, size_t req_len, int timeout_ms,
                                    ring_rpc_done done, void *userdata) {
        int64_t timeout_ns = timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC;
        Waiter *w;
        Target *t;
        int r;

        if (!rpc || (req_len && !req) || !done)
                return -EINVAL;
        error_clear_message();
        r = current_target(rpc, deadline_after(timeout_ns), &t);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->correlation_id = conn_next_correlation(rpc->conn);
        w->done = done;
        w->userdata = userdata;
        w->rpc = rpc;
        w->deadline_ns = deadline_after(timeout_ns);
        w->alive = target_alive;
        w->alive_arg = t;
        waiter_register(rpc->conn, w);
        /* The push itself never waits long: a full arena is reported now, not later. */
        r = send_request(&rpc->req_const, t, w->correlation_id, req, req_len,
                         MIN(timeout_ns < 0 ? INT64_MAX : timeout_ns, (int64_t) (100 * NSEC_PER_MSEC)));
        if (r < 0) {
                waiter_unregister(rpc->conn, w);
                free(w);
                return r == -EAGAIN ? -ETIMEDOUT : r;
        }
        watch_arm_timer(rpc->conn);
        return 0;
}

void rpc_complete_async(ring_conn *c, Waiter *w, int error) {
        Text result = TEXT_NULL;
        int r = error;

        if (r == 0 && atomic_load(&w->state) == WAITER_FAILED)
                r = w->error;
        if (r == 0)
                r = decode_response(w->rpc, w->record, w->len, &result);
        else if (r == -ETIMEDOUT)
                error_set_message("no response within the timeout", 30);
        w->done(r < 0 ? r : 0, r < 0 ? NULL : result.ptr, r < 0 ? 0 : result.len,
                r < 0 && ring_last_error_message()[0] ? ring_last_error_message() : NULL, w->userdata);
        if (w->owns_record)
                free(w->record);
        free(w);
}

RING_EXPORT int ring_rpc_new_response(ring_rpc *rpc, struct avro_value *value) {
        if (!rpc || !value)
                return -EINVAL;
        return schema_new_value(&rpc->resp, value);
}

RING_EXPORT int ring_rpc_new_request(ring_rpc *rpc, struct avro_value *value) {
        if (!rpc || !value)
                return -EINVAL;
        return schema_new_value(&rpc->req, value);
}

static void rpc_free(ring_rpc *rpc) {
        waiter_cancel_rpc(rpc->conn, rpc);
        for (size_t i = 0; i < rpc->n_retired; i++) {
                arena_done(&rpc->retired[i]->arena);
                free(rpc->retired[i]);
        }
        free(rpc->retired);
        if (rpc->key) {
                sodium_memzero(rpc->key, strlen(rpc->key));
                free(rpc->key);
        }
        free(rpc->name);
        schema_done(&rpc->req);
        schema_done(&rpc->resp);
        pthread_mutex_destroy(&rpc->lock);
        free(rpc);
}

RING_EXPORT int ring_rpc_open(ring_conn *conn, const char *name, const char *req_schema, const char *resp_schema,
                              const char *access_key, ring_rpc **ret) {
        ring_rpc *rpc;
        int r;

        if (!conn || !name || !*name || !req_schema || !resp_schema || !ret)
                return -EINVAL;
        error_clear_message();
        rpc = calloc(1, sizeof(*rpc));
        if (!rpc)
                return -ENOMEM;
        rpc->conn = conn;
        pthread_mutex_init(&rpc->lock, NULL);
        rpc->name = strdup(name);
        rpc->key = strdup(access_key ?: "");
        if (!rpc->name || !rpc->key) {
                r = -ENOMEM;
                goto fail;
        }
        r = schema_parse(req_schema, &rpc->req);
        if (r >= 0)
                r = schema_parse(resp_schema, &rpc->resp);
        /* caller_id 0: our client id is the only credential v1 requests carry; services need
         * only the reply segment, and the arena may be readable by others. */
        if (r >= 0)
                r = control_rpc_request_const(0, text_from_cstr(conn->reply_seg.name), (int64_t) rpc->req.fp,
                                              &rpc->req_const);
        if (r >= 0)
                r = lookup(rpc, CONN_OPEN_TIMEOUT_MS);
        if (r < 0)
                goto fail;
        pthread_mutex_lock(&conn->objects_lock);
        rpc->next = conn->rpcs;
        conn->rpcs = rpc;
        pthread_mutex_unlock(&conn->objects_lock);
        *ret = rpc;
        return 0;
fail:
        rpc_free(rpc);
        return r;
}

RING_EXPORT void ring_rpc_close(ring_rpc *rpc) {
        ring_conn *c;

        if (!rpc)
                return;
        c = rpc->conn;
        pthread_mutex_lock(&c->objects_lock);
        pthread_mutex_lock(&c->list_lock);
        for (ring_rpc **pp = &c->rpcs; *pp; pp = &(*pp)->next)
                if (*pp == rpc) {
                        *pp = rpc->next;
                        break;
                }
        pthread_mutex_unlock(&c->list_lock);
        pthread_mutex_unlock(&c->objects_lock);
        rpc_free(rpc);
}

void rpc_free_all(ring_conn *c) {
        while (c->rpcs) {
                ring_rpc *rpc = c->rpcs;
                c->rpcs = rpc->next;
                rpc_free(rpc);
        }
}
