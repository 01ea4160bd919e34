/* SPDX-License-Identifier: MIT */
/*
 * Futex-to-eventfd bridge (bridge.h). The watcher thread and the loop hand the ring back and
 * forth: armed (watcher sleeps on data_seq) -> fired (eventfd written, loop drains) -> armed.
 * The watcher never spins: the broker answers within a wake-up (tens of microseconds), well
 * inside its one-millisecond budget, and an idle broker stays asleep.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "log.h"
#include "macro.h"
#include "sigbus.h"

struct Bridge {
        RingBuf ring;                   /* watcher's copy; .tail set at each arm */
        int efd;
        sd_event_source *source;
        void (*ready)(void *userdata);
        void *userdata;
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool armed, stop;               /* under lock */
        uint64_t armed_tail;            /* under lock */
};

static int sleep_guarded(void *arg) {
        return ringbuf_sleep(arg, UINT64_MAX);
}

static void *watcher(void *arg) {
        Bridge *b = arg;
        uint64_t one = 1;
        RingBuf rb;

        for (;;) {
                pthread_mutex_lock(&b->lock);
                while (!b->armed && !b->stop)
                        pthread_cond_wait(&b->cond, &b->lock);
                if (b->stop) {
                        pthread_mutex_unlock(&b->lock);
                        return NULL;
                }
                b->armed = false;
                rb = b->ring;
                rb.tail = b->armed_tail;
                pthread_mutex_unlock(&b->lock);

                /* -EAGAIN: a poke (stop) or a spurious wake-up; look at stop again and retry.
                 * -EFAULT: a client truncated the control segment; the loop finds out when it
                 * reads the ring, so wake it. */
                for (;;) {
                        int r = sigbus_run(sleep_guarded, &rb);
                        if (r == -EFAULT)
                                break;
                        if (r == 0)
                                break;
                        pthread_mutex_lock(&b->lock);
                        bool stop = b->stop;
                        pthread_mutex_unlock(&b->lock);
                        if (stop)
                                return NULL;
                }
                if (write(b->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                        return NULL;
        }
}

static int on_eventfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Bridge *b = userdata;
        uint64_t v;

        /* Nonblocking; an empty read (nothing pending) is harmless: drain anyway. */
        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug("Reading the submission eventfd failed: %m");
        b->ready(b->userdata);
        return 0;
}

int bridge_new(Bridge **ret, sd_event *event, const RingBuf *ring, void (*ready)(void *userdata),
               void *userdata) {
        _cleanup_(bridge_freep) Bridge *b = NULL;
        int r;

        if (!ret || !event || !ring || !ready)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->ring = *ring;
        b->ready = ready;
        b->userdata = userdata;
        b->efd = -1;
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->cond, NULL);

        b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (b->efd < 0)
                return negative_errno();
        r = sd_event_add_io(event, &b->source, b->efd, EPOLLIN, on_eventfd, b);
        if (r < 0)
                return r;
        r = -pthread_create(&b->thread, NULL, watcher, b);
        if (r < 0)
                return r;
        b->thread_started = true;
        *ret = TAKE_PTR(b);
        return 0;
}

void bridge_arm(Bridge *b, uint64_t tail) {
        pthread_mutex_lock(&b->lock);
        b->armed = true;
        b->armed_tail = tail;
        pthread_cond_signal(&b->cond);
        pthread_mutex_unlock(&b->lock);
}

Bridge *bridge_free(Bridge *b) {
        if (!b)
                return NULL;
        if (b->thread_started) {
                pthread_mutex_lock(&b->lock);
                b->stop = true;
                pthread_cond_signal(&b->cond);
                pthread_mutex_unlock(&b->lock);
                /* Wakes the watcher out of FUTEX_WAIT; it sees stop and exits. A watcher that
                 * read data_seq just after a poke would sleep through it, so poke until the
                 * join succeeds. */
                for (;;) {
                        struct timespec ts;

                        ringbuf_poke_consumer(&b->ring);
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 10 * 1000 * 1000;
                        if (ts.tv_nsec >= 1000000000) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000;
                        }
                        if (pthread_timedjoin_np(b->thread, NULL, &ts) == 0)
                                break;
                }
        }
        sd_event_source_disable_unref(b->source);
        if (b->efd >= 0)
                close(b->efd);
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        free(b);
        return NULL;
}
