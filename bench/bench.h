/* SPDX-License-Identifier: MIT */
/*
 * ring-bench: what its files share. The orchestrator (ring-bench.c) forks two peer processes
 * per measurement (peer.c), pinned to different cores; each transport (t-*.c) supplies the
 * operations the generic latency and streaming loops (loops.c) drive. Nothing here is part of
 * libring: the benchmark uses only ring.h for Ring itself.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_REPS 15
/* The sequence number that ends a latency run (echoed, then the echo side stops) or a stream
 * repetition. Every other message carries its own sequence number at offset 0. */
#define BENCH_STOP_SEQ UINT64_MAX
/* How long a peer waits for one message before it declares the run broken. */
#define BENCH_IO_TIMEOUT_MS 10000

typedef enum Workload {
        WL_LATENCY,
        WL_STREAM,
} Workload;

/* Transport capabilities. */
enum {
        T_LATENCY = 1 << 0,     /* round trips: call/echo operations */
        T_STREAM = 1 << 1,      /* one-way streaming: send/recv operations */
        T_COLD = 1 << 2,        /* has a sleeping-peer regime (does not busy-poll forever) */
        T_RING = 1 << 3,        /* a Ring figure: printed with ratios to AF_UNIX and the floor */
        T_SOLO = 1 << 4,        /* one process, no peer (memcpy) */
        T_AVRO = 1 << 5,        /* encodes/decodes avro-c values per message */
        T_EXPERIMENT = 1 << 6,  /* runs only when named with --only (t-proto.c) */
        T_NOT_BUILT = 1 << 7,   /* ring-bench was built without its library: listed, never run */
};

/* Services and paths the orchestrator set up (services.c). */
typedef struct Env {
        char dir[64];                   /* private temporary directory */
        char bus[32];                   /* RING_BUS of our broker */
        pid_t broker_pid;
        pid_t roudi_pid;                /* 0: iceoryx unavailable */
        char roudi_error[160];
        pid_t dbus_pid;                 /* 0: D-Bus unavailable */
        char dbus_address[128];
        char dbus_error[160];
        size_t buffer;                  /* buffering each transport gets: Ring's arena capacity */
        int cpu_a, cpu_b;               /* -1: not pinned */
} Env;

typedef struct Job {
        const struct Transport *t;
        Workload wl;
        size_t size;                    /* message bytes, sequence number included */
        unsigned reps;
        uint64_t duration_ns;           /* per repetition */
        unsigned max_samples;           /* latency: round trips measured per repetition */
        unsigned warmup;                /* latency: round trips before measuring */
        uint64_t gap_ns;                /* latency: 0 = hot peers, else idle time between calls */
        unsigned id;                    /* unique per job: names channels, functions, topics */
        const Env *env;
        int fds[4];                     /* made by Transport.prepare() before the fork */
        void *shared;                   /* MAP_SHARED memory made by prepare() */
        size_t shared_size;
} Job;

/* One repetition's figures. Latency: nanoseconds. Stream: messages/s and bytes/s. */
typedef struct Rep {
        double p50, p99, p999, mean;
        double msgs_per_s, bytes_per_s;
        uint64_t n;                     /* samples or messages */
} Rep;

typedef struct Report {
        int error;                      /* negative errno; 0 on success */
        char message[200];
        unsigned n_reps;
        Rep reps[BENCH_MAX_REPS];
        uint64_t seq_errors;            /* messages whose sequence number was not the next */
        /* Set by the orchestrator: CPU (in cores) that processes other than the peers and
         * our daemons used during the job; the machine was not quiet if it is well above 0. */
        double foreign_cpu;
        /* Set by the orchestrator: the floor's 64 B round trip measured right after the job
         * (ns), after a stream job also the floor's 64 KiB stream (msgs/s; 0 when not taken),
         * and whether the job counts as disturbed (foreign load, or a slow probe). */
        double probe_ns;
        double probe_bulk;
        bool disturbed;
} Report;

/* Handshakes between the two peers during set-up (a socketpair). */
typedef struct Sync {
        int fd;
} Sync;

int peer_sync_send(Sync *s, char tag);
/* Waits up to BENCH_IO_TIMEOUT_MS for tag; -EPROTO if another one came. */
int peer_sync_wait(Sync *s, char tag);

typedef struct Transport {
        const char *name;               /* CSV key */
        const char *label;              /* table row */
        unsigned flags;
        /* NULL if usable on this machine and in this build, else why not (static text). */
        const char *(*unavailable)(const Env *env);
        /* Orchestrator, before forking the peers (pipes, socketpairs, shared memory). */
        int (*prepare)(Job *j);
        void (*unprepare)(Job *j);
        /* Latency: peer B echoes every message until BENCH_STOP_SEQ (echoed too). */
        int (*echo_open)(const Job *j, Sync *s, void **ret);
        int (*echo_run)(void *h, const Job *j);
        /* Latency: peer A makes one round trip; returns the reply's length. */
        int (*call_open)(const Job *j, Sync *s, void **ret);
        int (*call)(void *h, const void *msg, size_t len, void *reply, size_t size);
        /* Stream: A sends, B receives. recv returns the length and points *ret_msg at the
         * message (buf, or a view released by recv_done). */
        int (*send_open)(const Job *j, Sync *s, void **ret);
        int (*send)(void *h, const void *msg, size_t len);
        int (*recv_open)(const Job *j, Sync *s, void **ret);
        int (*recv)(void *h, void *buf, size_t size, const void **ret_msg);
        void (*recv_done)(void *h, const void *msg);
        /* T_SOLO: one repetition, filling rep. */
        int (*solo)(const Job *j, Rep *rep);
        void (*close)(void *h);
} Transport;

/* ---- payload.c: every message is Avro of BENCH_MSG_SCHEMA: fixed(8) seq, then bytes ---- */
#define BENCH_MSG_SCHEMA \
        "{\"type\":\"record\",\"name\":\"BenchMsg\",\"namespace\":\"ring.bench\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":{\"type\":\"fixed\",\"name\":\"Seq\",\"size\":8}}," \
        "{\"name\":\"data\",\"type\":\"bytes\"}]}"
#define BENCH_MSG_MIN 16
/* Fills buf with a valid BenchMsg of exactly size bytes, sequence number 0. */
void payload_init(void *buf, size_t size);
void payload_set_seq(void *buf, uint64_t seq);
uint64_t payload_seq(const void *buf);
/* Offset and length of the data bytes inside a message of size bytes. */
size_t payload_data_offset(size_t size);
size_t payload_data_len(size_t size);

/* ---- loops.c: the measured loops, run inside the peers ---- */
int loops_echo(const Job *j, Sync *s, Report *rep);
int loops_call(const Job *j, Sync *s, Report *rep);
int loops_send(const Job *j, Sync *s, Report *rep);
int loops_recv(const Job *j, Sync *s, Report *rep);
int loops_solo(const Job *j, Report *rep);

/* ---- peer.c: forks the two peers of a job, collects the report ---- */
/* Above this much foreign CPU (cores) a figure is marked, and the job is tried again. */
#define BENCH_FOREIGN_CPU_LIMIT 0.15
int peer_run_job(Job *j, Report *ret);
double peer_wait_quiet(const Env *env, uint64_t max_ns);
/* The floor's 64 B round-trip p50 (ns) over a few milliseconds, 0 if it failed: how fast a
 * cache line travels between the two CPUs right now (on a VM it depends on where the host
 * placed the vCPUs). */
double peer_probe(const Env *env);
double peer_probe_bulk(const Env *env);
/* Pins the calling process to cpu (no-op for -1). */
void peer_pin(int cpu);
uint64_t peer_now_ns(void);

/* ---- stats.c ---- */
void stats_latency(uint64_t *samples, size_t n, Rep *ret);
typedef struct Summary {
        double median, min, max;
} Summary;
/* Median and range of one field over a report's repetitions. */
Summary stats_summary(const Report *r, size_t field_offset);

/* ---- services.c: the broker, iox-roudi and dbus-daemon for one run ---- */
int services_start(Env *env, const char *impulsed, uint32_t arena_capacity, bool want_roudi, bool want_dbus);
void services_stop(Env *env);
/* Registered so that a signal or an early exit still cleans up. */
void services_cleanup_at_exit(Env *env);

/* ---- ctlplane.c: the broker's control plane ---- */
typedef struct CtlLevel {
        unsigned clients;               /* registered clients while measuring Register */
        unsigned sub_clients;           /* ... Subscribe and Lookup (+ the helper clients) */
        Summary reg_p50, reg_p99, sub_p50, sub_p99, look_p50, look_p99;     /* ns */
        uint64_t rss_kib, rss_anon_kib, rss_shmem_kib;
        unsigned fds;                   /* the broker's open file descriptors */
} CtlLevel;

typedef struct CtlResult {
        int error;
        char message[200];
        unsigned n_levels;
        CtlLevel levels[3];
        double rss_per_client_kib, anon_per_client_kib, shmem_per_client_kib;
        double idle_seconds, idle_cpu_seconds;
        uint64_t idle_wakeups;          /* context switches of the broker while idle */
        unsigned idle_clients;
        char capped[200];               /* why the largest level has fewer clients, or "" */
} CtlResult;

int ctlplane_run(const Env *env, bool quick, CtlResult *ret);

/* ---- the transports (t-*.c) ---- */
extern const Transport transport_ring_rpc, transport_ring_rpc_avro, transport_ring_pubsub,
        transport_ring_pubsub_avro;
extern const Transport transport_unix_seqpacket, transport_unix_stream, transport_pipe;
extern const Transport transport_zmq;
extern const Transport transport_iox_poll, transport_iox_waitset;
extern const Transport transport_dbus;
extern const Transport transport_floor, transport_floor_futex, transport_memcpy_hot,
        transport_memcpy_ring;
extern const Transport transport_ringbuf_v1, transport_ringbuf_proposal;

/* ---- ring-bench.c / report.c: the run's results ---- */
typedef struct Result {
        Job job;
        Report rep;
        const char *skipped;            /* why the transport was not run, or NULL */
} Result;

typedef struct Run {
        Result *results;
        size_t n_results;
        bool have_ctl;
        CtlResult ctl;
        bool quick;
        const char *command;            /* the exact command line */
        const char *out_dir;
        bool plots;
        uint64_t gap_ns;
        size_t lat_sizes[2], stream_sizes[4];
        size_t n_lat_sizes, n_stream_sizes, n_cold_sizes;
        const Env *env;
        double seconds;
        double probe_best_ns;           /* the run's typical probe (0 in quick mode) */
        double probe_bulk_best;         /* the run's best bulk probe, msgs/s (0 in quick mode) */
} Run;

/* Prints the markdown tables and the CSV to stdout, writes them (and the plots, with
 * gnuplot) into run->out_dir. */
int report_write(const Run *run);
