/* SPDX-License-Identifier: MIT */
/*
 * Schema identity: writes the Avro Parsing Canonical Form of a schema parsed by avro-c and
 * computes its CRC-64-AVRO (Rabin) fingerprint. It owns no schema beyond a call, keeps no state
 * but the CRC table, and never prints: failures come back as -errno plus, at most, a message.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>

#include "fingerprint.h"
#include "macro.h"

/* The Avro specification's seed, which is also the fingerprint of empty input. */
#define FINGERPRINT_EMPTY UINT64_C(0xc15d213aa4d7a795)

/* Bounds the walk's recursion. A parsed schema cannot get near it (jansson stops at a JSON
 * depth of 2048), but a schema built by hand could hold a cycle through unnamed types. */
#define CANON_MAX_DEPTH 4096

static uint64_t rabin_table[256];
static pthread_once_t rabin_once = PTHREAD_ONCE_INIT;

/* Each entry is the seed polynomial's remainder after shifting one byte value through eight
 * steps, so the main loop can consume a byte per lookup. */
static void rabin_table_init(void) {
        for (unsigned i = 0; i < ELEMENTSOF(rabin_table); i++) {
                uint64_t fp = i;

                for (unsigned bit = 0; bit < 8; bit++)
                        fp = (fp >> 1) ^ (FINGERPRINT_EMPTY & -(fp & 1));
                rabin_table[i] = fp;
        }
}

uint64_t fingerprint_rabin(const void *data, size_t len) {
        const uint8_t *p = data;
        uint64_t fp = FINGERPRINT_EMPTY;

        pthread_once(&rabin_once, rabin_table_init);
        for (size_t i = 0; i < len; i++)
                fp = (fp >> 8) ^ rabin_table[(fp ^ p[i]) & 0xff];
        return fp;
}

/* The canonical text being built, and the fullnames of the named types it already defines:
 * Parsing Canonical Form spells a named type out once and refers to it by fullname after. */
typedef struct Canon {
        char *text;
        size_t len;
        size_t size;
        char **defined;
        size_t n_defined;
        size_t size_defined;
        char *problem; /* why a schema has no canonical form, for fingerprint_schema_json() */
} Canon;

static void canon_done(Canon *c) {
        free(c->text);
        for (size_t i = 0; i < c->n_defined; i++)
                free(c->defined[i]);
        free(c->defined);
        free(c->problem);
        *c = (Canon) {};
}

static int canon_put(Canon *c, const char *s, size_t n) {
        if (n >= c->size - c->len) {
                size_t size = c->size ? c->size : 256;
                char *text;

                while (n >= size - c->len) {
                        if (size > SIZE_MAX / 2)
                                return -ENOMEM;
                        size *= 2;
                }
                text = realloc(c->text, size);
                if (!text)
                        return -ENOMEM;
                c->text = text;
                c->size = size;
        }
        memcpy(c->text + c->len, s, n);
        c->len += n;
        c->text[c->len] = '\0';
        return 0;
}

static int canon_puts(Canon *c, const char *s) {
        return canon_put(c, s, strlen(s));
}

/* A JSON string. Avro names are identifiers, but avro-c checks neither enum symbols nor
 * namespaces, so quotes, backslashes and control characters are escaped to keep the form
 * valid JSON. Other bytes go out as they are: the form wants UTF-8, not \u escapes. */
static int canon_put_string(Canon *c, const char *s) {
        int r;

        r = canon_put(c, "\"", 1);
        if (r < 0)
                return r;
        for (const char *p = s; *p; p++) {
                unsigned char ch = (unsigned char) *p;
                char esc[8];

                if (ch == '"' || ch == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) ch;
                        r = canon_put(c, esc, 2);
                } else if (ch < 0x20) {
                        snprintf(esc, sizeof(esc), "\\u%04x", ch);
                        r = canon_puts(c, esc);
                } else
                        r = canon_put(c, p, 1);
                if (r < 0)
                        return r;
        }
        return canon_put(c, "\"", 1);
}

static int canon_problem(Canon *c, const char *fmt, ...) {
        va_list ap;
        int n;

        free(c->problem);
        va_start(ap, fmt);
        n = vasprintf(&c->problem, fmt, ap);
        va_end(ap);
        if (n < 0) {
                c->problem = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

/* avro-c keeps a named type's short name and namespace apart; the canonical form wants the
 * fullname. avro-c stores an explicit "namespace": "" as "", which means the null namespace. */
static int canon_fullname(avro_schema_t schema, char **ret) {
        const char *name = avro_schema_name(schema), *space = avro_schema_namespace(schema);
        char *full;

        if (!name)
                return -EINVAL;
        if (space && *space) {
                if (asprintf(&full, "%s.%s", space, name) < 0)
                        return -ENOMEM;
        } else {
                full = strdup(name);
                if (!full)
                        return -ENOMEM;
        }
        *ret = full;
        return 0;
}

static bool canon_is_defined(const Canon *c, const char *fullname) {
        for (size_t i = 0; i < c->n_defined; i++)
                if (strcmp(c->defined[i], fullname) == 0)
                        return true;
        return false;
}

/* Takes ownership of fullname, also on failure. */
static int canon_define(Canon *c, char *fullname) {
        if (c->n_defined == c->size_defined) {
                size_t size = c->size_defined ? c->size_defined * 2 : 8;
                char **defined = reallocarray(c->defined, size, sizeof(char *));

                if (!defined) {
                        free(fullname);
                        return -ENOMEM;
                }
                c->defined = defined;
                c->size_defined = size;
        }
        c->defined[c->n_defined++] = fullname;
        return 0;
}

static int canon_schema(Canon *c, avro_schema_t schema, unsigned depth);

static int canon_record(Canon *c, avro_schema_t schema, unsigned depth) {
        size_t n = avro_schema_record_size(schema);
        int r;

        r = canon_puts(c, ",\"type\":\"record\",\"fields\":[");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const char *name = avro_schema_record_field_name(schema, (int) i);
                avro_schema_t type = avro_schema_record_field_get_by_index(schema, (int) i);

                if (!name || !type)
                        return canon_problem(c, "record field %zu is incomplete", i);
                r = canon_puts(c, i > 0 ? ",{\"name\":" : "{\"name\":");
                if (r < 0)
                        return r;
                r = canon_put_string(c, name);
                if (r < 0)
                        return r;
                r = canon_puts(c, ",\"type\":");
                if (r < 0)
                        return r;
                r = canon_schema(c, type, depth + 1);
                if (r < 0)
                        return r;
                r = canon_puts(c, "}");
                if (r < 0)
                        return r;
        }
        return canon_puts(c, "]}");
}

static int canon_enum(Canon *c, avro_schema_t schema) {
        int n = avro_schema_enum_number_of_symbols(schema);
        int r;

        r = canon_puts(c, ",\"type\":\"enum\",\"symbols\":[");
        if (r < 0)
                return r;
        for (int i = 0; i < n; i++) {
                const char *symbol = avro_schema_enum_get(schema, i);

                if (!symbol)
                        return canon_problem(c, "enum symbol %d is missing", i);
                if (i > 0) {
                        r = canon_puts(c, ",");
                        if (r < 0)
                                return r;
                }
                r = canon_put_string(c, symbol);
                if (r < 0)
                        return r;
        }
        return canon_puts(c, "]}");
}

static int canon_fixed(Canon *c, avro_schema_t schema, const char *fullname) {
        int64_t size = avro_schema_fixed_size(schema);
        char buf[64];

        /* avro-c takes any JSON integer here; a negative size has no encoding. */
        if (size < 0)
                return canon_problem(c, "fixed \"%s\" has a negative size (%" PRId64 ")",
                                     fullname, size);
        snprintf(buf, sizeof(buf), ",\"type\":\"fixed\",\"size\":%" PRId64 "}", size);
        return canon_puts(c, buf);
}

static int canon_named(Canon *c, avro_schema_t schema, unsigned depth) {
        _cleanup_free_ char *fullname = NULL;
        const char *name;
        int r;

        r = canon_fullname(schema, &fullname);
        if (r == -EINVAL)
                return canon_problem(c, "named type without a name");
        if (r < 0)
                return r;
        if (canon_is_defined(c, fullname))
                return canon_put_string(c, fullname);

        r = canon_puts(c, "{\"name\":");
        if (r < 0)
                return r;
        r = canon_put_string(c, fullname);
        if (r < 0)
                return r;

        /* Defined before the body is walked, so a recursive reference inside it becomes a name.
         * The list owns the string from here on; it stays put when the list grows. */
        name = fullname;
        r = canon_define(c, TAKE_PTR(fullname));
        if (r < 0)
                return r;

        switch (avro_typeof(schema)) {
        case AVRO_RECORD:
                return canon_record(c, schema, depth);
        case AVRO_ENUM:
                return canon_enum(c, schema);
        default:
                return canon_fixed(c, schema, name);
        }
}

static int canon_union(Canon *c, avro_schema_t schema, unsigned depth) {
        size_t n = avro_schema_union_size(schema);
        int r;

        r = canon_puts(c, "[");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                avro_schema_t branch = avro_schema_union_branch(schema, (int) i);

                if (!branch)
                        return canon_problem(c, "union branch %zu is missing", i);
                if (i > 0) {
                        r = canon_puts(c, ",");
                        if (r < 0)
                                return r;
                }
                r = canon_schema(c, branch, depth + 1);
                if (r < 0)
                        return r;
        }
        return canon_puts(c, "]");
}

static int canon_schema(Canon *c, avro_schema_t schema, unsigned depth) {
        avro_schema_t inner;
        int r;

        if (!is_avro_schema(schema))
                return canon_problem(c, "not an avro-c schema");
        if (depth > CANON_MAX_DEPTH)
                return canon_problem(c, "schema nests deeper than %u levels", CANON_MAX_DEPTH);

        switch (avro_typeof(schema)) {
        case AVRO_STRING:
                return canon_puts(c, "\"string\"");
        case AVRO_BYTES:
                return canon_puts(c, "\"bytes\"");
        case AVRO_INT32:
                return canon_puts(c, "\"int\"");
        case AVRO_INT64:
                return canon_puts(c, "\"long\"");
        case AVRO_FLOAT:
                return canon_puts(c, "\"float\"");
        case AVRO_DOUBLE:
                return canon_puts(c, "\"double\"");
        case AVRO_BOOLEAN:
                return canon_puts(c, "\"boolean\"");
        case AVRO_NULL:
                return canon_puts(c, "\"null\"");
        case AVRO_RECORD:
        case AVRO_ENUM:
        case AVRO_FIXED:
                return canon_named(c, schema, depth);
        case AVRO_ARRAY:
                r = canon_puts(c, "{\"type\":\"array\",\"items\":");
                inner = avro_schema_array_items(schema);
                break;
        case AVRO_MAP:
                r = canon_puts(c, "{\"type\":\"map\",\"values\":");
                inner = avro_schema_map_values(schema);
                break;
        case AVRO_UNION:
                return canon_union(c, schema, depth);
        case AVRO_LINK:
                /* A parsed link always follows its target's definition, so this writes the
                 * fullname; a hand-built link to a type not yet written writes its definition. */
                inner = avro_schema_link_target(schema);
                if (!inner)
                        return canon_problem(c, "link without target");
                return canon_schema(c, inner, depth + 1);
        default:
                return canon_problem(c, "unknown avro-c schema type %d", (int) avro_typeof(schema));
        }
        if (r < 0)
                return r;
        r = canon_schema(c, inner, depth + 1);
        if (r < 0)
                return r;
        return canon_puts(c, "}");
}

/* The canonical text, taken from c on success. */
static int canon_run(Canon *c, avro_schema_t schema, char **ret) {
        int r;

        r = canon_schema(c, schema, 0);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c->text);
        return 0;
}

int fingerprint_canonical(avro_schema_t schema, char **ret_canonical) {
        Canon c = {};
        int r;

        if (!schema || !ret_canonical)
                return -EINVAL;
        r = canon_run(&c, schema, ret_canonical);
        canon_done(&c);
        return r;
}

static void decref_schemap(avro_schema_t *s) {
        if (*s)
                avro_schema_decref(*s);
}

static void decref_jsonp(json_t **j) {
        if (*j)
                json_decref(*j);
}

/* avro-c refuses the empty union "[]" ("Union type must have at least one branch") although
 * the specification allows it and its canonical-form test vectors include it. avro-c can still
 * represent one, so a document that is exactly an empty JSON array gets an empty avro-c union.
 * An empty union nested inside another schema stays refused: we would have to rebuild avro-c's
 * parser to place it, and a schema with a branch nobody can write is of no use on a bus. */
static bool document_is_empty_union(const char *json, size_t len) {
        _cleanup_(decref_jsonp) json_t *root = json_loadb(json, len, 0, NULL);

        return json_is_array(root) && json_array_size(root) == 0;
}

static int parse_schema(const char *json, size_t len, avro_schema_t *ret, char **ret_error) {
        avro_schema_t schema = NULL;
        _cleanup_free_ char *error = NULL;
        const char *text;

        if (avro_schema_from_json_length(json, len, &schema) == 0) {
                *ret = schema;
                return 0;
        }

        /* Copied now: avro-c's message lives in a buffer the next avro-c call may reuse. */
        text = avro_strerror();
        error = strdup(text && *text ? text : "avro-c refused the schema");
        if (!error)
                return -ENOMEM;

        if (document_is_empty_union(json, len)) {
                schema = avro_schema_union();
                if (!schema)
                        return -ENOMEM;
                *ret = schema;
                return 0;
        }

        if (ret_error)
                *ret_error = TAKE_PTR(error);
        return -EINVAL;
}

int fingerprint_schema_json(const char *json, size_t len, uint64_t *ret_fp, char **ret_canonical,
                            char **ret_error) {
        _cleanup_(decref_schemap) avro_schema_t schema = NULL;
        _cleanup_free_ char *canonical = NULL;
        Canon c = {};
        int r;

        if (!json || !ret_fp)
                return -EINVAL;

        r = parse_schema(json, len, &schema, ret_error);
        if (r < 0)
                return r;

        r = canon_run(&c, schema, &canonical);
        /* Every -EINVAL of the walk comes with its problem (canon_problem()). */
        if (r == -EINVAL && ret_error)
                *ret_error = TAKE_PTR(c.problem);
        canon_done(&c);
        if (r < 0)
                return r;

        *ret_fp = fingerprint_rabin(canonical, strlen(canonical));
        if (ret_canonical)
                *ret_canonical = TAKE_PTR(canonical);
        return 0;
}
