/* SPDX-License-Identifier: MIT */
/*
 * ringctl fingerprint: prints the CRC-64-AVRO fingerprint, or the Parsing Canonical Form, of the
 * schema in a file, or of each schema in a file holding a JSON array of schemas. The schema work
 * is libring/core/fingerprint.c's; this file reads the file, splits arrays and formats lines.
 * It needs no broker.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "fingerprint.h"
#include "macro.h"
#include "verbs.h"

#define VERB "fingerprint"

/* Schemas are small; the limit keeps a mistaken argument (a log, a device) from eating memory. */
#define SCHEMA_FILE_MAX ((size_t) 16 << 20)
#define SCHEMA_FILE_MAX_TEXT "16 MiB"

static bool arg_canonical = false;
static const char *arg_file = NULL;

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}

static void strv_freep(char ***p) {
        if (!*p)
                return;
        for (char **s = *p; *s; s++)
                free(*s);
        free(*p);
}

static void help(void) {
        printf("Usage: %s %s [OPTIONS] FILE\n"
               "\n"
               "Print the CRC-64-AVRO fingerprint of the Avro schema in FILE ('-' reads standard\n"
               "input). If FILE holds a JSON array, each element is a schema of its own and gets\n"
               "a line: its full name (or canonical form if it has none) and its fingerprint.\n"
               "\n"
               "Options:\n"
               "  -c --canonical  Print the Parsing Canonical Form instead of the fingerprint\n"
               "  -h --help       Show this help\n",
               RINGCTL_NAME, VERB);
}

/* > 0: go on; 0: done (help shown); < 0: usage error (already reported). */
static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                { "canonical", no_argument, NULL, 'c' },
                { "help",      no_argument, NULL, 'h' },
                {}
        };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":ch", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_canonical = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        verb_option_error(VERB, c, argv);
                        return -EINVAL;
                }

        if (optind >= argc) {
                verb_usage_error(VERB, "missing FILE");
                return -EINVAL;
        }
        if (argc - optind > 1) {
                verb_usage_error(VERB, "takes one FILE, got %d arguments", argc - optind);
                return -EINVAL;
        }
        arg_file = argv[optind];
        return 1;
}

/* Reads fd to its end; -EFBIG once it holds more than max bytes. */
static int read_all(int fd, size_t max, char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, size = 0;

        for (;;) {
                ssize_t n;

                if (len == size) {
                        /* Room for one byte beyond max tells "too big" from "exactly max". */
                        size_t grow = size ? size * 2 : 64 * 1024;
                        char *p;

                        if (size > max)
                                return -EFBIG;
                        if (grow > max + 1)
                                grow = max + 1;
                        p = realloc(buf, grow);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        size = grow;
                }
                n = read(fd, buf + len, size - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > max)
                return -EFBIG;

        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int read_schema_file(const char *path, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -1;

        if (strcmp(path, "-") == 0)
                return read_all(STDIN_FILENO, SCHEMA_FILE_MAX, ret, ret_len);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        return read_all(fd, SCHEMA_FILE_MAX, ret, ret_len);
}

/* What a list line starts with: a named type's fullname, else the canonical form itself.
 * Parsing Canonical Form opens a named type with its fullname, so it is read from there. */
static int schema_label(const char *canonical, char **ret) {
        _cleanup_(decref_jsonp) json_t *root = json_loads(canonical, JSON_DECODE_ANY, NULL);
        const char *name = json_string_value(json_object_get(root, "name"));
        char *label;

        label = strdup(name ? name : canonical);
        if (!label)
                return -ENOMEM;
        *ret = label;
        return 0;
}

/* Prints the problem with schema number index (SIZE_MAX: the file's only schema). */
static void report_error(const char *label, size_t index, int r, const char *error) {
        if (r != -EINVAL)
                fprintf(stderr, "%s: %s: %s\n", RINGCTL_NAME, label, strerror(-r));
        else if (index == SIZE_MAX)
                fprintf(stderr, "%s: %s: invalid schema: %s\n", RINGCTL_NAME, label,
                        error ? error : "unknown problem");
        else
                fprintf(stderr, "%s: %s[%zu]: invalid schema: %s\n", RINGCTL_NAME, label, index,
                        error ? error : "unknown problem");
}

static int print_one(const char *label, const char *text, size_t len) {
        _cleanup_free_ char *canonical = NULL, *error = NULL;
        uint64_t fp;
        int r;

        r = fingerprint_schema_json(text, len, &fp, &canonical, &error);
        if (r < 0) {
                report_error(label, SIZE_MAX, r, error);
                return EXIT_FAILURE;
        }
        if (arg_canonical)
                printf("%s\n", canonical);
        else
                printf("0x%016llx\n", (unsigned long long) fp);
        return EXIT_SUCCESS;
}

/* Every schema is checked before anything is printed: a list with a bad schema yields its
 * errors and no output, so a script never takes a partial list for the whole. */
static int print_list(const char *label, json_t *array) {
        size_t n = json_array_size(array);
        _cleanup_(strv_freep) char **lines = NULL;
        bool failed = false;
        int r;

        lines = calloc(n + 1, sizeof(char *));
        if (!lines) {
                report_error(label, SIZE_MAX, -ENOMEM, NULL);
                return EXIT_FAILURE;
        }

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *doc = NULL, *canonical = NULL, *error = NULL, *name = NULL;
                uint64_t fp;

                /* Each element goes back to text for avro-c: its parser only takes JSON text. */
                doc = json_dumps(json_array_get(array, i), JSON_ENCODE_ANY | JSON_COMPACT);
                if (!doc) {
                        report_error(label, i, -ENOMEM, NULL);
                        return EXIT_FAILURE;
                }
                r = fingerprint_schema_json(doc, strlen(doc), &fp, &canonical, &error);
                if (r == -EINVAL) {
                        report_error(label, i, r, error);
                        failed = true;
                        continue;
                }
                /* After a failure only errors matter; this also keeps the filled lines a
                 * prefix of the array, which is what strv_freep() frees. */
                if (r >= 0 && failed)
                        continue;
                if (r >= 0)
                        r = schema_label(canonical, &name);
                if (r < 0) {
                        report_error(label, i, r, NULL);
                        return EXIT_FAILURE;
                }

                if (arg_canonical)
                        r = asprintf(&lines[i], "%s %s", name, canonical);
                else
                        r = asprintf(&lines[i], "%s 0x%016llx", name, (unsigned long long) fp);
                if (r < 0) {
                        lines[i] = NULL;
                        report_error(label, i, -ENOMEM, NULL);
                        return EXIT_FAILURE;
                }
        }
        if (failed)
                return EXIT_FAILURE;

        for (size_t i = 0; i < n; i++)
                printf("%s\n", lines[i]);
        return EXIT_SUCCESS;
}

int verb_fingerprint(int argc, char *argv[]) {
        _cleanup_free_ char *text = NULL;
        _cleanup_(decref_jsonp) json_t *root = NULL;
        const char *label;
        size_t len;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? RINGCTL_EXIT_USAGE : EXIT_SUCCESS;

        label = strcmp(arg_file, "-") == 0 ? "<stdin>" : arg_file;
        r = read_schema_file(arg_file, &text, &len);
        if (r == -EFBIG) {
                fprintf(stderr, "%s: %s: larger than the %s limit for a schema file\n",
                        RINGCTL_NAME, label, SCHEMA_FILE_MAX_TEXT);
                return EXIT_FAILURE;
        }
        if (r < 0) {
                fprintf(stderr, "%s: %s: %s\n", RINGCTL_NAME, label, strerror(-r));
                return EXIT_FAILURE;
        }

        /* Text that is no JSON at all goes to avro-c unchanged, so that its message names the
         * problem the same way as for any other schema that does not parse. */
        root = json_loadb(text, len, JSON_DECODE_ANY, NULL);
        if (json_is_array(root))
                return print_list(label, root);
        return print_one(label, text, len);
}
