/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's message: one Avro datum of BENCH_MSG_SCHEMA, laid out as the 8 bytes of the
 * fixed "seq" (little-endian sequence number), the zig-zag varint length of "data", then data.
 * Every transport carries these exact bytes, so the raw Ring path sends pre-encoded Avro and
 * the receiver of every transport can check the sequence number at offset 0.
 */
#include <string.h>

#include "bench.h"

static size_t varint_len(uint64_t zigzag) {
        size_t n = 1;

        while (zigzag >= 0x80) {
                zigzag >>= 7;
                n++;
        }
        return n;
}

size_t payload_data_len(size_t size) {
        /* The largest n with 8 + varint(2n) + n <= size; sizes below the minimum get 0. */
        for (size_t v = 1; v <= 10; v++) {
                if (size < 8 + v)
                        return 0;
                size_t n = size - 8 - v;
                if (varint_len((uint64_t) n << 1) == v)
                        return n;
        }
        return 0;
}

size_t payload_data_offset(size_t size) {
        return 8 + varint_len((uint64_t) payload_data_len(size) << 1);
}

void payload_init(void *buf, size_t size) {
        uint8_t *p = buf;
        size_t n = payload_data_len(size), off = 8;
        uint64_t z = (uint64_t) n << 1;

        memset(p, 0, 8);
        while (z >= 0x80) {
                p[off++] = (uint8_t) (z | 0x80);
                z >>= 7;
        }
        p[off++] = (uint8_t) z;
        for (size_t i = 0; i < n; i++)
                p[off + i] = (uint8_t) (i * 131 + 7);
}

void payload_set_seq(void *buf, uint64_t seq) {
        uint8_t *p = buf;

        for (unsigned i = 0; i < 8; i++)
                p[i] = (uint8_t) (seq >> (8 * i));
}

uint64_t payload_seq(const void *buf) {
        const uint8_t *p = buf;
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}
