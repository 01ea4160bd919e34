/* SPDX-License-Identifier: MIT */
/*
 * Avro binary encoding of the primitive types the control records use: long/int (zig-zag
 * varint), boolean, string/bytes (length-prefixed), and array block counts. The reader treats
 * its input as hostile: every length is bounded by the bytes that remain, overlong varints and
 * out-of-range values are -EBADMSG, and nothing reads past the end.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "unaligned.h"

/* A borrowed byte string (Avro string or bytes). Not NUL-terminated. */
typedef struct Text {
        const char *ptr;
        size_t len;
} Text;

#define TEXT_NULL ((Text) { .ptr = "", .len = 0 })
/* A Text viewing a NUL-terminated C string (NULL becomes ""). */
Text text_from_cstr(const char *s);
/* True if t holds exactly the C string s. */
bool text_eq_cstr(Text t, const char *s);
/* Copies t into a new NUL-terminated string; -EBADMSG if t contains a NUL byte. */
int text_dup(Text t, char **ret);

typedef struct AvroWriter {
        uint8_t *buf;           /* may be NULL with size 0 to only measure */
        size_t size;
        size_t pos;             /* bytes the encoding needs so far, even past size */
} AvroWriter;

typedef struct AvroReader {
        const uint8_t *buf;
        size_t len;
        size_t pos;
} AvroReader;

/* Bytes the longest varint takes: a 64-bit value in groups of 7 bits. */
#define AVROBIN_LONG_MAX 10

/* Writes v as a zig-zag varint to out (AVROBIN_LONG_MAX bytes of room); returns the bytes
 * written. Inline: the RPC hot path encodes a few of these per call. */
static inline size_t avrobin_encode_long(uint8_t *out, int64_t v) {
        /* Zig-zag maps small magnitudes of either sign to small unsigned numbers; the shift is
         * done on the unsigned bits so that it is defined for negative v. */
        uint64_t z = ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);
        size_t n = 0;

        while (z >= 0x80) {
                out[n++] = (uint8_t) (z | 0x80);
                z >>= 7;
        }
        out[n++] = (uint8_t) z;
        return n;
}

/* The 7-bit groups of the (up to) 8 varint bytes in w, little-endian, packed into 56 bits. */
static inline uint64_t avrobin_pack7(uint64_t w) {
        w &= UINT64_C(0x7f7f7f7f7f7f7f7f);
        w = (w & UINT64_C(0x007f007f007f007f)) | ((w & UINT64_C(0x7f007f007f007f00)) >> 1);
        w = (w & UINT64_C(0x00003fff00003fff)) | ((w & UINT64_C(0x3fff00003fff0000)) >> 2);
        return (w & UINT64_C(0x000000000fffffff)) | ((w & UINT64_C(0x0fffffff00000000)) >> 4);
}

/* Reads a zig-zag varint at buf[*pos] (buf holds len bytes) and advances *pos past it.
 * -EBADMSG, with *pos and *ret untouched, for a truncated varint, one longer than 10 bytes or
 * overflowing 64 bits (the tenth byte holds bit 63 only), and one ending in a zero byte after
 * others (padding no Avro encoder emits: every value has exactly one encoding).
 * avrobin_get_long() is this. Inline, and a word at a time when 8 bytes remain: the RPC hot
 * path reads a few per call, one of them a 10-byte fingerprint. */
static inline __attribute__((always_inline)) int avrobin_decode_long(const uint8_t *buf, size_t len,
                                                                    size_t *pos, int64_t *ret) {
        size_t at = *pos, avail = at < len ? len - at : 0, n = 0;
        uint64_t z = 0, last = 0x80;    /* 0x80: the varint goes on */

        if (avail > 0 && buf[at] < 0x80) {
                z = buf[at];
                n = 1;
        } else {
                if (avail >= 8) {
                        uint64_t w = unaligned_read_le64(buf + at);
                        /* The bytes without a continuation bit; the first of them ends the varint. */
                        uint64_t stops = ~w & UINT64_C(0x8080808080808080);

                        if (stops) {
                                n = (size_t) (__builtin_ctzll(stops) >> 3) + 1;
                                if (n < 8)
                                        w &= (UINT64_C(1) << (8 * n)) - 1;
                                last = w >> (8 * (n - 1));
                        } else
                                n = 8;
                        z = avrobin_pack7(w);
                }
                /* Byte by byte: fewer than eight bytes left, or eight with continuation bits. */
                while (last >= 0x80 && n < AVROBIN_LONG_MAX) {
                        if (n >= avail)
                                return -EBADMSG;
                        last = buf[at + n];
                        z |= (last & 0x7f) << (7 * n);
                        n++;
                }
                /* n > 1 here (buf[at] has its continuation bit): a final zero is padding. */
                if (last > (n == AVROBIN_LONG_MAX ? 1u : 0x7fu) || last == 0)
                        return -EBADMSG;
        }
        *pos = at + n;
        *ret = (int64_t) ((z >> 1) ^ (~(z & 1) + 1));
        return 0;
}

/* Reads an Avro string or bytes at buf[*pos] as a view into buf and advances *pos past it;
 * -EBADMSG, with *pos untouched, for a bad length. avrobin_get_text() is this. */
static inline __attribute__((always_inline)) int avrobin_decode_text(const uint8_t *buf, size_t len,
                                                                    size_t *pos, Text *ret) {
        size_t at = *pos;
        int64_t n;

        if (avrobin_decode_long(buf, len, &at, &n) < 0 || n < 0 || (uint64_t) n > len - at)
                return -EBADMSG;
        *ret = (Text) { .ptr = (const char *) buf + at, .len = (size_t) n };
        *pos = at + (size_t) n;
        return 0;
}

void avrobin_put_long(AvroWriter *w, int64_t v);
void avrobin_put_bool(AvroWriter *w, bool v);
void avrobin_put_bytes(AvroWriter *w, const void *p, size_t len); /* also strings */
/* True if everything written so far fit into buf. */
bool avrobin_fits(const AvroWriter *w);

int avrobin_get_long(AvroReader *r, int64_t *ret);
int avrobin_get_int(AvroReader *r, int32_t *ret);      /* -EBADMSG outside int32 */
int avrobin_get_bool(AvroReader *r, bool *ret);        /* -EBADMSG unless 0 or 1 */
int avrobin_get_text(AvroReader *r, Text *ret);        /* string or bytes, a view into buf */
/* Next array block: item count into *ret (0 ends the array). A negative count's block byte
 * size is read and ignored, as the Avro spec allows. Counts larger than the bytes that remain
 * are -EBADMSG. */
int avrobin_get_block_count(AvroReader *r, int64_t *ret);
