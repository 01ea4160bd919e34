/* SPDX-License-Identifier: MIT */
/*
 * ringctl's side of the admin socket (admin-proto.h): connecting to impulsed, one request and
 * its answer, the options every broker-querying verb shares, and the errors it reports in
 * ringctl's words. The verbs only format results.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "admin-proto.h"

/* How long each step (connect, send, answer) may take. Generous: a socket-activated broker
 * starts on our first connection and must come up before it answers. */
#define ADMIN_CLIENT_TIMEOUT_USEC (10 * UINT64_C(1000000))

/* One request on a new connection to path. Negative errno for transport failures: -ENOENT
 * (no socket), -ECONNREFUSED (nobody listens), -EACCES/-EPERM (file permissions),
 * -EPROTOTYPE (not a SEQPACKET socket), -ETIMEDOUT, -ECONNRESET (closed without an answer),
 * -EMSGSIZE, -EBADMSG (malformed answer). 0 with *ret filled otherwise, also when the broker
 * refused (ret->ok false). */
int admin_client_call(const char *path, AdminCommand command, uint64_t timeout_usec,
                      AdminResponse *ret);

/* Parses "[--json] [--socket PATH] [-h]" for verb; help_text is printed by --help after the
 * usage line. > 0: go on; 0: help shown; < 0: usage error, already reported. */
int admin_verb_parse_argv(const char *verb, const char *help_text, int argc, char *argv[],
                          bool *ret_json, const char **ret_socket);

/* Resolves the socket (socket_or_null, else $RING_ADMIN_SOCKET, else the $RING_BUS default),
 * asks command and returns 0 with the result object (owned by the caller). On any failure it
 * prints one line "ringctl VERB: ..." on stderr and returns EXIT_FAILURE. */
int admin_client_query(const char *verb, const char *socket_or_null, AdminCommand command,
                       json_t **ret_result);

/* Prints result as indented JSON on stdout, for --json. */
void admin_client_print_json(const json_t *result);
