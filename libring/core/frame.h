/* SPDX-License-Identifier: MIT */
/*
 * The v1 frame that wraps every ring record (spec/wire-format.md, "Frame"): 16 header bytes
 * (magic, version, flags, schema fingerprint, body length) then one Avro datum.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC UINT16_C(0x5249)
#define FRAME_VERSION 1
#define FRAME_HEADER_SIZE 16

typedef struct Frame {
        uint64_t schema_fp;
        uint8_t flags;
        const uint8_t *body;    /* points into the decoded record */
        uint32_t body_len;
} Frame;

void frame_header_encode(uint8_t out[FRAME_HEADER_SIZE], uint64_t schema_fp, uint32_t body_len);
/* Validates magic, version and that body_len fills the record exactly. -EBADMSG otherwise. */
int frame_decode(const void *record, size_t len, Frame *ret);
