/* SPDX-License-Identifier: MIT */
/*
 * The shared ring header, byte for byte as wire format v1 defines it (spec/wire-format.md,
 * "Ring"), plus our extension words in bytes v1 leaves unused. Only ringbuf.c and tests that
 * corrupt headers on purpose include this.
 */
#pragma once

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Extension bits in RingShared.ext_features (v1 peers neither read nor write them). */
#define RINGBUF_EXT_SLEEP_FLAG UINT32_C(1) /* the consumer counts its sleepers in consumer_sleeping */

struct RingShared {
        /* line 0: immutable after format */
        _Atomic uint32_t magic;                 /* 0: RINGBUF_MAGIC, stored last with release */
        uint32_t capacity;                      /* 4: power of two */
        _Atomic uint32_t ext_features;          /* 8: extension, see RINGBUF_EXT_* */
        uint8_t pad0[64 - 12];
        /* line 1: producers */
        _Atomic uint64_t head;                  /* 64 */
        _Atomic uint32_t prod_lock;             /* 72: 0 free, 1 locked, 2 locked with waiters */
        _Atomic uint32_t space_seq;             /* 76 */
        _Atomic uint32_t lock_owner;            /* 80: extension: pid holding prod_lock, 0 unknown */
        uint8_t pad1[128 - 84];
        /* line 2: consumer */
        _Atomic uint64_t tail;                  /* 128 */
        _Atomic uint32_t data_seq;              /* 136 */
        _Atomic uint32_t consumer_sleeping;     /* 140: extension: consumer threads in (or entering) FUTEX_WAIT */
        /* 144: extension: our producers waiting for space. In the consumer's line, because the
         * consumer reads it on every consume (to hand space back at once) and producers touch
         * it only when they are about to sleep. */
        _Atomic uint32_t space_waiters;
        uint8_t pad2[192 - 148];
};

static_assert(offsetof(struct RingShared, magic) == 0, "v1 ring layout");
static_assert(offsetof(struct RingShared, capacity) == 4, "v1 ring layout");
static_assert(offsetof(struct RingShared, head) == 64, "v1 ring layout");
static_assert(offsetof(struct RingShared, prod_lock) == 72, "v1 ring layout");
static_assert(offsetof(struct RingShared, space_seq) == 76, "v1 ring layout");
static_assert(offsetof(struct RingShared, tail) == 128, "v1 ring layout");
static_assert(offsetof(struct RingShared, data_seq) == 136, "v1 ring layout");
static_assert(offsetof(struct RingShared, space_waiters) == 144, "extension layout (spec)");
static_assert(sizeof(struct RingShared) == 192, "v1 ring layout: data region starts at 192");
static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "lock-free atomics");
