/* SPDX-License-Identifier: MIT */
/*
 * The verbs of ringctl(1): one file per verb, main.c dispatches. A verb parses its own options
 * from argv (argv[0] is the verb's name), prints its own output and errors, and returns the
 * process exit status; it never calls exit().
 */
#pragma once

#include <stdlib.h>

/* Exit statuses, as ringctl(1) documents them. */
#define RINGCTL_EXIT_USAGE 2 /* bad command line: nothing was done */

/* Prefix of every message ringctl prints on stderr. */
#define RINGCTL_NAME "ringctl"

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char *argv[]);
        const char *summary; /* one line for ringctl --help */
} Verb;

/* Print "ringctl[ VERB]: <message>" and a pointer to --help on stderr; return
 * RINGCTL_EXIT_USAGE. verb is NULL for errors before a verb was chosen. */
int verb_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report what getopt_long() returned as '?' or ':' (with opterr = 0 and an optstring starting
 * with ':'); returns RINGCTL_EXIT_USAGE. */
int verb_option_error(const char *verb, int c, char *argv[]);

/* ringctl fingerprint [--canonical] FILE */
int verb_fingerprint(int argc, char *argv[]);

/* ringctl status|clients|channels|functions [--json] [--socket PATH]: ask the running broker
 * over its admin socket (admin-client.h). Exit status 1 if it cannot be asked or refuses. */
int verb_status(int argc, char *argv[]);
int verb_clients(int argc, char *argv[]);
int verb_channels(int argc, char *argv[]);
int verb_functions(int argc, char *argv[]);
