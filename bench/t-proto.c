/* SPDX-License-Identifier: MIT */
/*
 * Experiments on the wire core, outside libring's API (--only ringbuf-v1,ringbuf-proposal):
 *   ringbuf-v1        libring's own ring (libring/core/ringbuf.c) driven directly, pushes and
 *                     pops with nothing around them: what the core costs without the pub/sub
 *                     layer;
 *   ringbuf-proposal  the same v1 ring layout (ringbuf-layout.h) and lock protocol with the
 *                     hot-path changes proposed in docs/benchmarks.md: the producer caches tail,
 *                     the consumer caches head and publishes tail (and space_seq) in batches,
 *                     and the producer skips the data_seq increment and FUTEX_WAKE while an
 *                     extension-aware consumer is awake.
 * Neither is part of the default run: they exist to measure a proposed change before libring
 * makes it. This file is the only user of ringbuf-layout.h outside libring/core and tests.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "futex.h"
#include "ringbuf-layout.h"
#include "ringbuf.h"

#define SPIN_NS 100000u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

static size_t one_ring(const Job *j) {
        return (ringbuf_size((uint32_t) j->env->buffer) + 4095) & ~(size_t) 4095;
}

static int prepare(Job *j) {
        size_t one = one_ring(j);
        void *m = mmap(NULL, 2 * one, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        int r;

        if (m == MAP_FAILED)
                return -errno;
        j->shared = m;
        j->shared_size = 2 * one;
        for (unsigned i = 0; i < 2; i++) {
                r = ringbuf_format((uint8_t *) m + i * one, one, (uint32_t) j->env->buffer);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void unprepare(Job *j) {
        if (j->shared)
                munmap(j->shared, j->shared_size);
        j->shared = NULL;
}

/* ---- the proposal: same bytes, same lock, fewer shared writes ---- */

typedef struct Proto {
        RingShared *s;
        uint8_t *data;
        uint64_t capacity, mask;
        uint64_t cached_tail;           /* producer: last tail read */
        uint64_t tail, published;       /* consumer: own tail, the tail last published */
        uint64_t cached_head;           /* consumer: last head read */
        uint32_t pid;                   /* for lock_owner, as libring stores it */
        bool space_owed;                /* consumer: a v1 producer may still wait for space */
} Proto;

static void proto_attach(Proto *p, void *base, uint64_t capacity, bool consumer) {
        *p = (Proto) { .s = base, .data = (uint8_t *) base + RINGBUF_HEADER_SIZE, .capacity = capacity,
                       .mask = capacity - 1, .pid = (uint32_t) getpid() };
        p->cached_tail = atomic_load_explicit(&p->s->tail, memory_order_acquire);
        if (consumer) {
                p->tail = p->published = p->cached_tail;
                p->cached_head = atomic_load_explicit(&p->s->head, memory_order_acquire);
                atomic_fetch_or_explicit(&p->s->ext_features, RINGBUF_EXT_SLEEP_FLAG, memory_order_seq_cst);
        }
}

static void proto_copy_in(Proto *p, uint64_t pos, const void *src, size_t n) {
        size_t off = pos & p->mask, first = p->capacity - off < n ? p->capacity - off : n;

        memcpy(p->data + off, src, first);
        memcpy(p->data, (const uint8_t *) src + first, n - first);
}

static void proto_copy_out(Proto *p, uint64_t pos, void *dst, size_t n) {
        size_t off = pos & p->mask, first = p->capacity - off < n ? p->capacity - off : n;

        memcpy(dst, p->data + off, first);
        memcpy((uint8_t *) dst + first, p->data, n - first);
}

static void proto_lock(Proto *p) {
        _Atomic uint32_t *lock = &p->s->prod_lock;
        uint32_t c = 0;

        /* v1's three-state lock, unchanged (one producer here: the CAS succeeds). */
        if (!atomic_compare_exchange_strong_explicit(lock, &c, 1, memory_order_acquire, memory_order_relaxed)) {
                c = atomic_exchange_explicit(lock, 2, memory_order_acquire);
                while (c != 0) {
                        futex_wait(lock, 2, UINT64_MAX);
                        c = atomic_exchange_explicit(lock, 2, memory_order_acquire);
                }
        }
        atomic_store_explicit(&p->s->lock_owner, p->pid, memory_order_relaxed);
}

static void proto_unlock(Proto *p) {
        atomic_store_explicit(&p->s->lock_owner, 0, memory_order_relaxed);
        if (atomic_exchange_explicit(&p->s->prod_lock, 0, memory_order_release) == 2)
                futex_wake(&p->s->prod_lock, 1);
}

static int proto_push(Proto *p, const void *msg, size_t len) {
        uint32_t prefix = (uint32_t) len;
        uint64_t need = 4 + len, head;

        if (need > p->capacity)
                return -EMSGSIZE;
        for (;;) {
                proto_lock(p);
                head = atomic_load_explicit(&p->s->head, memory_order_relaxed);
                /* Change 1: tail is read only when the cached one shows too little space. */
                if (head - p->cached_tail > p->capacity || p->capacity - (head - p->cached_tail) < need)
                        p->cached_tail = atomic_load_explicit(&p->s->tail, memory_order_acquire);
                if (head - p->cached_tail > p->capacity) {
                        proto_unlock(p);
                        return -EBADMSG;
                }
                if (p->capacity - (head - p->cached_tail) >= need)
                        break;
                proto_unlock(p);
                /* Change 4: spin for space first, as the consumer spins for data; a full ring
                 * drains within microseconds when the consumer is awake. */
                uint64_t end = peer_now_ns() + SPIN_NS;
                bool room = false;
                while (!room && peer_now_ns() < end)
                        for (unsigned i = 0; i < 64 && !room; i++) {
                                uint64_t t = atomic_load_explicit(&p->s->tail, memory_order_acquire);
                                room = p->capacity - (head - t) >= need;
                                cpu_relax();
                        }
                if (room)
                        continue;
                /* Then wait as v1 does (counted in space_waiters, sleep on space_seq). */
                atomic_fetch_add_explicit(&p->s->space_waiters, 1, memory_order_seq_cst);
                uint32_t seq = atomic_load_explicit(&p->s->space_seq, memory_order_seq_cst);
                uint64_t t = atomic_load_explicit(&p->s->tail, memory_order_seq_cst);
                if (p->capacity - (atomic_load_explicit(&p->s->head, memory_order_seq_cst) - t) < need)
                        futex_wait(&p->s->space_seq, seq, UINT64_MAX);
                atomic_fetch_sub_explicit(&p->s->space_waiters, 1, memory_order_seq_cst);
        }
        proto_copy_in(p, head, &prefix, 4);
        proto_copy_in(p, head + 4, msg, len);
        atomic_store_explicit(&p->s->head, head + need, memory_order_release);
        proto_unlock(p);
        /* Change 3: data_seq and FUTEX_WAKE only for a v1 consumer or one that sleeps. The
         * fence orders the head store before the load of consumer_sleeping (Dekker, as in
         * spec/wire-format.md "Consumer sleep flag"). */
        atomic_thread_fence(memory_order_seq_cst);
        if (!(atomic_load_explicit(&p->s->ext_features, memory_order_relaxed) & RINGBUF_EXT_SLEEP_FLAG) ||
            atomic_load_explicit(&p->s->consumer_sleeping, memory_order_relaxed)) {
                atomic_fetch_add_explicit(&p->s->data_seq, 1, memory_order_seq_cst);
                futex_wake(&p->s->data_seq, 1);
        }
        return 0;
}

/* Change 2: the consumer hands space back in batches; v1's space_seq rule per publication. */
static void proto_publish(Proto *p) {
        uint64_t half = p->capacity / 2, before = p->cached_head - p->published, after = p->cached_head - p->tail;

        if (p->published == p->tail)
                return;
        atomic_store_explicit(&p->s->tail, p->tail, memory_order_release);
        atomic_fetch_add_explicit(&p->s->space_seq, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        p->published = p->tail;
        /* v1's space wake-up rule (spec/wire-format.md "Space wake-up rule"), per publication. */
        bool wake = atomic_load_explicit(&p->s->space_waiters, memory_order_relaxed) > 0;
        if (before > half && after <= half)
                wake = p->space_owed = true;
        else if (after == 0 && p->space_owed) {
                wake = true;
                p->space_owed = false;
        }
        if (wake)
                futex_wake(&p->s->space_seq, INT_MAX);
}

static int proto_pop(Proto *p, void *buf, size_t size) {
        uint32_t len;
        uint64_t avail;

        if (p->tail == p->cached_head) {
                p->cached_head = atomic_load_explicit(&p->s->head, memory_order_acquire);
                if (p->tail == p->cached_head) {
                        proto_publish(p);       /* about to wait: give everything back */
                        return -EAGAIN;
                }
        }
        avail = p->cached_head - p->tail;
        if (avail > p->capacity || avail < 4)
                return -EBADMSG;
        proto_copy_out(p, p->tail, &len, 4);
        if (len > avail - 4 || len > size)
                return -EBADMSG;
        proto_copy_out(p, p->tail + 4, buf, len);
        p->tail += 4 + (uint64_t) len;
        if (p->tail - p->published >= p->capacity / 4)
                proto_publish(p);
        return (int) len;
}

/* Spin up to SPIN_NS, then sleep as spec/wire-format.md's extension-aware consumer does. */
static void proto_wait(Proto *p) {
        uint64_t end = peer_now_ns() + SPIN_NS;

        for (;;) {
                for (unsigned i = 0; i < 64; i++) {
                        if (atomic_load_explicit(&p->s->head, memory_order_acquire) != p->tail)
                                return;
                        cpu_relax();
                }
                if (peer_now_ns() >= end)
                        break;
        }
        uint32_t seq = atomic_load_explicit(&p->s->data_seq, memory_order_acquire);
        atomic_store_explicit(&p->s->consumer_sleeping, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&p->s->head, memory_order_acquire) == p->tail)
                futex_wait(&p->s->data_seq, seq, UINT64_MAX);
        atomic_store_explicit(&p->s->consumer_sleeping, 0, memory_order_relaxed);
}

/* ---- the peers ---- */

typedef struct ProtoPeer {
        bool proposal;
        RingBuf out_rb, in_rb;          /* ringbuf-v1 */
        Proto out, in;                  /* ringbuf-proposal */
        uint8_t *buf;
        size_t size;
} ProtoPeer;

static int peer_new(const Job *j, bool is_a, void **ret) {
        ProtoPeer *p = calloc(1, sizeof(*p));
        size_t one = one_ring(j);
        uint8_t *out = (uint8_t *) j->shared + (is_a ? 0 : one), *in = (uint8_t *) j->shared + (is_a ? one : 0);
        int r = 0;

        if (!p)
                return -ENOMEM;
        p->size = j->size + 64;
        p->buf = malloc(p->size);
        if (!p->buf) {
                free(p);
                return -ENOMEM;
        }
        p->proposal = j->t == &transport_ringbuf_proposal;
        /* Ring 0 carries A -> B, ring 1 B -> A (streams use ring 0 only). */
        if (p->proposal) {
                proto_attach(&p->out, out, j->env->buffer, false);
                proto_attach(&p->in, in, j->env->buffer, true);
        } else {
                r = ringbuf_attach_producer(&p->out_rb, out, one);
                if (r >= 0)
                        r = ringbuf_attach_consumer(&p->in_rb, in, one);
        }
        if (r < 0) {
                free(p->buf);
                free(p);
                return r;
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
        ProtoPeer *p = h;

        if (!p)
                return;
        free(p->buf);
        free(p);
}

static int psend(void *h, const void *msg, size_t len) {
        ProtoPeer *p = h;

        if (p->proposal)
                return proto_push(&p->out, msg, len);
        return ringbuf_push(&p->out_rb, msg, len, -1);
}

static int precv(ProtoPeer *p, void *buf, size_t size) {
        int r;

        for (;;) {
                if (p->proposal) {
                        r = proto_pop(&p->in, buf, size);
                        if (r != -EAGAIN)
                                return r;
                        proto_wait(&p->in);
                } else {
                        r = ringbuf_pop(&p->in_rb, buf, size);
                        if (r != -EAGAIN)
                                return r;
                        r = ringbuf_wait(&p->in_rb, (int64_t) BENCH_IO_TIMEOUT_MS * 1000000);
                        if (r < 0 && r != -EAGAIN)
                                return r;
                }
        }
}

static int pcall(void *h, const void *msg, size_t len, void *reply, size_t size) {
        int r = psend(h, msg, len);

        return r < 0 ? r : precv(h, reply, size);
}

static int echo_run(void *h, const Job *j) {
        ProtoPeer *p = h;
        int n, r;

        for (;;) {
                n = precv(p, p->buf, p->size);
                if (n < 0)
                        return n;
                r = psend(p, p->buf, (size_t) n);
                if (r < 0)
                        return r;
                if (n >= 8 && payload_seq(p->buf) == BENCH_STOP_SEQ)
                        return 0;
        }
}

static int stream_recv(void *h, void *buf, size_t size, const void **ret_msg) {
        *ret_msg = buf;
        return precv(h, buf, size);
}

const Transport transport_ringbuf_v1 = {
        .name = "ringbuf-v1",
        .label = "experiment: libring's v1 ring alone",
        .flags = T_LATENCY | T_STREAM | T_COLD | T_EXPERIMENT,
        .prepare = prepare,
        .unprepare = unprepare,
        .echo_open = open_b,
        .echo_run = echo_run,
        .call_open = open_a,
        .call = pcall,
        .send_open = open_a,
        .send = psend,
        .recv_open = open_b,
        .recv = stream_recv,
        .close = peer_close,
};

const Transport transport_ringbuf_proposal = {
        .name = "ringbuf-proposal",
        .label = "experiment: v1 ring with the proposed hot path",
        .flags = T_LATENCY | T_STREAM | T_COLD | T_EXPERIMENT,
        .prepare = prepare,
        .unprepare = unprepare,
        .echo_open = open_b,
        .echo_run = echo_run,
        .call_open = open_a,
        .call = pcall,
        .send_open = open_a,
        .send = psend,
        .recv_open = open_b,
        .recv = stream_recv,
        .close = peer_close,
};
