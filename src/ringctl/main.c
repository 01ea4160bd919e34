/* SPDX-License-Identifier: MIT */
/*
 * ringctl's entry point: global options, the verb table and the dispatch to one verb, plus the
 * usage-error helpers verbs share. It knows no verb's work and never talks to a broker itself.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "verbs.h"

static const Verb verbs[] = {
        { "fingerprint", verb_fingerprint, "Print the fingerprint or canonical form of schemas" },
        { "status",      verb_status,      "Show the running broker's bus, pid, uptime and counts" },
        { "clients",     verb_clients,     "List the clients registered with the broker" },
        { "channels",    verb_channels,    "List the channels published on the broker" },
        { "functions",   verb_functions,   "List the functions exposed on the broker" },
};

static void help(void) {
        printf("Usage: %s [OPTIONS] VERB [ARGS...]\n"
               "\n"
               "Inspect and administer a Ring bus.\n"
               "\n"
               "Verbs:\n",
               RINGCTL_NAME);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-14s %s\n", verbs[i].name, verbs[i].summary);
        printf("\n"
               "Options:\n"
               "  -h --help      Show this help\n"
               "     --version   Show the version\n"
               "\n"
               "'%s VERB --help' shows a verb's options. See ringctl(1).\n",
               RINGCTL_NAME);
}

int verb_usage_error(const char *verb, const char *fmt, ...) {
        const char *sep = verb ? " " : "";
        va_list ap;

        if (!verb)
                verb = "";
        fprintf(stderr, "%s%s%s: ", RINGCTL_NAME, sep, verb);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry '%s%s%s --help'.\n", RINGCTL_NAME, sep, verb);
        return RINGCTL_EXIT_USAGE;
}

int verb_option_error(const char *verb, int c, char *argv[]) {
        /* getopt_long() was told to be quiet (opterr = 0, ':' first in optstring) so that the
         * message names ringctl and the verb rather than whatever argv[0] holds. */
        const char *arg = argv[optind - 1];

        if (c == ':')
                return verb_usage_error(verb, "option '%s' needs an argument", arg);
        if (optopt != 0 && strncmp(arg, "--", 2) != 0)
                return verb_usage_error(verb, "invalid option -- '%c'", optopt);
        return verb_usage_error(verb, "invalid option '%s'", arg);
}

/* > 0: go on to the verb; 0: done, exit successfully; < 0: usage error (already reported). */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
        };
        static const struct option options[] = {
                { "help",    no_argument, NULL, 'h'         },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        int c;

        /* '+' stops at the verb, so everything after it stays the verb's to parse. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", RINGCTL_NAME, PACKAGE_VERSION);
                        return 0;
                default:
                        verb_option_error(NULL, c, argv);
                        return -EINVAL;
                }
        return 1;
}

static const Verb *verb_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verbs[i].name, name) == 0)
                        return &verbs[i];
        return NULL;
}

int main(int argc, char *argv[]) {
        const Verb *verb;
        int r;

        r = parse_argv(argc, argv);
        if (r < 0)
                return RINGCTL_EXIT_USAGE;
        if (r > 0) {
                if (optind >= argc)
                        return verb_usage_error(NULL, "missing verb");
                verb = verb_find(argv[optind]);
                if (!verb)
                        return verb_usage_error(NULL, "unknown verb '%s'", argv[optind]);

                /* The verb sees itself as argv[0]; optind = 0 makes glibc's getopt start over. */
                argc -= optind;
                argv += optind;
                optind = 0;
                r = verb->run(argc, argv);
        }

        /* Output that did not reach its destination (a full disk, a closed pipe) is a failure,
         * not a success with a truncated answer. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "%s: cannot write output: %s\n", RINGCTL_NAME, strerror(errno));
                return EXIT_FAILURE;
        }
        return r;
}
