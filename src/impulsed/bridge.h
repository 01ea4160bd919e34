/* SPDX-License-Identifier: MIT */
/*
 * Bridges the submission ring's futex into the sd-event loop. A watcher thread sleeps on the
 * ring's data_seq (no polling: an idle broker uses no CPU) and, when records arrive, signals an
 * eventfd the loop watches. The loop drains the ring and then re-arms the watcher with its new
 * tail, so the watcher never reads the consumer's state while the loop changes it.
 */
#pragma once

#include <stdint.h>

#include <systemd/sd-event.h>

#include "ringbuf.h"

typedef struct Bridge Bridge;

/* ring: the loop's consumer handle (copied; the watcher only reads the shared head). */
int bridge_new(Bridge **ret, sd_event *event, const RingBuf *ring, void (*ready)(void *userdata),
               void *userdata);
/* Lets the watcher sleep again, from the position up to which the loop has consumed. */
void bridge_arm(Bridge *b, uint64_t tail);
Bridge *bridge_free(Bridge *b);
static inline void bridge_freep(Bridge **b) {
        bridge_free(*b);
}
