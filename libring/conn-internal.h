/* SPDX-License-Identifier: MIT */
/*
 * What libring's API files (conn, waiter, watch, pub, sub, fn, rpc) share: the connection
 * object and the internal calls between them. Never installed; nothing here is exported.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <avro.h>

#include "control.h"
#include "names.h"
#include "ring.h"
#include "ringbuf.h"
#include "segment.h"

/* Our reply ring: control replies and RPC responses land here. */
#define CONN_REPLY_CAPACITY (UINT32_C(1) << 20)
/* How long the broker may take to answer the control call of an *_open(). */
#define CONN_OPEN_TIMEOUT_MS 10000
/* How long control calls made on the user's behalf during a reconnect may take. */
#define CONN_RECONNECT_CALL_MS 2000
/* While a call waits, how often it checks that its peer still exists. */
#define CONN_LIVENESS_SLICE_NS (20 * NSEC_PER_MSEC)
/* Heartbeat period when the broker cannot know our pid (another pid namespace). */
#define CONN_HEARTBEAT_MS 1000

typedef enum ConnState {
        CONN_CONNECTED,
        CONN_DISCONNECTED,      /* the broker went away; the supervisor is reconnecting */
        CONN_CLOSING,
} ConnState;

/* A thread (or async call) waiting for the reply with one correlation id. */
typedef struct Waiter {
        struct Waiter *prev, *next;
        int64_t correlation_id;
        _Atomic uint32_t state;         /* futex word: WAITER_* */
        _Atomic bool asleep;            /* in (or entering) FUTEX_WAIT on state: wake it */
        int error;                      /* set with WAITER_FAILED */
        uint8_t *record;                /* the reply record: in buf, or malloc'd (owns_record) */
        size_t len;
        uint8_t *buf;                   /* optional buffer for the reply, buf_size bytes */
        size_t buf_size;
        bool owns_record;
        bool linked;                    /* on the connection's list (waiters_lock) */
        /* Asked every slice whether the peer still exists (async calls; sync ones pass it to
         * waiter_wait). */
        int (*alive)(void *arg);
        void *alive_arg;
        /* Async calls only: completion, run by ring_conn_dispatch(). */
        ring_rpc_done done;
        void *userdata;
        uint64_t deadline_ns;
        struct ring_rpc *rpc;
} Waiter;

enum {
        WAITER_PENDING,
        WAITER_DONE,
        WAITER_FAILED,
        WAITER_WAKE,                    /* a hint: the reader left, try to become reader */
};

/* How many other parsed schemas with its fingerprint a Schema remembers (schema.c). */
#define SCHEMA_MATCHED_MAX 4

/* A schema as libring keeps it: parsed, fingerprinted, with a value class for avro-c values. */
typedef struct Schema {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        uint64_t fp;
        char *json;
        /* Other avro_schema_t objects whose values were checked and found to have fp, each
         * holding a reference; NULL after the last one. Each slot is written once, by any
         * thread (schema.c, remember()). */
        _Atomic(avro_schema_t) matched[SCHEMA_MATCHED_MAX];
} Schema;

/* A ring in a segment that the broker made (channel or function arena). */
typedef struct Arena {
        Segment seg;
        RingBuf ring;
} Arena;

/* An object's arena across broker restarts (arena.c). */
typedef struct ArenaSlot {
        Arena current;
        bool attached;
        _Atomic(Arena *) next;          /* offered by the supervisor, taken by the user thread */
        Arena *retired;                 /* earlier arenas, mapped until the object is freed */
        size_t n_retired;
} ArenaSlot;

struct ring_conn {
        BusNames bus;
        char *app_name;
        pid_t pid;

        /* Control plane: the broker's segment, its epoch, our registration. */
        pthread_mutex_t lock;           /* the fields below up to `generation`, and the lists */
        Segment control;
        RingBuf submit;
        uint64_t epoch;
        pid_t broker_pid;
        _Atomic uint64_t client_id;
        _Atomic int state;              /* ConnState */
        _Atomic uint64_t generation;    /* bumped on every re-registration */
        pthread_cond_t connected;       /* signalled when state becomes CONN_CONNECTED */
        unsigned reconnects;
        uint64_t heartbeats;
        Segment *retired;               /* control segments of earlier broker runs */
        size_t n_retired;

        /* Our reply segment, consumed by whichever thread is the reader (waiter.c). */
        Segment reply_seg;
        RingBuf reply;
        uint64_t nonce;
        _Atomic int64_t next_correlation;
        pthread_mutex_t waiters_lock;   /* the waiter list */
        Waiter *waiters;
        _Atomic uint32_t sync_waiters;  /* linked synchronous waiters (hand-off, waiter.c) */
        _Atomic uint32_t async_waiters; /* linked async calls */
        pthread_mutex_t reader_lock;    /* held by the thread consuming the reply ring */
        uint8_t *reader_buf;            /* CONN_REPLY_CAPACITY, used by the reader only */

        /* Everything opened from the connection, for re-registration and close. */
        pthread_mutex_t objects_lock;   /* recursive: lifetime of the listed objects; held by the
                                         * supervisor while it reopens and by dispatch */
        pthread_mutex_t list_lock;      /* list linkage and the rings the watcher reads; only ever
                                         * held briefly, never while waiting for anything */
        struct ring_pub *pubs;
        struct ring_sub *subs;
        struct ring_fn *fns;
        struct ring_rpc *rpcs;

        /* Supervision of the broker and the event-loop fd (watch.c). */
        int broker_pidfd;
        bool broker_visible;            /* its pid is valid in our pid namespace */
        int wake_fd;                    /* eventfd: stop the supervisor */
        pthread_t supervisor;
        bool supervisor_started;
        int epoll_fd;                   /* ring_conn_fd() */
        int event_fd;                   /* readable: the watcher saw data */
        int timer_fd;                   /* async call deadlines */
        pthread_t watcher;
        bool watcher_started;
        pthread_mutex_t watch_lock;
        pthread_cond_t watch_cond;
        bool watch_armed, watch_stop, watch_dirty, watch_sleeping;
        uint64_t watch_cycles;          /* sleeps the watcher has finished (watch_lock) */
        _Atomic uint32_t watch_poke;    /* futex: wakes the watcher to re-read its ring set */
        _Atomic bool stop;              /* ring_conn_run() */
        bool dispatching;
};

/* ---- error.c ---- */
void error_set_message(const char *msg, size_t len);
void error_clear_message(void);
int error_from_status(int32_t status, Text message);

/* ---- schema.c ---- */
int schema_parse(const char *json, Schema *ret);
void schema_done(Schema *s);
/* 0 if value is an avro-c value of schema s (by fingerprint); -EPROTO with a message if its
 * schema differs, -EINVAL if it is no value. Thread-safe: a Schema may be shared by threads. */
int schema_check_value(Schema *s, const avro_value_t *value);
/* A new value of s's schema (ring_*_new_value()); -ENOMEM. */
int schema_new_value(const Schema *s, avro_value_t *ret);
/* Encodes value (of schema s, checked) into buf; returns the length, -EMSGSIZE if it needs
 * more than size bytes. */
int schema_encode_value(Schema *s, const avro_value_t *value, uint8_t *buf, size_t size);
/* The same into a buffer kept by the caller (*buf may be NULL), grown when the value does not
 * fit: an encode that fits walks the value once. */
int schema_encode_value_grow(Schema *s, const avro_value_t *value, uint8_t **buf, size_t *size);
/* Decodes data into value, whose schema the caller has checked: ring_sub_recv() before it takes
 * the message, ring_rpc_call() when the response is in, the service's own values need none. */
int schema_decode_value(const void *data, size_t len, avro_value_t *value);

/* ---- conn.c ---- */
int64_t conn_next_correlation(ring_conn *c);
/* Sends req (correlation id assigned here) and waits for its reply: ret_record receives the
 * malloc'd record the decoded ret_reply points into. Status != OK becomes an errno with the
 * broker's message set. */
int conn_control_call(ring_conn *c, ControlMsg *req, ControlType reply_type, int timeout_ms,
                      uint8_t **ret_record, ControlMsg *ret_reply);
/* Pushes an encoded frame into the submission ring (control requests). */
int conn_submit(ring_conn *c, const uint8_t *frame, size_t len, int64_t timeout_ns);
/* Waits until the connection is CONN_CONNECTED (after a broker restart) or the deadline. */
int conn_wait_connected(ring_conn *c, uint64_t deadline_ns);
/* ---- arena.c ---- */
/* Opens a broker-made arena by name for producing or consuming (-ECONNRESET if it is gone). */
int conn_open_arena(ring_conn *c, const char *name, bool consumer, Arena *ret);
void arena_done(Arena *a);
void arena_slot_init(ArenaSlot *s);
/* Makes a the current arena; the previous one is retired (caller holds list_lock if the
 * watcher may read the slot). */
void arena_slot_set(ArenaSlot *s, Arena a);
void arena_slot_retire(ArenaSlot *s);
/* Supervisor: offers a replacement (a copy is kept). */
int arena_slot_offer(ArenaSlot *s, const Arena *a);
/* User thread: switches to an offered replacement; true if it did. */
bool arena_slot_take(ArenaSlot *s, pthread_mutex_t *list_lock);
void arena_slot_done(ArenaSlot *s);

/* ---- waiter.c ---- */
void waiter_register(ring_conn *c, Waiter *w);
void waiter_unregister(ring_conn *c, Waiter *w);
/* Waits for w's reply until deadline. alive(arg), when given, is asked every slice whether the
 * peer still exists (-ECONNRESET if not). */
int waiter_wait(ring_conn *c, Waiter *w, uint64_t deadline_ns, int (*alive)(void *arg), void *arg);
/* Makes a call: send(send_arg, timeout_ns) pushes the request (correlation id
 * w->correlation_id), then waits for the reply as waiter_wait(); w needs no registration. A
 * thread that finds no reader sends with timeout 0 as the reader and stays off the list. now
 * is the CLOCK_MONOTONIC reading deadline_ns was computed from. */
int waiter_call(ring_conn *c, Waiter *w, int (*send)(void *arg, int64_t timeout_ns), void *send_arg,
                int64_t timeout_ns, uint64_t now, uint64_t deadline_ns, int (*alive)(void *arg),
                void *alive_arg);
/* Reads the reply ring without waiting, delivering what is there; returns records handled. */
int waiter_drain(ring_conn *c);
/* Fails every pending waiter with error (the broker went away). */
void waiter_fail_all(ring_conn *c, int error);
/* Runs completions of async calls that finished or timed out; returns how many. */
int waiter_run_async(ring_conn *c);
/* The earliest deadline of a pending async call; *ret_any says whether there is one. */
uint64_t waiter_next_async_deadline(ring_conn *c, bool *ret_any);
void rpc_complete_async(ring_conn *c, Waiter *w, int error);
/* Completes the pending async calls of rpc with -ECANCELED (it is being closed). */
void waiter_cancel_rpc(ring_conn *c, struct ring_rpc *rpc);

/* ---- watch.c ---- */
int watch_start(ring_conn *c);
void watch_stop(ring_conn *c);
/* After dispatching: let the watcher sleep on our rings again. */
void watch_arm(ring_conn *c);
/* Arms the timer of ring_conn_fd() for the pending async calls (deadlines, liveness). */
void watch_arm_timer(ring_conn *c);
/* A ring was added or replaced (nothing unmapped): the watcher re-collects its set. */
void watch_refresh(ring_conn *c);
/* The set of rings changed (a function or callback subscription came or went); returns once
 * the watcher holds none of the old set, so the caller may unmap. */
void watch_rings_changed(ring_conn *c);

/* ---- pub.c / sub.c / fn.c / rpc.c: re-registration after a broker restart ---- */
int pub_reopen(struct ring_pub *p);
void sub_connection_reset(struct ring_sub *s);
int fn_reopen(struct ring_fn *f);
int sub_dispatch(struct ring_sub *s);
int fn_dispatch(struct ring_fn *f, unsigned max);
/* The consumer rings the watcher sleeps on besides the reply ring. */
RingBuf *sub_watch_ring(struct ring_sub *s);
RingBuf *fn_watch_ring(struct ring_fn *f);
struct ring_sub *sub_next(struct ring_sub *s);
struct ring_fn *fn_next(struct ring_fn *f);
struct ring_pub *pub_next(struct ring_pub *p);
void pub_free_all(ring_conn *c);
void sub_free_all(ring_conn *c);
void fn_free_all(ring_conn *c);
void rpc_free_all(ring_conn *c);
