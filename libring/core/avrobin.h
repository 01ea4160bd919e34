/* SPDX-License-Identifier: MIT */
/*
 * Avro binary encoding of the primitive types the control records use: long/int (zig-zag
 * varint), boolean, string/bytes (length-prefixed), and array block counts. The reader treats
 * its input as hostile: every length is bounded by the bytes that remain, overlong varints and
 * out-of-range values are -EBADMSG, and nothing reads past the end.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
