/* SPDX-License-Identifier: MIT */
/*
 * Tests libring/core/fingerprint.c against every canonical-form and fingerprint vector of the
 * Avro specification (tests/data/avro-schema-tests.txt, read at run time), a bitwise CRC written
 * from the specification's definition, and cases the vectors miss: namespaces inherited by
 * nested named types, recursion, hand-built schemas and the errors.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "fingerprint.h"
#include "macro.h"
#include "test-util.h"

#define VECTORS_FILE "tests/data/avro-schema-tests.txt"
/* The file holds vectors 000 to 033; a parser that finds fewer must fail, not pass quietly. */
#define VECTORS_EXPECTED 34
#define VECTORS_MAX 64

#define EMPTY_FP UINT64_C(0xc15d213aa4d7a795)

typedef struct Vector {
        unsigned line; /* of its <<INPUT, for messages */
        char *input;
        char *canonical;
        bool has_fp;
        int64_t fp;
} Vector;

static Vector vectors[VECTORS_MAX];
static size_t n_vectors;
static char load_error[4096 + 512];

static void vectors_free(void) {
        for (size_t i = 0; i < n_vectors; i++) {
                free(vectors[i].input);
                free(vectors[i].canonical);
        }
        memset(vectors, 0, sizeof(vectors));
        n_vectors = 0;
}

static bool load_fail(unsigned line, const char *what) {
        snprintf(load_error, sizeof(load_error), "%s:%u: %s", VECTORS_FILE, line, what);
        return false;
}

static char *str_append(char *s, const char *tail) {
        size_t len = s ? strlen(s) : 0;
        char *p = realloc(s, len + strlen(tail) + 1);

        /* Runs in the unchecked fixture, outside any test, where ck_assert cannot report. */
        if (!p)
                abort();
        strcpy(p + len, tail);
        return p;
}

/* The format of Avro's file: "<<INPUT text" or "<<INPUT" then lines up to one reading "INPUT";
 * "<<canonical text"; "<<fingerprint <signed decimal>". Everything else ("//" comments, the
 * licence, blank lines) is ignored. */
static bool vectors_parse(FILE *f) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        Vector *cur = NULL;
        bool in_input = false;
        unsigned line = 0;
        ssize_t len;

        while ((len = getline(&buf, &size, f)) >= 0) {
                line++;
                while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                        buf[--len] = '\0';

                if (in_input) {
                        if (strcmp(buf, "INPUT") == 0)
                                in_input = false;
                        else {
                                cur->input = str_append(cur->input, buf);
                                cur->input = str_append(cur->input, "\n");
                        }
                } else if (strncmp(buf, "<<INPUT", 7) == 0) {
                        if (n_vectors == VECTORS_MAX)
                                return load_fail(line, "too many vectors");
                        cur = &vectors[n_vectors++];
                        cur->line = line;
                        if (buf[7] == '\0')
                                in_input = true;
                        else if (buf[7] == ' ')
                                cur->input = str_append(NULL, buf + 8);
                        else
                                return load_fail(line, "bad <<INPUT line");
                } else if (strncmp(buf, "<<canonical ", 12) == 0) {
                        if (!cur || cur->canonical)
                                return load_fail(line, "<<canonical without its own <<INPUT");
                        cur->canonical = str_append(NULL, buf + 12);
                } else if (strncmp(buf, "<<fingerprint ", 14) == 0) {
                        char *end;

                        if (!cur || cur->has_fp)
                                return load_fail(line, "<<fingerprint without its own <<INPUT");
                        errno = 0;
                        cur->fp = strtoll(buf + 14, &end, 10);
                        if (errno != 0 || end == buf + 14 || *end != '\0')
                                return load_fail(line, "fingerprint is no signed 64-bit number");
                        cur->has_fp = true;
                }
        }
        if (in_input)
                return load_fail(line, "file ends inside a multi-line <<INPUT");
        for (size_t i = 0; i < n_vectors; i++)
                if (!vectors[i].canonical)
                        return load_fail(vectors[i].line, "vector without <<canonical");
        return true;
}

/* Unchecked fixture: runs once in the parent, so every forked test sees the vectors. */
static void vectors_load(void) {
        char path[4096];
        FILE *f;

        vectors_free();
        load_error[0] = '\0';
        test_srcdir_path(VECTORS_FILE, path, sizeof(path));
        f = fopen(path, "re");
        if (!f) {
                snprintf(load_error, sizeof(load_error), "%s: %s", path, strerror(errno));
                return;
        }
        if (!vectors_parse(f))
                vectors_free();
        fclose(f);
}

START_TEST(test_vectors_count) {
        ck_assert_msg(load_error[0] == '\0', "%s", load_error);
        ck_assert_uint_eq(n_vectors, VECTORS_EXPECTED);
}
END_TEST

START_TEST(test_vector) {
        _cleanup_free_ char *canonical = NULL, *error = NULL, *again = NULL;
        const Vector *v;
        uint64_t fp, fp_again;
        int r;

        ck_assert_msg(load_error[0] == '\0', "%s", load_error);
        ck_assert_msg((size_t) _i < n_vectors, "vector %d missing from %s", _i, VECTORS_FILE);
        v = &vectors[_i];

        r = fingerprint_schema_json(v->input, strlen(v->input), &fp, &canonical, &error);
        ck_assert_msg(r == 0, "vector %d (line %u) %s: %s", _i, v->line, v->input,
                      error ? error : strerror(-r));
        ck_assert_str_eq(canonical, v->canonical);
        if (v->has_fp) {
                ck_assert_msg((int64_t) fp == v->fp,
                              "vector %d: fingerprint %" PRId64 " (0x%016" PRIx64 "),"
                              " expected %" PRId64, _i, (int64_t) fp, fp, v->fp);
                /* The CRC alone, on the file's canonical text: holds even if the walk is wrong. */
                fp = fingerprint_rabin(v->canonical, strlen(v->canonical));
                ck_assert((int64_t) fp == v->fp);
        }

        /* A canonical form is its own canonical form. */
        r = fingerprint_schema_json(canonical, strlen(canonical), &fp_again, &again, NULL);
        ck_assert_int_eq(r, 0);
        ck_assert_str_eq(again, canonical);
        ck_assert_uint_eq(fp_again, fp);
}
END_TEST

/* The specification's definition, one bit at a time: independent of the table. */
static uint64_t rabin_bitwise(const uint8_t *p, size_t len) {
        uint64_t fp = EMPTY_FP;

        for (size_t i = 0; i < len; i++) {
                fp ^= p[i];
                for (int bit = 0; bit < 8; bit++)
                        fp = (fp & 1) ? (fp >> 1) ^ EMPTY_FP : fp >> 1;
        }
        return fp;
}

START_TEST(test_rabin_empty) {
        ck_assert_uint_eq(fingerprint_rabin(NULL, 0), EMPTY_FP);
        ck_assert_uint_eq(fingerprint_rabin("", 0), EMPTY_FP);
        ck_assert_uint_eq(fingerprint_rabin("\"null\"", 6), UINT64_C(0x63dd24e7cc258f8a));
}
END_TEST

START_TEST(test_rabin_random) {
        uint64_t seed = test_seed();
        uint8_t buf[512];

        srand((unsigned) seed);
        for (int round = 0; round < 200; round++) {
                size_t len = (size_t) rand() % sizeof(buf);

                for (size_t i = 0; i < len; i++)
                        buf[i] = (uint8_t) rand();
                ck_assert_uint_eq(fingerprint_rabin(buf, len), rabin_bitwise(buf, len));
        }
}
END_TEST

/* JSON in this file is written with ' for " to stay readable; this turns it into JSON. No name
 * or symbol in the tests contains a '. The caller frees the copy. */
static char *dq(const char *s) {
        char *copy = strdup(s);

        ck_assert_ptr_nonnull(copy);
        for (char *p = copy; *p; p++)
                if (*p == '\'')
                        *p = '"';
        return copy;
}

typedef struct Case {
        const char *what;
        const char *json;
        const char *canonical;
} Case;

static const Case cases[] = {
        {
                "namespace inherited by nested record, enum and fixed; short and full references",
                "{'type':'record','name':'Outer','namespace':'a.b','fields':["
                " {'name':'in','type':{'type':'record','name':'Inner','fields':["
                "  {'name':'e','type':{'type':'enum','name':'E','symbols':['X','Y']}}]}},"
                " {'name':'f','type':{'type':'fixed','name':'F','size':4}},"
                " {'name':'e1','type':'E'},"
                " {'name':'e2','type':'a.b.E'},"
                " {'name':'fs','type':{'type':'array','items':'F'}}]}",
                "{'name':'a.b.Outer','type':'record','fields':["
                "{'name':'in','type':{'name':'a.b.Inner','type':'record','fields':["
                "{'name':'e','type':{'name':'a.b.E','type':'enum','symbols':['X','Y']}}]}},"
                "{'name':'f','type':{'name':'a.b.F','type':'fixed','size':4}},"
                "{'name':'e1','type':'a.b.E'},"
                "{'name':'e2','type':'a.b.E'},"
                "{'name':'fs','type':{'type':'array','items':'a.b.F'}}]}",
        },
        {
                "nested types inside map, array and union inherit the namespace too",
                "{'type':'record','name':'R','namespace':'n','fields':["
                " {'name':'m','type':{'type':'map','values':"
                "  {'type':'enum','name':'M','symbols':['A']}}},"
                " {'name':'a','type':{'type':'array','items':"
                "  {'type':'fixed','name':'A','size':1}}},"
                " {'name':'u','type':['null',{'type':'record','name':'U','fields':[]}]}]}",
                "{'name':'n.R','type':'record','fields':["
                "{'name':'m','type':{'type':'map','values':"
                "{'name':'n.M','type':'enum','symbols':['A']}}},"
                "{'name':'a','type':{'type':'array','items':"
                "{'name':'n.A','type':'fixed','size':1}}},"
                "{'name':'u','type':['null',{'name':'n.U','type':'record','fields':[]}]}]}",
        },
        {
                "an explicit namespace overrides and is inherited; a dotted name wins over it",
                "{'type':'record','name':'R','namespace':'outer','fields':["
                " {'name':'x','type':{'type':'record','name':'S','namespace':'other','fields':["
                "  {'name':'e','type':{'type':'enum','name':'E','symbols':['A']}}]}},"
                " {'name':'y','type':{'type':'record','name':'p.q.T','namespace':'ignored',"
                "  'fields':["
                "  {'name':'f','type':{'type':'fixed','name':'F','size':2}}]}},"
                " {'name':'z','type':'other.E'}]}",
                "{'name':'outer.R','type':'record','fields':["
                "{'name':'x','type':{'name':'other.S','type':'record','fields':["
                "{'name':'e','type':{'name':'other.E','type':'enum','symbols':['A']}}]}},"
                "{'name':'y','type':{'name':'p.q.T','type':'record','fields':["
                "{'name':'f','type':{'name':'p.q.F','type':'fixed','size':2}}]}},"
                "{'name':'z','type':'other.E'}]}",
        },
        {
                "namespace '' is the null namespace, for the type and the types inside it",
                "{'type':'record','name':'R','namespace':'n','fields':["
                " {'name':'x','type':{'type':'record','name':'Bare','namespace':'','fields':["
                "  {'name':'e','type':{'type':'enum','name':'E','symbols':['A']}}]}}]}",
                "{'name':'n.R','type':'record','fields':["
                "{'name':'x','type':{'name':'Bare','type':'record','fields':["
                "{'name':'e','type':{'name':'E','type':'enum','symbols':['A']}}]}}]}",
        },
        {
                "recursion through a union and through an array and a map",
                "{'type':'record','name':'Node','namespace':'tree','fields':["
                " {'name':'next','type':['null','Node']},"
                " {'name':'kids','type':{'type':'array','items':'tree.Node'}},"
                " {'name':'byname','type':{'type':'map','values':'Node'}}]}",
                "{'name':'tree.Node','type':'record','fields':["
                "{'name':'next','type':['null','tree.Node']},"
                "{'name':'kids','type':{'type':'array','items':'tree.Node'}},"
                "{'name':'byname','type':{'type':'map','values':'tree.Node'}}]}",
        },
        {
                "attributes outside the canonical set are stripped, escapes are decoded",
                "{'type':'enum','name':'E','namespace':'n','doc':'d','aliases':['F'],"
                " 'default':'A','x-custom':{'k':1},'symbols':['\\u0041','B']}",
                "{'name':'n.E','type':'enum','symbols':['A','B']}",
        },
        {
                "logicalType is no part of the canonical form",
                "{'type':'fixed','name':'D','size':12,'logicalType':'duration'}",
                "{'name':'D','type':'fixed','size':12}",
        },
        {
                "the empty union as a whole document, although avro-c refuses it",
                " [ ] ",
                "[]",
        },
};

START_TEST(test_case) {
        _cleanup_free_ char *json = dq(cases[_i].json), *want = dq(cases[_i].canonical);
        _cleanup_free_ char *canonical = NULL, *error = NULL;
        const char *what = cases[_i].what;
        uint64_t fp;
        int r;

        r = fingerprint_schema_json(json, strlen(json), &fp, &canonical, &error);
        ck_assert_msg(r == 0, "%s: %s", what, error ? error : strerror(-r));
        ck_assert_msg(strcmp(canonical, want) == 0, "%s:\n got  %s\n want %s", what, canonical,
                      want);
        ck_assert_uint_eq(fp, fingerprint_rabin(want, strlen(want)));
}
END_TEST

/* The shipped sample: canonical text written by hand, fingerprint computed by a separate
 * bitwise implementation (not this library) when the file was made. */
START_TEST(test_metric_file) {
        _cleanup_free_ char *expected = dq(
                "{'name':'ring.example.Metric','type':'record','fields':["
                "{'name':'name','type':'string'},"
                "{'name':'kind','type':{'name':'ring.example.Kind','type':'enum',"
                "'symbols':['GAUGE','COUNTER']}},"
                "{'name':'host','type':{'name':'ring.hosts.HostId','type':'fixed','size':16}},"
                "{'name':'value','type':'double'},"
                "{'name':'timestamp_ns','type':'long'},"
                "{'name':'labels','type':{'type':'map','values':'string'}},"
                "{'name':'history','type':{'type':'array','items':'ring.example.Metric'}},"
                "{'name':'previous_kind','type':['null','ring.example.Kind']},"
                "{'name':'origin','type':['null','ring.hosts.HostId']}]}");
        _cleanup_free_ char *canonical = NULL, *error = NULL;
        static char text[64 * 1024];
        char path[4096];
        size_t len;
        uint64_t fp;
        FILE *f;
        int r;

        f = fopen(test_srcdir_path("tests/data/schemas/metric.avsc", path, sizeof(path)), "re");
        ck_assert_msg(f, "%s: %s", path, strerror(errno));
        len = fread(text, 1, sizeof(text), f);
        ck_assert(!ferror(f) && feof(f));
        fclose(f);

        r = fingerprint_schema_json(text, len, &fp, &canonical, &error);
        ck_assert_msg(r == 0, "%s", error ? error : strerror(-r));
        ck_assert_str_eq(canonical, expected);
        ck_assert_uint_eq(fp, UINT64_C(0xaa8f339cf2961dd6));
}
END_TEST

static void decref_schemap(avro_schema_t *s) {
        if (*s)
                avro_schema_decref(*s);
}

/* A schema built through avro-c's API rather than parsed: the same enum object used twice (no
 * link) must still be spelled out once and named after. */
START_TEST(test_handmade_schema) {
        _cleanup_(decref_schemap) avro_schema_t record = NULL, side = NULL, list = NULL;
        _cleanup_free_ char *canonical = NULL, *expected = dq(
                "{'name':'t.Pair','type':'record','fields':["
                "{'name':'left','type':{'name':'t.Side','type':'enum','symbols':['L','R']}},"
                "{'name':'right','type':'t.Side'},"
                "{'name':'more','type':{'type':'array','items':'t.Side'}}]}");

        record = avro_schema_record("Pair", "t");
        side = avro_schema_enum_ns("Side", "t");
        ck_assert(record && side);
        ck_assert_int_eq(avro_schema_enum_symbol_append(side, "L"), 0);
        ck_assert_int_eq(avro_schema_enum_symbol_append(side, "R"), 0);
        ck_assert_int_eq(avro_schema_record_field_append(record, "left", side), 0);
        ck_assert_int_eq(avro_schema_record_field_append(record, "right", side), 0);
        list = avro_schema_array(side);
        ck_assert_ptr_nonnull(list);
        ck_assert_int_eq(avro_schema_record_field_append(record, "more", list), 0);

        ck_assert_int_eq(fingerprint_canonical(record, &canonical), 0);
        ck_assert_str_eq(canonical, expected);
}
END_TEST

/* fingerprint_canonical() on a schema avro-c parsed, as other modules call it. */
START_TEST(test_canonical_of_parsed) {
        _cleanup_free_ char *json = dq("{'type':'map','values':{'type':'array','items':'bytes'}}");
        _cleanup_(decref_schemap) avro_schema_t schema = NULL;
        _cleanup_free_ char *canonical = NULL;

        ck_assert_int_eq(avro_schema_from_json_length(json, strlen(json), &schema), 0);
        ck_assert_int_eq(fingerprint_canonical(schema, &canonical), 0);
        ck_assert_str_eq(canonical, json);
}
END_TEST

/* Checks that json (written with ') is refused with -EINVAL, a message containing needle, and
 * untouched outputs. */
static void assert_refused(const char *squoted, const char *needle) {
        _cleanup_free_ char *json = dq(squoted), *error = NULL;
        char *canonical = NULL;
        uint64_t fp = 42;
        int r;

        r = fingerprint_schema_json(json, strlen(json), &fp, &canonical, &error);
        ck_assert_msg(r == -EINVAL, "%s: got %d, expected -EINVAL", json, r);
        ck_assert_msg(error && *error, "%s: no error message", json);
        ck_assert_msg(strstr(error, needle), "%s: message '%s' lacks '%s'", json, error, needle);
        ck_assert_uint_eq(fp, 42);
        ck_assert_ptr_null(canonical);

        /* Without a place for the message, the same answer (and no leak). */
        r = fingerprint_schema_json(json, strlen(json), &fp, NULL, NULL);
        ck_assert_int_eq(r, -EINVAL);
}

START_TEST(test_invalid) {
        assert_refused("{'type':", "JSON");
        assert_refused("", "JSON");
        assert_refused("'nosuchtype'", "nosuchtype");
        assert_refused("{'type':'record','name':'R','fields':[{'name':'a','type':'Undef'}]}",
                       "Undef");
        assert_refused("{'type':'record','fields':[]}", "name");
        assert_refused("{'type':'enum','name':'E'}", "symbols");
        assert_refused("{'type':'fixed','name':'F','size':-1}", "negative");
        /* avro-c refuses an empty union nested in a schema, and we do not work around that. */
        assert_refused("{'type':'array','items':[]}", "branch");
        /* Two documents are no schema. */
        assert_refused("'int' 'long'", "JSON");
}
END_TEST

START_TEST(test_arguments) {
        _cleanup_(decref_schemap) avro_schema_t schema = avro_schema_int();
        char *canonical = NULL;
        uint64_t fp;

        ck_assert_int_eq(fingerprint_canonical(NULL, &canonical), -EINVAL);
        ck_assert_int_eq(fingerprint_canonical(schema, NULL), -EINVAL);
        ck_assert_int_eq(fingerprint_schema_json(NULL, 0, &fp, NULL, NULL), -EINVAL);
        ck_assert_int_eq(fingerprint_schema_json("\"int\"", 5, NULL, NULL, NULL), -EINVAL);
        ck_assert_ptr_null(canonical);

        /* len bounds the text: no NUL needed, and bytes after it do not count. */
        ck_assert_int_eq(fingerprint_schema_json("\"int\"garbage", 5, &fp, NULL, NULL), 0);
        ck_assert_uint_eq(fp, UINT64_C(8247732601305521295));
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("fingerprint");
        TCase *tc;

        tc = tcase_create("vectors");
        tcase_add_unchecked_fixture(tc, vectors_load, vectors_free);
        tcase_add_test(tc, test_vectors_count);
        tcase_add_loop_test(tc, test_vector, 0, VECTORS_EXPECTED);
        suite_add_tcase(s, tc);

        tc = tcase_create("rabin");
        tcase_add_test(tc, test_rabin_empty);
        tcase_add_test(tc, test_rabin_random);
        suite_add_tcase(s, tc);

        tc = tcase_create("canonical");
        tcase_add_loop_test(tc, test_case, 0, ELEMENTSOF(cases));
        tcase_add_test(tc, test_metric_file);
        tcase_add_test(tc, test_handmade_schema);
        tcase_add_test(tc, test_canonical_of_parsed);
        suite_add_tcase(s, tc);

        tc = tcase_create("errors");
        tcase_add_test(tc, test_invalid);
        tcase_add_test(tc, test_arguments);
        suite_add_tcase(s, tc);

        return s;
}
