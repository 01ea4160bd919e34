/* SPDX-License-Identifier: MIT */
/* Segment names: the v1 names on the default bus, RING_BUS isolation, and name validation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "test-util.h"

START_TEST(test_default_bus_uses_v1_names) {
        BusNames b;
        char buf[NAMES_SEGMENT_MAX];

        ck_assert_int_eq(names_bus_init(&b, NULL), 0);
        ck_assert_int_eq(names_control(&b, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/impulse-ring.ctl.v1");
        ck_assert_int_eq(names_client(&b, UINT64_MAX, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/impulse-ring.cli.18446744073709551615.v1");
        ck_assert_int_eq(names_arena(&b, 7, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/impulse-ring.arena.7.v1");
        ck_assert_int_eq(names_function(&b, 12, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/impulse-ring.fn.12.v1");

        ck_assert_int_eq(names_bus_init(&b, ""), 0);
        ck_assert_str_eq(b.prefix, "impulse-ring");
}
END_TEST

START_TEST(test_ring_bus_env_selects_isolated_bus) {
        BusNames b, dflt;
        char buf[NAMES_SEGMENT_MAX];

        ck_assert_int_eq(setenv("RING_BUS", "test_bus-1", 1), 0);
        ck_assert_int_eq(names_bus_from_env(&b), 0);
        ck_assert_int_eq(names_control(&b, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "/impulse-ring-test_bus-1.ctl.v1");

        ck_assert_int_eq(names_bus_init(&dflt, NULL), 0);
        /* Neither bus claims the other's files, in either direction. */
        ck_assert(!names_file_belongs_to_bus(&dflt, "impulse-ring-test_bus-1.ctl.v1"));
        ck_assert(!names_file_belongs_to_bus(&b, "impulse-ring.ctl.v1"));
        ck_assert(names_file_belongs_to_bus(&b, "impulse-ring-test_bus-1.arena.3.v1"));
        ck_assert(names_file_belongs_to_bus(&dflt, "impulse-ring.cli.5.v1"));
        ck_assert(!names_file_belongs_to_bus(&dflt, "impulse-ringx.cli.5.v1"));
        ck_assert(!names_file_belongs_to_bus(&dflt, "other"));

        ck_assert_int_eq(setenv("RING_BUS", "bad/name", 1), 0);
        ck_assert_int_eq(names_bus_from_env(&b), -EINVAL);
        ck_assert_int_eq(unsetenv("RING_BUS"), 0);
        ck_assert_int_eq(names_bus_from_env(&b), 0);
        ck_assert_str_eq(b.prefix, "impulse-ring");
}
END_TEST

START_TEST(test_bad_bus_names_rejected) {
        static const char *const bad[] = { "a.b", "a b", "../x", "x/y", "é", "abcdefghijklmnopqrstuvwxyz0123456" };
        BusNames b;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(names_bus_init(&b, bad[i]) == -EINVAL, "accepted bus '%s'", bad[i]);
        ck_assert_int_eq(names_bus_init(&b, "abcdefghijklmnopqrstuvwxyz012345"), 0);
}
END_TEST

START_TEST(test_buffer_too_small) {
        BusNames b;
        char buf[8];

        ck_assert_int_eq(names_bus_init(&b, NULL), 0);
        ck_assert_int_eq(names_control(&b, buf, sizeof(buf)), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_client_segment_validation) {
        BusNames b, other;

        ck_assert_int_eq(names_bus_init(&b, NULL), 0);
        ck_assert_int_eq(names_bus_init(&other, "other"), 0);
        ck_assert(names_is_client_segment(&b, "/impulse-ring.cli.0.v1"));
        ck_assert(names_is_client_segment(&b, "/impulse-ring.cli.18446744073709551615.v1"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.cli.18446744073709551616.v1"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.cli..v1"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.cli.-1.v1"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.cli.12.v2"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.cli.12.v1x"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.ctl.v1"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring.arena.1.v1"));
        ck_assert(!names_is_client_segment(&b, "impulse-ring.cli.1.v1"));
        ck_assert(!names_is_client_segment(&b, "/../impulse-ring.cli.1.v1"));
        ck_assert(!names_is_client_segment(&b, "/impulse-ring-other.cli.1.v1"));
        ck_assert(names_is_client_segment(&other, "/impulse-ring-other.cli.1.v1"));
        ck_assert(!names_is_client_segment(&other, "/impulse-ring.cli.1.v1"));
}
END_TEST

START_TEST(test_generic_validation) {
        ck_assert(names_valid("/a"));
        ck_assert(names_valid("/impulse-ring.ctl.v1"));
        ck_assert(!names_valid(NULL));
        ck_assert(!names_valid(""));
        ck_assert(!names_valid("/"));
        ck_assert(!names_valid("a"));
        ck_assert(!names_valid("/a/b"));
        ck_assert(!names_valid("/."));
        ck_assert(!names_valid("/.."));
        ck_assert(!names_valid("/a b"));
        ck_assert(!names_valid("/a\nb"));
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("names");
        TCase *tc = tcase_create("names");

        tcase_add_test(tc, test_default_bus_uses_v1_names);
        tcase_add_test(tc, test_ring_bus_env_selects_isolated_bus);
        tcase_add_test(tc, test_bad_bus_names_rejected);
        tcase_add_test(tc, test_buffer_too_small);
        tcase_add_test(tc, test_client_segment_validation);
        tcase_add_test(tc, test_generic_validation);
        suite_add_tcase(s, tc);
        return s;
}
