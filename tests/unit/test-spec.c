/* SPDX-License-Identifier: MIT */
/*
 * Generated and shipped documents stay true: spec/control-fingerprints.md is byte for byte what
 * spec/gen-control-fingerprints.sh prints from schemas/control.avsc today, and every built man
 * page passes `mandoc -T lint -W error`. Reads the source and build trees, writes nothing.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <check.h>

#include "macro.h"
#include "test-util.h"

static void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/* Reads all of f into a NUL-terminated malloc'd buffer. */
static char *read_all(FILE *f, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, allocated = 0;

        for (;;) {
                size_t n;

                if (allocated - len < 4096) {
                        char *p = realloc(buf, allocated + 65536);

                        ck_assert_ptr_nonnull(p);
                        buf = p;
                        allocated += 65536;
                }
                n = fread(buf + len, 1, allocated - len - 1, f);
                len += n;
                if (n == 0)
                        break;
        }
        ck_assert(!ferror(f));
        buf[len] = 0;
        *ret_len = len;
        return TAKE_PTR(buf);
}

/* Appends s to cmd as one single-quoted shell word. */
static void append_quoted(char *cmd, size_t size, const char *s) {
        size_t n = strlen(cmd);

        ck_assert_uint_lt(n + 3, size);
        cmd[n++] = ' ';
        cmd[n++] = '\'';
        for (; *s; s++) {
                if (*s == '\'') {
                        ck_assert_uint_lt(n + 5, size);
                        memcpy(cmd + n, "'\\''", 4);
                        n += 4;
                } else {
                        ck_assert_uint_lt(n + 2, size);
                        cmd[n++] = *s;
                }
        }
        ck_assert_uint_lt(n + 2, size);
        cmd[n++] = '\'';
        cmd[n] = 0;
}

/* Runs cmd, returns its stdout and its exit status (-1 if it did not exit). */
static char *run(const char *cmd, size_t *ret_len, int *ret_status) {
        FILE *p;
        char *out;
        int status;

        p = popen(cmd, "r");
        ck_assert_msg(p, "popen(%s) failed", cmd);
        out = read_all(p, ret_len);
        status = pclose(p);
        *ret_status = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return out;
}

START_TEST(test_fingerprint_page) {
        _cleanup_free_ char *committed = NULL, *generated = NULL;
        _cleanup_(fclosep) FILE *f = NULL;
        char path[4096], script[4096], schemas[4096], ringctl[4096], cmd[16384] = "sh";
        const char *e = getenv("RINGCTL");
        size_t committed_len, generated_len;
        int status;

        if (e)
                snprintf(ringctl, sizeof(ringctl), "%s", e);
        else
                snprintf(ringctl, sizeof(ringctl), "%s/src/ringctl/ringctl",
                         getenv("TOP_BUILDDIR") ?: "..");

        test_srcdir_path("spec/control-fingerprints.md", path, sizeof(path));
        f = fopen(path, "re");
        ck_assert_msg(f, "cannot open %s", path);
        committed = read_all(f, &committed_len);

        append_quoted(cmd, sizeof(cmd),
                      test_srcdir_path("spec/gen-control-fingerprints.sh", script, sizeof(script)));
        append_quoted(cmd, sizeof(cmd), ringctl);
        append_quoted(cmd, sizeof(cmd),
                      test_srcdir_path("schemas/control.avsc", schemas, sizeof(schemas)));
        generated = run(cmd, &generated_len, &status);
        ck_assert_msg(status == 0, "%s exited with %d", cmd, status);
        ck_assert_uint_gt(generated_len, 0);

        ck_assert_msg(committed_len == generated_len &&
                      memcmp(committed, generated, committed_len) == 0,
                      "spec/control-fingerprints.md is stale: run `make update-spec`, commit it");
}
END_TEST

START_TEST(test_man_lint) {
        _cleanup_free_ char *pages = NULL;
        char pattern[4096] = "";
        glob_t g = {};
        const char *e = getenv("MAN_PAGES");
        unsigned n = 0, failed = 0;

        /* MAN_PAGES (from make) names the built pages; run by hand, look in the build tree. */
        if (e && *e) {
                pages = strdup(e);
                ck_assert_ptr_nonnull(pages);
        } else {
                size_t len = 0;

                snprintf(pattern, sizeof(pattern), "%s/man/*.[0-9]",
                         getenv("TOP_BUILDDIR") ?: "..");
                if (glob(pattern, 0, NULL, &g) == 0)
                        for (size_t i = 0; i < g.gl_pathc; i++)
                                len += strlen(g.gl_pathv[i]) + 1;
                pages = calloc(1, len + 1);
                ck_assert_ptr_nonnull(pages);
                for (size_t i = 0; i < g.gl_pathc; i++) {
                        strcat(pages, g.gl_pathv[i]);
                        strcat(pages, " ");
                }
                globfree(&g);
        }

        for (char *save = NULL, *page = strtok_r(pages, " \t\n", &save); page;
             page = strtok_r(NULL, " \t\n", &save)) {
                _cleanup_free_ char *out = NULL;
                char cmd[8192] = "mandoc -T lint -W error";
                size_t len;
                int status;

                append_quoted(cmd, sizeof(cmd), page);
                strcat(cmd, " 2>&1");
                out = run(cmd, &len, &status);
                n++;
                if (status != 0) {
                        /* Report every page before failing, not just the first; as TAP
                         * comments, so the driver keeps them in the log. */
                        printf("# %s: mandoc exited with %d%s\n", page, status,
                               status == 127 ? " (is mandoc installed?)" : "");
                        for (char *s2 = NULL, *line = strtok_r(out, "\n", &s2); line;
                             line = strtok_r(NULL, "\n", &s2))
                                printf("#   %s\n", line);
                        failed++;
                }
        }

        ck_assert_msg(n > 0, "no man pages to lint: MAN_PAGES is empty and '%s' matches none",
                      pattern);
        ck_assert_msg(failed == 0, "%u of %u man pages fail mandoc -T lint -W error", failed, n);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("spec");
        TCase *tc = tcase_create("spec");

        tcase_add_test(tc, test_fingerprint_page);
        tcase_add_test(tc, test_man_lint);
        suite_add_tcase(s, tc);
        return s;
}
