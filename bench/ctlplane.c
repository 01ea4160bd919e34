/* SPDX-License-Identifier: MIT */
/*
 * The broker's control plane, measured with raw wire-format v1 clients (tests/lib/v1client,
 * built on libring/core only): the time from pushing a Register, Subscribe or LookupFunction
 * into the submission ring until its reply is in the client's reply ring, with 1, 100 and
 * 10,000 clients registered; the broker's memory per registered client (from /proc); and its
 * CPU time and wake-ups while the bus is idle. Runs in one forked process pinned to peer A's
 * core, the broker runs where the scheduler puts it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "v1client.h"

#define FILLER_CAPACITY 4096            /* reply ring of each idle client */

typedef struct Ctl {
        const Env *env;
        bool quick;
        pid_t broker;
        V1Client *clients;              /* fillers */
        size_t n_clients, max_clients;
        V1Client pub, sub, svc, caller;
        bool helpers;
        int64_t channel_id;
        unsigned registered;            /* clients the broker has now, by our count */
        CtlResult *res;
} Ctl;

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        nanosleep(&ts, NULL);
}

static int check(CtlResult *res, int r, const V1Reply *reply, const char *what) {
        if (r >= 0 && v1client_reply_status(reply) != 0) {
                Text m = v1client_reply_message(reply);
                snprintf(res->message, sizeof(res->message), "%s: status %d: %.*s", what,
                         (int) v1client_reply_status(reply), (int) m.len, m.ptr);
                return -EREMOTEIO;
        }
        if (r < 0)
                snprintf(res->message, sizeof(res->message), "%s: %s", what, strerror(-r));
        return r;
}

static int register_one(Ctl *c, V1Client *v, const char *app, uint64_t *ret_ns) {
        V1Reply reply = V1REPLY_NULL;
        uint64_t t0;
        int r;

        r = v1client_open(v, c->env->bus, FILLER_CAPACITY);
        if (r < 0)
                return check(c->res, r, NULL, "creating a client");
        /* The segments stay mapped; their descriptors would cap us at half our RLIMIT_NOFILE
         * in clients, so they go. */
        segment_close_fd(&v->control);
        segment_close_fd(&v->reply_seg);
        t0 = peer_now_ns();
        r = v1client_register(v, app, 0, (int64_t) getpid(), &reply);
        if (ret_ns)
                *ret_ns = peer_now_ns() - t0;
        r = check(c->res, r, &reply, "Register");
        v1client_reply_done(&reply);
        if (r < 0)
                v1client_close(v);
        return r;
}

/* Registers idle clients until the broker has `target` of them. */
static int fill(Ctl *c, unsigned target) {
        char app[32];
        int r;

        while (c->registered < target) {
                if (c->n_clients == c->max_clients) {
                        size_t n = c->max_clients ? 2 * c->max_clients : 128;
                        V1Client *grown = realloc(c->clients, n * sizeof(V1Client));
                        if (!grown)
                                return -ENOMEM;
                        c->clients = grown;
                        c->max_clients = n;
                }
                snprintf(app, sizeof(app), "idle-%zu", c->n_clients);
                c->clients[c->n_clients] = V1CLIENT_NULL;
                r = register_one(c, &c->clients[c->n_clients], app, NULL);
                if (r < 0) {
                        char m[sizeof(c->res->message)];
                        memcpy(m, c->res->message, sizeof(m));
                        snprintf(c->res->message, sizeof(c->res->message), "client %u: %.150s", c->registered + 1, m);
                        return r;
                }
                c->n_clients++;
                c->registered++;
        }
        return 0;
}

static int helpers(Ctl *c) {
        V1Reply reply = V1REPLY_NULL;
        int r;

        r = register_one(c, &c->pub, "ctl-pub", NULL);
        if (r >= 0)
                r = register_one(c, &c->sub, "ctl-sub", NULL);
        if (r >= 0)
                r = register_one(c, &c->svc, "ctl-svc", NULL);
        if (r >= 0)
                r = register_one(c, &c->caller, "ctl-caller", NULL);
        if (r < 0)
                return r;
        c->registered += 4;
        c->helpers = true;
        r = check(c->res, v1client_publish(&c->pub, "ctl-channel", BENCH_MSG_SCHEMA, "", &reply), &reply, "Publish");
        if (r >= 0)
                c->channel_id = reply.msg.publish_reply.channel_id;
        v1client_reply_done(&reply);
        if (r < 0)
                return r;
        r = check(c->res, v1client_expose(&c->svc, "ctl-function", BENCH_MSG_SCHEMA, BENCH_MSG_SCHEMA, "", 0, &reply),
                  &reply, "ExposeFunction");
        v1client_reply_done(&reply);
        return r;
}

typedef enum Op { OP_REGISTER, OP_SUBSCRIBE, OP_LOOKUP } Op;

static int sample(Ctl *c, Op op, uint64_t *ret_ns) {
        V1Reply reply = V1REPLY_NULL;
        V1Client v = V1CLIENT_NULL;
        uint64_t t0;
        int r;

        switch (op) {
        case OP_REGISTER:
                /* A new client registers, then leaves again: the count stays put. */
                r = register_one(c, &v, "ctl-new", ret_ns);
                if (r >= 0)
                        v1client_close(&v);
                return r;
        case OP_SUBSCRIBE:
                /* v1 lets the current subscriber subscribe again. */
                t0 = peer_now_ns();
                r = v1client_subscribe(&c->sub, c->channel_id, "", 0, &reply);
                *ret_ns = peer_now_ns() - t0;
                r = check(c->res, r, &reply, "Subscribe");
                break;
        default:
                t0 = peer_now_ns();
                r = v1client_lookup(&c->caller, "ctl-function", "", &reply);
                *ret_ns = peer_now_ns() - t0;
                r = check(c->res, r, &reply, "LookupFunction");
                break;
        }
        v1client_reply_done(&reply);
        return r;
}

/* Repetitions of `samples` operations; the p50 and p99 of each, summarised. */
static int measure(Ctl *c, Op op, unsigned samples, Summary *ret_p50, Summary *ret_p99) {
        unsigned reps = c->quick ? 3 : 5;
        uint64_t *ns = calloc(samples, sizeof(uint64_t));
        Report p50 = { .n_reps = reps }, p99 = { .n_reps = reps };
        int r = 0;

        if (!ns)
                return -ENOMEM;
        for (unsigned k = 0; k < reps && r >= 0; k++) {
                for (unsigned i = 0; i < samples && r >= 0; i++)
                        r = sample(c, op, &ns[i]);
                if (r >= 0) {
                        stats_latency(ns, samples, &p50.reps[k]);
                        p99.reps[k].p50 = p50.reps[k].p99;
                }
        }
        free(ns);
        if (r < 0)
                return r;
        *ret_p50 = stats_summary(&p50, offsetof(Rep, p50));
        *ret_p99 = stats_summary(&p99, offsetof(Rep, p50));
        return 0;
}

/* Sums "key: value" lines of a /proc status file (kB values or counters). */
static uint64_t status_field(const char *path, const char *key) {
        char line[256];
        size_t n = strlen(key);
        uint64_t v = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, n) == 0 && line[n] == ':')
                        v = strtoull(line + n + 1, NULL, 10);
        fclose(f);
        return v;
}

/* CPU ticks (utime + stime) and context switches of every thread of pid. */
static void thread_totals(pid_t pid, uint64_t *ret_ticks, uint64_t *ret_switches) {
        char path[300], buf[1024];
        struct dirent *e;
        DIR *d;

        *ret_ticks = *ret_switches = 0;
        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return;
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int) pid, e->d_name);
                *ret_switches += status_field(path, "voluntary_ctxt_switches") +
                                 status_field(path, "nonvoluntary_ctxt_switches");
                snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int) pid, e->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                size_t n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[n] = 0;
                /* Fields after the parenthesised name: state is field 3, utime 14, stime 15. */
                char *p = strrchr(buf, ')');
                unsigned long long ut = 0, st = 0;
                if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
                        *ret_ticks += ut + st;
        }
        closedir(d);
}

/* The soft RLIMIT_NOFILE of pid, from /proc/<pid>/limits; 0 if unknown. */
static uint64_t nofile_limit(pid_t pid) {
        char path[64], line[256];
        unsigned long long soft = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/limits", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "Max open files", 14) == 0 && sscanf(line + 14, "%llu", &soft) != 1)
                        soft = 0;
        fclose(f);
        return soft;
}

static unsigned count_fds(pid_t pid) {
        char path[64];
        unsigned n = 0;
        struct dirent *e;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void memory(Ctl *c, CtlLevel *l) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/status", (int) c->broker);
        l->rss_kib = status_field(path, "VmRSS");
        l->rss_anon_kib = status_field(path, "RssAnon");
        l->rss_shmem_kib = status_field(path, "RssShmem");
        l->fds = count_fds(c->broker);
}

static int run(Ctl *c) {
        static const unsigned full[] = { 1, 100, 10000 }, quick[] = { 1, 100, 1000 };
        const unsigned *targets = c->quick ? quick : full;
        unsigned n_reg = c->quick ? 40 : 300, n_ops = c->quick ? 100 : 1000;
        CtlResult *res = c->res;
        BusNames names;
        uint32_t pid;
        int r;

        r = names_bus_init(&names, c->env->bus);
        if (r >= 0)
                r = v1client_probe(&names, &pid, NULL);
        if (r < 0)
                return check(res, r, NULL, "reading the control segment");
        c->broker = (pid_t) pid;

        for (unsigned i = 0; i < 3; i++) {
                CtlLevel *l = &res->levels[i];
                unsigned target = targets[i];

                /* The broker needs file descriptors per client (a pidfd; brokers before
                 * docs/benchmarks.md #10 also kept the reply segment's), measured between the
                 * first two levels: stay within its RLIMIT_NOFILE and say so, rather than fail. */
                if (i == 2) {
                        CtlLevel *p = &res->levels[1];
                        uint64_t limit = nofile_limit(c->broker);
                        double per = (double) (p->fds - res->levels[0].fds) /
                                     (double) (p->sub_clients - res->levels[0].sub_clients);
                        if (limit && per > 0) {
                                double fit = (double) p->sub_clients + ((double) limit - p->fds - 64) / per;
                                if (fit < target) {
                                        target = fit > p->sub_clients ? (unsigned) fit : p->sub_clients;
                                        snprintf(res->capped, sizeof(res->capped),
                                                 "%u instead of %u clients: the broker's RLIMIT_NOFILE is %llu and "
                                                 "it holds %.1f descriptors per client", target, targets[i],
                                                 (unsigned long long) limit, per);
                                }
                        }
                }
                r = fill(c, target);
                if (r < 0)
                        return r;
                l->clients = c->registered;
                r = measure(c, OP_REGISTER, n_reg, &l->reg_p50, &l->reg_p99);
                if (r < 0)
                        return r;
                if (!c->helpers) {
                        r = helpers(c);
                        if (r < 0)
                                return r;
                }
                l->sub_clients = c->registered;
                r = measure(c, OP_SUBSCRIBE, n_ops, &l->sub_p50, &l->sub_p99);
                if (r >= 0)
                        r = measure(c, OP_LOOKUP, n_ops, &l->look_p50, &l->look_p99);
                if (r < 0)
                        return r;
                memory(c, l);
                res->n_levels = i + 1;
        }

        /* Memory per client between the two largest levels. */
        CtlLevel *a = &res->levels[1], *b = &res->levels[2];
        double dn = (double) b->clients - (double) a->clients;
        res->rss_per_client_kib = ((double) b->rss_kib - (double) a->rss_kib) / dn;
        res->anon_per_client_kib = ((double) b->rss_anon_kib - (double) a->rss_anon_kib) / dn;
        res->shmem_per_client_kib = ((double) b->rss_shmem_kib - (double) a->rss_shmem_kib) / dn;

        /* Idle: every client registered, nobody sends anything. */
        uint64_t t0, t1, s0, s1, w0 = peer_now_ns();
        sleep_ms(200);
        thread_totals(c->broker, &t0, &s0);
        w0 = peer_now_ns();
        sleep_ms(c->quick ? 1000 : 5000);
        thread_totals(c->broker, &t1, &s1);
        res->idle_seconds = (double) (peer_now_ns() - w0) / 1e9;
        res->idle_cpu_seconds = (double) (t1 - t0) / (double) sysconf(_SC_CLK_TCK);
        res->idle_wakeups = s1 - s0;
        res->idle_clients = c->registered;
        return 0;
}

static void child(const Env *env, bool quick, int fd) {
        CtlResult res = { 0 };
        Ctl c = { .env = env, .quick = quick, .res = &res, .pub = V1CLIENT_NULL, .sub = V1CLIENT_NULL,
                  .svc = V1CLIENT_NULL, .caller = V1CLIENT_NULL };

        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        peer_pin(env->cpu_a);
        res.error = run(&c);
        if (res.error < 0 && !res.message[0])
                snprintf(res.message, sizeof(res.message), "%s", strerror(-res.error));
        (void) !write(fd, &res, sizeof(res));
        /* Leaving unregisters nobody explicitly: the broker reaps our clients by our pid. */
        for (size_t i = 0; i < c.n_clients; i++)
                v1client_close(&c.clients[i]);
        v1client_close(&c.pub);
        v1client_close(&c.sub);
        v1client_close(&c.svc);
        v1client_close(&c.caller);
        _exit(0);
}

int ctlplane_run(const Env *env, bool quick, CtlResult *ret) {
        size_t got = 0;
        int p[2];
        pid_t pid;

        memset(ret, 0, sizeof(*ret));
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                close(p[0]);
                child(env, quick, p[1]);
        }
        close(p[1]);
        while (got < sizeof(*ret)) {
                struct pollfd pf = { .fd = p[0], .events = POLLIN };
                int r = poll(&pf, 1, 600 * 1000);
                if (r <= 0) {
                        ret->error = r == 0 ? -ETIMEDOUT : -errno;
                        snprintf(ret->message, sizeof(ret->message), "control-plane run timed out");
                        break;
                }
                ssize_t n = read(p[0], (char *) ret + got, sizeof(*ret) - got);
                if (n <= 0) {
                        ret->error = -ECONNRESET;
                        snprintf(ret->message, sizeof(ret->message), "control-plane process died");
                        break;
                }
                got += (size_t) n;
        }
        if (ret->error < 0)
                kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(p[0]);
        return ret->error;
}
