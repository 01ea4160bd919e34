/* SPDX-License-Identifier: MIT */
/*
 * ZeroMQ over ipc:// (libzmq from Debian): a ZMQ_PAIR socket on each side, the echo side or
 * the receiver binds, the other connects. Messages are sent and received with copies
 * (zmq_send/zmq_recv), default high-water marks; libzmq's I/O thread runs on its peer's core.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#if HAVE_ZMQ
#include <zmq.h>

typedef struct ZmqPeer {
        void *ctx, *sock;
        uint8_t *buf;
        size_t size;
} ZmqPeer;

static void peer_close(void *h) {
        ZmqPeer *p = h;

        if (!p)
                return;
        if (p->sock)
                zmq_close(p->sock);
        if (p->ctx)
                zmq_ctx_term(p->ctx);
        free(p->buf);
        free(p);
}

static int peer_new(const Job *j, bool bind, void **ret) {
        char addr[128];
        int timeout = BENCH_IO_TIMEOUT_MS, linger = 1000, r;
        ZmqPeer *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->size = j->size + 64;
        p->buf = malloc(p->size);
        p->ctx = zmq_ctx_new();
        if (!p->buf || !p->ctx) {
                peer_close(p);
                return -ENOMEM;
        }
        p->sock = zmq_socket(p->ctx, ZMQ_PAIR);
        if (!p->sock) {
                r = -zmq_errno();
                peer_close(p);
                return r;
        }
        (void) zmq_setsockopt(p->sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
        (void) zmq_setsockopt(p->sock, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
        (void) zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof(linger));
        snprintf(addr, sizeof(addr), "ipc://%s/zmq-%u", j->env->dir, j->id);
        r = bind ? zmq_bind(p->sock, addr) : zmq_connect(p->sock, addr);
        if (r < 0) {
                r = -zmq_errno();
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int open_connect(const Job *j, Sync *s, void **ret) {
        return peer_new(j, false, ret);
}

static int open_bind(const Job *j, Sync *s, void **ret) {
        return peer_new(j, true, ret);
}

static int zsend(void *h, const void *msg, size_t len) {
        ZmqPeer *p = h;

        return zmq_send(p->sock, msg, len, 0) == (int) len ? 0 : -zmq_errno();
}

static int zrecv(ZmqPeer *p, void *buf, size_t size) {
        int n = zmq_recv(p->sock, buf, size, 0);

        if (n < 0)
                return -zmq_errno();
        return (size_t) n > size ? -EMSGSIZE : n;
}

static int zcall(void *h, const void *msg, size_t len, void *reply, size_t size) {
        int r = zsend(h, msg, len);

        return r < 0 ? r : zrecv(h, reply, size);
}

static int echo_run(void *h, const Job *j) {
        ZmqPeer *p = h;
        int n, r;

        for (;;) {
                n = zrecv(p, p->buf, p->size);
                if (n < 0)
                        return n;
                r = zsend(p, p->buf, (size_t) n);
                if (r < 0)
                        return r;
                if (n >= 8 && payload_seq(p->buf) == BENCH_STOP_SEQ)
                        return 0;
        }
}

static int stream_recv(void *h, void *buf, size_t size, const void **ret_msg) {
        *ret_msg = buf;
        return zrecv(h, buf, size);
}

#else
static const char *not_built(const Env *env) {
        return "ring-bench was built without libzmq (install libzmq3-dev, then run configure again)";
}
#endif

const Transport transport_zmq = {
        .name = "zmq-ipc",
        .label = "ZeroMQ ipc:// (PAIR)",
#if HAVE_ZMQ
        .flags = T_LATENCY | T_STREAM | T_COLD,
        .echo_open = open_bind,
        .echo_run = echo_run,
        .call_open = open_connect,
        .call = zcall,
        .send_open = open_connect,
        .send = zsend,
        .recv_open = open_bind,
        .recv = stream_recv,
        .close = peer_close,
#else
        .flags = T_LATENCY | T_STREAM | T_COLD | T_NOT_BUILT,
        .unavailable = not_built,
#endif
};
