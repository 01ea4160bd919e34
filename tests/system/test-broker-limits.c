/* SPDX-License-Identifier: MIT */
/*
 * The broker's own limits against a real impulsed, with raw v1 clients: a registered client
 * costs it one file descriptor (its pidfd; the reply segment is only mapped) and a channel none;
 * at its RLIMIT_NOFILE the broker answers Register with INTERNAL instead of leaving the client
 * to time out, logs that as its own error (not as hostile input), and serves again once
 * clients are gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "broker-fixture.h"
#include "macro.h"
#include "segment.h"
#include "test-util.h"
#include "v1client.h"

#define MANY_CLIENTS 2000
#define CHANNELS 50
#define SMALL_RING 4096
/* The broker's RLIMIT_NOFILE for the exhaustion test: its own descriptors at start are about
 * 15, so a few dozen clients fill it. */
#define LOW_NOFILE 64
#define FILL_MAX (2 * LOW_NOFILE)
#define SCHEMA "{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"x\",\"type\":\"long\"}]}"

static BrokerFixture broker;

static void setup(void) {
        broker_fixture_init(&broker);
}

static void teardown(void) {
        broker_fixture_done(&broker);
}

static int count_fds(pid_t pid) {
        char path[64];
        struct dirent *e;
        DIR *d;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%ld/fd", (long) pid);
        d = opendir(path);
        if (!d)
                return negative_errno();
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* Waits until the broker holds at least `want` descriptors; returns how many. */
static int wait_fds(int want) {
        uint64_t deadline = deadline_after(5 * NSEC_PER_SEC);
        int n;

        while ((n = count_fds(broker.pid)) < want) {
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline,
                              "the broker holds %d descriptors, not %d", n, want);
                test_nap_ms(2);
        }
        return n;
}

/* A connection to the broker's admin socket: one more descriptor in the broker once accepted. */
static int admin_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", broker.socket_path);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* Opens a client on the test bus whose segments stay mapped without descriptors, so that one
 * test process can hold thousands of them, and registers it with `pid` (current form).
 * Returns the reply status (or a negative errno: no reply). */
static int open_register(V1Client *c, const char *app, int64_t pid, char *msg, size_t msg_size) {
        V1Reply reply = V1REPLY_NULL;
        int32_t status;
        Text m;
        int r;

        r = v1client_open(c, broker.bus, SMALL_RING);
        if (r < 0)
                return r;
        segment_close_fd(&c->control);
        segment_close_fd(&c->reply_seg);
        r = v1client_register(c, app, 0, pid, &reply);
        if (r < 0)
                return r;
        status = v1client_reply_status(&reply);
        m = v1client_reply_message(&reply);
        if (msg)
                snprintf(msg, msg_size, "%.*s", (int) m.len, m.ptr);
        v1client_reply_done(&reply);
        return status;
}

/* A round trip through the broker: everything sent before it has been served. */
static void sync_with(V1Client *c) {
        V1Reply reply = V1REPLY_NULL;

        ck_assert_int_eq(v1client_list_channels(c, &reply), 0);
        ck_assert_int_eq(reply.msg.type, CONTROL_CHANNEL_LIST);
        v1client_reply_done(&reply);
}

START_TEST(test_one_descriptor_per_client) {
        _cleanup_free_ V1Client *many = calloc(MANY_CLIENTS, sizeof(V1Client));
        V1Client first = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        int base, full, after, status;
        double per;

        ck_assert_ptr_nonnull(many);
        broker_fixture_start(&broker, NULL);
        /* The first client makes the broker open what it opens once (the inotify instance for
         * cgroups, ...): count from there. */
        status = open_register(&first, "first", getpid(), NULL, 0);
        ck_assert_int_eq(status, CONTROL_STATUS_OK);
        base = count_fds(broker.pid);
        ck_assert_int_gt(base, 0);

        for (size_t i = 0; i < MANY_CLIENTS; i++) {
                many[i] = V1CLIENT_NULL;
                status = open_register(&many[i], "many", getpid(), NULL, 0);
                ck_assert_msg(status == CONTROL_STATUS_OK, "client %zu: %s", i,
                              status < 0 ? strerror(-status) : control_status_name(status));
        }
        full = count_fds(broker.pid);
        per = (double) (full - base) / MANY_CLIENTS;
        printf("# broker descriptors: %d with 1 client, %d with %d more: %.3f per client\n", base, full,
               MANY_CLIENTS, per);
        /* One pidfd each, and nothing for the reply segment (the broker held two per client). */
        ck_assert_int_ge(full - base, MANY_CLIENTS);
        ck_assert_int_le(full - base, MANY_CLIENTS + MANY_CLIENTS / 100);

        /* Channels and functions cost no descriptor either: their arenas are only mapped. */
        for (int i = 0; i < CHANNELS; i++) {
                char name[32];

                snprintf(name, sizeof(name), "ch-%d", i);
                ck_assert_int_eq(v1client_publish(&first, name, SCHEMA, "", &reply), 0);
                ck_assert_int_eq(v1client_reply_status(&reply), CONTROL_STATUS_OK);
                v1client_reply_done(&reply);
                snprintf(name, sizeof(name), "fn-%d", i);
                ck_assert_int_eq(v1client_expose(&first, name, SCHEMA, SCHEMA, "", 0, &reply), 0);
                ck_assert_int_eq(v1client_reply_status(&reply), CONTROL_STATUS_OK);
                v1client_reply_done(&reply);
        }
        after = count_fds(broker.pid);
        printf("# broker descriptors after %d channels and %d functions: %d\n", CHANNELS, CHANNELS,
               after);
        ck_assert_int_le(after, full + 2);

        /* All gone again (Unregister, served in order before the round trip). */
        for (size_t i = 0; i < MANY_CLIENTS; i++)
                v1client_close(&many[i]);
        sync_with(&first);
        after = count_fds(broker.pid);
        printf("# broker descriptors after the %d left: %d\n", MANY_CLIENTS, after);
        ck_assert_int_le(after, base + 2);

        v1client_close(&first);
        broker_fixture_expect_clean_stop(&broker);
}
END_TEST

typedef struct FillReport {
        int ok, internal, other, timeouts;
        char message[256];              /* of the first INTERNAL */
} FillReport;

/* In a helper process: registers clients (with its pid) until the broker answers INTERNAL,
 * then three more, and reports. It stays until killed, so that its clients are reaped at once. */
static _Noreturn void fill_until_refused(int fd) {
        FillReport rep = {};
        char msg[256];
        int extra = -1;

        for (int i = 0; i < FILL_MAX && extra < 3; i++) {
                V1Client *c = malloc(sizeof(*c));
                int status;

                if (!c)
                        _exit(2);
                *c = V1CLIENT_NULL;
                status = open_register(c, "filler", getpid(), msg, sizeof(msg));
                if (status == CONTROL_STATUS_OK)
                        rep.ok++;       /* kept (mapped) until the process dies */
                else if (status == CONTROL_STATUS_INTERNAL) {
                        if (rep.internal++ == 0)
                                snprintf(rep.message, sizeof(rep.message), "%s", msg);
                } else if (status == -ETIMEDOUT)
                        rep.timeouts++;
                else
                        rep.other++;
                if (status != CONTROL_STATUS_OK)
                        v1client_close(c);
                if (status != CONTROL_STATUS_OK || extra >= 0)
                        extra++;
        }
        (void) !write(fd, &rep, sizeof(rep));
        for (;;)
                pause();
}

START_TEST(test_out_of_descriptors_answers_internal) {
        V1Client late = V1CLIENT_NULL;
        FillReport rep;
        char msg[256];
        uint64_t deadline;
        int pipefd[2], admin[4], n_admin = 0, base, n, status, tries = 0;
        struct pollfd p;
        pid_t child;

        broker.nofile = LOW_NOFILE;
        broker_fixture_start(&broker, NULL);
        base = count_fds(broker.pid);
        printf("# broker with RLIMIT_NOFILE %d starts with %d descriptors\n", LOW_NOFILE, base);
        ck_assert_int_lt(base, LOW_NOFILE - 8);

        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
        child = broker_fixture_fork_helper();
        ck_assert_int_ge(child, 0);
        if (child == 0) {
                close(pipefd[0]);
                fill_until_refused(pipefd[1]);
        }
        close(pipefd[1]);
        p = (struct pollfd) { .fd = pipefd[0], .events = POLLIN };
        ck_assert_msg(poll(&p, 1, 30 * 1000) == 1, "the filler did not finish");
        ck_assert_int_eq(read(pipefd[0], &rep, sizeof(rep)), sizeof(rep));
        close(pipefd[0]);
        printf("# filler: %d registered, %d INTERNAL (\"%s\"), %d other, %d timed out; broker holds %d "
               "descriptors\n", rep.ok, rep.internal, rep.message, rep.other, rep.timeouts,
               count_fds(broker.pid));

        /* About one client per free descriptor, then an answer for every refused one. */
        ck_assert_int_ge(rep.ok, LOW_NOFILE - base - 8);
        ck_assert_int_le(rep.ok, LOW_NOFILE - base);
        ck_assert_int_eq(rep.timeouts, 0);
        ck_assert_int_eq(rep.other, 0);
        ck_assert_int_eq(rep.internal, 4);
        ck_assert_msg(strstr(rep.message, "file descriptors"), "INTERNAL message \"%s\"", rep.message);
        ck_assert(broker_fixture_alive(&broker));

        /* Logged as the broker's own error, not as hostile input. */
        ck_assert_int_ge(broker_fixture_log_count(&broker, "open files"), 1);
        ck_assert_int_eq(broker_fixture_log_count(&broker, "refused"), 0);

        /* Those Registers failed after the client's pidfd took the last descriptor. With that
         * one taken too (by admin connections), not even the reply segment can be opened: the
         * broker's spare descriptor still gets the answer through, and is held again after. */
        n = count_fds(broker.pid);
        while (n < LOW_NOFILE && n_admin < (int) ELEMENTSOF(admin)) {
                admin[n_admin++] = admin_connect();
                n = wait_fds(n + 1);
        }
        ck_assert_int_eq(n, LOW_NOFILE);
        status = open_register(&late, "at-the-limit", getpid(), msg, sizeof(msg));
        ck_assert_msg(status == CONTROL_STATUS_INTERNAL, "Register with no descriptor left: %s",
                      status < 0 ? strerror(-status) : control_status_name(status));
        ck_assert_msg(strstr(msg, "file descriptors"), "INTERNAL message \"%s\"", msg);
        v1client_close(&late);
        ck_assert_int_eq(count_fds(broker.pid), LOW_NOFILE);
        while (n_admin > 0)
                close(admin[--n_admin]);
        ck_assert(broker_fixture_alive(&broker));

        /* The filler dies: its clients are reaped and Register works again. Until then every
         * attempt is answered. */
        ck_assert_int_eq(kill(child, SIGKILL), 0);
        ck_assert_int_eq(broker_fixture_wait_pid(child, V1CLIENT_TIMEOUT_NS, &status), 0);
        deadline = deadline_after(5 * NSEC_PER_SEC);
        for (;;) {
                int r = open_register(&late, "late", getpid(), msg, sizeof(msg));

                tries++;
                ck_assert_msg(r == CONTROL_STATUS_OK || r == CONTROL_STATUS_INTERNAL, "Register: %s",
                              r < 0 ? strerror(-r) : control_status_name(r));
                if (r == CONTROL_STATUS_OK)
                        break;
                v1client_close(&late);
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline, "Register still refused 5 s after the "
                              "filler died");
                test_nap_ms(10);
        }
        printf("# after the filler died: registered on attempt %d\n", tries);
        sync_with(&late);
        v1client_close(&late);
        broker_fixture_assert_served(&broker);
        broker_fixture_expect_clean_stop(&broker);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("broker-limits");
        TCase *tc = tcase_create("limits");

        /* Thousands of registrations: slow under valgrind. */
        tcase_set_timeout(tc, 4 * BROKER_FIXTURE_TCASE_TIMEOUT);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_one_descriptor_per_client);
        tcase_add_test(tc, test_out_of_descriptors_answers_internal);
        suite_add_tcase(s, tc);
        return s;
}
