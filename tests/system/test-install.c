/* SPDX-License-Identifier: MIT */
/*
 * The installed tree builds a program through pkg-config: `make install DESTDIR=<tmp>` of this
 * build tree ($TOP_BUILDDIR), then examples/metric-pub.c compiled and linked with nothing but
 * `pkg-config --cflags --libs libring avro-c` (PKG_CONFIG_SYSROOT_DIR=<tmp> maps the .pc file's
 * prefix into the staging directory), and run with LD_LIBRARY_PATH against a real broker.
 * ring.h, as installed, also compiles alone as strict C99 (and C++ when a compiler is there).
 * Skips (TAP "1..0 # SKIP") without pkg-config, a C compiler, avro-c's .pc file or a build tree.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "broker-fixture.h"
#include "ring.h"
#include "test-util.h"

#define OUT_MAX 65536

static BrokerFixture broker;
static char stage[64];

static void setup(void) {
        broker_fixture_init_start(&broker);
        snprintf(stage, sizeof(stage), "/tmp/ring-install-XXXXXX");
        ck_assert_msg(mkdtemp(stage), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) {
        char cmd[128];

        if (stage[0] && !getenv("RING_TEST_KEEP")) {
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", stage);
                (void) !system(cmd);
        }
        broker_fixture_done(&broker);
}

/* Runs cmd with sh, output into out (NUL-terminated, trailing newline removed); returns the
 * exit status or -1. */
static int run(const char *cmd, char *out, size_t size) {
        size_t n = 0;
        FILE *p;
        int status;

        fflush(stdout);
        p = popen(cmd, "r");
        ck_assert_msg(p, "popen: %s", strerror(errno));
        while (n + 1 < size) {
                size_t k = fread(out + n, 1, size - 1 - n, p);
                if (k == 0)
                        break;
                n += k;
        }
        out[n] = 0;
        /* Drain what did not fit, so the command does not die of SIGPIPE. */
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), p) > 0)
                ;
        while (n > 0 && out[n - 1] == '\n')
                out[--n] = 0;
        status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Prints text as TAP comments, at most the last `lines` lines. */
static void print_tail(const char *what, const char *text, unsigned lines) {
        const char *start = text + strlen(text);
        unsigned seen = 0;

        while (start > text && seen <= lines)
                if (*--start == '\n')
                        seen++;
        if (*start == '\n')
                start++;
        printf("# ---- %s ----\n", what);
        for (const char *line = start; *line;) {
                const char *nl = strchr(line, '\n');
                int len = nl ? (int) (nl - line) : (int) strlen(line);
                printf("# %.*s\n", len, line);
                line += len + (nl ? 1 : 0);
        }
}

static int run_checked(const char *what, const char *cmd, char *out, size_t size) {
        int r = run(cmd, out, size);

        if (r != 0) {
                printf("# %s failed (exit status %d): %s\n", what, r, cmd);
                print_tail(what, out, 40);
        }
        return r;
}

/* snprintf() that fails the test instead of truncating a command line. */
static void format(char *buf, size_t size, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        ck_assert_msg(n >= 0 && (size_t) n < size, "a command line longer than %zu bytes", size);
}

static const char *cc(void) {
        const char *e = getenv("CC");

        return e && *e ? e : "cc";
}

START_TEST(test_installed_tree_builds_a_client) {
        const char *top = getenv("TOP_BUILDDIR"), *src = getenv("TOP_SRCDIR");
        char cmd[16384], flags[4096], pc[1024], libdir[1024], *out = malloc(OUT_MAX);
        char env[2048];

        ck_assert_ptr_nonnull(out);
        ck_assert_msg(top && *top && src && *src,
                      "TOP_BUILDDIR and TOP_SRCDIR must be set (make check does)");

        /* The whole install, staged. The inner make must not join the outer one's jobserver. */
        format(cmd, sizeof(cmd),
               "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C '%s' install DESTDIR='%s' 2>&1",
               top, stage);
        ck_assert_msg(run_checked("make install", cmd, out, OUT_MAX) == 0,
                      "make install DESTDIR=%s failed", stage);

        /* The .pc file names the configured prefix; find where it landed under the stage. */
        format(cmd, sizeof(cmd), "find '%s' -name libring.pc -path '*/pkgconfig/*' | head -n 1",
               stage);
        ck_assert_int_eq(run(cmd, pc, sizeof(pc)), 0);
        ck_assert_msg(pc[0], "no libring.pc under %s", stage);
        *strrchr(pc, '/') = 0;
        printf("# libring.pc installed in %s\n", pc);
        format(env, sizeof(env), "PKG_CONFIG_PATH='%s' PKG_CONFIG_SYSROOT_DIR='%s'", pc, stage);

        format(cmd, sizeof(cmd), "%s pkg-config --cflags --libs libring avro-c 2>&1", env);
        ck_assert_msg(run_checked("pkg-config", cmd, flags, sizeof(flags)) == 0,
                      "pkg-config cannot resolve libring");
        printf("# pkg-config --cflags --libs libring avro-c: %s\n", flags);
        ck_assert_msg(strstr(flags, stage), "the flags do not point into the staged install: %s",
                      flags);
        ck_assert_msg(strstr(flags, "-lring"), "no -lring in: %s", flags);
        ck_assert_msg(!strstr(flags, src) && !strstr(flags, top),
                      "the flags point into the source or build tree: %s", flags);

        format(cmd, sizeof(cmd), "%s pkg-config --variable=libdir libring", env);
        ck_assert_int_eq(run(cmd, libdir, sizeof(libdir)), 0);
        if (strncmp(libdir, stage, strlen(stage)) != 0) {
                /* pkg-config applies the sysroot to flags, not to variables. */
                char staged[sizeof(libdir)];
                format(staged, sizeof(staged), "%s%s", stage, libdir);
                memcpy(libdir, staged, sizeof(libdir));
        }
        format(cmd, sizeof(cmd), "test -e '%s/libring.so'", libdir);
        ck_assert_msg(run(cmd, out, OUT_MAX) == 0, "no libring.so in %s", libdir);

        /* A library built with --enable-sanitizers needs its programs built that way too. */
        format(cmd, sizeof(cmd), "ldd '%s/libring.so' | grep -q libasan", libdir);
        if (run(cmd, out, OUT_MAX) == 0) {
                printf("# libring is built with sanitizers: so is the example\n");
                format(flags + strlen(flags), sizeof(flags) - strlen(flags),
                       " -fsanitize=address,undefined");
        }

        /* The example, with the installed header and library only (schemas.h is the example's). */
        format(cmd, sizeof(cmd),
               "%s -o '%s/metric-pub' '%s/examples/metric-pub.c' -I'%s/examples' %s 2>&1", cc(),
               stage, src, src, flags);
        ck_assert_msg(run_checked("compiling metric-pub", cmd, out, OUT_MAX) == 0,
                      "examples/metric-pub.c does not build against the installed tree");

        /* It runs against the installed library, on the test broker's bus. */
        format(cmd, sizeof(cmd), "LD_LIBRARY_PATH='%s' ldd '%s/metric-pub' 2>&1 | grep libring",
               libdir, stage);
        ck_assert_int_eq(run(cmd, out, OUT_MAX), 0);
        printf("# %s\n", out);
        ck_assert_msg(strstr(out, libdir), "metric-pub does not load the installed libring: %s",
                      out);
        format(cmd, sizeof(cmd), "LD_LIBRARY_PATH='%s' RING_BUS='%s' '%s/metric-pub' 3 2>&1",
               libdir, broker.bus, stage);
        ck_assert_msg(run_checked("running metric-pub", cmd, out, OUT_MAX) == 0,
                      "metric-pub failed on bus %s", broker.bus);
        print_tail("metric-pub", out, 10);
        ck_assert_msg(strstr(out, "sent cpu.load = 0.50"), "metric-pub did not send its 3 records");

        /* The installed ring.h alone: strict C99, and C++ if there is a compiler. */
        format(cmd, sizeof(cmd),
               "printf '#include <ring.h>\\n"
               "int main(void) { return ring_version()[0] == 0; }\\n' "
               "> '%s/alone.c' && "
               "%s -std=c99 -pedantic -Wall -Wextra -Werror -o '%s/alone' '%s/alone.c' %s 2>&1",
               stage, cc(), stage, stage, flags);
        ck_assert_msg(run_checked("ring.h as C99", cmd, out, OUT_MAX) == 0,
                      "the installed ring.h is not C99 on its own");
        if (run("command -v c++", out, OUT_MAX) == 0) {
                format(cmd, sizeof(cmd),
                       "cp '%s/alone.c' '%s/alone.cc' && "
                       "c++ -Wall -Wextra -Werror -o '%s/alone-cc' '%s/alone.cc' %s 2>&1",
                       stage, stage, stage, stage, flags);
                ck_assert_msg(run_checked("ring.h as C++", cmd, out, OUT_MAX) == 0,
                              "the installed ring.h does not compile as C++");
        } else
                printf("# no C++ compiler: ring.h not compiled as C++\n");
        free(out);
}
END_TEST

/* Without the tools this test needs, the program skips as a whole (STYLE.md, Tests). */
static void skip_unless(bool ok, const char *why) {
        if (!ok) {
                printf("1..0 # SKIP %s\n", why);
                fflush(stdout);
                exit(EXIT_SUCCESS);
        }
}

Suite *test_suite(void) {
        const char *top = getenv("TOP_BUILDDIR");
        char path[4096];
        Suite *s = suite_create("libring-install");
        TCase *tc = tcase_create("install");

        skip_unless(top && *top, "TOP_BUILDDIR is not set (run through make check)");
        snprintf(path, sizeof(path), "%s/Makefile", top);
        skip_unless(access(path, R_OK) == 0, "no Makefile in $TOP_BUILDDIR");
        skip_unless(system("command -v pkg-config >/dev/null 2>&1") == 0,
                    "pkg-config is not installed");
        skip_unless(system("pkg-config --exists avro-c >/dev/null 2>&1") == 0,
                    "avro-c.pc is not installed");
        snprintf(path, sizeof(path), "command -v '%s' >/dev/null 2>&1", cc());
        skip_unless(system(path) == 0, "no C compiler (set CC)");

        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, broker_fixture_guard_setup, broker_fixture_guard_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_installed_tree_builds_a_client);
        suite_add_tcase(s, tc);
        return s;
}
