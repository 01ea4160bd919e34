/* SPDX-License-Identifier: MIT */
/*
 * Tests `ringctl fingerprint` as users run it: the built binary ($RINGCTL) in a child process,
 * with stdout, stderr and the exit status checked. Schema files go to a private temporary
 * directory that the test case's fixture removes again.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fingerprint.h"
#include "macro.h"
#include "test-util.h"

extern char **environ;

/* Output beyond this is a bug in itself; the cap keeps a runaway child from filling memory. */
#define OUTPUT_MAX ((size_t) 1 << 20)

/* The fingerprint of tests/data/schemas/metric.avsc, computed apart from libring. */
#define METRIC_FP "0xaa8f339cf2961dd6"

static char tmpdir[256];

typedef struct Run {
        int status; /* exit status, -1 if the child did not exit normally */
        char *out;
        char *err;
} Run;

static void run_done(Run *r) {
        free(r->out);
        free(r->err);
        *r = (Run) {};
}

static const char *ringctl_path(void) {
        const char *p = getenv("RINGCTL");

        /* make check exports RINGCTL; the fallback serves a run by hand from the build tree. */
        return p ? p : "src/ringctl/ringctl";
}

/* Unchecked fixture: it runs in the parent, so the teardown happens even when a test fails
 * (a failing forked test exits without running checked teardowns). */
static void tmpdir_setup(void) {
        const char *base = getenv("TMPDIR");

        snprintf(tmpdir, sizeof(tmpdir), "%s/ring-test-ringctl.XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
                printf("# mkdtemp %s: %s\n", tmpdir, strerror(errno));
                tmpdir[0] = '\0';
        }
}

static void tmpdir_teardown(void) {
        DIR *d;
        struct dirent *de;

        if (tmpdir[0] == '\0')
                return;
        d = opendir(tmpdir);
        if (d) {
                while ((de = readdir(d)))
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                closedir(d);
        }
        if (rmdir(tmpdir) < 0)
                printf("# rmdir %s: %s\n", tmpdir, strerror(errno));
        tmpdir[0] = '\0';
}

/* JSON in this file is written with ' for " to stay readable; this turns it into JSON. No name
 * or symbol in the tests contains a '. The caller frees the copy. */
static char *dq(const char *s) {
        char *copy = strdup(s);

        ck_assert_ptr_nonnull(copy);
        for (char *p = copy; *p; p++)
                if (*p == '\'')
                        *p = '"';
        return copy;
}

/* Writes squoted (with ' for ") to a file named name in the test's directory; returns its path,
 * valid until the next call. */
static const char *tmpfile_write(const char *name, const char *squoted) {
        _cleanup_free_ char *content = dq(squoted);
        static char path[512];
        FILE *f;

        ck_assert_msg(tmpdir[0] != '\0', "no temporary directory");
        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        f = fopen(path, "we");
        ck_assert_msg(f, "%s: %s", path, strerror(errno));
        ck_assert_uint_eq(fwrite(content, 1, strlen(content), f), strlen(content));
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

static const char *metric_path(void) {
        static char path[4096];

        return test_srcdir_path("tests/data/schemas/metric.avsc", path, sizeof(path));
}

/* Appends what fd has to *buf; returns false at end of file. */
static bool drain(int fd, char **buf, size_t *len) {
        char chunk[4096];
        ssize_t n;
        char *p;

        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
                return true;
        ck_assert_msg(n >= 0, "read: %s", strerror(errno));
        if (n == 0)
                return false;
        ck_assert_msg(*len + (size_t) n <= OUTPUT_MAX, "child wrote over %zu bytes", OUTPUT_MAX);
        p = realloc(*buf, *len + (size_t) n + 1);
        ck_assert_ptr_nonnull(p);
        memcpy(p + *len, chunk, (size_t) n);
        *len += (size_t) n;
        p[*len] = '\0';
        *buf = p;
        return true;
}

/* Runs ringctl with the NULL-terminated args, stdin from stdin_path (NULL: /dev/null). Both
 * pipes are read together so that a child filling one cannot block on it while we wait on the
 * other. */
static void run_ringctl(Run *ret, const char *stdin_path, const char *const *args) {
        const char *argv[16] = { ringctl_path() };
        posix_spawn_file_actions_t fa;
        int out[2], err[2];
        size_t n_args = 1, out_len = 0, err_len = 0;
        bool out_open = true, err_open = true;
        pid_t pid;
        int r;

        for (const char *const *a = args; *a; a++) {
                ck_assert_uint_lt(n_args, ELEMENTSOF(argv) - 1);
                argv[n_args++] = *a;
        }

        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
        ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
        ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, STDIN_FILENO,
                                                          stdin_path ? stdin_path : "/dev/null",
                                                          O_RDONLY, 0), 0);
        /* dup2 leaves the copies without O_CLOEXEC; the originals close at exec. */
        ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO), 0);
        ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO), 0);
        r = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *) argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        ck_assert_msg(r == 0, "spawning %s: %s", argv[0], strerror(r));
        close(out[1]);
        close(err[1]);

        *ret = (Run) { .out = strdup(""), .err = strdup("") };
        ck_assert(ret->out && ret->err);
        while (out_open || err_open) {
                struct pollfd p[2] = {
                        { .fd = out_open ? out[0] : -1, .events = POLLIN },
                        { .fd = err_open ? err[0] : -1, .events = POLLIN },
                };

                r = poll(p, 2, -1);
                if (r < 0 && errno == EINTR)
                        continue;
                ck_assert_msg(r > 0, "poll: %s", strerror(errno));
                if (p[0].revents)
                        out_open = drain(out[0], &ret->out, &out_len);
                if (p[1].revents)
                        err_open = drain(err[0], &ret->err, &err_len);
        }
        close(out[0]);
        close(err[0]);
        ret->status = test_wait_child(pid);
}

#define RUN(run, stdin_path, ...) \
        run_ringctl((run), (stdin_path), (const char *const[]) { __VA_ARGS__, NULL })

/* Checks a run that must fail with status and a message holding each of the NULL-terminated
 * needles, with nothing on stdout. */
static void assert_failed(const Run *run, int status, const char *const *needles) {
        ck_assert_msg(run->status == status, "exit status %d, expected %d; stderr: %s", run->status,
                      status, run->err);
        ck_assert_msg(run->out[0] == '\0', "unexpected stdout: %s", run->out);
        for (const char *const *n = needles; *n; n++)
                ck_assert_msg(strstr(run->err, *n), "stderr lacks \"%s\": %s", *n, run->err);
}
#define ASSERT_FAILED(run, status, ...) \
        assert_failed((run), (status), (const char *const[]) { __VA_ARGS__, NULL })

/* Checks a run that must succeed with exactly squoted (' for ") on stdout and nothing on stderr. */
static void assert_succeeded(const Run *run, const char *squoted) {
        _cleanup_free_ char *out = dq(squoted);

        ck_assert_msg(run->status == 0, "exit status %d; stderr: %s", run->status, run->err);
        ck_assert_str_eq(run->err, "");
        ck_assert_str_eq(run->out, out);
}

/* The "0x..." libring gives for squoted (' for "), to compare list output against. */
static void expected_fp(const char *squoted, char *buf, size_t size) {
        _cleanup_free_ char *json = dq(squoted);
        uint64_t fp;

        ck_assert_int_eq(fingerprint_schema_json(json, strlen(json), &fp, NULL, NULL), 0);
        snprintf(buf, size, "0x%016llx", (unsigned long long) fp);
}

START_TEST(test_single_file) {
        Run run = {};

        RUN(&run, NULL, "fingerprint", metric_path());
        assert_succeeded(&run, METRIC_FP "\n");
        run_done(&run);

        /* A primitive, with the value of the specification's vector 000. */
        RUN(&run, NULL, "fingerprint", tmpfile_write("null.avsc", "  'null'\n"));
        assert_succeeded(&run, "0x63dd24e7cc258f8a\n");
        run_done(&run);
}
END_TEST

START_TEST(test_stdin) {
        Run run = {};

        RUN(&run, metric_path(), "fingerprint", "-");
        assert_succeeded(&run, METRIC_FP "\n");
        run_done(&run);

        /* Options may follow the file. */
        RUN(&run, tmpfile_write("int.avsc", "{'type': 'int'}"), "fingerprint", "-", "-c");
        assert_succeeded(&run, "'int'\n");
        run_done(&run);
}
END_TEST

START_TEST(test_canonical) {
        static const char json[] =
                "{'namespace': 'geo', 'name': 'Point', 'type': 'record', 'doc': 'x',\n"
                " 'fields': [{'name': 'x', 'type': {'type': 'double'}, 'default': 0},\n"
                "            {'name': 'axis', 'type': {'type': 'enum', 'name': 'Axis',\n"
                "             'symbols': ['X', 'Y']}}]}\n";
        static const char canonical[] =
                "{'name':'geo.Point','type':'record','fields':[{'name':'x','type':"
                "'double'},{'name':'axis','type':{'name':'geo.Axis','type':'enum',"
                "'symbols':['X','Y']}}]}\n";
        const char *path = tmpfile_write("point.avsc", json);
        Run run = {};

        RUN(&run, NULL, "fingerprint", "--canonical", path);
        assert_succeeded(&run, canonical);
        run_done(&run);

        RUN(&run, NULL, "fingerprint", "-c", path);
        assert_succeeded(&run, canonical);
        run_done(&run);
}
END_TEST

static const char list_json[] =
        "[{'type': 'record', 'name': 'Sample', 'namespace': 'ring.t',\n"
        "  'fields': [{'name': 'v', 'type': 'long'}]},\n"
        " 'string',\n"
        " {'type': 'array', 'items': {'type': 'int'}},\n"
        " ['null', 'int'],\n"
        " {'type': 'enum', 'name': 'a.b.E', 'symbols': ['A']}\n"
        "]\n";

START_TEST(test_list) {
        static const char *const elements[] = {
                "{'type':'record','name':'Sample','namespace':'ring.t',"
                "'fields':[{'name':'v','type':'long'}]}",
                "'string'",
                "{'type':'array','items':'int'}",
                "['null','int']",
                "{'type':'enum','name':'a.b.E','symbols':['A']}",
        };
        static const char *const names[] = {
                "ring.t.Sample", "'string'", "{'type':'array','items':'int'}",
                "['null','int']", "a.b.E",
        };
        char expected[4096] = "", fp[32];
        Run run = {};

        for (size_t i = 0; i < ELEMENTSOF(elements); i++) {
                expected_fp(elements[i], fp, sizeof(fp));
                snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected),
                         "%s %s\n", names[i], fp);
        }
        /* Independent of libring: the value of the specification's vector 014. */
        ck_assert(strstr(expected, "'string' 0x8f014872634503c7\n"));

        RUN(&run, NULL, "fingerprint", tmpfile_write("list.avsc", list_json));
        assert_succeeded(&run, expected);
        run_done(&run);

        RUN(&run, tmpfile_write("list2.avsc", list_json), "fingerprint", "-");
        assert_succeeded(&run, expected);
        run_done(&run);
}
END_TEST

START_TEST(test_list_canonical) {
        Run run = {};

        RUN(&run, NULL, "fingerprint", "--canonical", tmpfile_write("list.avsc", list_json));
        assert_succeeded(&run,
                         "ring.t.Sample {'name':'ring.t.Sample','type':'record','fields':"
                         "[{'name':'v','type':'long'}]}\n"
                         "'string' 'string'\n"
                         "{'type':'array','items':'int'} {'type':'array','items':'int'}\n"
                         "['null','int'] ['null','int']\n"
                         "a.b.E {'name':'a.b.E','type':'enum','symbols':['A']}\n");
        run_done(&run);

        /* An empty list is a list of nothing, not the empty union. */
        RUN(&run, NULL, "fingerprint", tmpfile_write("empty.avsc", " [ ]\n"));
        assert_succeeded(&run, "");
        run_done(&run);
}
END_TEST

START_TEST(test_bad_schema) {
        const char *path;
        Run run = {};

        path = tmpfile_write("bad.avsc",
                             "{'type': 'record', 'name': 'R',\n"
                             " 'fields': [{'name': 'a', 'type': 'NoSuchType'}]}\n");
        RUN(&run, NULL, "fingerprint", path);
        ASSERT_FAILED(&run, 1, path, "invalid schema", "NoSuchType");
        run_done(&run);

        RUN(&run, path, "fingerprint", "-");
        ASSERT_FAILED(&run, 1, "<stdin>", "invalid schema", "NoSuchType");
        run_done(&run);

        /* Not JSON at all: avro-c's words for it, still naming the file. */
        path = tmpfile_write("prose.avsc", "this is no schema\n");
        RUN(&run, NULL, "fingerprint", path);
        ASSERT_FAILED(&run, 1, path, "invalid schema", "JSON");
        run_done(&run);
}
END_TEST

START_TEST(test_bad_schema_in_list) {
        const char *path;
        char needle[600];
        Run run = {};

        /* Every bad element is reported with its index, and no line goes to stdout. */
        path = tmpfile_write("badlist.avsc",
                             "['int', {'type': 'Unknown1'}, 'long',\n"
                             " {'type': 'fixed', 'name': 'F', 'size': -2}]\n");
        RUN(&run, NULL, "fingerprint", path);
        snprintf(needle, sizeof(needle), "%s[1]: invalid schema", path);
        ASSERT_FAILED(&run, 1, needle, "Unknown1", "[3]: invalid schema", "negative size");
        ck_assert_msg(!strstr(run.err, "[0]") && !strstr(run.err, "[2]"), "%s", run.err);
        run_done(&run);
}
END_TEST

START_TEST(test_unreadable) {
        char path[512], needle[600];
        Run run = {};

        ck_assert(tmpdir[0] != '\0');
        snprintf(path, sizeof(path), "%s/does-not-exist.avsc", tmpdir);
        RUN(&run, NULL, "fingerprint", path);
        snprintf(needle, sizeof(needle), "%s: %s", path, strerror(ENOENT));
        ASSERT_FAILED(&run, 1, needle);
        run_done(&run);

        RUN(&run, NULL, "fingerprint", tmpdir);
        snprintf(needle, sizeof(needle), "%s: %s", tmpdir, strerror(EISDIR));
        ASSERT_FAILED(&run, 1, needle);
        run_done(&run);
}
END_TEST

START_TEST(test_size_limit) {
        char path[512];
        Run run = {};
        int fd;

        /* Sparse: 16 MiB + 1 zero bytes cost no disk. */
        ck_assert(tmpdir[0] != '\0');
        snprintf(path, sizeof(path), "%s/huge.avsc", tmpdir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, ((off_t) 16 << 20) + 1), 0);
        close(fd);
        RUN(&run, NULL, "fingerprint", path);
        ASSERT_FAILED(&run, 1, path, "16 MiB");
        run_done(&run);

        /* Exactly at the limit the file is read, and refused for what it holds, not its size. */
        ck_assert_int_eq(truncate(path, (off_t) 16 << 20), 0);
        RUN(&run, NULL, "fingerprint", path);
        ASSERT_FAILED(&run, 1, path, "invalid schema");
        ck_assert_msg(!strstr(run.err, "16 MiB"), "%s", run.err);
        run_done(&run);
}
END_TEST

START_TEST(test_usage) {
        Run run = {};

        run_ringctl(&run, NULL, (const char *const[]) { NULL });
        ASSERT_FAILED(&run, 2, "missing verb", "--help");
        run_done(&run);

        RUN(&run, NULL, "frobnicate");
        ASSERT_FAILED(&run, 2, "unknown verb 'frobnicate'");
        run_done(&run);

        RUN(&run, NULL, "--bogus", "fingerprint", metric_path());
        ASSERT_FAILED(&run, 2, "'--bogus'");
        run_done(&run);

        RUN(&run, NULL, "fingerprint");
        ASSERT_FAILED(&run, 2, "ringctl fingerprint: missing FILE", "ringctl fingerprint --help");
        run_done(&run);

        RUN(&run, NULL, "fingerprint", metric_path(), metric_path());
        ASSERT_FAILED(&run, 2, "one FILE");
        run_done(&run);

        RUN(&run, NULL, "fingerprint", "--frob", metric_path());
        ASSERT_FAILED(&run, 2, "ringctl fingerprint: invalid option '--frob'");
        run_done(&run);

        RUN(&run, NULL, "fingerprint", "-cx", metric_path());
        ASSERT_FAILED(&run, 2, "invalid option -- 'x'");
        run_done(&run);

        RUN(&run, NULL, "fingerprint", "--canonical=yes", metric_path());
        ASSERT_FAILED(&run, 2, "'--canonical=yes'");
        run_done(&run);
}
END_TEST

START_TEST(test_help_version) {
        Run run = {};

        RUN(&run, NULL, "--help");
        ck_assert_int_eq(run.status, 0);
        ck_assert(strstr(run.out, "fingerprint") && strstr(run.out, "--version"));
        run_done(&run);

        RUN(&run, NULL, "fingerprint", "--help");
        ck_assert_int_eq(run.status, 0);
        ck_assert(strstr(run.out, "--canonical"));
        run_done(&run);

        RUN(&run, NULL, "--version");
        assert_succeeded(&run, "ringctl " PACKAGE_VERSION "\n");
        run_done(&run);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("ringctl-fingerprint");
        TCase *tc = tcase_create("fingerprint");

        tcase_add_unchecked_fixture(tc, tmpdir_setup, tmpdir_teardown);
        /* Each test starts several processes; under valgrind or sanitizers that takes a while. */
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_single_file);
        tcase_add_test(tc, test_stdin);
        tcase_add_test(tc, test_canonical);
        tcase_add_test(tc, test_list);
        tcase_add_test(tc, test_list_canonical);
        tcase_add_test(tc, test_bad_schema);
        tcase_add_test(tc, test_bad_schema_in_list);
        tcase_add_test(tc, test_unreadable);
        tcase_add_test(tc, test_size_limit);
        tcase_add_test(tc, test_usage);
        tcase_add_test(tc, test_help_version);
        suite_add_tcase(s, tc);
        return s;
}
