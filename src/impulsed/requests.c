/* SPDX-License-Identifier: MIT */
/*
 * Control-plane request handlers (requests.h). Every field comes from shared memory and is
 * checked before use; names are copied into owned, validated C strings. A request naming an
 * unknown client cannot be answered (v1 replies go to the client's own segment) and is dropped
 * with a warning. Requests waiting for an argon2 check hold only ids and copies, and look the
 * client and channel up again when they resume: either may have gone meanwhile.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients.h"
#include "fingerprint.h"
#include "log.h"
#include "macro.h"
#include "registry.h"
#include "requests.h"
#include "sigbus.h"
#include "time-util.h"
#include "utf8.h"

#define APP_NAME_MAX 128
#define OBJECT_NAME_MAX 255
#define HEARTBEAT_MS_MAX (3600 * 1000)

typedef struct Pending {
        struct Pending *prev, *next;
        Broker *broker;
        ControlType type;
        uint64_t client_id;
        int64_t correlation_id;
        char *name;                     /* channel or function */
        uint64_t fp, resp_fp;           /* publish: fp; expose: req and resp */
        uint32_t arena_capacity;
        uint64_t channel_id;            /* subscribe */
} Pending;

static Pending *pending_new(Broker *b, ControlType type, uint64_t client_id, int64_t correlation_id) {
        Pending *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        *p = (Pending) { .broker = b, .type = type, .client_id = client_id,
                         .correlation_id = correlation_id, .next = b->pending };
        if (b->pending)
                b->pending->prev = p;
        b->pending = p;
        return p;
}

static void pending_free(Pending *p) {
        if (!p)
                return;
        if (p->prev)
                p->prev->next = p->next;
        else
                p->broker->pending = p->next;
        if (p->next)
                p->next->prev = p->prev;
        free(p->name);
        free(p);
}

void requests_free_pending(Broker *b) {
        while (b->pending)
                pending_free(b->pending);
}

/* Formats an error message into a static buffer: replies are encoded before the next one. */
static const char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *msgf(const char *fmt, ...) {
        static char buf[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        return buf;
}

/* The reply message for a failure of the broker's own resources (broker_is_resource_error()). */
static const char *resource_message(int error) {
        return error == -EMFILE ? "the broker has run out of file descriptors; try again later" :
               error == -ENFILE ? "the system has run out of file descriptors; try again later" :
                                  "the broker is out of memory; try again later";
}

/* Logs a failure of the broker's own resources met while serving c (what failed; the client
 * is answered INTERNAL by the caller) and returns the message for that reply. */
static const char *resource_refusal(Broker *b, const Client *c, const char *what, int error) {
        broker_log_resource(b, c, msgf("%s for client %" PRIu64 "; answered INTERNAL", what, c->id),
                            error);
        return resource_message(error);
}

/* Sends a reply; a client whose segment vanished under us is reaped (do not use c after). */
static void send_reply(Broker *b, Client *c, const ControlMsg *m) {
        int r = clients_send(b, c, m);

        if (r == -EFAULT)
                reaper_reap(b, c->id, false, "its reply segment was truncated under the broker");
        else if (r < 0 && r != -EAGAIN) {
                /* A reply ring with corrupt cursors (-EBADMSG) or a reply too large for it: the
                 * client loses this reply; the warning is rate-limited like all hostile input. */
                c->replies_dropped++;
                broker_warn_hostile(b, c, msgf("Could not deliver a %s reply to client %" PRIu64 "; dropped it",
                                               control_type_name(m->type), c->id), r);
        }
}

/* Copies a client-supplied name into *ret if it is 1..max bytes of UTF-8 without control
 * characters: names end up in logs, JSON and terminals. */
static int name_dup(Text t, size_t max, char **ret) {
        if (t.len == 0 || t.len > max)
                return -EINVAL;
        for (size_t i = 0; i < t.len;) {
                uint32_t cp;
                size_t n = utf8_sequence(t.ptr + i, t.len - i, &cp);

                if (n == 0 || cp == 0 || utf8_is_control(cp))
                        return -EINVAL;
                i += n;
        }
        return text_dup(t, ret);
}

/* The client a request names, or NULL (warned) if there is none. */
static Client *request_client(Broker *b, uint64_t client_id, ControlType type) {
        Client *c = registry_client(b->registry, client_id);

        if (!c) {
                broker_warn_hostile(b, NULL, msgf("%s for unknown client id %" PRIu64 " (not registered, "
                                                  "or already reaped)", control_type_name(type), client_id), 0);
                return NULL;
        }
        reaper_seen(b->reaper, c);
        return c;
}

/* True if the owner of a name is registered and alive, so its name is taken. */
static bool owner_alive(Broker *b, uint64_t owner_id) {
        Client *o = registry_client(b->registry, owner_id);
        return o && !reaper_client_dead(b->reaper, o);
}

/* ---- Register ---- */

static void reply_register(Broker *b, Client *c, int64_t corr, uint64_t id, int status, const char *msg) {
        ControlMsg m = { .type = CONTROL_REGISTER_REPLY };

        m.register_reply = (ControlRegisterReply) { .correlation_id = corr, .client_id = (int64_t) id,
                                                    .status = status, .message = text_from_cstr(msg) };
        send_reply(b, c, &m);
}

/* The broker is short of descriptors or memory, the registering client (ring mapped and
 * checked, not registered) is not at fault: say so in the log and to the client, which
 * would otherwise wait for its timeout. */
static void refuse_register(Broker *b, Client *c, pid_t pid, int64_t corr, const char *what, int error) {
        broker_log_resource(b, NULL, msgf("%s for the Register naming reply segment %s (pid %ld); answered "
                                          "INTERNAL", what, c->reply_seg.name, (long) pid), error);
        reply_register(b, c, corr, 0, CONTROL_STATUS_INTERNAL, resource_message(error));
}

static void handle_register(Broker *b, const ControlRegister *req, bool older_form) {
        _cleanup_free_ char *app = NULL, *segment = NULL;
        _cleanup_(client_freep) Client *c = NULL;
        Client *other;
        LogContext ctx;
        pid_t pid;
        int r;

        r = text_dup(req->reply_segment, &segment);
        if (r == -ENOMEM) {
                broker_log_resource(b, NULL, "Cannot copy the reply segment name of a Register; it gets no "
                                    "answer", r);
                return;
        }
        if (r < 0 || !names_is_client_segment(&b->bus, segment)) {
                broker_warn_hostile(b, NULL, msgf("Register with a reply segment name that is not a client "
                                                  "segment of this bus (%.*s)", (int) MIN(req->reply_segment.len, 80),
                                                  req->reply_segment.ptr), 0);
                return;
        }
        if (req->pid < 0 || req->pid > INT32_MAX) {
                broker_warn_hostile(b, NULL, msgf("Register from \"%s\" with impossible pid %" PRId64, segment, req->pid), 0);
                return;
        }
        pid = (pid_t) req->pid;

        c = calloc(1, sizeof(*c));
        if (!c) {
                broker_log_resource(b, NULL, msgf("Cannot register a client with reply segment %s; it gets no "
                                                  "answer", segment), -ENOMEM);
                return;
        }
        c->reply_seg = SEGMENT_NULL;
        r = clients_open_reply(b, c, segment, pid);
        if (broker_is_resource_error(r)) {
                /* Out of descriptors before its ring was mapped: with the spare one released,
                 * the ring can be mapped (its descriptor closed again at once) just to say so. */
                int error = r;

                broker_spare_fd_release(b);
                r = clients_open_reply(b, c, segment, pid);
                broker_spare_fd_restore(b);
                if (r >= 0) {
                        refuse_register(b, c, pid, req->correlation_id, "Cannot open a reply segment", error);
                        return;
                }
                if (broker_is_resource_error(r)) {
                        broker_log_resource(b, NULL, msgf("Cannot open reply segment %s (pid %ld) of a Register; "
                                                          "it gets no answer", segment, (long) pid), r);
                        return;
                }
                /* Otherwise the second attempt got further and found the client at fault. */
        }
        if (r < 0) {
                /* Without a verified reply ring there is nobody to answer. */
                broker_warn_hostile(b, NULL, msgf("Register naming reply segment \"%s\" (pid %ld) refused: %s",
                                                  segment, (long) pid,
                                                  r == -EPERM ? "the pid does not run as the segment's owner" :
                                                  r == -EBADMSG ? "it is not a valid ring" :
                                                  r == -ESRCH ? "no such process" : strerror(-r)), r);
                return;
        }

        r = name_dup(req->app_name, APP_NAME_MAX, &app);
        if (r == -ENOMEM) {
                refuse_register(b, c, pid, req->correlation_id, "Cannot copy the app name", r);
                return;
        }
        if (r < 0) {
                reply_register(b, c, req->correlation_id, 0, CONTROL_STATUS_DENIED,
                               "app_name must be 1-128 bytes of printable UTF-8");
                return;
        }
        if (req->heartbeat_ms < 0 || req->heartbeat_ms > HEARTBEAT_MS_MAX) {
                reply_register(b, c, req->correlation_id, 0, CONTROL_STATUS_DENIED,
                               "heartbeat_ms must be between 0 and 3600000");
                return;
        }

        /* One registration per reply segment. v1 requests carry no credentials, so a live
         * registration is never replaced (anyone can name a victim's pid and segment); a dead
         * one is reaped first. */
        other = registry_client_by_reply_segment(b->registry, c->reply_seg.name);
        if (other) {
                if (!reaper_client_dead(b->reaper, other)) {
                        reply_register(b, c, req->correlation_id, 0, CONTROL_STATUS_EXISTS,
                                       msgf("reply segment %s is already registered by client %" PRIu64,
                                            segment, other->id));
                        return;
                }
                reaper_reap(b, other->id, true, "its process died");
        }
        if (registry_n_clients(b->registry) >= BROKER_MAX_CLIENTS) {
                reply_register(b, c, req->correlation_id, 0, CONTROL_STATUS_INTERNAL,
                               msgf("the broker serves its maximum of %u clients", BROKER_MAX_CLIENTS));
                return;
        }

        c->id = clients_new_id(b);
        c->app_name = TAKE_PTR(app);
        c->pid = pid;
        c->nonce = (uint64_t) req->nonce;
        c->heartbeat_ms = req->heartbeat_ms;
        c->last_seen_ns = now_ns(CLOCK_MONOTONIC);

        r = reaper_watch(b->reaper, c);
        if (broker_is_resource_error(r)) {
                refuse_register(b, c, pid, req->correlation_id, "Cannot watch the client's process", r);
                return;
        }
        if (r < 0) {
                reply_register(b, c, req->correlation_id, 0, CONTROL_STATUS_INTERNAL,
                               msgf("cannot watch pid %ld: %s", (long) pid, strerror(-r)));
                return;
        }
        r = registry_add_client(b->registry, c);
        if (r < 0) {
                reaper_unwatch(b->reaper, c);
                if (broker_is_resource_error(r))
                        refuse_register(b, c, pid, req->correlation_id, "Cannot add a client", r);
                else
                        reply_register(b, c, req->correlation_id, 0, CONTROL_STATUS_INTERNAL,
                                       msgf("cannot add client: %s", strerror(-r)));
                return;
        }

        ctx = client_log_context(c);
        log_ctx(LOG_INFO, LOG_MESSAGE_CLIENT_REGISTERED, &ctx,
                "Registered client %" PRIu64 " \"%s\" (pid %ld, uid %lu%s%s%s, reply segment %s%s)",
                c->id, c->app_name, (long) c->pid, (unsigned long) c->uid, c->unit ? ", unit " : "",
                c->unit ?: "", "", c->reply_seg.name, older_form ? ", older Register form" : "");
        broker_counts_changed(b);
        reply_register(b, TAKE_PTR(c), req->correlation_id, ctx.client_id, CONTROL_STATUS_OK, "");
}

/* ---- Unregister, Heartbeat ---- */

static void handle_unregister(Broker *b, const ControlUnregister *req) {
        Client *c = request_client(b, (uint64_t) req->client_id, CONTROL_UNREGISTER);

        if (c)
                reaper_reap(b, c->id, false, "it unregistered");
}

static void handle_heartbeat(Broker *b, const ControlHeartbeat *req) {
        /* request_client() records the heartbeat; v1 defines no reply. */
        (void) request_client(b, (uint64_t) req->client_id, CONTROL_HEARTBEAT);
}

/* ---- PublishChannel ---- */

static void reply_publish(Broker *b, Client *c, int64_t corr, const Channel *ch, int status, const char *msg) {
        ControlMsg m = { .type = CONTROL_PUBLISH_REPLY };

        m.publish_reply = (ControlPublishReply) {
                .correlation_id = corr,
                .channel_id = ch ? (int64_t) ch->id : 0,
                .schema_fp = ch ? (int64_t) ch->schema_fp : 0,
                .arena = text_from_cstr(ch ? ch->arena.name : ""),
                .status = status,
                .message = text_from_cstr(msg),
        };
        send_reply(b, c, &m);
}

/* Creates an arena named by make_name for a fresh id, skipping names squatted by others. */
static int create_arena(Broker *b, int (*make_name)(const BusNames *, uint64_t, char *, size_t),
                        uint64_t (*next_id)(Registry *), uint32_t capacity, uint64_t *ret_id, Segment *ret) {
        char name[NAMES_SEGMENT_MAX];
        int r = -EEXIST;

        for (unsigned attempt = 0; attempt < 16 && r == -EEXIST; attempt++) {
                uint64_t id = next_id(b->registry);

                r = make_name(&b->bus, id, name, sizeof(name));
                if (r < 0)
                        return r;
                r = broker_create_arena(b, name, capacity, ret);
                if (r == -EEXIST)
                        broker_warn_hostile(b, NULL, msgf("Arena name %s was taken by someone else; "
                                                          "using the next id", name), r);
                if (r == 0)
                        *ret_id = id;
        }
        return r;
}

static void finish_publish(Pending *p, char *hash) {
        _cleanup_free_ char *key_hash = hash;
        Broker *b = p->broker;
        Client *c = registry_client(b->registry, p->client_id);
        _cleanup_(channel_freep) Channel *ch = NULL;
        Channel *existing;
        LogContext ctx;
        int r;

        if (!c)
                return;
        existing = registry_channel_by_name(b->registry, p->name);
        if (existing && owner_alive(b, existing->owner_id)) {
                reply_publish(b, c, p->correlation_id, NULL, CONTROL_STATUS_EXISTS,
                              msgf("channel \"%s\" is already published by client %" PRIu64 " (\"%s\")",
                                   p->name, existing->owner_id, existing->owner_app));
                return;
        }
        if (existing) {
                log_ctx(LOG_NOTICE, NULL, &((LogContext) { .channel = p->name }),
                        "Reclaiming channel \"%s\": its owner %" PRIu64 " is gone", p->name, existing->owner_id);
                reaper_reap(b, existing->owner_id, true, "its channel name was reclaimed");
                existing = registry_remove_channel(b->registry, existing->id);
                if (existing) {
                        segment_unlink(existing->arena.name);
                        channel_free(existing);
                }
        }

        ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->name = strdup(p->name)) || !(ch->owner_app = strdup(c->app_name))) {
                reply_publish(b, c, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              resource_refusal(b, c, "Cannot record a channel", -ENOMEM));
                return;
        }
        ch->arena = SEGMENT_NULL;
        ch->owner_id = c->id;
        ch->schema_fp = p->fp;
        ch->key_hash = TAKE_PTR(key_hash);
        r = create_arena(b, names_arena, registry_next_channel_id, b->config.arena_capacity, &ch->id, &ch->arena);
        if (r < 0) {
                log_error_errno(r, "Cannot create an arena for channel \"%s\"", p->name);
                reply_publish(b, c, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              msgf("cannot create the channel arena: %s", strerror(-r)));
                return;
        }
        r = registry_add_channel(b->registry, ch);
        if (r < 0) {
                segment_unlink(ch->arena.name);
                reply_publish(b, c, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              msgf("cannot add the channel: %s", strerror(-r)));
                return;
        }
        ctx = client_log_context(c);
        ctx.channel = ch->name;
        log_ctx(LOG_INFO, NULL, &ctx, "Client %" PRIu64 " published channel %" PRIu64 " \"%s\" (schema "
                "0x%016" PRIx64 "%s, arena %s)", c->id, ch->id, ch->name, ch->schema_fp,
                ch->key_hash ? ", access key required" : "", ch->arena.name);
        broker_counts_changed(b);
        reply_publish(b, c, p->correlation_id, TAKE_PTR(ch), CONTROL_STATUS_OK, "");
}

static void publish_hashed(int r, char *hash, void *userdata) {
        Pending *p = userdata;
        Client *c = registry_client(p->broker->registry, p->client_id);

        if (r < 0) {
                if (c)
                        reply_publish(p->broker, c, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                                      broker_is_resource_error(r) ?
                                              resource_refusal(p->broker, c, "Cannot hash an access key",
                                                               r) :
                                              msgf("cannot hash the access key: %s", strerror(-r)));
                free(hash);
        } else
                finish_publish(p, hash);
        pending_free(p);
}

static void handle_publish(Broker *b, const ControlPublishChannel *req) {
        _cleanup_free_ char *name = NULL, *error = NULL;
        Client *c = request_client(b, (uint64_t) req->client_id, CONTROL_PUBLISH_CHANNEL);
        Channel *existing;
        Pending *p;
        uint64_t fp;
        int r;

        if (!c)
                return;
        r = name_dup(req->channel, OBJECT_NAME_MAX, &name);
        if (r == -ENOMEM) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              resource_refusal(b, c, "Cannot copy a channel name", r));
                return;
        }
        if (r < 0) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_DENIED,
                              "channel name must be 1-255 bytes of printable UTF-8");
                return;
        }
        r = fingerprint_schema_json(req->schema_json.ptr, req->schema_json.len, &fp, NULL, &error);
        if (r == -ENOMEM) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              resource_refusal(b, c, "Cannot parse a channel's schema", r));
                return;
        }
        if (r < 0) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_SCHEMA_MISMATCH,
                              msgf("the schema of channel \"%s\" is not a valid Avro schema: %s", name,
                                   error ?: strerror(-r)));
                return;
        }
        /* Refuse early when the name is held; finish_publish() checks again after hashing. */
        existing = registry_channel_by_name(b->registry, name);
        if (existing && owner_alive(b, existing->owner_id)) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_EXISTS,
                              msgf("channel \"%s\" is already published by client %" PRIu64 " (\"%s\")",
                                   name, existing->owner_id, existing->owner_app));
                return;
        }

        if (req->access_key.len > KEYS_KEY_MAX) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_DENIED,
                              msgf("access keys are at most %u bytes", KEYS_KEY_MAX));
                return;
        }
        if (registry_n_channels(b->registry) >= BROKER_MAX_CHANNELS) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              msgf("the broker holds its maximum of %u channels", BROKER_MAX_CHANNELS));
                return;
        }
        p = pending_new(b, CONTROL_PUBLISH_CHANNEL, c->id, req->correlation_id);
        if (!p) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              resource_refusal(b, c, "Cannot queue a PublishChannel", -ENOMEM));
                return;
        }
        p->name = TAKE_PTR(name);
        p->fp = fp;
        if (req->access_key.len == 0) {
                finish_publish(p, NULL);
                pending_free(p);
                return;
        }
        r = keys_hash_async(b->keys, req->access_key.ptr, req->access_key.len, publish_hashed, p);
        if (r < 0) {
                reply_publish(b, c, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                              broker_is_resource_error(r) ?
                                      resource_refusal(b, c, "Cannot queue an access key for hashing", r) :
                                      msgf("cannot hash the access key now: %s", strerror(-r)));
                pending_free(p);
        }
}

/* ---- ListChannels ---- */

typedef struct ListBuild {
        ControlChannelInfo *items;
        size_t n, allocated;
} ListBuild;

static int collect_channel(Channel *ch, void *userdata) {
        ListBuild *l = userdata;

        if (l->n == l->allocated) {
                size_t n = l->allocated ? l->allocated * 2 : 16;
                ControlChannelInfo *items = reallocarray(l->items, n, sizeof(*items));
                if (!items)
                        return -ENOMEM;
                l->items = items;
                l->allocated = n;
        }
        l->items[l->n++] = (ControlChannelInfo) {
                .channel_id = (int64_t) ch->id,
                .name = text_from_cstr(ch->name),
                .owner_app = text_from_cstr(ch->owner_app),
                .schema_fp = (int64_t) ch->schema_fp,
                .requires_key = ch->key_hash != NULL,
        };
        return 0;
}

static void handle_list_channels(Broker *b, const ControlListChannels *req) {
        Client *c = request_client(b, (uint64_t) req->client_id, CONTROL_LIST_CHANNELS);
        ListBuild l = { 0 };
        ControlMsg m = { .type = CONTROL_CHANNEL_LIST };
        size_t limit;

        if (!c)
                return;
        if (registry_foreach_channel(b->registry, collect_channel, &l) < 0) {
                /* v1's ChannelList has no status: an empty list is the only answer left. */
                broker_log_resource(b, c, msgf("Cannot list the channels for client %" PRIu64 "; it gets an "
                                               "empty list", c->id), -ENOMEM);
                l.n = 0;
        }
        m.channel_list = (ControlChannelList) { .correlation_id = req->correlation_id, .n_channels = l.n,
                                                .channels = l.items };
        /* v1 cannot say "truncated": send the longest prefix that fits the client's ring. */
        limit = MIN((size_t) c->reply.capacity - RINGBUF_RECORD_PREFIX, (size_t) BROKER_REPLY_MAX);
        while (m.channel_list.n_channels > 0 && control_encoded_size(&m) > limit)
                m.channel_list.n_channels--;
        if (m.channel_list.n_channels < l.n)
                log_ctx(LOG_WARNING, NULL, &((LogContext) { .client_id = c->id, .app = c->app_name }),
                        "ChannelList for client %" PRIu64 " cut to %zu of %zu channels to fit its reply ring",
                        c->id, m.channel_list.n_channels, l.n);
        send_reply(b, c, &m);
        free(l.items);
}

/* ---- Subscribe ---- */

static void reply_subscribe(Broker *b, Client *c, int64_t corr, const Channel *ch, int status, const char *msg) {
        ControlMsg m = { .type = CONTROL_SUBSCRIBE_REPLY };

        m.subscribe_reply = (ControlSubscribeReply) {
                .correlation_id = corr,
                .arena = text_from_cstr(ch && status == CONTROL_STATUS_OK ? ch->arena.name : ""),
                .schema_fp = ch ? (int64_t) ch->schema_fp : 0,
                .status = status,
                .message = text_from_cstr(msg),
        };
        send_reply(b, c, &m);
}

static int reset_consumer_guarded(void *arg) {
        ringbuf_reset_consumer_ext(arg);
        return 0;
}

/* Grants a subscription after all checks passed. */
static void grant_subscribe(Broker *b, Client *c, Channel *ch, int64_t corr) {
        LogContext ctx;

        if (ch->subscriber_id && ch->subscriber_id != c->id && owner_alive(b, ch->subscriber_id)) {
                reply_subscribe(b, c, corr, ch, CONTROL_STATUS_EXISTS,
                                msgf("channel \"%s\" already has a subscriber (client %" PRIu64 "); "
                                     "v1 allows one", ch->name, ch->subscriber_id));
                return;
        }
        /* The new consumer may be a v1 peer that needs every wake-up (spec/wire-format.md,
         * "Wake-up flags"). */
        (void) sigbus_run(reset_consumer_guarded, ch->arena.base);
        ch->subscriber_id = c->id;
        ctx = client_log_context(c);
        ctx.channel = ch->name;
        log_ctx(LOG_INFO, NULL, &ctx, "Client %" PRIu64 " subscribed to channel %" PRIu64 " \"%s\"",
                c->id, ch->id, ch->name);
        reply_subscribe(b, c, corr, ch, CONTROL_STATUS_OK, "");
}

static const char *key_refusal(int r) {
        return r == -EBUSY ? "too many wrong access keys from this client; try again later" :
               r == -ENOBUFS ? "the broker is busy checking access keys; try again" :
               r < 0 ? "the access key could not be checked" : "wrong access key";
}

static void subscribe_verified(int r, void *userdata) {
        Pending *p = userdata;
        Broker *b = p->broker;
        Client *c = registry_client(b->registry, p->client_id);
        Channel *ch = registry_channel(b->registry, p->channel_id);

        if (c && !ch)
                reply_subscribe(b, c, p->correlation_id, NULL, CONTROL_STATUS_NOT_FOUND,
                                msgf("channel %" PRIu64 " is gone", p->channel_id));
        else if (c && broker_is_resource_error(r))
                /* The check failed for want of memory: no verdict on the key. */
                reply_subscribe(b, c, p->correlation_id, ch, CONTROL_STATUS_INTERNAL,
                                resource_refusal(b, c, "Cannot check an access key", r));
        else if (c && r != 1) {
                LogContext ctx = client_log_context(c);
                ctx.channel = ch->name;
                ctx.status = "DENIED";
                /* A rate-limited client (-EBUSY) was logged once by the key module; do not log
                 * every further attempt. */
                if (r != -EBUSY)
                        log_ctx(LOG_NOTICE, NULL, &ctx, "Client %" PRIu64 " denied channel \"%s\": %s", c->id,
                                ch->name, key_refusal(r));
                reply_subscribe(b, c, p->correlation_id, ch, CONTROL_STATUS_DENIED, key_refusal(r));
        } else if (c)
                grant_subscribe(b, c, ch, p->correlation_id);
        pending_free(p);
}

static void handle_subscribe(Broker *b, const ControlSubscribe *req) {
        Client *c = request_client(b, (uint64_t) req->client_id, CONTROL_SUBSCRIBE);
        Channel *ch;
        Pending *p;
        int r;

        if (!c)
                return;
        ch = registry_channel(b->registry, (uint64_t) req->channel_id);
        if (!ch) {
                reply_subscribe(b, c, req->correlation_id, NULL, CONTROL_STATUS_NOT_FOUND,
                                msgf("no channel with id %" PRId64, req->channel_id));
                return;
        }
        /* expected_fp 0 means "no expectation" for existing v1 connectors. */
        if (req->expected_fp != 0 && (uint64_t) req->expected_fp != ch->schema_fp) {
                reply_subscribe(b, c, req->correlation_id, ch, CONTROL_STATUS_SCHEMA_MISMATCH,
                                msgf("channel \"%s\" carries schema 0x%016" PRIx64 ", the subscriber expects "
                                     "0x%016" PRIx64, ch->name, ch->schema_fp, (uint64_t) req->expected_fp));
                return;
        }
        if (!ch->key_hash) {
                grant_subscribe(b, c, ch, req->correlation_id);
                return;
        }
        if (req->access_key.len == 0 || req->access_key.len > KEYS_KEY_MAX) {
                reply_subscribe(b, c, req->correlation_id, ch, CONTROL_STATUS_DENIED,
                                req->access_key.len ? "wrong access key" :
                                msgf("channel \"%s\" requires an access key", ch->name));
                return;
        }
        p = pending_new(b, CONTROL_SUBSCRIBE, c->id, req->correlation_id);
        if (!p) {
                reply_subscribe(b, c, req->correlation_id, ch, CONTROL_STATUS_INTERNAL,
                                resource_refusal(b, c, "Cannot queue a Subscribe", -ENOMEM));
                return;
        }
        p->channel_id = ch->id;
        r = keys_verify_async(b->keys, c->id, ch->key_hash, req->access_key.ptr, req->access_key.len,
                              subscribe_verified, p);
        if (r == -EBUSY)
                r = -ENOBUFS;   /* refused at once: the queue is full, not a wrong key */
        if (broker_is_resource_error(r))
                reply_subscribe(b, c, req->correlation_id, ch, CONTROL_STATUS_INTERNAL,
                                resource_refusal(b, c, "Cannot queue an access key check", r));
        else if (r < 0)
                reply_subscribe(b, c, req->correlation_id, ch, CONTROL_STATUS_DENIED, key_refusal(r));
        if (r < 0)
                pending_free(p);
}

/* ---- ExposeFunction ---- */

static void reply_function(Broker *b, Client *c, ControlType type, int64_t corr, const Function *f,
                           int status, const char *msg) {
        ControlMsg m = { .type = type };

        m.expose_reply = (ControlFunctionReply) {
                .correlation_id = corr,
                .fn_id = f ? (int64_t) f->id : 0,
                .req_fp = f ? (int64_t) f->req_fp : 0,
                .resp_fp = f ? (int64_t) f->resp_fp : 0,
                .req_arena = text_from_cstr(f && status == CONTROL_STATUS_OK ? f->arena.name : ""),
                .status = status,
                .message = text_from_cstr(msg),
        };
        send_reply(b, c, &m);
}

/* Copies the function name of an ExposeFunction or LookupFunction into *ret; if it cannot, answers
 * with a reply_type refusal and returns < 0 (do not use c after). */
static int function_name_dup(Broker *b, Client *c, ControlType reply_type, int64_t corr, Text t, char **ret) {
        int r = name_dup(t, OBJECT_NAME_MAX, ret);

        if (r == -ENOMEM)
                reply_function(b, c, reply_type, corr, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, "Cannot copy a function name", r));
        else if (r < 0)
                reply_function(b, c, reply_type, corr, NULL, CONTROL_STATUS_DENIED,
                               "function name must be 1-255 bytes of printable UTF-8");
        return r;
}

static void finish_expose(Pending *p, char *hash) {
        _cleanup_free_ char *key_hash = hash;
        Broker *b = p->broker;
        Client *c = registry_client(b->registry, p->client_id);
        _cleanup_(function_freep) Function *f = NULL;
        Function *existing;
        LogContext ctx;
        int r;

        if (!c)
                return;
        existing = registry_function_by_name(b->registry, p->name);
        if (existing && owner_alive(b, existing->owner_id)) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, p->correlation_id, NULL, CONTROL_STATUS_EXISTS,
                               msgf("function \"%s\" is already exposed by client %" PRIu64 " (\"%s\")",
                                    p->name, existing->owner_id, existing->owner_app));
                return;
        }
        if (existing) {
                log_ctx(LOG_NOTICE, NULL, &((LogContext) { .function = p->name }),
                        "Reclaiming function \"%s\": its owner %" PRIu64 " is gone", p->name, existing->owner_id);
                reaper_reap(b, existing->owner_id, true, "its function name was reclaimed");
                existing = registry_remove_function(b->registry, p->name);
                if (existing) {
                        segment_unlink(existing->arena.name);
                        function_free(existing);
                }
        }

        f = calloc(1, sizeof(*f));
        if (!f || !(f->name = strdup(p->name)) || !(f->owner_app = strdup(c->app_name))) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, "Cannot record a function", -ENOMEM));
                return;
        }
        f->arena = SEGMENT_NULL;
        f->owner_id = c->id;
        f->req_fp = p->fp;
        f->resp_fp = p->resp_fp;
        f->key_hash = TAKE_PTR(key_hash);
        r = create_arena(b, names_function, registry_next_function_id, p->arena_capacity, &f->id, &f->arena);
        if (r < 0) {
                log_error_errno(r, "Cannot create a request arena for function \"%s\"", p->name);
                reply_function(b, c, CONTROL_EXPOSE_REPLY, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               msgf("cannot create the request arena: %s", strerror(-r)));
                return;
        }
        r = registry_add_function(b->registry, f);
        if (r < 0) {
                segment_unlink(f->arena.name);
                reply_function(b, c, CONTROL_EXPOSE_REPLY, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               msgf("cannot add the function: %s", strerror(-r)));
                return;
        }
        ctx = client_log_context(c);
        ctx.function = f->name;
        log_ctx(LOG_INFO, NULL, &ctx, "Client %" PRIu64 " exposed function %" PRIu64 " \"%s\" (request 0x%016"
                PRIx64 ", response 0x%016" PRIx64 "%s, arena %s of %" PRIu32 " bytes)", c->id, f->id, f->name,
                f->req_fp, f->resp_fp, f->key_hash ? ", access key required" : "", f->arena.name,
                p->arena_capacity);
        broker_counts_changed(b);
        reply_function(b, c, CONTROL_EXPOSE_REPLY, p->correlation_id, TAKE_PTR(f), CONTROL_STATUS_OK, "");
}

static void expose_hashed(int r, char *hash, void *userdata) {
        Pending *p = userdata;
        Client *c = registry_client(p->broker->registry, p->client_id);

        if (r < 0) {
                if (c)
                        reply_function(p->broker, c, CONTROL_EXPOSE_REPLY, p->correlation_id, NULL,
                                       CONTROL_STATUS_INTERNAL,
                                       broker_is_resource_error(r) ?
                                               resource_refusal(p->broker, c, "Cannot hash an access key",
                                                               r) :
                                               msgf("cannot hash the access key: %s", strerror(-r)));
                free(hash);
        } else
                finish_expose(p, hash);
        pending_free(p);
}

/* The request arena capacity for req_arena_cap: 0 is the default; others are rounded up to a
 * power of two and bounded by the configured maximum. */
static uint32_t function_arena_capacity(const Broker *b, int64_t requested) {
        uint32_t c = RINGBUF_MIN_CAPACITY;

        if (requested <= 0)
                return b->config.arena_capacity;
        if ((uint64_t) requested >= b->config.max_arena_capacity)
                return b->config.max_arena_capacity;
        while (c < (uint64_t) requested)
                c <<= 1;
        return c;
}

/* Fingerprints the request or response schema (which) of function name into *ret_fp; if it cannot,
 * answers the ExposeFunction and returns < 0 (do not use c after). */
static int expose_schema(Broker *b, Client *c, int64_t corr, const char *name, const char *which, Text json,
                         uint64_t *ret_fp) {
        _cleanup_free_ char *error = NULL;
        char what[64];
        int r;

        r = fingerprint_schema_json(json.ptr, json.len, ret_fp, NULL, &error);
        if (r == -ENOMEM) {
                snprintf(what, sizeof(what), "Cannot parse a function's %s schema", which);
                reply_function(b, c, CONTROL_EXPOSE_REPLY, corr, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, what, r));
        } else if (r < 0)
                reply_function(b, c, CONTROL_EXPOSE_REPLY, corr, NULL, CONTROL_STATUS_SCHEMA_MISMATCH,
                               msgf("the %s schema of \"%s\" is not a valid Avro schema: %s", which, name,
                                    error ?: strerror(-r)));
        return r;
}

static void handle_expose(Broker *b, const ControlExposeFunction *req) {
        _cleanup_free_ char *name = NULL;
        Client *c = request_client(b, (uint64_t) req->client_id, CONTROL_EXPOSE_FUNCTION);
        uint64_t req_fp, resp_fp;
        Function *existing;
        Pending *p;
        int r;

        if (!c)
                return;
        if (function_name_dup(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, req->fn_name, &name) < 0)
                return;
        if (req->req_arena_cap < 0) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, NULL, CONTROL_STATUS_DENIED,
                               "req_arena_cap must not be negative");
                return;
        }
        if (expose_schema(b, c, req->correlation_id, name, "request", req->req_schema_json, &req_fp) < 0)
                return;
        if (expose_schema(b, c, req->correlation_id, name, "response", req->resp_schema_json, &resp_fp) < 0)
                return;
        existing = registry_function_by_name(b->registry, name);
        if (existing && owner_alive(b, existing->owner_id)) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, NULL, CONTROL_STATUS_EXISTS,
                               msgf("function \"%s\" is already exposed by client %" PRIu64 " (\"%s\")",
                                    name, existing->owner_id, existing->owner_app));
                return;
        }

        if (req->access_key.len > KEYS_KEY_MAX) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, NULL, CONTROL_STATUS_DENIED,
                               msgf("access keys are at most %u bytes", KEYS_KEY_MAX));
                return;
        }
        if (registry_n_functions(b->registry) >= BROKER_MAX_FUNCTIONS) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               msgf("the broker holds its maximum of %u functions", BROKER_MAX_FUNCTIONS));
                return;
        }
        p = pending_new(b, CONTROL_EXPOSE_FUNCTION, c->id, req->correlation_id);
        if (!p) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, "Cannot queue an ExposeFunction", -ENOMEM));
                return;
        }
        p->name = TAKE_PTR(name);
        p->fp = req_fp;
        p->resp_fp = resp_fp;
        p->arena_capacity = function_arena_capacity(b, req->req_arena_cap);
        if (req->access_key.len == 0) {
                finish_expose(p, NULL);
                pending_free(p);
                return;
        }
        r = keys_hash_async(b->keys, req->access_key.ptr, req->access_key.len, expose_hashed, p);
        if (r < 0) {
                reply_function(b, c, CONTROL_EXPOSE_REPLY, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               broker_is_resource_error(r) ?
                                       resource_refusal(b, c, "Cannot queue an access key for hashing", r) :
                                       msgf("cannot hash the access key now: %s", strerror(-r)));
                pending_free(p);
        }
}

/* ---- LookupFunction ---- */

static void lookup_verified(int r, void *userdata) {
        Pending *p = userdata;
        Broker *b = p->broker;
        Client *c = registry_client(b->registry, p->client_id);
        Function *f = registry_function_by_name(b->registry, p->name);

        /* Re-exposed meanwhile (maybe with another key): the check was for the old one. */
        if (f && f->id != p->channel_id)
                f = NULL;
        if (c && !f)
                reply_function(b, c, CONTROL_LOOKUP_REPLY, p->correlation_id, NULL, CONTROL_STATUS_NOT_FOUND,
                               msgf("function \"%s\" is gone", p->name));
        else if (c && broker_is_resource_error(r))
                /* The check failed for want of memory: no verdict on the key. */
                reply_function(b, c, CONTROL_LOOKUP_REPLY, p->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, "Cannot check an access key", r));
        else if (c && r != 1) {
                LogContext ctx = client_log_context(c);
                ctx.function = f->name;
                ctx.status = "DENIED";
                if (r != -EBUSY)
                        log_ctx(LOG_NOTICE, NULL, &ctx, "Client %" PRIu64 " denied function \"%s\": %s", c->id,
                                f->name, key_refusal(r));
                reply_function(b, c, CONTROL_LOOKUP_REPLY, p->correlation_id, f, CONTROL_STATUS_DENIED,
                               key_refusal(r));
        } else if (c)
                reply_function(b, c, CONTROL_LOOKUP_REPLY, p->correlation_id, f, CONTROL_STATUS_OK, "");
        pending_free(p);
}

static void handle_lookup(Broker *b, const ControlLookupFunction *req) {
        _cleanup_free_ char *name = NULL;
        Client *c = request_client(b, (uint64_t) req->client_id, CONTROL_LOOKUP_FUNCTION);
        Function *f;
        Pending *p;
        int r;

        if (!c)
                return;
        if (function_name_dup(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, req->fn_name, &name) < 0)
                return;
        f = registry_function_by_name(b->registry, name);
        if (!f || !owner_alive(b, f->owner_id)) {
                reply_function(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, NULL, CONTROL_STATUS_NOT_FOUND,
                               msgf("no function named \"%s\"", name));
                return;
        }
        if (!f->key_hash) {
                reply_function(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, f, CONTROL_STATUS_OK, "");
                return;
        }
        if (req->access_key.len == 0 || req->access_key.len > KEYS_KEY_MAX) {
                reply_function(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, NULL, CONTROL_STATUS_DENIED,
                               req->access_key.len ? "wrong access key" :
                               msgf("function \"%s\" requires an access key", name));
                return;
        }
        p = pending_new(b, CONTROL_LOOKUP_FUNCTION, c->id, req->correlation_id);
        if (!p) {
                reply_function(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, "Cannot queue a LookupFunction", -ENOMEM));
                return;
        }
        p->name = TAKE_PTR(name);
        p->channel_id = f->id;  /* the function the key was checked against */
        r = keys_verify_async(b->keys, c->id, f->key_hash, req->access_key.ptr, req->access_key.len,
                              lookup_verified, p);
        if (r == -EBUSY)
                r = -ENOBUFS;
        if (broker_is_resource_error(r))
                reply_function(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, NULL, CONTROL_STATUS_INTERNAL,
                               resource_refusal(b, c, "Cannot queue an access key check", r));
        else if (r < 0)
                reply_function(b, c, CONTROL_LOOKUP_REPLY, req->correlation_id, NULL, CONTROL_STATUS_DENIED,
                               key_refusal(r));
        if (r < 0)
                pending_free(p);
}

void requests_serve(Broker *b, const uint8_t *record, size_t len) {
        _cleanup_(control_msg_done) ControlMsg m = { 0 };
        int r;

        r = control_decode(record, len, &m);
        if (r < 0) {
                b->malformed_records++;
                broker_warn_hostile(b, NULL, r == -EPROTO ? "Dropped a record with an unknown fingerprint" :
                                                             "Dropped a malformed record", r);
                return;
        }

        switch (m.type) {
        case CONTROL_REGISTER:
                handle_register(b, &m.reg, m.wire_type == CONTROL_REGISTER_V0);
                break;
        case CONTROL_UNREGISTER:
                handle_unregister(b, &m.unregister);
                break;
        case CONTROL_PUBLISH_CHANNEL:
                handle_publish(b, &m.publish);
                break;
        case CONTROL_LIST_CHANNELS:
                handle_list_channels(b, &m.list_channels);
                break;
        case CONTROL_SUBSCRIBE:
                handle_subscribe(b, &m.subscribe);
                break;
        case CONTROL_EXPOSE_FUNCTION:
                handle_expose(b, &m.expose);
                break;
        case CONTROL_LOOKUP_FUNCTION:
                handle_lookup(b, &m.lookup);
                break;
        case CONTROL_HEARTBEAT:
                handle_heartbeat(b, &m.heartbeat);
                break;
        default:
                b->malformed_records++;
                broker_warn_hostile(b, NULL, msgf("Dropped a %s record: it is not a request to the broker",
                                                  control_type_name(m.type)), 0);
                break;
        }
}
