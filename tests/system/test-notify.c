/* SPDX-License-Identifier: MIT */
/*
 * The service manager protocol of the real impulsed ($IMPULSED): this test plays systemd's
 * side of $NOTIFY_SOCKET with a datagram socket of its own and checks READY=1 (only once the
 * bus is live), STATUS= as clients come and go, WATCHDOG=1 from the loop, and STOPPING=1 and
 * a clean exit on SIGTERM. Every message must come from the broker's own pid.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "macro.h"
#include "test-util.h"
#include "time-util.h"
#include "v1client.h"

#define WAIT_NS ((int64_t) (10 * NSEC_PER_SEC))
/* Short, so that a test sees several pings quickly: one every 100 ms. */
#define WATCHDOG_USEC "200000"

typedef struct Notify {
        int fd;
        char path[108];
        pid_t broker;                   /* messages must come from this pid */
        bool ready, stopping;
        unsigned watchdogs;
        unsigned watchdogs_after_ready;
        char status[256];               /* the last STATUS= value */
        unsigned n_status;
        char stray[256];                /* a message from another pid, if any */
} Notify;

static BrokerFixture F;
static Notify N = { .fd = -1 };

static void setup(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int one = 1;

        broker_fixture_init(&F);
        N = (Notify) { .fd = -1 };
        snprintf(N.path, sizeof(N.path), "%s/notify", F.dir);
        N.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(N.fd, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", N.path);
        ck_assert_int_eq(bind(N.fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        /* As systemd does: the sender's credentials prove who sent each message. */
        ck_assert_int_eq(setsockopt(N.fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
}

static void teardown(void) {
        closep(&N.fd);
        N.fd = -1;
        broker_fixture_done(&F);
}

static const char *impulsed_path(void) {
        const char *e = getenv("IMPULSED");

        ck_assert_msg(e && *e, "$IMPULSED is not set (run under make check)");
        return e;
}

/* Starts impulsed directly (WATCHDOG_PID must be its pid, so no wrapper in between) with
 * NOTIFY_SOCKET and the watchdog; watchdog_pid 0 means "its own pid". */
static void spawn(pid_t watchdog_pid) {
        const char *path = impulsed_path();
        _cleanup_close_ int log_fd = -1;
        pid_t pid;

        log_fd = open(F.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        ck_assert_int_ge(log_fd, 0);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                const char *argv[] = {
                        path, "--control-socket", F.socket_path, "--key-cost", "min",
                        "--log-level", "debug", NULL,
                };
                char buf[32];
                sigset_t none;

                if (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
                        _exit(127);
                syscall(SYS_close_range, 3U, ~0U, 0U);
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                unsetenv("LISTEN_FDNAMES");
                unsetenv("JOURNAL_STREAM");
                unsetenv("RING_ADMIN_SOCKET");
                setenv("RING_BUS", F.bus, 1);
                setenv("NOTIFY_SOCKET", N.path, 1);
                setenv("WATCHDOG_USEC", WATCHDOG_USEC, 1);
                snprintf(buf, sizeof(buf), "%ld", (long) (watchdog_pid ? watchdog_pid : getpid()));
                setenv("WATCHDOG_PID", buf, 1);
                execv(path, (char *const *) argv);
                _exit(127);
        }
        F.pid = pid;
        N.broker = pid;
}

static void record(Notify *n, char *msg) {
        for (char *line = strtok(msg, "\n"); line; line = strtok(NULL, "\n")) {
                if (strcmp(line, "READY=1") == 0) {
                        uint32_t bpid = 0;

                        /* READY=1 promises a live bus: its control segment names this broker. */
                        ck_assert_int_eq(v1client_probe(&F.names, &bpid, NULL), 0);
                        ck_assert_int_eq(bpid, (uint32_t) n->broker);
                        n->ready = true;
                } else if (strcmp(line, "STOPPING=1") == 0)
                        n->stopping = true;
                else if (strcmp(line, "WATCHDOG=1") == 0) {
                        n->watchdogs++;
                        if (n->ready)
                                n->watchdogs_after_ready++;
                } else if (strncmp(line, "STATUS=", 7) == 0) {
                        snprintf(n->status, sizeof(n->status), "%s", line + 7);
                        n->n_status++;
                } else
                        ck_abort_msg("unexpected notification \"%s\"", line);
        }
}

/* Receives what is there, waiting until deadline for the first message. 0 if none came. */
static int notify_recv(Notify *n, uint64_t deadline) {
        char buf[4096];
        union {
                struct cmsghdr align;
                char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(8 * sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        struct pollfd p = { .fd = n->fd, .events = POLLIN };
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        struct ucred *cred = NULL;
        ssize_t k;

        if (now >= deadline || poll(&p, 1, (int) ((deadline - now) / NSEC_PER_MSEC) + 1) <= 0)
                return 0;
        k = recvmsg(n->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0 && errno == EAGAIN)
                return 0;
        ck_assert_int_ge(k, 0);
        buf[k] = '\0';
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
                        cred = (struct ucred *) CMSG_DATA(c);
                else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        /* Nothing should come with fds; close them if anything does. */
                        int *fds = (int *) CMSG_DATA(c);

                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
                                close(fds[i]);
                }
        }
        ck_assert_ptr_nonnull(cred);
        if (cred->pid != n->broker) {
                snprintf(n->stray, sizeof(n->stray), "pid %ld: %.200s", (long) cred->pid, buf);
                return 1;
        }
        record(n, buf);
        return 1;
}

/* Receives until cond holds, failing (with the broker's log) at the deadline. */
#define WAIT_FOR(cond, what)                                                            \
        do {                                                                            \
                uint64_t _deadline = deadline_after(WAIT_NS);                           \
                while (!(cond)) {                                                       \
                        if (notify_recv(&N, _deadline) == 0 && !(cond)) {               \
                                F.trouble = true;                                       \
                                broker_fixture_print_log(&F, 40);                       \
                                ck_abort_msg("no %s within %lld s (ready %d, %u pings, " \
                                             "status \"%s\")", what,                    \
                                             (long long) (WAIT_NS / NSEC_PER_SEC),      \
                                             N.ready, N.watchdogs, N.status);           \
                        }                                                               \
                }                                                                       \
        } while (0)

static void stop_and_check(void) {
        int status;

        ck_assert_int_eq(kill(F.pid, SIGTERM), 0);
        WAIT_FOR(N.stopping, "STOPPING=1");
        ck_assert_int_eq(broker_fixture_wait_pid(F.pid, WAIT_NS, &status), 0);
        F.pid = 0;
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait status 0x%x",
                      (unsigned) status);
        ck_assert_str_eq(N.stray, "");
        /* Nothing left behind: no segment of the bus, no control socket. */
        ck_assert_int_eq(broker_fixture_segments(&F, NULL, 0), 0);
        ck_assert_int_eq(access(F.socket_path, F_OK), -1);
}

START_TEST(test_ready_status_watchdog_stopping) {
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;

        spawn(0);
        WAIT_FOR(N.ready, "READY=1");
        WAIT_FOR(N.n_status > 0, "STATUS=");
        ck_assert_str_eq(N.status, "0 clients, 0 channels, 0 functions");
        /* The pings come from the running loop: several after READY=1. */
        WAIT_FOR(N.watchdogs_after_ready >= 2, "two WATCHDOG=1 after READY=1");

        /* STATUS= follows the counts. */
        ck_assert_int_eq(v1client_open(&c, F.bus, 0), 0);
        ck_assert_int_eq(v1client_register(&c, "notify-test", 0, getpid(), &reply), 0);
        EXPECT_V1_REPLY(0, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        v1client_reply_done(&reply);
        WAIT_FOR(strcmp(N.status, "1 clients, 0 channels, 0 functions") == 0,
                 "STATUS= with 1 client");
        v1client_close(&c);
        WAIT_FOR(strcmp(N.status, "0 clients, 0 channels, 0 functions") == 0,
                 "STATUS= with 0 clients");

        stop_and_check();
}
END_TEST

START_TEST(test_watchdog_for_another_pid) {
        uint64_t deadline;

        /* WATCHDOG_PID names another process: the watchdog is not ours to feed. */
        spawn(getpid());
        WAIT_FOR(N.ready, "READY=1");
        /* Absence can only be shown over time: five periods. */
        deadline = deadline_after((int64_t) (1 * NSEC_PER_SEC));
        while (notify_recv(&N, deadline) > 0)
                ;
        ck_assert_uint_eq(N.watchdogs, 0);
        stop_and_check();
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("notify");
        TCase *tc = tcase_create("notify");

        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, BROKER_FIXTURE_TCASE_TIMEOUT);
        tcase_add_test(tc, test_ready_status_watchdog_stopping);
        tcase_add_test(tc, test_watchdog_for_another_pid);
        suite_add_tcase(s, tc);
        return s;
}
