/* SPDX-License-Identifier: MIT */
/*
 * Encoding and decoding of the admin protocol's messages (admin-proto.h) and the control
 * socket's path. Pure functions over buffers: no sockets, no logging. Every byte it decodes
 * comes from another process and is checked before use.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin-proto.h"
#include "macro.h"
#include "names.h"
#include "utf8.h"

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}
#define _cleanup_json_ _cleanup_(decref_jsonp)

static const char *const command_names[_ADMIN_COMMAND_MAX] = {
        [ADMIN_COMMAND_STATUS] = "status",
        [ADMIN_COMMAND_CLIENTS] = "clients",
        [ADMIN_COMMAND_CHANNELS] = "channels",
        [ADMIN_COMMAND_FUNCTIONS] = "functions",
};

const char *admin_command_to_string(AdminCommand c) {
        if ((unsigned) c >= _ADMIN_COMMAND_MAX)
                return NULL;
        return command_names[c];
}

int admin_command_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(command_names); i++)
                if (strcmp(s, command_names[i]) == 0)
                        return (int) i;
        return -EOPNOTSUPP;
}

int admin_socket_path(const char *bus, char *buf, size_t size) {
        const char *e = getenv(ADMIN_SOCKET_ENV);
        BusNames names;
        int k, r;

        if (!buf)
                return -EINVAL;
        if (e && *e)
                k = snprintf(buf, size, "%s", e);
        else {
                if (!bus)
                        bus = getenv(NAMES_BUS_ENV);
                /* names.c is the judge of bus names: the name becomes part of a path here, and
                 * only [A-Za-z0-9_-] keeps it from leaving the directory. */
                r = names_bus_init(&names, bus);
                if (r < 0)
                        return r;
                if (bus && *bus)
                        k = snprintf(buf, size, "%s-%s", ADMIN_SOCKET_DEFAULT, bus);
                else
                        k = snprintf(buf, size, "%s", ADMIN_SOCKET_DEFAULT);
        }
        if (k < 0 || (size_t) k >= size || (size_t) k >= ADMIN_SOCKET_PATH_MAX)
                return -ENAMETOOLONG;
        return 0;
}

int admin_request_encode(AdminCommand c, char *buf, size_t size) {
        const char *name = admin_command_to_string(c);
        int k;

        if (!name || !buf)
                return -EINVAL;
        k = snprintf(buf, size, "{\"command\":\"%s\"}", name);
        if (k < 0 || (size_t) k >= size)
                return -ENOBUFS;
        return k;
}

/* Flags for everything we parse: duplicate keys could make the two programs see different
 * messages; NUL bytes inside strings are refused by jansson's default. */
#define DECODE_FLAGS JSON_REJECT_DUPLICATES

int admin_request_decode(const void *buf, size_t len, AdminCommand *ret) {
        _cleanup_json_ json_t *j = NULL;
        const char *command;
        int c;

        if (!buf || !ret)
                return -EINVAL;
        if (len > ADMIN_REQUEST_MAX)
                return -EMSGSIZE;
        j = json_loadb(buf, len, DECODE_FLAGS, NULL);
        if (!j || !json_is_object(j))
                return -EBADMSG;
        command = json_string_value(json_object_get(j, "command"));
        if (!command)
                return -EBADMSG;
        c = admin_command_from_string(command);
        if (c < 0)
                return c;
        *ret = (AdminCommand) c;
        return 0;
}

static int dump(json_t *j, size_t max, char **ret, size_t *ret_len) {
        char *s;
        size_t n;

        /* Compact, one line: the message is for programs; ringctl --json re-indents. */
        s = json_dumps(j, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        if (n > max) {
                free(s);
                return -EMSGSIZE;
        }
        *ret = s;
        *ret_len = n;
        return 0;
}

int admin_response_encode_ok(const json_t *result, size_t max, char **ret, size_t *ret_len) {
        _cleanup_json_ json_t *j = NULL;

        if (!result || !json_is_object(result) || !ret || !ret_len)
                return -EINVAL;
        if (max > ADMIN_RESPONSE_MAX)
                max = ADMIN_RESPONSE_MAX;
        /* jansson's setters take non-const objects; result is only referenced, never changed. */
        j = json_pack("{s:b, s:O}", "ok", 1, "result", (json_t *) result);
        if (!j)
                return -ENOMEM;
        return dump(j, max, ret, ret_len);
}

static const struct {
        int error;
        const char *name;
} error_codes[] = {
        { EACCES, "EACCES" },
        { EBADMSG, "EBADMSG" },
        { EOPNOTSUPP, "EOPNOTSUPP" },
        { EMSGSIZE, "EMSGSIZE" },
        { EBUSY, "EBUSY" },
        { EIO, "EIO" },
};

static const char *error_to_code(int error) {
        for (size_t i = 0; i < ELEMENTSOF(error_codes); i++)
                if (error_codes[i].error == -error)
                        return error_codes[i].name;
        return "EIO";
}

static int error_from_code(const char *code) {
        if (code)
                for (size_t i = 0; i < ELEMENTSOF(error_codes); i++)
                        if (strcmp(error_codes[i].name, code) == 0)
                                return -error_codes[i].error;
        return -EIO;
}

int admin_response_encode_error(int error, const char *message, char **ret, size_t *ret_len) {
        _cleanup_json_ json_t *j = NULL;
        json_t *m;

        if (!message || !ret || !ret_len)
                return -EINVAL;
        m = admin_json_string(message);
        if (!m)
                return -ENOMEM;
        j = json_pack("{s:b, s:o, s:s}", "ok", 0, "error", m, "code", error_to_code(error));
        if (!j)
                return -ENOMEM;
        return dump(j, ADMIN_RESPONSE_MAX, ret, ret_len);
}

int admin_response_decode(const void *buf, size_t len, AdminResponse *ret) {
        _cleanup_json_ json_t *j = NULL;
        json_t *ok, *result;
        const char *message;
        char *copy;

        if (!buf || !ret)
                return -EINVAL;
        if (len > ADMIN_RESPONSE_MAX)
                return -EMSGSIZE;
        j = json_loadb(buf, len, DECODE_FLAGS, NULL);
        if (!j || !json_is_object(j))
                return -EBADMSG;
        ok = json_object_get(j, "ok");
        if (!json_is_boolean(ok))
                return -EBADMSG;

        if (json_is_true(ok)) {
                result = json_object_get(j, "result");
                if (!json_is_object(result))
                        return -EBADMSG;
                *ret = (AdminResponse) {
                        .ok = true,
                        .result = json_incref(result),
                };
                return 0;
        }

        message = json_string_value(json_object_get(j, "error"));
        copy = strdup(message ? message : "unknown error");
        if (!copy)
                return -ENOMEM;
        *ret = (AdminResponse) {
                .ok = false,
                .error = error_from_code(json_string_value(json_object_get(j, "code"))),
                .message = copy,
        };
        return 0;
}

void admin_response_done(AdminResponse *r) {
        if (!r)
                return;
        if (r->result)
                json_decref(r->result);
        free(r->message);
        *r = (AdminResponse) {};
}

json_t *admin_json_string(const char *s) {
        static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
        _cleanup_free_ char *copy = NULL;
        size_t n, out = 0;

        if (!s)
                return json_null();
        n = strlen(s);
        /* The common case, valid text, costs one pass and no copy. */
        if (utf8_is_valid(s, n))
                return json_stringn(s, n);

        /* Each invalid byte becomes three. */
        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        copy = malloc(n * 3 + 1);
        if (!copy)
                return NULL;
        for (size_t i = 0, k; i < n; i += k) {
                uint32_t cp;

                k = utf8_sequence(s + i, n - i, &cp);
                if (k == 0) {
                        memcpy(copy + out, replacement, 3);
                        out += 3;
                        k = 1;
                } else {
                        memcpy(copy + out, s + i, k);
                        out += k;
                }
        }
        return json_stringn(copy, out);
}
