/* SPDX-License-Identifier: MIT */
/*
 * Frame header encode/decode (spec/wire-format.md, "Frame"). Decoding validates everything a
 * peer could get wrong before any byte of the body is looked at; it never reads past len.
 */
#include <errno.h>

#include "frame.h"
#include "unaligned.h"

void frame_header_encode(uint8_t out[FRAME_HEADER_SIZE], uint64_t schema_fp, uint32_t body_len) {
        unaligned_write_le16(out, FRAME_MAGIC);
        out[2] = FRAME_VERSION;
        out[3] = 0; /* flags: reserved in v1, always sent as 0 */
        unaligned_write_le64(out + 4, schema_fp);
        unaligned_write_le32(out + 12, body_len);
}

int frame_decode(const void *record, size_t len, Frame *ret) {
        const uint8_t *p = record;
        uint32_t body_len;

        if (!p || len < FRAME_HEADER_SIZE)
                return -EBADMSG;
        if (unaligned_read_le16(p) != FRAME_MAGIC || p[2] != FRAME_VERSION)
                return -EBADMSG;

        /* The body must fill the record exactly: a v1 producer never pads, and a length that
         * disagrees with the record boundary means the frame cannot be trusted. */
        body_len = unaligned_read_le32(p + 12);
        if ((uint64_t) body_len != (uint64_t) len - FRAME_HEADER_SIZE)
                return -EBADMSG;

        /* Unknown flag bits are ignored rather than rejected so that a later extension which
         * sets them stays readable by this version. */
        *ret = (Frame) {
                .schema_fp = unaligned_read_le64(p + 4),
                .flags = p[3],
                .body = p + FRAME_HEADER_SIZE,
                .body_len = body_len,
        };
        return 0;
}
