/* SPDX-License-Identifier: MIT */
/*
 * The real-broker fixture (see broker-fixture.h): spawns impulsed, waits for its control
 * segment, stops or kills it, and cleans the bus up whatever happened to the test. Waiting is
 * always on an event with a deadline (the child's exit through a pidfd, the control segment's
 * magic through short polls), never a sleep to synchronise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "macro.h"
#include "test-util.h"

#define SHM_DIR "/dev/shm"
#define GUARD_LOG_LINES 60
#define TROUBLE_LOG_LINES 40
#define VERBOSE_LOG_LINES 15

/* The guard's state directory, set in the parent by the unchecked setup; forked test children
 * inherit it and record their fixtures there. Empty: no guard (records are skipped). */
static char guard_dir[64];

static void nap(uint64_t ns) {
        struct timespec ts = timespec_from_ns(ns);

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void print_file_tail(const char *path, const char *tag, unsigned lines) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        size_t size, start, n = 0;
        ssize_t k;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                printf("# %s: no log at %s\n", tag, path);
                return;
        }
        /* The tail only: a debug log of a long test can be large. */
        size = (size_t) st.st_size;
        start = size > 64 * 1024 ? size - 64 * 1024 : 0;
        buf = malloc(size - start + 1);
        if (!buf)
                return;
        while (n < size - start) {
                k = pread(fd, buf + n, size - start - n, (off_t) (start + n));
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        buf[n] = 0;

        /* Walk back over `lines` newlines (a trailing one does not start a line). */
        size_t pos = n;
        unsigned seen = 0;
        if (pos > 0 && buf[pos - 1] == '\n')
                pos--;
        while (pos > 0) {
                if (buf[pos - 1] == '\n' && ++seen == lines)
                        break;
                pos--;
        }
        printf("# ---- last lines of %s (%s) ----\n", tag, path);
        for (char *line = buf + pos, *nl; *line; line = nl + 1) {
                nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                printf("# %s\n", line);
                if (!nl)
                        break;
        }
        printf("# ---- end of %s ----\n", tag);
        fflush(stdout);
}

void broker_fixture_print_log(const BrokerFixture *f, unsigned lines) {
        char tag[NAMES_BUS_MAX + 32];

        snprintf(tag, sizeof(tag), "impulsed log, bus %s", f->bus);
        print_file_tail(f->log_path, tag, lines);
}

int broker_fixture_log_count(const BrokerFixture *f, const char *needle) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        FILE *in;
        int n = 0;

        in = fopen(f->log_path, "re");
        if (!in)
                return negative_errno();
        while (getline(&line, &size, in) >= 0)
                if (strstr(line, needle) && !strstr(line, ": debug: "))
                        n++;
        fclose(in);
        return n;
}

static void remove_dir(const char *dir) {
        DIR *d;
        struct dirent *de;
        char path[PATH_MAX];

        if (!dir[0])
                return;
        d = opendir(dir);
        if (d) {
                while ((de = readdir(d))) {
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                        unlink(path);
                }
                closedir(d);
        }
        rmdir(dir);
}

/* Visits the /dev/shm files of bus; unlinks them if `unlink_them`. Returns the count. */
static int scan_segments(const BusNames *bus, bool unlink_them, char *buf, size_t size) {
        DIR *d;
        struct dirent *de;
        char name[NAME_MAX + 2];
        size_t used = 0;
        int n = 0;

        if (buf && size)
                buf[0] = 0;
        d = opendir(SHM_DIR);
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                if (!names_file_belongs_to_bus(bus, de->d_name))
                        continue;
                n++;
                if (buf && used < size)
                        used += (size_t) snprintf(buf + used, size - used, "%s%s", used ? " " : "",
                                                  de->d_name);
                if (unlink_them) {
                        snprintf(name, sizeof(name), "/%s", de->d_name);
                        /* Tests plant directories under segment names too. */
                        if (shm_unlink(name) < 0 && (errno == EISDIR || errno == EPERM))
                                (void) unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
                }
        }
        closedir(d);
        return n;
}

int broker_fixture_segments(const BrokerFixture *f, char *buf, size_t size) {
        return scan_segments(&f->names, false, buf, size);
}

int broker_fixture_unlink_segments(const BusNames *bus) {
        return scan_segments(bus, true, NULL, 0);
}

/* --- the guard (parent side) --- */

static void guard_record(const BrokerFixture *f) {
        char path[PATH_MAX], tmp[PATH_MAX + 8];
        FILE *out;

        if (!guard_dir[0])
                return;
        snprintf(path, sizeof(path), "%s/%s", guard_dir, f->bus);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        out = fopen(tmp, "we");
        if (!out)
                return;
        fprintf(out, "%ld %s\n", (long) f->pid, f->dir);
        if (fclose(out) == 0)
                rename(tmp, path);
}

static void guard_unrecord(const BrokerFixture *f) {
        char path[PATH_MAX];

        if (!guard_dir[0])
                return;
        snprintf(path, sizeof(path), "%s/%s", guard_dir, f->bus);
        unlink(path);
}

void broker_fixture_guard_setup(void) {
        /* Brokers and helpers orphaned by a failed test are re-parented to us, so the teardown
         * can reap them and never kills a recycled pid. */
        (void) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        snprintf(guard_dir, sizeof(guard_dir), "/tmp/ring-guard-XXXXXX");
        if (!mkdtemp(guard_dir)) {
                printf("# broker fixture guard: mkdtemp: %s\n", strerror(errno));
                guard_dir[0] = 0;
        }
}

static void guard_clean_record(const char *bus) {
        char path[PATH_MAX], dir[64] = "", tag[NAMES_BUS_MAX + 48];
        BusNames names;
        long pid = 0;
        int status, n;
        FILE *in;

        snprintf(path, sizeof(path), "%s/%s", guard_dir, bus);
        in = fopen(path, "re");
        if (!in)
                return;
        n = fscanf(in, "%ld %63s", &pid, dir);
        fclose(in);
        if (n < 1)
                pid = 0;

        printf("# broker fixture for bus %s was not torn down by its test "
               "(failed, crashed or timed out)\n", bus);
        if (pid > 0) {
                /* Only a child of ours (re-parented here) is killed: a pid we cannot wait for
                 * may have been recycled. */
                pid_t w = waitpid((pid_t) pid, &status, WNOHANG);
                if (w == 0) {
                        printf("# killing its broker, pid %ld\n", pid);
                        kill((pid_t) pid, SIGKILL);
                        waitpid((pid_t) pid, &status, 0);
                }
        }
        if (dir[0]) {
                char log[PATH_MAX];

                snprintf(log, sizeof(log), "%s/log", dir);
                snprintf(tag, sizeof(tag), "impulsed log, bus %s", bus);
                print_file_tail(log, tag, GUARD_LOG_LINES);
                remove_dir(dir);
        }
        if (names_bus_init(&names, bus) >= 0) {
                n = broker_fixture_unlink_segments(&names);
                if (n > 0)
                        printf("# unlinked %d leftover segment(s) of bus %s\n", n, bus);
        }
        unlink(path);
}

void broker_fixture_guard_teardown(void) {
        DIR *d;
        struct dirent *de;

        if (guard_dir[0]) {
                d = opendir(guard_dir);
                if (d) {
                        while ((de = readdir(d))) {
                                if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
                                        continue;
                                guard_clean_record(de->d_name);
                        }
                        closedir(d);
                }
                remove_dir(guard_dir);
                guard_dir[0] = 0;
        }
        /* Reap whatever else was re-parented to us; no Check child runs at this point. */
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        fflush(stdout);
}

/* --- the fixture (test side) --- */

static const char *impulsed_path(char *buf, size_t size) {
        const char *e = getenv("IMPULSED"), *top = getenv("TOP_BUILDDIR");

        if (e && *e)
                return e;
        snprintf(buf, size, "%s/src/impulsed/impulsed", top && *top ? top : ".");
        return buf;
}

void broker_fixture_init(BrokerFixture *f) {
        char bus[NAMES_BUS_MAX + 1];

        test_unique_bus(bus, sizeof(bus));
        broker_fixture_init_bus(f, bus);
}

void broker_fixture_init_bus(BrokerFixture *f, const char *bus) {
        *f = (BrokerFixture) {};
        ck_assert_msg(names_bus_init(&f->names, bus) == 0, "bad bus name \"%s\"", bus);
        snprintf(f->bus, sizeof(f->bus), "%s", bus);
        snprintf(f->dir, sizeof(f->dir), "/tmp/ring-broker-XXXXXX");
        ck_assert_msg(mkdtemp(f->dir), "mkdtemp: %s", strerror(errno));
        snprintf(f->log_path, sizeof(f->log_path), "%s/log", f->dir);
        snprintf(f->socket_path, sizeof(f->socket_path), "%s/control", f->dir);
        guard_record(f);
}

pid_t broker_fixture_fork_helper(void) {
        pid_t parent = getpid(), pid;

        fflush(stdout);
        pid = fork();
        if (pid != 0)
                return pid;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
                _exit(127);
        return 0;
}

static _Noreturn void exec_broker(const BrokerFixture *f, const char *path, const char *const *extra,
                                  int log_fd) {
        const char *argv[64];
        size_t n = 0;
        sigset_t none;
        int null_fd;

        argv[n++] = path;
        argv[n++] = "--control-socket";
        argv[n++] = f->socket_path;
        argv[n++] = "--key-cost";
        argv[n++] = "min";
        argv[n++] = "--log-level";
        argv[n++] = "debug";
        for (; extra && *extra && n < ELEMENTSOF(argv) - 1; extra++)
                argv[n++] = *extra;
        argv[n] = NULL;

        null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
            dup2(log_fd, STDERR_FILENO) < 0)
                _exit(127);
        /* Nothing of the test runner leaks into the broker: fds, signal state, systemd env. */
        syscall(SYS_close_range, 3U, ~0U, 0U);
        if (f->nofile > 0) {
                /* Hard too: the broker raises its soft limit to the hard one at start. */
                struct rlimit rl = { .rlim_cur = f->nofile, .rlim_max = f->nofile };

                if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                        dprintf(STDERR_FILENO, "broker fixture: setrlimit(RLIMIT_NOFILE, %lu): %s\n",
                                f->nofile, strerror(errno));
                        _exit(127);
                }
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        unsetenv("JOURNAL_STREAM");
        setenv(NAMES_BUS_ENV, f->bus, 1);

        execv(path, (char *const *) argv);
        dprintf(STDERR_FILENO, "broker fixture: exec %s: %s\n", path, strerror(errno));
        _exit(127);
}

pid_t broker_fixture_spawn(BrokerFixture *f, const char *const *extra_args) {
        char path_buf[PATH_MAX];
        const char *path = impulsed_path(path_buf, sizeof(path_buf));
        _cleanup_close_ int log_fd = -1;
        pid_t pid;

        ck_assert_msg(access(path, X_OK) == 0, "impulsed not executable at %s (set IMPULSED)", path);
        log_fd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        ck_assert_msg(log_fd >= 0, "open %s: %s", f->log_path, strerror(errno));
        dprintf(log_fd, "---- broker fixture: starting %s on bus %s ----\n", path, f->bus);

        setenv(NAMES_BUS_ENV, f->bus, 1);
        pid = broker_fixture_fork_helper();
        ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0)
                exec_broker(f, path, extra_args, log_fd);
        return pid;
}

void broker_fixture_start(BrokerFixture *f, const char *const *extra_args) {
        uint64_t deadline, epoch;
        uint32_t bpid;
        int status, r = -ENOENT;
        pid_t pid;

        ck_assert_msg(f->pid == 0, "broker of bus %s already running", f->bus);
        pid = broker_fixture_spawn(f, extra_args);
        f->pid = pid;
        guard_record(f);

        /* Ready when the control segment carries the magic and this child's pid: a stale
         * segment of a killed broker has the magic too, with another pid. */
        deadline = deadline_after(BROKER_FIXTURE_START_TIMEOUT_NS);
        for (;;) {
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        f->pid = 0;
                        f->trouble = true;
                        broker_fixture_print_log(f, TROUBLE_LOG_LINES);
                        ck_abort_msg("impulsed on bus %s exited during startup (wait status 0x%x)",
                                     f->bus, (unsigned) status);
                }
                r = v1client_probe(&f->names, &bpid, &epoch);
                if (r == 0 && bpid == (uint32_t) pid)
                        break;
                if (now_ns(CLOCK_MONOTONIC) >= deadline) {
                        f->trouble = true;
                        broker_fixture_print_log(f, TROUBLE_LOG_LINES);
                        ck_abort_msg("impulsed on bus %s not ready after %llu s (last probe %d)",
                                     f->bus,
                                     (unsigned long long) (BROKER_FIXTURE_START_TIMEOUT_NS / NSEC_PER_SEC),
                                     r);
                }
                nap(2 * NSEC_PER_MSEC);
        }
        f->epoch = epoch;
}

void broker_fixture_init_start(BrokerFixture *f) {
        broker_fixture_init(f);
        broker_fixture_start(f, NULL);
}

int broker_fixture_wait_pid(pid_t pid, int64_t timeout_ns, int *ret_status) {
        _cleanup_close_ int pidfd = -1;
        uint64_t deadline = deadline_after(timeout_ns), now;
        int status;
        pid_t w;

        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        for (;;) {
                w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR)
                        return negative_errno();
                now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                if (pidfd >= 0) {
                        struct pollfd p = { .fd = pidfd, .events = POLLIN };
                        uint64_t left = deadline - now;
                        (void) poll(&p, 1, (int) (left / NSEC_PER_MSEC) + 1);
                } else
                        nap(NSEC_PER_MSEC);
        }
        if (ret_status)
                *ret_status = status;
        return 0;
}

int broker_fixture_stop(BrokerFixture *f, int *ret_status) {
        int status, r;

        ck_assert_msg(f->pid > 0, "no broker running on bus %s", f->bus);
        ck_assert_int_eq(kill(f->pid, SIGTERM), 0);
        r = broker_fixture_wait_pid(f->pid, BROKER_FIXTURE_STOP_TIMEOUT_NS, &status);
        if (r < 0) {
                f->trouble = true;
                broker_fixture_print_log(f, TROUBLE_LOG_LINES);
                broker_fixture_kill(f);
                return r;
        }
        f->pid = 0;
        guard_record(f);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                f->trouble = true;
        if (ret_status)
                *ret_status = status;
        return 0;
}

void broker_fixture_expect_clean_stop(BrokerFixture *f) {
        int status;

        ck_assert_int_eq(broker_fixture_stop(f, &status), 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "impulsed did not exit 0 on SIGTERM (wait status 0x%x)", (unsigned) status);
}

void broker_fixture_kill(BrokerFixture *f) {
        if (f->pid <= 0)
                return;
        kill(f->pid, SIGKILL);
        while (waitpid(f->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        f->pid = 0;
        guard_record(f);
}

bool broker_fixture_alive(BrokerFixture *f) {
        int status;

        if (f->pid <= 0)
                return false;
        if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
                printf("# impulsed on bus %s exited unexpectedly (wait status 0x%x)\n", f->bus,
                       (unsigned) status);
                f->pid = 0;
                f->trouble = true;
                broker_fixture_print_log(f, TROUBLE_LOG_LINES);
                return false;
        }
        return kill(f->pid, 0) == 0;
}

void broker_fixture_done(BrokerFixture *f) {
        char names[512];
        int n;

        if (!f->dir[0])
                return;
        /* A graceful stop first, so a broker that cannot shut down cleanly after a test shows
         * up in the log; tests that care assert broker_fixture_stop() themselves. */
        if (f->pid > 0) {
                int status;

                if (broker_fixture_stop(f, &status) == 0 &&
                    (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
                        printf("# impulsed on bus %s: wait status 0x%x at teardown\n", f->bus,
                               (unsigned) status);
        }
        n = scan_segments(&f->names, true, names, sizeof(names));
        if (n > 0)
                printf("# teardown unlinked %d segment(s) of bus %s: %s\n", n, f->bus, names);
        if (f->trouble)
                broker_fixture_print_log(f, TROUBLE_LOG_LINES);
        else if (getenv("RING_TEST_VERBOSE"))
                broker_fixture_print_log(f, VERBOSE_LOG_LINES);
        remove_dir(f->dir);
        guard_unrecord(f);
        fflush(stdout);
        *f = (BrokerFixture) {};
}

void broker_fixture_expect_reply(const char *file, int line, int r, const V1Reply *reply,
                                 ControlType type, int32_t want) {
        int32_t status;
        Text msg;

        ck_assert_msg(r == 0, "%s:%d: no reply: %s", file, line, strerror(-r));
        ck_assert_msg(reply->msg.type == type, "%s:%d: reply is %s, expected %s", file, line,
                      control_type_name(reply->msg.type) ?: "?", control_type_name(type) ?: "?");
        status = v1client_reply_status(reply);
        msg = v1client_reply_message(reply);
        ck_assert_msg(status == want, "%s:%d: status %s (%d) \"%.*s\", expected %s", file, line,
                      control_status_name(status), status, (int) msg.len, msg.ptr,
                      control_status_name(want));
        if (want != CONTROL_STATUS_OK)
                ck_assert_msg(msg.len > 0, "%s:%d: %s reply without a message", file, line,
                              control_status_name(status));
}

void broker_fixture_assert_served(BrokerFixture *f) {
        V1Client c = V1CLIENT_NULL;
        V1Reply reply = V1REPLY_NULL;
        int r;

        ck_assert_msg(broker_fixture_alive(f), "impulsed on bus %s is not running", f->bus);
        r = v1client_open(&c, f->bus, 0);
        ck_assert_msg(r == 0, "good client cannot open bus %s: %s", f->bus, strerror(-r));
        r = v1client_register(&c, "good-client", 0, getpid(), &reply);
        EXPECT_V1_REPLY(r, &reply, CONTROL_REGISTER_REPLY, CONTROL_STATUS_OK);
        ck_assert_int_gt(reply.msg.register_reply.client_id, 0);
        v1client_reply_done(&reply);
        r = v1client_list_channels(&c, &reply);
        ck_assert_msg(r == 0, "good client: ListChannels: %s", strerror(-r));
        ck_assert_int_eq(reply.msg.type, CONTROL_CHANNEL_LIST);
        v1client_reply_done(&reply);
        v1client_close(&c);
        ck_assert_msg(broker_fixture_alive(f), "impulsed on bus %s died", f->bus);
}
