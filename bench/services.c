/* SPDX-License-Identifier: MIT */
/*
 * The daemons one benchmark run needs, started and stopped by the orchestrator: the in-tree
 * impulsed on a private bus (RING_BUS=bench<pid>), iox-roudi for iceoryx and a private
 * dbus-daemon for D-Bus. Everything lives in one temporary directory; at exit (also after
 * SIGINT/SIGTERM) the daemons are stopped, the bus's segments unlinked and the directory
 * removed. A missing optional daemon is not an error: its transports report why they are
 * unavailable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "names.h"
#include "v1client.h"

#define BENCH_BROKER_NOFILE 65536

static Env *cleanup_env;

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        nanosleep(&ts, NULL);
}

/* fork+exec argv with stdout and stderr into log; returns the pid. */
static pid_t spawn(char *const argv[], const char *log, rlim_t nofile) {
        pid_t pid = fork();

        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                }
                /* The daemons start in their own process group: a terminal's ^C reaches us
                 * only, and we stop them in order. Should we die without cleaning up, they
                 * are told to stop all the same. */
                setpgid(0, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (nofile > 0) {
                        struct rlimit rl = { nofile, nofile };
                        /* Beyond our hard limit only with CAP_SYS_RESOURCE; else what we have. */
                        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                                rl.rlim_cur = rl.rlim_max;
                                (void) setrlimit(RLIMIT_NOFILE, &rl);
                        }
                }
                execvp(argv[0], argv);
                dprintf(STDERR_FILENO, "cannot execute %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        return pid;
}

static bool exited(pid_t pid) {
        int status;

        return waitpid(pid, &status, WNOHANG) == pid;
}

/* SIGTERM, then SIGKILL after 10 s; true if it exited by itself with status 0. */
static bool stop(pid_t *pid) {
        int status;

        if (*pid <= 0)
                return true;
        kill(*pid, SIGTERM);
        for (unsigned i = 0; i < 1000; i++) {
                if (waitpid(*pid, &status, WNOHANG) == *pid) {
                        *pid = 0;
                        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
                }
                sleep_ms(10);
        }
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
        return false;
}

/* iox-roudi 2.0.3 aborts at shutdown when it still lists an application that has exited, and
 * then leaves its shared memory behind: /iceoryx_mgmt and one segment named after the user.
 * Only ever called for a RouDi we started, i.e. when no other one ran. */
static void roudi_remove_segments(void) {
        struct passwd *pw = getpwuid(geteuid());
        char name[300];

        shm_unlink("/iceoryx_mgmt");
        if (pw) {
                snprintf(name, sizeof(name), "/%s", pw->pw_name);
                shm_unlink(name);
        }
}

static bool file_contains(const char *path, const char *needle) {
        char buf[8192];
        size_t n;
        FILE *f = fopen(path, "re");

        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        return strstr(buf, needle);
}

/* The last lines of a daemon's log, for the user to see why it failed. */
static void print_log(const char *path) {
        char buf[2048];
        size_t n;
        long size;
        FILE *f = fopen(path, "re");

        if (!f)
                return;
        if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > (long) sizeof(buf) - 1)
                fseek(f, size - (long) sizeof(buf) + 1, SEEK_SET);
        else
                rewind(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        fprintf(stderr, "--- %s:\n%s\n---\n", path, buf);
}

static int start_broker(Env *env, const char *impulsed, uint32_t arena_capacity) {
        char control[128], log[128], cap[32];
        BusNames names;
        uint32_t pid = 0;
        int r;

        snprintf(control, sizeof(control), "%s/control", env->dir);
        snprintf(log, sizeof(log), "%s/impulsed.log", env->dir);
        snprintf(cap, sizeof(cap), "%u", arena_capacity);
        char *argv[] = { (char *) impulsed, "--control-socket", control, "--key-cost", "min",
                         "--arena-capacity", cap, NULL };
        /* The file descriptor limit units/impulsed.service gives the broker (LimitNOFILE=). */
        env->broker_pid = spawn(argv, log, BENCH_BROKER_NOFILE);
        if (env->broker_pid < 0)
                return (int) env->broker_pid;
        r = names_bus_init(&names, env->bus);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < 1000; i++) {
                if (v1client_probe(&names, &pid, NULL) == 0 && pid == (uint32_t) env->broker_pid)
                        return 0;
                if (exited(env->broker_pid)) {
                        env->broker_pid = 0;
                        fprintf(stderr, "ring-bench: impulsed exited\n");
                        print_log(log);
                        return -ECHILD;
                }
                sleep_ms(10);
        }
        return -ETIMEDOUT;
}

/* iceoryx's RouDi with memory pools for the message sizes the benchmark uses. */
static void start_roudi(Env *env) {
        /* Payload plus room for iceoryx's chunk header; counts cover full queues. */
        static const struct { unsigned size, count; } pools[] = {
                { 256, 2048 }, { 2048, 1024 }, { 8192, 1024 }, { 69632, 256 }, { 1052672, 32 },
        };
        char config[128], log[128];
        FILE *f;

        snprintf(config, sizeof(config), "%s/roudi.toml", env->dir);
        snprintf(log, sizeof(log), "%s/roudi.log", env->dir);
        f = fopen(config, "we");
        if (!f) {
                snprintf(env->roudi_error, sizeof(env->roudi_error), "cannot write %s", config);
                return;
        }
        fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n");
        for (size_t i = 0; i < sizeof(pools) / sizeof(pools[0]); i++)
                fprintf(f, "\n[[segment.mempool]]\nsize = %u\ncount = %u\n", pools[i].size, pools[i].count);
        fclose(f);

        char *argv[] = { "iox-roudi", "-c", config, "-l", "info", NULL };
        env->roudi_pid = spawn(argv, log, 0);
        for (unsigned i = 0; env->roudi_pid > 0 && i < 500; i++) {
                if (file_contains(log, "RouDi is ready for clients"))
                        return;
                if (exited(env->roudi_pid)) {
                        env->roudi_pid = 0;
                        break;
                }
                sleep_ms(10);
        }
        if (env->roudi_pid > 0)
                stop(&env->roudi_pid);
        print_log(log);
        if (file_contains(log, "cannot execute"))
                snprintf(env->roudi_error, sizeof(env->roudi_error),
                         "iox-roudi not installed (Debian: iceoryx, libiceoryx-binding-c-dev)");
        else
                snprintf(env->roudi_error, sizeof(env->roudi_error),
                         "iox-roudi did not start (another RouDi running?)");
}

static void start_dbus(Env *env) {
        char address[200], log[128], sock[100];
        struct stat st;

        snprintf(sock, sizeof(sock), "%s/dbus.sock", env->dir);
        snprintf(address, sizeof(address), "--address=unix:path=%s", sock);
        snprintf(log, sizeof(log), "%s/dbus.log", env->dir);
        char *argv[] = { "dbus-daemon", "--session", "--nofork", "--nopidfile", address, NULL };
        env->dbus_pid = spawn(argv, log, 0);
        for (unsigned i = 0; env->dbus_pid > 0 && i < 500; i++) {
                if (stat(sock, &st) == 0) {
                        snprintf(env->dbus_address, sizeof(env->dbus_address), "unix:path=%s", sock);
                        return;
                }
                if (exited(env->dbus_pid)) {
                        env->dbus_pid = 0;
                        break;
                }
                sleep_ms(10);
        }
        if (env->dbus_pid > 0)
                stop(&env->dbus_pid);
        print_log(log);
        snprintf(env->dbus_error, sizeof(env->dbus_error), "%s",
                 file_contains(log, "cannot execute") ? "dbus-daemon not installed (Debian: dbus-daemon)" :
                                                       "dbus-daemon did not start");
}

int services_start(Env *env, const char *impulsed, uint32_t arena_capacity, bool want_roudi, bool want_dbus) {
        int r;

        snprintf(env->dir, sizeof(env->dir), "/tmp/ring-bench.XXXXXX");
        if (!mkdtemp(env->dir))
                return -errno;
        snprintf(env->bus, sizeof(env->bus), "bench%d", (int) getpid());
        if (setenv("RING_BUS", env->bus, 1) < 0)
                return -errno;
        r = start_broker(env, impulsed, arena_capacity);
        if (r < 0)
                return r;
        if (want_roudi)
                start_roudi(env);
        if (want_dbus)
                start_dbus(env);
        return 0;
}

static void remove_dir(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                        (void) unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
        rmdir(dir);
}

void services_stop(Env *env) {
        BusNames names;
        DIR *d;
        struct dirent *e;

        stop(&env->dbus_pid);
        if (env->roudi_pid > 0 && !stop(&env->roudi_pid))
                roudi_remove_segments();
        stop(&env->broker_pid);
        /* The broker removes its segments; clients that were killed may have left theirs. */
        if (env->bus[0] && names_bus_init(&names, env->bus) >= 0 && (d = opendir("/dev/shm"))) {
                while ((e = readdir(d)))
                        if (names_file_belongs_to_bus(&names, e->d_name)) {
                                char name[NAME_MAX + 2];
                                snprintf(name, sizeof(name), "/%s", e->d_name);
                                shm_unlink(name);
                        }
                closedir(d);
        }
        /* An iceoryx peer that was killed leaves its IPC channel in /tmp (t-iceoryx.c). */
        if (env->bus[0] && (d = opendir("/tmp"))) {
                char prefix[64];
                int n = snprintf(prefix, sizeof(prefix), "ring-%s-", env->bus);
                while ((e = readdir(d)))
                        if (strncmp(e->d_name, prefix, (size_t) n) == 0)
                                (void) unlinkat(dirfd(d), e->d_name, 0);
                closedir(d);
        }
        if (env->dir[0])
                remove_dir(env->dir);
        env->dir[0] = 0;
        env->bus[0] = 0;
}

static void at_exit(void) {
        if (cleanup_env)
                services_stop(cleanup_env);
}

static void on_signal(int sig) {
        /* Children die with us (PR_SET_PDEATHSIG); the daemons need stopping. */
        at_exit();
        signal(sig, SIG_DFL);
        raise(sig);
}

void services_cleanup_at_exit(Env *env) {
        cleanup_env = env;
        atexit(at_exit);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGHUP, on_signal);
        /* Output into a closed pipe (ring-bench | head) must not kill us before the cleanup. */
        signal(SIGPIPE, SIG_IGN);
}
