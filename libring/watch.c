/* SPDX-License-Identifier: MIT */
/*
 * Event-loop integration (ring_conn_fd/dispatch/run/stop). Ring peers wake each other through
 * futexes in shared memory, which no poll(2) can see; a watcher thread bridges them: it
 * sleeps on every ring the connection consumes at once (FUTEX_WAITV) and makes an eventfd
 * readable when one gets data. ring_conn_fd() is an epoll set of that eventfd and a timerfd
 * for asynchronous call deadlines. After each dispatch the watcher is re-armed; while the
 * application dispatches, it stays out of the way.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "conn-internal.h"
#include "futex.h"
#include "macro.h"
#include "time-util.h"

/* While async calls are pending, dispatch looks at them this often (deadlines, dead services). */
#define ASYNC_CHECK_NS (50 * NSEC_PER_MSEC)
/* ring_conn_run() spins this long for more work before it sleeps in poll(). */
#define RUN_SPIN_NS (50 * NSEC_PER_USEC)
#define WATCH_MAX_RINGS 127

/* Collects the rings to watch: our reply ring, each function's request arena, each
 * subscription delivered by callback. */
static size_t collect_rings(ring_conn *c, RingBuf *rings) {
        size_t n = 0;

        rings[n++] = c->reply;
        /* list_lock, not objects_lock: its holders never wait for the watcher. */
        pthread_mutex_lock(&c->list_lock);
        for (struct ring_fn *f = c->fns; f && n < WATCH_MAX_RINGS; f = fn_next(f)) {
                RingBuf *r = fn_watch_ring(f);
                if (r)
                        rings[n++] = *r;
        }
        for (struct ring_sub *s = c->subs; s && n < WATCH_MAX_RINGS; s = sub_next(s)) {
                RingBuf *r = sub_watch_ring(s);
                if (r)
                        rings[n++] = *r;
        }
        pthread_mutex_unlock(&c->list_lock);
        return n;
}

static void *watcher(void *arg) {
        ring_conn *c = arg;
        RingBuf rings[WATCH_MAX_RINGS];
        _Atomic uint32_t *words[WATCH_MAX_RINGS + 1];
        uint32_t expected[WATCH_MAX_RINGS + 1];
        uint64_t one = 1;

        pthread_mutex_lock(&c->watch_lock);
        for (;;) {
                bool data = false;
                size_t n;

                while (!c->watch_armed && !c->watch_stop)
                        pthread_cond_wait(&c->watch_cond, &c->watch_lock);
                if (c->watch_stop)
                        break;
                c->watch_dirty = false;
                /* "Sleeping" from before we collect: whoever unlinks a ring from now on waits
                 * in watch_rings_changed() until we let go of it. The poke word is read before
                 * collecting, so a change made after that ends the wait at once. */
                c->watch_sleeping = true;
                expected[WATCH_MAX_RINGS] = atomic_load(&c->watch_poke);
                pthread_mutex_unlock(&c->watch_lock);
                n = collect_rings(c, rings);
                expected[n] = expected[WATCH_MAX_RINGS];
                words[n] = &c->watch_poke;

                for (size_t i = 0; i < n; i++) {
                        words[i] = ringbuf_data_word(&rings[i]);
                        if (!ringbuf_prepare_sleep(&rings[i], &expected[i]))
                                data = true;
                }
                if (!data && futex_waitv(words, expected, (unsigned) n + 1, UINT64_MAX) == -ENOSYS) {
                        /* Kernels before 5.16: look again every few milliseconds. */
                        struct timespec ts = timespec_from_ns(5 * NSEC_PER_MSEC);
                        nanosleep(&ts, NULL);
                }
                for (size_t i = 0; i < n; i++) {
                        ringbuf_finish_sleep(&rings[i]);
                        if (ringbuf_has_data_shared(&rings[i]))
                                data = true;
                }

                pthread_mutex_lock(&c->watch_lock);
                c->watch_sleeping = false;
                c->watch_cycles++;
                pthread_cond_broadcast(&c->watch_cond);
                if (data) {
                        c->watch_armed = false;
                        (void) !write(c->event_fd, &one, sizeof(one));
                }
        }
        pthread_mutex_unlock(&c->watch_lock);
        return NULL;
}

static void poke(ring_conn *c) {
        atomic_fetch_add(&c->watch_poke, 1);
        futex_wake(&c->watch_poke, INT_MAX);
}

static int watch_ensure(ring_conn *c) {
        struct epoll_event ev = { .events = EPOLLIN };
        int r;

        if (c->watcher_started)
                return 0;
        c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (c->epoll_fd < 0 || c->timer_fd < 0)
                return negative_errno();
        ev.data.fd = c->event_fd;
        if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->event_fd, &ev) < 0)
                return negative_errno();
        ev.data.fd = c->timer_fd;
        if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->timer_fd, &ev) < 0)
                return negative_errno();
        r = -pthread_create(&c->watcher, NULL, watcher, c);
        if (r < 0)
                return r;
        c->watcher_started = true;
        return 0;
}

int watch_start(ring_conn *c) {
        return watch_ensure(c);
}

void watch_stop(ring_conn *c) {
        if (c->watcher_started) {
                pthread_mutex_lock(&c->watch_lock);
                c->watch_stop = true;
                pthread_cond_broadcast(&c->watch_cond);
                pthread_mutex_unlock(&c->watch_lock);
                poke(c);
                pthread_join(c->watcher, NULL);
                c->watcher_started = false;
        }
        if (c->epoll_fd >= 0)
                close(c->epoll_fd);
        if (c->timer_fd >= 0)
                close(c->timer_fd);
        c->epoll_fd = c->timer_fd = -1;
}

void watch_arm(ring_conn *c) {
        if (!c->watcher_started)
                return;
        pthread_mutex_lock(&c->watch_lock);
        c->watch_armed = true;
        pthread_cond_broadcast(&c->watch_cond);
        pthread_mutex_unlock(&c->watch_lock);
}

void watch_refresh(ring_conn *c) {
        if (!c->watcher_started)
                return;
        pthread_mutex_lock(&c->watch_lock);
        c->watch_dirty = true;
        poke(c);
        pthread_mutex_unlock(&c->watch_lock);
}

void watch_rings_changed(ring_conn *c) {
        if (!c->watcher_started)
                return;
        /* Returns only once the watcher holds no ring of the old set: the caller, who already
         * unlinked its object, may unmap. A sleep that started after the unlink collected the
         * new set, so waiting for the current sleep to end is enough. */
        pthread_mutex_lock(&c->watch_lock);
        c->watch_dirty = true;
        uint64_t cycle = c->watch_cycles;
        poke(c);
        while (c->watch_sleeping && c->watch_cycles == cycle)
                pthread_cond_wait(&c->watch_cond, &c->watch_lock);
        pthread_mutex_unlock(&c->watch_lock);
}

void watch_arm_timer(ring_conn *c) {
        struct itimerspec its = { 0 };
        uint64_t next, now;
        bool any;

        if (!c->watcher_started)
                return;
        next = waiter_next_async_deadline(c, &any);
        if (any) {
                /* Also wake up regularly to see whether a called service died. */
                now = now_ns(CLOCK_MONOTONIC);
                next = MIN(next, now + ASYNC_CHECK_NS);
                its.it_value = timespec_from_ns(MAX(next, now + 1));
        }
        (void) timerfd_settime(c->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

RING_EXPORT int ring_conn_dispatch(ring_conn *c) {
        uint64_t v;
        int n = 0, r;

        if (!c)
                return -EINVAL;
        r = watch_ensure(c);
        if (r < 0)
                return r;
        (void) !read(c->event_fd, &v, sizeof(v));
        (void) !read(c->timer_fd, &v, sizeof(v));

        r = waiter_drain(c);
        if (r > 0)
                n += r;
        n += waiter_run_async(c);
        pthread_mutex_lock(&c->objects_lock);
        for (struct ring_fn *f = c->fns; f; f = fn_next(f))
                n += MAX(fn_dispatch(f, 64), 0);
        for (struct ring_sub *s = c->subs; s; s = sub_next(s))
                n += sub_dispatch(s);
        pthread_mutex_unlock(&c->objects_lock);
        watch_arm_timer(c);
        watch_arm(c);
        return n;
}

RING_EXPORT int ring_conn_fd(ring_conn *c) {
        int r;

        if (!c)
                return -EINVAL;
        r = watch_ensure(c);
        if (r < 0)
                return r;
        watch_arm(c);
        return c->epoll_fd;
}

/* True if a ring we consume has work, without consuming anything. */
static bool work_pending(ring_conn *c) {
        RingBuf rings[WATCH_MAX_RINGS];
        size_t n = collect_rings(c, rings);

        for (size_t i = 0; i < n; i++)
                if (ringbuf_has_data_shared(&rings[i]))
                        return true;
        return false;
}

RING_EXPORT int ring_conn_run(ring_conn *c) {
        struct pollfd p;
        int r;

        if (!c)
                return -EINVAL;
        r = watch_ensure(c);
        if (r < 0)
                return r;
        while (!atomic_exchange(&c->stop, false)) {
                r = ring_conn_dispatch(c);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                /* Busy peers answer within microseconds: look again briefly before sleeping. */
                uint64_t until = now_ns(CLOCK_MONOTONIC) + RUN_SPIN_NS;
                bool more = false;
                while (!more && now_ns(CLOCK_MONOTONIC) < until && !atomic_load(&c->stop))
                        more = work_pending(c);
                if (more || atomic_load(&c->stop))
                        continue;
                p = (struct pollfd) { .fd = c->epoll_fd, .events = POLLIN };
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        return negative_errno();
        }
        return 0;
}

RING_EXPORT void ring_conn_stop(ring_conn *c) {
        uint64_t one = 1;

        if (!c)
                return;
        atomic_store(&c->stop, true);
        /* write(2) is async-signal-safe; it wakes a run() sleeping in poll(). */
        (void) !write(c->event_fd, &one, sizeof(one));
}
