/* SPDX-License-Identifier: MIT */
/*
 * The admin control socket (admin.h): takes it from systemd or makes it, accepts connections,
 * checks who the peer is, and answers the read-only queries of admin-proto.h from the
 * broker's registry. It never changes the bus and never blocks the loop: every socket is
 * non-blocking, each connection holds no buffer between events, and a peer that does not keep
 * up is dropped rather than waited for.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "admin-proto.h"
#include "admin.h"
#include "broker.h"
#include "log.h"
#include "macro.h"
#include "names.h"
#include "registry.h"
#include "time-util.h"

/* Connections served at once. Admin queries are rare and short; the bound keeps a runaway
 * script from holding many fds and timers. Only permitted peers count. */
#define ADMIN_CONNECTIONS_MAX 16
/* A connection idle this long is closed, so that permitted but forgotten clients cannot hold
 * the slots forever. */
#define ADMIN_IDLE_TIMEOUT_USEC (30 * UINT64_C(1000000))
/* Connections accepted per wake-up, so that a connect storm still lets the loop turn. */
#define ADMIN_ACCEPT_BURST 16
/* After accept() fails for want of fds or memory, the listener rests this long; without the
 * pause a pending connection would wake the loop again at once, forever. */
#define ADMIN_ACCEPT_PAUSE_USEC (1 * UINT64_C(1000000))
/* Below the broker's own work (priority 0): when both are ready, clients go first. */
#define ADMIN_PRIORITY 10
/* Denied peers are logged at most this often, so that anyone who can reach the socket cannot
 * flood the journal. */
#define ADMIN_LOG_INTERVAL_USEC (10 * UINT64_C(1000000))
#define ADMIN_LOG_BURST 5

typedef struct AdminConn AdminConn;

struct AdminConn {
        Admin *admin;
        AdminConn *prev, *next;
        int fd;
        pid_t pid;
        uid_t uid;
        sd_event_source *io;
        sd_event_source *idle;
};

typedef struct RateLimit {
        uint64_t begin_usec;
        unsigned n;
        unsigned suppressed;
} RateLimit;

struct Admin {
        sd_event *event;
        Broker *broker;
        gid_t admin_gid;
        int fd;
        sd_event_source *listener;
        sd_event_source *pause;
        char *path;
        /* Set when we bound the socket: admin_free() removes the file if it is still this one. */
        bool created;
        dev_t dev;
        ino_t ino;
        AdminConn *conns;
        size_t n_conns;
        RateLimit denied_log;
};

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}
#define _cleanup_json_ _cleanup_(decref_jsonp)

static bool ratelimit_below(RateLimit *rl) {
        uint64_t now = now_ns(CLOCK_MONOTONIC) / NSEC_PER_USEC;

        if (rl->begin_usec == 0 || now - rl->begin_usec >= ADMIN_LOG_INTERVAL_USEC) {
                if (rl->suppressed > 0)
                        log_notice("Suppressed %u further messages about denied admin connections.",
                                   rl->suppressed);
                *rl = (RateLimit) { .begin_usec = now };
        }
        if (rl->n < ADMIN_LOG_BURST) {
                rl->n++;
                return true;
        }
        rl->suppressed++;
        return false;
}

/* --- the bus name, as the admin side names it --- */

/* The RING_BUS name of the broker's bus, or NULL for the default bus. BusNames keeps only the
 * segment prefix; the bus is what follows "impulse-ring-". */
static const char *bus_name(const BusNames *names) {
        size_t k = strlen(NAMES_DEFAULT_PREFIX);

        if (strncmp(names->prefix, NAMES_DEFAULT_PREFIX, k) == 0 && names->prefix[k] == '-' &&
            names->prefix[k + 1] != '\0')
                return names->prefix + k + 1;
        return NULL;
}

/* --- answers --- */

static json_t *status_result(Admin *a) {
        const Registry *reg = broker_registry(a->broker);
        const BusNames *names = broker_bus(a->broker);
        uint64_t started = broker_started_usec(a->broker);
        uint64_t now = now_ns(CLOCK_REALTIME) / NSEC_PER_USEC;
        const char *bus = bus_name(names);
        char epoch[21], prefix[sizeof(names->prefix) + 1];

        /* The epoch is opaque and uses all 64 bits: as a JSON number it would lose precision
         * in readers that store numbers as doubles. */
        snprintf(epoch, sizeof(epoch), "%" PRIu64, broker_epoch(a->broker));
        snprintf(prefix, sizeof(prefix), "/%s", names->prefix);
        return json_pack("{s:o, s:s, s:s?, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:s}",
                         "bus", bus ? json_string(bus) : json_null(),
                         "segment_prefix", prefix,
                         "control_socket", a->path,
                         "pid", (json_int_t) getpid(),
                         "epoch", epoch,
                         "started_usec", (json_int_t) started,
                         /* The wall clock may step back; an uptime is never negative. */
                         "uptime_usec", (json_int_t) (now > started ? now - started : 0),
                         "clients", (json_int_t) registry_n_clients(reg),
                         "channels", (json_int_t) registry_n_channels(reg),
                         "functions", (json_int_t) registry_n_functions(reg),
                         "version", PACKAGE_VERSION);
}

static json_t *fingerprint_string(uint64_t fp) {
        char buf[2 + 16 + 1];

        snprintf(buf, sizeof(buf), "0x%016" PRIx64, fp);
        return json_string(buf);
}

/* Client ids are random numbers up to 2^63 - 1, and readers that hold JSON numbers as doubles
 * (jq, JavaScript) would round them: they travel as decimal strings. No client (0) is null. */
static json_t *client_id_string(uint64_t id) {
        char buf[20 + 1];

        if (id == 0)
                return json_null();
        snprintf(buf, sizeof(buf), "%" PRIu64, id);
        return json_string(buf);
}

/* Collects list entries until one message is full, and then stops the walk: a bus with a
 * hundred thousand clients costs the loop one message's worth of JSON, not all of it. */
typedef struct ListBuild {
        json_t *array;
        size_t bytes;           /* compact JSON of the entries so far, with their commas */
} ListBuild;

/* Room for the envelope around the entries: {"ok":true,"result":{"total":...,"clients":[]}}. */
#define LIST_ENVELOPE_MAX 256
/* What an entry callback returns to end the walk because the message is full. */
#define LIST_FULL (-ENOSPC)

/* Strings in the registry come from clients: admin_json_string() keeps the JSON valid whatever
 * bytes they hold. A NULL from jansson (out of memory) fails the whole answer, so the caller
 * never sends half an object. */
static int list_add(ListBuild *l, json_t *entry) {
        size_t size;

        if (!entry)
                return -ENOMEM;
        size = json_dumpb(entry, NULL, 0, JSON_COMPACT) + 1;
        if (size == 1) {
                json_decref(entry);
                return -ENOMEM;
        }
        if (l->bytes + size > ADMIN_RESPONSE_MAX - LIST_ENVELOPE_MAX) {
                json_decref(entry);
                return LIST_FULL;
        }
        if (json_array_append_new(l->array, entry) < 0)
                return -ENOMEM;
        l->bytes += size;
        return 0;
}

static int client_entry(Client *c, void *userdata) {
        return list_add(userdata,
                        json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:I, s:s, s:I}",
                                  "id", client_id_string(c->id),
                                  "app", admin_json_string(c->app_name),
                                  /* 0 means an older v1 client that did not send its pid. */
                                  "pid", c->pid > 0 ? json_integer(c->pid) : json_null(),
                                  "uid", (json_int_t) c->uid,
                                  "unit", admin_json_string(c->unit),
                                  "cgroup", admin_json_string(c->cgroup),
                                  "heartbeat_ms", (json_int_t) c->heartbeat_ms,
                                  "reply_segment", c->reply_seg.name,
                                  "replies_dropped", (json_int_t) c->replies_dropped));
}

static int channel_entry(Channel *ch, void *userdata) {
        return list_add(userdata,
                        json_pack("{s:I, s:o, s:o, s:o, s:o, s:b, s:o, s:s}",
                                  "id", (json_int_t) ch->id,
                                  "name", admin_json_string(ch->name),
                                  "owner_id", client_id_string(ch->owner_id),
                                  "owner_app", admin_json_string(ch->owner_app),
                                  "schema_fp", fingerprint_string(ch->schema_fp),
                                  "requires_key", ch->key_hash != NULL,
                                  "subscriber_id", client_id_string(ch->subscriber_id),
                                  "arena", ch->arena.name));
}

static int function_entry(Function *f, void *userdata) {
        return list_add(userdata,
                        json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:b, s:s}",
                                  "id", (json_int_t) f->id,
                                  "name", admin_json_string(f->name),
                                  "owner_id", client_id_string(f->owner_id),
                                  "owner_app", admin_json_string(f->owner_app),
                                  "req_fp", fingerprint_string(f->req_fp),
                                  "resp_fp", fingerprint_string(f->resp_fp),
                                  "requires_key", f->key_hash != NULL,
                                  "arena", f->arena.name));
}

/* Encodes a list answer {"total":N,"truncated":B,"<key>":[...]}, the first entries in id order
 * that fit in one message. */
static int list_response(Admin *a, AdminCommand command, char **ret, size_t *ret_len) {
        const Registry *reg = broker_registry(a->broker);
        const char *key = admin_command_to_string(command);
        _cleanup_json_ json_t *array = json_array(), *result = NULL;
        ListBuild l = { .array = array };
        size_t total;
        int r;

        if (!array)
                return -ENOMEM;
        switch (command) {
        case ADMIN_COMMAND_CLIENTS:
                r = registry_foreach_client(reg, client_entry, &l);
                total = registry_n_clients(reg);
                break;
        case ADMIN_COMMAND_CHANNELS:
                r = registry_foreach_channel(reg, channel_entry, &l);
                total = registry_n_channels(reg);
                break;
        case ADMIN_COMMAND_FUNCTIONS:
                r = registry_foreach_function(reg, function_entry, &l);
                total = registry_n_functions(reg);
                break;
        default:
                return -EINVAL;
        }
        if (r < 0 && r != LIST_FULL)
                return r;
        result = json_pack("{s:I, s:b, s:O}", "total", (json_int_t) total, "truncated",
                           json_array_size(array) < total, key, array);
        if (!result)
                return -ENOMEM;

        /* The sizes were measured, so this fits; should it not, fewer entries are better than
         * no answer. */
        for (;;) {
                r = admin_response_encode_ok(result, ADMIN_RESPONSE_MAX, ret, ret_len);
                if (r != -EMSGSIZE || json_array_size(array) == 0)
                        return r;
                if (json_object_set_new(result, "truncated", json_true()) < 0 ||
                    json_array_remove(array, json_array_size(array) - 1) < 0)
                        return -ENOMEM;
        }
}

static int response_for(Admin *a, AdminCommand command, char **ret, size_t *ret_len) {
        _cleanup_json_ json_t *result = NULL;

        switch (command) {
        case ADMIN_COMMAND_STATUS:
                result = status_result(a);
                if (!result)
                        return -ENOMEM;
                return admin_response_encode_ok(result, ADMIN_RESPONSE_MAX, ret, ret_len);
        case ADMIN_COMMAND_CLIENTS:
        case ADMIN_COMMAND_CHANNELS:
        case ADMIN_COMMAND_FUNCTIONS:
                return list_response(a, command, ret, ret_len);
        default:
                return -EOPNOTSUPP;
        }
}

/* --- connections --- */

static AdminConn *conn_free(AdminConn *c) {
        if (!c)
                return NULL;
        if (c->admin) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        c->admin->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                c->admin->n_conns--;
        }
        /* Unref is safe from the connection's own callbacks: sd-event defers the free. */
        sd_event_source_unref(c->io);
        sd_event_source_unref(c->idle);
        closep(&c->fd);
        free(c);
        return NULL;
}

/* Sends one message without waiting. A socket with no room is a peer that does not read its
 * answers; the caller drops it. */
static int conn_send(int fd, const char *buf, size_t len) {
        ssize_t k;

        do
                k = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return negative_errno();
        /* SEQPACKET sends a whole message or nothing. */
        return (size_t) k == len ? 0 : -EIO;
}

static int send_error(int fd, int error, const char *message) {
        _cleanup_free_ char *buf = NULL;
        size_t len;
        int r;

        r = admin_response_encode_error(error, message, &buf, &len);
        if (r < 0)
                return r;
        return conn_send(fd, buf, len);
}

/* Reads and forgets what a refused peer already sent. Closing a socket with unread messages
 * makes the peer's next recv() fail with ECONNRESET before it gets to our answer; bounded, as
 * the peer may keep sending. */
static void discard_input(int fd) {
        char buf[64];

        for (int i = 0; i < 8; i++)
                if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC) <= 0)
                        return;
}

/* Answers one request. A negative return drops the connection. */
static int conn_handle(AdminConn *c, const void *request, size_t len) {
        _cleanup_free_ char *buf = NULL;
        AdminCommand command;
        size_t n;
        int r;

        r = admin_request_decode(request, len, &command);
        if (r == -EOPNOTSUPP)
                /* A newer ringctl: say so and keep the connection; the protocol is intact. */
                return send_error(c->fd, r, "unknown command");
        if (r < 0) {
                (void) send_error(c->fd, r,
                                  r == -EMSGSIZE ? "request too large" : "malformed request");
                return r;
        }

        log_debug("Admin request \"%s\" from pid %ld, uid %lu.", admin_command_to_string(command),
                  (long) c->pid, (unsigned long) c->uid);
        r = response_for(c->admin, command, &buf, &n);
        if (r == -EMSGSIZE)
                return send_error(c->fd, r, "response too large");
        if (r < 0) {
                log_warning_errno(r, "Failed to answer admin request \"%s\", closing the "
                                  "connection", admin_command_to_string(command));
                (void) send_error(c->fd, -EIO, "internal error");
                return r;
        }
        r = conn_send(c->fd, buf, n);
        if (r == -EMSGSIZE)
                /* The kernel refused a message this large (net.core.wmem_max below the
                 * default): better an explicit failure than a silent drop. */
                return send_error(c->fd, r, "response too large for the socket buffer");
        return r;
}

static int conn_rearm_idle(AdminConn *c) {
        uint64_t now;
        int r;

        r = sd_event_now(c->admin->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        r = sd_event_source_set_time(c->idle, now + ADMIN_IDLE_TIMEOUT_USEC);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
}

static int on_conn_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        AdminConn *c = userdata;

        log_debug("Closing idle admin connection of pid %ld.", (long) c->pid);
        conn_free(c);
        return 0;
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        /* One byte more than a request may have: MSG_TRUNC reports the real length anyway. */
        char buf[ADMIN_REQUEST_MAX + 1];
        AdminConn *c = userdata;
        ssize_t k;
        int r;

        /* One message per wake-up: a chatty client takes turns with everything else. */
        k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k <= 0) {
                /* 0: the peer closed (SEQPACKET end of file); < 0: the socket failed. */
                conn_free(c);
                return 0;
        }
        r = conn_handle(c, buf, (size_t) k);
        if (r >= 0)
                r = conn_rearm_idle(c);
        if (r < 0) {
                log_full(LOG_DEBUG, r, __FILE__, __LINE__, __func__, NULL, NULL,
                         "Dropping admin connection of pid %ld", (long) c->pid);
                conn_free(c);
        }
        return 0;
}

/* --- who may connect --- */

/* The peer's supplementary groups as they were at connect(): SO_PEERGROUPS (Linux 4.13) is
 * tied to the socket, so a peer that exits and leaves its pid to another process cannot lend
 * us that process's groups. */
static int peer_groups_sockopt(int fd, gid_t **ret, size_t *ret_n) {
        socklen_t len = 64 * sizeof(gid_t);

        for (;;) {
                _cleanup_free_ gid_t *groups = malloc(len > 0 ? len : 1);
                socklen_t want = len;

                if (!groups)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &want) >= 0) {
                        *ret = TAKE_PTR(groups);
                        *ret_n = want / sizeof(gid_t);
                        return 0;
                }
                /* ERANGE: want now holds the size needed. It can only grow when the peer's
                 * groups change, which they cannot after connect(); bound the retries anyway. */
                if (errno != ERANGE || want <= len)
                        return negative_errno();
                len = want;
        }
}

/* Older kernels: the "Groups:" line of /proc/PID/status. The pid may have been reused if the
 * peer is gone already; the uid must still match, which narrows that to the same user. */
static int peer_groups_proc(pid_t pid, uid_t uid, gid_t **ret, size_t *ret_n) {
        _cleanup_free_ char *line = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        bool uid_ok = false, found = false;
        char path[64];
        size_t size = 0, n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%ld/status", (long) pid);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (getline(&line, &size, f) > 0) {
                unsigned long real;

                if (sscanf(line, "Uid: %lu", &real) == 1)
                        uid_ok = real == (unsigned long) uid;
                else if (strncmp(line, "Groups:", 7) == 0) {
                        char *p = line + 7, *end;

                        found = true;
                        for (;;) {
                                unsigned long g;
                                gid_t *bigger;

                                errno = 0;
                                g = strtoul(p, &end, 10);
                                if (end == p || errno != 0)
                                        break;
                                bigger = realloc(groups, (n + 1) * sizeof(gid_t));
                                if (!bigger) {
                                        fclose(f);
                                        return -ENOMEM;
                                }
                                groups = bigger;
                                groups[n++] = (gid_t) g;
                                p = end;
                        }
                }
        }
        fclose(f);
        if (!found || !uid_ok)
                return -ESRCH;
        *ret = TAKE_PTR(groups);
        *ret_n = n;
        return 0;
}

static bool peer_allowed(Admin *a, int fd, const struct ucred *cred) {
        _cleanup_free_ gid_t *groups = NULL;
        size_t n = 0;
        int r;

        if (cred->uid == 0 || cred->uid == geteuid())
                return true;
        if (a->admin_gid == ADMIN_GID_NONE)
                return false;
        if (cred->gid == a->admin_gid)
                return true;
        r = peer_groups_sockopt(fd, &groups, &n);
        if (r == -ENOPROTOOPT)
                r = peer_groups_proc(cred->pid, cred->uid, &groups, &n);
        if (r < 0) {
                /* Unknown groups deny: the check fails closed. */
                log_full(LOG_DEBUG, r, __FILE__, __LINE__, __func__, NULL, NULL,
                         "Cannot read the groups of admin peer pid %ld", (long) cred->pid);
                return false;
        }
        for (size_t i = 0; i < n; i++)
                if (groups[i] == a->admin_gid)
                        return true;
        return false;
}

/* Takes fd (accepted, non-blocking): either it becomes a connection or it is closed. */
static void accept_one(Admin *a, int fd) {
        _cleanup_close_ int cfd = fd;
        _cleanup_free_ AdminConn *c = NULL;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        int sndbuf = ADMIN_RESPONSE_MAX + 4096;
        int r;

        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
                log_full(LOG_DEBUG, len != sizeof(cred) ? EBADMSG : errno, __FILE__, __LINE__,
                         __func__, NULL, NULL, "Cannot read admin peer credentials, closing");
                return;
        }
        if (!peer_allowed(a, cfd, &cred)) {
                if (ratelimit_below(&a->denied_log))
                        log_notice("Denied admin connection from pid %ld, uid %lu: not root, not "
                                   "uid %lu, not in the admin group.",
                                   (long) cred.pid, (unsigned long) cred.uid,
                                   (unsigned long) geteuid());
                (void) send_error(cfd, -EACCES, "permission denied");
                discard_input(cfd);
                return;
        }
        if (a->n_conns >= ADMIN_CONNECTIONS_MAX) {
                log_debug("Refusing admin connection from pid %ld: %d connections open.",
                          (long) cred.pid, ADMIN_CONNECTIONS_MAX);
                (void) send_error(cfd, -EBUSY, "too many admin connections");
                discard_input(cfd);
                return;
        }

        /* A SEQPACKET message must fit the sender's buffer at once; raise it so that a full
         * answer does. The kernel caps it at net.core.wmem_max; conn_handle() copes if so. */
        (void) setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

        c = calloc(1, sizeof(*c));
        if (!c) {
                log_warning("Out of memory, closing admin connection.");
                return;
        }
        c->fd = -1;
        c->pid = cred.pid;
        c->uid = cred.uid;
        r = sd_event_add_io(a->event, &c->io, cfd, EPOLLIN, on_conn_io, c);
        if (r >= 0)
                r = sd_event_source_set_priority(c->io, ADMIN_PRIORITY);
        if (r >= 0)
                r = sd_event_add_time(a->event, &c->idle, CLOCK_MONOTONIC, UINT64_MAX,
                                      ADMIN_IDLE_TIMEOUT_USEC / 10, on_conn_idle, c);
        if (r >= 0)
                r = sd_event_source_set_priority(c->idle, ADMIN_PRIORITY);
        if (r < 0) {
                log_warning_errno(r, "Failed to watch admin connection, closing it");
                sd_event_source_unref(c->io);
                sd_event_source_unref(c->idle);
                return;
        }
        c->fd = TAKE_FD(cfd);
        c->admin = a;
        c->next = a->conns;
        if (a->conns)
                a->conns->prev = c;
        a->conns = c;
        a->n_conns++;
        r = conn_rearm_idle(c);
        if (r < 0) {
                log_warning_errno(r, "Failed to arm admin connection timeout, closing it");
                conn_free(TAKE_PTR(c));
                return;
        }
        log_debug("Admin connection from pid %ld, uid %lu.", (long) cred.pid,
                  (unsigned long) cred.uid);
        TAKE_PTR(c);
}

static int on_pause_end(sd_event_source *s, uint64_t usec, void *userdata) {
        Admin *a = userdata;

        (void) sd_event_source_set_enabled(a->listener, SD_EVENT_ON);
        return 0;
}

/* Stops accepting for a while; connections wait in the kernel's backlog meanwhile. */
static void listener_pause(Admin *a) {
        uint64_t now;

        if (sd_event_now(a->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_source_set_time(a->pause, now + ADMIN_ACCEPT_PAUSE_USEC) < 0 ||
            sd_event_source_set_enabled(a->pause, SD_EVENT_ONESHOT) < 0)
                return;
        (void) sd_event_source_set_enabled(a->listener, SD_EVENT_OFF);
}

static int on_listener(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Admin *a = userdata;

        for (int i = 0; i < ADMIN_ACCEPT_BURST; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd >= 0) {
                        accept_one(a, cfd);
                        continue;
                }
                switch (errno) {
                case EAGAIN:
                        return 0;
                case EINTR:
                case ECONNABORTED:
                case EPROTO:
                        /* This connection is gone; the next may be fine. */
                        continue;
                default:
                        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the broker is short of resources,
                         * which matters more than the admin socket. */
                        log_warning_errno(errno, "Failed to accept admin connection, pausing "
                                          "for %u s",
                                          (unsigned) (ADMIN_ACCEPT_PAUSE_USEC / 1000000));
                        listener_pause(a);
                        return 0;
                }
        }
        return 0;
}

/* --- the socket --- */

/* Makes the missing directories above path. Those we make get 0755 whatever the umask, so
 * that admin group members can reach the socket; existing ones are left alone. */
static int make_parents(const char *path) {
        _cleanup_free_ char *copy = strdup(path);

        if (!copy)
                return -ENOMEM;
        for (char *p = strchr(copy + 1, '/'); p; p = strchr(p + 1, '/')) {
                *p = '\0';
                if (mkdir(copy, 0755) >= 0) {
                        if (chmod(copy, 0755) < 0)
                                return negative_errno();
                } else if (errno != EEXIST)
                        return log_error_errno(errno, "Failed to create directory %s", copy);
                *p = '/';
        }
        return 0;
}

/* A socket file left by a broker that died is replaced; a live broker's is not, and a file
 * that is not a socket is never deleted. */
static int remove_stale(const char *path, const struct sockaddr_un *sa) {
        _cleanup_close_ int probe = -1;
        struct stat st;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return log_error_errno(errno, "Failed to check %s", path);
        }
        if (!S_ISSOCK(st.st_mode))
                return log_error_errno(EEXIST, "%s exists and is not a socket, not replacing it",
                                       path);
        probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0)
                return log_error_errno(errno, "Failed to create socket");
        if (connect(probe, (const struct sockaddr *) sa, sizeof(*sa)) >= 0 || errno == EAGAIN)
                return log_error_errno(EADDRINUSE, "Another broker answers on %s", path);
        if (errno != ECONNREFUSED)
                return log_error_errno(errno, "Failed to probe %s", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return log_error_errno(errno, "Failed to remove stale socket %s", path);
        log_debug("Removed stale admin socket %s.", path);
        return 0;
}

static int admin_bind(Admin *a, const char *path) {
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old;
        int r;

        if (path[0] != '/')
                /* admin_free() unlinks it later, when the working directory may differ. */
                return log_error_errno(EINVAL, "Control socket path \"%s\" is not absolute", path);
        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Control socket path %s is too long", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);

        r = make_parents(path);
        if (r < 0)
                return r;
        r = remove_stale(path, &sa);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create control socket");
        /* bind() applies the umask to the socket file. With 0117 it is exactly 0660 whatever
         * the umask was; the loop thread is the only one that creates files. */
        old = umask(0117);
        r = bind(fd, (const struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0)
                return log_error_errno(errno, "Failed to bind control socket %s", path);
        if (lstat(path, &st) < 0) {
                r = log_error_errno(errno, "Failed to stat control socket %s", path);
                (void) unlink(path);
                return r;
        }
        a->created = true;
        a->dev = st.st_dev;
        a->ino = st.st_ino;

        /* Connecting needs write access to the file: the admin group gets it through the
         * file's group. Without it only the group check of the broker would be in vain. */
        if (a->admin_gid != ADMIN_GID_NONE && st.st_gid != a->admin_gid &&
            chown(path, (uid_t) -1, a->admin_gid) < 0)
                log_warning_errno(errno, "Failed to give control socket %s to group %lu; members "
                                  "of that group will not be able to connect",
                                  path, (unsigned long) a->admin_gid);

        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on control socket %s", path);
        a->fd = TAKE_FD(fd);
        return 0;
}

/* Takes the socket systemd passed, if any: 1 taken, 0 none passed. */
static int admin_take_listen_fd(Admin *a) {
        struct sockaddr_un sa = {};
        socklen_t len = sizeof(sa);
        int n, flags;

        /* Unsets $LISTEN_*: the admin socket is the only one impulsed takes from systemd. */
        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "Failed to read sockets passed by the service manager");
        if (n == 0)
                return 0;

        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                if (a->fd < 0 && sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0) {
                        a->fd = fd;
                        continue;
                }
                log_warning("Ignoring file descriptor %d passed by the service manager: not the "
                            "first listening AF_UNIX SOCK_SEQPACKET socket.", fd);
                close(fd);
        }
        if (a->fd < 0)
                return log_error_errno(ENOTSOCK, "The service manager passed no listening AF_UNIX "
                                       "SOCK_SEQPACKET socket (check ListenSequentialPacket=)");

        /* accept4() is non-blocking per connection, but the listener itself must not block
         * either when another process takes a pending connection first. */
        flags = fcntl(a->fd, F_GETFL);
        if (flags < 0 || fcntl(a->fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return log_error_errno(errno, "Failed to make the control socket non-blocking");
        if (getsockname(a->fd, (struct sockaddr *) &sa, &len) >= 0 &&
            len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0] == '/') {
                sa.sun_path[sizeof(sa.sun_path) - 1] = '\0';
                a->path = strdup(sa.sun_path);
                if (!a->path)
                        return log_error_errno(ENOMEM, "Out of memory");
        }
        return 1;
}

int admin_new(Admin **ret, sd_event *e, Broker *b, const char *path_or_null, gid_t admin_gid) {
        _cleanup_(admin_freep) Admin *a = NULL;
        char path[ADMIN_SOCKET_PATH_MAX];
        int r;

        if (!ret || !e || !b)
                return -EINVAL;
        a = calloc(1, sizeof(*a));
        if (!a)
                return log_error_errno(ENOMEM, "Out of memory");
        a->fd = -1;
        a->event = sd_event_ref(e);
        a->broker = b;
        a->admin_gid = admin_gid;

        r = admin_take_listen_fd(a);
        if (r < 0)
                return r;
        if (r > 0)
                log_debug("Using control socket %s passed by the service manager.",
                          a->path ? a->path : "(unnamed)");
        else {
                if (!path_or_null) {
                        r = admin_socket_path(bus_name(broker_bus(b)), path, sizeof(path));
                        if (r < 0)
                                return log_error_errno(r, "Failed to determine the control "
                                                       "socket path");
                        path_or_null = path;
                }
                a->path = strdup(path_or_null);
                if (!a->path)
                        return log_error_errno(ENOMEM, "Out of memory");
                r = admin_bind(a, a->path);
                if (r < 0)
                        return r;
        }

        r = sd_event_add_io(e, &a->listener, a->fd, EPOLLIN, on_listener, a);
        if (r >= 0)
                r = sd_event_source_set_priority(a->listener, ADMIN_PRIORITY);
        if (r >= 0)
                r = sd_event_add_time(e, &a->pause, CLOCK_MONOTONIC, UINT64_MAX, 0, on_pause_end,
                                      a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->pause, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the control socket");
        (void) sd_event_source_set_description(a->listener, "admin-listener");
        (void) sd_event_source_set_description(a->pause, "admin-pause");

        log_debug("Admin socket ready at %s.", a->path ? a->path : "(unnamed)");
        *ret = TAKE_PTR(a);
        return 0;
}

Admin *admin_free(Admin *a) {
        struct stat st;

        if (!a)
                return NULL;
        while (a->conns)
                conn_free(a->conns);
        sd_event_source_unref(a->listener);
        sd_event_source_unref(a->pause);
        closep(&a->fd);
        /* Only our own socket: a newer broker may have replaced it with its own since. */
        if (a->created && a->path && lstat(a->path, &st) >= 0 && st.st_dev == a->dev &&
            st.st_ino == a->ino)
                (void) unlink(a->path);
        free(a->path);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

const char *admin_path(const Admin *a) {
        return a ? a->path : NULL;
}
