/* SPDX-License-Identifier: MIT */
/*
 * Tests of src/shared/utf8.c: which bytes are UTF-8 (RFC 3629 edge cases), which code points
 * count as controls, and the terminal escaping ringctl uses for client-supplied names.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "test-util.h"
#include "utf8.h"

START_TEST(test_sequence) {
        static const struct {
                const char *s;
                size_t len;
                uint32_t cp;
        } cases[] = {
                { "A", 1, 'A' },
                { "\x7f", 1, 0x7f },
                { "\xc2\x80", 2, 0x80 },
                { "\xdf\xbf", 2, 0x7ff },
                { "\xe0\xa0\x80", 3, 0x800 },
                { "\xed\x9f\xbf", 3, 0xd7ff },
                { "\xee\x80\x80", 3, 0xe000 },
                { "\xef\xbf\xbf", 3, 0xffff },
                { "\xf0\x90\x80\x80", 4, 0x10000 },
                { "\xf4\x8f\xbf\xbf", 4, 0x10ffff },
                /* Overlong forms, surrogates, beyond U+10FFFF, stray continuation bytes. */
                { "\xc0\x80", 0, 0 },
                { "\xc1\xbf", 0, 0 },
                { "\xe0\x9f\xbf", 0, 0 },
                { "\xed\xa0\x80", 0, 0 },
                { "\xed\xbf\xbf", 0, 0 },
                { "\xf0\x8f\xbf\xbf", 0, 0 },
                { "\xf4\x90\x80\x80", 0, 0 },
                { "\xf5\x80\x80\x80", 0, 0 },
                { "\xff", 0, 0 },
                { "\x80", 0, 0 },
                { "\xe2\x28\xa1", 0, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint32_t cp = 0;
                size_t k = utf8_sequence(cases[i].s, strlen(cases[i].s), &cp);

                ck_assert_msg(k == cases[i].len, "case %zu: length %zu", i, k);
                if (k > 0)
                        ck_assert_msg(cp == cases[i].cp, "case %zu: U+%04X", i, (unsigned) cp);
        }
        /* A sequence cut by the end of the buffer. */
        ck_assert_uint_eq(utf8_sequence("\xe2\x82\xac", 2, &(uint32_t) { 0 }), 0);
        ck_assert_uint_eq(utf8_sequence("x", 0, &(uint32_t) { 0 }), 0);
        ck_assert(utf8_is_valid("gr\xc3\xbc\xc3\x9f", 6));
        ck_assert(!utf8_is_valid("gr\xc3", 3));
        ck_assert(utf8_is_valid("", 0));
}
END_TEST

START_TEST(test_control) {
        ck_assert(utf8_is_control(0));
        ck_assert(utf8_is_control('\n'));
        ck_assert(utf8_is_control(0x1b));
        ck_assert(utf8_is_control(0x7f));
        ck_assert(utf8_is_control(0x9b));
        ck_assert(utf8_is_control(0x2028));
        ck_assert(utf8_is_control(0x202e));
        ck_assert(utf8_is_control(0x2067));
        ck_assert(!utf8_is_control(' '));
        ck_assert(!utf8_is_control('~'));
        ck_assert(!utf8_is_control(0xa0));
        ck_assert(!utf8_is_control(0xfc));
        ck_assert(!utf8_is_control(0x65e5));
}
END_TEST

START_TEST(test_escape) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "", "" },
                { "sensor-1.temp", "sensor-1.temp" },
                { "gr\xc3\xbc\xc3\x9f", "gr\xc3\xbc\xc3\x9f" },
                { "a\nb\rc\td", "a\\nb\\rc\\td" },
                { "\x1b[2J", "\\x1b[2J" },
                { "\xc2\x9b", "\\xc2\\x9b" },
                { "\xe2\x80\xae", "\\xe2\\x80\\xae" },
                { "back\\slash", "back\\\\slash" },
                { "\xff\xc0\xaf", "\\xff\\xc0\\xaf" },
                { "\x7f", "\\x7f" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *e = utf8_escape(cases[i].in);

                ck_assert_ptr_nonnull(e);
                ck_assert_str_eq(e, cases[i].out);
        }
}
END_TEST

START_TEST(test_escape_worst_case) {
        _cleanup_free_ char *in = malloc(1001), *e = NULL;

        /* Every byte an escape: exactly four times the input. */
        ck_assert_ptr_nonnull(in);
        memset(in, 0x01, 1000);
        in[1000] = '\0';
        e = utf8_escape(in);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(strlen(e), 4000);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("utf8");
        TCase *tc = tcase_create("utf8");

        tcase_add_test(tc, test_sequence);
        tcase_add_test(tc, test_control);
        tcase_add_test(tc, test_escape);
        tcase_add_test(tc, test_escape_worst_case);
        suite_add_tcase(s, tc);
        return s;
}
