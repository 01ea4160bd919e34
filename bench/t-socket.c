/* SPDX-License-Identifier: MIT */
/*
 * The kernel baselines: AF_UNIX SOCK_SEQPACKET (message boundaries kept), AF_UNIX
 * SOCK_STREAM and a pair of pipes (byte streams: each message is read in full by its known
 * size). The orchestrator makes the socketpair or pipes before forking the peers. Every
 * socket and pipe gets the same buffering as Ring's arena (env->buffer), where the kernel
 * allows it: a SOCK_SEQPACKET message must fit the send buffer, so 1 MiB messages need it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

typedef struct SockPeer {
        int rfd, wfd;
        bool bytes;                     /* byte stream: read exactly size bytes */
        uint8_t *buf;
        size_t size;
} SockPeer;

static void set_buffers(int fd, size_t bytes) {
        int v = (int) bytes;

        /* The FORCE variants pass wmem_max/rmem_max with CAP_NET_ADMIN; else what we may. */
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

static int sock_prepare(Job *j, int type) {
        int sv[2];

        if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        set_buffers(sv[0], j->env->buffer);
        set_buffers(sv[1], j->env->buffer);
        j->fds[0] = sv[0];      /* peer A */
        j->fds[1] = sv[1];      /* peer B */
        return 0;
}

static int seqpacket_prepare(Job *j) {
        return sock_prepare(j, SOCK_SEQPACKET);
}

static int stream_prepare(Job *j) {
        return sock_prepare(j, SOCK_STREAM);
}

static int pipe_prepare(Job *j) {
        int ab[2], ba[2];

        if (pipe2(ab, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(ba, O_CLOEXEC) < 0) {
                close(ab[0]);
                close(ab[1]);
                return -errno;
        }
        /* Root may exceed /proc/sys/fs/pipe-max-size; others get what the kernel allows. */
        for (int *fd = (int[]) { ab[1], ba[1], -1 }; *fd >= 0; fd++)
                (void) fcntl(*fd, F_SETPIPE_SZ, (int) j->env->buffer);
        j->fds[0] = ab[0];      /* B reads */
        j->fds[1] = ab[1];      /* A writes */
        j->fds[2] = ba[0];      /* A reads */
        j->fds[3] = ba[1];      /* B writes */
        return 0;
}

static void unprepare(Job *j) {
        for (unsigned i = 0; i < 4; i++)
                if (j->fds[i] >= 0) {
                        close(j->fds[i]);
                        j->fds[i] = -1;
                }
}

static int peer_new(const Job *j, bool is_a, void **ret) {
        SockPeer *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->size = j->size + 64;
        p->buf = malloc(p->size);
        if (!p->buf) {
                free(p);
                return -ENOMEM;
        }
        if (j->t == &transport_pipe) {
                p->rfd = is_a ? j->fds[2] : j->fds[0];
                p->wfd = is_a ? j->fds[1] : j->fds[3];
                p->bytes = true;
        } else {
                p->rfd = p->wfd = is_a ? j->fds[0] : j->fds[1];
                p->bytes = j->t == &transport_unix_stream;
        }
        *ret = p;
        return 0;
}

static int open_a(const Job *j, Sync *s, void **ret) {
        return peer_new(j, true, ret);
}

static int open_b(const Job *j, Sync *s, void **ret) {
        return peer_new(j, false, ret);
}

static void peer_close(void *h) {
        SockPeer *p = h;

        if (!p)
                return;
        free(p->buf);
        free(p);
}

static int write_all(int fd, const void *buf, size_t len) {
        size_t done = 0;

        while (done < len) {
                ssize_t n = write(fd, (const uint8_t *) buf + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) n;
        }
        return 0;
}

static int read_all(int fd, void *buf, size_t len) {
        size_t done = 0;

        while (done < len) {
                ssize_t n = read(fd, (uint8_t *) buf + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                done += (size_t) n;
        }
        return 0;
}

static int sock_send(void *h, const void *msg, size_t len) {
        SockPeer *p = h;
        ssize_t n;

        if (p->bytes)
                return write_all(p->wfd, msg, len);
        do
                n = write(p->wfd, msg, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return (size_t) n == len ? 0 : -EIO;
}

/* Receives one message of the job's size (byte streams) or whatever one datagram holds. */
static int sock_recv_len(SockPeer *p, void *buf, size_t size, size_t expect) {
        ssize_t n;
        int r;

        if (p->bytes) {
                if (expect > size)
                        return -EMSGSIZE;
                r = read_all(p->rfd, buf, expect);
                return r < 0 ? r : (int) expect;
        }
        do
                n = read(p->rfd, buf, size);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if (n == 0)
                return -ECONNRESET;
        return (int) n;
}

static size_t job_size;         /* the message size of the job this peer runs */

static int sock_recv(void *h, void *buf, size_t size, const void **ret_msg) {
        *ret_msg = buf;
        return sock_recv_len(h, buf, size, job_size);
}

static int sock_call(void *h, const void *msg, size_t len, void *reply, size_t size) {
        int r;

        r = sock_send(h, msg, len);
        if (r < 0)
                return r;
        return sock_recv_len(h, reply, size, len);
}

static int echo_run(void *h, const Job *j) {
        SockPeer *p = h;
        int n, r;

        for (;;) {
                n = sock_recv_len(p, p->buf, p->size, j->size);
                if (n < 0)
                        return n;
                r = sock_send(p, p->buf, (size_t) n);
                if (r < 0)
                        return r;
                if (n >= 8 && payload_seq(p->buf) == BENCH_STOP_SEQ)
                        return 0;
        }
}

static int recv_open(const Job *j, Sync *s, void **ret) {
        job_size = j->size;
        return peer_new(j, false, ret);
}

#define SOCKET_TRANSPORT(ident, nm, lbl, prep)          \
        const Transport ident = {                       \
                .name = nm,                             \
                .label = lbl,                           \
                .flags = T_LATENCY | T_STREAM | T_COLD, \
                .prepare = prep,                        \
                .unprepare = unprepare,                 \
                .echo_open = open_b,                    \
                .echo_run = echo_run,                   \
                .call_open = open_a,                    \
                .call = sock_call,                      \
                .send_open = open_a,                    \
                .send = sock_send,                      \
                .recv_open = recv_open,                 \
                .recv = sock_recv,                      \
                .close = peer_close,                    \
        }

SOCKET_TRANSPORT(transport_unix_seqpacket, "unix-seqpacket", "AF_UNIX SOCK_SEQPACKET", seqpacket_prepare);
SOCKET_TRANSPORT(transport_unix_stream, "unix-stream", "AF_UNIX SOCK_STREAM", stream_prepare);
SOCKET_TRANSPORT(transport_pipe, "pipe", "pipe", pipe_prepare);
