/* SPDX-License-Identifier: MIT */
/*
 * The v1 ring buffer (spec/wire-format.md, "Ring"): a multi-producer, single-consumer queue
 * of length-prefixed records in shared memory, with futex wake-ups. The hot path never
 * allocates and makes no system call while the peer is awake.
 *
 * A RingBuf is a process-local handle. Everything it needs from the shared header that must
 * not change (capacity) is copied into the handle at attach time and never re-read: the
 * header is shared with processes we do not trust.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define RINGBUF_MAGIC UINT32_C(0x474E4952)
#define RINGBUF_HEADER_SIZE 192
#define RINGBUF_RECORD_PREFIX 4          /* u32 little-endian record length */
#define RINGBUF_MIN_CAPACITY 64
#define RINGBUF_MAX_CAPACITY (UINT32_C(1) << 30)

typedef struct RingShared RingShared;

/* Extension bit in the header's ext_features word (spec/wire-format.md, "Owner lock"): the
 * process that created this ring's segment holds a shared flock(2) on it while it lives, so a
 * broker can tell a live client's reply segment from a stale one by trying LOCK_EX. */
#define RINGBUF_EXT_OWNER_LOCK (UINT32_C(1) << 1)

typedef struct RingBuf {
        RingShared *shared;
        uint8_t *data;
        uint32_t capacity;      /* copied once at attach, never re-read from shm */
        uint32_t mask;
        uint64_t tail;          /* consumer only: our own cursor, the shared one is a copy */
        uint64_t cached_head;   /* consumer only: head as last loaded (re-read when caught up) */
        uint64_t published_tail; /* consumer only: tail as last stored to the shared header */
        uint64_t cached_tail;   /* producer only: tail as last loaded (re-read when short) */
        uint32_t spin_budget;   /* consumer only: adaptive spin before sleeping, in ns */
        /* producers: adaptive spin before sleeping for space, in ns; threads sharing this
         * producer update it without the lock, hence atomic (relaxed: it is only a hint) */
        _Atomic uint32_t space_spin_budget;
        bool space_owed;        /* consumer only: a v1 producer may still wait for space */
} RingBuf;

/* Bytes a ring with this capacity occupies (header + data). */
size_t ringbuf_size(uint32_t capacity);
/* Largest power-of-two capacity whose ring fits in size bytes (0 if none). */
uint32_t ringbuf_capacity_for(size_t size);

/* Formats an empty ring at base (64-byte aligned, size bytes available). The magic is stored
 * last with release, so a peer that sees it sees a formatted ring. */
int ringbuf_format(void *base, size_t size, uint32_t capacity);

/* Validates the header at base (magic, power-of-two capacity that fits in size) and fills
 * ret. -EBADMSG if it is not a ring. */
int ringbuf_attach_producer(RingBuf *ret, void *base, size_t size);
/* As above, for the single consumer. Also announces that this consumer publishes its sleeps
 * (extension, spec/wire-format.md "Wake-up flags") so producers may skip FUTEX_WAKE while it
 * is awake. */
int ringbuf_attach_consumer(RingBuf *ret, void *base, size_t size);

/* Sets / reads RINGBUF_EXT_OWNER_LOCK in a formatted ring's header. */
void ringbuf_announce_owner_lock(void *base);
bool ringbuf_owner_lock_announced(const void *base);

/* Clears the consumer announcement: the next consumer may be a v1 peer that needs every
 * wake-up. The broker calls this when it hands a ring to a new consumer. */
void ringbuf_reset_consumer_ext(void *base);

/* Appends one record made of the concatenated iov parts.
 * timeout_ns: 0 = never wait, <0 = wait forever, >0 = wait up to that long for space and for
 * the producer lock. Returns 0, -EAGAIN (full, timeout 0), -ETIMEDOUT, -EMSGSIZE (can never
 * fit), -EBADMSG (the shared cursors are corrupt), -EINVAL. A producer lock whose holder died
 * stays held until the ring's breaker calls ringbuf_break_lock_of(); meanwhile pushes time out. */
int ringbuf_pushv(RingBuf *rb, const struct iovec *iov, size_t n_iov, int64_t timeout_ns);
int ringbuf_push(RingBuf *rb, const void *payload, size_t len, int64_t timeout_ns);

/* Copies the next record into buf (size bytes) and consumes it; returns its length.
 * -EAGAIN if empty, -EMSGSIZE if buf is too small (the record stays), -EBADMSG if the ring is
 * corrupt (bad cursor or record length; nothing is consumed). */
int ringbuf_pop(RingBuf *rb, void *buf, size_t size);
/* Length of the next record without consuming it: -EAGAIN if empty, -EBADMSG if corrupt. */
int ringbuf_peek_len(RingBuf *rb);
/* Drops every record currently published (recovery after -EBADMSG); returns bytes dropped. */
uint64_t ringbuf_discard_all(RingBuf *rb);

/* Waits until a record is available: bounded adaptive spin, then FUTEX_WAIT on data_seq.
 * Returns 0 when data is there, -ETIMEDOUT, or -EAGAIN: empty with timeout_ns 0, or woken
 * without data (ringbuf_poke_consumer(), or a spurious wake-up) so the caller can look at
 * its own state; callers loop. timeout_ns as for push. */
int ringbuf_wait(RingBuf *rb, int64_t timeout_ns);
/* One sleep, without spinning: announces the sleep, re-checks, then FUTEX_WAITs on data_seq
 * until woken or the absolute CLOCK_MONOTONIC deadline. Returns 0 if data is there, -EAGAIN if
 * woken without data (a poke or a spurious wake-up), -ETIMEDOUT. For a thread that watches a
 * ring on behalf of an event loop (its RingBuf copy carries the consumer's tail). */
int ringbuf_sleep(RingBuf *rb, uint64_t deadline_ns);
/* For a watcher that sleeps on behalf of the consumer on several rings at once (FUTEX_WAITV):
 * prepare announces the sleep and returns the data_seq value to wait for (false if data is
 * already there); finish withdraws the announcement. data_word is the futex word. */
bool ringbuf_prepare_sleep(RingBuf *rb, uint32_t *ret_seq);
void ringbuf_finish_sleep(RingBuf *rb);
_Atomic uint32_t *ringbuf_data_word(RingBuf *rb);
/* Like ringbuf_has_data(), for an observer that is not the consumer: compares head with the
 * tail the consumer last published. */
bool ringbuf_has_data_shared(const RingBuf *rb);
/* Copies the next record into the iov parts in order (the record must fit their total) and
 * consumes it; returns its length. Errors as for ringbuf_pop(). */
int ringbuf_popv(RingBuf *rb, const struct iovec *iov, size_t n_iov);
/* Wakes whoever sleeps on data_seq without publishing anything (to cancel a watcher). */
void ringbuf_poke_consumer(RingBuf *rb);
/* True if at least one record is published and not consumed. */
bool ringbuf_has_data(const RingBuf *rb);

/* Snapshot of the producer lock for a breaker's "is it stuck?" check: lock word, owner pid
 * (extension, 0 = unknown) and head. */
void ringbuf_lock_state(RingBuf *rb, uint32_t *ret_lock, uint32_t *ret_owner, uint64_t *ret_head);
/* Releases the producer lock whatever holds it and wakes waiters. Only for the ring's single
 * breaker, after it has established that the holder is gone (see ringbuf_break_dead_lock). */
void ringbuf_force_unlock(RingBuf *rb);

/* Releases the producer lock if the process dead_pid (which the caller knows has exited, e.g.
 * from its pidfd) still holds it per the lock_owner extension, and wakes the waiters. Returns 1
 * if it broke the lock. Only the ring's single breaker calls this (the broker, for rings it
 * consumes). */
int ringbuf_break_lock_of(RingBuf *rb, uint32_t dead_pid);
