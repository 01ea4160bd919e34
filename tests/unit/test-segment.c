/* SPDX-License-Identifier: MIT */
/* Shared-memory segments: create/open/unlink, exact modes, and clean errors on bad segments. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "segment.h"
#include "test-util.h"

START_TEST(test_create_open_share_unlink) {
        Segment a = SEGMENT_NULL, b = SEGMENT_NULL;
        char name[NAMES_SEGMENT_MAX];

        test_shm_name(name, sizeof(name), "share");
        ck_assert_int_eq(segment_create(&a, name, 8192, 0600), 0);
        ck_assert_uint_eq(a.size, 8192);
        ck_assert_str_eq(a.name, name);
        ck_assert_int_eq(segment_open(&b, name, 4096, 1 << 20), 0);
        ck_assert_uint_eq(b.size, 8192);

        memcpy(a.base + 100, "ring", 4);
        ck_assert_int_eq(memcmp(b.base + 100, "ring", 4), 0);

        ck_assert_int_eq(segment_create(&b, name, 4096, 0600), -EEXIST);
        segment_done(&a);
        segment_done(&b);
        segment_done(&b); /* idempotent */
        ck_assert_int_eq(segment_unlink(name), 0);
        ck_assert_int_eq(segment_unlink(name), -ENOENT);
        ck_assert_int_eq(segment_open(&b, name, 1, 1 << 20), -ENOENT);
}
END_TEST

START_TEST(test_mode_is_exact_despite_umask) {
        static const mode_t modes[] = { 0600, 0660, 0666 };
        Segment s = SEGMENT_NULL;
        char name[NAMES_SEGMENT_MAX];
        struct stat st;
        mode_t old = umask(077);

        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                test_shm_name(name, sizeof(name), "mode");
                ck_assert_int_eq(segment_create(&s, name, 4096, modes[i]), 0);
                ck_assert_int_eq(fstat(s.fd, &st), 0);
                ck_assert_uint_eq(st.st_mode & 0777, modes[i]);
                ck_assert(fcntl(s.fd, F_GETFD) & FD_CLOEXEC);
                segment_done(&s);
                ck_assert_int_eq(segment_unlink(name), 0);
        }
        umask(old);
}
END_TEST

START_TEST(test_bad_arguments) {
        Segment s = SEGMENT_NULL;
        char name[NAMES_SEGMENT_MAX];

        ck_assert_int_eq(segment_create(&s, "noslash", 4096, 0600), -EINVAL);
        ck_assert_int_eq(segment_create(&s, "/a/b", 4096, 0600), -EINVAL);
        ck_assert_int_eq(segment_create(&s, "/", 4096, 0600), -EINVAL);
        ck_assert_int_eq(segment_create(&s, NULL, 4096, 0600), -EINVAL);
        test_shm_name(name, sizeof(name), "bad");
        ck_assert_int_eq(segment_create(&s, name, 0, 0600), -EINVAL);
        ck_assert_int_eq(segment_create(&s, name, 4096, 04755), -EINVAL);
        ck_assert_int_eq(segment_open(&s, "/a/b", 1, 2), -EINVAL);
        ck_assert_int_eq(segment_unlink("x"), -EINVAL);
        ck_assert_int_eq(s.fd, -1);
}
END_TEST

START_TEST(test_size_bounds_and_foreign_files) {
        Segment s = SEGMENT_NULL, t = SEGMENT_NULL;
        char name[NAMES_SEGMENT_MAX], link_name[NAMES_SEGMENT_MAX], path[NAMES_SEGMENT_MAX + 16];

        test_shm_name(name, sizeof(name), "size");
        ck_assert_int_eq(segment_create(&s, name, 4096, 0600), 0);
        ck_assert_int_eq(segment_open(&t, name, 8192, 1 << 20), -EBADMSG);
        ck_assert_int_eq(segment_open(&t, name, 1, 2048), -EBADMSG);
        ck_assert_int_eq(ftruncate(s.fd, 0), 0);
        ck_assert_int_eq(segment_open(&t, name, 1, 1 << 20), -EBADMSG);

        /* A symlink planted in /dev/shm is refused, not followed. */
        test_shm_name(link_name, sizeof(link_name), "link");
        snprintf(path, sizeof(path), "/dev/shm%s", link_name);
        ck_assert_int_eq(symlink("/etc/passwd", path), 0);
        ck_assert_int_lt(segment_open(&t, link_name, 1, 1 << 20), 0);
        ck_assert_int_eq(unlink(path), 0);

        segment_done(&s);
        ck_assert_int_eq(segment_unlink(name), 0);
}
END_TEST

/* Without its descriptor the mapping still shares the file, and done() still unmaps it. */
START_TEST(test_close_fd_keeps_mapping) {
        Segment a = SEGMENT_NULL, b = SEGMENT_NULL;
        char name[NAMES_SEGMENT_MAX];
        int fd;

        test_shm_name(name, sizeof(name), "closefd");
        ck_assert_int_eq(segment_create(&a, name, 8192, 0600), 0);
        ck_assert_int_eq(segment_open(&b, name, 4096, 1 << 20), 0);
        fd = b.fd;
        segment_close_fd(&b);
        ck_assert_int_eq(b.fd, -1);
        ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
        ck_assert_int_eq(errno, EBADF);
        segment_close_fd(&b); /* idempotent */

        /* Unlinked too: the mapping alone keeps the memory. */
        ck_assert_int_eq(segment_unlink(name), 0);
        memcpy(a.base + 100, "ring", 4);
        ck_assert_int_eq(memcmp(b.base + 100, "ring", 4), 0);
        segment_done(&b);
        ck_assert_ptr_null(b.base);
        segment_done(&a);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("segment");
        TCase *tc = tcase_create("segment");

        tcase_add_test(tc, test_create_open_share_unlink);
        tcase_add_test(tc, test_mode_is_exact_despite_umask);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_size_bounds_and_foreign_files);
        tcase_add_test(tc, test_close_fd_keeps_mapping);
        suite_add_tcase(s, tc);
        return s;
}
