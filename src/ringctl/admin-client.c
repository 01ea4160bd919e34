/* SPDX-License-Identifier: MIT */
/*
 * The admin socket client of ringctl (admin-client.h). It blocks, with a timeout on every
 * step, since ringctl has nothing else to do; it never retries and never guesses another
 * socket than the one it was given or the documented default.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "admin-client.h"
#include "admin-proto.h"
#include "macro.h"
#include "verbs.h"

static int set_timeouts(int fd, uint64_t usec) {
        struct timeval tv = {
                .tv_sec = (time_t) (usec / 1000000),
                .tv_usec = (suseconds_t) (usec % 1000000),
        };

        /* AF_UNIX connect() waits on the send timeout when the listener's backlog is full. */
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                return negative_errno();
        return 0;
}

/* A timed-out socket call reports EAGAIN; ours is a timeout. */
static int call_errno(void) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : negative_errno();
}

int admin_client_call(const char *path, AdminCommand command, uint64_t timeout_usec,
                      AdminResponse *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        char request[ADMIN_REQUEST_MAX];
        ssize_t k;
        int n, r;

        if (!path || !ret)
                return -EINVAL;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        n = admin_request_encode(command, request, sizeof(request));
        if (n < 0)
                return n;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        r = set_timeouts(fd, timeout_usec);
        if (r < 0)
                return r;
        if (connect(fd, (const struct sockaddr *) &sa, sizeof(sa)) < 0)
                return call_errno();
        do
                k = send(fd, request, (size_t) n, MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        /* A broker that refuses us (permission, too many connections) answers and closes at
         * once, maybe before our request is sent: its answer is still ours to read. */
        if (k < 0 && errno != EPIPE && errno != ECONNRESET)
                return call_errno();

        /* One byte more than the largest answer: MSG_TRUNC tells if a message was longer. */
        buf = malloc(ADMIN_RESPONSE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        do
                k = recv(fd, buf, ADMIN_RESPONSE_MAX + 1, MSG_TRUNC);
        while (k < 0 && errno == EINTR);
        /* A peer that closed with our request unread makes the kernel report ECONNRESET
         * once, ahead of the messages it had already queued for us: read on. */
        if (k < 0 && errno == ECONNRESET)
                k = recv(fd, buf, ADMIN_RESPONSE_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);
        if (k < 0)
                return errno == EAGAIN ? -ECONNRESET : call_errno();
        if (k == 0)
                return -ECONNRESET;
        if ((size_t) k > ADMIN_RESPONSE_MAX)
                return -EMSGSIZE;
        return admin_response_decode(buf, (size_t) k, ret);
}

int admin_verb_parse_argv(const char *verb, const char *help_text, int argc, char *argv[],
                          bool *ret_json, const char **ret_socket) {
        enum {
                ARG_JSON = 0x100,
                ARG_SOCKET,
        };
        static const struct option options[] = {
                { "help",   no_argument,       NULL, 'h'        },
                { "json",   no_argument,       NULL, ARG_JSON   },
                { "socket", required_argument, NULL, ARG_SOCKET },
                {}
        };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        printf("Usage: %s %s [OPTIONS]\n"
                               "\n"
                               "%s\n"
                               "\n"
                               "Options:\n"
                               "     --json         Print the broker's answer as JSON\n"
                               "     --socket PATH  Control socket of the broker (default: $%s,\n"
                               "                    else %s, or %s-BUS with $RING_BUS)\n"
                               "  -h --help         Show this help\n",
                               RINGCTL_NAME, verb, help_text, ADMIN_SOCKET_ENV,
                               ADMIN_SOCKET_DEFAULT, ADMIN_SOCKET_DEFAULT);
                        return 0;
                case ARG_JSON:
                        *ret_json = true;
                        break;
                case ARG_SOCKET:
                        if (!*optarg) {
                                verb_usage_error(verb, "--socket needs a path");
                                return -EINVAL;
                        }
                        *ret_socket = optarg;
                        break;
                default:
                        verb_option_error(verb, c, argv);
                        return -EINVAL;
                }
        if (optind < argc) {
                verb_usage_error(verb, "unexpected argument '%s'", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static void report(const char *verb, const char *path, int r, const AdminResponse *resp) {
        const char *p = RINGCTL_NAME;

        switch (r) {
        case -ENOENT:
        case -ENOTDIR:
                fprintf(stderr, "%s %s: impulsed is not running (no control socket at %s)\n", p,
                        verb, path);
                break;
        case -ECONNREFUSED:
                fprintf(stderr, "%s %s: impulsed is not running (nothing listens on the control "
                        "socket %s)\n", p, verb, path);
                break;
        case -EACCES:
        case -EPERM:
                fprintf(stderr, "%s %s: permission denied: cannot connect to %s (run as root, or "
                        "as a member of the group that owns it)\n", p, verb, path);
                break;
        case -EPROTOTYPE:
        case -ENOTSOCK:
                fprintf(stderr, "%s %s: %s is not the control socket of impulsed\n", p, verb, path);
                break;
        case -ETIMEDOUT:
                fprintf(stderr, "%s %s: impulsed did not answer on %s within %llu s\n", p, verb,
                        path, (unsigned long long) (ADMIN_CLIENT_TIMEOUT_USEC / 1000000));
                break;
        case -ECONNRESET:
                fprintf(stderr, "%s %s: impulsed closed the connection on %s without an answer\n",
                        p, verb, path);
                break;
        case -EBADMSG:
        case -EMSGSIZE:
                fprintf(stderr, "%s %s: malformed answer from %s (is it impulsed, of the same "
                        "version?)\n", p, verb, path);
                break;
        case 0:
                if (resp->error == -EACCES)
                        fprintf(stderr, "%s %s: permission denied by impulsed: run as root, as "
                                "impulsed's user or as a member of its --admin-group\n", p, verb);
                else
                        fprintf(stderr, "%s %s: impulsed refused: %s\n", p, verb, resp->message);
                break;
        default:
                fprintf(stderr, "%s %s: cannot query impulsed on %s: %s\n", p, verb, path,
                        strerror(-r));
        }
}

int admin_client_query(const char *verb, const char *socket_or_null, AdminCommand command,
                       json_t **ret_result) {
        char path[ADMIN_SOCKET_PATH_MAX];
        AdminResponse resp = {};
        int r;

        if (socket_or_null) {
                if (strlen(socket_or_null) >= sizeof(path)) {
                        fprintf(stderr, "%s %s: control socket path too long: %s\n", RINGCTL_NAME,
                                verb, socket_or_null);
                        return EXIT_FAILURE;
                }
                strcpy(path, socket_or_null);
        } else {
                r = admin_socket_path(NULL, path, sizeof(path));
                if (r < 0) {
                        fprintf(stderr, "%s %s: cannot find the control socket: %s\n",
                                RINGCTL_NAME, verb, r == -EINVAL ?
                                "invalid $RING_BUS (use 1-32 of [A-Za-z0-9_-])" : strerror(-r));
                        return EXIT_FAILURE;
                }
        }

        r = admin_client_call(path, command, ADMIN_CLIENT_TIMEOUT_USEC, &resp);
        if (r < 0 || !resp.ok) {
                report(verb, path, r, &resp);
                admin_response_done(&resp);
                return EXIT_FAILURE;
        }
        *ret_result = TAKE_PTR(resp.result);
        admin_response_done(&resp);
        return 0;
}

void admin_client_print_json(const json_t *result) {
        /* jansson escapes control characters in strings, so this is safe on a terminal too. */
        json_dumpf(result, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
}
