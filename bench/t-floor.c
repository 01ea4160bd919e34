/* SPDX-License-Identifier: MIT */
/*
 * The reference points: a bare shared-memory SPSC ring with busy polling (the practical floor:
 * the same one copy in and one copy out as Ring, no lock, no wake-up protocol, cursors on
 * their own cache lines and cached by the other side), the same ring with a futex wake-up on
 * every message and no spinning (the floor for peers that sleep), and single-thread memcpy
 * (the ceiling), both into one hot buffer and through a region as large as Ring's arena.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

typedef struct FloorShared {
        alignas(64) _Atomic uint64_t head;      /* producer */
        _Atomic uint32_t data_seq;              /* futex variant: bumped on every push */
        alignas(64) _Atomic uint64_t tail;      /* consumer */
        alignas(64) uint8_t data[];
} FloorShared;

typedef struct FloorRing {
        FloorShared *s;
        uint64_t capacity, mask;
        uint64_t cached;                /* producer: last tail seen; consumer: last head seen */
        uint64_t pos;                   /* producer: head; consumer: tail */
} FloorRing;

typedef struct FloorPeer {
        FloorRing out, in;
        bool futex;
        uint8_t *buf;
        size_t size;
} FloorPeer;

#define LATENCY_RING (UINT64_C(1) << 16)

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

static size_t ring_bytes(uint64_t capacity) {
        return sizeof(FloorShared) + capacity;
}

static int prepare(Job *j) {
        uint64_t cap = j->wl == WL_STREAM ? j->env->buffer : LATENCY_RING;
        size_t one = (ring_bytes(cap) + 4095) & ~(size_t) 4095;
        void *m;

        m = mmap(NULL, 2 * one, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return -errno;
        j->shared = m;
        j->shared_size = 2 * one;
        return 0;
}

static void unprepare(Job *j) {
        if (j->shared)
                munmap(j->shared, j->shared_size);
        j->shared = NULL;
}

static void ring_init(FloorRing *r, const Job *j, unsigned index) {
        uint64_t cap = j->wl == WL_STREAM ? j->env->buffer : LATENCY_RING;
        size_t one = (ring_bytes(cap) + 4095) & ~(size_t) 4095;

        *r = (FloorRing) { .s = (FloorShared *) ((uint8_t *) j->shared + index * one), .capacity = cap,
                           .mask = cap - 1 };
}

static void futex_wake_one(_Atomic uint32_t *w) {
        (void) syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void futex_wait_on(_Atomic uint32_t *w, uint32_t v) {
        (void) syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void copy_in(FloorRing *r, uint64_t pos, const void *src, size_t n) {
        size_t off = pos & r->mask, first = r->capacity - off < n ? r->capacity - off : n;

        memcpy(r->s->data + off, src, first);
        memcpy(r->s->data, (const uint8_t *) src + first, n - first);
}

static void copy_out(FloorRing *r, uint64_t pos, void *dst, size_t n) {
        size_t off = pos & r->mask, first = r->capacity - off < n ? r->capacity - off : n;

        memcpy(dst, r->s->data + off, first);
        memcpy((uint8_t *) dst + first, r->s->data, n - first);
}

static int push(FloorRing *r, const void *msg, size_t len, bool futex) {
        uint32_t prefix = (uint32_t) len;
        uint64_t need = 4 + len;

        if (need > r->capacity)
                return -EMSGSIZE;
        while (r->capacity - (r->pos - r->cached) < need) {
                /* Acquire: pairs with the consumer's release store of tail. */
                r->cached = atomic_load_explicit(&r->s->tail, memory_order_acquire);
                if (r->capacity - (r->pos - r->cached) < need)
                        cpu_relax();
        }
        copy_in(r, r->pos, &prefix, 4);
        copy_in(r, r->pos + 4, msg, len);
        r->pos += need;
        /* Release: pairs with the consumer's acquire load of head. */
        atomic_store_explicit(&r->s->head, r->pos, memory_order_release);
        if (futex) {
                atomic_fetch_add_explicit(&r->s->data_seq, 1, memory_order_seq_cst);
                futex_wake_one(&r->s->data_seq);
        }
        return 0;
}

static int pop(FloorRing *r, void *buf, size_t size, bool futex) {
        uint32_t len;

        while (r->cached == r->pos) {
                uint32_t seq = futex ? atomic_load_explicit(&r->s->data_seq, memory_order_seq_cst) : 0;
                /* Acquire: pairs with the producer's release store of head. */
                r->cached = atomic_load_explicit(&r->s->head, memory_order_acquire);
                if (r->cached != r->pos)
                        break;
                if (futex)
                        futex_wait_on(&r->s->data_seq, seq);
                else
                        cpu_relax();
        }
        copy_out(r, r->pos, &len, 4);
        if (len > size || len > r->cached - r->pos - 4)
                return -EBADMSG;
        copy_out(r, r->pos + 4, buf, len);
        r->pos += 4 + (uint64_t) len;
        /* Release: pairs with the producer's acquire load of tail. */
        atomic_store_explicit(&r->s->tail, r->pos, memory_order_release);
        return (int) len;
}

static int peer_new(const Job *j, bool is_a, void **ret) {
        FloorPeer *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->size = j->size + 64;
        p->buf = malloc(p->size);
        if (!p->buf) {
                free(p);
                return -ENOMEM;
        }
        p->futex = j->t == &transport_floor_futex;
        /* Ring 0 carries A -> B, ring 1 B -> A. */
        ring_init(&p->out, j, is_a ? 0 : 1);
        ring_init(&p->in, j, is_a ? 1 : 0);
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
        FloorPeer *p = h;

        if (!p)
                return;
        free(p->buf);
        free(p);
}

static int floor_call(void *h, const void *msg, size_t len, void *reply, size_t size) {
        FloorPeer *p = h;
        int r;

        r = push(&p->out, msg, len, p->futex);
        if (r < 0)
                return r;
        return pop(&p->in, reply, size, p->futex);
}

static int echo_run(void *h, const Job *j) {
        FloorPeer *p = h;
        int n, r;

        for (;;) {
                n = pop(&p->in, p->buf, p->size, p->futex);
                if (n < 0)
                        return n;
                r = push(&p->out, p->buf, (size_t) n, p->futex);
                if (r < 0)
                        return r;
                if (n >= 8 && payload_seq(p->buf) == BENCH_STOP_SEQ)
                        return 0;
        }
}

static int floor_send(void *h, const void *msg, size_t len) {
        FloorPeer *p = h;

        return push(&p->out, msg, len, p->futex);
}

static int floor_recv(void *h, void *buf, size_t size, const void **ret_msg) {
        FloorPeer *p = h;

        *ret_msg = buf;
        return pop(&p->in, buf, size, p->futex);
}

/* ---- memcpy ---- */

static int memcpy_solo(const Job *j, Rep *rep) {
        bool ring = j->t == &transport_memcpy_ring;
        size_t region = ring ? j->env->buffer : j->size, off = 0;
        uint8_t *src = malloc(j->size), *dst = malloc(region);
        uint64_t n = 0, t0, t1, end;

        if (!src || !dst) {
                free(src);
                free(dst);
                return -ENOMEM;
        }
        payload_init(src, j->size);
        memset(dst, 0, region);
        t0 = peer_now_ns();
        end = t0 + j->duration_ns;
        do {
                for (unsigned i = 0; i < 16; i++) {
                        if (off + j->size > region)
                                off = 0;
                        memcpy(dst + off, src, j->size);
                        /* Keep the copy: the compiler may not drop or merge it. */
                        __asm__ __volatile__("" : : "r"(dst) : "memory");
                        off += j->size;
                        n++;
                }
                t1 = peer_now_ns();
        } while (t1 < end);
        rep->n = n;
        rep->msgs_per_s = (double) n * 1e9 / (double) (t1 - t0);
        rep->bytes_per_s = rep->msgs_per_s * (double) j->size;
        free(src);
        free(dst);
        return 0;
}

const Transport transport_floor = {
        .name = "floor-spsc",
        .label = "floor: bare SPSC ring, busy poll",
        .flags = T_LATENCY | T_STREAM,
        .prepare = prepare,
        .unprepare = unprepare,
        .echo_open = open_b,
        .echo_run = echo_run,
        .call_open = open_a,
        .call = floor_call,
        .send_open = open_a,
        .send = floor_send,
        .recv_open = open_b,
        .recv = floor_recv,
        .close = peer_close,
};

const Transport transport_floor_futex = {
        .name = "floor-futex",
        .label = "floor: SPSC ring, futex wake per message",
        .flags = T_LATENCY | T_COLD,
        .prepare = prepare,
        .unprepare = unprepare,
        .echo_open = open_b,
        .echo_run = echo_run,
        .call_open = open_a,
        .call = floor_call,
        .close = peer_close,
};

const Transport transport_memcpy_hot = {
        .name = "memcpy-hot",
        .label = "ceiling: memcpy, one hot buffer",
        .flags = T_STREAM | T_SOLO,
        .solo = memcpy_solo,
};

const Transport transport_memcpy_ring = {
        .name = "memcpy-ring",
        .label = "ceiling: memcpy through an arena-sized region",
        .flags = T_STREAM | T_SOLO,
        .solo = memcpy_solo,
};
