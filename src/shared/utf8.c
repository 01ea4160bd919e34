/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 validation and escaping (utf8.h). It decides only what is text and what is not;
 * callers decide what to do with the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

size_t utf8_sequence(const char *str, size_t n, uint32_t *ret_cp) {
        const unsigned char *s = (const unsigned char *) str;
        unsigned char lo = 0x80, hi = 0xbf;
        size_t len;
        uint32_t cp;

        if (n == 0)
                return 0;
        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                len = 2;
                cp = s[0] & 0x1f;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                len = 3;
                cp = s[0] & 0x0f;
                /* E0 would be overlong below A0; ED above 9F would be a surrogate. */
                if (s[0] == 0xe0)
                        lo = 0xa0;
                else if (s[0] == 0xed)
                        hi = 0x9f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                len = 4;
                cp = s[0] & 0x07;
                /* F0 would be overlong below 90; F4 above 8F would pass U+10FFFF. */
                if (s[0] == 0xf0)
                        lo = 0x90;
                else if (s[0] == 0xf4)
                        hi = 0x8f;
        } else
                return 0;
        if (len > n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        *ret_cp = cp;
        return len;
}

bool utf8_is_valid(const char *s, size_t n) {
        uint32_t cp;

        for (size_t i = 0, k; i < n; i += k) {
                k = utf8_sequence(s + i, n - i, &cp);
                if (k == 0)
                        return false;
        }
        return true;
}

bool utf8_is_control(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
               (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

char *utf8_escape(const char *s) {
        size_t n = strlen(s), out = 0;
        char *buf;

        /* The longest escape, \xNN for each of four bytes, is four times its input. */
        if (n > (SIZE_MAX - 1) / 4)
                return NULL;
        buf = malloc(n * 4 + 1);
        if (!buf)
                return NULL;
        for (size_t i = 0, k; i < n; i += k) {
                uint32_t cp;

                k = utf8_sequence(s + i, n - i, &cp);
                if (k == 0) {
                        out += (size_t) sprintf(buf + out, "\\x%02x", (unsigned char) s[i]);
                        k = 1;
                } else if (cp == '\n' || cp == '\r' || cp == '\t') {
                        buf[out++] = '\\';
                        buf[out++] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
                } else if (utf8_is_control(cp))
                        for (size_t j = 0; j < k; j++)
                                out += (size_t) sprintf(buf + out, "\\x%02x",
                                                        (unsigned char) s[i + j]);
                else if (cp == '\\') {
                        buf[out++] = '\\';
                        buf[out++] = '\\';
                } else {
                        memcpy(buf + out, s + i, k);
                        out += k;
                }
        }
        buf[out] = '\0';
        return buf;
}
