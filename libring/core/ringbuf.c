/* SPDX-License-Identifier: MIT */
/*
 * The v1 ring buffer (spec/wire-format.md, "Ring"). Producers serialise on the 3-state futex
 * lock in the header; the single consumer is lock-free. Records are published by the release
 * store of head and freed by the release store of tail.
 *
 * Hot path: with the lock free and the peer awake, a push is one CAS, the copies, one store,
 * one atomic increment and one exchange; a pop is the copy and two stores. System calls happen
 * only when someone actually sleeps. Two extension words (spec/wire-format.md, "Wake-up
 * flags") let us know that: consumer_sleeping (counted by a libring consumer's threads around
 * FUTEX_WAIT) and space_waiters (counted by libring producers before they wait for space). A
 * v1 peer does not
 * maintain them, so each side falls back to v1's unconditional wake-ups whenever the other
 * side may be a v1 peer.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "futex.h"
#include "macro.h"
#include "ringbuf-layout.h"
#include "ringbuf.h"
#include "time-util.h"
#include "unaligned.h"

/* Spin before FUTEX_WAIT (a consumer waiting for data, a producer waiting for space), adapted
 * between these bounds (nanoseconds): a cross-core wake-up costs ~20 us here, so spinning up
 * to a few times that pays off when the peer is busy, while the cap keeps an idle process's
 * CPU use bounded before it sleeps. */
#define SPIN_MIN_NS (2 * NSEC_PER_USEC)
#define SPIN_INITIAL_NS (20 * NSEC_PER_USEC)
#define SPIN_MAX_NS (100 * NSEC_PER_USEC)
/* Producer spin on a held lock: holders keep it for a copy only, so a short spin suffices. */
#define LOCK_SPIN_ITERATIONS 200

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#else
        atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* getpid() is a system call in current glibc; the lock owner is stored on every push, so keep
 * it cached and refresh it in a forked child. */
static _Atomic uint32_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_refresh(void) {
        atomic_store_explicit(&cached_pid, (uint32_t) getpid(), memory_order_relaxed);
}

static void pid_init(void) {
        pid_refresh();
        pthread_atfork(NULL, NULL, pid_refresh);
}

static uint32_t self_pid(void) {
        pthread_once(&pid_once, pid_init);
        return atomic_load_explicit(&cached_pid, memory_order_relaxed);
}

static bool is_pow2(uint32_t v) {
        return v && !(v & (v - 1));
}

size_t ringbuf_size(uint32_t capacity) {
        return RINGBUF_HEADER_SIZE + (size_t) capacity;
}

uint32_t ringbuf_capacity_for(size_t size) {
        uint32_t c = RINGBUF_MAX_CAPACITY;

        if (size < RINGBUF_HEADER_SIZE + RINGBUF_MIN_CAPACITY)
                return 0;
        while (c > RINGBUF_MIN_CAPACITY && ringbuf_size(c) > size)
                c >>= 1;
        return c;
}

int ringbuf_format(void *base, size_t size, uint32_t capacity) {
        RingShared *s = base;

        if (!base || ((uintptr_t) base & 63) || !is_pow2(capacity) ||
            capacity < RINGBUF_MIN_CAPACITY || capacity > RINGBUF_MAX_CAPACITY ||
            ringbuf_size(capacity) > size)
                return -EINVAL;

        atomic_store_explicit(&s->magic, 0, memory_order_relaxed);
        memset((uint8_t *) base + sizeof(s->magic), 0, RINGBUF_HEADER_SIZE - sizeof(s->magic));
        s->capacity = capacity;
        /* Release: pairs with the acquire load of magic in attach(); a peer that sees the
         * magic sees the zeroed cursors and the capacity. */
        atomic_store_explicit(&s->magic, RINGBUF_MAGIC, memory_order_release);
        return 0;
}

static int attach(RingBuf *ret, void *base, size_t size) {
        RingShared *s = base;
        uint32_t capacity;

        if (!ret || !base || ((uintptr_t) base & 63) || size < RINGBUF_HEADER_SIZE)
                return -EINVAL;
        /* Acquire: pairs with the release store of magic in ringbuf_format(). */
        if (atomic_load_explicit(&s->magic, memory_order_acquire) != RINGBUF_MAGIC)
                return -EBADMSG;
        /* Read once: the header is writable by peers, our bounds must not move under us. */
        capacity = *(volatile uint32_t *) &s->capacity;
        if (!is_pow2(capacity) || capacity < RINGBUF_MIN_CAPACITY ||
            capacity > RINGBUF_MAX_CAPACITY || ringbuf_size(capacity) > size)
                return -EBADMSG;

        *ret = (RingBuf) {
                .shared = s,
                .data = (uint8_t *) base + RINGBUF_HEADER_SIZE,
                .capacity = capacity,
                .mask = capacity - 1,
                .spin_budget = SPIN_INITIAL_NS,
                .space_spin_budget = SPIN_INITIAL_NS,
        };
        return 0;
}

int ringbuf_attach_producer(RingBuf *ret, void *base, size_t size) {
        return attach(ret, base, size);
}

int ringbuf_attach_consumer(RingBuf *ret, void *base, size_t size) {
        RingBuf rb;
        uint64_t head, tail;
        int r;

        r = attach(&rb, base, size);
        if (r < 0)
                return r;
        tail = atomic_load_explicit(&rb.shared->tail, memory_order_relaxed);
        head = atomic_load_explicit(&rb.shared->head, memory_order_acquire);
        if (head - tail > rb.capacity)
                return -EBADMSG;
        rb.tail = rb.cached_head = rb.published_tail = tail;
        atomic_fetch_or_explicit(&rb.shared->ext_features, RINGBUF_EXT_SLEEP_FLAG,
                                 memory_order_seq_cst);
        *ret = rb;
        return 0;
}

void ringbuf_announce_owner_lock(void *base) {
        atomic_fetch_or_explicit(&((RingShared *) base)->ext_features, RINGBUF_EXT_OWNER_LOCK,
                                 memory_order_seq_cst);
}

bool ringbuf_owner_lock_announced(const void *base) {
        return atomic_load_explicit(&((RingShared *) base)->ext_features, memory_order_acquire) &
               RINGBUF_EXT_OWNER_LOCK;
}

void ringbuf_reset_consumer_ext(void *base) {
        RingShared *s = base;

        atomic_fetch_and_explicit(&s->ext_features, ~RINGBUF_EXT_SLEEP_FLAG, memory_order_seq_cst);
        atomic_store_explicit(&s->consumer_sleeping, 0, memory_order_relaxed);
}

/* Copies n bytes into the data region at cursor pos, wrapping at the end. */
static void copy_in(RingBuf *rb, uint64_t pos, const void *src, size_t n) {
        size_t off = (size_t) (pos & rb->mask), first = rb->capacity - off;

        if (n == 0)
                return;         /* an empty iov part may have a NULL base */
        if (first > n)
                first = n;
        memcpy(rb->data + off, src, first);
        memcpy(rb->data, (const uint8_t *) src + first, n - first);
}

static void copy_out(const RingBuf *rb, uint64_t pos, void *dst, size_t n) {
        size_t off = (size_t) (pos & rb->mask), first = rb->capacity - off;

        if (n == 0)
                return;
        if (first > n)
                first = n;
        memcpy(dst, rb->data + off, first);
        memcpy((uint8_t *) dst + first, rb->data, n - first);
}

static int lock_acquire(RingBuf *rb, int64_t timeout_ns, uint64_t *deadline) {
        _Atomic uint32_t *lock = &rb->shared->prod_lock;
        uint32_t c = 0;
        int r;

        /* Acquire on success: pairs with the release exchange in lock_release(), so the
         * previous holder's head store is visible. */
        if (_likely_(atomic_compare_exchange_strong_explicit(lock, &c, 1, memory_order_acquire,
                                                             memory_order_relaxed)))
                goto locked;

        for (unsigned i = 0; i < LOCK_SPIN_ITERATIONS; i++) {
                cpu_relax();
                c = atomic_load_explicit(lock, memory_order_relaxed);
                if (c == 0 && atomic_compare_exchange_weak_explicit(lock, &c, 1, memory_order_acquire,
                                                                    memory_order_relaxed))
                        goto locked;
        }
        if (timeout_ns == 0)
                return -EAGAIN;
        if (*deadline == 0)
                *deadline = deadline_after(timeout_ns);

        /* Drepper's mutex: 2 marks "locked, maybe waiters", so the holder knows to wake. */
        c = atomic_exchange_explicit(lock, 2, memory_order_acquire);
        while (c != 0) {
                r = futex_wait(lock, 2, *deadline);
                if (r == -ETIMEDOUT)
                        return -ETIMEDOUT;
                c = atomic_exchange_explicit(lock, 2, memory_order_acquire);
        }
locked:
        atomic_store_explicit(&rb->shared->lock_owner, self_pid(), memory_order_relaxed);
        return 0;
}

static void lock_release(RingBuf *rb) {
        atomic_store_explicit(&rb->shared->lock_owner, 0, memory_order_relaxed);
        /* Release: pairs with the acquire in lock_acquire(). */
        if (atomic_exchange_explicit(&rb->shared->prod_lock, 0, memory_order_release) == 2)
                futex_wake(&rb->shared->prod_lock, 1);
}

/* Wakes the consumer after a publish, unless it has told us it is awake. */
static void notify_consumer(RingBuf *rb) {
        RingShared *s = rb->shared;

        /* seq_cst: orders our head store before the load of consumer_sleeping, against the
         * consumer's store of consumer_sleeping before its load of head (ringbuf_sleep). One of
         * us sees the other: an awake consumer that announces its sleeps will see our record. */
        atomic_thread_fence(memory_order_seq_cst);
        if ((atomic_load_explicit(&s->ext_features, memory_order_relaxed) & RINGBUF_EXT_SLEEP_FLAG) &&
            !atomic_load_explicit(&s->consumer_sleeping, memory_order_relaxed))
                return;
        /* v1 (and a consumer on its way to sleep): data_seq changes on every publish, so a
         * consumer that read it before our head store fails its FUTEX_WAIT value check
         * instead of missing the record. */
        atomic_fetch_add_explicit(&s->data_seq, 1, memory_order_seq_cst);
        /* All, not one (v1 wakes one): a consumer may have several threads asleep on one ring,
         * say a caller waiting for its reply and the event-loop watcher of the same connection,
         * and the one woken must not be the wrong one. */
        futex_wake(&s->data_seq, INT_MAX);
}

/* Adapts a spin budget to how long a wait really took: if a longer spin (up to the cap) would
 * have caught it, spin that long next time; if the peer was slower than the cap, sleeping was
 * right, and the budget shrinks. */
static uint32_t adapted_budget(uint32_t budget, uint64_t waited) {
        if (waited <= SPIN_MAX_NS)
                return (uint32_t) MIN(SPIN_MAX_NS, MAX((uint64_t) budget, 2 * waited));
        return (uint32_t) MAX(SPIN_MIN_NS, budget / 2);
}

/* Polls ready(rb, need), pausing between polls, until it holds (true) or the clock passes limit
 * (false); the clock is read once per 64 polls. Inlined, with ready, at each caller. */
static inline bool spin_until(RingBuf *rb, bool (*ready)(RingBuf *rb, size_t need), size_t need, uint64_t limit) {
        for (;;) {
                for (unsigned i = 0; i < 64; i++) {
                        if (ready(rb, need))
                                return true;
                        cpu_relax();
                }
                if (now_ns(CLOCK_MONOTONIC) >= limit)
                        return false;
        }
}

/* True if a record of need bytes fits now (or the cursors are corrupt, which the caller
 * finds out under the lock). */
static bool space_available(RingBuf *rb, size_t need) {
        /* Acquire: pairs with the consumer's release store of tail in publish_tail(). */
        uint64_t tail = atomic_load_explicit(&rb->shared->tail, memory_order_acquire);
        uint64_t head = atomic_load_explicit(&rb->shared->head, memory_order_relaxed);

        return head - tail > rb->capacity || rb->capacity - (head - tail) >= need;
}

/* Spins up to the producers' adaptive budget for the consumer to free space. While we spin
 * we are not counted in space_waiters, so the consumer keeps publishing tail in batches (a
 * quarter of the ring, or when it catches up) and makes no FUTEX_WAKE: a consumer that keeps
 * up with large records costs no system call on either side. */
static bool spin_for_space(RingBuf *rb, size_t need, uint64_t start, uint64_t deadline) {
        return spin_until(rb, space_available, need,
                          MIN(start + atomic_load_explicit(&rb->space_spin_budget, memory_order_relaxed), deadline));
}

/* Waits, without the lock, until the consumer frees space or the deadline passes: a bounded
 * adaptive spin, then FUTEX_WAIT on space_seq. */
static int wait_for_space(RingBuf *rb, size_t need, uint64_t deadline) {
        RingShared *s = rb->shared;
        uint64_t start = now_ns(CLOCK_MONOTONIC), head, tail;
        uint32_t seq;
        int r;

        if (spin_for_space(rb, need, start, deadline)) {
                r = 0;
                goto adapt;
        }
        atomic_fetch_add_explicit(&s->space_waiters, 1, memory_order_seq_cst);
        /* seq is read before the space re-check, so a tail store after the check also changes
         * space_seq and the FUTEX_WAIT returns at once. */
        seq = atomic_load_explicit(&s->space_seq, memory_order_seq_cst);
        tail = atomic_load_explicit(&s->tail, memory_order_seq_cst);
        head = atomic_load_explicit(&s->head, memory_order_seq_cst);
        if (head - tail > rb->capacity || rb->capacity - (head - tail) >= need)
                r = 0;
        else
                r = futex_wait(&s->space_seq, seq, deadline);
        atomic_fetch_sub_explicit(&s->space_waiters, 1, memory_order_seq_cst);
        if (r == -ETIMEDOUT)
                return -ETIMEDOUT;
        r = 0;
adapt:
        atomic_store_explicit(&rb->space_spin_budget,
                              adapted_budget(atomic_load_explicit(&rb->space_spin_budget, memory_order_relaxed),
                                             now_ns(CLOCK_MONOTONIC) - start),
                              memory_order_relaxed);
        return r;
}

int ringbuf_pushv(RingBuf *rb, const struct iovec *iov, size_t n_iov, int64_t timeout_ns) {
        uint64_t deadline = 0, head, tail, used;
        uint8_t prefix[RINGBUF_RECORD_PREFIX];
        size_t total = 0, need;
        int r;

        if (!rb || !rb->shared || (n_iov && !iov))
                return -EINVAL;
        for (size_t i = 0; i < n_iov; i++) {
                if (iov[i].iov_len > SIZE_MAX - total)
                        return -EMSGSIZE;
                total += iov[i].iov_len;
        }
        if (total > rb->capacity - RINGBUF_RECORD_PREFIX)
                return -EMSGSIZE;
        need = total + RINGBUF_RECORD_PREFIX;

        for (;;) {
                r = lock_acquire(rb, timeout_ns, &deadline);
                if (r < 0)
                        return r;

                head = atomic_load_explicit(&rb->shared->head, memory_order_relaxed);
                /* The tail we saw last only ever understates the free space (tail only grows):
                 * re-read the consumer's cache line only when it does not show enough. */
                used = head - rb->cached_tail;
                if (used <= rb->capacity && rb->capacity - used >= need)
                        break;
                /* Acquire: pairs with the consumer's release store of tail, so the bytes it
                 * freed are no longer being read when we overwrite them. */
                tail = atomic_load_explicit(&rb->shared->tail, memory_order_acquire);
                rb->cached_tail = tail;
                used = head - tail;
                if (used > rb->capacity) {
                        lock_release(rb);
                        return -EBADMSG;
                }
                if (rb->capacity - used >= need)
                        break;

                lock_release(rb);
                if (timeout_ns == 0)
                        return -EAGAIN;
                if (deadline == 0)
                        deadline = deadline_after(timeout_ns);
                r = wait_for_space(rb, need, deadline);
                if (r < 0)
                        return r;
        }

        unaligned_write_le32(prefix, (uint32_t) total);
        copy_in(rb, head, prefix, sizeof(prefix));
        for (size_t i = 0, off = sizeof(prefix); i < n_iov; off += iov[i].iov_len, i++)
                copy_in(rb, head + off, iov[i].iov_base, iov[i].iov_len);

        /* Release: pairs with the consumer's acquire load of head; the record bytes above are
         * visible before the cursor that covers them. */
        atomic_store_explicit(&rb->shared->head, head + need, memory_order_release);
        lock_release(rb);
        notify_consumer(rb);
        return 0;
}

int ringbuf_push(RingBuf *rb, const void *payload, size_t len, int64_t timeout_ns) {
        struct iovec iov = { .iov_base = (void *) payload, .iov_len = len };

        return ringbuf_pushv(rb, &iov, 1, timeout_ns);
}

static void publish_tail(RingBuf *rb);

/* Locates the next record: its payload length, after checking it against the published
 * bytes. Everything read from the ring is bounded here before use. */
static int next_record(RingBuf *rb, uint64_t *ret_head, uint32_t *ret_len) {
        uint8_t prefix[RINGBUF_RECORD_PREFIX];
        uint64_t head, avail;
        uint32_t len;

        /* Records up to the head we saw last are ours without touching the producers' cache
         * line; re-read it only when caught up. Acquire: pairs with the producer's release
         * store of head in ringbuf_pushv(). */
        head = rb->cached_head;
        if (head == rb->tail) {
                head = atomic_load_explicit(&rb->shared->head, memory_order_acquire);
                rb->cached_head = head;
                if (head == rb->tail) {
                        /* Caught up: hand all consumed space back before anyone waits. */
                        publish_tail(rb);
                        return -EAGAIN;
                }
        }
        avail = head - rb->tail;
        if (avail > rb->capacity || avail < RINGBUF_RECORD_PREFIX)
                return -EBADMSG;
        copy_out(rb, rb->tail, prefix, sizeof(prefix));
        len = unaligned_read_le32(prefix);
        if (len > avail - RINGBUF_RECORD_PREFIX)
                return -EBADMSG;
        *ret_head = head;
        *ret_len = len;
        return 0;
}

/* Hands consumed space back to producers: the tail store, then v1's space_seq wake-up,
 * skipped when no producer can be waiting (see the file comment). */
static void publish_tail(RingBuf *rb) {
        RingShared *s = rb->shared;
        uint64_t head = rb->cached_head, new_tail = rb->tail, half = rb->capacity / 2,
                 used_before = head - rb->published_tail, used_after = head - new_tail;
        bool wake;

        if (new_tail == rb->published_tail)
                return;
        rb->published_tail = new_tail;
        /* Release: pairs with the producers' acquire load of tail; we are done reading. */
        atomic_store_explicit(&s->tail, new_tail, memory_order_release);
        atomic_fetch_add_explicit(&s->space_seq, 1, memory_order_seq_cst);
        /* seq_cst: against wait_for_space(), which counts itself in space_waiters before it
         * re-reads tail. */
        atomic_thread_fence(memory_order_seq_cst);

        /* libring producers count themselves; a v1 producer does not, so it is woken when the
         * ring drops to half full (any record of up to half the ring then fits) and, if a
         * crossing happened, again when the ring runs empty (any record fits). */
        wake = atomic_load_explicit(&s->space_waiters, memory_order_relaxed) > 0;
        if (used_before > half && used_after <= half) {
                wake = true;
                rb->space_owed = true;
        } else if (used_after == 0 && rb->space_owed) {
                wake = true;
                rb->space_owed = false;
        }
        if (wake)
                futex_wake(&s->space_seq, INT_MAX);
}

/* Consumes up to new_tail. The shared tail (the producers' view of free space, in their cache
 * line's neighbour) is published in batches: when a quarter of the ring is consumed, and
 * whenever the consumer catches up (next_record) or waits, so producers never wait for space
 * that is only held back here. */
static void release_space(RingBuf *rb, uint64_t new_tail) {
        rb->tail = new_tail;
        /* A waiting producer (it counts itself in our cache line) gets the space at once. */
        if (new_tail - rb->published_tail >= rb->capacity / 4 ||
            atomic_load_explicit(&rb->shared->space_waiters, memory_order_seq_cst) > 0)
                publish_tail(rb);
}

int ringbuf_peek_len(RingBuf *rb) {
        uint64_t head;
        uint32_t len;
        int r;

        if (!rb || !rb->shared)
                return -EINVAL;
        r = next_record(rb, &head, &len);
        if (r < 0)
                return r;
        return (int) len;
}

int ringbuf_pop(RingBuf *rb, void *buf, size_t size) {
        uint64_t head;
        uint32_t len;
        int r;

        if (!rb || !rb->shared || (size && !buf))
                return -EINVAL;
        r = next_record(rb, &head, &len);
        if (r < 0)
                return r;
        if (len > size)
                return -EMSGSIZE;
        copy_out(rb, rb->tail + RINGBUF_RECORD_PREFIX, buf, len);
        release_space(rb, rb->tail + RINGBUF_RECORD_PREFIX + len);
        return (int) len;
}

int ringbuf_popv(RingBuf *rb, const struct iovec *iov, size_t n_iov) {
        uint64_t head, pos;
        uint32_t len, left;
        size_t total = 0;
        int r;

        if (!rb || !rb->shared || (n_iov && !iov))
                return -EINVAL;
        r = next_record(rb, &head, &len);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_iov; i++)
                total += iov[i].iov_len;
        if (len > total)
                return -EMSGSIZE;
        pos = rb->tail + RINGBUF_RECORD_PREFIX;
        left = len;
        for (size_t i = 0; i < n_iov && left > 0; i++) {
                size_t n = MIN(iov[i].iov_len, (size_t) left);
                copy_out(rb, pos, iov[i].iov_base, n);
                pos += n;
                left -= (uint32_t) n;
        }
        release_space(rb, rb->tail + RINGBUF_RECORD_PREFIX + len);
        return (int) len;
}

uint64_t ringbuf_discard_all(RingBuf *rb) {
        uint64_t head, dropped;

        if (!rb || !rb->shared)
                return 0;
        head = atomic_load_explicit(&rb->shared->head, memory_order_acquire);
        dropped = head - rb->tail;
        if (dropped == 0)
                return 0;
        /* Even when the cursors are corrupt, resynchronising on head is the only safe state. */
        rb->space_owed = true;
        rb->cached_head = head;
        rb->tail = head;
        publish_tail(rb);
        return dropped;
}

bool ringbuf_has_data(const RingBuf *rb) {
        /* Acquire: pairs with the producer's release store of head. */
        return atomic_load_explicit(&rb->shared->head, memory_order_acquire) != rb->tail;
}

static bool data_arrived(RingBuf *rb, size_t need) {
        return ringbuf_has_data(rb);
}

/* Spins up to the adaptive budget; true if data arrived. */
static bool spin_for_data(RingBuf *rb, uint64_t start, uint64_t deadline) {
        return spin_until(rb, data_arrived, 0, MIN(start + rb->spin_budget, deadline));
}

static void adapt_spin(RingBuf *rb, uint64_t waited) {
        rb->spin_budget = adapted_budget(rb->spin_budget, waited);
}

int ringbuf_wait(RingBuf *rb, int64_t timeout_ns) {
        uint64_t start, deadline;
        int r;

        if (!rb || !rb->shared)
                return -EINVAL;
        if (ringbuf_has_data(rb))
                return 0;
        /* Producers may be waiting for the space we consumed: hand it back before we wait. */
        publish_tail(rb);
        if (timeout_ns == 0)
                return -EAGAIN;

        start = now_ns(CLOCK_MONOTONIC);
        deadline = timeout_ns < 0 ? UINT64_MAX : start + (uint64_t) timeout_ns;
        if (spin_for_data(rb, start, deadline)) {
                adapt_spin(rb, now_ns(CLOCK_MONOTONIC) - start);
                return 0;
        }
        r = ringbuf_sleep(rb, deadline);
        if (r == 0)
                adapt_spin(rb, now_ns(CLOCK_MONOTONIC) - start);
        else if (r == -EAGAIN && now_ns(CLOCK_MONOTONIC) >= deadline)
                r = -ETIMEDOUT;
        return r;
}

bool ringbuf_prepare_sleep(RingBuf *rb, uint32_t *ret_seq) {
        RingShared *s = rb->shared;

        *ret_seq = atomic_load_explicit(&s->data_seq, memory_order_acquire);
        /* A count, not a flag: another thread of ours may sleep on this ring too (a caller and
         * the watcher), and its wake-up must not clear our announcement. */
        atomic_fetch_add_explicit(&s->consumer_sleeping, 1, memory_order_relaxed);
        /* seq_cst: pairs with the fence in notify_consumer(); either the producer sees
         * consumer_sleeping != 0 and wakes us, or we see its head here. */
        atomic_thread_fence(memory_order_seq_cst);
        return !ringbuf_has_data_shared(rb);
}

void ringbuf_finish_sleep(RingBuf *rb) {
        atomic_fetch_sub_explicit(&rb->shared->consumer_sleeping, 1, memory_order_relaxed);
}

_Atomic uint32_t *ringbuf_data_word(RingBuf *rb) {
        return &rb->shared->data_seq;
}

bool ringbuf_has_data_shared(const RingBuf *rb) {
        /* Acquire on head: pairs with the producer's release store of head. */
        return atomic_load_explicit(&rb->shared->head, memory_order_acquire) !=
               atomic_load_explicit(&rb->shared->tail, memory_order_acquire);
}

int ringbuf_sleep(RingBuf *rb, uint64_t deadline_ns) {
        uint32_t seq;
        int r = 0;

        if (ringbuf_prepare_sleep(rb, &seq) && !ringbuf_has_data(rb))
                r = futex_wait(&rb->shared->data_seq, seq, deadline_ns);
        ringbuf_finish_sleep(rb);
        if (ringbuf_has_data(rb))
                return 0;
        return r == -ETIMEDOUT ? -ETIMEDOUT : -EAGAIN;
}

void ringbuf_poke_consumer(RingBuf *rb) {
        atomic_fetch_add_explicit(&rb->shared->data_seq, 1, memory_order_seq_cst);
        futex_wake(&rb->shared->data_seq, INT_MAX);
}

void ringbuf_lock_state(RingBuf *rb, uint32_t *ret_lock, uint32_t *ret_owner, uint64_t *ret_head) {
        *ret_lock = atomic_load_explicit(&rb->shared->prod_lock, memory_order_acquire);
        *ret_owner = atomic_load_explicit(&rb->shared->lock_owner, memory_order_relaxed);
        *ret_head = atomic_load_explicit(&rb->shared->head, memory_order_acquire);
}

void ringbuf_force_unlock(RingBuf *rb) {
        atomic_store_explicit(&rb->shared->lock_owner, 0, memory_order_relaxed);
        atomic_store_explicit(&rb->shared->prod_lock, 0, memory_order_release);
        futex_wake(&rb->shared->prod_lock, INT_MAX);
}

int ringbuf_break_lock_of(RingBuf *rb, uint32_t dead_pid) {
        RingShared *s;
        uint32_t owner = dead_pid;

        if (!rb || !rb->shared || dead_pid == 0)
                return 0;
        s = rb->shared;
        if (atomic_load_explicit(&s->prod_lock, memory_order_acquire) == 0)
                return 0;
        /* owner == dead_pid proves the dead process still held the lock: a holder clears
         * lock_owner before it releases, and the next holder sets it only after acquiring. The
         * CAS claims the lock from the dead owner; nobody else can take it meanwhile, since it
         * stays held until the store below. */
        if (!atomic_compare_exchange_strong_explicit(&s->lock_owner, &owner, 0, memory_order_acq_rel,
                                                     memory_order_relaxed))
                return 0;
        /* Release: a dead holder never stored head, so no half-written record is published. */
        atomic_store_explicit(&s->prod_lock, 0, memory_order_release);
        futex_wake(&s->prod_lock, INT_MAX);
        return 1;
}
