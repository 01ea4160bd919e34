/* SPDX-License-Identifier: MIT */
/*
 * The admin socket of the real impulsed ($IMPULSED) as systemd passes it: the test runs
 * `systemd-socket-activate --seqpacket`, whose first connection execs the broker with the
 * listening socket in LISTEN_FDS, and asks it with the real ringctl ($RINGCTL). Also ringctl's
 * answers when no broker is there.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "broker-fixture.h"
#include "macro.h"
#include "run-util.h"
#include "test-util.h"
#include "time-util.h"
#include "v1client.h"

#define WAIT_NS ((int64_t) (15 * NSEC_PER_SEC))

static BrokerFixture F;

static void setup(void) {
        broker_fixture_init(&F);
}

static void teardown(void) {
        broker_fixture_done(&F);
}

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}
#define _cleanup_json_ _cleanup_(decref_jsonp)

/* The absolute path of name in $PATH, or NULL. */
static const char *find_program(const char *name, char *buf, size_t size) {
        const char *path = getenv("PATH");

        for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
                size_t n = strcspn(p, ":");

                snprintf(buf, size, "%.*s/%s", (int) n, p, name);
                if (access(buf, X_OK) == 0)
                        return buf;
                p += n + (p[n] == ':');
        }
        return NULL;
}

static void run_ringctl(RunResult *ret, const char *const *env, const char *verb, ...) {
        const char *argv[16] = { run_program("RINGCTL"), verb };
        size_t n = 2;
        va_list ap;

        ck_assert_msg(argv[0], "$RINGCTL is not set (run under make check)");
        va_start(ap, verb);
        for (const char *a; (a = va_arg(ap, const char *)) && n < ELEMENTSOF(argv) - 1;)
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;
        ck_assert_int_eq(run_capture(argv, env, NULL, WAIT_NS, ret), 0);
}

/* ringctl must find the broker only through what the test says. */
static const char *const clean_env[] = { "RING_ADMIN_SOCKET", "RING_BUS", NULL };

START_TEST(test_socket_activation) {
        const char *impulsed = getenv("IMPULSED");
        char sa_path[PATH_MAX], line[256];
        _cleanup_json_ json_t *status = NULL, *clients = NULL;
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        _cleanup_close_ int log_fd = -1;
        RunResult r = {};
        json_t *list;
        int wstatus;
        pid_t pid;

        ck_assert_msg(impulsed && *impulsed, "$IMPULSED is not set (run under make check)");
        if (!find_program("systemd-socket-activate", sa_path, sizeof(sa_path))) {
                printf("# skipping: systemd-socket-activate is not installed\n");
                return;
        }

        log_fd = open(F.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        ck_assert_int_ge(log_fd, 0);
        pid = broker_fixture_fork_helper();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                char bus_env[64];
                const char *argv[] = {
                        sa_path, "--seqpacket", "-l", F.socket_path,
                        "env", bus_env, impulsed, "--key-cost", "min", "--log-level", "debug",
                        NULL,
                };
                sigset_t none;

                snprintf(bus_env, sizeof(bus_env), "RING_BUS=%s", F.bus);
                if (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
                        _exit(127);
                syscall(SYS_close_range, 3U, ~0U, 0U);
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                unsetenv("NOTIFY_SOCKET");
                unsetenv("WATCHDOG_USEC");
                unsetenv("WATCHDOG_PID");
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                unsetenv("LISTEN_FDNAMES");
                unsetenv("JOURNAL_STREAM");
                unsetenv("RING_ADMIN_SOCKET");
                execv(sa_path, (char *const *) argv);
                _exit(127);
        }
        /* systemd-socket-activate and then env exec in place: this pid becomes impulsed. */
        F.pid = pid;

        /* Listening, as systemd-socket-activate says once listen() returned. */
        if (run_wait_file_contains(F.log_path, "Listening on", WAIT_NS) < 0) {
                F.trouble = true;
                ck_abort_msg("systemd-socket-activate did not listen on %s", F.socket_path);
        }

        /* The first connection starts the broker, which must answer it. */
        run_ringctl(&r, clean_env, "status", "--socket", F.socket_path, NULL);
        if (!run_exited(&r, 0))
                F.trouble = true;
        ck_assert_msg(run_exited(&r, 0), "ringctl status: wait status 0x%x, stderr: %s",
                      (unsigned) r.status, r.err);
        snprintf(line, sizeof(line), "Bus:             %s\n", F.bus);
        ck_assert_msg(strstr(r.out, line), "the bus is not named in:\n%s", r.out);
        snprintf(line, sizeof(line), "Control socket:  %s\n", F.socket_path);
        ck_assert_msg(strstr(r.out, line), "the socket is not named in:\n%s", r.out);
        snprintf(line, sizeof(line), "Broker PID:      %ld\n", (long) pid);
        ck_assert_msg(strstr(r.out, line), "not the activated pid %ld in:\n%s", (long) pid, r.out);
        run_result_done(&r);

        run_ringctl(&r, clean_env, "status", "--json", "--socket", F.socket_path, NULL);
        ck_assert(run_exited(&r, 0));
        status = json_loads(r.out, 0, NULL);
        ck_assert_msg(status, "not JSON: %s", r.out);
        ck_assert_str_eq(json_string_value(json_object_get(status, "bus")), F.bus);
        ck_assert_int_eq(json_integer_value(json_object_get(status, "pid")), pid);
        ck_assert_str_eq(json_string_value(json_object_get(status, "version")), PACKAGE_VERSION);
        run_result_done(&r);

        /* A client shows up in the lists, by its app name and pid. */
        ck_assert_int_eq(v1client_open(&c, F.bus, 0), 0);
        ck_assert_int_eq(v1client_register(&c, "activation-test", 0, getpid(), &reply), 0);
        EXPECT_V1_REPLY(0, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        v1client_reply_done(&reply);
        run_ringctl(&r, clean_env, "clients", "--json", "--socket", F.socket_path, NULL);
        ck_assert(run_exited(&r, 0));
        clients = json_loads(r.out, 0, NULL);
        ck_assert_ptr_nonnull(clients);
        list = json_object_get(clients, "clients");
        ck_assert_uint_eq(json_array_size(list), 1);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "app")),
                         "activation-test");
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(list, 0), "pid")),
                         getpid());
        run_result_done(&r);
        run_ringctl(&r, clean_env, "clients", "--socket", F.socket_path, NULL);
        ck_assert(run_exited(&r, 0));
        ck_assert_ptr_nonnull(strstr(r.out, "activation-test"));
        run_result_done(&r);
        v1client_close(&c);

        /* SIGTERM: a clean exit, and the socket file stays, as it is systemd's. */
        ck_assert_int_eq(broker_fixture_stop(&F, &wstatus), 0);
        ck_assert_msg(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "wait status 0x%x",
                      (unsigned) wstatus);
        ck_assert_int_eq(access(F.socket_path, F_OK), 0);
        ck_assert_int_eq(broker_fixture_segments(&F, NULL, 0), 0);

        /* Nobody listens there now. */
        run_ringctl(&r, clean_env, "status", "--socket", F.socket_path, NULL);
        ck_assert(run_exited(&r, 1));
        snprintf(line, sizeof(line), "ringctl status: impulsed is not running (nothing listens on "
                 "the control socket %s)\n", F.socket_path);
        ck_assert_str_eq(r.err, line);
        run_result_done(&r);
}
END_TEST

START_TEST(test_not_running) {
        char path[PATH_MAX], want[PATH_MAX + 128], env_socket[PATH_MAX + 32], env_bus[64];
        RunResult r = {};

        snprintf(path, sizeof(path), "%s/no-such-socket", F.dir);
        snprintf(want, sizeof(want), "ringctl status: impulsed is not running (no control socket "
                 "at %s)\n", path);

        run_ringctl(&r, clean_env, "status", "--socket", path, NULL);
        ck_assert_msg(run_exited(&r, 1), "wait status 0x%x", (unsigned) r.status);
        ck_assert_str_eq(r.err, want);
        ck_assert_str_eq(r.out, "");
        run_result_done(&r);

        /* The same through $RING_ADMIN_SOCKET, and with --json. */
        snprintf(env_socket, sizeof(env_socket), "RING_ADMIN_SOCKET=%s", path);
        run_ringctl(&r, (const char *const[]) { env_socket, NULL }, "status", "--json", NULL);
        ck_assert(run_exited(&r, 1));
        ck_assert_str_eq(r.err, want);
        ck_assert_str_eq(r.out, "");
        run_result_done(&r);

        /* $RING_BUS picks the bus's socket under /run/impulsed. */
        snprintf(env_bus, sizeof(env_bus), "RING_BUS=%s", F.bus);
        run_ringctl(&r, (const char *const[]) { "RING_ADMIN_SOCKET", env_bus, NULL }, "channels",
                    NULL);
        ck_assert(run_exited(&r, 1));
        snprintf(want, sizeof(want), "ringctl channels: impulsed is not running (no control socket "
                 "at /run/impulsed/control-%s)\n", F.bus);
        ck_assert_str_eq(r.err, want);
        run_result_done(&r);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("socket-activation");
        TCase *tc = tcase_create("socket-activation");

        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, BROKER_FIXTURE_TCASE_TIMEOUT);
        tcase_add_test(tc, test_socket_activation);
        tcase_add_test(tc, test_not_running);
        suite_add_tcase(s, tc);
        return s;
}
