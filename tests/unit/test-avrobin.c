/* SPDX-License-Identifier: MIT */
/*
 * Avro binary primitives (libring/core/avrobin.c): the encodings the Avro specification fixes,
 * round trips at the edges of the ranges, and rejection of every malformed form a hostile
 * peer could write (overlong, overflowing, truncated, out of range).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "avrobin.h"
#include "macro.h"
#include "test-util.h"

/* Encodes v into buf and returns the byte count. */
static size_t put_long(uint8_t *buf, size_t size, int64_t v) {
        AvroWriter w = { .buf = buf, .size = size };

        avrobin_put_long(&w, v);
        ck_assert(avrobin_fits(&w));
        return w.pos;
}

static int get_long_from(const uint8_t *buf, size_t len, int64_t *v, size_t *ret_pos) {
        AvroReader r = { .buf = buf, .len = len };
        int k;

        k = avrobin_get_long(&r, v);
        *ret_pos = r.pos;
        return k;
}

START_TEST(test_long_known_encodings) {
        /* The zig-zag table of the Avro specification, plus the first two-byte value. */
        static const struct {
                int64_t v;
                size_t len;
                uint8_t bytes[10];
        } table[] = {
                { 0, 1, { 0x00 } },
                { -1, 1, { 0x01 } },
                { 1, 1, { 0x02 } },
                { -2, 1, { 0x03 } },
                { 2, 1, { 0x04 } },
                { -64, 1, { 0x7f } },
                { 63, 1, { 0x7e } },
                { 64, 2, { 0x80, 0x01 } },
                { -65, 2, { 0x81, 0x01 } },
                { 8192, 3, { 0x80, 0x80, 0x01 } },
                { INT64_MAX, 10, { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 } },
                { INT64_MIN, 10, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 } },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                uint8_t buf[16];
                int64_t v;
                size_t n, pos;

                n = put_long(buf, sizeof(buf), table[i].v);
                ck_assert_uint_eq(n, table[i].len);
                ck_assert_mem_eq(buf, table[i].bytes, n);

                ck_assert_int_eq(get_long_from(table[i].bytes, table[i].len, &v, &pos), 0);
                ck_assert_int_eq(v, table[i].v);
                ck_assert_uint_eq(pos, table[i].len);
        }
}
END_TEST

START_TEST(test_long_round_trip) {
        static const int64_t values[] = {
                0, 1, -1, 63, -64, 64, -65, 127, 128, INT32_MAX, INT32_MIN,
                (int64_t) INT32_MAX + 1, (int64_t) INT32_MIN - 1, INT64_MAX, INT64_MIN,
                INT64_MAX - 1, INT64_MIN + 1, 0x0123456789abcdef, -0x0123456789abcdef,
        };

        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                uint8_t buf[16];
                int64_t v = 0;
                size_t n, pos;

                n = put_long(buf, sizeof(buf), values[i]);
                ck_assert_uint_le(n, 10);
                ck_assert_int_eq(get_long_from(buf, n, &v, &pos), 0);
                ck_assert_int_eq(v, values[i]);
                ck_assert_uint_eq(pos, n);
        }

        /* Every bit position, both signs: exercises each varint length. */
        for (unsigned b = 0; b < 63; b++)
                for (int s = 0; s < 2; s++) {
                        int64_t want = s ? -((int64_t) 1 << b) : ((int64_t) 1 << b), v;
                        uint8_t buf[16];
                        size_t n, pos;

                        n = put_long(buf, sizeof(buf), want);
                        ck_assert_int_eq(get_long_from(buf, n, &v, &pos), 0);
                        ck_assert_int_eq(v, want);
                }
}
END_TEST

START_TEST(test_long_overlong) {
        /* Eleven bytes: longer than any 64-bit value. */
        static const uint8_t eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                          0x80, 0x80, 0x80, 0x80, 0x01 };
        /* Ten bytes whose last carries more than bit 63. */
        static const uint8_t overflow[] = { 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0x02 };
        static const uint8_t overflow7f[] = { 0x80, 0x80, 0x80, 0x80, 0x80,
                                              0x80, 0x80, 0x80, 0x80, 0x7f };
        /* Zero padding: 0 and 1 written with a needless continuation. */
        static const uint8_t padded0[] = { 0x80, 0x00 };
        static const uint8_t padded1[] = { 0x82, 0x80, 0x00 };
        int64_t v = 42;
        size_t pos;

        ck_assert_int_eq(get_long_from(eleven, sizeof(eleven), &v, &pos), -EBADMSG);
        ck_assert_int_eq(get_long_from(overflow, sizeof(overflow), &v, &pos), -EBADMSG);
        ck_assert_int_eq(get_long_from(overflow7f, sizeof(overflow7f), &v, &pos), -EBADMSG);
        ck_assert_int_eq(get_long_from(padded0, sizeof(padded0), &v, &pos), -EBADMSG);
        ck_assert_int_eq(get_long_from(padded1, sizeof(padded1), &v, &pos), -EBADMSG);
        /* Outputs and position are untouched on failure. */
        ck_assert_int_eq(v, 42);
        ck_assert_uint_eq(pos, 0);
}
END_TEST

START_TEST(test_long_truncated) {
        uint8_t buf[16];
        size_t n;
        int64_t v;

        n = put_long(buf, sizeof(buf), INT64_MIN);
        for (size_t len = 0; len < n; len++) {
                size_t pos;

                ck_assert_int_eq(get_long_from(buf, len, &v, &pos), -EBADMSG);
                ck_assert_uint_eq(pos, 0);
        }
}
END_TEST

/* The byte-at-a-time reading of the Avro specification, against which the word-at-a-time
 * avrobin_decode_long() is held. */
static int reference_long(const uint8_t *buf, size_t len, size_t *pos, int64_t *ret) {
        uint64_t z = 0;
        size_t p = *pos;

        for (unsigned i = 0; i < 10; i++) {
                uint8_t b;

                if (p >= len)
                        return -EBADMSG;
                b = buf[p++];
                if (i == 9 && b > 1)
                        return -EBADMSG;
                z |= (uint64_t) (b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        if (b == 0 && i > 0)
                                return -EBADMSG;
                        *pos = p;
                        *ret = (int64_t) ((z >> 1) ^ (~(z & 1) + 1));
                        return 0;
                }
        }
        return -EBADMSG;
}

/* Every verdict, value and position agrees with the reference: random bytes biased towards
 * continuation bits, the bytes that end varints in interesting ways, every length of buffer
 * around the 8-byte word and every starting position. */
START_TEST(test_long_matches_reference) {
        static const uint8_t pick[] = { 0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff };
        uint64_t state = test_seed() | 1;
        unsigned accepted = 0;

        for (unsigned it = 0; it < 1000000; it++) {
                uint64_t bits = test_rng_next(&state), kind = test_rng_next(&state);
                size_t len = (size_t) (kind % 24), pos0 = len ? (size_t) ((kind >> 8) % (len + 1)) : 0;
                uint8_t *buf = malloc(len ?: 1);        /* exact size: ASan sees overreads */
                int64_t v1 = 7, v2 = 7;
                size_t p1 = pos0, p2 = pos0;
                int r1, r2;

                ck_assert_ptr_nonnull(buf);
                for (size_t i = 0; i < len; i++) {
                        switch ((bits >> (2 * (i % 32))) & 3) {
                        case 0:
                                buf[i] = pick[(kind >> (16 + i % 40)) & 7];
                                break;
                        case 1:
                        case 2:
                                buf[i] = (uint8_t) (0x80 | test_rng_next(&state));
                                break;
                        default:
                                buf[i] = (uint8_t) test_rng_next(&state);
                        }
                }
                /* A varint of n bytes at pos0 now and then, the rest continuation bytes. */
                if (len > pos0 && (kind >> 60) == 0) {
                        size_t n = MIN(len - pos0, 1 + (size_t) ((kind >> 40) % 11));

                        for (size_t i = pos0; i < pos0 + n; i++)
                                buf[i] |= 0x80;
                        buf[pos0 + n - 1] = pick[(kind >> 52) & 7] & 0x7f;
                }
                r1 = reference_long(buf, len, &p1, &v1);
                r2 = avrobin_decode_long(buf, len, &p2, &v2);
                ck_assert_msg(r1 == r2 && p1 == p2 && v1 == v2,
                              "iteration %u, len %zu at %zu: reference %d/%zu/%" PRId64
                              ", decode %d/%zu/%" PRId64, it, len, pos0, r1, p1, v1, r2, p2, v2);
                accepted += r1 == 0;
                free(buf);
        }
        /* Both outcomes were exercised plenty. */
        ck_assert_uint_gt(accepted, 50000);
        ck_assert_uint_lt(accepted, 950000);
}
END_TEST

START_TEST(test_long_every_length) {
        /* Every value's encoding, at the end of the buffer and followed by more bytes. */
        for (unsigned bitsz = 0; bitsz <= 64; bitsz++)
                for (int sign = 0; sign < 2; sign++) {
                        uint64_t mag = bitsz == 0 ? 0 : (bitsz == 64 ? UINT64_MAX : (UINT64_C(1) << bitsz) - 1);
                        int64_t want = sign ? (int64_t) ~mag : (int64_t) (mag >> 1);
                        uint8_t buf[32];
                        size_t n = put_long(buf, sizeof(buf), want);

                        for (size_t extra = 0; extra < 12; extra++) {
                                _cleanup_free_ uint8_t *b = malloc(n + extra);
                                size_t pos = 0;
                                int64_t v;

                                ck_assert_ptr_nonnull(b);
                                memcpy(b, buf, n);
                                memset(b + n, 0xff, extra);
                                ck_assert_int_eq(avrobin_decode_long(b, n + extra, &pos, &v), 0);
                                ck_assert_int_eq(v, want);
                                ck_assert_uint_eq(pos, n);
                        }
                }
}
END_TEST

START_TEST(test_int_range) {
        static const int64_t ok[] = { 0, -1, 1, INT32_MAX, INT32_MIN };
        static const int64_t bad[] = { (int64_t) INT32_MAX + 1, (int64_t) INT32_MIN - 1,
                                       INT64_MAX, INT64_MIN };

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                uint8_t buf[16];
                AvroReader r = { .buf = buf };
                int32_t v;

                r.len = put_long(buf, sizeof(buf), ok[i]);
                ck_assert_int_eq(avrobin_get_int(&r, &v), 0);
                ck_assert_int_eq(v, ok[i]);
                ck_assert_uint_eq(r.pos, r.len);
                /* Avro's int is at most five varint bytes. */
                ck_assert_uint_le(r.len, 5);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint8_t buf[16];
                AvroReader r = { .buf = buf };
                int32_t v = 7;

                r.len = put_long(buf, sizeof(buf), bad[i]);
                ck_assert_int_eq(avrobin_get_int(&r, &v), -EBADMSG);
                ck_assert_int_eq(v, 7);
                ck_assert_uint_eq(r.pos, 0);
        }
}
END_TEST

START_TEST(test_bool) {
        static const uint8_t bytes[] = { 0x00, 0x01, 0x02, 0xff };
        AvroWriter w = { .buf = (uint8_t[2]) {}, .size = 2 };
        AvroReader r = { .buf = bytes, .len = sizeof(bytes) };
        bool b;

        avrobin_put_bool(&w, true);
        avrobin_put_bool(&w, false);
        ck_assert(avrobin_fits(&w));
        ck_assert_uint_eq(w.buf[0], 1);
        ck_assert_uint_eq(w.buf[1], 0);

        ck_assert_int_eq(avrobin_get_bool(&r, &b), 0);
        ck_assert(!b);
        ck_assert_int_eq(avrobin_get_bool(&r, &b), 0);
        ck_assert(b);
        ck_assert_int_eq(avrobin_get_bool(&r, &b), -EBADMSG);
        ck_assert_uint_eq(r.pos, 2);
        r.pos = 3;
        ck_assert_int_eq(avrobin_get_bool(&r, &b), -EBADMSG);
        r.pos = 4;
        ck_assert_int_eq(avrobin_get_bool(&r, &b), -EBADMSG);
}
END_TEST

START_TEST(test_text) {
        uint8_t buf[32];
        AvroWriter w = { .buf = buf, .size = sizeof(buf) };
        AvroReader r = { .buf = buf };
        Text t;

        avrobin_put_bytes(&w, "héllo", strlen("héllo"));
        avrobin_put_bytes(&w, NULL, 0);
        avrobin_put_bytes(&w, "\0x", 2);
        ck_assert(avrobin_fits(&w));
        ck_assert_uint_eq(buf[0], 2 * strlen("héllo"));

        r.len = w.pos;
        ck_assert_int_eq(avrobin_get_text(&r, &t), 0);
        ck_assert(text_eq_cstr(t, "héllo"));
        ck_assert_ptr_eq(t.ptr, (const char *) buf + 1);
        ck_assert_int_eq(avrobin_get_text(&r, &t), 0);
        ck_assert_uint_eq(t.len, 0);
        ck_assert_int_eq(avrobin_get_text(&r, &t), 0);
        ck_assert_uint_eq(t.len, 2);
        ck_assert_mem_eq(t.ptr, "\0x", 2);
        ck_assert_uint_eq(r.pos, r.len);
        ck_assert_int_eq(avrobin_get_text(&r, &t), -EBADMSG);
}
END_TEST

START_TEST(test_text_bad_length) {
        /* -1, then a length one past the end, then a length that is negative when huge. */
        static const uint8_t negative[] = { 0x01, 'a' };
        static const uint8_t too_long[] = { 0x08, 'a', 'b', 'c' };
        static const uint8_t min[] = { 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0x01 };
        static const uint8_t max[] = { 0xfe, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0x01 };
        static const uint8_t exact[] = { 0x06, 'a', 'b', 'c' };
        const struct {
                const uint8_t *p;
                size_t len;
        } bad[] = {
                { negative, sizeof(negative) },
                { too_long, sizeof(too_long) },
                { min, sizeof(min) },
                { max, sizeof(max) },
                { exact, sizeof(exact) - 1 },
                { exact, 0 },
        };
        AvroReader r;
        Text t;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                r = (AvroReader) { .buf = bad[i].p, .len = bad[i].len };
                ck_assert_int_eq(avrobin_get_text(&r, &t), -EBADMSG);
                ck_assert_uint_eq(r.pos, 0);
        }
        r = (AvroReader) { .buf = exact, .len = sizeof(exact) };
        ck_assert_int_eq(avrobin_get_text(&r, &t), 0);
        ck_assert(text_eq_cstr(t, "abc"));
}
END_TEST

START_TEST(test_block_count) {
        /* 2 items; -1 item (a negative count) with a 5-byte block size; end. */
        static const uint8_t good[] = { 0x04, 'x', 'y', 0x01, 0x0a, 1, 2, 3, 4, 5, 0x00 };
        /* Counts the remaining bytes cannot hold, and INT64_MIN which has no negation. */
        static const uint8_t huge[] = { 0xfe, 0xff, 0xff, 0xff, 0x0f, 0 };
        static const uint8_t min[] = { 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0x01 };
        static const uint8_t three_in_two[] = { 0x06, 0, 0 };
        static const uint8_t negative_size[] = { 0x01, 0x01, 0 };
        static const uint8_t size_too_big[] = { 0x01, 0x04, 0 };
        static const uint8_t no_size[] = { 0x01 };
        const struct {
                const uint8_t *p;
                size_t len;
        } bad[] = {
                { huge, sizeof(huge) },
                { min, sizeof(min) },
                { three_in_two, sizeof(three_in_two) },
                { negative_size, sizeof(negative_size) },
                { size_too_big, sizeof(size_too_big) },
                { no_size, sizeof(no_size) },
                { good, 0 },
        };
        AvroReader r = { .buf = good, .len = sizeof(good) };
        int64_t count;

        ck_assert_int_eq(avrobin_get_block_count(&r, &count), 0);
        ck_assert_int_eq(count, 2);
        r.pos += 2;
        ck_assert_int_eq(avrobin_get_block_count(&r, &count), 0);
        ck_assert_int_eq(count, 1);
        ck_assert_uint_eq(r.pos, 5);
        r.pos += 5;
        ck_assert_int_eq(avrobin_get_block_count(&r, &count), 0);
        ck_assert_int_eq(count, 0);
        ck_assert_uint_eq(r.pos, r.len);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                r = (AvroReader) { .buf = bad[i].p, .len = bad[i].len };
                ck_assert_int_eq(avrobin_get_block_count(&r, &count), -EBADMSG);
                ck_assert_uint_eq(r.pos, 0);
        }
}
END_TEST

START_TEST(test_measure) {
        AvroWriter w = { .buf = NULL, .size = 0 };
        uint8_t small[4];
        AvroWriter s = { .buf = small, .size = sizeof(small) };

        /* Measuring mode: nothing is written, every byte is counted. */
        avrobin_put_long(&w, INT64_MIN);
        avrobin_put_bool(&w, true);
        avrobin_put_bytes(&w, "abcdefgh", 8);
        ck_assert_uint_eq(w.pos, 10 + 1 + 1 + 8);
        ck_assert(!avrobin_fits(&w));

        /* A buffer too small keeps counting past its end, and writes nothing out of bounds. */
        memset(small, 0xaa, sizeof(small));
        avrobin_put_long(&s, 1);
        ck_assert(avrobin_fits(&s));
        avrobin_put_bytes(&s, "abcdefgh", 8);
        ck_assert_uint_eq(s.pos, 1 + 1 + 8);
        ck_assert(!avrobin_fits(&s));
        ck_assert_uint_eq(small[0], 0x02);
        ck_assert_uint_eq(small[1], 0x10);

        /* An empty writer fits until something is written. */
        w = (AvroWriter) {};
        ck_assert(avrobin_fits(&w));
}
END_TEST

START_TEST(test_text_helpers) {
        _cleanup_free_ char *s = NULL;
        char *t = NULL;
        Text x = text_from_cstr("abc");

        ck_assert_uint_eq(x.len, 3);
        ck_assert(text_eq_cstr(x, "abc"));
        ck_assert(!text_eq_cstr(x, "ab"));
        ck_assert(!text_eq_cstr(x, "abcd"));
        ck_assert(!text_eq_cstr(x, NULL));
        x = text_from_cstr(NULL);
        ck_assert_uint_eq(x.len, 0);
        ck_assert(text_eq_cstr(x, ""));

        ck_assert_int_eq(text_dup((Text) { .ptr = "hello", .len = 4 }, &s), 0);
        ck_assert_str_eq(s, "hell");
        ck_assert_int_eq(text_dup((Text) { .ptr = "a\0b", .len = 3 }, &t), -EBADMSG);
        ck_assert_ptr_null(t);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("avrobin");
        TCase *tc = tcase_create("avrobin");

        /* Generous: the differential loop runs under valgrind and ASan too. */
        tcase_set_timeout(tc, 600);

        tcase_add_test(tc, test_long_known_encodings);
        tcase_add_test(tc, test_long_round_trip);
        tcase_add_test(tc, test_long_overlong);
        tcase_add_test(tc, test_long_truncated);
        tcase_add_test(tc, test_long_matches_reference);
        tcase_add_test(tc, test_long_every_length);
        tcase_add_test(tc, test_int_range);
        tcase_add_test(tc, test_bool);
        tcase_add_test(tc, test_text);
        tcase_add_test(tc, test_text_bad_length);
        tcase_add_test(tc, test_block_count);
        tcase_add_test(tc, test_measure);
        tcase_add_test(tc, test_text_helpers);
        suite_add_tcase(s, tc);
        return s;
}
