/* SPDX-License-Identifier: MIT */
/*
 * The admin protocol between impulsed and ringctl: where the control socket lives, and the
 * JSON messages on it. Both programs link this; it does no I/O.
 *
 * The socket is AF_UNIX SOCK_SEQPACKET, so message boundaries are the kernel's. A client sends
 * one request message, a JSON object
 *         {"command": "status" | "clients" | "channels" | "functions"}
 * (other members are ignored, for later versions), and receives one response message:
 *         {"ok": true, "result": {...}}
 *         {"ok": false, "error": "permission denied", "code": "EACCES"}
 * "code" is the errno name that fits the failure (EACCES, EBADMSG, EOPNOTSUPP, EMSGSIZE,
 * EBUSY, EIO); "error" is for people. A connection may carry several requests in turn; a
 * client that does not read its answers is dropped once they no longer fit its socket.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* The default bus's control socket; a bus selected with RING_BUS=<bus> uses
 * ADMIN_SOCKET_DEFAULT "-<bus>". $RING_ADMIN_SOCKET, when set and not empty, overrides both,
 * for the broker and for ringctl alike (tests, private buses). */
#define ADMIN_SOCKET_DIR "/run/impulsed"
#define ADMIN_SOCKET_DEFAULT ADMIN_SOCKET_DIR "/control"
#define ADMIN_SOCKET_ENV "RING_ADMIN_SOCKET"
/* sizeof(struct sockaddr_un.sun_path): the longest path, NUL included. */
#define ADMIN_SOCKET_PATH_MAX 108

/* Largest request message. Requests are tiny; anything bigger is not ours. */
#define ADMIN_REQUEST_MAX 1024
/* Largest response message. A SEQPACKET message must fit the sender's socket buffer, which
 * unprivileged processes can raise only to net.core.wmem_max (212992 by default; the kernel
 * doubles the value set): 192 KiB always fits. Longer lists are cut and say so. */
#define ADMIN_RESPONSE_MAX (192 * 1024)

typedef enum AdminCommand {
        ADMIN_COMMAND_STATUS,
        ADMIN_COMMAND_CLIENTS,
        ADMIN_COMMAND_CHANNELS,
        ADMIN_COMMAND_FUNCTIONS,
        _ADMIN_COMMAND_MAX,
} AdminCommand;

/* "status" ... "functions"; NULL for a value out of range. */
const char *admin_command_to_string(AdminCommand c);
/* The command, or -EOPNOTSUPP for a name this version does not know. */
int admin_command_from_string(const char *s);

/* Writes the control socket path for bus (NULL: $RING_BUS; NULL or "" there: the default
 * bus), or $RING_ADMIN_SOCKET if that is set. -EINVAL for an invalid bus name (names.h),
 * -ENAMETOOLONG if the path does not fit in size or in a sockaddr_un. */
int admin_socket_path(const char *bus, char *buf, size_t size);

/* Writes the request for c, NUL-terminated, into buf; returns its length (without the NUL).
 * -EINVAL for an unknown command, -ENOBUFS if buf is too small. */
int admin_request_encode(AdminCommand c, char *buf, size_t size);
/* Parses one request message (len bytes, not NUL-terminated). -EMSGSIZE if longer than
 * ADMIN_REQUEST_MAX, -EBADMSG if it is not a JSON object with a string "command",
 * -EOPNOTSUPP for a command this version does not know. */
int admin_request_decode(const void *buf, size_t len, AdminCommand *ret);

/* Serializes {"ok":true,"result":result} into a malloc'd, NUL-terminated buffer; *ret_len
 * is the message length, without the NUL. -EMSGSIZE if it would exceed max (which is capped
 * at ADMIN_RESPONSE_MAX). The result is not consumed. */
int admin_response_encode_ok(const json_t *result, size_t max, char **ret, size_t *ret_len);
/* Serializes {"ok":false,"error":message,"code":<name of error>}. error is a negative errno. */
int admin_response_encode_error(int error, const char *message, char **ret, size_t *ret_len);

typedef struct AdminResponse {
        bool ok;
        json_t *result;         /* ok: the "result" object (owned) */
        int error;              /* !ok: negative errno from "code", -EIO if absent or unknown */
        char *message;          /* !ok: "error" (owned, never NULL) */
} AdminResponse;

/* Parses one response message. -EMSGSIZE above ADMIN_RESPONSE_MAX, -EBADMSG if malformed
 * (not an object, no boolean "ok", ok without an object "result"). A well-formed failure
 * response is a success of this call, with ret->ok false. */
int admin_response_decode(const void *buf, size_t len, AdminResponse *ret);
void admin_response_done(AdminResponse *r);

/* A JSON string for text that may come from a client (application or channel names): JSON
 * must be UTF-8, so each byte that is not part of well-formed UTF-8 becomes U+FFFD. NULL
 * gives JSON null. Returns NULL only when out of memory. */
json_t *admin_json_string(const char *s);
