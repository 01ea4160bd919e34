/* SPDX-License-Identifier: MIT */
/*
 * Ring through its public API only (ring.h): RPC (ring_rpc_call_raw -> handler in
 * ring_fn_serve -> response), a pub/sub ping-pong over two channels, and one-way streaming
 * over one channel. The raw variants send the pre-encoded Avro bytes of the message; the
 * Avro variants build an avro-c value per message and let libring encode and decode it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <ring.h>

#include "bench.h"

typedef struct RingPeer {
        ring_conn *conn;
        ring_pub *pub;
        ring_sub *sub;
        ring_fn *fn;
        ring_rpc *rpc;
        bool avro;
        avro_value_t in, out;
        bool have_in, have_out;
        uint8_t *buf;
        size_t size;
        bool stopped;
} RingPeer;

static void peer_close(void *h) {
        RingPeer *p = h;

        if (!p)
                return;
        if (p->have_in)
                avro_value_decref(&p->in);
        if (p->have_out)
                avro_value_decref(&p->out);
        ring_conn_close(p->conn);       /* closes pub, sub, fn and rpc too */
        free(p->buf);
        free(p);
}

static int peer_new(const Job *j, const char *role, RingPeer **ret) {
        char app[64];
        RingPeer *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        p->avro = j->t->flags & T_AVRO;
        p->size = j->size + 64;
        p->buf = malloc(p->size);
        if (!p->buf) {
                free(p);
                return -ENOMEM;
        }
        snprintf(app, sizeof(app), "bench-%s-%u", role, j->id);
        r = ring_conn_open(app, 5000, &p->conn);
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static void name(char *buf, size_t size, const char *what, const Job *j) {
        snprintf(buf, size, "bench-%s-%u", what, j->id);
}

/* ---- Avro values: the message's fields in and out of an avro-c value ---- */

static int value_from_msg(avro_value_t *v, const void *msg, size_t len) {
        avro_value_t f;

        if (avro_value_get_by_index(v, 0, &f, NULL) != 0 || avro_value_set_fixed(&f, (void *) msg, 8) != 0)
                return -EINVAL;
        if (avro_value_get_by_index(v, 1, &f, NULL) != 0 ||
            avro_value_set_bytes(&f, (uint8_t *) msg + payload_data_offset(len), payload_data_len(len)) != 0)
                return -EINVAL;
        return 0;
}

/* Copies the sequence number into buf and returns the message's encoded length. */
static int msg_from_value(avro_value_t *v, void *buf, size_t size) {
        avro_value_t f;
        const void *p;
        size_t n, varint = 1;

        if (size < 8 || avro_value_get_by_index(v, 0, &f, NULL) != 0 || avro_value_get_fixed(&f, &p, &n) != 0 ||
            n != 8)
                return -EBADMSG;
        memcpy(buf, p, 8);
        if (avro_value_get_by_index(v, 1, &f, NULL) != 0 || avro_value_get_bytes(&f, &p, &n) != 0)
                return -EBADMSG;
        for (uint64_t z = (uint64_t) n << 1; z >= 0x80; z >>= 7)
                varint++;
        return (int) (8 + varint + n);
}

static int copy_value(const avro_value_t *from, avro_value_t *to) {
        avro_value_t a, b;
        const void *p;
        size_t n;

        if (avro_value_get_by_index(from, 0, &a, NULL) != 0 || avro_value_get_fixed(&a, &p, &n) != 0 ||
            avro_value_get_by_index(to, 0, &b, NULL) != 0 || avro_value_set_fixed(&b, (void *) p, n) != 0)
                return -EBADMSG;
        if (avro_value_get_by_index(from, 1, &a, NULL) != 0 || avro_value_get_bytes(&a, &p, &n) != 0 ||
            avro_value_get_by_index(to, 1, &b, NULL) != 0 || avro_value_set_bytes(&b, (void *) p, n) != 0)
                return -EBADMSG;
        return 0;
}

static bool value_is_stop(const avro_value_t *v) {
        avro_value_t f;
        const void *p;
        size_t n;

        return avro_value_get_by_index(v, 0, &f, NULL) == 0 && avro_value_get_fixed(&f, &p, &n) == 0 && n == 8 &&
               payload_seq(p) == BENCH_STOP_SEQ;
}

/* ---- RPC ---- */

static ring_conn *stop_conn;

static int echo_raw(const void *req, size_t req_len, void *resp, size_t resp_size, void *userdata) {
        RingPeer *p = userdata;

        if (req_len > resp_size)
                return -EMSGSIZE;
        memcpy(resp, req, req_len);
        if (req_len >= 8 && payload_seq(req) == BENCH_STOP_SEQ) {
                p->stopped = true;
                ring_conn_stop(stop_conn);
        }
        return (int) req_len;
}

static int echo_value(const struct avro_value *req, struct avro_value *resp, void *userdata) {
        RingPeer *p = userdata;
        int r;

        r = copy_value((const avro_value_t *) req, (avro_value_t *) resp);
        if (r < 0)
                return r;
        if (value_is_stop((const avro_value_t *) req)) {
                p->stopped = true;
                ring_conn_stop(stop_conn);
        }
        return 0;
}

static int rpc_echo_open(const Job *j, Sync *s, void **ret) {
        char fn[64];
        RingPeer *p;
        int r;

        r = peer_new(j, "svc", &p);
        if (r < 0)
                return r;
        stop_conn = p->conn;
        name(fn, sizeof(fn), "echo", j);
        if (p->avro)
                r = ring_fn_expose_value(p->conn, fn, BENCH_MSG_SCHEMA, BENCH_MSG_SCHEMA, NULL, echo_value, p, &p->fn);
        else
                r = ring_fn_expose(p->conn, fn, BENCH_MSG_SCHEMA, BENCH_MSG_SCHEMA, NULL, echo_raw, p, &p->fn);
        if (r >= 0)
                r = peer_sync_send(s, 'E');
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int rpc_echo_run(void *h, const Job *j) {
        RingPeer *p = h;
        int r;

        while (!p->stopped) {
                r = ring_fn_serve(p->fn, BENCH_IO_TIMEOUT_MS);
                if (r < 0)
                        return r;
                if (r == 0 && !p->stopped)
                        return -ETIMEDOUT;
        }
        return 0;
}

static int rpc_call_open(const Job *j, Sync *s, void **ret) {
        char fn[64];
        RingPeer *p;
        int r;

        r = peer_sync_wait(s, 'E');
        if (r < 0)
                return r;
        r = peer_new(j, "caller", &p);
        if (r < 0)
                return r;
        name(fn, sizeof(fn), "echo", j);
        r = ring_rpc_open(p->conn, fn, BENCH_MSG_SCHEMA, BENCH_MSG_SCHEMA, NULL, &p->rpc);
        if (r >= 0 && p->avro) {
                r = ring_rpc_new_request(p->rpc, (struct avro_value *) &p->in);
                p->have_in = r >= 0;
                if (r >= 0)
                        r = ring_rpc_new_response(p->rpc, (struct avro_value *) &p->out);
                p->have_out = r >= 0;
        }
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int rpc_call(void *h, const void *msg, size_t len, void *reply, size_t size) {
        RingPeer *p = h;
        int r;

        if (!p->avro)
                return ring_rpc_call_raw(p->rpc, msg, len, reply, size, BENCH_IO_TIMEOUT_MS);
        r = value_from_msg(&p->in, msg, len);
        if (r >= 0)
                r = ring_rpc_call(p->rpc, (struct avro_value *) &p->in, (struct avro_value *) &p->out,
                                  BENCH_IO_TIMEOUT_MS);
        if (r < 0)
                return r;
        return msg_from_value(&p->out, reply, size);
}

/* ---- pub/sub: publish and receive one message ---- */

static int pub_send(RingPeer *p, const void *msg, size_t len) {
        int r;

        if (!p->avro)
                return ring_pub_send_raw(p->pub, msg, len, BENCH_IO_TIMEOUT_MS);
        r = value_from_msg(&p->in, msg, len);
        if (r < 0)
                return r;
        return ring_pub_send(p->pub, (struct avro_value *) &p->in, BENCH_IO_TIMEOUT_MS);
}

static int sub_recv(RingPeer *p, void *buf, size_t size) {
        int r;

        if (!p->avro)
                return ring_sub_recv_raw(p->sub, buf, size, BENCH_IO_TIMEOUT_MS);
        r = ring_sub_recv(p->sub, (struct avro_value *) &p->out, BENCH_IO_TIMEOUT_MS);
        if (r < 0)
                return r;
        return msg_from_value(&p->out, buf, size);
}

static int open_pub(RingPeer *p, const Job *j, const char *what) {
        char ch[64];
        int r;

        name(ch, sizeof(ch), what, j);
        r = ring_pub_open(p->conn, ch, BENCH_MSG_SCHEMA, NULL, &p->pub);
        if (r < 0 || !p->avro)
                return r;
        /* The value a publisher fills and sends, made as users make it. (The echo peer sends
         * the value its subscription received instead: a value of another parsed schema with
         * the same fingerprint, as a relay would.) */
        r = ring_pub_new_value(p->pub, (struct avro_value *) &p->in);
        p->have_in = r >= 0;
        return r;
}

static int open_sub(RingPeer *p, const Job *j, const char *what) {
        char ch[64];
        int r;

        name(ch, sizeof(ch), what, j);
        r = ring_sub_open(p->conn, ch, BENCH_MSG_SCHEMA, NULL, &p->sub);
        if (r < 0 || !p->avro)
                return r;
        r = ring_sub_new_value(p->sub, (struct avro_value *) &p->out);
        p->have_out = r >= 0;
        return r;
}

static int pp_echo_open(const Job *j, Sync *s, void **ret) {
        RingPeer *p;
        int r;

        r = peer_new(j, "pong", &p);
        if (r < 0)
                return r;
        r = open_pub(p, j, "pong");
        if (r >= 0)
                r = peer_sync_send(s, 'P');
        if (r >= 0)
                r = peer_sync_wait(s, 'Q');
        if (r >= 0)
                r = open_sub(p, j, "ping");
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int pp_echo_run(void *h, const Job *j) {
        RingPeer *p = h;
        int n, r;

        for (;;) {
                if (!p->avro) {
                        n = ring_sub_recv_raw(p->sub, p->buf, p->size, BENCH_IO_TIMEOUT_MS);
                        if (n < 0)
                                return n;
                        r = ring_pub_send_raw(p->pub, p->buf, (size_t) n, BENCH_IO_TIMEOUT_MS);
                        if (r < 0)
                                return r;
                        if (n >= 8 && payload_seq(p->buf) == BENCH_STOP_SEQ)
                                return 0;
                } else {
                        /* Decode the ping into a value, encode that value as the pong. */
                        r = ring_sub_recv(p->sub, (struct avro_value *) &p->out, BENCH_IO_TIMEOUT_MS);
                        if (r >= 0)
                                r = ring_pub_send(p->pub, (struct avro_value *) &p->out, BENCH_IO_TIMEOUT_MS);
                        if (r < 0)
                                return r;
                        if (value_is_stop(&p->out))
                                return 0;
                }
        }
}

static int pp_call_open(const Job *j, Sync *s, void **ret) {
        RingPeer *p;
        int r;

        r = peer_new(j, "ping", &p);
        if (r < 0)
                return r;
        r = peer_sync_wait(s, 'P');
        if (r >= 0)
                r = open_pub(p, j, "ping");
        if (r >= 0)
                r = open_sub(p, j, "pong");
        if (r >= 0)
                r = peer_sync_send(s, 'Q');
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int pp_call(void *h, const void *msg, size_t len, void *reply, size_t size) {
        RingPeer *p = h;
        int r;

        r = pub_send(p, msg, len);
        if (r < 0)
                return r;
        return sub_recv(p, reply, size);
}

/* ---- streaming over one channel ---- */

static int stream_send_open(const Job *j, Sync *s, void **ret) {
        RingPeer *p;
        int r;

        r = peer_new(j, "producer", &p);
        if (r < 0)
                return r;
        r = open_pub(p, j, "stream");
        if (r >= 0)
                r = peer_sync_send(s, 'P');
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int stream_send(void *h, const void *msg, size_t len) {
        return pub_send(h, msg, len);
}

static int stream_recv_open(const Job *j, Sync *s, void **ret) {
        RingPeer *p;
        int r;

        r = peer_new(j, "consumer", &p);
        if (r < 0)
                return r;
        r = peer_sync_wait(s, 'P');
        if (r >= 0)
                r = open_sub(p, j, "stream");
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int stream_recv(void *h, void *buf, size_t size, const void **ret_msg) {
        *ret_msg = buf;
        return sub_recv(h, buf, size);
}

const Transport transport_ring_rpc = {
        .name = "ring-rpc",
        .label = "Ring RPC",
        .flags = T_LATENCY | T_COLD | T_RING,
        .echo_open = rpc_echo_open,
        .echo_run = rpc_echo_run,
        .call_open = rpc_call_open,
        .call = rpc_call,
        .close = peer_close,
};

const Transport transport_ring_rpc_avro = {
        .name = "ring-rpc-avro",
        .label = "Ring RPC, avro-c values",
        .flags = T_LATENCY | T_COLD | T_RING | T_AVRO,
        .echo_open = rpc_echo_open,
        .echo_run = rpc_echo_run,
        .call_open = rpc_call_open,
        .call = rpc_call,
        .close = peer_close,
};

const Transport transport_ring_pubsub = {
        .name = "ring-pubsub",
        .label = "Ring pub/sub",
        .flags = T_LATENCY | T_STREAM | T_COLD | T_RING,
        .echo_open = pp_echo_open,
        .echo_run = pp_echo_run,
        .call_open = pp_call_open,
        .call = pp_call,
        .send_open = stream_send_open,
        .send = stream_send,
        .recv_open = stream_recv_open,
        .recv = stream_recv,
        .close = peer_close,
};

const Transport transport_ring_pubsub_avro = {
        .name = "ring-pubsub-avro",
        .label = "Ring pub/sub, avro-c values",
        .flags = T_LATENCY | T_STREAM | T_COLD | T_RING | T_AVRO,
        .echo_open = pp_echo_open,
        .echo_run = pp_echo_run,
        .call_open = pp_call_open,
        .call = pp_call,
        .send_open = stream_send_open,
        .send = stream_send,
        .recv_open = stream_recv_open,
        .recv = stream_recv,
        .close = peer_close,
};
