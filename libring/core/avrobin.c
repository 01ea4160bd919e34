/* SPDX-License-Identifier: MIT */
/*
 * Avro binary primitives (spec/wire-format.md, "Control records"): zig-zag varints, booleans,
 * length-prefixed strings and bytes, array block counts. The reader parses bytes that come
 * from shared memory, so it bounds every length by what remains and never reads past len; it
 * knows nothing about records or frames.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "avrobin.h"

Text text_from_cstr(const char *s) {
        if (!s)
                return TEXT_NULL;
        return (Text) { .ptr = s, .len = strlen(s) };
}

bool text_eq_cstr(Text t, const char *s) {
        if (!s)
                return false;
        return strlen(s) == t.len && (t.len == 0 || memcmp(t.ptr, s, t.len) == 0);
}

int text_dup(Text t, char **ret) {
        char *s;

        if (!ret || (!t.ptr && t.len > 0))
                return -EINVAL;
        /* A NUL inside would silently shorten the C string: refuse rather than truncate. */
        if (t.len > 0 && memchr(t.ptr, 0, t.len))
                return -EBADMSG;
        s = malloc(t.len + 1);
        if (!s)
                return -ENOMEM;
        if (t.len > 0)
                memcpy(s, t.ptr, t.len);
        s[t.len] = 0;
        *ret = s;
        return 0;
}

/* Appends n bytes, or only counts them once they no longer fit, so that a writer with
 * buf = NULL and size = 0 measures the encoding. pos saturates instead of wrapping. */
static void put_raw(AvroWriter *w, const void *p, size_t n) {
        if (n > SIZE_MAX - w->pos) {
                w->pos = SIZE_MAX;
                return;
        }
        if (w->buf && w->pos <= w->size && n <= w->size - w->pos && n > 0)
                memcpy(w->buf + w->pos, p, n);
        w->pos += n;
}

void avrobin_put_long(AvroWriter *w, int64_t v) {
        uint8_t tmp[AVROBIN_LONG_MAX];

        put_raw(w, tmp, avrobin_encode_long(tmp, v));
}

void avrobin_put_bool(AvroWriter *w, bool v) {
        uint8_t b = v ? 1 : 0;

        put_raw(w, &b, 1);
}

void avrobin_put_bytes(AvroWriter *w, const void *p, size_t len) {
        /* No buffer this process can hold reaches INT64_MAX bytes; saturate the count anyway
         * so that a wild len makes the writer report "does not fit" rather than wrap. */
        if (len > INT64_MAX) {
                w->pos = SIZE_MAX;
                return;
        }
        avrobin_put_long(w, (int64_t) len);
        put_raw(w, p, len);
}

bool avrobin_fits(const AvroWriter *w) {
        return w->pos <= w->size;
}

int avrobin_get_long(AvroReader *r, int64_t *ret) {
        return avrobin_decode_long(r->buf, r->len, &r->pos, ret);
}

int avrobin_get_int(AvroReader *reader, int32_t *ret) {
        AvroReader copy = *reader;
        int64_t v;
        int r;

        r = avrobin_get_long(&copy, &v);
        if (r < 0)
                return r;
        if (v < INT32_MIN || v > INT32_MAX)
                return -EBADMSG;
        *reader = copy;
        *ret = (int32_t) v;
        return 0;
}

int avrobin_get_bool(AvroReader *reader, bool *ret) {
        uint8_t b;

        if (reader->pos >= reader->len)
                return -EBADMSG;
        b = reader->buf[reader->pos];
        if (b > 1)
                return -EBADMSG;
        reader->pos++;
        *ret = b == 1;
        return 0;
}

int avrobin_get_text(AvroReader *reader, Text *ret) {
        return avrobin_decode_text(reader->buf, reader->len, &reader->pos, ret);
}

int avrobin_get_block_count(AvroReader *reader, int64_t *ret) {
        AvroReader copy = *reader;
        int64_t count, block_size;
        int r;

        r = avrobin_get_long(&copy, &count);
        if (r < 0)
                return r;
        if (count < 0) {
                /* -INT64_MIN does not exist; no real block can hold 2^63 items anyway. */
                if (count == INT64_MIN)
                        return -EBADMSG;
                count = -count;
                /* The byte size only lets readers skip the block; we decode every item, so it
                 * is read and ignored beyond a sanity check against what remains. */
                r = avrobin_get_long(&copy, &block_size);
                if (r < 0)
                        return r;
                if (block_size < 0 || (uint64_t) block_size > copy.len - copy.pos)
                        return -EBADMSG;
        }
        /* Every item of the arrays we decode takes at least one byte, so a count beyond the
         * remaining bytes is a lie that must not size an allocation. */
        if ((uint64_t) count > copy.len - copy.pos)
                return -EBADMSG;
        *reader = copy;
        *ret = count;
        return 0;
}
