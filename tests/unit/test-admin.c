/* SPDX-License-Identifier: MIT */
/*
 * Tests of src/impulsed/admin.c without a running broker: the admin socket serves a real
 * registry through stand-in broker_*() accessors, its sd-event loop turning in a thread while
 * the test talks to it as raw clients, as other users (forked children that drop privileges),
 * and through the real ringctl ($RINGCTL). Also the socket's life: stale and live sockets,
 * modes under any umask, removal, and sockets passed by systemd.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "admin-proto.h"
#include "admin.h"
#include "broker-fixture.h"
#include "broker.h"
#include "macro.h"
#include "registry.h"
#include "run-util.h"
#include "test-util.h"
#include "time-util.h"

#define TIMEOUT_NS ((int64_t) (10 * NSEC_PER_SEC))
#define ADMIN_GID ((gid_t) 4242)
#define NOBODY ((uid_t) 65534)
#define EPOCH UINT64_C(18446744073709551610)
#define UPTIME_USEC (UINT64_C(3723) * 1000000)

/* --- the broker, as far as admin.c sees it --- */

struct Broker {
        Registry *registry;
        BusNames names;
        uint64_t epoch;
        uint64_t started_usec;
};

const Registry *broker_registry(const Broker *b) {
        return b->registry;
}

const BusNames *broker_bus(const Broker *b) {
        return &b->names;
}

uint64_t broker_epoch(const Broker *b) {
        return b->epoch;
}

uint64_t broker_started_usec(const Broker *b) {
        return b->started_usec;
}

/* --- the server: admin.c in an event loop of its own thread --- */

static struct {
        BrokerFixture fixture;          /* only its directory and guard record */
        char path[ADMIN_SOCKET_PATH_MAX];
        Broker broker;
        sd_event *event;
        Admin *admin;
        int stop_fd;
        pthread_t thread;
        bool running;
} S = { .stop_fd = -1 };

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}
#define _cleanup_json_ _cleanup_(decref_jsonp)

static int on_stop(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static void *loop_thread(void *userdata) {
        (void) sd_event_loop(S.event);
        return NULL;
}

static void setup(void) {
        broker_fixture_init(&S.fixture);
        /* Other users must reach the socket inside for the permission tests. */
        ck_assert_int_eq(chmod(S.fixture.dir, 0755), 0);
        snprintf(S.path, sizeof(S.path), "%s", S.fixture.socket_path);
        ck_assert_int_eq(registry_new(&S.broker.registry), 0);
        ck_assert_int_eq(names_bus_init(&S.broker.names, S.fixture.bus), 0);
        S.broker.epoch = EPOCH;
        S.broker.started_usec = now_ns(CLOCK_REALTIME) / NSEC_PER_USEC - UPTIME_USEC;
}

static void server_start(gid_t admin_gid) {
        ck_assert_int_eq(sd_event_new(&S.event), 0);
        ck_assert_int_eq(admin_new(&S.admin, S.event, &S.broker, S.path, admin_gid), 0);
        S.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        ck_assert_int_ge(S.stop_fd, 0);
        ck_assert_int_ge(sd_event_add_io(S.event, NULL, S.stop_fd, EPOLLIN, on_stop, NULL), 0);
        ck_assert_int_eq(pthread_create(&S.thread, NULL, loop_thread, NULL), 0);
        S.running = true;
}

static void server_stop(void) {
        if (S.running) {
                uint64_t one = 1;

                ck_assert_int_eq(write(S.stop_fd, &one, sizeof(one)), sizeof(one));
                pthread_join(S.thread, NULL);
                S.running = false;
        }
        S.admin = admin_free(S.admin);
        S.event = sd_event_unref(S.event);
        closep(&S.stop_fd);
        S.stop_fd = -1;
}

static void teardown(void) {
        server_stop();
        S.broker.registry = registry_free(S.broker.registry);
        broker_fixture_done(&S.fixture);
}

/* --- filling the registry --- */

/* The broker's client ids are random up to 2^63 - 1. These start past 2^53, where a double (jq,
 * JavaScript) can no longer hold every integer, so that an id rounded on the way shows. */
#define CLIENT_ID(n) (UINT64_C(9007199254740992) + (n))

static void add_client(const char *app, pid_t pid, uid_t uid, const char *unit,
                       const char *cgroup) {
        static uint64_t next_id;
        Client *c = calloc(1, sizeof(*c));
        uint64_t n = ++next_id;

        ck_assert_ptr_nonnull(c);
        c->id = CLIENT_ID(n);
        c->app_name = strdup(app);
        c->pid = pid;
        c->uid = uid;
        c->unit = unit ? strdup(unit) : NULL;
        c->cgroup = cgroup ? strdup(cgroup) : NULL;
        c->reply_seg = SEGMENT_NULL;
        snprintf(c->reply_seg.name, sizeof(c->reply_seg.name), "/impulse-ring-%s.cli.%llu.v1",
                 S.fixture.bus, (unsigned long long) c->id);
        c->heartbeat_ms = 500;
        c->replies_dropped = n * 10;
        ck_assert_int_eq(registry_add_client(S.broker.registry, c), 0);
}

static void add_channel(const char *name, uint64_t owner, uint64_t fp, bool key, uint64_t sub) {
        Channel *ch = calloc(1, sizeof(*ch));

        ck_assert_ptr_nonnull(ch);
        ch->id = registry_next_channel_id(S.broker.registry);
        ch->name = strdup(name);
        ch->owner_id = owner;
        ch->owner_app = strdup("owner-app");
        ch->schema_fp = fp;
        ch->key_hash = key ? strdup("$argon2id$v=19$m=8,t=1,p=1$x$y") : NULL;
        ch->arena = SEGMENT_NULL;
        snprintf(ch->arena.name, sizeof(ch->arena.name), "/impulse-ring-%s.arena.%llu.v1",
                 S.fixture.bus, (unsigned long long) ch->id);
        ch->subscriber_id = sub;
        ck_assert_int_eq(registry_add_channel(S.broker.registry, ch), 0);
}

static void add_function(const char *name, uint64_t owner, uint64_t req, uint64_t resp, bool key) {
        Function *f = calloc(1, sizeof(*f));

        ck_assert_ptr_nonnull(f);
        f->id = registry_next_function_id(S.broker.registry);
        f->name = strdup(name);
        f->owner_id = owner;
        f->owner_app = strdup("fn-owner");
        f->req_fp = req;
        f->resp_fp = resp;
        f->key_hash = key ? strdup("$argon2id$v=19$m=8,t=1,p=1$x$y") : NULL;
        f->arena = SEGMENT_NULL;
        snprintf(f->arena.name, sizeof(f->arena.name), "/impulse-ring-%s.fn.%llu.v1",
                 S.fixture.bus, (unsigned long long) f->id);
        ck_assert_int_eq(registry_add_function(S.broker.registry, f), 0);
}

/* The standard population: three clients (one hostile name, one old v1 client without a
 * pid), two channels, one function. */
static void populate(void) {
        add_client("sensor", 4242, 1000, "sensor.service", "/system.slice/sensor.service");
        add_client("ev\x1b[2Jil\xff\nname", 0, 1001, NULL, NULL);
        add_client("logger", 77, 0, "logger.service", "/system.slice/logger.service");
        add_channel("temp", CLIENT_ID(1), UINT64_C(0xdeadbeef), false, 0);
        add_channel("secret", CLIENT_ID(3), UINT64_MAX, true, CLIENT_ID(2));
        add_function("add", CLIENT_ID(3), 1, UINT64_C(0x8000000000000000), true);
}

/* --- raw clients --- */

static int raw_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
        ck_assert_msg(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0, "connect %s: %s",
                      S.path, strerror(errno));
        return fd;
}

/* Next message as a JSON object; NULL at end of file or on a reset connection. */
static json_t *raw_recv(int fd) {
        _cleanup_free_ char *buf = malloc(ADMIN_RESPONSE_MAX + 1);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        json_t *j;
        ssize_t n;

        ck_assert_ptr_nonnull(buf);
        ck_assert_msg(poll(&p, 1, (int) (TIMEOUT_NS / (int64_t) NSEC_PER_MSEC)) == 1,
                      "no answer within the timeout");
        n = recv(fd, buf, ADMIN_RESPONSE_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);
        /* The reset of a peer that closed with messages of ours unread comes first, once,
         * ahead of what it had sent us. */
        if (n < 0 && errno == ECONNRESET)
                n = recv(fd, buf, ADMIN_RESPONSE_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EAGAIN)))
                return NULL;
        ck_assert_msg(n > 0, "recv: %s", strerror(errno));
        ck_assert_int_le(n, ADMIN_RESPONSE_MAX);
        j = json_loadb(buf, (size_t) n, JSON_REJECT_DUPLICATES, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert(json_is_object(j));
        return j;
}

/* A broker that refuses a client (busy, denied) answers and closes at once, maybe before the
 * request is sent: then sending fails, and the answer waits to be read. */
static void raw_send(int fd, const char *request, size_t len) {
        ssize_t k = send(fd, request, len, MSG_NOSIGNAL);

        ck_assert_msg(k == (ssize_t) len || (k < 0 && (errno == EPIPE || errno == ECONNRESET)),
                      "send: %s", strerror(errno));
}

static json_t *raw_call(int fd, AdminCommand command) {
        char request[ADMIN_REQUEST_MAX];
        int n = admin_request_encode(command, request, sizeof(request));

        ck_assert_int_gt(n, 0);
        raw_send(fd, request, (size_t) n);
        return raw_recv(fd);
}

static json_t *call(AdminCommand command) {
        _cleanup_close_ int fd = raw_connect();
        json_t *j = raw_call(fd, command);

        ck_assert_ptr_nonnull(j);
        return j;
}

static const json_t *result_of(const json_t *response) {
        ck_assert_msg(json_is_true(json_object_get(response, "ok")), "not ok: %s",
                      json_string_value(json_object_get(response, "error")));
        ck_assert(json_is_object(json_object_get(response, "result")));
        return json_object_get(response, "result");
}

static void assert_error(const json_t *response, const char *code, const char *message) {
        ck_assert_ptr_nonnull(response);
        ck_assert(json_is_false(json_object_get(response, "ok")));
        ck_assert_str_eq(json_string_value(json_object_get(response, "code")), code);
        if (message)
                ck_assert_str_eq(json_string_value(json_object_get(response, "error")), message);
}

static json_int_t int_of(const json_t *o, const char *key) {
        const json_t *v = json_object_get(o, key);

        ck_assert_msg(json_is_integer(v), "\"%s\" is not an integer", key);
        return json_integer_value(v);
}

static const char *str_of(const json_t *o, const char *key) {
        const json_t *v = json_object_get(o, key);

        ck_assert_msg(json_is_string(v), "\"%s\" is not a string", key);
        return json_string_value(v);
}

/* --- answers --- */

START_TEST(test_status) {
        _cleanup_json_ json_t *resp = NULL;
        const json_t *r;
        char prefix[64];

        populate();
        server_start(ADMIN_GID_NONE);
        resp = call(ADMIN_COMMAND_STATUS);
        r = result_of(resp);
        ck_assert_str_eq(str_of(r, "bus"), S.fixture.bus);
        snprintf(prefix, sizeof(prefix), "/impulse-ring-%s", S.fixture.bus);
        ck_assert_str_eq(str_of(r, "segment_prefix"), prefix);
        ck_assert_str_eq(str_of(r, "control_socket"), S.path);
        ck_assert_int_eq(int_of(r, "pid"), getpid());
        /* All 64 bits, as a string. */
        ck_assert_str_eq(str_of(r, "epoch"), "18446744073709551610");
        ck_assert_int_eq(int_of(r, "started_usec"), (json_int_t) S.broker.started_usec);
        ck_assert_int_ge(int_of(r, "uptime_usec"), (json_int_t) UPTIME_USEC);
        ck_assert_int_lt(int_of(r, "uptime_usec"), (json_int_t) UPTIME_USEC + 600 * 1000000LL);
        ck_assert_int_eq(int_of(r, "clients"), 3);
        ck_assert_int_eq(int_of(r, "channels"), 2);
        ck_assert_int_eq(int_of(r, "functions"), 1);
        ck_assert_str_eq(str_of(r, "version"), PACKAGE_VERSION);
}
END_TEST

START_TEST(test_status_default_bus) {
        _cleanup_json_ json_t *resp = NULL;
        const json_t *r;

        ck_assert_int_eq(names_bus_init(&S.broker.names, NULL), 0);
        /* A clock stepped back: the uptime is 0, never negative. */
        S.broker.started_usec = now_ns(CLOCK_REALTIME) / NSEC_PER_USEC + UPTIME_USEC;
        server_start(ADMIN_GID_NONE);
        resp = call(ADMIN_COMMAND_STATUS);
        r = result_of(resp);
        ck_assert(json_is_null(json_object_get(r, "bus")));
        ck_assert_str_eq(str_of(r, "segment_prefix"), "/impulse-ring");
        ck_assert_int_eq(int_of(r, "uptime_usec"), 0);
        ck_assert_int_eq(int_of(r, "clients"), 0);
}
END_TEST

START_TEST(test_clients) {
        _cleanup_json_ json_t *resp = NULL;
        const json_t *r, *list, *c;
        char seg[128];

        populate();
        server_start(ADMIN_GID_NONE);
        resp = call(ADMIN_COMMAND_CLIENTS);
        r = result_of(resp);
        ck_assert_int_eq(int_of(r, "total"), 3);
        ck_assert(json_is_false(json_object_get(r, "truncated")));
        list = json_object_get(r, "clients");
        ck_assert_uint_eq(json_array_size(list), 3);

        c = json_array_get(list, 0);
        /* A client id is a decimal string, exactly the broker's. */
        ck_assert_str_eq(str_of(c, "id"), "9007199254740993");
        ck_assert_str_eq(str_of(c, "app"), "sensor");
        ck_assert_int_eq(int_of(c, "pid"), 4242);
        ck_assert_int_eq(int_of(c, "uid"), 1000);
        ck_assert_str_eq(str_of(c, "unit"), "sensor.service");
        ck_assert_str_eq(str_of(c, "cgroup"), "/system.slice/sensor.service");
        ck_assert_int_eq(int_of(c, "heartbeat_ms"), 500);
        snprintf(seg, sizeof(seg), "/impulse-ring-%s.cli.9007199254740993.v1", S.fixture.bus);
        ck_assert_str_eq(str_of(c, "reply_segment"), seg);
        ck_assert_int_eq(int_of(c, "replies_dropped"), 10);

        /* Client bytes arrive as valid JSON: controls kept (JSON escapes them), the byte
         * that is not UTF-8 replaced; no pid, unit or cgroup is null. */
        c = json_array_get(list, 1);
        ck_assert_str_eq(str_of(c, "id"), "9007199254740994");
        ck_assert_str_eq(str_of(c, "app"), "ev\x1b[2Jil\xef\xbf\xbd\nname");
        ck_assert(json_is_null(json_object_get(c, "pid")));
        ck_assert(json_is_null(json_object_get(c, "unit")));
        ck_assert(json_is_null(json_object_get(c, "cgroup")));
        ck_assert_str_eq(str_of(json_array_get(list, 2), "id"), "9007199254740995");
}
END_TEST

START_TEST(test_channels_functions) {
        _cleanup_json_ json_t *chans = NULL, *fns = NULL;
        const json_t *r, *c, *f;
        char arena[128];

        populate();
        server_start(ADMIN_GID_NONE);
        chans = call(ADMIN_COMMAND_CHANNELS);
        r = result_of(chans);
        ck_assert_int_eq(int_of(r, "total"), 2);
        c = json_array_get(json_object_get(r, "channels"), 0);
        ck_assert_int_eq(int_of(c, "id"), 1);
        ck_assert_str_eq(str_of(c, "name"), "temp");
        ck_assert_str_eq(str_of(c, "owner_id"), "9007199254740993");
        ck_assert_str_eq(str_of(c, "owner_app"), "owner-app");
        ck_assert_str_eq(str_of(c, "schema_fp"), "0x00000000deadbeef");
        ck_assert(json_is_false(json_object_get(c, "requires_key")));
        ck_assert(json_is_null(json_object_get(c, "subscriber_id")));
        snprintf(arena, sizeof(arena), "/impulse-ring-%s.arena.1.v1", S.fixture.bus);
        ck_assert_str_eq(str_of(c, "arena"), arena);
        c = json_array_get(json_object_get(r, "channels"), 1);
        ck_assert_str_eq(str_of(c, "schema_fp"), "0xffffffffffffffff");
        ck_assert(json_is_true(json_object_get(c, "requires_key")));
        ck_assert_str_eq(str_of(c, "subscriber_id"), "9007199254740994");
        /* The key's hash is the broker's secret; it never leaves. */
        {
                _cleanup_free_ char *dump = json_dumps(c, 0);

                ck_assert_ptr_nonnull(dump);
                ck_assert_ptr_null(strstr(dump, "argon2"));
        }

        fns = call(ADMIN_COMMAND_FUNCTIONS);
        r = result_of(fns);
        ck_assert_int_eq(int_of(r, "total"), 1);
        f = json_array_get(json_object_get(r, "functions"), 0);
        ck_assert_str_eq(str_of(f, "name"), "add");
        ck_assert_str_eq(str_of(f, "owner_id"), "9007199254740995");
        ck_assert_str_eq(str_of(f, "owner_app"), "fn-owner");
        ck_assert_str_eq(str_of(f, "req_fp"), "0x0000000000000001");
        ck_assert_str_eq(str_of(f, "resp_fp"), "0x8000000000000000");
        ck_assert(json_is_true(json_object_get(f, "requires_key")));
        snprintf(arena, sizeof(arena), "/impulse-ring-%s.fn.1.v1", S.fixture.bus);
        ck_assert_str_eq(str_of(f, "arena"), arena);
}
END_TEST

START_TEST(test_empty_lists) {
        server_start(ADMIN_GID_NONE);
        for (AdminCommand c = ADMIN_COMMAND_CLIENTS; c <= ADMIN_COMMAND_FUNCTIONS; c++) {
                _cleanup_json_ json_t *resp = call(c);
                const json_t *r = result_of(resp);

                ck_assert_int_eq(int_of(r, "total"), 0);
                ck_assert(json_is_false(json_object_get(r, "truncated")));
                const char *key = admin_command_to_string(c);

                ck_assert_uint_eq(json_array_size(json_object_get(r, key)), 0);
        }
}
END_TEST

START_TEST(test_truncated) {
        _cleanup_json_ json_t *resp = NULL;
        char app[201], last[21];
        const json_t *r, *list;
        size_t n;

        /* About 300 bytes of JSON per client: 3000 of them cannot fit in one message. */
        memset(app, 'a', sizeof(app) - 1);
        app[sizeof(app) - 1] = '\0';
        for (int i = 0; i < 3000; i++)
                add_client(app, 1000 + i, 1000, "x.service", "/x.slice/x.service");
        server_start(ADMIN_GID_NONE);
        resp = call(ADMIN_COMMAND_CLIENTS);
        r = result_of(resp);
        ck_assert_int_eq(int_of(r, "total"), 3000);
        ck_assert(json_is_true(json_object_get(r, "truncated")));
        list = json_object_get(r, "clients");
        n = json_array_size(list);
        ck_assert_uint_gt(n, 100);
        ck_assert_uint_lt(n, 3000);
        /* The first ones are kept, in order. */
        snprintf(last, sizeof(last), "%" PRIu64, CLIENT_ID(n));
        ck_assert_str_eq(str_of(json_array_get(list, 0), "id"), "9007199254740993");
        ck_assert_str_eq(str_of(json_array_get(list, n - 1), "id"), last);
        /* And the cut is not wasteful: at least half the room is used. */
        ck_assert_uint_gt(json_dumpb(resp, NULL, 0, JSON_COMPACT), ADMIN_RESPONSE_MAX / 2);
}
END_TEST

/* --- the protocol on one connection --- */

START_TEST(test_requests_in_turn) {
        _cleanup_close_ int fd = -1;
        static const char unknown[] = "{\"command\":\"reboot\"}";

        populate();
        server_start(ADMIN_GID_NONE);
        fd = raw_connect();
        for (int i = 0; i < 3; i++) {
                _cleanup_json_ json_t *a = raw_call(fd, ADMIN_COMMAND_STATUS);
                _cleanup_json_ json_t *b = raw_call(fd, ADMIN_COMMAND_CHANNELS);
                _cleanup_json_ json_t *c = NULL;

                ck_assert_int_eq(int_of(result_of(a), "clients"), 3);
                ck_assert_int_eq(int_of(result_of(b), "total"), 2);
                /* An unknown command is answered and the connection stays usable. */
                raw_send(fd, unknown, strlen(unknown));
                c = raw_recv(fd);
                assert_error(c, "EOPNOTSUPP", "unknown command");
        }
}
END_TEST

START_TEST(test_malformed_request) {
        static const char *const bad[] = {
                "not json",
                "{\"command\":1}",
                "[]",
                "{\"command\":\"status\",\"command\":\"status\"}",
        };

        server_start(ADMIN_GID_NONE);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_close_ int fd = raw_connect();
                _cleanup_json_ json_t *resp = NULL, *eof = NULL;

                raw_send(fd, bad[i], strlen(bad[i]));
                resp = raw_recv(fd);
                assert_error(resp, "EBADMSG", "malformed request");
                /* A client that speaks something else is not talked to further. */
                eof = raw_recv(fd);
                ck_assert_ptr_null(eof);
        }
}
END_TEST

START_TEST(test_oversized_request) {
        _cleanup_close_ int fd = -1;
        _cleanup_json_ json_t *resp = NULL, *eof = NULL;
        char big[ADMIN_REQUEST_MAX + 100];

        server_start(ADMIN_GID_NONE);
        fd = raw_connect();
        memset(big, ' ', sizeof(big));
        memcpy(big, "{\"command\":\"status\"}", 20);
        raw_send(fd, big, sizeof(big));
        resp = raw_recv(fd);
        assert_error(resp, "EMSGSIZE", "request too large");
        eof = raw_recv(fd);
        ck_assert_ptr_null(eof);
}
END_TEST

START_TEST(test_connection_limit) {
        int fds[16];
        _cleanup_close_ int extra = -1;
        _cleanup_json_ json_t *busy = NULL, *eof = NULL;
        uint64_t deadline;
        bool served = false;

        server_start(ADMIN_GID_NONE);
        /* Each answered once, so each is surely accepted and counted. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                _cleanup_json_ json_t *resp = NULL;

                fds[i] = raw_connect();
                resp = raw_call(fds[i], ADMIN_COMMAND_STATUS);
                result_of(resp);
        }
        extra = raw_connect();
        busy = raw_recv(extra);
        assert_error(busy, "EBUSY", "too many admin connections");
        eof = raw_recv(extra);
        ck_assert_ptr_null(eof);

        /* A slot frees when a client leaves. The broker learns of it asynchronously, so new
         * clients try until one is served, each attempt a full round trip. */
        close(fds[0]);
        deadline = deadline_after(TIMEOUT_NS);
        while (!served && now_ns(CLOCK_MONOTONIC) < deadline) {
                _cleanup_close_ int fd = raw_connect();
                _cleanup_json_ json_t *resp = raw_call(fd, ADMIN_COMMAND_STATUS);

                served = resp && json_is_true(json_object_get(resp, "ok"));
        }
        ck_assert(served);
        for (size_t i = 1; i < ELEMENTSOF(fds); i++)
                close(fds[i]);
}
END_TEST

START_TEST(test_slow_client) {
        _cleanup_close_ int slow = -1;
        char request[ADMIN_REQUEST_MAX], app[81];
        int n, sent = 0, answers = 0;
        uint64_t deadline;
        bool gone = false;

        /* Answers near the size limit, so that few fill the socket buffer. */
        memset(app, 'b', sizeof(app) - 1);
        app[sizeof(app) - 1] = '\0';
        for (int i = 0; i < 1500; i++)
                add_client(app, 1000 + i, 1000, "x.service", "/x.slice/x.service");
        server_start(ADMIN_GID_NONE);

        /* A client that asks and asks but never reads. */
        slow = raw_connect();
        n = admin_request_encode(ADMIN_COMMAND_CLIENTS, request, sizeof(request));
        for (int i = 0; i < 64; i++) {
                if (send(slow, request, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                        break;
                sent++;
        }
        ck_assert_int_gt(sent, 4);

        /* The loop serves others meanwhile... */
        for (int i = 0; i < 3; i++) {
                _cleanup_json_ json_t *resp = call(ADMIN_COMMAND_STATUS);

                result_of(resp);
        }

        /* ...and has dropped the slow one instead of queueing answers for it: what it finds
         * is a few answers, then the end. */
        deadline = deadline_after(TIMEOUT_NS);
        while (!gone && now_ns(CLOCK_MONOTONIC) < deadline) {
                _cleanup_json_ json_t *resp = raw_recv(slow);

                if (resp)
                        answers++;
                else
                        gone = true;
        }
        ck_assert(gone);
        ck_assert_int_lt(answers, sent);
}
END_TEST

/* --- who may connect (needs root to act as other users) --- */

static bool need_root(void) {
        if (geteuid() == 0)
                return true;
        printf("# skipping: only root can test other users' access\n");
        return false;
}

/* Asks for status from a child running as uid/gid/groups: 0 answered, 1 "permission denied"
 * (EACCES), 2 connect failed, 3 anything else. */
static int status_as(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups) {
        pid_t pid;
        int status;

        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                char buf[ADMIN_RESPONSE_MAX], request[ADMIN_REQUEST_MAX];
                AdminResponse r = {};
                ssize_t k;
                int fd, n;

                if (setgroups(n_groups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
                        _exit(3);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
                fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        _exit(2);
                n = admin_request_encode(ADMIN_COMMAND_STATUS, request, sizeof(request));
                (void) send(fd, request, (size_t) n, MSG_NOSIGNAL);
                k = recv(fd, buf, sizeof(buf), 0);
                if (k < 0 && errno == ECONNRESET)
                        k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (k <= 0 || admin_response_decode(buf, (size_t) k, &r) < 0)
                        _exit(3);
                if (r.ok)
                        _exit(0);
                /* Refused, and then disconnected: the end of the stream, or a reset as the
                 * broker closed without reading our request. */
                if (r.error == -EACCES && strcmp(r.message, "permission denied") == 0) {
                        k = recv(fd, buf, sizeof(buf), 0);
                        if (k == 0 || (k < 0 && errno == ECONNRESET))
                                _exit(1);
                }
                _exit(3);
        }
        ck_assert_int_eq(broker_fixture_wait_pid(pid, TIMEOUT_NS, &status), 0);
        ck_assert(WIFEXITED(status));
        return WEXITSTATUS(status);
}

START_TEST(test_peer_denied) {
        if (!need_root())
                return;
        server_start(ADMIN_GID);
        /* Past the file's permissions, so that the broker's own check is what is tested. */
        ck_assert_int_eq(chmod(S.path, 0666), 0);
        ck_assert_int_eq(status_as(NOBODY, NOBODY, NULL, 0), 1);
        ck_assert_int_eq(status_as(NOBODY, NOBODY, (gid_t[]) { 100, 4243 }, 2), 1);
        /* Root's group is not root. */
        ck_assert_int_eq(status_as(NOBODY, 0, (gid_t[]) { 0 }, 1), 1);
        /* The broker's own uid (root here) is always let in. */
        ck_assert_int_eq(status_as(0, NOBODY, NULL, 0), 0);
}
END_TEST

START_TEST(test_peer_admin_group) {
        if (!need_root())
                return;
        server_start(ADMIN_GID);
        /* The file's group is the admin group: members pass the file permissions too. */
        ck_assert_int_eq(status_as(NOBODY, NOBODY, (gid_t[]) { 100, ADMIN_GID }, 2), 0);
        ck_assert_int_eq(status_as(NOBODY, ADMIN_GID, NULL, 0), 0);
        ck_assert_int_eq(status_as(NOBODY, NOBODY, NULL, 0), 2);
}
END_TEST

START_TEST(test_peer_no_admin_group) {
        if (!need_root())
                return;
        server_start(ADMIN_GID_NONE);
        ck_assert_int_eq(chmod(S.path, 0666), 0);
        /* Without --admin-group, no group lets anyone in, not even (gid_t) -1. */
        ck_assert_int_eq(status_as(NOBODY, NOBODY, (gid_t[]) { ADMIN_GID }, 1), 1);
        ck_assert_int_eq(status_as(NOBODY, NOBODY, (gid_t[]) { ADMIN_GID_NONE - 1 }, 1), 1);
}
END_TEST

/* --- the socket file --- */

static void assert_mode(const char *path, mode_t type, mode_t mode) {
        struct stat st;

        ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
        ck_assert_int_eq(st.st_mode & S_IFMT, type);
        ck_assert_msg((st.st_mode & 07777) == mode, "%s has mode %o, not %o", path,
                      st.st_mode & 07777, mode);
}

static void assert_type(const char *path, mode_t type) {
        struct stat st;

        ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
        ck_assert_int_eq(st.st_mode & S_IFMT, type);
}

static int try_admin_new(const char *path, gid_t gid) {
        sd_event *e = NULL;
        Admin *a = NULL;
        int r;

        ck_assert_int_eq(sd_event_new(&e), 0);
        r = admin_new(&a, e, &S.broker, path, gid);
        ck_assert(r < 0 ? a == NULL : a != NULL);
        admin_free(a);
        sd_event_unref(e);
        return r;
}

START_TEST(test_socket_mode) {
        mode_t old = umask(0);
        struct stat st;

        /* 0660 whatever the umask, and the admin group's. */
        server_start(ADMIN_GID);
        assert_mode(S.path, S_IFSOCK, 0660);
        ck_assert_int_eq(stat(S.path, &st), 0);
        /* Only root may give a file to a group it is not in; others get a warning. */
        if (geteuid() == 0)
                ck_assert_int_eq(st.st_gid, ADMIN_GID);
        ck_assert_str_eq(admin_path(S.admin), S.path);
        server_stop();
        /* Removed at exit. */
        ck_assert_int_eq(access(S.path, F_OK), -1);

        umask(0077);
        server_start(ADMIN_GID_NONE);
        assert_mode(S.path, S_IFSOCK, 0660);
        ck_assert_int_eq(stat(S.path, &st), 0);
        ck_assert_int_eq(st.st_gid, getegid());
        umask(old);
}
END_TEST

START_TEST(test_socket_parents) {
        char dir[PATH_MAX], path[PATH_MAX];
        mode_t old = umask(0077);

        snprintf(dir, sizeof(dir), "%s/a", S.fixture.dir);
        snprintf(path, sizeof(path), "%s/a/b/control", S.fixture.dir);
        ck_assert_int_eq(try_admin_new(path, ADMIN_GID_NONE), 0);
        umask(old);
        /* Made 0755 despite the umask, so that admin group members can get through. */
        assert_mode(dir, S_IFDIR, 0755);
        snprintf(path, sizeof(path), "%s/a/b", S.fixture.dir);
        assert_mode(path, S_IFDIR, 0755);
        ck_assert_int_eq(rmdir(path), 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_socket_stale) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_json_ json_t *resp = NULL;
        int fd;

        /* A socket nobody listens on any more: a broker that died. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);
        server_start(ADMIN_GID_NONE);
        resp = call(ADMIN_COMMAND_STATUS);
        result_of(resp);
}
END_TEST

START_TEST(test_socket_live) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        /* Another broker answers there: it keeps its socket, we do not start. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 4), 0);
        ck_assert_int_eq(try_admin_new(S.path, ADMIN_GID_NONE), -EADDRINUSE);
        assert_type(S.path, S_IFSOCK);
}
END_TEST

START_TEST(test_socket_not_socket) {
        char buf[16] = "";
        FILE *f = fopen(S.path, "we");

        ck_assert_ptr_nonnull(f);
        fputs("precious", f);
        fclose(f);
        ck_assert_int_eq(try_admin_new(S.path, ADMIN_GID_NONE), -EEXIST);
        f = fopen(S.path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
        fclose(f);
        ck_assert_str_eq(buf, "precious");
        unlink(S.path);
}
END_TEST

START_TEST(test_socket_bad_paths) {
        char path[200];

        ck_assert_int_eq(try_admin_new("relative/control", ADMIN_GID_NONE), -EINVAL);
        memset(path, 'x', sizeof(path) - 1);
        path[0] = '/';
        path[sizeof(path) - 1] = '\0';
        ck_assert_int_eq(try_admin_new(path, ADMIN_GID_NONE), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_socket_replaced) {
        FILE *f;

        /* If someone else's file took the path meanwhile, admin_free() leaves it alone. */
        server_start(ADMIN_GID_NONE);
        ck_assert_int_eq(unlink(S.path), 0);
        f = fopen(S.path, "we");
        ck_assert_ptr_nonnull(f);
        fclose(f);
        server_stop();
        assert_type(S.path, S_IFREG);
        unlink(S.path);
}
END_TEST

START_TEST(test_default_path) {
        char want[ADMIN_SOCKET_PATH_MAX];
        sd_event *e = NULL;
        Admin *a = NULL;

        /* No path given: the documented default, here moved by $RING_ADMIN_SOCKET. */
        setenv(ADMIN_SOCKET_ENV, S.path, 1);
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(admin_new(&a, e, &S.broker, NULL, ADMIN_GID_NONE), 0);
        snprintf(want, sizeof(want), "%s", S.path);
        ck_assert_str_eq(admin_path(a), want);
        assert_mode(S.path, S_IFSOCK, 0660);
        admin_free(a);
        sd_event_unref(e);
        unsetenv(ADMIN_SOCKET_ENV);
}
END_TEST

/* Socket activation runs in a child of its own: fd 3 must become the passed socket, and the
 * test process's fds are Check's. Exit codes say what went wrong. */
static int activation_child(int type) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        pid_t pid;
        int status;

        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                char pidstr[32], request[ADMIN_REQUEST_MAX], buf[ADMIN_RESPONSE_MAX];
                AdminResponse resp = {};
                sd_event *e = NULL;
                Admin *a = NULL;
                int fd, c, n, r;

                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", S.path);
                fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
                if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
                    listen(fd, 4) < 0)
                        _exit(10);
                if (fd != SD_LISTEN_FDS_START) {
                        if (dup2(fd, SD_LISTEN_FDS_START) < 0)
                                _exit(11);
                        close(fd);
                }
                snprintf(pidstr, sizeof(pidstr), "%ld", (long) getpid());
                setenv("LISTEN_PID", pidstr, 1);
                setenv("LISTEN_FDS", "1", 1);
                if (sd_event_new(&e) < 0)
                        _exit(12);
                /* The path argument is ignored when systemd passes the socket. */
                r = admin_new(&a, e, &S.broker, "/nonexistent/ignored", ADMIN_GID_NONE);
                if (r == -ENOTSOCK)
                        _exit(fcntl(SD_LISTEN_FDS_START, F_GETFD) < 0 ? 1 : 13);
                if (r < 0)
                        _exit(14);
                if (getenv("LISTEN_FDS") || !admin_path(a) || strcmp(admin_path(a), S.path) != 0)
                        _exit(15);

                /* A request, served by turning the loop until the answer is there. */
                c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                if (c < 0 || connect(c, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        _exit(16);
                n = admin_request_encode(ADMIN_COMMAND_STATUS, request, sizeof(request));
                if (send(c, request, (size_t) n, 0) != n)
                        _exit(17);
                for (int i = 0; i < 100; i++) {
                        struct pollfd p = { .fd = c, .events = POLLIN };

                        if (poll(&p, 1, 0) == 1)
                                break;
                        if (sd_event_run(e, 100 * 1000) < 0)
                                _exit(18);
                }
                n = (int) recv(c, buf, sizeof(buf), MSG_DONTWAIT);
                if (n <= 0 || admin_response_decode(buf, (size_t) n, &resp) < 0 || !resp.ok)
                        _exit(19);
                admin_free(a);
                /* systemd's socket file is systemd's to remove. */
                if (access(S.path, F_OK) < 0)
                        _exit(20);
                _exit(0);
        }
        ck_assert_int_eq(broker_fixture_wait_pid(pid, TIMEOUT_NS, &status), 0);
        ck_assert(WIFEXITED(status));
        return WEXITSTATUS(status);
}

START_TEST(test_socket_activation) {
        ck_assert_int_eq(activation_child(SOCK_SEQPACKET), 0);
        unlink(S.path);
        /* A stream socket is not ours: refused, and closed. */
        ck_assert_int_eq(activation_child(SOCK_STREAM), 1);
        unlink(S.path);
}
END_TEST

/* --- ringctl against this server --- */

static const char *ringctl(void) {
        const char *p = run_program("RINGCTL");

        if (!p)
                printf("# skipping: $RINGCTL is not set (run under make check)\n");
        return p;
}

static void run_ringctl(const RunCreds *creds, RunResult *ret, const char *verb, ...) {
        const char *argv[16] = { ringctl(), verb };
        static const char *const env[] = { "RING_ADMIN_SOCKET", "RING_BUS", NULL };
        size_t n = 2;
        va_list ap;

        va_start(ap, verb);
        for (const char *a; (a = va_arg(ap, const char *)) && n < ELEMENTSOF(argv) - 1;)
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;
        ck_assert_int_eq(run_capture(argv, env, creds, TIMEOUT_NS, ret), 0);
}

START_TEST(test_ringctl_status) {
        RunResult r = {};
        char line[128];

        if (!ringctl())
                return;
        populate();
        server_start(ADMIN_GID_NONE);
        run_ringctl(NULL, &r, "status", "--socket", S.path, NULL);
        ck_assert_msg(run_exited(&r, 0), "exit 0x%x: %s", (unsigned) r.status, r.err);
        snprintf(line, sizeof(line), "Bus:             %s\n", S.fixture.bus);
        ck_assert_msg(strstr(r.out, line), "no bus line in:\n%s", r.out);
        snprintf(line, sizeof(line), "Broker PID:      %ld\n", (long) getpid());
        ck_assert_ptr_nonnull(strstr(r.out, line));
        ck_assert_ptr_nonnull(strstr(r.out, "Clients:         3\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "Epoch:           18446744073709551610\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "(up 1h 2min)"));
        ck_assert_str_eq(r.err, "");
        run_result_done(&r);

        run_ringctl(NULL, &r, "status", "--json", "--socket", S.path, NULL);
        ck_assert(run_exited(&r, 0));
        {
                _cleanup_json_ json_t *j = json_loads(r.out, 0, NULL);

                ck_assert_ptr_nonnull(j);
                ck_assert_str_eq(str_of(j, "bus"), S.fixture.bus);
                ck_assert_int_eq(int_of(j, "functions"), 1);
        }
        run_result_done(&r);
}
END_TEST

START_TEST(test_ringctl_lists) {
        RunResult r = {};

        if (!ringctl())
                return;
        populate();
        server_start(ADMIN_GID_NONE);
        run_ringctl(NULL, &r, "clients", "--socket", S.path, NULL);
        ck_assert_msg(run_exited(&r, 0), "exit 0x%x: %s", (unsigned) r.status, r.err);
        ck_assert_msg(strstr(r.out, "ID   PID   UID  APP"), "%s", r.out);
        /* The hostile name is shown escaped, on its own row, and drives nothing. */
        ck_assert_ptr_nonnull(strstr(r.out, "ev\\x1b[2Jil\xef\xbf\xbd\\nname"));
        ck_assert_ptr_null(strchr(r.out, '\x1b'));
        ck_assert_ptr_nonnull(strstr(r.out, "sensor.service"));
        ck_assert_ptr_nonnull(strstr(r.out, "\n3 clients listed.\n"));
        ck_assert_ptr_nonnull(strstr(r.out, "9007199254740993"));
        run_result_done(&r);

        /* Scripts get every id exactly (as a string: jq would round a number this large). */
        run_ringctl(NULL, &r, "clients", "--json", "--socket", S.path, NULL);
        ck_assert_msg(run_exited(&r, 0), "exit 0x%x: %s", (unsigned) r.status, r.err);
        ck_assert_msg(strstr(r.out, "\"id\": \"9007199254740995\""), "%s", r.out);
        run_result_done(&r);

        run_ringctl(NULL, &r, "channels", "--socket", S.path, NULL);
        ck_assert(run_exited(&r, 0));
        ck_assert_msg(strstr(r.out, "0x00000000deadbeef"), "%s", r.out);
        ck_assert_ptr_nonnull(strstr(r.out, "owner-app (9007199254740995)"));
        ck_assert_ptr_nonnull(strstr(r.out, "\n2 channels listed.\n"));
        run_result_done(&r);

        run_ringctl(NULL, &r, "functions", "--json", "--socket", S.path, NULL);
        ck_assert(run_exited(&r, 0));
        {
                _cleanup_json_ json_t *j = json_loads(r.out, 0, NULL);

                ck_assert_ptr_nonnull(j);
                ck_assert_uint_eq(json_array_size(json_object_get(j, "functions")), 1);
        }
        run_result_done(&r);
}
END_TEST

START_TEST(test_ringctl_empty_and_truncated) {
        RunResult r = {};
        char app[201];

        if (!ringctl())
                return;
        memset(app, 'a', sizeof(app) - 1);
        app[sizeof(app) - 1] = '\0';
        for (int i = 0; i < 3000; i++)
                add_client(app, 1000 + i, 1000, NULL, NULL);
        server_start(ADMIN_GID_NONE);
        run_ringctl(NULL, &r, "channels", "--socket", S.path, NULL);
        ck_assert(run_exited(&r, 0));
        ck_assert_str_eq(r.out, "No channels.\n");
        run_result_done(&r);
        run_ringctl(NULL, &r, "clients", "--socket", S.path, NULL);
        ck_assert(run_exited(&r, 0));
        ck_assert_msg(strstr(r.out, "The list was cut to fit one admin message: impulsed has 3000 "
                                    "clients.\n"), "no truncation note; stderr: %s", r.err);
        run_result_done(&r);
}
END_TEST

START_TEST(test_ringctl_errors) {
        RunResult r = {};
        char missing[PATH_MAX], want[PATH_MAX + 100];

        if (!ringctl())
                return;
        snprintf(missing, sizeof(missing), "%s/missing", S.fixture.dir);
        run_ringctl(NULL, &r, "status", "--socket", missing, NULL);
        ck_assert(run_exited(&r, 1));
        snprintf(want, sizeof(want), "ringctl status: impulsed is not running (no control "
                 "socket at %s)\n", missing);
        ck_assert_str_eq(r.err, want);
        ck_assert_str_eq(r.out, "");
        run_result_done(&r);

        run_ringctl(NULL, &r, "clients", "unexpected", NULL);
        ck_assert(run_exited(&r, 2));
        run_result_done(&r);
        run_ringctl(NULL, &r, "channels", "--socket", NULL);
        ck_assert(run_exited(&r, 2));
        run_result_done(&r);
        run_ringctl(NULL, &r, "functions", "--help", NULL);
        ck_assert(run_exited(&r, 0));
        ck_assert_ptr_nonnull(strstr(r.out, "--socket PATH"));
        run_result_done(&r);

        if (!need_root())
                return;
        server_start(ADMIN_GID_NONE);
        /* By the file's permissions... */
        run_ringctl(&(RunCreds) { .uid = NOBODY, .gid = NOBODY }, &r, "status", "--socket", S.path,
                    NULL);
        ck_assert(run_exited(&r, 1));
        ck_assert_msg(strstr(r.err, "permission denied: cannot connect to"), "%s", r.err);
        run_result_done(&r);
        /* ...and by the broker. */
        ck_assert_int_eq(chmod(S.path, 0666), 0);
        run_ringctl(&(RunCreds) { .uid = NOBODY, .gid = NOBODY }, &r, "status", "--socket", S.path,
                    NULL);
        ck_assert(run_exited(&r, 1));
        ck_assert_msg(strstr(r.err, "permission denied by impulsed"), "%s", r.err);
        run_result_done(&r);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("admin");
        TCase *tc;

#define TCASE(name)                                                                     \
        tc = tcase_create(name);                                                        \
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup,                     \
                                    broker_fixture_guard_teardown);                     \
        tcase_add_checked_fixture(tc, setup, teardown);                                 \
        tcase_set_timeout(tc, 60);                                                      \
        suite_add_tcase(s, tc)

        TCASE("answers");
        tcase_add_test(tc, test_status);
        tcase_add_test(tc, test_status_default_bus);
        tcase_add_test(tc, test_clients);
        tcase_add_test(tc, test_channels_functions);
        tcase_add_test(tc, test_empty_lists);
        tcase_add_test(tc, test_truncated);

        TCASE("connections");
        tcase_add_test(tc, test_requests_in_turn);
        tcase_add_test(tc, test_malformed_request);
        tcase_add_test(tc, test_oversized_request);
        tcase_add_test(tc, test_connection_limit);
        tcase_add_test(tc, test_slow_client);

        TCASE("peers");
        tcase_add_test(tc, test_peer_denied);
        tcase_add_test(tc, test_peer_admin_group);
        tcase_add_test(tc, test_peer_no_admin_group);

        TCASE("socket");
        tcase_add_test(tc, test_socket_mode);
        tcase_add_test(tc, test_socket_parents);
        tcase_add_test(tc, test_socket_stale);
        tcase_add_test(tc, test_socket_live);
        tcase_add_test(tc, test_socket_not_socket);
        tcase_add_test(tc, test_socket_bad_paths);
        tcase_add_test(tc, test_socket_replaced);
        tcase_add_test(tc, test_default_path);
        tcase_add_test(tc, test_socket_activation);

        TCASE("ringctl");
        tcase_add_test(tc, test_ringctl_status);
        tcase_add_test(tc, test_ringctl_lists);
        tcase_add_test(tc, test_ringctl_empty_and_truncated);
        tcase_add_test(tc, test_ringctl_errors);
#undef TCASE
        return s;
}
