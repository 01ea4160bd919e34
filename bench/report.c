/* SPDX-License-Identifier: MIT */
/*
 * The run's output: markdown tables and CSV on stdout and in <out>/results.md and
 * <out>/results.csv, and the plots (SVG and PNG files in <out>, drawn by gnuplot from data files
 * and a script written here). Every figure is the median over its repetitions with its spread
 * (half the range, relative to the median); every Ring figure is also given as a ratio to the
 * best AF_UNIX figure and to the floor of the same run. Targets are printed, never enforced.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define LAT(field) offsetof(Rep, field)

/* Both outputs at once: stdout and the results file. */
typedef struct Out {
        FILE *md, *csv;
} Out;

static void md(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void md(Out *o, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        if (o->md) {
                va_start(ap, fmt);
                vfprintf(o->md, fmt, ap);
                va_end(ap);
        }
}

static const Result *find(const Run *run, const Transport *t, Workload wl, size_t size, bool cold) {
        for (size_t i = 0; i < run->n_results; i++) {
                const Result *r = &run->results[i];
                if (r->job.t == t && r->job.wl == wl && r->job.size == size && (r->job.gap_ns != 0) == cold &&
                    !r->skipped && r->rep.error == 0 && r->rep.n_reps > 0)
                        return r;
        }
        return NULL;
}

static const Result *find_any(const Run *run, const Transport *t, Workload wl, size_t size, bool cold) {
        for (size_t i = 0; i < run->n_results; i++) {
                const Result *r = &run->results[i];
                if (r->job.t == t && r->job.wl == wl && r->job.size == size && (r->job.gap_ns != 0) == cold)
                        return r;
        }
        return NULL;
}

/* The cell of a figure without a result: a measurement that did not run or failed, or a size
 * this run did not select (--sizes). */
static const char *not_measured(const Result *x) {
        if (!x)
                return "–";
        return x->skipped ? "not run" : "failed";
}

static double median(const Result *r, size_t field) {
        return r ? stats_summary(&r->rep, field).median : NAN;
}

static const char *size_name(size_t size, char *buf, size_t n) {
        if (size >= 1048576 && size % 1048576 == 0)
                snprintf(buf, n, "%zu MiB", size / 1048576);
        else if (size >= 1024 && size % 1024 == 0)
                snprintf(buf, n, "%zu KiB", size / 1024);
        else
                snprintf(buf, n, "%zu B", size);
        return buf;
}

static const char *spread(Summary s, char *buf, size_t n) {
        double pct = s.median > 0 ? (s.max - s.min) / 2 / s.median * 100 : 0;

        snprintf(buf, n, " ±%.0f%%", pct);
        return buf;
}

/* "†" after a figure taken while other processes used the machine. */
static const char *busy(const Result *r) {
        return r && r->rep.disturbed ? " †" : "";
}

/* Microseconds with a precision that suits the magnitude. */
static const char *us(double ns, char *buf, size_t n) {
        double v = ns / 1000.0;

        if (isnan(v))
                snprintf(buf, n, "–");
        else if (v < 10)
                snprintf(buf, n, "%.2f", v);
        else if (v < 100)
                snprintf(buf, n, "%.1f", v);
        else
                snprintf(buf, n, "%.0f", v);
        return buf;
}

static const char *rate(double v, char *buf, size_t n) {
        if (isnan(v))
                snprintf(buf, n, "–");
        else if (v >= 1e6)
                snprintf(buf, n, "%.2f M", v / 1e6);
        else if (v >= 1e3)
                snprintf(buf, n, "%.1f k", v / 1e3);
        else
                snprintf(buf, n, "%.0f", v);
        return buf;
}

static const char *mbs(double bytes, char *buf, size_t n) {
        double v = bytes / 1e6;

        if (isnan(v))
                snprintf(buf, n, "–");
        else if (v < 10)
                snprintf(buf, n, "%.2f", v);
        else
                snprintf(buf, n, "%.0f", v);
        return buf;
}

static const char *ratio(double a, double b, char *buf, size_t n) {
        if (isnan(a) || isnan(b) || b == 0)
                snprintf(buf, n, "–");
        else if (a / b < 10)
                snprintf(buf, n, "%.2f×", a / b);
        else
                snprintf(buf, n, "%.0f×", a / b);
        return buf;
}

static const Transport *const lat_order[] = {
        &transport_ring_rpc, &transport_ring_rpc_avro, &transport_ring_pubsub, &transport_ring_pubsub_avro,
        &transport_unix_seqpacket, &transport_unix_stream, &transport_pipe, &transport_zmq,
        &transport_iox_poll, &transport_iox_waitset, &transport_dbus, &transport_floor, &transport_floor_futex,
        &transport_ringbuf_v1, &transport_ringbuf_proposal,
};

static const Transport *const stream_order[] = {
        &transport_ring_pubsub, &transport_ring_pubsub_avro, &transport_unix_seqpacket, &transport_unix_stream,
        &transport_pipe, &transport_zmq, &transport_iox_poll, &transport_iox_waitset, &transport_floor,
        &transport_memcpy_hot, &transport_memcpy_ring, &transport_ringbuf_v1, &transport_ringbuf_proposal,
};

#define N_LAT (sizeof(lat_order) / sizeof(lat_order[0]))
#define N_STREAM (sizeof(stream_order) / sizeof(stream_order[0]))

/* The better AF_UNIX figure: lower latency or higher throughput. */
static double unix_best(const Run *run, Workload wl, size_t size, bool cold, size_t field) {
        double a = median(find(run, &transport_unix_seqpacket, wl, size, cold), field),
               b = median(find(run, &transport_unix_stream, wl, size, cold), field);

        if (isnan(a))
                return b;
        if (isnan(b))
                return a;
        return wl == WL_LATENCY ? fmin(a, b) : fmax(a, b);
}

static void machine(Out *o, const Run *run) {
        char model[128] = "unknown", line[256], date[64];
        struct utsname u;
        long mem = sysconf(_SC_PHYS_PAGES) / 1024 * sysconf(_SC_PAGESIZE) / 1024;
        time_t now = time(NULL);
        FILE *f = fopen("/proc/cpuinfo", "re");

        if (f) {
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "model name", 10) == 0) {
                                char *p = strchr(line, ':');
                                if (p) {
                                        snprintf(model, sizeof(model), "%s", p + 2);
                                        model[strcspn(model, "\n")] = 0;
                                }
                                break;
                        }
                fclose(f);
        }
        /* The distribution, and whether we run under a hypervisor (cross-vCPU costs vary). */
        char os[128] = "", hv[16] = "";
        f = fopen("/etc/os-release", "re");
        if (f) {
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "PRETTY_NAME=", 12) == 0) {
                                snprintf(os, sizeof(os), ", %.120s", line + 12);
                                os[strcspn(os, "\n")] = 0;
                                for (char *q; (q = strchr(os, '"'));)
                                        memmove(q, q + 1, strlen(q));
                        }
                fclose(f);
        }
        f = fopen("/proc/cpuinfo", "re");
        if (f) {
                char flags[4096];
                while (fgets(flags, sizeof(flags), f))
                        if (strncmp(flags, "flags", 5) == 0) {
                                if (strstr(flags, " hypervisor"))
                                        snprintf(hv, sizeof(hv), ", virtual");
                                break;
                        }
                fclose(f);
        }
        uname(&u);
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M %Z", localtime(&now));
        md(o, "## Machine and method\n\n");
        md(o, "- %s%s, %ld online CPUs, %ld MiB RAM; %s %s %s%s\n", model, hv, sysconf(_SC_NPROCESSORS_ONLN), mem,
           u.sysname, u.release, u.machine, os);
        if (run->env->cpu_a >= 0)
                md(o, "- the two peers of every measurement pinned to CPUs %d and %d; the broker, iox-roudi and "
                      "dbus-daemon unpinned\n", run->env->cpu_a, run->env->cpu_b);
        else
                md(o, "- one online CPU: peers not pinned\n");
        md(o, "- buffering: Ring's channel arenas %zu KiB; AF_UNIX socket buffers, pipe buffers and iceoryx "
              "queues sized to match where the kernel or library allows\n", run->env->buffer / 1024);
        md(o, "- every figure: the median of %s repetitions, all in one pair of fresh processes, ± half the "
              "range relative to the median\n", run->quick ? "3" : "5 (sleeping peers: 3)");
        if (run->probe_best_ns > 0)
                md(o, "- before and after each measurement, a short floor round trip (64 B) probes how fast a cache "
              "line travels between the two CPUs (on a virtual machine it depends on where the host puts the "
              "vCPUs; the run's typical probe: %.2f µs); † marks a figure that stayed disturbed after two "
              "more attempts: other processes used more than %.0f%% of a core, or the probe after it was off "
              "the typical one by more than a factor 1.6\n", run->probe_best_ns / 1000, BENCH_FOREIGN_CPU_LIMIT * 100);
        if (run->probe_bulk_best > 0)
                md(o, "- before and after each stream, the floor's 64 KiB stream for 50 ms probes how fast the two CPUs "
                      "move large messages (on a virtual machine it changes threefold from minute to minute while "
                      "the round trip stays put; the run's best bulk probe: %.0f k msgs/s); a stream followed by "
                      "a bulk probe more than a factor 1.6 below the best counts as disturbed too, and one judged "
                      "so only once the best was known is taken again at the end of the run\n",
                   run->probe_bulk_best / 1000);
        if (run->quick)
                md(o, "- quick mode: no probes, no waiting for a quiet machine, no second attempts\n");
        md(o, "- %s, %s run, %.0f s\n", date, run->quick ? "**quick** (smoke-test figures only)" : "full",
           run->seconds);
        md(o, "- command: `%s`\n\n", run->command);
}

static void latency_table(Out *o, const Run *run, bool cold) {
        char a[32], b[32], c[32], sz[32];
        size_t n_sizes = cold ? run->n_cold_sizes : run->n_lat_sizes;

        if (cold)
                md(o, "### Round-trip latency, sleeping peers (µs; the caller idles %llu µs between calls)\n\n",
                   (unsigned long long) (run->gap_ns / 1000));
        else
                md(o, "### Round-trip latency, hot peers (µs; back-to-back calls)\n\n");
        md(o, "| transport |");
        for (size_t k = 0; k < n_sizes; k++) {
                size_name(run->lat_sizes[k], sz, sizeof(sz));
                md(o, " %s p50 | %s p99 | %s p99.9 |", sz, sz, sz);
        }
        md(o, " samples/rep |\n|---|");
        for (size_t k = 0; k < n_sizes; k++)
                md(o, "---:|---:|---:|");
        md(o, "---:|\n");
        for (size_t i = 0; i < N_LAT; i++) {
                const Transport *t = lat_order[i];
                uint64_t samples = 0;
                bool any = false;

                if (cold && !(t->flags & T_COLD))
                        continue;
                for (size_t k = 0; k < n_sizes; k++)
                        any |= find_any(run, t, WL_LATENCY, run->lat_sizes[k], cold) != NULL;
                if (!any)
                        continue;
                md(o, "| %s%s%s |", t->flags & T_RING ? "**" : "", t->label, t->flags & T_RING ? "**" : "");
                for (size_t k = 0; k < n_sizes; k++) {
                        const Result *r = find(run, t, WL_LATENCY, run->lat_sizes[k], cold);
                        if (!r) {
                                const Result *x = find_any(run, t, WL_LATENCY, run->lat_sizes[k], cold);
                                md(o, " %s | | |", not_measured(x));
                                continue;
                        }
                        Summary s50 = stats_summary(&r->rep, LAT(p50)), s99 = stats_summary(&r->rep, LAT(p99)),
                                s999 = stats_summary(&r->rep, LAT(p999));
                        md(o, " %s%s%s |", us(s50.median, a, sizeof(a)), spread(s50, b, sizeof(b)), busy(r));
                        md(o, " %s%s |", us(s99.median, a, sizeof(a)), spread(s99, b, sizeof(b)));
                        md(o, " %s%s |", us(s999.median, a, sizeof(a)), spread(s999, c, sizeof(c)));
                        samples = r->rep.reps[0].n;
                }
                md(o, " %llu |\n", (unsigned long long) samples);
        }
        md(o, "\n");

        /* Ring against AF_UNIX and the floor, p50 and p99. */
        const Transport *floor = cold ? &transport_floor_futex : &transport_floor;
        md(o, "Ring's round trip as a multiple of AF_UNIX's (best of SEQPACKET and STREAM) and of the %s "
              "(lower is better):\n\n| Ring |", cold ? "futex floor" : "busy-polling floor");
        for (size_t k = 0; k < n_sizes; k++) {
                size_name(run->lat_sizes[k], sz, sizeof(sz));
                md(o, " %s p50 ÷ AF_UNIX | %s p50 ÷ floor | %s p99 ÷ floor |", sz, sz, sz);
        }
        md(o, "\n|---|");
        for (size_t k = 0; k < n_sizes; k++)
                md(o, "---:|---:|---:|");
        md(o, "\n");
        for (size_t i = 0; i < N_LAT; i++) {
                const Transport *t = lat_order[i];
                if (!(t->flags & T_RING))
                        continue;
                md(o, "| %s |", t->label);
                for (size_t k = 0; k < n_sizes; k++) {
                        size_t s = run->lat_sizes[k];
                        const Result *r = find(run, t, WL_LATENCY, s, cold), *f = find(run, floor, WL_LATENCY, s, cold);
                        md(o, " %s |", ratio(median(r, LAT(p50)), unix_best(run, WL_LATENCY, s, cold, LAT(p50)), a,
                                             sizeof(a)));
                        md(o, " %s |", ratio(median(r, LAT(p50)), median(f, LAT(p50)), a, sizeof(a)));
                        md(o, " %s |", ratio(median(r, LAT(p99)), median(f, LAT(p99)), a, sizeof(a)));
                }
                md(o, "\n");
        }
        md(o, "\n");
}

static void stream_tables(Out *o, const Run *run) {
        char a[32], b[32], sz[32];

        for (unsigned pass = 0; pass < 2; pass++) {
                md(o, "### Streaming throughput, one way (%s; receiver checks every sequence number)\n\n| transport |",
                   pass == 0 ? "messages/s" : "MB/s, 10^6 bytes");
                for (size_t k = 0; k < run->n_stream_sizes; k++)
                        md(o, " %s |", size_name(run->stream_sizes[k], sz, sizeof(sz)));
                md(o, "\n|---|");
                for (size_t k = 0; k < run->n_stream_sizes; k++)
                        md(o, "---:|");
                md(o, "\n");
                for (size_t i = 0; i < N_STREAM; i++) {
                        const Transport *t = stream_order[i];
                        bool any = false;

                        for (size_t k = 0; k < run->n_stream_sizes; k++)
                                any |= find_any(run, t, WL_STREAM, run->stream_sizes[k], false) != NULL;
                        if (!any)
                                continue;
                        md(o, "| %s%s%s |", t->flags & T_RING ? "**" : "", t->label, t->flags & T_RING ? "**" : "");
                        for (size_t k = 0; k < run->n_stream_sizes; k++) {
                                const Result *r = find(run, t, WL_STREAM, run->stream_sizes[k], false);
                                if (!r) {
                                        const Result *x = find_any(run, t, WL_STREAM, run->stream_sizes[k], false);
                                        md(o, " %s |", not_measured(x));
                                        continue;
                                }
                                Summary s = stats_summary(&r->rep, pass == 0 ? LAT(msgs_per_s) : LAT(bytes_per_s));
                                if (pass == 0)
                                        md(o, " %s%s%s |", rate(s.median, a, sizeof(a)), spread(s, b, sizeof(b)),
                                           busy(r));
                                else
                                        md(o, " %s%s%s |", mbs(s.median, a, sizeof(a)), spread(s, b, sizeof(b)),
                                           busy(r));
                        }
                        md(o, "\n");
                }
                md(o, "\n");
        }

        md(o, "Ring's throughput as a multiple of AF_UNIX's (best of SEQPACKET and STREAM), of the floor and of "
              "memcpy (higher is better):\n\n| Ring | size | ÷ AF_UNIX | ÷ floor | ÷ memcpy, arena-sized | ÷ memcpy, hot "
              "buffer | ÷ ZeroMQ |\n|---|---|---:|---:|---:|---:|---:|\n");
        for (size_t i = 0; i < N_STREAM; i++) {
                const Transport *t = stream_order[i];
                if (!(t->flags & T_RING))
                        continue;
                for (size_t k = 0; k < run->n_stream_sizes; k++) {
                        size_t s = run->stream_sizes[k];
                        double v = median(find(run, t, WL_STREAM, s, false), LAT(bytes_per_s));
                        md(o, "| %s | %s |", t->label, size_name(s, sz, sizeof(sz)));
                        md(o, " %s |", ratio(v, unix_best(run, WL_STREAM, s, false, LAT(bytes_per_s)), a, sizeof(a)));
                        md(o, " %s |", ratio(v, median(find(run, &transport_floor, WL_STREAM, s, false),
                                                       LAT(bytes_per_s)), a, sizeof(a)));
                        md(o, " %s |", ratio(v, median(find(run, &transport_memcpy_ring, WL_STREAM, s, false),
                                                       LAT(bytes_per_s)), a, sizeof(a)));
                        md(o, " %s |", ratio(v, median(find(run, &transport_memcpy_hot, WL_STREAM, s, false),
                                                       LAT(bytes_per_s)), a, sizeof(a)));
                        md(o, " %s |\n", ratio(v, median(find(run, &transport_zmq, WL_STREAM, s, false),
                                                         LAT(bytes_per_s)), a, sizeof(a)));
                }
        }
        md(o, "\n");
}

static void control_table(Out *o, const Run *run) {
        const CtlResult *c = &run->ctl;
        char a[32], b[32], d[32], e[32];

        md(o, "### Broker control plane (µs from request pushed to reply received; raw v1 clients)\n\n");
        if (c->error < 0)
                md(o, "**The measurement failed:** %s\n\n", c->message);
        if (c->n_levels == 0)
                return;
        md(o, "| registered clients | Register p50 | Register p99 | Subscribe p50 | Subscribe p99 | Lookup p50 | "
              "Lookup p99 | broker RSS (MiB) | of it shared memory | broker fds |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (unsigned i = 0; i < c->n_levels; i++) {
                const CtlLevel *l = &c->levels[i];
                md(o, "| %u", l->clients);
                if (l->sub_clients != l->clients)
                        md(o, " (Subscribe, Lookup: %u)", l->sub_clients);
                md(o, " | %s%s | %s |", us(l->reg_p50.median, a, sizeof(a)), spread(l->reg_p50, b, sizeof(b)),
                   us(l->reg_p99.median, d, sizeof(d)));
                md(o, " %s%s | %s |", us(l->sub_p50.median, a, sizeof(a)), spread(l->sub_p50, b, sizeof(b)),
                   us(l->sub_p99.median, d, sizeof(d)));
                md(o, " %s%s | %s |", us(l->look_p50.median, a, sizeof(a)), spread(l->look_p50, b, sizeof(b)),
                   us(l->look_p99.median, e, sizeof(e)));
                md(o, " %.1f | %.1f | %u |\n", (double) l->rss_kib / 1024, (double) l->rss_shmem_kib / 1024, l->fds);
        }
        md(o, "\n");
        if (c->capped[0])
                md(o, "- the largest level has %s (units/impulsed.service gives it LimitNOFILE=65536; this "
                      "process could not raise the limit)\n", c->capped);
        if (c->n_levels == 3) {
                md(o, "- broker memory per registered client (between %u and %u clients): %.1f KiB resident, of "
                      "which %.1f KiB private (anonymous) and %.1f KiB the clients' mapped reply rings\n",
                   c->levels[1].clients, c->levels[2].clients, c->rss_per_client_kib, c->anon_per_client_kib,
                   c->shmem_per_client_kib);
                md(o, "- broker while idle with %u registered clients, over %.1f s: %.2f s of CPU, %llu wake-ups "
                      "(context switches)%s\n",
                   c->idle_clients, c->idle_seconds, c->idle_cpu_seconds, (unsigned long long) c->idle_wakeups,
                   c->idle_cpu_seconds == 0 && c->idle_wakeups == 0 ? ": **zero**" : "");
        }
        md(o, "\n");
}

static void target(Out *o, const char *what, const char *measured, int met) {
        md(o, "| %s | %s | %s |\n", what, measured, met < 0 ? "not measured" : met ? "yes" : "**no**");
}

static void targets(Out *o, const Run *run) {
        char m[128], a[32], b[32];
        double rpc = median(find(run, &transport_ring_rpc, WL_LATENCY, 64, false), LAT(p50)),
               iox = median(find(run, &transport_iox_poll, WL_LATENCY, 64, false), LAT(p50)),
               flo = median(find(run, &transport_floor, WL_LATENCY, 64, false), LAT(p50)),
               s64 = median(find(run, &transport_ring_pubsub, WL_STREAM, 64, false), LAT(msgs_per_s)),
               z64 = median(find(run, &transport_zmq, WL_STREAM, 64, false), LAT(msgs_per_s)),
               s64k = median(find(run, &transport_ring_pubsub, WL_STREAM, 65536, false), LAT(bytes_per_s)),
               u64k = unix_best(run, WL_STREAM, 65536, false, LAT(bytes_per_s)),
               s1m = median(find(run, &transport_ring_pubsub, WL_STREAM, 1048576, false), LAT(bytes_per_s)),
               c1m = median(find(run, &transport_memcpy_ring, WL_STREAM, 1048576, false), LAT(bytes_per_s)),
               h1m = median(find(run, &transport_memcpy_hot, WL_STREAM, 1048576, false), LAT(bytes_per_s));

        md(o, "### Targets (issue #5; ratios within this run)\n\n| target | measured | met |\n|---|---|---|\n");
        snprintf(m, sizeof(m), "Ring RPC %s µs, iceoryx polling %s µs", us(rpc, a, sizeof(a)), us(iox, b, sizeof(b)));
        target(o, "Ring RPC 64 B p50 (hot) below iceoryx polling", m, isnan(rpc) || isnan(iox) ? -1 : rpc < iox);
        snprintf(m, sizeof(m), "%s the floor (%s µs)", ratio(rpc, flo, a, sizeof(a)), us(flo, b, sizeof(b)));
        target(o, "Ring RPC 64 B p50 (hot) within 3× the floor", m, isnan(rpc) || isnan(flo) ? -1 : rpc <= 3 * flo);
        snprintf(m, sizeof(m), "%s msgs/s", rate(s64, a, sizeof(a)));
        target(o, "64 B pub/sub stream ≥ 10 M msgs/s", m, isnan(s64) ? -1 : s64 >= 10e6);
        snprintf(m, sizeof(m), "%s ZeroMQ (%s msgs/s)", ratio(s64, z64, a, sizeof(a)), rate(z64, b, sizeof(b)));
        target(o, "64 B pub/sub stream ≥ 2× ZeroMQ", m, isnan(s64) || isnan(z64) ? -1 : s64 >= 2 * z64);
        snprintf(m, sizeof(m), "%s AF_UNIX", ratio(s64k, u64k, a, sizeof(a)));
        target(o, "64 KiB stream ≥ 3.5× AF_UNIX", m, isnan(s64k) || isnan(u64k) ? -1 : s64k >= 3.5 * u64k);
        snprintf(m, sizeof(m), "%s memcpy arena-sized, %s memcpy hot", ratio(s1m, c1m, a, sizeof(a)),
                 ratio(s1m, h1m, b, sizeof(b)));
        target(o, "1 MiB stream within 80% of memcpy (arena-sized)", m,
               isnan(s1m) || isnan(c1m) ? -1 : s1m >= 0.8 * c1m);
        if (run->have_ctl && run->ctl.n_levels == 3) {
                snprintf(m, sizeof(m), "%.2f s CPU, %llu wake-ups in %.0f s", run->ctl.idle_cpu_seconds,
                         (unsigned long long) run->ctl.idle_wakeups, run->ctl.idle_seconds);
                target(o, "broker CPU while idle is 0", m, run->ctl.idle_cpu_seconds == 0);
        }
        md(o, "\n");
}

static void problems(Out *o, const Run *run) {
        bool header = false;
        char sz[32];

        for (size_t i = 0; i < run->n_results; i++) {
                const Result *r = &run->results[i];
                if (!r->skipped && r->rep.error == 0)
                        continue;
                if (!header) {
                        md(o, "### Not measured\n\n");
                        header = true;
                }
                md(o, "- %s, %s %s%s: %s%s\n", r->job.t->label, r->job.wl == WL_LATENCY ? "latency" : "stream",
                   size_name(r->job.size, sz, sizeof(sz)), r->job.gap_ns ? ", sleeping peers" : "",
                   r->skipped ? "not run: " : "failed: ", r->skipped ? r->skipped : r->rep.message);
        }
        if (header)
                md(o, "\n");
}

/* ---- CSV ---- */

static void csv_row(Out *o, const char *section, const Transport *t, const Job *j, const char *metric, Summary s,
                    unsigned reps, uint64_t samples, const char *unit, const char *note) {
        double foreign = 0, probe = 0, bulk = 0;

        /* The Result that holds j carries the conditions of its job. */
        if (j) {
                const Report *rep = &((const Result *) ((const char *) j - offsetof(Result, job)))->rep;
                foreign = rep->foreign_cpu;
                probe = rep->probe_ns;
                bulk = rep->probe_bulk;
        }
        char line[512];

        snprintf(line, sizeof(line), "%s,%s,\"%s\",%s,%s,%zu,%s,%.6g,%.6g,%.6g,%u,%llu,%s,%.2f,%.3f,%.0f,\"%s\"\n",
                 section, t ? t->name : "", t ? t->label : "", j ? (j->wl == WL_LATENCY ? "latency" : "stream") : "",
                 j ? (j->gap_ns ? "sleeping" : "hot") : "", j ? j->size : (size_t) 0, metric, s.median, s.min, s.max,
                 reps, (unsigned long long) samples, unit, foreign, probe / 1000, bulk, note ? note : "");
        fputs(line, stdout);
        if (o->csv)
                fputs(line, o->csv);
}

static void csv(Out *o, const Run *run) {
        static const char header[] =
                "section,transport,label,workload,regime,size,metric,median,min,max,reps,samples,unit,foreign_cpu,"
                "probe_us,probe_bulk_msgs_per_s,note\n";
        Summary none = { NAN, NAN, NAN };

        fputs(header, stdout);
        if (o->csv)
                fputs(header, o->csv);
        for (size_t i = 0; i < run->n_results; i++) {
                const Result *r = &run->results[i];
                const Job *j = &r->job;
                const Rep *rp = &r->rep.reps[0];

                if (r->skipped || r->rep.error < 0) {
                        csv_row(o, j->wl == WL_LATENCY ? "latency" : "stream", j->t, j, "error", none, 0, 0, "",
                                r->skipped ? r->skipped : r->rep.message);
                        continue;
                }
                if (j->wl == WL_LATENCY) {
                        Summary s;
                        s = stats_summary(&r->rep, LAT(p50));
                        csv_row(o, "latency", j->t, j, "p50", (Summary) { s.median / 1e3, s.min / 1e3, s.max / 1e3 },
                                r->rep.n_reps, rp->n, "us", NULL);
                        s = stats_summary(&r->rep, LAT(p99));
                        csv_row(o, "latency", j->t, j, "p99", (Summary) { s.median / 1e3, s.min / 1e3, s.max / 1e3 },
                                r->rep.n_reps, rp->n, "us", NULL);
                        s = stats_summary(&r->rep, LAT(p999));
                        csv_row(o, "latency", j->t, j, "p99.9", (Summary) { s.median / 1e3, s.min / 1e3, s.max / 1e3 },
                                r->rep.n_reps, rp->n, "us", NULL);
                        if (j->t->flags & T_RING) {
                                const Transport *fl = j->gap_ns ? &transport_floor_futex : &transport_floor;
                                double v = median(r, LAT(p50));
                                double u = unix_best(run, WL_LATENCY, j->size, j->gap_ns, LAT(p50)),
                                       f = median(find(run, fl, WL_LATENCY, j->size, j->gap_ns), LAT(p50));
                                csv_row(o, "latency", j->t, j, "p50_per_af_unix", (Summary) { v / u, NAN, NAN },
                                        r->rep.n_reps, rp->n, "ratio", "lower is better");
                                csv_row(o, "latency", j->t, j, "p50_per_floor", (Summary) { v / f, NAN, NAN },
                                        r->rep.n_reps, rp->n, "ratio", fl->name);
                        }
                } else {
                        Summary s = stats_summary(&r->rep, LAT(msgs_per_s)),
                                b = stats_summary(&r->rep, LAT(bytes_per_s));
                        csv_row(o, "stream", j->t, j, "msgs_per_s", s, r->rep.n_reps, rp->n, "1/s", NULL);
                        csv_row(o, "stream", j->t, j, "MB_per_s",
                                (Summary) { b.median / 1e6, b.min / 1e6, b.max / 1e6 }, r->rep.n_reps, rp->n, "MB/s",
                                NULL);
                        if (j->t->flags & T_RING) {
                                double u = unix_best(run, WL_STREAM, j->size, false, LAT(bytes_per_s)),
                                       f = median(find(run, &transport_floor, WL_STREAM, j->size, false),
                                                  LAT(bytes_per_s)),
                                       m = median(find(run, &transport_memcpy_ring, WL_STREAM, j->size, false),
                                                  LAT(bytes_per_s));
                                csv_row(o, "stream", j->t, j, "per_af_unix", (Summary) { b.median / u, NAN, NAN },
                                        r->rep.n_reps, rp->n, "ratio", "higher is better");
                                csv_row(o, "stream", j->t, j, "per_floor", (Summary) { b.median / f, NAN, NAN },
                                        r->rep.n_reps, rp->n, "ratio", NULL);
                                csv_row(o, "stream", j->t, j, "per_memcpy", (Summary) { b.median / m, NAN, NAN },
                                        r->rep.n_reps, rp->n, "ratio", "memcpy through an arena-sized region");
                        }
                }
        }
        if (run->have_ctl) {
                const CtlResult *c = &run->ctl;
                for (unsigned i = 0; i < c->n_levels; i++) {
                        const CtlLevel *l = &c->levels[i];
                        char note[64];
                        snprintf(note, sizeof(note), "%u registered clients", l->clients);
#define NS(s) ((Summary) { (s).median / 1e3, (s).min / 1e3, (s).max / 1e3 })
                        csv_row(o, "control", NULL, NULL, "register_p50", NS(l->reg_p50), 0, l->clients, "us", note);
                        csv_row(o, "control", NULL, NULL, "register_p99", NS(l->reg_p99), 0, l->clients, "us", note);
                        snprintf(note, sizeof(note), "%u registered clients", l->sub_clients);
                        csv_row(o, "control", NULL, NULL, "subscribe_p50", NS(l->sub_p50), 0, l->sub_clients, "us",
                                note);
                        csv_row(o, "control", NULL, NULL, "subscribe_p99", NS(l->sub_p99), 0, l->sub_clients, "us",
                                note);
                        csv_row(o, "control", NULL, NULL, "lookup_p50", NS(l->look_p50), 0, l->sub_clients, "us", note);
                        csv_row(o, "control", NULL, NULL, "lookup_p99", NS(l->look_p99), 0, l->sub_clients, "us", note);
#undef NS
                        csv_row(o, "control", NULL, NULL, "broker_rss",
                                (Summary) { (double) l->rss_kib, NAN, NAN }, 0, l->sub_clients, "KiB", note);
                        csv_row(o, "control", NULL, NULL, "broker_rss_shmem",
                                (Summary) { (double) l->rss_shmem_kib, NAN, NAN }, 0, l->sub_clients, "KiB", note);
                }
                if (c->n_levels == 3) {
                        csv_row(o, "control", NULL, NULL, "rss_per_client",
                                (Summary) { c->rss_per_client_kib, NAN, NAN }, 0, 0, "KiB", NULL);
                        csv_row(o, "control", NULL, NULL, "anon_per_client",
                                (Summary) { c->anon_per_client_kib, NAN, NAN }, 0, 0, "KiB", NULL);
                        csv_row(o, "control", NULL, NULL, "idle_cpu", (Summary) { c->idle_cpu_seconds, NAN, NAN }, 0,
                                c->idle_clients, "s", NULL);
                        csv_row(o, "control", NULL, NULL, "idle_wakeups", (Summary) { (double) c->idle_wakeups, NAN, NAN },
                                0, c->idle_clients, "count", NULL);
                }
                if (c->error < 0)
                        csv_row(o, "control", NULL, NULL, "error", none, 0, 0, "", c->message);
        }
}

/* ---- plots ---- */

static FILE *open_in(const Run *run, const char *name, const char *mode) {
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", run->out_dir, name);
        return fopen(path, mode);
}

static void plot_latency(const Run *run, FILE *gp, bool cold, size_t size) {
        char name[64], sz[32];
        unsigned rows = 0;
        FILE *f;

        snprintf(name, sizeof(name), "latency-%s-%zu.dat", cold ? "sleeping" : "hot", size);
        f = open_in(run, name, "we");
        if (!f)
                return;
        for (size_t i = 0; i < N_LAT; i++) {
                const Result *r = find(run, lat_order[i], WL_LATENCY, size, cold);
                if (!r)
                        continue;
                fprintf(f, "\"%s\" %g %g %g\n", r->job.t->label, median(r, LAT(p50)) / 1e3, median(r, LAT(p99)) / 1e3,
                        median(r, LAT(p999)) / 1e3);
                rows++;
        }
        fclose(f);
        if (!rows)
                return;
        snprintf(name, sizeof(name), "latency-%s-%zu", cold ? "sleeping" : "hot", size);
        fprintf(gp,
                "set title \"Round-trip latency, %s peers, %s messages (median of repetitions)\"\n"
                "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
                "set logscale y\nset ylabel \"microseconds (log scale)\"\nset xtics rotate by -35 left\n"
                "set key top left\nset grid ytics\nset bmargin 12\nset rmargin 8\n",
                cold ? "sleeping" : "hot", size_name(size, sz, sizeof(sz)));
        for (unsigned k = 0; k < 2; k++) {
                fprintf(gp, "%s\nset output \"%s.%s\"\n",
                        k ? "set terminal pngcairo noenhanced size 1100,650 font \"sans,10\"" :
                            "set terminal svg noenhanced size 1100,650 dynamic font \"sans,11\"",
                        name, k ? "png" : "svg");
                fprintf(gp, "plot \"%s.dat\" using 2:xtic(1) title \"p50\", '' using 3 title \"p99\", '' using 4 title "
                            "\"p99.9\"\n", name);
        }
        fprintf(gp, "reset\n");
}

static void plot_throughput(const Run *run, FILE *gp) {
        bool first;

        for (size_t i = 0; i < N_STREAM; i++) {
                char name[64];
                FILE *f;

                snprintf(name, sizeof(name), "throughput-%s.dat", stream_order[i]->name);
                f = open_in(run, name, "we");
                if (!f)
                        continue;
                for (size_t k = 0; k < run->n_stream_sizes; k++) {
                        const Result *r = find(run, stream_order[i], WL_STREAM, run->stream_sizes[k], false);
                        if (!r)
                                continue;
                        fprintf(f, "%zu %g %g\n", r->job.size, median(r, LAT(msgs_per_s)), median(r, LAT(bytes_per_s)) / 1e6);
                }
                fclose(f);
        }
        for (unsigned what = 0; what < 2; what++)
                for (unsigned k = 0; k < 2; k++) {
                        fprintf(gp, "reset\n%s\nset output \"throughput-%s.%s\"\n",
                                k ? "set terminal pngcairo noenhanced size 1000,800 font \"sans,10\"" :
                                    "set terminal svg noenhanced size 1000,800 dynamic font \"sans,11\"",
                                what ? "mbs" : "msgs", k ? "png" : "svg");
                        fprintf(gp, "set title \"One-way streaming throughput by message size (median)\"\n"
                                    "set logscale xy\nset xlabel \"message size (bytes, log scale)\"\n"
                                    "set ylabel \"%s (log scale)\"\nset grid\n"
                                    "set key outside below center horizontal maxcols 3\n"
                                    "set xtics (\"64 B\" 64, \"1 KiB\" 1024, \"64 KiB\" 65536, \"1 MiB\" 1048576)\n",
                                what ? "MB/s" : "messages/s");
                        first = true;
                        /* Distinct colours; Ring's lines thicker. */
                        static const char *const colours[] = { "#d62728", "#ff7f0e", "#1f77b4", "#17becf",
                                                               "#8c564b", "#2ca02c", "#9467bd", "#e377c2",
                                                               "#000000", "#7f7f7f", "#bcbd22", "#393b79",
                                                               "#637939" };
                        for (size_t i = 0; i < N_STREAM; i++) {
                                bool have = false;
                                for (size_t s = 0; s < run->n_stream_sizes; s++)
                                        have |= find(run, stream_order[i], WL_STREAM, run->stream_sizes[s], false) != NULL;
                                if (!have)
                                        continue;
                                fprintf(gp, "%s \"throughput-%s.dat\" using 1:%u with linespoints lw %u lc rgb \"%s\" "
                                            "title \"%s\"", first ? "plot" : ",", stream_order[i]->name, what ? 3 : 2,
                                        stream_order[i]->flags & T_RING ? 4 : 2, colours[i % 13], stream_order[i]->label);
                                first = false;
                        }
                        fprintf(gp, "\n");
                }
}

static void plots(const Run *run) {
        char script[512];
        FILE *gp = open_in(run, "plots.gp", "we");
        pid_t pid;
        int status;

        if (!gp)
                return;
        fprintf(gp, "# Generated by ring-bench: gnuplot plots.gp (in this directory).\n");
        for (size_t k = 0; k < run->n_lat_sizes; k++)
                plot_latency(run, gp, false, run->lat_sizes[k]);
        for (size_t k = 0; k < run->n_cold_sizes; k++)
                plot_latency(run, gp, true, run->lat_sizes[k]);
        plot_throughput(run, gp);
        fclose(gp);
        if (!run->plots)
                return;
        snprintf(script, sizeof(script), "%s", "plots.gp");
        pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (chdir(run->out_dir) < 0)
                        _exit(126);
                if (null >= 0)
                        dup2(null, STDOUT_FILENO);
                execlp("gnuplot", "gnuplot", script, (char *) NULL);
                _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid)
                return;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                fprintf(stderr, "ring-bench: gnuplot is not installed (Debian: gnuplot-nox): no plots\n");
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fprintf(stderr, "ring-bench: gnuplot failed on %s/plots.gp\n", run->out_dir);
}

int report_write(const Run *run) {
        Out o = { .md = open_in(run, "results.md", "we"), .csv = open_in(run, "results.csv", "we") };

        if (!o.md || !o.csv) {
                int r = -errno;
                if (o.md)
                        fclose(o.md);
                if (o.csv)
                        fclose(o.csv);
                return r;
        }
        md(&o, "# ring-bench results\n\n");
        machine(&o, run);
        targets(&o, run);
        latency_table(&o, run, false);
        stream_tables(&o, run);
        if (run->n_cold_sizes)
                latency_table(&o, run, true);
        if (run->have_ctl)
                control_table(&o, run);
        problems(&o, run);
        if (o.md)
                fprintf(o.md, "Every figure of this run, with its range and sample count: `results.csv`.\n");
        printf("### CSV\n\n```csv\n");
        csv(&o, run);
        printf("```\n");
        fclose(o.md);
        fclose(o.csv);
        plots(run);
        return 0;
}
