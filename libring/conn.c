/* SPDX-License-Identifier: MIT */
/*
 * Connections (ring_conn_*): socket-free bootstrap through the bus's control segment,
 * registration, control calls, and the supervisor thread that notices a broker restart and
 * re-registers, re-publishes and re-exposes (spec/bootstrap.md, "Broker restart").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn-internal.h"
#include "futex.h"
#include "macro.h"
#include "time-util.h"
#include "unaligned.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define CONTROL_MAGIC UINT64_C(0x00474E4952504D49) /* "IMPRING\0" as a little-endian u64 */
#define CONTROL_VERSION 1
#define CONTROL_RING_OFFSET 64
#define APP_NAME_MAX 128
/* How often the supervisor looks for a restarted broker while disconnected. */
#define RECONNECT_INTERVAL_MS 100

int64_t conn_next_correlation(ring_conn *c) {
        return atomic_fetch_add_explicit(&c->next_correlation, 1, memory_order_relaxed);
}

/* Opens the bus's control segment: -ENOTCONN unless a broker has made it and is serving. */
static int attach_control(ring_conn *c, Segment *ret_seg, RingBuf *ret_ring, uint64_t *ret_epoch,
                          pid_t *ret_broker) {
        char name[NAMES_SEGMENT_MAX];
        Segment seg = SEGMENT_NULL;
        uint64_t magic;
        int r;

        r = names_control(&c->bus, name, sizeof(name));
        if (r < 0)
                return r;
        r = segment_open(&seg, name, CONTROL_RING_OFFSET + ringbuf_size(RINGBUF_MIN_CAPACITY),
                         CONTROL_RING_OFFSET + ringbuf_size(RINGBUF_MAX_CAPACITY));
        if (r == -EACCES) {
                error_set_message("no permission to use this bus: its segments belong to a group this user "
                                  "is not in", 82);
                return -EACCES;
        }
        if (r == -ENOENT || r == -EBADMSG)
                return -ENOTCONN;
        if (r < 0)
                return r;
        /* Acquire: pairs with the broker's release store of the magic, made last. */
        magic = le64toh(atomic_load_explicit((_Atomic uint64_t *) seg.base, memory_order_acquire));
        if (magic != CONTROL_MAGIC || unaligned_read_le32(seg.base + 8) != CONTROL_VERSION) {
                segment_done(&seg);
                return -ENOTCONN;
        }
        r = ringbuf_attach_producer(ret_ring, seg.base + CONTROL_RING_OFFSET, seg.size - CONTROL_RING_OFFSET);
        if (r < 0) {
                segment_done(&seg);
                return -ENOTCONN;
        }
        *ret_broker = (pid_t) unaligned_read_le32(seg.base + 12);
        *ret_epoch = unaligned_read_le64(seg.base + 16);
        *ret_seg = seg;
        return 0;
}

/* Our reply segment gets the bus's own permissions (those of the control segment): the broker
 * and services of the bus must write to it, and nobody else needs to. */
static int create_reply_segment(ring_conn *c) {
        char name[NAMES_SEGMENT_MAX];
        struct stat st;
        mode_t mode;
        int r;

        if (fstat(c->control.fd, &st) < 0)
                return negative_errno();
        /* Services of other users answer calls by writing into this ring: it gets exactly the
         * bus's permissions, whoever we are. */
        mode = st.st_mode & 0666;
        for (unsigned attempt = 0; attempt < 8; attempt++) {
                if (getrandom(&c->nonce, sizeof(c->nonce), 0) != sizeof(c->nonce))
                        return -EIO;
                r = names_client(&c->bus, c->nonce, name, sizeof(name));
                if (r < 0)
                        return r;
                r = segment_create(&c->reply_seg, name, ringbuf_size(CONN_REPLY_CAPACITY), mode);
                if (r != -EEXIST)
                        break;
        }
        if (r < 0)
                return r;
        /* The bus's group, so that the broker and services of other users in it can write. */
        if (st.st_gid != getegid() && fchown(c->reply_seg.fd, (uid_t) -1, st.st_gid) < 0) {
                r = negative_errno();
                error_set_message("cannot give the reply segment to the bus's group", 48);
                (void) segment_unlink(c->reply_seg.name);
                return r;
        }
        /* Held while we live (and released by the kernel when we die): a broker restarting
         * after a crash keeps segments whose owner still holds it (spec, "Owner lock"). */
        if (flock(c->reply_seg.fd, LOCK_SH | LOCK_NB) < 0)
                return negative_errno();
        r = ringbuf_format(c->reply_seg.base, c->reply_seg.size, CONN_REPLY_CAPACITY);
        if (r >= 0)
                r = ringbuf_attach_consumer(&c->reply, c->reply_seg.base, c->reply_seg.size);
        if (r >= 0)
                ringbuf_announce_owner_lock(c->reply_seg.base);
        return r;
}

int conn_submit(ring_conn *c, const uint8_t *frame, size_t len, int64_t timeout_ns) {
        RingBuf ring;
        int r;

        /* A copy: the supervisor may swap the submission ring; the old one stays mapped. */
        pthread_mutex_lock(&c->lock);
        ring = c->submit;
        pthread_mutex_unlock(&c->lock);
        r = ringbuf_push(&ring, frame, len, timeout_ns);
        if (r == -EBADMSG)
                return -ENOTCONN;
        return r;
}

static int reply_status(const ControlMsg *m, int32_t *ret_status, Text *ret_message) {
        switch (m->type) {
        case CONTROL_REGISTER_REPLY:
                *ret_status = m->register_reply.status, *ret_message = m->register_reply.message;
                return 0;
        case CONTROL_PUBLISH_REPLY:
                *ret_status = m->publish_reply.status, *ret_message = m->publish_reply.message;
                return 0;
        case CONTROL_SUBSCRIBE_REPLY:
                *ret_status = m->subscribe_reply.status, *ret_message = m->subscribe_reply.message;
                return 0;
        case CONTROL_EXPOSE_REPLY:
        case CONTROL_LOOKUP_REPLY:
                *ret_status = m->expose_reply.status, *ret_message = m->expose_reply.message;
                return 0;
        default:
                *ret_status = CONTROL_STATUS_OK, *ret_message = TEXT_NULL;
                return 0;
        }
}

int conn_control_call(ring_conn *c, ControlMsg *req, ControlType reply_type, int timeout_ms,
                      uint8_t **ret_record, ControlMsg *ret_reply) {
        _cleanup_free_ uint8_t *frame = NULL;
        Waiter w = { 0 };
        uint64_t deadline = deadline_after(timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        ControlMsg reply;
        int32_t status;
        Text message;
        size_t size;
        int n, r;

        /* Every request record starts with its correlation id, so any union member names it. */
        w.correlation_id = conn_next_correlation(c);
        req->reg.correlation_id = w.correlation_id;
        size = control_encoded_size(req);
        frame = malloc(size ?: 1);
        if (!frame)
                return -ENOMEM;
        n = control_encode(req, frame, size);
        if (n < 0)
                return n;

        waiter_register(c, &w);
        r = conn_submit(c, frame, (size_t) n, timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC);
        if (r >= 0)
                r = waiter_wait(c, &w, deadline, NULL, NULL);
        waiter_unregister(c, &w);
        if (r < 0) {
                if (w.owns_record)
                        free(w.record);
                return r == -EAGAIN ? -ETIMEDOUT : r;
        }

        r = control_decode(w.record, w.len, &reply);
        if (r < 0 || reply.type != reply_type) {
                if (r >= 0)
                        control_msg_done(&reply);
                free(w.record);
                return -EBADMSG;
        }
        reply_status(&reply, &status, &message);
        r = error_from_status(status, message);
        if (r < 0) {
                control_msg_done(&reply);
                free(w.record);
                return r;
        }
        *ret_record = w.record;
        *ret_reply = reply;
        return 0;
}

static int do_register(ring_conn *c, int timeout_ms) {
        _cleanup_free_ uint8_t *record = NULL;
        ControlMsg req = { .type = CONTROL_REGISTER }, reply;
        int r;

        req.reg = (ControlRegister) {
                .app_name = text_from_cstr(c->app_name),
                .nonce = (int64_t) c->nonce,
                .reply_segment = text_from_cstr(c->reply_seg.name),
                /* Our pid means something to the broker only in its pid namespace (we can see
                 * its pid); otherwise we register as an older v1 client does: pid 0 and
                 * heartbeats, which the supervisor sends. */
                .heartbeat_ms = c->broker_visible ? 0 : CONN_HEARTBEAT_MS,
                .pid = c->broker_visible ? c->pid : 0,
        };
        r = conn_control_call(c, &req, CONTROL_REGISTER_REPLY, timeout_ms, &record, &reply);
        if (r < 0)
                return r;
        atomic_store(&c->client_id, (uint64_t) reply.register_reply.client_id);
        control_msg_done(&reply);
        return 0;
}

/* Opens a pidfd for the broker. Sets broker_visible: whether its pid means something here.
 * Without pidfd_open (old kernels, valgrind) the pid is still ours to check with kill(2); a pid
 * we cannot see (ESRCH) means another pid namespace, where only the control segment's epoch
 * tells a restart. */
static int open_broker_pidfd(ring_conn *c, pid_t pid) {
        int fd;

        c->broker_visible = false;
        if (pid <= 0)
                return -1;
        fd = (int) syscall(SYS_pidfd_open, pid, 0);
        c->broker_visible = fd >= 0 || errno == ENOSYS;
        return fd;
}

/* True if the broker's process is known to have exited. */
static bool broker_gone(ring_conn *c) {
        return c->broker_visible && kill(c->broker_pid, 0) < 0 && errno == ESRCH;
}

int conn_wait_connected(ring_conn *c, uint64_t deadline_ns) {
        struct timespec ts;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        while (atomic_load(&c->state) == CONN_DISCONNECTED && r == 0) {
                if (deadline_ns == UINT64_MAX)
                        pthread_cond_wait(&c->connected, &c->lock);
                else {
                        ts = timespec_from_ns(deadline_ns);
                        if (pthread_cond_timedwait(&c->connected, &c->lock, &ts) == ETIMEDOUT)
                                r = -ETIMEDOUT;
                }
        }
        if (atomic_load(&c->state) == CONN_CLOSING)
                r = -ENOTCONN;
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* ---- broker restart ---- */

/* True while the control segment by name is still the one we registered with. */
static bool control_unchanged(ring_conn *c) {
        Segment seg;
        RingBuf ring;
        uint64_t epoch;
        pid_t pid;
        bool same;

        if (attach_control(c, &seg, &ring, &epoch, &pid) < 0)
                return false;
        same = epoch == c->epoch;
        segment_done(&seg);
        return same;
}

/* Control segments of earlier broker runs stay mapped until close: another thread may still be
 * pushing into the old submission ring when the supervisor swaps in the new one. */
static void retire(ring_conn *c, Segment *s) {
        Segment *grown = reallocarray(c->retired, c->n_retired + 1, sizeof(Segment));

        /* Without memory, leak the mapping rather than unmap it under a pushing thread. */
        if (grown) {
                c->retired = grown;
                c->retired[c->n_retired++] = *s;
        }
        *s = SEGMENT_NULL;
}

/* Waits up to ms for the supervisor's wake fd; true if asked to stop. */
static bool supervisor_sleep(ring_conn *c, int ms) {
        struct pollfd p = { .fd = c->wake_fd, .events = POLLIN };

        return poll(&p, 1, ms) > 0;
}

static int reopen_everything(ring_conn *c) {
        int r = 0;

        /* Publishers and services come back under their names; subscribers are told (their
         * channel ids changed) and re-subscribe by name. */
        pthread_mutex_lock(&c->objects_lock);
        for (struct ring_pub *p = c->pubs; p; p = pub_next(p))
                if (pub_reopen(p) < 0)
                        r = -EAGAIN;
        for (struct ring_fn *f = c->fns; f; f = fn_next(f))
                if (fn_reopen(f) < 0)
                        r = -EAGAIN;
        for (struct ring_sub *s = c->subs; s; s = sub_next(s))
                sub_connection_reset(s);
        pthread_mutex_unlock(&c->objects_lock);
        return r;
}

/* proven_dead: the broker's pidfd said it exited (otherwise its control segment changed). */
static void reconnect(ring_conn *c, bool proven_dead) {
        Segment seg;
        RingBuf ring;
        uint64_t epoch;
        pid_t pid, old_broker = c->broker_pid;

        atomic_store(&c->state, CONN_DISCONNECTED);
        waiter_fail_all(c, -ENOTCONN);
        /* The old broker may have died inside a push into our reply ring, holding its lock. We
         * consume that ring, so we are its breaker; only a proven death allows breaking. */
        if (proven_dead)
                (void) ringbuf_break_lock_of(&c->reply, (uint32_t) old_broker);

        while (atomic_load(&c->state) != CONN_CLOSING) {
                if (supervisor_sleep(c, RECONNECT_INTERVAL_MS))
                        return;
                if (attach_control(c, &seg, &ring, &epoch, &pid) < 0)
                        continue;
                if (epoch == c->epoch) {
                        segment_done(&seg);
                        /* A dead broker's segment left behind: wait for the next broker. */
                        if (proven_dead)
                                continue;
                        /* Without a pidfd: the same broker after all (a false alarm). */
                        atomic_store(&c->state, CONN_CONNECTED);
                        return;
                }
                pthread_mutex_lock(&c->lock);
                retire(c, &c->control);
                c->control = seg;
                c->submit = ring;
                c->epoch = epoch;
                c->broker_pid = pid;
                if (c->broker_pidfd >= 0)
                        close(c->broker_pidfd);
                c->broker_pidfd = open_broker_pidfd(c, pid);
                /* Connected for the duration of our own control calls below. */
                atomic_store(&c->state, CONN_CONNECTED);
                pthread_mutex_unlock(&c->lock);

                if (do_register(c, CONN_RECONNECT_CALL_MS) < 0) {
                        atomic_store(&c->state, CONN_DISCONNECTED);
                        continue;
                }
                pthread_mutex_lock(&c->lock);
                atomic_fetch_add(&c->generation, 1);
                c->reconnects++;
                pthread_cond_broadcast(&c->connected);
                pthread_mutex_unlock(&c->lock);
                (void) reopen_everything(c);
                return;
        }
}

static void send_heartbeat(ring_conn *c) {
        ControlMsg m = { .type = CONTROL_HEARTBEAT };
        uint8_t frame[64];
        int n;

        m.heartbeat = (ControlHeartbeat) { .correlation_id = conn_next_correlation(c),
                                           .client_id = (int64_t) atomic_load(&c->client_id),
                                           .seq = (int64_t) c->heartbeats++ };
        n = control_encode(&m, frame, sizeof(frame));
        if (n > 0)
                (void) conn_submit(c, frame, (size_t) n, 0);
}

static void *supervisor(void *arg) {
        ring_conn *c = arg;

        while (atomic_load(&c->state) != CONN_CLOSING) {
                struct pollfd p[2] = {
                        { .fd = c->wake_fd, .events = POLLIN },
                        { .fd = c->broker_pidfd, .events = POLLIN },
                };
                bool pidfd = c->broker_pidfd >= 0;
                int n = poll(p, pidfd ? 2 : 1, pidfd ? -1 : CONN_HEARTBEAT_MS / 2);

                if (n < 0 && errno != EINTR)
                        break;
                if (p[0].revents)
                        break;
                if (pidfd && p[1].revents)
                        reconnect(c, true);     /* the broker process exited */
                else if (!pidfd && broker_gone(c))
                        reconnect(c, true);
                else if (!pidfd && !control_unchanged(c))
                        reconnect(c, false);
                else if (!pidfd && !c->broker_visible)
                        send_heartbeat(c);
        }
        return NULL;
}

RING_EXPORT int ring_conn_open(const char *app_name, int timeout_ms, ring_conn **ret) {
        ring_conn *c;
        int r;

        if (!app_name || !*app_name || strlen(app_name) > APP_NAME_MAX || !ret)
                return -EINVAL;
        error_clear_message();
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->control = c->reply_seg = SEGMENT_NULL;
        c->broker_pidfd = c->wake_fd = c->epoll_fd = c->event_fd = c->timer_fd = -1;
        c->pid = getpid();
        atomic_store(&c->next_correlation, 1);
        pthread_mutex_init(&c->lock, NULL);
        /* Recursive: handlers run by ring_conn_dispatch() (which holds it) may open objects. */
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&c->objects_lock, &attr);
        pthread_mutexattr_destroy(&attr);
        pthread_mutex_init(&c->list_lock, NULL);
        pthread_mutex_init(&c->waiters_lock, NULL);
        pthread_mutex_init(&c->reader_lock, NULL);
        pthread_mutex_init(&c->watch_lock, NULL);
        pthread_cond_init(&c->connected, NULL);
        pthread_cond_init(&c->watch_cond, NULL);

        c->app_name = strdup(app_name);
        c->reader_buf = malloc(CONN_REPLY_CAPACITY);
        if (!c->app_name || !c->reader_buf) {
                r = -ENOMEM;
                goto fail;
        }
        r = names_bus_from_env(&c->bus);
        if (r < 0)
                goto fail;
        r = attach_control(c, &c->control, &c->submit, &c->epoch, &c->broker_pid);
        if (r < 0)
                goto fail;
        r = create_reply_segment(c);
        if (r < 0)
                goto fail;
        c->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->event_fd < 0 || c->wake_fd < 0) {
                r = negative_errno();
                goto fail;
        }
        atomic_store(&c->state, CONN_CONNECTED);
        c->broker_pidfd = open_broker_pidfd(c, c->broker_pid);
        r = do_register(c, timeout_ms);
        if (r < 0)
                goto fail;
        r = -pthread_create(&c->supervisor, NULL, supervisor, c);
        if (r < 0)
                goto fail;
        c->supervisor_started = true;
        *ret = c;
        return 0;
fail:
        ring_conn_close(c);
        return r;
}

RING_EXPORT void ring_conn_close(ring_conn *c) {
        uint64_t one = 1;

        if (!c)
                return;
        atomic_store(&c->state, CONN_CLOSING);
        if (c->supervisor_started) {
                (void) !write(c->wake_fd, &one, sizeof(one));
                pthread_join(c->supervisor, NULL);
        }
        watch_stop(c);
        waiter_fail_all(c, -ENOTCONN);

        /* Tell the broker we leave (no reply in v1); it drops our channels and functions. */
        if (atomic_load(&c->client_id) && c->control.base) {
                ControlMsg m = { .type = CONTROL_UNREGISTER };
                uint8_t frame[64];
                int n;

                m.unregister = (ControlUnregister) { .correlation_id = conn_next_correlation(c),
                                                     .client_id = (int64_t) atomic_load(&c->client_id) };
                n = control_encode(&m, frame, sizeof(frame));
                if (n > 0)
                        (void) conn_submit(c, frame, (size_t) n, 100 * (int64_t) NSEC_PER_MSEC);
        }

        rpc_free_all(c);
        fn_free_all(c);
        sub_free_all(c);
        pub_free_all(c);
        if (c->reply_seg.base)
                (void) segment_unlink(c->reply_seg.name);
        segment_done(&c->reply_seg);
        segment_done(&c->control);
        for (size_t i = 0; i < c->n_retired; i++)
                segment_done(&c->retired[i]);
        free(c->retired);
        if (c->broker_pidfd >= 0)
                close(c->broker_pidfd);
        if (c->wake_fd >= 0)
                close(c->wake_fd);
        if (c->event_fd >= 0)
                close(c->event_fd);
        pthread_cond_destroy(&c->connected);
        pthread_cond_destroy(&c->watch_cond);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->objects_lock);
        pthread_mutex_destroy(&c->list_lock);
        pthread_mutex_destroy(&c->waiters_lock);
        pthread_mutex_destroy(&c->reader_lock);
        pthread_mutex_destroy(&c->watch_lock);
        free(c->reader_buf);
        free(c->app_name);
        free(c);
}

RING_EXPORT uint64_t ring_conn_client_id(const ring_conn *c) {
        return c ? atomic_load(&((ring_conn *) c)->client_id) : 0;
}

RING_EXPORT unsigned ring_conn_reconnects(const ring_conn *c) {
        return c ? c->reconnects : 0;
}
