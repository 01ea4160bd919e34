/* SPDX-License-Identifier: MIT */
/*
 * Replies on the connection's reply ring (leader/follower). The ring has one consumer, but any
 * number of threads may wait for replies. Whoever waits and finds no reader becomes the
 * reader: it consumes the ring, hands each reply to the waiter with its correlation id (a copy
 * plus a futex wake-up), and keeps going until its own reply came. The reader pops each record
 * into its own reply buffer first, so its own reply needs no hand-off, no lock and no second
 * copy; only replies for others go through the waiter list.
 *
 * A caller that finds no reader at all takes the reader role before it sends its request
 * (waiter_call()): from then until its reply came nobody else can consume that reply, so it
 * need not be on the waiter list either. The lone caller therefore makes its call without
 * taking waiters_lock at all.
 *
 * Handing the reader role on. A waiter that cannot become the reader sleeps on its own state
 * word until the reader delivers its reply or wakes it to take over (WAITER_WAKE). The reader
 * that leaves wakes one only when another synchronous waiter may exist: sync_waiters counts
 * them (each counts itself before it first tries the reader lock and uncounts itself after its
 * last try). The count cannot lose a sleeper, by the two seq_cst fences F1 (become_reader(), a
 * would-be follower between its failed try and its last try before sleeping) and F2
 * (leave_reader(), between unlocking and reading the count): in their single total order,
 * either F2 comes first, and then the follower's last try after F1 sees the lock released (it
 * becomes the reader, or whoever took the lock in between is the reader and leaves the same
 * way), or F1 comes first, and then the leaving reader's load after F2 sees the follower's
 * count, sequenced before F1, and looks for it on the list under waiters_lock. If it does not
 * find it there yet, the follower links itself after that look, hence after the unlock, and
 * its first try sees the lock released (or held by a later reader). Followers also wake every
 * liveness slice, which bounds the damage of any bug here, but is not what correctness rests
 * on.
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

static _Atomic uint32_t *waiter_count(ring_conn *c, Waiter *w) {
        return w->done ? &c->async_waiters : &c->sync_waiters;
}

void waiter_register(ring_conn *c, Waiter *w) {
        atomic_store_explicit(&w->state, WAITER_PENDING, memory_order_relaxed);
        /* Counted before it can try to become the reader (see the file comment); seq_cst, and
         * sequenced before F1 of any try that could make it sleep. */
        atomic_fetch_add_explicit(waiter_count(c, w), 1, memory_order_seq_cst);
        pthread_mutex_lock(&c->waiters_lock);
        w->prev = NULL;
        w->next = c->waiters;
        if (c->waiters)
                c->waiters->prev = w;
        c->waiters = w;
        w->linked = true;
        pthread_mutex_unlock(&c->waiters_lock);
}

static void unlink_locked(ring_conn *c, Waiter *w) {
        if (!w->linked)
                return;
        if (w->prev)
                w->prev->next = w->next;
        else if (c->waiters == w)
                c->waiters = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
        w->linked = false;
        /* Uncounted only once it can no longer sleep as a follower: a count too high costs a
         * look at the list, one too low could lose a hand-off. */
        atomic_fetch_sub_explicit(waiter_count(c, w), 1, memory_order_seq_cst);
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

static bool finished(Waiter *w) {
        /* Acquire: pairs with the stores of WAITER_DONE / WAITER_FAILED, made after the record
         * (or the error) they publish. */
        uint32_t s = atomic_load_explicit(&w->state, memory_order_acquire);
        return s == WAITER_DONE || s == WAITER_FAILED;
}

/* Hands a reply to the waiter on the list with its correlation id. */
static void deliver(ring_conn *c, const uint8_t *rec, size_t len, int64_t corr) {
        Waiter *w;

        pthread_mutex_lock(&c->waiters_lock);
        for (w = c->waiters; w; w = w->next)
                if (w->correlation_id == corr && !finished(w))
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
                         * either we see it asleep, or its FUTEX_WAIT sees the new state. */
                        futex_wake(&w->state, 1);
        }
        /* A reply nobody waits for (its caller timed out) is dropped. */
        pthread_mutex_unlock(&c->waiters_lock);
}

/* The reader's own reply, popped into buf: no lock, since only the reader (us) and
 * waiter_fail_all() write self's state, and no copy when buf is self's own buffer. */
static void take_own(ring_conn *c, Waiter *self, uint8_t *buf, size_t len) {
        if (buf != self->buf) {
                /* Larger than our buffer: it was popped into the reader's. */
                self->record = malloc(len);
                if (!self->record) {
                        /* Under the lock: waiter_fail_all() may be writing error too. */
                        pthread_mutex_lock(&c->waiters_lock);
                        if (!finished(self)) {
                                self->error = -ENOMEM;
                                atomic_store_explicit(&self->state, WAITER_FAILED, memory_order_release);
                        }
                        pthread_mutex_unlock(&c->waiters_lock);
                        return;
                }
                memcpy(self->record, buf, len);
                self->owns_record = true;
        } else {
                self->record = buf;
                self->owns_record = false;
        }
        self->len = len;
        /* A waiter_fail_all() racing with us may still turn this into WAITER_FAILED with its
         * error; the caller then frees the record as usual (owns_record). */
        atomic_store_explicit(&self->state, WAITER_DONE, memory_order_release);
}

/* How much of sync_waiters is self itself: nothing for dispatch and for a caller off the list. */
static uint32_t own_count(const Waiter *self) {
        return self && self->linked ? 1 : 0;
}

/* True if someone besides self may wait for a record in the ring. */
static bool others_waiting(ring_conn *c, Waiter *self) {
        return atomic_load_explicit(&c->sync_waiters, memory_order_relaxed) > own_count(self) ||
               atomic_load_explicit(&c->async_waiters, memory_order_relaxed) > 0;
}

/* Consumes what the reply ring holds; the caller is the reader. self (NULL for dispatch) is the
 * reader's own waiter: while its reply is still to come, records are popped straight into its
 * buffer, and once the reply came the reader stops, unless others may wait for what follows.
 * Returns the records handled or a negative errno. */
static int drain_locked(ring_conn *c, Waiter *self) {
        int n, handled = 0;

        for (;;) {
                bool direct = self && self->buf_size > 0 && !finished(self);
                uint8_t *buf = direct ? self->buf : c->reader_buf;
                int64_t corr;

                n = ringbuf_pop(&c->reply, buf, direct ? self->buf_size : CONN_REPLY_CAPACITY);
                if (n == -EMSGSIZE && direct) {
                        /* Larger than our buffer (the record stays): the reader's holds any. */
                        buf = c->reader_buf;
                        n = ringbuf_pop(&c->reply, buf, CONN_REPLY_CAPACITY);
                }
                if (n == -EAGAIN)
                        return handled;
                if (n == -EBADMSG) {
                        /* Someone wrote garbage into our ring: resynchronise, lose what was there. */
                        ringbuf_discard_all(&c->reply);
                        continue;
                }
                if (n < 0)
                        return n;
                handled++;
                if (!record_correlation(buf, (size_t) n, &corr))
                        continue;       /* not a frame we can attribute: drop it */
                if (self && corr == self->correlation_id && !finished(self)) {
                        take_own(c, self, buf, (size_t) n);
                        if (!others_waiting(c, self))
                                return handled;
                } else
                        deliver(c, buf, (size_t) n, corr);
        }
}

/* Takes the reader role if nobody has it. The second try after F1 is what a follower does
 * last before it sleeps (see the file comment). */
static bool become_reader(ring_conn *c) {
        if (pthread_mutex_trylock(&c->reader_lock) == 0)
                return true;
        atomic_thread_fence(memory_order_seq_cst); /* F1 */
        return pthread_mutex_trylock(&c->reader_lock) == 0;
}

/* Wakes one other synchronous waiter so it takes the reader role over. */
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

/* Gives the reader role up, and hands it on if another synchronous waiter may need it. */
static void leave_reader(ring_conn *c, Waiter *self) {
        pthread_mutex_unlock(&c->reader_lock);
        atomic_thread_fence(memory_order_seq_cst); /* F2 */
        if (atomic_load_explicit(&c->sync_waiters, memory_order_relaxed) > own_count(self))
                wake_next_reader(c, self);
}

int waiter_drain(ring_conn *c) {
        int r;

        if (pthread_mutex_trylock(&c->reader_lock) != 0)
                return 0;       /* someone else is reading and will deliver */
        r = drain_locked(c, NULL);
        /* A synchronous caller may have gone to sleep while we held the ring. */
        leave_reader(c, NULL);
        return r;
}

/* The reader's loop: consumes the reply ring until self's reply came (0), the deadline passed
 * (-ETIMEDOUT), alive() says the peer is gone (its error), the connection went down
 * (-ENOTCONN), or the ring fails. now is the caller's last clock reading; *next_check the time
 * of the next liveness check. */
static int lead(ring_conn *c, Waiter *self, uint64_t deadline_ns, uint64_t now, uint64_t *next_check,
                int (*alive)(void *arg), void *arg) {
        int r;

        for (;;) {
                /* The reader before us may have delivered our reply on its way out. */
                if (finished(self))
                        return 0;
                /* Returns at once if a record is there; a timeout of 0 only looks. */
                uint64_t until = MIN(deadline_ns, *next_check);
                r = ringbuf_wait(&c->reply, until > now ? (int64_t) (until - now) : 0);
                if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN)
                        return r;
                r = drain_locked(c, self);
                if (r < 0)
                        return r;
                if (finished(self))
                        return 0;
                now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline_ns)
                        return -ETIMEDOUT;
                if (now >= *next_check) {
                        *next_check = now + CONN_LIVENESS_SLICE_NS;
                        if (alive && (r = alive(arg)) < 0)
                                return r;
                        if (atomic_load(&c->state) != CONN_CONNECTED)
                                return -ENOTCONN;
                }
        }
}

static int outcome(Waiter *w) {
        return atomic_load_explicit(&w->state, memory_order_acquire) == WAITER_FAILED ? w->error : 0;
}

int waiter_wait(ring_conn *c, Waiter *w, uint64_t deadline_ns, int (*alive)(void *arg), void *arg) {
        uint64_t now = now_ns(CLOCK_MONOTONIC), next_check = now + CONN_LIVENESS_SLICE_NS;
        int r;

        while (!finished(w)) {
                if (become_reader(c)) {
                        /* We are the reader until our reply comes or we must give up. */
                        r = lead(c, w, deadline_ns, now, &next_check, alive, arg);
                        leave_reader(c, w);
                        if (finished(w))
                                break;
                        return r;
                }
                /* Someone else reads: sleep on our own word until it delivers, or until the
                 * reader leaves and hands the role on (WAITER_WAKE). */
                uint64_t slice = MIN(deadline_ns, now + CONN_LIVENESS_SLICE_NS);
                atomic_store(&w->asleep, true);
                futex_wait(&w->state, WAITER_PENDING, slice);
                atomic_store(&w->asleep, false);
                uint32_t expected = WAITER_WAKE;
                atomic_compare_exchange_strong(&w->state, &expected, WAITER_PENDING);
                if (finished(w))
                        break;
                now = now_ns(CLOCK_MONOTONIC);
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
        return outcome(w);
}

int waiter_call(ring_conn *c, Waiter *w, int (*send)(void *arg, int64_t timeout_ns), void *send_arg,
                int64_t timeout_ns, uint64_t now, uint64_t deadline_ns, int (*alive)(void *arg),
                void *alive_arg) {
        int r;

        if (pthread_mutex_trylock(&c->reader_lock) == 0) {
                /* The reader role before the request goes out: nobody else can consume our
                 * reply, so nobody needs to find w, and it stays off the list. The push must not
                 * wait while we hold the role (others' replies would wait with it): a full
                 * arena sends us the registered way. */
                r = send(send_arg, 0);
                if (r >= 0) {
                        uint64_t next_check = now + CONN_LIVENESS_SLICE_NS;

                        r = lead(c, w, deadline_ns, now, &next_check, alive, alive_arg);
                        leave_reader(c, w);
                        /* A reply that comes after we gave up finds no waiter and is dropped. */
                        return finished(w) ? outcome(w) : r;
                }
                leave_reader(c, w);
                if (r != -EAGAIN)
                        return r;
        }
        waiter_register(c, w);
        r = send(send_arg, timeout_ns);
        if (r >= 0)
                r = waiter_wait(c, w, deadline_ns, alive, alive_arg);
        waiter_unregister(c, w);
        return r;
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
