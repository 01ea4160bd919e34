/* SPDX-License-Identifier: MIT */
/*
 * The broker's logging (log.h): one entry per call, to journald with structured RING_* fields
 * when stderr is our journal stream, else as one escaped line on stderr. It decides nothing
 * about what is worth logging and never exits; a failure to log is silently dropped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "log.h"
#include "macro.h"
#include "utf8.h"

#define LOG_IDENTIFIER "impulsed"

/* The formatted message. Longer messages are cut; no broker message needs more. */
#define LOG_MESSAGE_MAX 2048
/* A stderr line, newline included. At most PIPE_BUF, so that one write() to a pipe is atomic
 * and lines of concurrent writers never interleave. */
#define LOG_LINE_MAX 4096
/* Budgets within a stderr line, after escaping: the message, then each context value. With
 * seven values the context always fits after a full message. */
#define LOG_LINE_MESSAGE_MAX 1792
#define LOG_CONTEXT_VALUE_MAX 256
/* Bound on each client-supplied RING_* value sent to the journal: a hostile application name
 * must not make every entry about that client huge. */
#define LOG_FIELD_VALUE_MAX 1024
/* MESSAGE, PRIORITY, CODE_FILE/LINE/FUNC, ERRNO, MESSAGE_ID, SYSLOG_IDENTIFIER, 7 RING_*. */
#define LOG_FIELDS_MAX 15

static int log_max_level = LOG_INFO;
static bool log_to_journal = false;

/* Only compares the stream's identity: a JOURNAL_STREAM inherited by a process whose stderr
 * was later redirected elsewhere must not send our output to the journal (sd-daemon(3)). */
static bool stderr_is_journal_stream(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        char *end;

        if (!e || *e < '0' || *e > '9')
                return false;
        errno = 0;
        dev = strtoull(e, &end, 10);
        if (errno != 0 || *end != ':' || end[1] < '0' || end[1] > '9')
                return false;
        ino = strtoull(end + 1, &end, 10);
        if (errno != 0 || *end != '\0')
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_open(void) {
        int saved = errno;

        log_to_journal = stderr_is_journal_stream();
        errno = saved;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_ERR] = "err",
                [LOG_WARNING] = "warning",
                [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",
                [LOG_DEBUG] = "debug",
        };

        if (!s)
                return -EINVAL;
        for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
                if (strcmp(s, names[i]) == 0)
                        return i;
        if (s[0] >= '0' + LOG_ERR && s[0] <= '0' + LOG_DEBUG && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

void log_set_max_level(int level) {
        if (level < LOG_EMERG)
                level = LOG_EMERG;
        if (level > LOG_DEBUG)
                level = LOG_DEBUG;
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

static const char *level_name(int level) {
        static const char *const names[] = {
                [LOG_EMERG] = "emergency",
                [LOG_ALERT] = "alert",
                [LOG_CRIT] = "critical",
                [LOG_ERR] = "error",
                [LOG_WARNING] = "warning",
                [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",
                [LOG_DEBUG] = "debug",
        };

        return level >= 0 && (size_t) level < ELEMENTSOF(names) ? names[level] : "log";
}

/* --- stderr --- */

/* Room kept at the end of every line for the truncation mark and the newline. */
#define LINE_RESERVE 5

typedef struct Line {
        char buf[LOG_LINE_MAX];
        size_t n;
        bool truncated;
} Line;

/* Appends n bytes as one unit: all of it or, once the line is full, nothing from here on, so
 * an escape sequence is never cut in half. */
static void line_put(Line *l, const char *s, size_t n) {
        if (l->truncated)
                return;
        if (n > sizeof(l->buf) - LINE_RESERVE - l->n) {
                l->truncated = true;
                return;
        }
        memcpy(l->buf + l->n, s, n);
        l->n += n;
}

static void line_puts(Line *l, const char *s) {
        line_put(l, s, strlen(s));
}

static void line_printf(Line *l, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void line_printf(Line *l, const char *format, ...) {
        char buf[64];
        va_list ap;
        int k;

        va_start(ap, format);
        k = vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        if (k > 0)
                line_put(l, buf, (size_t) k < sizeof(buf) ? (size_t) k : sizeof(buf) - 1);
}

/* Appends text that may come from a client. Whatever it holds, the result stays on one line
 * and cannot move the cursor or fake another entry: controls, invalid UTF-8 and the
 * backslash itself are escaped (so a backslash in the output always starts an escape). With
 * quoted, '"' is escaped so that the closing quote is ours; with bare, spaces too, so the
 * value ends at the next space. At most max bytes are appended (then "..."), so that hostile
 * text, which escaping can make four times longer, still leaves room for the context that
 * says whom the entry is about. */
static void line_put_escaped(Line *l, const char *text, bool quoted, bool bare, size_t max) {
        const unsigned char *s = (const unsigned char *) text;
        size_t n = strlen(text), out = 0;

        while (n > 0) {
                char unit[4 * 4 + 1];
                size_t k, m = 0;
                uint32_t cp;

                k = utf8_sequence((const char *) s, n, &cp);
                if (k == 0) {
                        /* Not UTF-8: the byte's value, so nothing is lost. */
                        m = (size_t) snprintf(unit, sizeof(unit), "\\x%02x", s[0]);
                        k = 1;
                } else if (cp == '\n')
                        m = (size_t) snprintf(unit, sizeof(unit), "\\n");
                else if (cp == '\r')
                        m = (size_t) snprintf(unit, sizeof(unit), "\\r");
                else if (cp == '\t')
                        m = (size_t) snprintf(unit, sizeof(unit), "\\t");
                else if (utf8_is_control(cp))
                        for (size_t i = 0; i < k; i++)
                                m += (size_t) snprintf(unit + m, sizeof(unit) - m, "\\x%02x", s[i]);
                else if (cp == '\\')
                        m = (size_t) snprintf(unit, sizeof(unit), "\\\\");
                else if (cp == '"' && (quoted || bare))
                        m = (size_t) snprintf(unit, sizeof(unit), "\\\"");
                else if (cp == ' ' && bare)
                        m = (size_t) snprintf(unit, sizeof(unit), "\\x20");
                else {
                        memcpy(unit, s, k);
                        m = k;
                }
                if (out + m > max) {
                        line_puts(l, "...");
                        return;
                }
                line_put(l, unit, m);
                out += m;
                s += k;
                n -= k;
        }
}

static void line_put_context(Line *l, const LogContext *ctx) {
        size_t start;

        if (!ctx)
                return;
        start = l->n;
        /* Separates members after the first; the opening parenthesis comes before the first. */
#define SEP() line_puts(l, l->n == start ? " (" : " ")
        if (ctx->app) {
                SEP();
                line_puts(l, "app=\"");
                line_put_escaped(l, ctx->app, true, false, LOG_CONTEXT_VALUE_MAX);
                line_puts(l, "\"");
        }
        if (ctx->client_id != 0) {
                SEP();
                line_printf(l, "client=%llu", (unsigned long long) ctx->client_id);
        }
        if (ctx->pid > 0) {
                SEP();
                line_printf(l, "pid=%ld", (long) ctx->pid);
        }
        if (ctx->unit) {
                SEP();
                line_puts(l, "unit=");
                line_put_escaped(l, ctx->unit, false, true, LOG_CONTEXT_VALUE_MAX);
        }
        if (ctx->channel) {
                SEP();
                line_puts(l, "channel=\"");
                line_put_escaped(l, ctx->channel, true, false, LOG_CONTEXT_VALUE_MAX);
                line_puts(l, "\"");
        }
        if (ctx->function) {
                SEP();
                line_puts(l, "function=\"");
                line_put_escaped(l, ctx->function, true, false, LOG_CONTEXT_VALUE_MAX);
                line_puts(l, "\"");
        }
        if (ctx->status) {
                SEP();
                line_puts(l, "status=");
                line_put_escaped(l, ctx->status, false, true, LOG_CONTEXT_VALUE_MAX);
        }
#undef SEP
        if (l->n != start)
                line_puts(l, ")");
}

static void log_stderr(int level, int error, const LogContext *ctx, const char *message) {
        Line l = {};
        const char *p;
        ssize_t k;

        line_puts(&l, LOG_IDENTIFIER ": ");
        line_puts(&l, level_name(level));
        line_puts(&l, ": ");
        line_put_escaped(&l, message, false, false, LOG_LINE_MESSAGE_MAX);
        if (error != 0) {
                line_puts(&l, ": ");
                line_put_escaped(&l, strerror(error), false, false, 128);
        }
        line_put_context(&l, ctx);
        if (l.truncated) {
                memcpy(l.buf + l.n, "...", 3);
                l.n += 3;
        }
        l.buf[l.n++] = '\n';

        /* One write per line; a short write (a full pipe, a signal) finishes the line. */
        for (p = l.buf; l.n > 0; p += k, l.n -= (size_t) k) {
                k = write(STDERR_FILENO, p, l.n);
                if (k < 0 && errno == EINTR)
                        k = 0;
                else if (k <= 0)
                        return;
        }
}

/* --- journald --- */

typedef struct Fields {
        struct iovec iov[LOG_FIELDS_MAX];
        char *owned[LOG_FIELDS_MAX];
        int n;
} Fields;

static void fields_done(Fields *f) {
        for (int i = 0; i < f->n; i++)
                free(f->owned[i]);
}

/* A field that is missing for want of memory is left out rather than failing the entry. */
static void fields_add(Fields *f, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void fields_add(Fields *f, const char *format, ...) {
        va_list ap;
        char *s;
        int k;

        if (f->n >= LOG_FIELDS_MAX)
                return;
        va_start(ap, format);
        k = vasprintf(&s, format, ap);
        va_end(ap);
        if (k < 0)
                return;
        f->owned[f->n] = s;
        f->iov[f->n++] = (struct iovec) { .iov_base = s, .iov_len = (size_t) k };
}

static int log_journal(int level, int error, const char *file, int line, const char *func,
                       const char *message_id, const LogContext *ctx, const char *message) {
        _cleanup_(fields_done) Fields f = {};

        /* MESSAGE may hold newlines and client bytes: sd_journal_sendv() sends such values in
         * the binary form of the native protocol, so they arrive intact and cannot split. */
        fields_add(&f, "MESSAGE=%s", message);
        fields_add(&f, "PRIORITY=%d", level);
        fields_add(&f, "SYSLOG_IDENTIFIER=" LOG_IDENTIFIER);
        if (file)
                fields_add(&f, "CODE_FILE=%s", file);
        if (line > 0)
                fields_add(&f, "CODE_LINE=%d", line);
        if (func)
                fields_add(&f, "CODE_FUNC=%s", func);
        if (error != 0)
                fields_add(&f, "ERRNO=%d", error);
        if (message_id)
                fields_add(&f, "MESSAGE_ID=%s", message_id);
        if (ctx) {
                if (ctx->app)
                        fields_add(&f, "RING_APP=%.*s", LOG_FIELD_VALUE_MAX, ctx->app);
                if (ctx->client_id != 0)
                        fields_add(&f, "RING_CLIENT_ID=%llu", (unsigned long long) ctx->client_id);
                if (ctx->pid > 0)
                        fields_add(&f, "RING_CLIENT_PID=%ld", (long) ctx->pid);
                if (ctx->unit)
                        fields_add(&f, "RING_UNIT=%.*s", LOG_FIELD_VALUE_MAX, ctx->unit);
                if (ctx->channel)
                        fields_add(&f, "RING_CHANNEL=%.*s", LOG_FIELD_VALUE_MAX, ctx->channel);
                if (ctx->function)
                        fields_add(&f, "RING_FUNCTION=%.*s", LOG_FIELD_VALUE_MAX, ctx->function);
                if (ctx->status)
                        fields_add(&f, "RING_STATUS=%.*s", LOG_FIELD_VALUE_MAX, ctx->status);
        }
        if (f.n == 0 || strncmp(f.iov[0].iov_base, "MESSAGE=", 8) != 0)
                return -ENOMEM;
        return sd_journal_sendv(f.iov, f.n);
}

int log_full(int level, int error, const char *file, int line, const char *func,
             const char *message_id, const LogContext *ctx, const char *format, ...) {
        char message[LOG_MESSAGE_MAX];
        int saved = errno;
        va_list ap;

        error = error < 0 ? -error : error;
        if (level > log_max_level)
                return -error;

        /* %m in format names error, as in systemd's log functions. */
        errno = error;
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (!log_to_journal || log_journal(level, error, file, line, func, message_id, ctx,
                                           message) < 0)
                log_stderr(level, error, ctx, message);

        errno = saved;
        return -error;
}
