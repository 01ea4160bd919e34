/* SPDX-License-Identifier: MIT */
/* Frames: the v1 header byte for byte, and every malformed header rejected. */
#include <errno.h>
#include <string.h>

#include "frame.h"
#include "test-util.h"

START_TEST(test_header_bytes) {
        uint8_t rec[FRAME_HEADER_SIZE + 3];
        static const uint8_t expect[FRAME_HEADER_SIZE] = {
                0x49, 0x52, 0x01, 0x00,                         /* magic 0x5249 LE, version, flags */
                0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* fingerprint LE */
                0x03, 0x00, 0x00, 0x00,                         /* body length */
        };
        Frame f;

        frame_header_encode(rec, UINT64_C(0x0102030405060708), 3);
        ck_assert_int_eq(memcmp(rec, expect, sizeof(expect)), 0);
        memcpy(rec + FRAME_HEADER_SIZE, "abc", 3);
        ck_assert_int_eq(frame_decode(rec, sizeof(rec), &f), 0);
        ck_assert_uint_eq(f.schema_fp, UINT64_C(0x0102030405060708));
        ck_assert_uint_eq(f.body_len, 3);
        ck_assert_ptr_eq(f.body, rec + FRAME_HEADER_SIZE);
        ck_assert_uint_eq(f.flags, 0);
}
END_TEST

START_TEST(test_empty_body) {
        uint8_t rec[FRAME_HEADER_SIZE];
        Frame f;

        frame_header_encode(rec, UINT64_MAX, 0);
        ck_assert_int_eq(frame_decode(rec, sizeof(rec), &f), 0);
        ck_assert_uint_eq(f.body_len, 0);
        ck_assert_uint_eq(f.schema_fp, UINT64_MAX);
}
END_TEST

START_TEST(test_malformed_rejected) {
        uint8_t rec[FRAME_HEADER_SIZE + 4], bad[sizeof(rec)];
        Frame f = { .schema_fp = 42 };

        frame_header_encode(rec, 7, 4);
        memcpy(rec + FRAME_HEADER_SIZE, "body", 4);

        /* Too short for a header, in every length below 16. */
        for (size_t n = 0; n < FRAME_HEADER_SIZE; n++)
                ck_assert_int_eq(frame_decode(rec, n, &f), -EBADMSG);
        ck_assert_int_eq(frame_decode(NULL, 20, &f), -EBADMSG);

        memcpy(bad, rec, sizeof(rec));
        bad[0] ^= 1;                                            /* magic */
        ck_assert_int_eq(frame_decode(bad, sizeof(bad), &f), -EBADMSG);
        memcpy(bad, rec, sizeof(rec));
        bad[2] = 2;                                             /* version */
        ck_assert_int_eq(frame_decode(bad, sizeof(bad), &f), -EBADMSG);
        memcpy(bad, rec, sizeof(rec));
        bad[12] = 5;                                            /* body longer than the record */
        ck_assert_int_eq(frame_decode(bad, sizeof(bad), &f), -EBADMSG);
        bad[12] = 3;                                            /* body shorter: trailing bytes */
        ck_assert_int_eq(frame_decode(bad, sizeof(bad), &f), -EBADMSG);
        memset(bad + 12, 0xff, 4);                              /* absurd length */
        ck_assert_int_eq(frame_decode(bad, sizeof(bad), &f), -EBADMSG);
        /* Nothing is written on failure. */
        ck_assert_uint_eq(f.schema_fp, 42);

        /* Reserved flag bits are ignored, so a later extension stays readable. */
        memcpy(bad, rec, sizeof(rec));
        bad[3] = 0x80;
        ck_assert_int_eq(frame_decode(bad, sizeof(bad), &f), 0);
        ck_assert_uint_eq(f.flags, 0x80);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("frame");
        TCase *tc = tcase_create("frame");

        tcase_add_test(tc, test_header_bytes);
        tcase_add_test(tc, test_empty_body);
        tcase_add_test(tc, test_malformed_rejected);
        suite_add_tcase(s, tc);
        return s;
}
