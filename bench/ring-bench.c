/* SPDX-License-Identifier: MIT */
/*
 * ring-bench(1): Ring against the IPC layers a user would pick instead, in one run on one
 * machine. The orchestrator starts the daemons (services.c), then runs every job, each in a
 * fresh pair of peer processes pinned to different cores (peer.c), then the control-plane
 * measurement (ctlplane.c), and prints the tables (report.c). It never judges the figures:
 * the exit status says only whether every measurement ran.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_TRANSPORTS 20

static const Transport *const transports[] = {
        &transport_ring_rpc,
        &transport_ring_rpc_avro,
        &transport_ring_pubsub,
        &transport_ring_pubsub_avro,
        &transport_unix_seqpacket,
        &transport_unix_stream,
        &transport_pipe,
        &transport_zmq,
        &transport_iox_poll,
        &transport_iox_waitset,
        &transport_dbus,
        &transport_floor,
        &transport_floor_futex,
        &transport_memcpy_hot,
        &transport_memcpy_ring,
        &transport_ringbuf_v1,
        &transport_ringbuf_proposal,
};

static bool arg_quick;
static const char *arg_out = "bench-results";
static const char *arg_impulsed;
static const char *arg_only;
static bool arg_control = true;
static bool arg_plots = true;
static unsigned arg_reps;
static uint32_t arg_arena_capacity = UINT32_C(4) << 20;
static unsigned arg_gap_us = 500;
static const char *arg_sizes;
static bool arg_latency = true, arg_stream = true, arg_sleeping = true;

static void help(void) {
        printf("Usage: ring-bench [OPTIONS]\n"
               "Measures Ring against AF_UNIX, pipes, ZeroMQ, iceoryx, D-Bus, a bare shared-memory ring\n"
               "and memcpy, in one run: round-trip latency, streaming throughput, the broker's control plane.\n\n"
               "  -h --help               Show this help and exit\n"
               "     --quick              A smoke test: every measurement, briefly (under a minute)\n"
               "     --out DIR            Where to write results.md, results.csv and the plots\n"
               "                          (default: bench-results)\n"
               "     --impulsed PATH      The broker to start (default: $IMPULSED, src/impulsed/impulsed,\n"
               "                          then impulsed from $PATH)\n"
               "     --only LIST          Only these transports (comma-separated names, see the CSV)\n"
               "     --no-control         Skip the control-plane measurement\n"
               "     --no-plots           Do not run gnuplot\n"
               "     --reps N             Repetitions of every figure (default 5, quick 3; at least 3)\n"
               "     --arena-capacity N   Ring's channel arena capacity, and every transport's buffering\n"
               "                          (default 4194304)\n"
               "     --gap-us N           Idle time between calls for the sleeping-peer latency (default 500)\n"
               "     --sizes LIST         Only these message sizes in bytes (comma-separated)\n"
               "     --workload LIST      Only these of latency, stream, sleeping, control (comma-separated)\n");
}

/* True if word is one of the comma-separated items of list. */
static bool in_list(const char *list, const char *word) {
        size_t n = strlen(word);

        while (*list) {
                size_t len = strcspn(list, ",");
                if (len == n && strncmp(list, word, n) == 0)
                        return true;
                list += len;
                list += *list == ',';
        }
        return false;
}

static bool size_selected(size_t size) {
        char word[32];

        if (!arg_sizes)
                return true;
        snprintf(word, sizeof(word), "%zu", size);
        return in_list(arg_sizes, word);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_QUICK = 0x100, ARG_OUT, ARG_IMPULSED, ARG_ONLY, ARG_NO_CONTROL, ARG_NO_PLOTS, ARG_REPS,
               ARG_ARENA, ARG_GAP, ARG_SIZES, ARG_WORKLOAD };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "quick", no_argument, NULL, ARG_QUICK },
                { "out", required_argument, NULL, ARG_OUT },
                { "impulsed", required_argument, NULL, ARG_IMPULSED },
                { "only", required_argument, NULL, ARG_ONLY },
                { "no-control", no_argument, NULL, ARG_NO_CONTROL },
                { "no-plots", no_argument, NULL, ARG_NO_PLOTS },
                { "reps", required_argument, NULL, ARG_REPS },
                { "arena-capacity", required_argument, NULL, ARG_ARENA },
                { "gap-us", required_argument, NULL, ARG_GAP },
                { "sizes", required_argument, NULL, ARG_SIZES },
                { "workload", required_argument, NULL, ARG_WORKLOAD },
                {}
        };
        unsigned long v;
        char *end;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case ARG_QUICK:
                        arg_quick = true;
                        break;
                case ARG_OUT:
                        arg_out = optarg;
                        break;
                case ARG_IMPULSED:
                        arg_impulsed = optarg;
                        break;
                case ARG_ONLY:
                        arg_only = optarg;
                        break;
                case ARG_NO_CONTROL:
                        arg_control = false;
                        break;
                case ARG_NO_PLOTS:
                        arg_plots = false;
                        break;
                case ARG_REPS:
                        v = strtoul(optarg, &end, 10);
                        if (*end || v < 3 || v > BENCH_MAX_REPS) {
                                fprintf(stderr, "ring-bench: --reps must be 3..%d\n", BENCH_MAX_REPS);
                                return -EINVAL;
                        }
                        arg_reps = (unsigned) v;
                        break;
                case ARG_ARENA:
                        v = strtoul(optarg, &end, 0);
                        if (*end || v < (2u << 20) || v > (1u << 28) || (v & (v - 1))) {
                                fprintf(stderr, "ring-bench: --arena-capacity must be a power of two, "
                                                "2 MiB .. 256 MiB (1 MiB messages must fit)\n");
                                return -EINVAL;
                        }
                        arg_arena_capacity = (uint32_t) v;
                        break;
                case ARG_GAP:
                        v = strtoul(optarg, &end, 10);
                        if (*end || v < 200 || v > 100000) {
                                fprintf(stderr, "ring-bench: --gap-us must be 200..100000 (above libring's "
                                                "100 us spin)\n");
                                return -EINVAL;
                        }
                        arg_gap_us = (unsigned) v;
                        break;
                case ARG_SIZES:
                        arg_sizes = optarg;
                        break;
                case ARG_WORKLOAD:
                        arg_latency = in_list(optarg, "latency");
                        arg_stream = in_list(optarg, "stream");
                        arg_sleeping = in_list(optarg, "sleeping");
                        arg_control = arg_control && in_list(optarg, "control");
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "ring-bench: unexpected argument \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/* Waiting for quiet moments costs at most this much per run (the machine may never calm down). */
static uint64_t quiet_budget_ns = 600 * 1000000000ull;

static void wait_quiet(const Env *env) {
        uint64_t t0 = peer_now_ns(), spent;

        if (arg_quick || quiet_budget_ns == 0)
                return;
        (void) peer_wait_quiet(env, quiet_budget_ns < 20 * 1000000000ull ? quiet_budget_ns : 20 * 1000000000ull);
        spent = peer_now_ns() - t0;
        quiet_budget_ns = spent >= quiet_budget_ns ? 0 : quiet_budget_ns - spent;
}

/* The run's typical round-trip probe (the median of the first few): the vCPU placement the
 * run is taken under; a probe far from it in either direction means the host moved our vCPUs.
 * And the best bulk probe seen so far: a far placement or a neighbour on the host's caches only
 * ever slows the bulk probe down (one the round trip does not always show), so the highest one
 * is the machine undisturbed, and a bulk probe well below it means a disturbed stream. */
static double probe_ref, bulk_best;

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

static double bulk_probe(const Env *env) {
        double b = peer_probe_bulk(env);

        if (b > bulk_best)
                bulk_best = b;
        return b;
}

static void probe_calibrate(const Env *env) {
        double p[7];

        if (arg_quick)
                return;
        /* After the daemons have settled (iox-roudi starting up competes with the probe), and
         * spread over a second and a half, so that one moment's placement does not decide. */
        wait_quiet(env);
        for (unsigned i = 0; i < 7; i++) {
                struct timespec ts = { .tv_nsec = 250000000 };

                if (i > 0)
                        nanosleep(&ts, NULL);
                p[i] = peer_probe(env);
                (void) bulk_probe(env);
        }
        qsort(p, 7, sizeof(double), cmp_double);
        probe_ref = p[3];
}

static bool probe_slow(double p) {
        return probe_ref > 0 && (p == 0 || p > 1.6 * probe_ref || p < probe_ref / 1.6);
}

static bool bulk_slow(double b) {
        return bulk_best > 0 && b < bulk_best / 1.6;
}

/* Before a job: a quiet machine and the run's usual probes, trying for a while (the host keeps
 * our vCPUs apart for seconds at a time: up to ~15 s). Only streams are held to the bulk probe:
 * it says nothing about a round trip. */
static void settle(const Env *env, const Job *j) {
        if (arg_quick)
                return;
        for (unsigned i = 0; i < 50; i++) {
                wait_quiet(env);
                if (!probe_slow(peer_probe(env)) && (j->wl != WL_STREAM || !bulk_slow(bulk_probe(env))))
                        return;
                struct timespec ts = { .tv_nsec = 300000000 };
                nanosleep(&ts, NULL);
        }
}

/* After a job: was it disturbed? */
static void judge(const Env *env, const Job *j, Report *rep) {
        if (arg_quick)
                return;
        rep->probe_ns = peer_probe(env);
        rep->probe_bulk = j->wl == WL_STREAM ? bulk_probe(env) : 0;
        rep->disturbed = rep->foreign_cpu > BENCH_FOREIGN_CPU_LIMIT || probe_slow(rep->probe_ns) ||
                         (j->wl == WL_STREAM && bulk_slow(rep->probe_bulk));
}

/* Whether attempt a was taken under better conditions than b: undisturbed, then (streams) the
 * faster bulk probe after it, then the less foreign load. Never by the figure itself. */
static bool better_conditions(const Report *a, const Report *b) {
        if (a->disturbed != b->disturbed)
                return !a->disturbed;
        if (a->probe_bulk != b->probe_bulk)
                return a->probe_bulk > b->probe_bulk;
        return a->foreign_cpu < b->foreign_cpu;
}

/* One attempt at j: a quiet moment and the usual probes first (a while at most), then judged. */
static int attempt(const Env *env, Job *j, Report *rep) {
        int r;

        settle(env, j);
        r = peer_run_job(j, rep);
        judge(env, j, rep);
        return r;
}

/* j was disturbed: one more attempt, kept if it was taken under better conditions. */
static void attempt_again(const Env *env, Job *j, Report *rep) {
        Report again;

        fprintf(stderr, "(disturbed: %.0f%% of a core busy, probe %.2f us", rep->foreign_cpu * 100,
                rep->probe_ns / 1000);
        if (rep->probe_bulk > 0)
                fprintf(stderr, ", bulk probe %.0f k msgs/s", rep->probe_bulk / 1000);
        fprintf(stderr, "; again) ");
        if (attempt(env, j, &again) >= 0 && again.error == 0 && better_conditions(&again, rep))
                *rep = again;
}

static void print_figure(const Result *res) {
        if (res->rep.error < 0)
                fprintf(stderr, "FAILED: %s\n", res->rep.message);
        else if (res->job.wl == WL_LATENCY)
                fprintf(stderr, "p50 %.2f us%s\n", stats_summary(&res->rep, offsetof(Rep, p50)).median / 1000.0,
                        res->rep.disturbed ? " (disturbed)" : "");
        else
                fprintf(stderr, "%.3g msgs/s%s\n", stats_summary(&res->rep, offsetof(Rep, msgs_per_s)).median,
                        res->rep.disturbed ? " (disturbed)" : "");
}

static bool selected(const Transport *t) {
        if (t->flags & T_EXPERIMENT)
                return arg_only && in_list(arg_only, t->name);
        return !arg_only || in_list(arg_only, t->name);
}

static const char *find_impulsed(void) {
        const char *e = getenv("IMPULSED");

        if (arg_impulsed)
                return arg_impulsed;
        if (e && *e)
                return e;
        if (access("src/impulsed/impulsed", X_OK) == 0)
                return "src/impulsed/impulsed";
        return "impulsed";
}

/* The command line as the user typed it; libtool's wrapper runs bench/.libs/lt-ring-bench. */
static char *command_line(int argc, char *argv[]) {
        size_t n = sizeof("bench/ring-bench");
        char *s;

        for (int i = 1; i < argc; i++)
                n += strlen(argv[i]) + 1;
        s = calloc(1, n);
        if (!s)
                return NULL;
        strcat(s, strstr(argv[0], "/.libs/") ? "bench/ring-bench" : argv[0]);
        for (int i = 1; i < argc; i++) {
                strcat(s, " ");
                strcat(s, argv[i]);
        }
        return s;
}

static Result *add(Run *run, const Transport *t, Workload wl, size_t size, uint64_t gap_ns) {
        Result *grown = realloc(run->results, (run->n_results + 1) * sizeof(Result)), *r;
        unsigned reps = arg_reps ? arg_reps : arg_quick ? 3 : 5;

        if (!grown)
                return NULL;
        run->results = grown;
        r = &run->results[run->n_results++];
        memset(r, 0, sizeof(*r));
        r->job = (Job) {
                .t = t,
                .wl = wl,
                .size = size,
                .reps = gap_ns ? (arg_reps ? arg_reps : 3) : reps,
                .gap_ns = gap_ns,
                .id = (unsigned) run->n_results,
                .env = run->env,
        };
        if (wl == WL_LATENCY && !gap_ns) {
                r->job.duration_ns = arg_quick ? 50000000u : 400000000u;
                r->job.max_samples = arg_quick ? 5000 : 100000;
                r->job.warmup = arg_quick ? 200 : 2000;
        } else if (wl == WL_LATENCY) {
                /* Sleeping peers: each sample costs the gap, keep the count modest. */
                r->job.duration_ns = arg_quick ? 100000000u : 1000000000u;
                r->job.max_samples = arg_quick ? 200 : 2000;
                r->job.warmup = 20;
        } else {
                r->job.duration_ns = arg_quick ? 50000000u : 300000000u;
        }
        return r;
}

/* Size-major order: every transport's figure for one workload and size is taken within a
 * minute or so, so that the ratios compare figures taken under the same conditions (on a
 * virtual machine even the cost of a cache-line transfer between the two vCPUs changes over
 * time). The floor and AF_UNIX come first in each group, Ring right after them. */
static void plan_group(Run *run, Workload wl, size_t size, uint64_t gap_ns) {
        static const Transport *const first[] = { &transport_floor, &transport_floor_futex,
                                                  &transport_unix_seqpacket, &transport_unix_stream };
        const Transport *order[MAX_TRANSPORTS];
        size_t n = 0;

        for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++)
                order[n++] = first[i];
        for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]) && n < MAX_TRANSPORTS; i++) {
                bool dup = false;
                for (size_t k = 0; k < sizeof(first) / sizeof(first[0]); k++)
                        dup |= transports[i] == first[k];
                if (!dup)
                        order[n++] = transports[i];
        }
        for (size_t i = 0; i < n; i++) {
                const Transport *t = order[i];
                unsigned need = wl == WL_LATENCY ? T_LATENCY : T_STREAM;

                if (!selected(t) || !(t->flags & need) || (gap_ns && !(t->flags & T_COLD)))
                        continue;
                add(run, t, wl, size, gap_ns)->skipped = t->unavailable ? t->unavailable(run->env) : NULL;
        }
}

static void plan(Run *run) {
        for (size_t k = 0; k < run->n_lat_sizes && arg_latency; k++)
                if (size_selected(run->lat_sizes[k]))
                        plan_group(run, WL_LATENCY, run->lat_sizes[k], 0);
        for (size_t k = 0; k < run->n_stream_sizes && arg_stream; k++)
                if (size_selected(run->stream_sizes[k]))
                        plan_group(run, WL_STREAM, run->stream_sizes[k], 0);
        /* The sleeping-peer regime last: its jobs are slow and say least about the data path. */
        for (size_t k = 0; k < run->n_cold_sizes && arg_sleeping; k++)
                if (size_selected(run->lat_sizes[k]))
                        plan_group(run, WL_LATENCY, run->lat_sizes[k], run->gap_ns);
}

static bool wants(const Transport *only1, const Transport *only2) {
        for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++)
                if ((transports[i] == only1 || transports[i] == only2) && selected(transports[i]) &&
                    !(transports[i]->flags & T_NOT_BUILT))
                        return true;
        return false;
}

int main(int argc, char *argv[]) {
        static Env env;
        Run run = { 0 };
        uint64_t t0 = peer_now_ns();
        unsigned failed = 0;
        int r;

        r = parse_argv(argc, argv);
        if (r < 0)
                return EXIT_FAILURE;
        setvbuf(stdout, NULL, _IOLBF, 0);

        env.buffer = arg_arena_capacity;
        env.cpu_a = env.cpu_b = -1;
        if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
                env.cpu_a = 0;
                env.cpu_b = 1;
        }
        run.env = &env;
        run.quick = arg_quick;
        run.command = command_line(argc, argv);
        run.out_dir = arg_out;
        run.plots = arg_plots;
        run.gap_ns = (uint64_t) arg_gap_us * 1000u;
        run.lat_sizes[0] = 64;
        run.lat_sizes[1] = 4096;
        run.n_lat_sizes = 2;
        run.n_cold_sizes = arg_quick ? 1 : 2;
        run.stream_sizes[0] = 64;
        run.stream_sizes[1] = 1024;
        run.stream_sizes[2] = 65536;
        run.stream_sizes[3] = 1048576;
        run.n_stream_sizes = 4;

        if (mkdir(arg_out, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "ring-bench: cannot create %s: %m\n", arg_out);
                return EXIT_FAILURE;
        }
        services_cleanup_at_exit(&env);
        r = services_start(&env, find_impulsed(), arg_arena_capacity,
                           wants(&transport_iox_poll, &transport_iox_waitset), wants(&transport_dbus, NULL));
        if (r < 0) {
                fprintf(stderr, "ring-bench: cannot start the broker %s: %s\n", find_impulsed(), strerror(-r));
                return EXIT_FAILURE;
        }
        fprintf(stderr, "ring-bench: broker pid %d on bus %s%s%s\n", (int) env.broker_pid, env.bus,
                env.roudi_pid > 0 ? ", iox-roudi running" : "", env.dbus_pid > 0 ? ", dbus-daemon running" : "");

        plan(&run);
        probe_calibrate(&env);
        for (size_t i = 0; i < run.n_results; i++) {
                Result *res = &run.results[i];
                Job *j = &res->job;

                fprintf(stderr, "ring-bench: [%zu/%zu] %-18s %-7s %8zu B%s ", i + 1, run.n_results, j->t->name,
                        j->wl == WL_LATENCY ? "latency" : "stream", j->size,
                        j->gap_ns ? ", sleeping peers" : "");
                if (res->skipped) {
                        fprintf(stderr, "skipped: %s\n", res->skipped);
                        continue;
                }
                /* A figure taken while other processes compete for the two cores, or while the
                 * host keeps our two vCPUs far apart, says little: wait for a quiet moment and
                 * the usual probes (a while at most), try again twice at most if the job was
                 * disturbed after all, and keep the attempt taken under the best conditions.
                 * Not in quick mode. */
                r = attempt(&env, j, &res->rep);
                for (unsigned k = 1; !arg_quick && k < 3 && r >= 0 && res->rep.disturbed; k++)
                        attempt_again(&env, j, &res->rep);
                if (r < 0 && res->rep.error == 0)
                        res->rep.error = r;
                if (res->rep.error < 0)
                        failed++;
                print_figure(res);
        }
        /* The best bulk probe is known only now: a stream whose bulk probe was more than 1.6x
         * below it was taken while the machine moved large messages slower than it can, even
         * if the run had not seen better yet. It is taken again (twice at most), and stays
         * marked as disturbed if it cannot be taken under better conditions. */
        for (size_t i = 0; i < run.n_results && !arg_quick; i++) {
                Result *res = &run.results[i];
                Job *j = &res->job;

                if (res->skipped || res->rep.error < 0 || j->wl != WL_STREAM || !bulk_slow(res->rep.probe_bulk))
                        continue;
                fprintf(stderr, "ring-bench: [again %zu/%zu] %-18s stream  %8zu B (bulk probe %.0f k msgs/s, the "
                        "run's best %.0f k) ", i + 1, run.n_results, j->t->name, j->size, res->rep.probe_bulk / 1000,
                        bulk_best / 1000);
                res->rep.disturbed = true;
                for (unsigned k = 0; k < 2 && res->rep.disturbed; k++)
                        attempt_again(&env, j, &res->rep);
                res->rep.disturbed |= bulk_slow(res->rep.probe_bulk);
                print_figure(res);
        }
        if (arg_control && !arg_only && !arg_sizes) {
                fprintf(stderr, "ring-bench: control plane (Register/Subscribe/Lookup, memory, idle CPU)\n");
                r = ctlplane_run(&env, arg_quick, &run.ctl);
                run.have_ctl = true;
                if (r < 0) {
                        failed++;
                        fprintf(stderr, "ring-bench: control plane FAILED: %s\n", run.ctl.message);
                }
        }
        run.seconds = (double) (peer_now_ns() - t0) / 1e9;
        run.probe_best_ns = probe_ref;
        run.probe_bulk_best = bulk_best;
        services_stop(&env);

        r = report_write(&run);
        if (r < 0) {
                fprintf(stderr, "ring-bench: cannot write the results: %s\n", strerror(-r));
                failed++;
        }
        fprintf(stderr, "ring-bench: %zu measurements, %u failed, %.0f s; results in %s/\n", run.n_results, failed,
                run.seconds, arg_out);
        free(run.results);
        free((char *) run.command);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
