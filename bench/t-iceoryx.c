/* SPDX-License-Identifier: MIT */
/*
 * Eclipse iceoryx 2.0 through its C binding (Debian's iceoryx packages), against the iox-roudi
 * daemon the orchestrator started. Publishers loan a chunk, copy the message into it and
 * publish; subscribers take the chunk and read it in place (iceoryx's zero-copy receive: the
 * receiver copies nothing, which Ring's API cannot offer). Queues block the publisher when
 * full, so nothing is dropped; a subscriber queue holds at most env->buffer bytes of messages
 * (iceoryx's limit is 256 chunks). Two receive modes: polling (busy iox_sub_take_chunk) and
 * waitset (iox_ws_wait, which sleeps on a semaphore).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#if HAVE_ICEORYX
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/wait_set.h>

#define IOX_SERVICE "RingBench"
#define IOX_MAX_QUEUE 256

typedef struct IoxPeer {
        iox_pub_storage_t pub_storage;
        iox_sub_storage_t sub_storage;
        iox_ws_storage_t ws_storage;
        iox_pub_t pub;
        iox_sub_t sub;
        iox_ws_t ws;
        bool waitset;
        size_t size;
        uint8_t *buf;
        char name[64];                  /* runtime name, unique per run and peer */
} IoxPeer;

static const char *unavailable(const Env *env) {
        return env->roudi_pid > 0 ? NULL : env->roudi_error[0] ? env->roudi_error : "iox-roudi is not running";
}

static void peer_close(void *h) {
        IoxPeer *p = h;

        if (!p)
                return;
        if (p->ws)
                iox_ws_deinit(p->ws);
        if (p->sub)
                iox_sub_deinit(p->sub);
        if (p->pub)
                iox_pub_deinit(p->pub);
        iox_runtime_shutdown();
        /* The runtime leaves its IPC channel's socket and lock file in /tmp behind. */
        char path[96];
        snprintf(path, sizeof(path), "/tmp/%s", p->name);
        (void) unlink(path);
        snprintf(path, sizeof(path), "/tmp/%s.lock", p->name);
        (void) unlink(path);
        free(p->buf);
        free(p);
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        nanosleep(&ts, NULL);
}

/* Opens a publisher on topic `out` and a subscriber on topic `in` (either may be NULL), then
 * waits until both are connected to the other peer's counterparts. */
static int peer_new(const Job *j, const char *role, const char *out, const char *in, void **ret) {
        char topic[64];
        IoxPeer *p = calloc(1, sizeof(*p));
        uint64_t queue;

        if (!p)
                return -ENOMEM;
        p->size = j->size + 64;
        p->buf = malloc(p->size);
        if (!p->buf) {
                free(p);
                return -ENOMEM;
        }
        p->waitset = j->t == &transport_iox_waitset;
        snprintf(p->name, sizeof(p->name), "ring-%s-%s-%u", j->env->bus, role, j->id);
        iox_set_loglevel(Iceoryx_LogLevel_Warn);
        iox_runtime_init(p->name);

        if (out) {
                iox_pub_options_t o;
                iox_pub_options_init(&o);
                o.historyCapacity = 0;
                o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
                snprintf(topic, sizeof(topic), "%s%u", out, j->id);
                p->pub = iox_pub_init(&p->pub_storage, IOX_SERVICE, topic, "msg", &o);
        }
        if (in) {
                iox_sub_options_t o;
                iox_sub_options_init(&o);
                queue = j->env->buffer / j->size;
                o.queueCapacity = queue < 1 ? 1 : queue > IOX_MAX_QUEUE ? IOX_MAX_QUEUE : queue;
                o.historyRequest = 0;
                o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
                snprintf(topic, sizeof(topic), "%s%u", in, j->id);
                p->sub = iox_sub_init(&p->sub_storage, IOX_SERVICE, topic, "msg", &o);
                if (p->waitset) {
                        p->ws = iox_ws_init(&p->ws_storage);
                        if (iox_ws_attach_subscriber_state(p->ws, p->sub, SubscriberState_HAS_DATA, 0, NULL) !=
                            WaitSetResult_SUCCESS) {
                                peer_close(p);
                                return -EIO;
                        }
                }
        }
        for (unsigned waited = 0;; waited += 5) {
                bool ready = (!p->pub || iox_pub_has_subscribers(p->pub)) &&
                             (!p->sub || iox_sub_get_subscription_state(p->sub) == SubscribeState_SUBSCRIBED);
                if (ready)
                        break;
                if (waited >= BENCH_IO_TIMEOUT_MS) {
                        peer_close(p);
                        return -ETIMEDOUT;
                }
                sleep_ms(5);
        }
        *ret = p;
        return 0;
}

static int open_a_latency(const Job *j, Sync *s, void **ret) {
        return peer_new(j, "a", "ping", "pong", ret);
}

static int open_b_latency(const Job *j, Sync *s, void **ret) {
        return peer_new(j, "b", "pong", "ping", ret);
}

static int open_sender(const Job *j, Sync *s, void **ret) {
        return peer_new(j, "a", "stream", NULL, ret);
}

static int open_receiver(const Job *j, Sync *s, void **ret) {
        return peer_new(j, "b", NULL, "stream", ret);
}

static int isend(void *h, const void *msg, size_t len) {
        IoxPeer *p = h;
        void *chunk;

        if (iox_pub_loan_chunk(p->pub, &chunk, (uint32_t) len) != AllocationResult_SUCCESS)
                return -ENOBUFS;
        memcpy(chunk, msg, len);
        iox_pub_publish_chunk(p->pub, chunk);
        return 0;
}

/* Takes the next chunk: busy polling, or sleeping in the waitset. */
static int itake(IoxPeer *p, const void **ret) {
        uint64_t deadline = 0;
        unsigned spins = 0;

        for (;;) {
                enum iox_ChunkReceiveResult r = iox_sub_take_chunk(p->sub, ret);
                if (r == ChunkReceiveResult_SUCCESS)
                        return 0;
                if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE)
                        return -EIO;
                if (p->waitset) {
                        iox_notification_info_t info[1];
                        uint64_t missed = 0;
                        struct timespec t = { .tv_sec = 1 };
                        /* It may return without a notification: only our deadline counts. */
                        (void) iox_ws_timed_wait(p->ws, t, info, 1, &missed);
                        if (deadline == 0)
                                deadline = peer_now_ns() + (uint64_t) BENCH_IO_TIMEOUT_MS * 1000000u;
                        else if (peer_now_ns() >= deadline)
                                return -ETIMEDOUT;
                } else if (++spins % 4096 == 0) {
                        uint64_t now = peer_now_ns();
                        if (deadline == 0)
                                deadline = now + (uint64_t) BENCH_IO_TIMEOUT_MS * 1000000u;
                        else if (now >= deadline)
                                return -ETIMEDOUT;
                }
        }
}

static int icall(void *h, const void *msg, size_t len, void *reply, size_t size) {
        IoxPeer *p = h;
        const void *chunk;
        int r;

        r = isend(p, msg, len);
        if (r < 0)
                return r;
        r = itake(p, &chunk);
        if (r < 0)
                return r;
        /* The caller looks at the sequence number only; the chunk is read in place. */
        memcpy(reply, chunk, 8);
        iox_sub_release_chunk(p->sub, chunk);
        return (int) len;
}

static int echo_run(void *h, const Job *j) {
        IoxPeer *p = h;
        const void *chunk;
        bool stop;
        int r;

        for (;;) {
                r = itake(p, &chunk);
                if (r < 0)
                        return r;
                stop = payload_seq(chunk) == BENCH_STOP_SEQ;
                r = isend(p, chunk, j->size);
                iox_sub_release_chunk(p->sub, chunk);
                if (r < 0)
                        return r;
                if (stop)
                        return 0;
        }
}

static size_t job_size;

static int irecv(void *h, void *buf, size_t size, const void **ret_msg) {
        int r = itake(h, ret_msg);

        return r < 0 ? r : (int) job_size;
}

static void irecv_done(void *h, const void *msg) {
        IoxPeer *p = h;

        iox_sub_release_chunk(p->sub, msg);
}

static int open_receiver_sized(const Job *j, Sync *s, void **ret) {
        job_size = j->size;
        return open_receiver(j, s, ret);
}

#else
static const char *not_built(const Env *env) {
        return "ring-bench was built without iceoryx's C binding (install libiceoryx-binding-c-dev, "
               "then run configure again)";
}
#endif

/* Both modes share every operation; they differ in how the receiver waits (T_COLD). */
#if HAVE_ICEORYX
#define IOX_OPERATIONS                                  \
        .unavailable = unavailable,                     \
        .echo_open = open_b_latency,                    \
        .echo_run = echo_run,                           \
        .call_open = open_a_latency,                    \
        .call = icall,                                  \
        .send_open = open_sender,                       \
        .send = isend,                                  \
        .recv_open = open_receiver_sized,               \
        .recv = irecv,                                  \
        .recv_done = irecv_done,                        \
        .close = peer_close
#define IOX_NOT_BUILT 0
#else
#define IOX_OPERATIONS .unavailable = not_built
#define IOX_NOT_BUILT T_NOT_BUILT
#endif

const Transport transport_iox_poll = {
        .name = "iceoryx-poll",
        .label = "iceoryx 2.0, polling",
        .flags = T_LATENCY | T_STREAM | IOX_NOT_BUILT,
        IOX_OPERATIONS,
};

const Transport transport_iox_waitset = {
        .name = "iceoryx-waitset",
        .label = "iceoryx 2.0, waitset",
        .flags = T_LATENCY | T_STREAM | T_COLD | IOX_NOT_BUILT,
        IOX_OPERATIONS,
};
