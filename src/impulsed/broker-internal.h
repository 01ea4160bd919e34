/* SPDX-License-Identifier: MIT */
/*
 * The Broker object as the broker core's files share it (broker.c, requests.c, clients.c,
 * reaper.c). The edges (main, admin, notify) use broker.h only.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "bridge.h"
#include "broker.h"
#include "control.h"
#include "log.h"
#include "reaper.h"

/* Control segment header (spec/wire-format.md, "Control segment"). */
#define CONTROL_MAGIC UINT64_C(0x00474E4952504D49) /* "IMPRING\0" read as a little-endian u64 */
#define CONTROL_VERSION 1
#define CONTROL_RING_OFFSET 64

/* The broker keeps records and replies this small: control records carry names and schemas,
 * never user data. Larger records are refused with -EMSGSIZE by the ring. */
#define BROKER_REPLY_MAX (1u << 20)

struct Broker {
        sd_event *event;
        BrokerConfig config;
        BusNames bus;
        char control_name[NAMES_SEGMENT_MAX];
        Registry *registry;
        Keys *keys;
        Reaper *reaper;
        Segment control;
        RingBuf submissions;
        Bridge *bridge;
        sd_event_source *drain_again;   /* defer source: continue a long drain after other events */
        uint64_t epoch;
        uint64_t started_usec;
        uint8_t *record;                /* one popped submission, up to the ring's capacity */
        uint8_t *reply;                 /* encode scratch, BROKER_REPLY_MAX */
        uint64_t malformed_records;
        uint64_t last_hostile_log_ns;   /* rate limit for warnings about garbage */
        uint64_t hostile_suppressed;
        uint64_t last_resource_log_ns;  /* rate limit for errors about our own fds and memory */
        uint64_t resource_suppressed;
        int spare_fd;                   /* held in reserve: see broker_spare_fd_release() */
        void (*counts_changed)(Broker *b, void *userdata);
        void *counts_userdata;
        mode_t segment_mode;
        struct Pending *pending;        /* requests waiting for the key worker (requests.c) */
};

/* Pops and serves up to a batch of submissions; re-arms the bridge when the ring is empty. */
void broker_drain(Broker *b);
/* Tells main (STATUS=) that client/channel/function counts changed. */
void broker_counts_changed(Broker *b);
/* Creates an arena segment with a formatted ring of the given capacity. */
int broker_create_arena(Broker *b, const char *name, uint32_t capacity, Segment *ret);
/* The journal fields that say which client an entry is about. */
static inline LogContext client_log_context(const Client *c) {
        return (LogContext) { .app = c->app_name, .client_id = c->id, .pid = c->pid, .unit = c->unit };
}

/* Logs a warning about a hostile or malformed input, rate-limited across all clients. */
void broker_warn_hostile(Broker *b, const Client *c, const char *what, int error);

/* EMFILE, ENFILE, ENOMEM: the broker is short of its own resources. Such a failure is never
 * the fault of the client whose request met it, and the answer is INTERNAL, not DENIED. */
static inline bool broker_is_resource_error(int r) {
        return r == -EMFILE || r == -ENFILE || r == -ENOMEM;
}
/* Logs a resource error once, as the broker's own error: `what` says what failed and what
 * happens next, the entry adds what an admin can do. Rate-limited apart from hostile input,
 * so that neither hides the other. */
void broker_log_resource(Broker *b, const Client *c, const char *what, int error);
/* The broker holds one descriptor in reserve. Out of descriptors, releasing it lets the broker
 * open a client's reply segment once more, only to answer INTERNAL instead of nothing;
 * broker_spare_fd_restore() takes it back right after (the mapping needs no descriptor). */
void broker_spare_fd_release(Broker *b);
void broker_spare_fd_restore(Broker *b);
