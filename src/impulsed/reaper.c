/* SPDX-License-Identifier: MIT */
/*
 * Liveness and reaping (reaper.h). A client with a pid gets a pidfd in the event loop: it
 * becomes readable the moment the process exits, so a crash is noticed at once, without
 * polling, and a recycled pid can never be mistaken for the client. Older v1 clients (pid 0)
 * are judged by heartbeats. The cgroup of each client is recorded (its systemd unit) and
 * watched through cgroup.events: when a unit's cgroup empties, every client in it is reaped.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker-internal.h"
#include "keys.h"
#include "log.h"
#include "macro.h"
#include "reaper.h"
#include "sigbus.h"
#include "time-util.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* After a death, a v1 producer lock (owner unknown) still held with no progress over this many
 * checks this far apart is taken to be the dead client's and released. */
#define LOCK_CHECKS 3
#define LOCK_CHECK_INTERVAL_USEC (100 * 1000)

typedef struct CgroupWatch {
        struct CgroupWatch *next;
        Reaper *reaper;
        char *path;                     /* cgroup v2 path, e.g. /system.slice/foo.service */
        sd_event_source *source;
        unsigned users;
} CgroupWatch;

typedef struct ClientWatch {
        Reaper *reaper;
        uint64_t client_id;
        int pidfd;
        sd_event_source *pidfd_source;
        sd_event_source *heartbeat_timer;
        CgroupWatch *cgroup;
} ClientWatch;

struct Reaper {
        Broker *broker;
        char *cgroup_root;              /* where cgroup2 is mounted, NULL if nowhere */
        CgroupWatch *cgroups;
        sd_event_source *lock_timer;
        unsigned lock_checks;
        uint64_t lock_head;
};

static int find_cgroup_root(char **ret) {
        char line[4096];
        FILE *f = fopen("/proc/self/mountinfo", "re");

        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f)) {
                char mountpoint[2048], *sep = strstr(line, " - ");
                if (!sep || strncmp(sep, " - cgroup2 ", 11) != 0)
                        continue;
                if (sscanf(line, "%*s %*s %*s %*s %2047s", mountpoint) == 1) {
                        fclose(f);
                        *ret = strdup(mountpoint);
                        return *ret ? 0 : -ENOMEM;
                }
        }
        fclose(f);
        return -ENOENT;
}

int reaper_new(Reaper **ret, Broker *b) {
        Reaper *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->broker = b;
        /* Without cgroup2 (some containers) units are unknown; pidfds still reap. */
        if (find_cgroup_root(&r->cgroup_root) < 0)
                log_notice("No cgroup2 hierarchy found: clients' units will not be recorded");
        *ret = r;
        return 0;
}

Reaper *reaper_free(Reaper *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->lock_timer);
        /* Clients are unwatched (and their cgroup users dropped) before the registry goes. */
        while (r->cgroups) {
                CgroupWatch *w = r->cgroups;
                r->cgroups = w->next;
                sd_event_source_disable_unref(w->source);
                free(w->path);
                free(w);
        }
        free(r->cgroup_root);
        free(r);
        return NULL;
}

/* The cgroup v2 path of pid ("0::/path" in /proc/PID/cgroup). */
static int read_cgroup(pid_t pid, char **ret) {
        char path[64], line[4096];
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%ld/cgroup", (long) pid);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "0::", 3) == 0) {
                        fclose(f);
                        line[strcspn(line, "\n")] = 0;
                        *ret = strdup(line + 3);
                        return *ret ? 0 : -ENOMEM;
                }
        fclose(f);
        return -ENOENT;
}

/* The systemd unit of a cgroup path: its deepest .service or .scope component. */
static char *unit_from_cgroup(const char *cgroup) {
        const char *best = NULL, *p = cgroup;
        size_t best_len = 0;

        while (p && *p) {
                const char *start = *p == '/' ? p + 1 : p, *end = strchr(start, '/');
                size_t len = end ? (size_t) (end - start) : strlen(start);

                if ((len > 8 && memcmp(start + len - 8, ".service", 8) == 0) ||
                    (len > 6 && memcmp(start + len - 6, ".scope", 6) == 0))
                        best = start, best_len = len;
                p = end;
        }
        return best ? strndup(best, best_len) : NULL;
}

/* ---- reaping ---- */

typedef struct Owned {
        uint64_t client_id;
        uint64_t *channels, *subscribed;
        char **functions;
        size_t n_channels, n_subscribed, n_functions;
} Owned;

static int collect_channels(Channel *ch, void *userdata) {
        Owned *o = userdata;
        uint64_t **list = NULL;
        size_t *n = NULL;

        if (ch->owner_id == o->client_id)
                list = &o->channels, n = &o->n_channels;
        else if (ch->subscriber_id == o->client_id)
                list = &o->subscribed, n = &o->n_subscribed;
        if (!list)
                return 0;
        uint64_t *grown = reallocarray(*list, *n + 1, sizeof(uint64_t));
        if (!grown)
                return -ENOMEM;
        grown[(*n)++] = ch->id;
        *list = grown;
        return 0;
}

static int collect_functions(Function *f, void *userdata) {
        Owned *o = userdata;
        char **grown;

        if (f->owner_id != o->client_id)
                return 0;
        grown = reallocarray(o->functions, o->n_functions + 1, sizeof(char *));
        if (!grown)
                return -ENOMEM;
        o->functions = grown;
        o->functions[o->n_functions] = strdup(f->name);
        if (!o->functions[o->n_functions])
                return -ENOMEM;
        o->n_functions++;
        return 0;
}

/* Unlinks the client's reply segment if the name still refers to the file it registered (by
 * the dev/ino recorded then: our mapping keeps that file, and so its inode number, alive).
 * True if it is gone (removed now, or already). */
static bool unlink_reply_segment(const Client *c) {
        char path[sizeof("/dev/shm") + NAMES_SEGMENT_MAX];
        struct stat now;
        int r;

        snprintf(path, sizeof(path), "/dev/shm%s", c->reply_seg.name);
        if (!c->reply_seg.base)
                return false;
        if (lstat(path, &now) < 0)
                return errno == ENOENT;
        if (now.st_dev != c->reply_dev || now.st_ino != c->reply_ino)
                return true;    /* someone else's file took the name: not ours to remove */
        r = segment_unlink(c->reply_seg.name);
        if (r < 0 && r != -ENOENT) {
                log_warning_errno(r, "Cannot remove the reply segment %s of dead client %" PRIu64
                                  " (it stays until a broker start finds it abandoned)", c->reply_seg.name, c->id);
                return false;
        }
        return true;
}

static void schedule_lock_check(Reaper *r);

typedef struct BreakArgs {
        RingBuf *ring;
        pid_t pid;
} BreakArgs;

static int break_guarded(void *arg) {
        BreakArgs *a = arg;

        return ringbuf_break_lock_of(a->ring, (uint32_t) a->pid);
}

void reaper_reap(Broker *b, uint64_t client_id, bool died, const char *reason) {
        _cleanup_(client_freep) Client *c = NULL;
        Owned o = { .client_id = client_id };
        char summary[1024] = "";
        size_t len = 0;
        LogContext ctx;

        c = registry_remove_client(b->registry, client_id);
        if (!c)
                return;

        (void) registry_foreach_channel(b->registry, collect_channels, &o);
        (void) registry_foreach_function(b->registry, collect_functions, &o);
        for (size_t i = 0; i < o.n_channels; i++) {
                Channel *ch = registry_remove_channel(b->registry, o.channels[i]);
                if (!ch)
                        continue;
                len += (size_t) snprintf(summary + len, len < sizeof(summary) ? sizeof(summary) - len : 0,
                                         "%schannel \"%s\" (%s)", len ? ", " : "", ch->name, ch->arena.name);
                (void) segment_unlink(ch->arena.name);
                channel_free(ch);
        }
        for (size_t i = 0; i < o.n_subscribed; i++) {
                Channel *ch = registry_channel(b->registry, o.subscribed[i]);
                if (ch)
                        ch->subscriber_id = 0;
        }
        for (size_t i = 0; i < o.n_functions; i++) {
                Function *f = registry_remove_function(b->registry, o.functions[i]);
                if (f) {
                        len += (size_t) snprintf(summary + len, len < sizeof(summary) ? sizeof(summary) - len : 0,
                                                 "%sfunction \"%s\" (%s)", len ? ", " : "", f->name, f->arena.name);
                        (void) segment_unlink(f->arena.name);
                        function_free(f);
                }
                free(o.functions[i]);
        }
        free(o.channels);
        free(o.subscribed);
        free(o.functions);

        /* A client that died leaves its reply segment behind: nobody else will unlink it. Only
         * a pidfd proves death; a client that merely missed heartbeats (pid 0) may be alive
         * and register again with it. */
        bool unlinked = died && c->pid > 0 && unlink_reply_segment(c);

        ctx = client_log_context(c);
        log_ctx(died ? LOG_NOTICE : LOG_INFO, LOG_MESSAGE_CLIENT_REAPED, &ctx,
                "%s client %" PRIu64 " \"%s\" (pid %ld%s%s%s%s): %s; reclaimed %s%s%s",
                died ? "Reaped" : "Removed", c->id, c->app_name, (long) c->pid,
                c->unit ? ", unit " : "", c->unit ?: "", c->cgroup ? ", cgroup " : "", c->cgroup ?: "",
                reason, len ? summary : "no channels or functions", unlinked ? " and its reply segment " : "",
                unlinked ? c->reply_seg.name : "");

        keys_forget_client(b->keys, c->id);
        reaper_unwatch(b->reaper, c);
        if (died) {
                /* It may have died inside a push, holding the submission ring's producer lock. */
                BreakArgs args = { .ring = &b->submissions, .pid = c->pid };

                if (c->pid > 0 && sigbus_run(break_guarded, &args) > 0)
                        log_ctx(LOG_WARNING, LOG_MESSAGE_HOSTILE_INPUT, &ctx,
                                "Client %" PRIu64 " died holding the submission ring's producer lock; released it",
                                c->id);
                schedule_lock_check(b->reaper);
        }
        broker_counts_changed(b);
}

/* ---- producer locks of v1 clients that died (owner not recorded) ---- */

typedef struct LockState {
        RingBuf *ring;
        uint32_t lock, owner;
        uint64_t head;
        bool unlock;
} LockState;

static int lock_guarded(void *arg) {
        LockState *l = arg;

        if (l->unlock)
                ringbuf_force_unlock(l->ring);
        else
                ringbuf_lock_state(l->ring, &l->lock, &l->owner, &l->head);
        return 0;
}

static int on_lock_check(sd_event_source *s, uint64_t usec, void *userdata) {
        Reaper *r = userdata;
        LockState l = { .ring = &r->broker->submissions };
        uint32_t lock, owner;
        uint64_t head;

        if (sigbus_run(lock_guarded, &l) < 0)
                return 0;       /* the control segment is gone; broker_drain() handles it */
        lock = l.lock, owner = l.owner, head = l.head;
        if (lock == 0 || owner != 0 || (r->lock_checks > 0 && head != r->lock_head)) {
                r->lock_checks = 0;
                return 0;
        }
        r->lock_head = head;
        if (++r->lock_checks < LOCK_CHECKS) {
                sd_event_source_set_time_relative(s, LOCK_CHECK_INTERVAL_USEC);
                sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        /* Held without progress across all checks right after a client died: a v1 peer that
         * does not record itself as owner died inside its push. */
        log_warning("The submission ring's producer lock stayed held by an unknown (v1) producer "
                    "after a client died; releasing it");
        l.unlock = true;
        (void) sigbus_run(lock_guarded, &l);
        r->lock_checks = 0;
        return 0;
}

static void schedule_lock_check(Reaper *r) {
        int k;

        r->lock_checks = 0;
        if (r->lock_timer) {
                sd_event_source_set_time_relative(r->lock_timer, LOCK_CHECK_INTERVAL_USEC);
                sd_event_source_set_enabled(r->lock_timer, SD_EVENT_ONESHOT);
                return;
        }
        /* 1 ms accuracy: sd-event's default (250 ms) would stretch the three checks. */
        k = sd_event_add_time_relative(r->broker->event, &r->lock_timer, CLOCK_MONOTONIC,
                                       LOCK_CHECK_INTERVAL_USEC, 1000, on_lock_check, r);
        if (k < 0)
                log_warning_errno(k, "Cannot schedule the producer lock check");
}

/* ---- watches ---- */

static int on_pidfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ClientWatch *w = userdata;
        /* Serving requests may reap this client and free w: copy what we need first. */
        Broker *b = w->reaper->broker;
        uint64_t client_id = w->client_id;

        /* A process that sent its last requests (Unregister, typically) and exited at once may
         * be seen dead before they are read: serve what the submission ring holds first, so
         * that a clean exit is logged as one and its Unregister is not refused as coming from
         * an unknown client. (on_cgroup_events() does the same.) */
        broker_drain(b);
        reaper_reap(b, client_id, true, "its process died");
        return 0;
}

static int on_heartbeat_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ClientWatch *w = userdata;
        Client *c = registry_client(w->reaper->broker->registry, w->client_id);
        uint64_t limit, now = now_ns(CLOCK_MONOTONIC);

        if (!c)
                return 0;
        limit = 3 * (uint64_t) c->heartbeat_ms * NSEC_PER_MSEC;
        if (now - c->last_seen_ns >= limit) {
                reaper_reap(w->reaper->broker, w->client_id, true, "it missed three heartbeats");
                return 0;
        }
        sd_event_source_set_time(s, (c->last_seen_ns + limit) / NSEC_PER_USEC);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

typedef struct ReapList {
        const char *cgroup;
        uint64_t *ids;
        size_t n;
} ReapList;

static int collect_in_cgroup(Client *c, void *userdata) {
        ReapList *l = userdata;
        uint64_t *grown;

        if (!c->cgroup || strcmp(c->cgroup, l->cgroup) != 0)
                return 0;
        grown = reallocarray(l->ids, l->n + 1, sizeof(uint64_t));
        if (!grown)
                return -ENOMEM;
        grown[l->n++] = c->id;
        l->ids = grown;
        return 0;
}

static int on_cgroup_events(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        CgroupWatch *w = userdata;
        Reaper *r = w->reaper;
        ReapList l = { .cgroup = w->path };
        char path[4096], line[128];
        bool empty = false;
        FILE *f;

        snprintf(path, sizeof(path), "%s%s/cgroup.events", r->cgroup_root, w->path);
        f = fopen(path, "re");
        if (f) {
                while (fgets(line, sizeof(line), f))
                        if (strcmp(line, "populated 0\n") == 0)
                                empty = true;
                fclose(f);
        } else if (errno == ENOENT)
                empty = true;   /* the cgroup itself is gone */
        if (!empty)
                return 0;

        /* Serving requests and reaping drop the watch's users, which may free w: copy what we
         * need first. */
        _cleanup_free_ char *cgroup = strdup(w->path);
        if (cgroup) {
                /* (Without the memory for the copy, reap without serving first.) */
                l.cgroup = cgroup;
                broker_drain(r->broker);
        }
        (void) registry_foreach_client(r->broker->registry, collect_in_cgroup, &l);
        if (l.n > 0)
                log_ctx(LOG_NOTICE, NULL, &((LogContext) { .unit = NULL }),
                        "cgroup %s is empty: reaping its %zu client(s)", l.cgroup, l.n);
        for (size_t i = 0; i < l.n; i++)
                reaper_reap(r->broker, l.ids[i], true, "its cgroup emptied");
        free(l.ids);
        return 0;
}

static CgroupWatch *cgroup_watch_ref(Reaper *r, const char *cgroup) {
        char path[4096];
        CgroupWatch *w;
        int k;

        /* The root cgroup never empties, and without cgroup2 there is nothing to watch. */
        if (!r->cgroup_root || !cgroup || strcmp(cgroup, "/") == 0)
                return NULL;
        for (w = r->cgroups; w; w = w->next)
                if (strcmp(w->path, cgroup) == 0) {
                        w->users++;
                        return w;
                }
        w = calloc(1, sizeof(*w));
        if (!w || !(w->path = strdup(cgroup))) {
                free(w);
                return NULL;
        }
        w->reaper = r;
        snprintf(path, sizeof(path), "%s%s/cgroup.events", r->cgroup_root, cgroup);
        k = sd_event_add_inotify(r->broker->event, &w->source, path, IN_MODIFY, on_cgroup_events, w);
        if (k < 0) {
                log_debug("Cannot watch %s: %s", path, strerror(-k));
                free(w->path);
                free(w);
                return NULL;
        }
        w->users = 1;
        w->next = r->cgroups;
        r->cgroups = w;
        return w;
}

static void cgroup_watch_unref(Reaper *r, CgroupWatch *w) {
        if (!w || --w->users > 0)
                return;
        for (CgroupWatch **p = &r->cgroups; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        sd_event_source_disable_unref(w->source);
        free(w->path);
        free(w);
}

int reaper_watch(Reaper *r, Client *c) {
        ClientWatch *w;
        int k;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (ClientWatch) { .reaper = r, .client_id = c->id, .pidfd = -1 };
        c->watch = w;

        if (c->pid > 0) {
                w->pidfd = (int) syscall(SYS_pidfd_open, c->pid, 0);
                if (w->pidfd < 0) {
                        k = errno == ESRCH ? -ESRCH : negative_errno();
                        goto fail;
                }
                k = sd_event_add_io(r->broker->event, &w->pidfd_source, w->pidfd, EPOLLIN, on_pidfd, w);
                if (k < 0)
                        goto fail;
                /* No cgroup (no cgroup2, a process gone meanwhile) only costs unit-based
                 * reaping; our own lack of descriptors or memory fails the registration rather
                 * than silently registering a client whose unit is unknown. */
                k = read_cgroup(c->pid, &c->cgroup);
                if (broker_is_resource_error(k))
                        goto fail;
                if (k >= 0) {
                        c->unit = unit_from_cgroup(c->cgroup);
                        w->cgroup = cgroup_watch_ref(r, c->cgroup);
                }
        } else if (c->heartbeat_ms > 0) {
                k = sd_event_add_time(r->broker->event, &w->heartbeat_timer, CLOCK_MONOTONIC,
                                      (c->last_seen_ns + 3 * (uint64_t) c->heartbeat_ms * NSEC_PER_MSEC) /
                                              NSEC_PER_USEC,
                                      10 * 1000, on_heartbeat_timer, w);
                if (k < 0)
                        goto fail;
        }
        return 0;
fail:
        reaper_unwatch(r, c);
        return k;
}

void reaper_unwatch(Reaper *r, Client *c) {
        ClientWatch *w = c ? c->watch : NULL;

        if (!w)
                return;
        sd_event_source_disable_unref(w->pidfd_source);
        sd_event_source_disable_unref(w->heartbeat_timer);
        if (w->pidfd >= 0)
                close(w->pidfd);
        cgroup_watch_unref(r, w->cgroup);
        free(w);
        c->watch = NULL;
}

void reaper_seen(Reaper *r, Client *c) {
        c->last_seen_ns = now_ns(CLOCK_MONOTONIC);
}

bool reaper_client_dead(Reaper *r, const Client *c) {
        const ClientWatch *w = c->watch;

        if (!w || w->pidfd < 0)
                return false;
        /* Signal 0 through the pidfd: ESRCH once the process has exited, immune to pid reuse. */
        return syscall(SYS_pidfd_send_signal, w->pidfd, 0, NULL, 0) < 0 && errno == ESRCH;
}
