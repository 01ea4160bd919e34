/* SPDX-License-Identifier: MIT */
/*
 * UTF-8 checks for text that comes from clients (application, channel and function names)
 * and ends up in JSON, in log lines or on a terminal. Pure functions, no allocation except
 * where a new string is returned.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the well-formed UTF-8 sequence at s, which has n > 0 bytes, and its code
 * point; 0 if the bytes there are not one (RFC 3629: shortest form only, no surrogates,
 * nothing above U+10FFFF). */
size_t utf8_sequence(const char *s, size_t n, uint32_t *ret_cp);
bool utf8_is_valid(const char *s, size_t n);
/* Code points a terminal or log viewer may act on rather than show: C0 and C1 controls and
 * DEL (0x9b alone is a CSI on 8-bit terminals), the Unicode line and paragraph separators,
 * and the bidirectional embeddings, overrides and isolates that make text read differently
 * from its bytes. */
bool utf8_is_control(uint32_t cp);
/* A copy of s fit for one line of terminal output: controls as \n, \r, \t or \xNN per byte,
 * bytes that are not UTF-8 as \xNN, and the backslash as \\, so that a backslash shown always
 * starts an escape. NULL when out of memory. */
char *utf8_escape(const char *s);
