/* SPDX-License-Identifier: MIT */
/*
 * Avro schema identity (spec/wire-format.md, "Fingerprints"): Parsing Canonical Form of a
 * schema parsed by avro-c, and its CRC-64-AVRO (Rabin) fingerprint. avro-c has neither.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <avro.h>

/* CRC-64-AVRO of len bytes (the empty input gives the algorithm's seed). */
uint64_t fingerprint_rabin(const void *data, size_t len);

/* Parsing Canonical Form of schema as a NUL-terminated string the caller frees. */
int fingerprint_canonical(avro_schema_t schema, char **ret_canonical);

/* Parses one schema from JSON text (len bytes, need not be NUL-terminated) with avro-c and
 * returns its fingerprint and, if ret_canonical is not NULL, its canonical form.
 * -EINVAL for a schema that does not parse; then, if ret_error is not NULL, *ret_error gets a
 * malloc'd message naming the problem (avro-c's text). */
int fingerprint_schema_json(const char *json, size_t len, uint64_t *ret_fp, char **ret_canonical,
                            char **ret_error);
