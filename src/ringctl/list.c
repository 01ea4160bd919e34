/* SPDX-License-Identifier: MIT */
/*
 * ringctl clients, channels and functions: the broker's tables as aligned text tables (or the
 * broker's JSON with --json). Every cell is escaped before it is measured or printed: names
 * come from clients and must not drive the terminal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin-client.h"
#include "admin-proto.h"
#include "macro.h"
#include "utf8.h"
#include "verbs.h"

#define TABLE_COLUMNS_MAX 8

static bool arg_json = false;
static const char *arg_socket = NULL;

typedef struct Column {
        const char *title;
        bool right;             /* numbers line up on the right */
} Column;

typedef struct Table {
        const Column *columns;
        size_t n_columns;
        char **cells;           /* row-major, escaped; rows * n_columns */
        size_t n_rows;
} Table;

static void table_done(Table *t) {
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
}

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}

/* Adds a row of n_columns cells, escaped; a NULL value shows as "-". */
static int table_add_row(Table *t, const char *const *values) {
        char **cells = realloc(t->cells, (t->n_rows + 1) * t->n_columns * sizeof(char *));

        if (!cells)
                return -ENOMEM;
        t->cells = cells;
        for (size_t i = 0; i < t->n_columns; i++) {
                cells[t->n_rows * t->n_columns + i] = utf8_escape(values[i] ? values[i] : "-");
                if (!cells[t->n_rows * t->n_columns + i]) {
                        for (size_t j = 0; j < i; j++)
                                free(cells[t->n_rows * t->n_columns + j]);
                        return -ENOMEM;
                }
        }
        t->n_rows++;
        return 0;
}

/* Terminal columns of escaped text: one per code point (escaping left only printable ones;
 * wide characters are rare in names and merely shift a row). */
static size_t text_width(const char *s) {
        size_t w = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        w++;
        return w;
}

static void print_cell(const char *s, size_t width, bool right, bool last) {
        size_t pad = width - text_width(s);

        if (right)
                printf("%*s%s", (int) pad, "", s);
        else if (last)
                fputs(s, stdout);
        else
                printf("%s%*s", s, (int) pad, "");
}

static void table_print(const Table *t) {
        size_t width[TABLE_COLUMNS_MAX];

        for (size_t c = 0; c < t->n_columns; c++) {
                width[c] = text_width(t->columns[c].title);
                for (size_t r = 0; r < t->n_rows; r++) {
                        size_t w = text_width(t->cells[r * t->n_columns + c]);

                        if (w > width[c])
                                width[c] = w;
                }
        }
        for (size_t c = 0; c < t->n_columns; c++) {
                print_cell(t->columns[c].title, width[c], t->columns[c].right,
                           c + 1 == t->n_columns);
                fputs(c + 1 == t->n_columns ? "\n" : "  ", stdout);
        }
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t c = 0; c < t->n_columns; c++) {
                        print_cell(t->cells[r * t->n_columns + c], width[c], t->columns[c].right,
                                   c + 1 == t->n_columns);
                        fputs(c + 1 == t->n_columns ? "\n" : "  ", stdout);
                }
}

/* Member as text: strings as they are, integers in decimal, booleans yes/no, null or
 * missing as NULL (shown as "-"). buf holds the formatted numbers. */
static const char *member(const json_t *o, const char *key, char *buf, size_t size) {
        const json_t *v = json_object_get(o, key);

        if (json_is_string(v))
                return json_string_value(v);
        if (json_is_integer(v)) {
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return buf;
        }
        if (json_is_boolean(v))
                return json_is_true(v) ? "yes" : "no";
        return NULL;
}

/* "app (id)" for an owner. */
static const char *owner(const json_t *o, char *buf, size_t size) {
        const char *app = json_string_value(json_object_get(o, "owner_app"));
        char id[32];

        snprintf(buf, size, "%s (%s)", app ? app : "?", member(o, "owner_id", id, sizeof(id)) ?: "?");
        return buf;
}

static int client_row(Table *t, const json_t *e) {
        char id[32], pid[32], uid[32], hb[32], dropped[32];
        json_int_t heartbeat = json_integer_value(json_object_get(e, "heartbeat_ms"));
        const char *values[] = {
                member(e, "id", id, sizeof(id)),
                member(e, "pid", pid, sizeof(pid)),
                member(e, "uid", uid, sizeof(uid)),
                member(e, "app", NULL, 0),
                member(e, "unit", NULL, 0),
                hb,
                member(e, "replies_dropped", dropped, sizeof(dropped)),
        };

        if (heartbeat > 0)
                snprintf(hb, sizeof(hb), "%" JSON_INTEGER_FORMAT "ms", heartbeat);
        else
                snprintf(hb, sizeof(hb), "off");
        return table_add_row(t, values);
}

static int channel_row(Table *t, const json_t *e) {
        char id[32], own[256], sub[32];
        const char *values[] = {
                member(e, "id", id, sizeof(id)),
                member(e, "name", NULL, 0),
                owner(e, own, sizeof(own)),
                member(e, "schema_fp", NULL, 0),
                member(e, "requires_key", NULL, 0),
                member(e, "subscriber_id", sub, sizeof(sub)),
        };

        return table_add_row(t, values);
}

static int function_row(Table *t, const json_t *e) {
        char id[32], own[256];
        const char *values[] = {
                member(e, "id", id, sizeof(id)),
                member(e, "name", NULL, 0),
                owner(e, own, sizeof(own)),
                member(e, "req_fp", NULL, 0),
                member(e, "resp_fp", NULL, 0),
                member(e, "requires_key", NULL, 0),
        };

        return table_add_row(t, values);
}

static const Column client_columns[] = {
        { "ID", true }, { "PID", true }, { "UID", true }, { "APP", false }, { "UNIT", false },
        { "HEARTBEAT", true }, { "DROPPED", true },
};
static const Column channel_columns[] = {
        { "ID", true }, { "NAME", false }, { "OWNER", false }, { "SCHEMA", false },
        { "KEY", false }, { "SUBSCRIBER", true },
};
static const Column function_columns[] = {
        { "ID", true }, { "NAME", false }, { "OWNER", false }, { "REQUEST", false },
        { "RESPONSE", false }, { "KEY", false },
};

typedef struct ListVerb {
        const char *verb;
        AdminCommand command;
        const char *help;
        const char *singular;
        const Column *columns;
        size_t n_columns;
        int (*row)(Table *t, const json_t *entry);
} ListVerb;

static const ListVerb list_verbs[] = {
        {
                "clients", ADMIN_COMMAND_CLIENTS,
                "List the clients registered with the running broker: id, pid, uid,\n"
                "application name, systemd unit, heartbeat and dropped replies. --json adds\n"
                "the cgroup and the reply segment.",
                "client", client_columns, ELEMENTSOF(client_columns), client_row,
        },
        {
                "channels", ADMIN_COMMAND_CHANNELS,
                "List the channels published on the running broker: id, name, owner, schema\n"
                "fingerprint, whether a key is required, and the subscriber. --json adds the\n"
                "arena segment.",
                "channel", channel_columns, ELEMENTSOF(channel_columns), channel_row,
        },
        {
                "functions", ADMIN_COMMAND_FUNCTIONS,
                "List the functions exposed on the running broker: id, name, owner, request\n"
                "and response schema fingerprints, and whether a key is required. --json adds\n"
                "the arena segment.",
                "function", function_columns, ELEMENTSOF(function_columns), function_row,
        },
};

static int list_run(const ListVerb *v, int argc, char *argv[]) {
        _cleanup_(decref_jsonp) json_t *result = NULL;
        _cleanup_(table_done) Table t = { .columns = v->columns, .n_columns = v->n_columns };
        json_t *entries, *entry;
        json_int_t total;
        size_t i;
        int r;

        r = admin_verb_parse_argv(v->verb, v->help, argc, argv, &arg_json, &arg_socket);
        if (r <= 0)
                return r < 0 ? RINGCTL_EXIT_USAGE : EXIT_SUCCESS;
        r = admin_client_query(v->verb, arg_socket, v->command, &result);
        if (r != 0)
                return r;
        if (arg_json) {
                admin_client_print_json(result);
                return EXIT_SUCCESS;
        }

        entries = json_object_get(result, v->verb);
        total = json_integer_value(json_object_get(result, "total"));
        if (!json_is_array(entries)) {
                fprintf(stderr, "%s %s: malformed answer from impulsed: no \"%s\" list\n",
                        RINGCTL_NAME, v->verb, v->verb);
                return EXIT_FAILURE;
        }
        json_array_foreach(entries, i, entry)
                if (json_is_object(entry) && v->row(&t, entry) < 0) {
                        fprintf(stderr, "%s %s: out of memory\n", RINGCTL_NAME, v->verb);
                        return EXIT_FAILURE;
                }

        if (t.n_rows == 0 && total == 0) {
                printf("No %ss.\n", v->singular);
                return EXIT_SUCCESS;
        }
        table_print(&t);
        printf("\n%zu %s%s listed.\n", t.n_rows, v->singular, t.n_rows == 1 ? "" : "s");
        if (json_is_true(json_object_get(result, "truncated")))
                printf("The list was cut to fit one admin message: impulsed has %"
                       JSON_INTEGER_FORMAT " %ss.\n", total, v->singular);
        return EXIT_SUCCESS;
}

int verb_clients(int argc, char *argv[]) {
        return list_run(&list_verbs[0], argc, argv);
}

int verb_channels(int argc, char *argv[]) {
        return list_run(&list_verbs[1], argc, argv);
}

int verb_functions(int argc, char *argv[]) {
        return list_run(&list_verbs[2], argc, argv);
}
