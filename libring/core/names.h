/* SPDX-License-Identifier: MIT */
/*
 * The one place that knows how Ring segments are named (spec/bootstrap.md, "Segment names").
 * The default bus uses the v1 names (/impulse-ring.ctl.v1 ...); RING_BUS=<bus> selects an
 * isolated bus whose names start with /impulse-ring-<bus>. Nothing else builds names.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NAMES_DEFAULT_PREFIX "impulse-ring"
#define NAMES_BUS_ENV "RING_BUS"
#define NAMES_BUS_MAX 32        /* longest bus name accepted in RING_BUS */
#define NAMES_SEGMENT_MAX 128   /* buffer size that fits every name we build or accept */

typedef struct BusNames {
        char prefix[sizeof(NAMES_DEFAULT_PREFIX) + 1 + NAMES_BUS_MAX]; /* without the leading '/' */
} BusNames;

/* bus == NULL or "" selects the default (v1) bus. -EINVAL for a bus name outside [A-Za-z0-9_-]{1,32}. */
int names_bus_init(BusNames *ret, const char *bus);
/* Same, with the bus taken from $RING_BUS. */
int names_bus_from_env(BusNames *ret);

/* Each writes a NUL-terminated "/..." name into buf; -ENAMETOOLONG if size is too small. */
int names_control(const BusNames *b, char *buf, size_t size);
int names_client(const BusNames *b, uint64_t nonce, char *buf, size_t size);
int names_arena(const BusNames *b, uint64_t channel_id, char *buf, size_t size);
int names_function(const BusNames *b, uint64_t fn_id, char *buf, size_t size);

/* True if name is a valid POSIX shm name as we accept it: "/" then 1..NAME_MAX-ish of [A-Za-z0-9._@-]. */
bool names_valid(const char *name);
/* True if name is a client reply segment of this bus: "/<prefix>.cli.<decimal u64>.v1". */
bool names_is_client_segment(const BusNames *b, const char *name);
/* True if a /dev/shm file name (no leading '/') belongs to this bus (stale-segment cleanup). */
bool names_file_belongs_to_bus(const BusNames *b, const char *filename);
