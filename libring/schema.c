/* SPDX-License-Identifier: MIT */
/*
 * Schemas as libring keeps them (conn-internal.h, Schema): parsed once with avro-c, identified
 * by fingerprint, with a generic value class for callers that use avro_value_t. avro-c's memory
 * readers and writers cost one small allocation per value; callers on the hottest path send
 * and receive raw Avro bytes instead, which allocates nothing.
 */
#include <errno.h>
#include <string.h>

#include "conn-internal.h"
#include "fingerprint.h"
#include "macro.h"

int schema_parse(const char *json, Schema *ret) {
        _cleanup_free_ char *canonical = NULL;
        Schema s = { 0 };
        int r;

        if (!json)
                return -EINVAL;
        if (avro_schema_from_json_length(json, strlen(json), &s.schema) != 0) {
                const char *e = avro_strerror();
                error_set_message(e, strlen(e));
                return -EINVAL;
        }
        r = fingerprint_canonical(s.schema, &canonical);
        if (r < 0)
                goto fail;
        s.fp = fingerprint_rabin(canonical, strlen(canonical));
        s.iface = avro_generic_class_from_schema(s.schema);
        s.json = strdup(json);
        if (!s.iface || !s.json) {
                r = -ENOMEM;
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        schema_done(&s);
        return r;
}

void schema_done(Schema *s) {
        if (s->iface)
                avro_value_iface_decref(s->iface);
        if (s->schema)
                avro_schema_decref(s->schema);
        free(s->json);
        *s = (Schema) { 0 };
}

/* True if value is of schema s: the same parsed schema, or one with the same fingerprint. */
static bool value_matches(const Schema *s, const avro_value_t *value) {
        _cleanup_free_ char *canonical = NULL;
        avro_schema_t vs = avro_value_get_schema(value);

        if (vs == s->schema)
                return true;
        if (!vs || fingerprint_canonical(vs, &canonical) < 0)
                return false;
        return fingerprint_rabin(canonical, strlen(canonical)) == s->fp;
}

int schema_encode_value(const Schema *s, const avro_value_t *value, uint8_t *buf, size_t size) {
        avro_writer_t w;
        size_t len;
        int r;

        if (!value || !value->iface)
                return -EINVAL;
        if (!value_matches(s, value))
                return -EPROTO;
        if (avro_value_sizeof((avro_value_t *) value, &len) != 0)
                return -EINVAL;
        if (len > size)
                return -EMSGSIZE;
        w = avro_writer_memory((const char *) buf, (int64_t) size);
        if (!w)
                return -ENOMEM;
        r = avro_value_write(w, (avro_value_t *) value);
        avro_writer_free(w);
        return r == 0 ? (int) len : -EINVAL;
}

int schema_decode_value(const Schema *s, const void *data, size_t len, avro_value_t *value) {
        avro_reader_t rd;
        int r;

        if (!value || !value->iface)
                return -EINVAL;
        if (!value_matches(s, value))
                return -EPROTO;
        rd = avro_reader_memory(data, (int64_t) len);
        if (!rd)
                return -ENOMEM;
        avro_value_reset(value);
        r = avro_value_read(rd, value);
        avro_reader_free(rd);
        return r == 0 ? 0 : -EBADMSG;
}
