/* SPDX-License-Identifier: MIT */
/*
 * ringctl status: who serves the bus, since when, and how much is on it, from impulsed's admin
 * socket. This file only formats; asking is admin-client.c's job.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "admin-client.h"
#include "admin-proto.h"
#include "macro.h"
#include "utf8.h"
#include "verbs.h"

#define VERB "status"

static bool arg_json = false;
static const char *arg_socket = NULL;

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}

/* The two largest units, as in "3h 12min": enough to tell a fresh broker from an old one. */
static void format_timespan(char *buf, size_t size, uint64_t usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "d",   UINT64_C(86400000000) },
                { "h",   UINT64_C(3600000000)  },
                { "min", UINT64_C(60000000)    },
                { "s",   UINT64_C(1000000)     },
        };
        size_t n = 0;
        int shown = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(units) && shown < 2; i++) {
                uint64_t v = usec / units[i].usec;

                if (v == 0 && shown == 0)
                        continue;
                usec -= v * units[i].usec;
                if (v > 0)
                        n += (size_t) snprintf(buf + n, size - n, "%s%" PRIu64 "%s",
                                               n > 0 ? " " : "", v, units[i].suffix);
                shown++;
                if (n >= size)
                        break;
        }
        if (buf[0] == '\0')
                snprintf(buf, size, "less than 1s");
}

/* A string member, escaped for the terminal (it may come from a broker of another version),
 * or fallback if absent. */
static void print_field(const char *label, const json_t *value, const char *fallback) {
        _cleanup_free_ char *escaped = NULL;
        const char *s = json_string_value(value);

        if (s)
                escaped = utf8_escape(s);
        printf("%-16s %s\n", label, escaped ? escaped : fallback);
}

static void print_status(const json_t *r) {
        json_t *bus = json_object_get(r, "bus");
        uint64_t started = (uint64_t) json_integer_value(json_object_get(r, "started_usec"));
        uint64_t uptime = (uint64_t) json_integer_value(json_object_get(r, "uptime_usec"));
        char when[64] = "unknown", span[64];
        time_t t = (time_t) (started / 1000000);
        struct tm tm;

        print_field("Bus:", bus, json_is_null(bus) ? "(default)" : "?");
        print_field("Segments:", json_object_get(r, "segment_prefix"), "?");
        print_field("Control socket:", json_object_get(r, "control_socket"), "(unnamed)");
        printf("%-16s %" JSON_INTEGER_FORMAT "\n", "Broker PID:",
               json_integer_value(json_object_get(r, "pid")));
        print_field("Epoch:", json_object_get(r, "epoch"), "?");
        if (started > 0 && localtime_r(&t, &tm))
                strftime(when, sizeof(when), "%a %Y-%m-%d %H:%M:%S %Z", &tm);
        format_timespan(span, sizeof(span), uptime);
        printf("%-16s %s (up %s)\n", "Started:", when, span);
        printf("%-16s %" JSON_INTEGER_FORMAT "\n", "Clients:",
               json_integer_value(json_object_get(r, "clients")));
        printf("%-16s %" JSON_INTEGER_FORMAT "\n", "Channels:",
               json_integer_value(json_object_get(r, "channels")));
        printf("%-16s %" JSON_INTEGER_FORMAT "\n", "Functions:",
               json_integer_value(json_object_get(r, "functions")));
        print_field("Version:", json_object_get(r, "version"), "?");
}

int verb_status(int argc, char *argv[]) {
        _cleanup_(decref_jsonp) json_t *result = NULL;
        int r;

        r = admin_verb_parse_argv(VERB, "Show the state of the running broker: its bus, pid,\n"
                                  "start time and how many clients, channels and functions it\n"
                                  "serves.", argc, argv, &arg_json, &arg_socket);
        if (r <= 0)
                return r < 0 ? RINGCTL_EXIT_USAGE : EXIT_SUCCESS;
        r = admin_client_query(VERB, arg_socket, ADMIN_COMMAND_STATUS, &result);
        if (r != 0)
                return r;
        if (arg_json)
                admin_client_print_json(result);
        else
                print_status(result);
        return EXIT_SUCCESS;
}
