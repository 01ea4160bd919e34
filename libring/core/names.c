/* SPDX-License-Identifier: MIT */
/*
 * Segment names (spec/bootstrap.md, "Segment names"). Every name Ring creates or accepts is
 * built or checked here, so the v1 names and the RING_BUS isolation rule live in one file.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

static bool bus_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

int names_bus_init(BusNames *ret, const char *bus) {
        size_t n;

        if (!ret)
                return -EINVAL;
        if (!bus || !*bus) {
                snprintf(ret->prefix, sizeof(ret->prefix), "%s", NAMES_DEFAULT_PREFIX);
                return 0;
        }

        n = strlen(bus);
        if (n > NAMES_BUS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!bus_char_ok(bus[i]))
                        return -EINVAL;

        /* "impulse-ring-<bus>" never equals "impulse-ring" and is never a prefix-with-dot of
         * another bus's names, so buses cannot see or clean up each other's segments. */
        snprintf(ret->prefix, sizeof(ret->prefix), "%s-%s", NAMES_DEFAULT_PREFIX, bus);
        return 0;
}

int names_bus_from_env(BusNames *ret) {
        /* secure_getenv: a set-uid program linking libring must not be steered to another bus. */
        return names_bus_init(ret, secure_getenv(NAMES_BUS_ENV));
}

static int format_name(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int format_name(char *buf, size_t size, const char *fmt, ...) {
        va_list ap;
        int n;

        if (!buf)
                return -EINVAL;
        va_start(ap, fmt);
        n = vsnprintf(buf, size, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t) n >= size)
                return -ENAMETOOLONG;
        return 0;
}

int names_control(const BusNames *b, char *buf, size_t size) {
        return format_name(buf, size, "/%s.ctl.v1", b->prefix);
}

int names_client(const BusNames *b, uint64_t nonce, char *buf, size_t size) {
        return format_name(buf, size, "/%s.cli.%" PRIu64 ".v1", b->prefix, nonce);
}

int names_arena(const BusNames *b, uint64_t channel_id, char *buf, size_t size) {
        return format_name(buf, size, "/%s.arena.%" PRIu64 ".v1", b->prefix, channel_id);
}

int names_function(const BusNames *b, uint64_t fn_id, char *buf, size_t size) {
        return format_name(buf, size, "/%s.fn.%" PRIu64 ".v1", b->prefix, fn_id);
}

bool names_valid(const char *name) {
        size_t n;

        if (!name || name[0] != '/')
                return false;
        n = strlen(name);
        if (n < 2 || n >= NAMES_SEGMENT_MAX)
                return false;
        if (strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0)
                return false;
        for (size_t i = 1; i < n; i++) {
                char c = name[i];
                if (!(bus_char_ok(c) || c == '.' || c == '@'))
                        return false;
        }
        return true;
}

bool names_is_client_segment(const BusNames *b, const char *name) {
        size_t plen = strlen(b->prefix), digits = 0;
        const char *p;
        uint64_t v = 0;

        if (!names_valid(name))
                return false;
        p = name + 1;
        if (strncmp(p, b->prefix, plen) != 0)
                return false;
        p += plen;
        if (strncmp(p, ".cli.", 5) != 0)
                return false;
        p += 5;
        /* A decimal u64: digits only, no overflow, nothing but ".v1" after. */
        for (; *p >= '0' && *p <= '9'; p++, digits++) {
                unsigned d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        if (digits == 0 || digits > 20)
                return false;
        return strcmp(p, ".v1") == 0;
}

bool names_file_belongs_to_bus(const BusNames *b, const char *filename) {
        char name[NAMES_SEGMENT_MAX];
        size_t plen = strlen(b->prefix);

        if (!filename || strncmp(filename, b->prefix, plen) != 0 || filename[plen] != '.')
                return false;
        if (format_name(name, sizeof(name), "/%s", filename) < 0)
                return false;
        return names_valid(name);
}
