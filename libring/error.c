/* SPDX-License-Identifier: MIT */
/*
 * Library identity and errors: ring_version(), ring_strerror(), the per-thread message of the
 * last failed bus call, and the mapping of v1 status codes to our errno values (STYLE.md,
 * Errors).
 */
#include <errno.h>
#include <string.h>

#include "conn-internal.h"
#include "fingerprint.h"
#include "macro.h"
#include "ring.h"

#define MESSAGE_MAX 1024

static _Thread_local char last_message[MESSAGE_MAX];

void error_set_message(const char *msg, size_t len) {
        len = MIN(len, sizeof(last_message) - 1);
        memcpy(last_message, msg, len);
        last_message[len] = 0;
}

void error_clear_message(void) {
        last_message[0] = 0;
}

int error_from_status(int32_t status, Text message) {
        error_set_message(message.ptr, message.len);
        switch (status) {
        case CONTROL_STATUS_OK:
                return 0;
        case CONTROL_STATUS_NOT_FOUND:
                return -ENOENT;
        case CONTROL_STATUS_DENIED:
                return -EACCES;
        case CONTROL_STATUS_SCHEMA_MISMATCH:
                return -EPROTO;
        case CONTROL_STATUS_EXISTS:
                return -EEXIST;
        default:
                return -EREMOTEIO;
        }
}

RING_EXPORT const char *ring_version(void) {
        return PACKAGE_VERSION;
}

RING_EXPORT const char *ring_last_error_message(void) {
        return last_message;
}

RING_EXPORT const char *ring_strerror(int error) {
        switch (error < 0 ? -error : error) {
        case 0:
                return "Success";
        case EINVAL:
                return "Invalid argument";
        case ENOTCONN:
                return "The Ring broker is not running or went away";
        case ENOENT:
                return "No such channel or function on the bus";
        case ECONNRESET:
                return "The peer (publisher or service) went away, or the broker restarted";
        case EACCES:
                return "Access refused (access key, or the bus's permissions)";
        case ETIMEDOUT:
                return "Timed out";
        case EPROTO:
                return "Schema fingerprint mismatch";
        case EAGAIN:
                return "Would block";
        case EEXIST:
                return "Name already taken on the bus";
        case EMSGSIZE:
                return "Message too large";
        case EREMOTEIO:
                return "The broker or the remote handler failed";
        case EBADMSG:
                return "Malformed message";
        case ENOMEM:
                return "Out of memory";
        default:
                return strerror(error < 0 ? -error : error);
        }
}

RING_EXPORT int ring_schema_fingerprint(const char *schema_json, uint64_t *ret_fingerprint) {
        _cleanup_free_ char *error = NULL;
        uint64_t fp;
        int r;

        if (!schema_json || !ret_fingerprint)
                return -EINVAL;
        error_clear_message();
        r = fingerprint_schema_json(schema_json, strlen(schema_json), &fp, NULL, &error);
        if (r < 0) {
                if (error)
                        error_set_message(error, strlen(error));
                return r;
        }
        *ret_fingerprint = fp;
        return 0;
}
