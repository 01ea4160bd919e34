/* SPDX-License-Identifier: MIT */
/*
 * Runs one job: forks peer A (pinned to env->cpu_a) and peer B (env->cpu_b), connects them
 * with a socketpair for set-up handshakes, and collects each peer's Report through a pipe.
 * The orchestrator itself only waits. A peer that hangs is killed after a deadline; a peer
 * dies with the orchestrator (PR_SET_PDEATHSIG). Peers leave with _exit(), so that the
 * orchestrator's exit handlers (which stop the broker) never run in them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t peer_now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

void peer_pin(int cpu) {
        cpu_set_t set;

        if (cpu < 0)
                return;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        (void) sched_setaffinity(0, sizeof(set), &set);
}

int peer_sync_send(Sync *s, char tag) {
        return send(s->fd, &tag, 1, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

int peer_sync_wait(Sync *s, char tag) {
        struct pollfd p = { .fd = s->fd, .events = POLLIN };
        char got;
        int r;

        r = poll(&p, 1, BENCH_IO_TIMEOUT_MS);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        r = (int) recv(s->fd, &got, 1, 0);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ECONNRESET;     /* the other peer exited */
        return got == tag ? 0 : -EPROTO;
}

typedef int (*PeerFn)(const Job *j, Sync *s, Report *rep);

static pid_t spawn(Job *j, int cpu, PeerFn fn, int sync_fd, int close_fd, int *ret_result_fd) {
        int p[2];
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                return -errno;
        }
        if (pid == 0) {
                Report rep = { 0 };
                Sync s = { .fd = sync_fd };

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(p[0]);
                if (close_fd >= 0)
                        close(close_fd);
                peer_pin(cpu);
                rep.error = fn(j, &s, &rep);
                if (rep.error < 0 && !rep.message[0])
                        snprintf(rep.message, sizeof(rep.message), "%s", strerror(-rep.error));
                /* A Report is smaller than PIPE_BUF: the write is atomic. */
                (void) !write(p[1], &rep, sizeof(rep));
                _exit(rep.error < 0 ? 1 : 0);
        }
        close(p[1]);
        *ret_result_fd = p[0];
        return pid;
}

/* Reads one Report, waiting until deadline. */
static int read_report(int fd, uint64_t deadline, Report *ret) {
        size_t got = 0;

        while (got < sizeof(*ret)) {
                uint64_t now = peer_now_ns();
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int) ((deadline - now) / 1000000u) + 1);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r <= 0)
                        continue;
                ssize_t n = read(fd, (char *) ret + got, sizeof(*ret) - got);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;     /* died without a report */
                if (n > 0)
                        got += (size_t) n;
        }
        return 0;
}

/* Reaps a peer; returns the CPU time it used, in seconds. */
static double reap(pid_t pid, const char *who, Report *ret) {
        struct rusage ru;
        int status;

        if (pid <= 0)
                return 0;
        if (wait4(pid, &status, 0, &ru) != pid)
                return 0;
        if (WIFSIGNALED(status) && ret->error == 0) {
                ret->error = -ECONNRESET;
                snprintf(ret->message, sizeof(ret->message), "peer %s died of signal %d", who, WTERMSIG(status));
        }
        return (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Busy CPU time of the whole machine (every state but idle and iowait), in seconds. */
static double machine_busy(void) {
        unsigned long long v[10] = { 0 };
        double busy = 0;
        FILE *f = fopen("/proc/stat", "re");

        if (!f)
                return 0;
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8)
                /* user nice system idle iowait irq softirq steal (guest time is within user). */
                busy = (double) (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
        fclose(f);
        return busy / (double) sysconf(_SC_CLK_TCK);
}

/* CPU time of a process (all its threads), in seconds; 0 if it is not there. */
static double process_cpu(pid_t pid) {
        char path[64], buf[1024];
        unsigned long long ut = 0, st = 0;
        size_t n;
        FILE *f;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return 0;
        return (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
}

static double daemons_cpu(const Env *env);

/* One repetition of the floor, for a probe; false if it did not run. */
static bool run_probe(Job *j, Rep *ret) {
        Report rep;

        if (peer_run_job(j, &rep) < 0 || rep.error < 0 || rep.n_reps == 0)
                return false;
        *ret = rep.reps[0];
        return true;
}

double peer_probe(const Env *env) {
        Job j = {
                .t = &transport_floor,
                .wl = WL_LATENCY,
                .size = 64,
                .reps = 1,
                .duration_ns = 20000000,
                .max_samples = 20000,
                .warmup = 500,
                .env = env,
        };
        Rep r;

        return run_probe(&j, &r) ? r.p50 : 0;
}

/* How fast the two CPUs move bulk data between them: the floor's 64 KiB stream through an
 * arena-sized ring for 50 ms (msgs/s). On a virtual machine it changes threefold from one
 * minute to the next while the round-trip probe stays put (the host moves our vCPUs between
 * cores that share a cache, or not, and neighbours compete for it), and every shared-memory
 * stream of large messages follows it. */
double peer_probe_bulk(const Env *env) {
        Job j = {
                .t = &transport_floor,
                .wl = WL_STREAM,
                .size = 65536,
                .reps = 1,
                .duration_ns = 50000000,
                .env = env,
        };
        Rep r;

        return run_probe(&j, &r) ? r.msgs_per_s : 0;
}

/* Waits until the machine has been quiet (other processes below the foreign-CPU limit) for
 * 300 ms, at most max_ns; returns the foreign load last seen, in cores. */
double peer_wait_quiet(const Env *env, uint64_t max_ns) {
        uint64_t end = peer_now_ns() + max_ns;
        double load;

        for (;;) {
                double b0 = machine_busy(), d0 = daemons_cpu(env);
                struct timespec ts = { .tv_nsec = 300000000 };
                nanosleep(&ts, NULL);
                load = (machine_busy() - b0 - (daemons_cpu(env) - d0)) / 0.3;
                if (load <= BENCH_FOREIGN_CPU_LIMIT || peer_now_ns() >= end)
                        return load;
        }
}

static double daemons_cpu(const Env *env) {
        return process_cpu(env->broker_pid) + process_cpu(env->roudi_pid) + process_cpu(env->dbus_pid) +
               process_cpu(getpid());
}

static PeerFn peer_a(const Job *j) {
        if (j->t->flags & T_SOLO)
                return NULL;
        return j->wl == WL_LATENCY ? loops_call : loops_send;
}

static PeerFn peer_b(const Job *j) {
        return j->wl == WL_LATENCY ? loops_echo : loops_recv;
}

static int solo(const Job *j, Sync *s, Report *rep) {
        return loops_solo(j, rep);
}

int peer_run_job(Job *j, Report *ret) {
        bool is_solo = j->t->flags & T_SOLO;
        Report ra = { 0 }, rb = { 0 };
        int sv[2] = { -1, -1 }, fa = -1, fb = -1, r;
        pid_t a = 0, b = 0;
        uint64_t deadline;

        double busy0 = machine_busy(), ours0 = daemons_cpu(j->env), ours = 0;
        uint64_t wall0 = peer_now_ns();

        memset(ret, 0, sizeof(*ret));
        for (unsigned i = 0; i < 4; i++)
                j->fds[i] = -1;
        if (j->t->prepare) {
                r = j->t->prepare(j);
                if (r < 0) {
                        ret->error = r;
                        snprintf(ret->message, sizeof(ret->message), "set-up failed: %s", strerror(-r));
                        return r;
                }
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                r = -errno;
                goto out;
        }
        if (is_solo)
                a = spawn(j, j->env->cpu_a, solo, sv[0], sv[1], &fa);
        else {
                b = spawn(j, j->env->cpu_b, peer_b(j), sv[1], sv[0], &fb);
                if (b > 0)
                        a = spawn(j, j->env->cpu_a, peer_a(j), sv[0], sv[1], &fa);
        }
        close(sv[0]);
        close(sv[1]);
        if (a < 0 || b < 0) {
                r = a < 0 ? (int) a : (int) b;
                if (b > 0)
                        kill(b, SIGKILL);
                goto out;
        }

        /* Generous: a run that takes much longer than planned is broken. */
        deadline = peer_now_ns() + 60 * 1000000000ull + 4 * (uint64_t) j->reps * j->duration_ns +
                   (uint64_t) j->reps * j->max_samples * (j->gap_ns + 200000u);
        r = read_report(fa, deadline, &ra);
        if (r < 0) {
                ra.error = r;
                snprintf(ra.message, sizeof(ra.message), "peer A: %s", r == -ETIMEDOUT ? "timed out" :
                         r == -ECONNRESET ? "exited without a report" : strerror(-r));
        }
        if (!is_solo) {
                r = read_report(fb, ra.error < 0 ? peer_now_ns() + 2000000000ull : deadline, &rb);
                if (r < 0) {
                        rb.error = r;
                        snprintf(rb.message, sizeof(rb.message), "peer B: %s", r == -ETIMEDOUT ? "timed out" :
                                 r == -ECONNRESET ? "exited without a report" : strerror(-r));
                }
        }
        if (ra.error < 0 || rb.error < 0) {
                if (a > 0)
                        kill(a, SIGKILL);
                if (b > 0)
                        kill(b, SIGKILL);
        }
        /* The peer that measured reports the figures; either peer's error fails the job. */
        *ret = (j->wl == WL_STREAM && !is_solo) ? rb : ra;
        if (ret->error == 0 && (ra.error < 0 || rb.error < 0)) {
                const Report *bad = ra.error < 0 ? &ra : &rb;
                ret->error = bad->error;
                memcpy(ret->message, bad->message, sizeof(ret->message));
        }
        ours += reap(a, "A", ret);
        ours += reap(b, "B", ret);
        r = ret->error;
        {
                double wall = (double) (peer_now_ns() - wall0) / 1e9,
                       foreign = machine_busy() - busy0 - (daemons_cpu(j->env) - ours0) - ours;
                ret->foreign_cpu = wall > 0 && foreign > 0 ? foreign / wall : 0;
        }
out:
        if (fa >= 0)
                close(fa);
        if (fb >= 0)
                close(fb);
        if (j->t->unprepare)
                j->t->unprepare(j);
        if (r < 0 && ret->error == 0) {
                ret->error = r;
                snprintf(ret->message, sizeof(ret->message), "%s", strerror(-r));
        }
        return r;
}
