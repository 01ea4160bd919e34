/* SPDX-License-Identifier: MIT */
/*
 * Replies on the connection's reply ring (leader/follower). The ring has one consumer, but any
 * number of threads may wait for replies. Whoever waits and finds no reader becomes the
 * reader: it consumes the ring, hands each reply to the waiter with its correlation id (a copy
 * plus a futex wake-up), and keeps going until its own reply came. A lone caller therefore
 * reads its reply straight from shared memory with no hand-off at all, which is the fast path.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn-internal.h"
#include "frame.h"
#include "futex.h"
#include "macro.h"
#include "time-util.h"
#include "unaligned.h"

void waiter_register(ring_conn *c, Waiter *w) {
        atomic_store_explicit(&w->state, WAITER_PENDING, memory_order_relaxed);
        pthread_mutex_lock(&c->waiters_lock);
        w->prev = NULL;
        w->next = c->waiters;
        if (c->waiters)
                c->waiters->prev = w;
        c->waiters = w;
        pthread_mutex_unlock(&c->waiters_lock);
}

static void unlink_locked(ring_conn *c, Waiter *w) {
        if (w->prev)
                w->prev->next = w->next;
        else if (c->waiters == w)
                c->waiters = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
}

void waiter_unregister(ring_conn *c, Waiter *w) {
        pthread_mutex_lock(&c->waiters_lock);
        unlink_locked(c, w);
        pthread_mutex_unlock(&c->waiters_lock);
}

/* The correlation id of a reply record: the first field of every reply body is
 * correlation_id, a zig-zag varint right after the frame header. */
static bool record_correlation(const uint8_t *rec, size_t len, int64_t *ret) {
        AvroReader r;
        Frame f;

        if (frame_decode(rec, len, &f) < 0)
                return false;
        r = (AvroReader) { .buf = f.body, .len = f.body_len };
        return avrobin_get_long(&r, ret) == 0;
}

static void deliver(ring_conn *c, const uint8_t *rec, size_t len) {
        int64_t corr;
        Waiter *w;

        if (!record_correlation(rec, len, &corr))
                return;         /* not a frame we can attribute: drop it */
        pthread_mutex_lock(&c->waiters_lock);
        for (w = c->waiters; w; w = w->next)
                if (w->correlation_id == corr && atomic_load(&w->state) != WAITER_DONE &&
                    atomic_load(&w->state) != WAITER_FAILED)
                        break;
        if (w) {
                w->owns_record = len > w->buf_size;
                w->record = w->owns_record ? malloc(len) : w->buf;
                if (w->record) {
                        memcpy(w->record, rec, len);
                        w->len = len;
                        atomic_store_explicit(&w->state, WAITER_DONE, memory_order_seq_cst);
                } else {
                        w->error = -ENOMEM;
                        atomic_store_explicit(&w->state, WAITER_FAILED, memory_order_seq_cst);
                }
                if (w->done) {
                        /* An async call: ring_conn_dispatch() runs its completion. */
                        uint64_t one = 1;
                        (void) !write(c->event_fd, &one, sizeof(one));
                } else if (atomic_load(&w->asleep))
                        /* seq_cst against the waiter's store of asleep before its FUTEX_WAIT:
                         * either we see it asleep, or its FUTEX_WAIT sees the new state. The
                         * reader finding its own reply makes no system call. */
                        futex_wake(&w->state, 1);
        }
        /* A reply nobody waits for (its caller timed out) is dropped. */
        pthread_mutex_unlock(&c->waiters_lock);
}

/* Consumes what the reply ring holds; the caller is the reader. */
static int drain_locked(ring_conn *c) {
        int n, handled = 0;

        for (;;) {
                n = ringbuf_pop(&c->reply, c->reader_buf, CONN_REPLY_CAPACITY);
                if (n == -EAGAIN)
                        return handled;
                if (n == -EBADMSG) {
                        /* Someone wrote garbage into our ring: resynchronise, lose what was there. */
                        ringbuf_discard_all(&c->reply);
                        continue;
                }
                if (n < 0)
                        return n;
                deliver(c, c->reader_buf, (size_t) n);
                handled++;
        }
}

int waiter_drain(ring_conn *c) {
        int r;

        if (pthread_mutex_trylock(&c->reader_lock) != 0)
                return 0;       /* someone else is reading and will deliver */
        r = drain_locked(c);
        pthread_mutex_unlock(&c->reader_lock);
        return r;
}

/* Hands the reader role on: wakes one other synchronous waiter so it takes over. */
static void wake_next_reader(ring_conn *c, Waiter *self) {
        pthread_mutex_lock(&c->waiters_lock);
        for (Waiter *w = c->waiters; w; w = w->next) {
                uint32_t expected = WAITER_PENDING;
                if (w == self || w->done)
                        continue;
                if (atomic_compare_exchange_strong(&w->state, &expected, WAITER_WAKE)) {
                        futex_wake(&w->state, 1);
                        break;
                }
        }
        pthread_mutex_unlock(&c->waiters_lock);
}

static bool finished(Waiter *w) {
        uint32_t s = atomic_load_explicit(&w->state, memory_order_acquire);
        return s == WAITER_DONE || s == WAITER_FAILED;
}

int waiter_wait(ring_conn *c, Waiter *w, uint64_t deadline_ns, int (*alive)(void *arg), void *arg) {
        uint64_t next_check = now_ns(CLOCK_MONOTONIC) + CONN_LIVENESS_SLICE_NS;
        int r, peer_error = 0;

        for (;;) {
                if (finished(w))
                        break;
                if (pthread_mutex_trylock(&c->reader_lock) == 0) {
                        /* We are the reader until our reply comes or our time is up. */
                        for (;;) {
                                r = drain_locked(c);
                                if (finished(w) || r < 0)
                                        break;
                                uint64_t now = now_ns(CLOCK_MONOTONIC);
                                if (now >= deadline_ns)
                                        break;
                                if (now >= next_check) {
                                        next_check = now + CONN_LIVENESS_SLICE_NS;
                                        if (alive && (peer_error = alive(arg)) < 0)
                                                break;
                                        if (atomic_load(&c->state) != CONN_CONNECTED)
                                                break;
                                }
                                uint64_t slice = MIN(deadline_ns, next_check);
                                r = ringbuf_wait(&c->reply, (int64_t) (slice - now));
                                if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN)
                                        break;
                        }
                        pthread_mutex_unlock(&c->reader_lock);
                        wake_next_reader(c, w);
                        if (finished(w))
                                break;
                        if (peer_error < 0)
                                return peer_error;
                } else {
                        /* Someone else reads: sleep on our own word until it delivers, or until
                         * the reader leaves and hands the role on (WAITER_WAKE). */
                        uint64_t slice = MIN(deadline_ns, now_ns(CLOCK_MONOTONIC) + CONN_LIVENESS_SLICE_NS);
                        atomic_store(&w->asleep, true);
                        futex_wait(&w->state, WAITER_PENDING, slice);
                        atomic_store(&w->asleep, false);
                        uint32_t expected = WAITER_WAKE;
                        atomic_compare_exchange_strong(&w->state, &expected, WAITER_PENDING);
                }
                if (finished(w))
                        break;
                uint64_t now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline_ns)
                        return -ETIMEDOUT;
                if (atomic_load(&c->state) != CONN_CONNECTED)
                        return -ENOTCONN;
                if (now >= next_check) {
                        next_check = now + CONN_LIVENESS_SLICE_NS;
                        if (alive) {
                                r = alive(arg);
                                if (r < 0)
                                        return r;
                        }
                }
        }
        if (atomic_load(&w->state) == WAITER_FAILED)
                return w->error;
        return 0;
}

void waiter_fail_all(ring_conn *c, int error) {
        bool async = false;
        uint64_t one = 1;

        pthread_mutex_lock(&c->waiters_lock);
        for (Waiter *w = c->waiters; w; w = w->next) {
                if (finished(w))
                        continue;
                w->error = error;
                atomic_store_explicit(&w->state, WAITER_FAILED, memory_order_seq_cst);
                if (w->done)
                        async = true;
                else
                        futex_wake(&w->state, 1);
        }
        pthread_mutex_unlock(&c->waiters_lock);
        /* Failed async calls complete in ring_conn_dispatch(): make the fd readable. */
        if (async)
                (void) !write(c->event_fd, &one, sizeof(one));
}

/* rpc.c: decodes an async call's outcome, runs its completion and frees it. */
void rpc_complete_async(ring_conn *c, Waiter *w, int error);

int waiter_run_async(ring_conn *c) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        int n = 0;

        for (;;) {
                Waiter *ready = NULL;
                int error = 0;

                pthread_mutex_lock(&c->waiters_lock);
                for (Waiter *w = c->waiters; w; w = w->next) {
                        if (!w->done)
                                continue;
                        if (!finished(w) && w->alive && w->alive(w->alive_arg) < 0)
                                error = -ECONNRESET;
                        else if (!finished(w) && now >= w->deadline_ns)
                                error = -ETIMEDOUT;
                        if (finished(w) || error) {
                                ready = w;
                                unlink_locked(c, w);
                                break;
                        }
                }
                pthread_mutex_unlock(&c->waiters_lock);
                if (!ready)
                        return n;
                rpc_complete_async(c, ready, error);
                n++;
        }
}

uint64_t waiter_next_async_deadline(ring_conn *c, bool *ret_any) {
        uint64_t next = UINT64_MAX;
        bool any = false;

        pthread_mutex_lock(&c->waiters_lock);
        for (Waiter *w = c->waiters; w; w = w->next)
                if (w->done) {
                        any = true;
                        next = MIN(next, w->deadline_ns);
                }
        pthread_mutex_unlock(&c->waiters_lock);
        *ret_any = any;
        return next;
}

void waiter_cancel_rpc(ring_conn *c, struct ring_rpc *rpc) {
        for (;;) {
                Waiter *found = NULL;

                pthread_mutex_lock(&c->waiters_lock);
                for (Waiter *w = c->waiters; w; w = w->next)
                        if (w->done && w->rpc == rpc) {
                                found = w;
                                unlink_locked(c, w);
                                break;
                        }
                pthread_mutex_unlock(&c->waiters_lock);
                if (!found)
                        return;
                rpc_complete_async(c, found, -ECANCELED);
        }
}
