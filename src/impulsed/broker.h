/* SPDX-License-Identifier: MIT */
/*
 * The broker: owns the control segment of one bus, serves the v1 control plane from its
 * submission ring, and creates the arenas clients use peer to peer. It never touches user
 * data. This header is the seam between the broker core and its edges (main, admin, notify).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "keys.h"
#include "names.h"
#include "registry.h"
#include "ringbuf.h"
#include "segment.h"

/* Size of the control segment: 64 header bytes, then the submission ring. */
#define BROKER_SUBMISSION_CAPACITY (UINT32_C(1) << 20)
#define BROKER_DEFAULT_ARENA_CAPACITY (UINT32_C(1) << 20)
#define BROKER_MAX_ARENA_CAPACITY (UINT32_C(1) << 28)
/* Bounds on what clients can make the broker hold (each costs memory, fds, shm). */
#define BROKER_MAX_CLIENTS 65536u
#define BROKER_MAX_CHANNELS 65536u
#define BROKER_MAX_FUNCTIONS 65536u

typedef struct BrokerConfig {
        const char *bus;                /* NULL: $RING_BUS or the default bus */
        uint32_t arena_capacity;        /* channel and default function arena ring capacity */
        uint32_t max_arena_capacity;    /* bound on ExposeFunction.req_arena_cap */
        gid_t bus_gid;                  /* (gid_t) -1: segments mode 0666 (v1); else 0660 and this group */
        KeysCost key_cost;
} BrokerConfig;

typedef struct Broker Broker;

int broker_new(Broker **ret, sd_event *event, const BrokerConfig *config);
/* Removes stale segments of this bus, creates and formats the control segment, and starts
 * serving. After it returns 0 the bus is live (READY=1 may be sent). */
int broker_start(Broker *b);
/* Unlinks the control segment and every arena this broker created. */
Broker *broker_free(Broker *b);

/* Read-only views for the admin socket and STATUS=. */
const Registry *broker_registry(const Broker *b);
const BusNames *broker_bus(const Broker *b);
uint64_t broker_epoch(const Broker *b);
uint64_t broker_started_usec(const Broker *b);  /* CLOCK_REALTIME */
/* Called whenever the live counts change (for STATUS=); may be NULL. */
void broker_set_counts_changed(Broker *b, void (*cb)(Broker *b, void *userdata), void *userdata);
