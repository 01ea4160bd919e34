/* SPDX-License-Identifier: MIT */
/*
 * The broker core (broker.h): start-up (stale segments, control segment), the submission drain
 * loop, arena creation, and shutdown. Request semantics live in requests.c, client segments in
 * clients.c, liveness in reaper.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "broker-internal.h"
#include "log.h"
#include "macro.h"
#include "requests.h"
#include "sigbus.h"
#include "time-util.h"
#include "unaligned.h"

/* Submissions served per loop iteration before other event sources get a turn. */
#define DRAIN_BATCH 256
/* At most one warning about garbage, and one error about the broker's own resources (clients
 * retrying at a limit), per this interval; the rest are counted. */
#define RATE_LIMIT_INTERVAL_NS (1 * NSEC_PER_SEC)

int broker_new(Broker **ret, sd_event *event, const BrokerConfig *config) {
        Broker *b;
        int r;

        if (!ret || !event || !config)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->event = sd_event_ref(event);
        b->config = *config;
        b->control = SEGMENT_NULL;
        b->spare_fd = -1;
        if (!b->config.arena_capacity)
                b->config.arena_capacity = BROKER_DEFAULT_ARENA_CAPACITY;
        if (!b->config.max_arena_capacity)
                b->config.max_arena_capacity = BROKER_MAX_ARENA_CAPACITY;
        /* Without a bus group, segments are open to every local user, as in v1; with one, to
         * that group only (spec/bootstrap.md, "Permissions"). */
        b->segment_mode = config->bus_gid == (gid_t) -1 ? 0666 : 0660;

        r = config->bus ? names_bus_init(&b->bus, config->bus) : names_bus_from_env(&b->bus);
        if (r >= 0)
                r = names_control(&b->bus, b->control_name, sizeof(b->control_name));
        if (r >= 0)
                r = registry_new(&b->registry);
        if (r >= 0)
                r = keys_new(&b->keys, event, config->key_cost);
        if (r >= 0)
                r = reaper_new(&b->reaper, b);
        if (r >= 0) {
                b->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (b->spare_fd < 0)
                        r = negative_errno();
        }
        if (r >= 0) {
                b->record = malloc(BROKER_SUBMISSION_CAPACITY);
                b->reply = malloc(BROKER_REPLY_MAX);
                if (!b->record || !b->reply)
                        r = -ENOMEM;
        }
        if (r < 0) {
                broker_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Collects the /dev/shm files that some process maps, from /proc/PID/maps. *ret_complete is
 * false if a process's maps could not be read (another user's, when we are not root). */
static int collect_mapped_shm(char ***ret, size_t *ret_n, bool *ret_complete) {
        DIR *proc = opendir("/proc");
        struct dirent *de;
        char **list = NULL;
        size_t n = 0;
        bool complete = true;

        if (!proc)
                return negative_errno();
        while ((de = readdir(proc))) {
                char path[sizeof("/proc//maps") + 256], line[4096];
                FILE *f;

                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/maps", de->d_name);
                f = fopen(path, "re");
                if (!f) {
                        if (errno != ENOENT)
                                complete = false;
                        continue;
                }
                while (fgets(line, sizeof(line), f)) {
                        char *p = strstr(line, " /dev/shm/"), **grown;
                        if (!p)
                                continue;
                        p[strcspn(p, "\n")] = 0;
                        grown = reallocarray(list, n + 1, sizeof(char *));
                        if (!grown || !(grown[n] = strdup(p + 9))) {
                                list = grown ?: list;
                                complete = false;
                                break;
                        }
                        list = grown;
                        n++;
                }
                fclose(f);
        }
        closedir(proc);
        if (n)
                qsort(list, n, sizeof(char *), cmp_str);
        *ret = list;
        *ret_n = n;
        *ret_complete = complete;
        return 0;
}

static int owner_lock_guarded(void *arg) {
        return ringbuf_owner_lock_announced(arg);
}

/* Whether a client reply segment is provably abandoned. A libring client announces (ring
 * extension) that it holds a shared flock on the segment while it lives: if we can take it
 * exclusively, the owner is gone. For other (v1) clients, only "no process maps it, and every
 * process's maps could be read" is proof. */
static bool reply_segment_abandoned(const char *name, char **mapped, size_t n_mapped, bool complete) {
        Segment s = SEGMENT_NULL;
        const char *key = name;
        bool abandoned = false;
        int announced;

        if (segment_open(&s, name, RINGBUF_HEADER_SIZE, SIZE_MAX) < 0)
                return complete && !(n_mapped && bsearch(&key, mapped, n_mapped, sizeof(char *), cmp_str));
        announced = sigbus_run(owner_lock_guarded, s.base);
        if (announced > 0)
                abandoned = flock(s.fd, LOCK_EX | LOCK_NB) == 0;
        else
                abandoned = complete && !(n_mapped && bsearch(&key, mapped, n_mapped, sizeof(char *), cmp_str));
        segment_done(&s);
        return abandoned;
}

/* Removes segments of this bus left by a broker that did not shut down cleanly: control
 * segment and arenas always (only a broker makes them), a client's reply segment only when its
 * owner is provably gone (reply_segment_abandoned). A client that outlived the crash keeps its
 * segment and can register again with the new broker. Only this bus's names are touched
 * (names_file_belongs_to_bus). */
static void remove_stale_segments(Broker *b) {
        char **mapped = NULL, cli[sizeof(b->bus.prefix) + 8];
        size_t n_mapped = 0;
        bool complete = false;
        DIR *d = opendir("/dev/shm");
        struct dirent *de;
        unsigned n = 0;

        if (!d) {
                log_warning_errno(-errno, "Cannot list /dev/shm for stale segments");
                return;
        }
        snprintf(cli, sizeof(cli), "%s.cli.", b->bus.prefix);
        (void) collect_mapped_shm(&mapped, &n_mapped, &complete);
        while ((de = readdir(d))) {
                char name[sizeof(de->d_name) + 1];

                if (!names_file_belongs_to_bus(&b->bus, de->d_name))
                        continue;
                snprintf(name, sizeof(name), "/%s", de->d_name);
                if (strncmp(de->d_name, cli, strlen(cli)) == 0 &&
                    !reply_segment_abandoned(name, mapped, n_mapped, complete))
                        continue;
                if (segment_unlink(name) == 0) {
                        log_info("Removed stale segment %s", name);
                        n++;
                }
        }
        closedir(d);
        for (size_t i = 0; i < n_mapped; i++)
                free(mapped[i]);
        free(mapped);
        if (n)
                log_notice("Removed %u stale segment(s) of bus \"%s\" left by an earlier run", n, b->bus.prefix);
}

static int set_segment_group(Broker *b, Segment *s) {
        if (b->config.bus_gid == (gid_t) -1)
                return 0;
        if (fchown(s->fd, (uid_t) -1, b->config.bus_gid) < 0)
                return negative_errno();
        return 0;
}

typedef struct FormatArgs {
        void *base;
        size_t size;
        uint32_t capacity;
} FormatArgs;

/* Guarded: between creation and format, anyone with write access could truncate the file. */
static int format_guarded(void *arg) {
        FormatArgs *a = arg;

        return ringbuf_format(a->base, a->size, a->capacity);
}

int broker_create_arena(Broker *b, const char *name, uint32_t capacity, Segment *ret) {
        Segment s = SEGMENT_NULL;
        int r;

        r = segment_create(&s, name, ringbuf_size(capacity), b->segment_mode);
        if (r < 0)
                return r;
        r = set_segment_group(b, &s);
        if (r >= 0) {
                FormatArgs args = { .base = s.base, .size = s.size, .capacity = capacity };
                r = sigbus_run(format_guarded, &args);
        }
        if (r < 0) {
                segment_unlink(name);
                segment_done(&s);
                return r;
        }
        /* Like reply segments, arenas need only their mapping from here on: a client's channels
         * and functions cost the broker no descriptor. */
        segment_close_fd(&s);
        *ret = s;
        return 0;
}

static void on_submissions(void *userdata) {
        broker_drain(userdata);
}

static int on_drain_again(sd_event_source *s, void *userdata) {
        broker_drain(userdata);
        return 0;
}

typedef struct PopArgs {
        Broker *b;
        int result;
} PopArgs;

static int pop_guarded(void *arg) {
        PopArgs *a = arg;

        return ringbuf_pop(&a->b->submissions, a->b->record, BROKER_SUBMISSION_CAPACITY);
}

void broker_drain(Broker *b) {
        PopArgs args = { .b = b };
        unsigned served = 0;
        int n;

        for (;;) {
                n = sigbus_run(pop_guarded, &args);
                if (n == -EAGAIN)
                        break;
                if (n == -EBADMSG) {
                        /* A producer wrote a record or cursor that cannot be right. Nothing after
                         * it can be trusted to be aligned: drop everything published so far. */
                        uint64_t dropped = ringbuf_discard_all(&b->submissions);
                        broker_warn_hostile(b, NULL, "The submission ring holds a corrupt record; dropped "
                                            "everything published in it", n);
                        log_debug("Dropped %" PRIu64 " bytes of submissions", dropped);
                        continue;
                }
                if (n == -EFAULT) {
                        log_error("The control segment was truncated by a client; the broker cannot "
                                  "serve this bus any more");
                        sd_event_exit(b->event, -EFAULT);
                        return;
                }
                if (n < 0) {
                        log_error_errno(n, "Cannot read the submission ring");
                        break;
                }
                requests_serve(b, b->record, (size_t) n);
                if (++served >= DRAIN_BATCH) {
                        /* Let pidfds, timers and the admin socket in; continue right after. */
                        sd_event_source_set_enabled(b->drain_again, SD_EVENT_ONESHOT);
                        return;
                }
        }
        bridge_arm(b->bridge, b->submissions.tail);
}

/* True if the bus's control segment belongs to a broker that is still running: its magic is
 * set and its pid is a live impulsed. Then starting would tear a live bus down. */
static bool live_broker(Broker *b, pid_t *ret_pid) {
        Segment seg = SEGMENT_NULL;
        char path[64], comm[32] = "";
        uint64_t magic;
        pid_t pid;
        FILE *f;

        if (segment_open(&seg, b->control_name, 64, SIZE_MAX) < 0)
                return false;
        magic = le64toh(atomic_load_explicit((_Atomic uint64_t *) seg.base, memory_order_acquire));
        pid = (pid_t) unaligned_read_le32(seg.base + 12);
        segment_done(&seg);
        if (magic != CONTROL_MAGIC || pid <= 0 || pid == getpid())
                return false;
        /* A recycled pid is not a broker: look at what runs under it. */
        snprintf(path, sizeof(path), "/proc/%ld/comm", (long) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (!fgets(comm, sizeof(comm), f))
                comm[0] = 0;
        fclose(f);
        *ret_pid = pid;
        return strncmp(comm, "impulsed", 8) == 0;
}

int broker_start(Broker *b) {
        uint8_t *base;
        size_t size = CONTROL_RING_OFFSET + ringbuf_size(BROKER_SUBMISSION_CAPACITY);
        struct timespec ts;
        pid_t other;
        int r;

        r = sigbus_install();
        if (r < 0)
                return log_error_errno(r, "Cannot install the SIGBUS handler");

        if (live_broker(b, &other))
                return log_error_errno(-EBUSY, "Broker pid %ld already serves bus \"%s\"; not starting a second "
                                       "one", (long) other, b->bus.prefix);
        remove_stale_segments(b);
        r = segment_create(&b->control, b->control_name, size, b->segment_mode);
        if (r == -EEXIST)
                return log_error_errno(r, "Control segment %s exists and could not be removed: another "
                                       "broker may serve this bus", b->control_name);
        if (r < 0)
                return log_error_errno(r, "Cannot create the control segment %s", b->control_name);
        r = set_segment_group(b, &b->control);
        if (r < 0)
                return log_error_errno(r, "Cannot give %s to the bus group", b->control_name);

        base = b->control.base;
        r = ringbuf_format(base + CONTROL_RING_OFFSET, size - CONTROL_RING_OFFSET, BROKER_SUBMISSION_CAPACITY);
        if (r < 0)
                return log_error_errno(r, "Cannot format the submission ring");
        r = ringbuf_attach_consumer(&b->submissions, base + CONTROL_RING_OFFSET, size - CONTROL_RING_OFFSET);
        if (r < 0)
                return log_error_errno(r, "Cannot attach to the submission ring");

        clock_gettime(CLOCK_REALTIME, &ts);
        b->epoch = (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
        b->started_usec = b->epoch / NSEC_PER_USEC;
        unaligned_write_le32(base + 8, CONTROL_VERSION);
        unaligned_write_le32(base + 12, (uint32_t) getpid());
        unaligned_write_le64(base + 16, b->epoch);

        r = sd_event_add_defer(b->event, &b->drain_again, on_drain_again, b);
        if (r < 0)
                return log_error_errno(r, "Cannot add the drain event source");
        sd_event_source_set_enabled(b->drain_again, SD_EVENT_OFF);
        r = bridge_new(&b->bridge, b->event, &b->submissions, on_submissions, b);
        if (r < 0)
                return log_error_errno(r, "Cannot start the submission watcher");
        bridge_arm(b->bridge, b->submissions.tail);

        /* Release: pairs with the clients' acquire load of the magic; a client that sees it
         * sees the formatted ring, the version, pid and epoch. */
        atomic_store_explicit((_Atomic uint64_t *) base, htole64(CONTROL_MAGIC), memory_order_release);
        log_info("Serving bus \"%s\" on %s (epoch %" PRIu64 ", submission ring %" PRIu32 " bytes)",
                 b->bus.prefix, b->control_name, b->epoch, BROKER_SUBMISSION_CAPACITY);
        return 0;
}

static int unlink_channel_arena(Channel *ch, void *userdata) {
        (void) segment_unlink(ch->arena.name);
        return 0;
}

static int unlink_function_arena(Function *f, void *userdata) {
        (void) segment_unlink(f->arena.name);
        return 0;
}

static int unwatch_client(Client *c, void *userdata) {
        reaper_unwatch(userdata, c);
        return 0;
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        /* The watcher thread reads the control segment: stop it before unmapping. */
        b->bridge = bridge_free(b->bridge);
        sd_event_source_disable_unref(b->drain_again);
        if (b->control.base) {
                /* Clients that look now see "broker not running" rather than a dying broker. */
                atomic_store_explicit((_Atomic uint64_t *) b->control.base, 0, memory_order_release);
                (void) segment_unlink(b->control_name);
        }
        segment_done(&b->control);
        b->keys = keys_free(b->keys);
        requests_free_pending(b);
        if (b->registry) {
                registry_foreach_channel(b->registry, unlink_channel_arena, NULL);
                registry_foreach_function(b->registry, unlink_function_arena, NULL);
                if (b->reaper)
                        registry_foreach_client(b->registry, unwatch_client, b->reaper);
        }
        b->registry = registry_free(b->registry);
        b->reaper = reaper_free(b->reaper);
        closep(&b->spare_fd);
        free(b->record);
        free(b->reply);
        sd_event_unref(b->event);
        free(b);
        return NULL;
}

void broker_counts_changed(Broker *b) {
        if (b->counts_changed)
                b->counts_changed(b, b->counts_userdata);
}

void broker_set_counts_changed(Broker *b, void (*cb)(Broker *b, void *userdata), void *userdata) {
        b->counts_changed = cb;
        b->counts_userdata = userdata;
}

/* Rate-limits one kind of message: true (and counted in *suppressed) within
 * RATE_LIMIT_INTERVAL_NS of the last one logged; otherwise the interval restarts and the caller
 * logs, reports *suppressed and zeroes it. */
static bool log_suppressed(uint64_t *last_ns, uint64_t *suppressed) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);

        if (*last_ns && now - *last_ns < RATE_LIMIT_INTERVAL_NS) {
                (*suppressed)++;
                return true;
        }
        *last_ns = now;
        return false;
}

void broker_warn_hostile(Broker *b, const Client *c, const char *what, int error) {
        LogContext ctx = { 0 };

        if (log_suppressed(&b->last_hostile_log_ns, &b->hostile_suppressed))
                return;
        if (c)
                ctx = client_log_context(c);
        log_full(LOG_WARNING, error, __FILE__, __LINE__, __func__, LOG_MESSAGE_HOSTILE_INPUT, &ctx,
                 "%s%s (%" PRIu64 " similar warnings suppressed); serving other clients as usual", what,
                 error ? "" : "", b->hostile_suppressed);
        b->hostile_suppressed = 0;
}

void broker_log_resource(Broker *b, const Client *c, const char *what, int error) {
        LogContext ctx = { 0 };
        char hint[128];
        struct rlimit rl;

        if (log_suppressed(&b->last_resource_log_ns, &b->resource_suppressed))
                return;
        if (error == -EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
                snprintf(hint, sizeof(hint), "the broker is at its limit of %llu open files, one per "
                         "client with a pid (LimitNOFILE= of its unit)",
                         (unsigned long long) rl.rlim_cur);
        else if (error == -ENFILE)
                snprintf(hint, sizeof(hint), "the system is out of open files (fs.file-max)");
        else
                snprintf(hint, sizeof(hint), "the broker is out of memory");
        if (c)
                ctx = client_log_context(c);
        log_full(LOG_ERR, error, __FILE__, __LINE__, __func__, LOG_MESSAGE_OUT_OF_RESOURCES, &ctx,
                 "%s: %s (%" PRIu64 " similar errors suppressed)", what, hint, b->resource_suppressed);
        b->resource_suppressed = 0;
}

void broker_spare_fd_release(Broker *b) {
        closep(&b->spare_fd);
        b->spare_fd = -1;
}

void broker_spare_fd_restore(Broker *b) {
        /* Fails only while the broker is still out of descriptors: tried again next time. */
        if (b->spare_fd < 0)
                b->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

const Registry *broker_registry(const Broker *b) {
        return b->registry;
}

const BusNames *broker_bus(const Broker *b) {
        return &b->bus;
}

uint64_t broker_epoch(const Broker *b) {
        return b->epoch;
}

uint64_t broker_started_usec(const Broker *b) {
        return b->started_usec;
}
