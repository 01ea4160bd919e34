/* SPDX-License-Identifier: MIT */
/*
 * Tests of src/impulsed/log.c: the stderr line (format, error text, context), escaping of
 * whatever bytes clients put in names, level filtering and parsing, and, where the test may
 * make a private mount namespace, the journal fields as journald receives them.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "test-util.h"

/* --- capturing fd 2 --- */

static int saved_stderr = -1;
static int capture_fd = -1;

static void capture_begin(void) {
        capture_fd = memfd_create("stderr", MFD_CLOEXEC);
        ck_assert_int_ge(capture_fd, 0);
        fflush(stderr);
        saved_stderr = dup(STDERR_FILENO);
        ck_assert_int_ge(saved_stderr, 0);
        ck_assert_int_ge(dup2(capture_fd, STDERR_FILENO), 0);
}

/* Restores fd 2 and returns what was written to it (malloc'd). */
static char *capture_end(void) {
        off_t size;
        char *buf;

        ck_assert_int_ge(dup2(saved_stderr, STDERR_FILENO), 0);
        close(saved_stderr);
        size = lseek(capture_fd, 0, SEEK_END);
        ck_assert_int_ge(size, 0);
        buf = calloc(1, (size_t) size + 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(pread(capture_fd, buf, (size_t) size, 0), size);
        close(capture_fd);
        capture_fd = -1;
        return buf;
}

static void setup(void) {
        unsetenv("JOURNAL_STREAM");
        log_open();
        log_set_max_level(LOG_INFO);
}

START_TEST(test_line_format) {
        LogContext ctx = { .app = "x", .client_id = 3, .pid = 42, .unit = "foo.service" };
        _cleanup_free_ char *out = NULL;
        int r;

        capture_begin();
        r = log_full(LOG_WARNING, 0, __FILE__, __LINE__, __func__, NULL, &ctx,
                     "Client %s went away", "x");
        out = capture_end();
        ck_assert_int_eq(r, 0);
        ck_assert_str_eq(out, "impulsed: warning: Client x went away "
                              "(app=\"x\" client=3 pid=42 unit=foo.service)\n");
}
END_TEST

START_TEST(test_line_all_context) {
        LogContext ctx = {
                .app = "a", .client_id = 7, .pid = 9, .unit = "u.service", .channel = "ch",
                .function = "fn", .status = "DENIED",
        };
        _cleanup_free_ char *out = NULL;

        capture_begin();
        log_ctx(LOG_NOTICE, LOG_MESSAGE_CLIENT_REGISTERED, &ctx, "Hello");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: notice: Hello (app=\"a\" client=7 pid=9 unit=u.service "
                              "channel=\"ch\" function=\"fn\" status=DENIED)\n");
}
END_TEST

START_TEST(test_line_no_context) {
        _cleanup_free_ char *out = NULL;

        capture_begin();
        log_info("Plain %d", 1);
        log_full(LOG_INFO, 0, NULL, 0, NULL, NULL, &(LogContext) {}, "Empty context");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: info: Plain 1\nimpulsed: info: Empty context\n");
}
END_TEST

START_TEST(test_line_error) {
        _cleanup_free_ char *out = NULL;
        int r1, r2, r3;

        capture_begin();
        r1 = log_error_errno(-ENOENT, "Cannot open %s", "f");
        /* A positive error is the same error: callers pass errno as well as r. */
        r2 = log_warning_errno(EACCES, "Denied");
        errno = EBUSY;
        r3 = log_error_errno(-EPERM, "Because %m");
        out = capture_end();
        ck_assert_int_eq(r1, -ENOENT);
        ck_assert_int_eq(r2, -EACCES);
        ck_assert_int_eq(r3, -EPERM);
        /* errno survives logging. */
        ck_assert_int_eq(errno, EBUSY);
        ck_assert_str_eq(out, "impulsed: error: Cannot open f: No such file or directory\n"
                              "impulsed: warning: Denied: Permission denied\n"
                              "impulsed: error: Because Operation not permitted: "
                              "Operation not permitted\n");
}
END_TEST

START_TEST(test_escape_message) {
        _cleanup_free_ char *out = NULL;

        capture_begin();
        /* The message holds client bytes when it quotes a name: none may end the line, move
         * the cursor or pass as another entry. */
        log_warning("a\nimpulsed: error: forged\r\t\x1b[31mred\x7f \xc2\x9b""2J \xff\xfe "
                    "\xe2\x80\xa8 \xe2\x80\xae back\\slash \xc3\xbc \xe6\x97\xa5");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: warning: a\\nimpulsed: error: forged\\r\\t"
                              "\\x1b[31mred\\x7f \\xc2\\x9b2J \\xff\\xfe \\xe2\\x80\\xa8 "
                              "\\xe2\\x80\\xae back\\\\slash "
                              "\xc3\xbc \xe6\x97\xa5\n");
}
END_TEST

START_TEST(test_escape_invalid_utf8) {
        _cleanup_free_ char *out = NULL;

        capture_begin();
        /* Overlong '/', a surrogate, above U+10FFFF, a sequence cut short by the end. */
        log_info("\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: info: \\xc0\\xaf \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80 "
                              "\\xe2\\x82\n");
}
END_TEST

START_TEST(test_escape_context) {
        LogContext ctx = {
                .app = "evil\" client=1 pid=1\n",
                .unit = "a b\"c",
                .channel = "\x1b]0;title\x07",
                .status = "OK now",
        };
        _cleanup_free_ char *out = NULL;

        capture_begin();
        log_ctx(LOG_WARNING, NULL, &ctx, "m");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: warning: m (app=\"evil\\\" client=1 pid=1\\n\" "
                              "unit=a\\x20b\\\"c channel=\"\\x1b]0;title\\x07\" "
                              "status=OK\\x20now)\n");
}
END_TEST

START_TEST(test_long_lines) {
        _cleanup_free_ char *out = NULL, *app = NULL, *msg = NULL;
        LogContext ctx = { .client_id = 5, .pid = 77 };
        size_t n = 0;

        /* Hostile names escape to four times their size: the line stays one line within
         * PIPE_BUF, and who it is about (client, pid) is still in it. */
        app = malloc(5000);
        msg = malloc(5000);
        ck_assert_ptr_nonnull(app);
        ck_assert_ptr_nonnull(msg);
        memset(app, '\x01', 4999);
        app[4999] = '\0';
        memset(msg, '\x02', 4999);
        msg[4999] = '\0';
        ctx.app = app;

        capture_begin();
        log_ctx(LOG_WARNING, NULL, &ctx, "%s", msg);
        out = capture_end();
        for (const char *p = out; *p; p++)
                n += *p == '\n';
        ck_assert_int_eq(n, 1);
        ck_assert_uint_le(strlen(out), 4096);
        ck_assert_ptr_nonnull(strstr(out, "\\x02..."));
        ck_assert_ptr_nonnull(strstr(out, "\\x01...\" client=5 pid=77)\n"));
}
END_TEST

START_TEST(test_level_filter) {
        _cleanup_free_ char *out = NULL;
        int r;

        ck_assert_int_eq(log_get_max_level(), LOG_INFO);
        capture_begin();
        log_debug("hidden by default");
        log_set_max_level(LOG_WARNING);
        ck_assert_int_eq(log_get_max_level(), LOG_WARNING);
        log_info("hidden");
        log_notice("hidden");
        /* A dropped entry still returns the error, so `return log_...` keeps working. */
        r = log_full(LOG_INFO, ENOENT, NULL, 0, NULL, NULL, NULL, "hidden");
        ck_assert_int_eq(r, -ENOENT);
        log_warning("shown");
        log_error("shown too");
        log_set_max_level(LOG_DEBUG);
        log_debug("debug now");
        /* Out of range levels are clamped. */
        log_set_max_level(99);
        ck_assert_int_eq(log_get_max_level(), LOG_DEBUG);
        log_set_max_level(-5);
        ck_assert_int_eq(log_get_max_level(), LOG_EMERG);
        log_error("hidden at emerg");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: warning: shown\nimpulsed: error: shown too\n"
                              "impulsed: debug: debug now\n");
}
END_TEST

START_TEST(test_level_from_string) {
        ck_assert_int_eq(log_level_from_string("err"), LOG_ERR);
        ck_assert_int_eq(log_level_from_string("warning"), LOG_WARNING);
        ck_assert_int_eq(log_level_from_string("notice"), LOG_NOTICE);
        ck_assert_int_eq(log_level_from_string("info"), LOG_INFO);
        ck_assert_int_eq(log_level_from_string("debug"), LOG_DEBUG);
        ck_assert_int_eq(log_level_from_string("3"), LOG_ERR);
        ck_assert_int_eq(log_level_from_string("7"), LOG_DEBUG);
        ck_assert_int_eq(log_level_from_string("2"), -EINVAL);
        ck_assert_int_eq(log_level_from_string("8"), -EINVAL);
        ck_assert_int_eq(log_level_from_string("77"), -EINVAL);
        ck_assert_int_eq(log_level_from_string(""), -EINVAL);
        ck_assert_int_eq(log_level_from_string("Info"), -EINVAL);
        ck_assert_int_eq(log_level_from_string(NULL), -EINVAL);
}
END_TEST

START_TEST(test_journal_stream_mismatch) {
        _cleanup_free_ char *out = NULL;
        struct stat st;
        char buf[64];

        capture_begin();
        /* JOURNAL_STREAM inherited by a process whose stderr was redirected elsewhere: stderr
         * wins. Also malformed values. */
        ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
        snprintf(buf, sizeof(buf), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino + 1);
        setenv("JOURNAL_STREAM", buf, 1);
        log_open();
        log_info("one");
        setenv("JOURNAL_STREAM", "garbage", 1);
        log_open();
        log_info("two");
        snprintf(buf, sizeof(buf), "%llu:%llux", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", buf, 1);
        log_open();
        log_info("three");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: info: one\nimpulsed: info: two\nimpulsed: info: three\n");
}
END_TEST

/* --- the journal, received by a fake journald in a private mount namespace --- */

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Value of field name in a native-protocol datagram (both the text and the binary form), or
 * NULL. */
static char *journal_field(const char *buf, size_t n, const char *name) {
        size_t len = strlen(name);

        for (size_t i = 0; i < n;) {
                const char *line = buf + i, *nl = memchr(line, '\n', n - i);
                size_t line_len;

                if (!nl)
                        return NULL;
                line_len = (size_t) (nl - line);
                if (memchr(line, '=', line_len)) {
                        if (line_len > len && memcmp(line, name, len) == 0 && line[len] == '=')
                                return strndup(line + len + 1, line_len - len - 1);
                        i += line_len + 1;
                } else {
                        uint64_t size = 0;

                        /* NAME\n, a little-endian 64-bit size, the value, \n. */
                        if (nl + 1 + 8 > buf + n)
                                return NULL;
                        for (int b = 7; b >= 0; b--)
                                size = (size << 8) | (unsigned char) nl[1 + b];
                        if (size > n)
                                return NULL;
                        if (line_len == len && memcmp(line, name, len) == 0)
                                return strndup(nl + 9, (size_t) size);
                        i += line_len + 1 + 8 + (size_t) size + 1;
                }
        }
        return NULL;
}

START_TEST(test_journal_fields) {
        LogContext ctx = {
                .app = "sen\nsor", .client_id = 3, .pid = 42, .unit = "sensor.service",
                .channel = "temp", .function = "get", .status = "DENIED",
        };
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
        const char *ck_fork = getenv("CK_FORK");
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *out = NULL;
        struct pollfd p;
        struct stat st;
        char env[64], buf[65536];
        ssize_t n;
        int r;

        /* A private /run where our socket plays journald: only in a forked test (the mount
         * namespace would outlive it otherwise) and with the privilege to make one. */
        if (ck_fork && strcmp(ck_fork, "no") == 0) {
                printf("# skipping journal test with CK_FORK=no\n");
                return;
        }
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0) {
                printf("# skipping journal test: no private mount namespace (%s)\n",
                       strerror(errno));
                return;
        }
        ck_assert_int_eq(mkdir("/run/systemd", 0755), 0);
        ck_assert_int_eq(mkdir("/run/systemd/journal", 0755), 0);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);

        capture_begin();
        ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
        snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", env, 1);
        log_open();
        r = log_full(LOG_WARNING, -ENOENT, "file.c", 12, "fn", LOG_MESSAGE_CLIENT_REAPED, &ctx,
                     "Client \"%s\" gone\nsecond line", ctx.app);
        log_debug("filtered, never sent");
        out = capture_end();
        ck_assert_int_eq(r, -ENOENT);
        /* Sent to the journal, so nothing on stderr. */
        ck_assert_str_eq(out, "");

        p = (struct pollfd) { .fd = fd, .events = POLLIN };
        ck_assert_int_eq(poll(&p, 1, 5000), 1);
        n = recv(fd, buf, sizeof(buf), 0);
        ck_assert_int_gt(n, 0);

#define EXPECT_FIELD(name, want)                                                        \
        do {                                                                            \
                _cleanup_free_ char *v = journal_field(buf, (size_t) n, name);          \
                ck_assert_msg(v, "no field %s", name);                                  \
                ck_assert_str_eq(v, want);                                              \
        } while (0)
        EXPECT_FIELD("MESSAGE", "Client \"sen\nsor\" gone\nsecond line");
        EXPECT_FIELD("PRIORITY", "4");
        EXPECT_FIELD("SYSLOG_IDENTIFIER", "impulsed");
        EXPECT_FIELD("CODE_FILE", "file.c");
        EXPECT_FIELD("CODE_LINE", "12");
        EXPECT_FIELD("CODE_FUNC", "fn");
        EXPECT_FIELD("ERRNO", "2");
        EXPECT_FIELD("MESSAGE_ID", LOG_MESSAGE_CLIENT_REAPED);
        EXPECT_FIELD("RING_APP", "sen\nsor");
        EXPECT_FIELD("RING_CLIENT_ID", "3");
        EXPECT_FIELD("RING_CLIENT_PID", "42");
        EXPECT_FIELD("RING_UNIT", "sensor.service");
        EXPECT_FIELD("RING_CHANNEL", "temp");
        EXPECT_FIELD("RING_FUNCTION", "get");
        EXPECT_FIELD("RING_STATUS", "DENIED");
#undef EXPECT_FIELD

        /* The debug entry was dropped before sending. */
        ck_assert_int_eq(poll(&p, 1, 0), 0);
}
END_TEST

START_TEST(test_journal_fallback) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
        const char *ck_fork = getenv("CK_FORK");
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *out = NULL;
        struct stat st;
        char env[64];

        /* stderr is the journal stream but the journal refuses the entry: it goes to stderr
         * (which reaches the journal, without fields) rather than nowhere. A stream socket
         * where journald's datagram socket should be makes sd_journal_sendv() fail; a
         * missing socket would not (libsystemd drops entries silently then). */
        if (ck_fork && strcmp(ck_fork, "no") == 0)
                return;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0) {
                printf("# skipping journal fallback test: no private mount namespace\n");
                return;
        }
        ck_assert_int_eq(mkdir("/run/systemd", 0755), 0);
        ck_assert_int_eq(mkdir("/run/systemd/journal", 0755), 0);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 1), 0);

        capture_begin();
        ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
        snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", env, 1);
        log_open();
        log_notice("journal refused");
        out = capture_end();
        ck_assert_str_eq(out, "impulsed: notice: journal refused\n");
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("log");
        TCase *tc;

        tc = tcase_create("stderr");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_line_format);
        tcase_add_test(tc, test_line_all_context);
        tcase_add_test(tc, test_line_no_context);
        tcase_add_test(tc, test_line_error);
        tcase_add_test(tc, test_escape_message);
        tcase_add_test(tc, test_escape_invalid_utf8);
        tcase_add_test(tc, test_escape_context);
        tcase_add_test(tc, test_long_lines);
        suite_add_tcase(s, tc);

        tc = tcase_create("levels");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_level_filter);
        tcase_add_test(tc, test_level_from_string);
        suite_add_tcase(s, tc);

        tc = tcase_create("journal");
        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_journal_stream_mismatch);
        tcase_add_test(tc, test_journal_fields);
        tcase_add_test(tc, test_journal_fallback);
        suite_add_tcase(s, tc);
        return s;
}
