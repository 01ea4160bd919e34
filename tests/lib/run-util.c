/* SPDX-License-Identifier: MIT */
/*
 * Helper processes for tests (run-util.h). Everything waits on file descriptors with a
 * deadline; nothing sleeps to synchronise.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "run-util.h"
#include "time-util.h"

const char *run_program(const char *name) {
        const char *e = getenv(name);

        return e && *e ? e : NULL;
}

static _Noreturn void child(const char *const *argv, const char *const *env,
                            const RunCreds *creds, pid_t parent, int out, int err) {
        int null_fd;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
                _exit(127);
        null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
            dup2(err, STDERR_FILENO) < 0)
                _exit(127);
        syscall(SYS_close_range, 3U, ~0U, 0U);
        for (; env && *env; env++) {
                const char *eq = strchr(*env, '=');

                if (eq) {
                        char name[256];

                        snprintf(name, sizeof(name), "%.*s", (int) (eq - *env), *env);
                        setenv(name, eq + 1, 1);
                } else
                        unsetenv(*env);
        }
        if (creds && (setgroups(creds->n_groups, creds->groups) < 0 || setgid(creds->gid) < 0 ||
                      setuid(creds->uid) < 0)) {
                dprintf(STDERR_FILENO, "run-util: cannot drop to uid %lu: %s\n",
                        (unsigned long) creds->uid, strerror(errno));
                _exit(127);
        }
        execv(argv[0], (char *const *) argv);
        dprintf(STDERR_FILENO, "run-util: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
}

typedef struct Capture {
        int fd;
        char *buf;
        size_t n;
} Capture;

/* Reads what is there; 1 at end of file. */
static int capture_read(Capture *c) {
        char chunk[4096];
        ssize_t k = read(c->fd, chunk, sizeof(chunk));
        char *bigger;

        if (k < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : negative_errno();
        if (k == 0)
                return 1;
        bigger = realloc(c->buf, c->n + (size_t) k + 1);
        if (!bigger)
                return -ENOMEM;
        c->buf = bigger;
        memcpy(c->buf + c->n, chunk, (size_t) k);
        c->n += (size_t) k;
        c->buf[c->n] = '\0';
        return 0;
}

int run_capture(const char *const *argv, const char *const *env, const RunCreds *creds,
                int64_t timeout_ns, RunResult *ret) {
        uint64_t deadline = deadline_after(timeout_ns);
        Capture cap[2] = { { .fd = -1 }, { .fd = -1 } };
        int out[2] = { -1, -1 }, err[2] = { -1, -1 }, status = 0, r = 0;
        _cleanup_close_ int pidfd = -1;
        pid_t pid, parent = getpid();

        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                r = negative_errno();
                goto finish;
        }
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                r = negative_errno();
                goto finish;
        }
        if (pid == 0)
                child(argv, env, creds, parent, out[1], err[1]);
        closep(&out[1]);
        closep(&err[1]);
        out[1] = err[1] = -1;
        cap[0].fd = out[0];
        cap[1].fd = err[0];
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);

        /* Output first, until both pipes close; then the exit. */
        while (r == 0 && (cap[0].fd >= 0 || cap[1].fd >= 0)) {
                struct pollfd p[2] = {
                        { .fd = cap[0].fd, .events = POLLIN },
                        { .fd = cap[1].fd, .events = POLLIN },
                };
                uint64_t now = now_ns(CLOCK_MONOTONIC);

                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (poll(p, 2, (int) ((deadline - now) / NSEC_PER_MSEC) + 1) < 0 &&
                    errno != EINTR) {
                        r = negative_errno();
                        break;
                }
                for (int i = 0; i < 2; i++)
                        if (p[i].revents) {
                                int k = capture_read(&cap[i]);

                                if (k < 0)
                                        r = k;
                                else if (k > 0)
                                        cap[i].fd = -1;
                        }
        }
        while (r == 0) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                uint64_t now = now_ns(CLOCK_MONOTONIC);

                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR) {
                        r = negative_errno();
                        break;
                }
                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (pidfd >= 0) {
                        struct pollfd p = { .fd = pidfd, .events = POLLIN };

                        (void) poll(&p, 1, (int) ((deadline - now) / NSEC_PER_MSEC) + 1);
                }
        }
        if (r < 0) {
                kill(pid, SIGKILL);
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
        }

finish:
        closep(&out[0]);
        closep(&out[1]);
        closep(&err[0]);
        closep(&err[1]);
        if (r < 0) {
                free(cap[0].buf);
                free(cap[1].buf);
                return r;
        }
        *ret = (RunResult) {
                .status = status,
                .out = cap[0].buf ? cap[0].buf : strdup(""),
                .err = cap[1].buf ? cap[1].buf : strdup(""),
        };
        return 0;
}

void run_result_done(RunResult *r) {
        free(r->out);
        free(r->err);
        *r = (RunResult) {};
}

bool run_exited(const RunResult *r, int code) {
        return WIFEXITED(r->status) && WEXITSTATUS(r->status) == code;
}

static bool file_contains(const char *path, const char *needle) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        bool found = false;
        FILE *f = fopen(path, "re");

        if (!f)
                return false;
        /* The file is a log: small, and read whole on each change. */
        if (getdelim(&buf, &size, '\0', f) > 0)
                found = strstr(buf, needle) != NULL;
        fclose(f);
        return found;
}

int run_wait_file_contains(const char *path, const char *needle, int64_t timeout_ns) {
        uint64_t deadline = deadline_after(timeout_ns);
        _cleanup_close_ int fd = -1;
        char dir[PATH_MAX];

        snprintf(dir, sizeof(dir), "%s", path);
        fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        /* Watch before looking, so a write between the look and the wait still wakes us. */
        if (inotify_add_watch(fd, dirname(dir), IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE |
                              IN_MOVED_TO) < 0)
                return negative_errno();
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                char events[4096];
                uint64_t now;

                if (file_contains(path, needle))
                        return 0;
                now = now_ns(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                if (poll(&p, 1, (int) ((deadline - now) / NSEC_PER_MSEC) + 1) < 0 && errno != EINTR)
                        return negative_errno();
                while (read(fd, events, sizeof(events)) > 0)
                        ;
        }
}
