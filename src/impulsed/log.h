/* SPDX-License-Identifier: MIT */
/*
 * The broker's logging. Under journald (stderr is the journal stream, $JOURNAL_STREAM) each
 * entry is sent with sd_journal_send() and structured RING_* fields; otherwise a readable line
 * goes to stderr. The broker logs once, where it decides (STYLE.md, Errors).
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>

/* Journal fields that describe who an entry is about. Zero/NULL members are left out. */
typedef struct LogContext {
        const char *app;                /* RING_APP */
        uint64_t client_id;             /* RING_CLIENT_ID */
        pid_t pid;                      /* RING_CLIENT_PID */
        const char *unit;               /* RING_UNIT */
        const char *channel;            /* RING_CHANNEL */
        const char *function;           /* RING_FUNCTION */
        const char *status;             /* RING_STATUS, e.g. "DENIED" */
} LogContext;

/* Fixed MESSAGE_IDs of events admins search for (also in the journal catalog). */
#define LOG_MESSAGE_CLIENT_REGISTERED "5b1f0c6c2a9e4d7f8e3a1b2c3d4e5f60"
#define LOG_MESSAGE_CLIENT_REAPED "5b1f0c6c2a9e4d7f8e3a1b2c3d4e5f61"
#define LOG_MESSAGE_KEY_RATE_LIMITED "5b1f0c6c2a9e4d7f8e3a1b2c3d4e5f62"
#define LOG_MESSAGE_HOSTILE_INPUT "5b1f0c6c2a9e4d7f8e3a1b2c3d4e5f63"
#define LOG_MESSAGE_OUT_OF_RESOURCES "5b1f0c6c2a9e4d7f8e3a1b2c3d4e5f64"

/* Chooses journald or stderr; call once at start. */
void log_open(void);
/* "err", "warning", "notice", "info", "debug" (or 3..7): -EINVAL otherwise. */
int log_level_from_string(const char *s);
void log_set_max_level(int level);
int log_get_max_level(void);

/* Logs one entry; returns -abs(error) (or 0 when error is 0) so callers can
 * `return log_error_errno(r, ...)`. message_id and ctx may be NULL. */
int log_full(int level, int error, const char *file, int line, const char *func,
             const char *message_id, const LogContext *ctx, const char *format, ...)
        __attribute__((format(printf, 8, 9)));

#define log_ctx(level, message_id, ctx, ...) \
        log_full(level, 0, __FILE__, __LINE__, __func__, message_id, ctx, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, 0, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, 0, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, 0, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
#define log_error_errno(error, ...) \
        log_full(LOG_ERR, error, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
#define log_warning_errno(error, ...) \
        log_full(LOG_WARNING, error, __FILE__, __LINE__, __func__, NULL, NULL, __VA_ARGS__)
