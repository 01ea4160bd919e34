/* SPDX-License-Identifier: MIT */
/*
 * The v1 control records (spec/wire-format.md, "Control records"): one field table per record,
 * one encoder and one decoder that walk it, and the fingerprint of each record's schema taken
 * from schemas/control.avsc as embedded by the build. Decoding parses hostile bytes from shared
 * memory: every length is bounded by the body, and no input may crash it or make it allocate
 * more than the body could describe. This file knows nothing about rings or the broker.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"
#include "fingerprint.h"
#include "frame.h"
#include "macro.h"

/* The text of schemas/control.avsc; generated into control-avsc.c by the build. */
extern const char control_avsc[];

#define NAMESPACE "ring.proto"

typedef enum FieldKind {
        FIELD_LONG,
        FIELD_INT,
        FIELD_STRING,
        FIELD_BYTES,
        FIELD_BOOL,
        FIELD_CHANNEL_INFO_ARRAY,
} FieldKind;

typedef struct Field {
        const char *name;       /* the schema's field name */
        FieldKind kind;
        size_t offset;          /* into ControlMsg; into ControlChannelInfo for its fields */
        bool default_zero;      /* the schema declares "default": 0 */
} Field;

typedef struct Record {
        const char *fullname;
        ControlType current;    /* the struct an older form decodes into */
        const Field *fields;
        size_t n_fields;
} Record;

/* offsetof() that also refuses to compile unless the member has the C type the field kind
 * reads and writes through it, so a table entry cannot point at a member of another type. */
#define TYPED_OFFSET(S, path, type)                                                             \
        (offsetof(S, path) +                                                                    \
         0 * sizeof(char[__builtin_types_compatible_p(__typeof__(((S *) 0)->path), type) ? 1 : -1]))

/* The C member is named like the schema field, so a rename on either side shows up. */
#define MSG_FIELD(kind, type, rec, name, def)                                                   \
        { #name, kind, TYPED_OFFSET(ControlMsg, rec.name, type), def }
#define F_LONG(rec, name) MSG_FIELD(FIELD_LONG, int64_t, rec, name, false)
#define F_LONG_DEFAULT0(rec, name) MSG_FIELD(FIELD_LONG, int64_t, rec, name, true)
#define F_INT(rec, name) MSG_FIELD(FIELD_INT, int32_t, rec, name, false)
#define F_STRING(rec, name) MSG_FIELD(FIELD_STRING, Text, rec, name, false)
#define F_BYTES(rec, name) MSG_FIELD(FIELD_BYTES, Text, rec, name, false)
/* The array field points at the whole ControlChannelList (count and items). */
#define F_CHANNEL_INFOS(rec, member)                                                            \
        { .name = #member, .kind = FIELD_CHANNEL_INFO_ARRAY,                                    \
          .offset = TYPED_OFFSET(ControlMsg, rec, ControlChannelList) }
#define CI_FIELD(kind_, type, member)                                                           \
        { .name = #member, .kind = kind_, .offset = TYPED_OFFSET(ControlChannelInfo, member, type) }

static const Field channel_info_fields[] = {
        CI_FIELD(FIELD_LONG, int64_t, channel_id),
        CI_FIELD(FIELD_STRING, Text, name),
        CI_FIELD(FIELD_STRING, Text, owner_app),
        CI_FIELD(FIELD_LONG, int64_t, schema_fp),
        CI_FIELD(FIELD_BOOL, bool, requires_key),
};

/* The older forms of Register and ExposeFunction are the current forms without their last
 * field, so they share these tables with one field less. */
static const Field register_fields[] = {
        F_LONG(reg, correlation_id),
        F_STRING(reg, app_name),
        F_LONG(reg, nonce),
        F_STRING(reg, reply_segment),
        F_LONG(reg, heartbeat_ms),
        F_LONG_DEFAULT0(reg, pid),
};

static const Field register_reply_fields[] = {
        F_LONG(register_reply, correlation_id),
        F_LONG(register_reply, client_id),
        F_INT(register_reply, status),
        F_STRING(register_reply, message),
};

static const Field unregister_fields[] = {
        F_LONG(unregister, correlation_id),
        F_LONG(unregister, client_id),
};

static const Field publish_fields[] = {
        F_LONG(publish, correlation_id),
        F_LONG(publish, client_id),
        F_STRING(publish, channel),
        F_STRING(publish, schema_json),
        F_STRING(publish, access_key),
};

static const Field publish_reply_fields[] = {
        F_LONG(publish_reply, correlation_id),
        F_LONG(publish_reply, channel_id),
        F_LONG(publish_reply, schema_fp),
        F_STRING(publish_reply, arena),
        F_INT(publish_reply, status),
        F_STRING(publish_reply, message),
};

static const Field list_channels_fields[] = {
        F_LONG(list_channels, correlation_id),
        F_LONG(list_channels, client_id),
};

static const Field channel_list_fields[] = {
        F_LONG(channel_list, correlation_id),
        F_CHANNEL_INFOS(channel_list, channels),
};

static const Field subscribe_fields[] = {
        F_LONG(subscribe, correlation_id),
        F_LONG(subscribe, client_id),
        F_LONG(subscribe, channel_id),
        F_STRING(subscribe, access_key),
        F_LONG(subscribe, expected_fp),
};

static const Field subscribe_reply_fields[] = {
        F_LONG(subscribe_reply, correlation_id),
        F_STRING(subscribe_reply, arena),
        F_LONG(subscribe_reply, schema_fp),
        F_INT(subscribe_reply, status),
        F_STRING(subscribe_reply, message),
};

static const Field expose_fields[] = {
        F_LONG(expose, correlation_id),
        F_LONG(expose, client_id),
        F_STRING(expose, fn_name),
        F_STRING(expose, req_schema_json),
        F_STRING(expose, resp_schema_json),
        F_STRING(expose, access_key),
        F_LONG_DEFAULT0(expose, req_arena_cap),
};

static const Field expose_reply_fields[] = {
        F_LONG(expose_reply, correlation_id),
        F_LONG(expose_reply, fn_id),
        F_LONG(expose_reply, req_fp),
        F_LONG(expose_reply, resp_fp),
        F_STRING(expose_reply, req_arena),
        F_INT(expose_reply, status),
        F_STRING(expose_reply, message),
};

static const Field lookup_fields[] = {
        F_LONG(lookup, correlation_id),
        F_LONG(lookup, client_id),
        F_STRING(lookup, fn_name),
        F_STRING(lookup, access_key),
};

static const Field lookup_reply_fields[] = {
        F_LONG(lookup_reply, correlation_id),
        F_LONG(lookup_reply, fn_id),
        F_LONG(lookup_reply, req_fp),
        F_LONG(lookup_reply, resp_fp),
        F_STRING(lookup_reply, req_arena),
        F_INT(lookup_reply, status),
        F_STRING(lookup_reply, message),
};

static const Field heartbeat_fields[] = {
        F_LONG(heartbeat, correlation_id),
        F_LONG(heartbeat, client_id),
        F_LONG(heartbeat, seq),
};

static const Field rpc_request_fields[] = {
        F_LONG(rpc_request, correlation_id),
        F_LONG(rpc_request, caller_id),
        F_STRING(rpc_request, reply_segment),
        F_LONG(rpc_request, arg_fp),
        F_BYTES(rpc_request, args),
};

static const Field rpc_response_fields[] = {
        F_LONG(rpc_response, correlation_id),
        F_INT(rpc_response, status),
        F_STRING(rpc_response, message),
        F_LONG(rpc_response, result_fp),
        F_BYTES(rpc_response, result),
};

#define RECORD(type, name, table) [type] = { NAMESPACE "." #name, type, table, ELEMENTSOF(table) }

/* Indexed by wire type, in the order of schemas/control.avsc (checked at first use). */
static const Record records[] = {
        RECORD(CONTROL_REGISTER, Register, register_fields),
        RECORD(CONTROL_REGISTER_REPLY, RegisterReply, register_reply_fields),
        RECORD(CONTROL_UNREGISTER, Unregister, unregister_fields),
        RECORD(CONTROL_PUBLISH_CHANNEL, PublishChannel, publish_fields),
        RECORD(CONTROL_PUBLISH_REPLY, PublishReply, publish_reply_fields),
        RECORD(CONTROL_LIST_CHANNELS, ListChannels, list_channels_fields),
        RECORD(CONTROL_CHANNEL_LIST, ChannelList, channel_list_fields),
        RECORD(CONTROL_SUBSCRIBE, Subscribe, subscribe_fields),
        RECORD(CONTROL_SUBSCRIBE_REPLY, SubscribeReply, subscribe_reply_fields),
        RECORD(CONTROL_EXPOSE_FUNCTION, ExposeFunction, expose_fields),
        RECORD(CONTROL_EXPOSE_REPLY, ExposeReply, expose_reply_fields),
        RECORD(CONTROL_LOOKUP_FUNCTION, LookupFunction, lookup_fields),
        RECORD(CONTROL_LOOKUP_REPLY, LookupReply, lookup_reply_fields),
        RECORD(CONTROL_HEARTBEAT, Heartbeat, heartbeat_fields),
        RECORD(CONTROL_RPC_REQUEST, RpcRequest, rpc_request_fields),
        RECORD(CONTROL_RPC_RESPONSE, RpcResponse, rpc_response_fields),
        [CONTROL_REGISTER_V0] = { NAMESPACE ".Register", CONTROL_REGISTER, register_fields,
                                  ELEMENTSOF(register_fields) - 1 },
        [CONTROL_EXPOSE_FUNCTION_V0] = { NAMESPACE ".ExposeFunction", CONTROL_EXPOSE_FUNCTION,
                                         expose_fields, ELEMENTSOF(expose_fields) - 1 },
};
_Static_assert(ELEMENTSOF(records) == _CONTROL_TYPE_MAX, "one table per wire type");

/* Every field kind encodes to at least one byte (a varint, a length, a boolean, or an array's
 * end marker), so an array item needs at least as many bytes as it has fields. */
#define CHANNEL_INFO_MIN_BYTES ELEMENTSOF(channel_info_fields)

/* Filled once by schemas_load(); read-only afterwards. */
static pthread_once_t schemas_once = PTHREAD_ONCE_INIT;
static int schemas_error;
static char schemas_error_text[256];
static uint64_t fingerprints[_CONTROL_TYPE_MAX];

static void unref_jsonp(json_t **p) {
        if (*p)
                json_decref(*p);
}

static bool json_string_is(const json_t *o, const char *key, const char *want) {
        const char *s = json_string_value(json_object_get(o, key));

        return s && strcmp(s, want) == 0;
}

static int mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int mismatch(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(schemas_error_text, sizeof(schemas_error_text), fmt, ap);
        va_end(ap);
        return -EPROTO;
}

static const char *kind_type_name(FieldKind kind) {
        switch (kind) {
        case FIELD_LONG:
                return "long";
        case FIELD_INT:
                return "int";
        case FIELD_STRING:
                return "string";
        case FIELD_BYTES:
                return "bytes";
        case FIELD_BOOL:
                return "boolean";
        case FIELD_CHANNEL_INFO_ARRAY:
                return "array";
        }
        return "?";
}

static int check_fields(const json_t *fields, const Field *table, size_t n, const char *record);

/* ChannelInfo is written inline, without a namespace key, so it inherits ring.proto. */
static int check_channel_info_array(const json_t *type, const char *record, const char *field) {
        const json_t *items = json_object_get(type, "items");

        if (!json_string_is(type, "type", "array"))
                return mismatch("%s.%s: not an array", record, field);
        if (!json_string_is(items, "type", "record") ||
            !json_string_is(items, "name", "ChannelInfo") || json_object_get(items, "namespace"))
                return mismatch("%s.%s: items are not the record ChannelInfo without namespace",
                                record, field);
        return check_fields(json_object_get(items, "fields"), channel_info_fields,
                            ELEMENTSOF(channel_info_fields), "ChannelInfo");
}

static int check_fields(const json_t *fields, const Field *table, size_t n, const char *record) {
        if (!json_is_array(fields) || json_array_size(fields) != n)
                return mismatch("%s: schema has %zu fields, the C table %zu", record,
                                json_array_size(fields), n);

        for (size_t i = 0; i < n; i++) {
                const json_t *f = json_array_get(fields, i), *type = json_object_get(f, "type"),
                             *def = json_object_get(f, "default");
                int r;

                if (!json_string_is(f, "name", table[i].name))
                        return mismatch("%s: field %zu is not \"%s\"", record, i, table[i].name);
                if (table[i].kind == FIELD_CHANNEL_INFO_ARRAY) {
                        r = check_channel_info_array(type, record, table[i].name);
                        if (r < 0)
                                return r;
                } else if (!json_is_string(type) ||
                           strcmp(json_string_value(type), kind_type_name(table[i].kind)) != 0)
                        return mismatch("%s.%s: type is not \"%s\"", record, table[i].name,
                                        kind_type_name(table[i].kind));
                if (table[i].default_zero ? !(json_is_integer(def) && json_integer_value(def) == 0)
                                          : def != NULL)
                        return mismatch("%s.%s: default %s", record, table[i].name,
                                        table[i].default_zero ? "is not 0" : "is unexpected");
        }
        return 0;
}

/* Parses the embedded schemas, checks each against its C table, and fingerprints it. The
 * fingerprints come from the schema text, never from the tables, so the check is what keeps
 * the two from drifting apart. */
static int schemas_load(void) {
        _cleanup_(unref_jsonp) json_t *all = NULL;
        json_error_t jerr;

        all = json_loads(control_avsc, 0, &jerr);
        if (!all)
                return mismatch("schemas/control.avsc:%d: %s", jerr.line, jerr.text);
        if (!json_is_array(all) || json_array_size(all) != _CONTROL_TYPE_MAX)
                return mismatch("schemas/control.avsc: not an array of %d schemas",
                                _CONTROL_TYPE_MAX);

        for (size_t t = 0; t < _CONTROL_TYPE_MAX; t++) {
                const json_t *s = json_array_get(all, t);
                const char *name = records[t].fullname + strlen(NAMESPACE ".");
                _cleanup_free_ char *text = NULL, *error = NULL;
                int r;

                if (!json_string_is(s, "type", "record") || !json_string_is(s, "name", name) ||
                    !json_string_is(s, "namespace", NAMESPACE))
                        return mismatch("schemas/control.avsc: schema %zu is not the record %s",
                                        t, records[t].fullname);
                r = check_fields(json_object_get(s, "fields"), records[t].fields,
                                 records[t].n_fields, records[t].fullname);
                if (r < 0)
                        return r;

                text = json_dumps(s, JSON_COMPACT);
                if (!text)
                        return -ENOMEM;
                r = fingerprint_schema_json(text, strlen(text), &fingerprints[t], NULL, &error);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return mismatch("%s: %s", records[t].fullname, error ?: "does not parse");

                /* Receivers tell records apart by fingerprint alone. */
                for (size_t u = 0; u < t; u++)
                        if (fingerprints[u] == fingerprints[t])
                                return mismatch("schemas %zu and %zu share a fingerprint", u, t);
        }
        return 0;
}

static void schemas_init(void) {
        schemas_error = schemas_load();
        if (schemas_error < 0) {
                /* No fingerprint may match anything once the schemas are known to be wrong. */
                memset(fingerprints, 0, sizeof(fingerprints));
                if (!schemas_error_text[0])
                        snprintf(schemas_error_text, sizeof(schemas_error_text), "%s",
                                 strerror(-schemas_error));
        }
}

static int schemas_ready(void) {
        /* pthread_once() only fails for invalid arguments. */
        (void) pthread_once(&schemas_once, schemas_init);
        return schemas_error;
}

int control_schemas_check(const char **ret_error) {
        int r;

        r = schemas_ready();
        if (r < 0 && ret_error)
                *ret_error = schemas_error_text;
        return r;
}

const char *control_type_name(ControlType t) {
        if ((unsigned) t >= _CONTROL_TYPE_MAX)
                return NULL;
        return records[t].fullname;
}

uint64_t control_fingerprint(ControlType t) {
        if ((unsigned) t >= _CONTROL_TYPE_MAX || schemas_ready() < 0)
                return 0;
        return fingerprints[t];
}

int control_type_from_fingerprint(uint64_t fp, ControlType *ret) {
        if (schemas_ready() < 0)
                return -EPROTO;
        for (size_t t = 0; t < _CONTROL_TYPE_MAX; t++)
                if (fingerprints[t] == fp) {
                        if (ret)
                                *ret = (ControlType) t;
                        return 0;
                }
        return -EPROTO;
}

static int encode_fields(AvroWriter *w, const Field *fields, size_t n, const uint8_t *base) {
        for (size_t i = 0; i < n; i++) {
                const void *p = base + fields[i].offset;

                switch (fields[i].kind) {
                case FIELD_LONG:
                        avrobin_put_long(w, *(const int64_t *) p);
                        break;
                case FIELD_INT:
                        avrobin_put_long(w, *(const int32_t *) p);
                        break;
                case FIELD_BOOL:
                        avrobin_put_bool(w, *(const bool *) p);
                        break;
                case FIELD_STRING:
                case FIELD_BYTES: {
                        const Text *t = p;

                        if (!t->ptr && t->len > 0)
                                return -EINVAL;
                        avrobin_put_bytes(w, t->ptr, t->len);
                        break;
                }
                case FIELD_CHANNEL_INFO_ARRAY: {
                        const ControlChannelList *l = p;

                        if (l->n_channels > 0 && !l->channels)
                                return -EINVAL;
                        /* One block with every item, then the empty block that ends the array. */
                        if (l->n_channels > 0) {
                                if (l->n_channels > INT64_MAX)
                                        return -EMSGSIZE;
                                avrobin_put_long(w, (int64_t) l->n_channels);
                        }
                        for (size_t j = 0; j < l->n_channels; j++) {
                                int r = encode_fields(w, channel_info_fields,
                                                      ELEMENTSOF(channel_info_fields),
                                                      (const uint8_t *) &l->channels[j]);
                                if (r < 0)
                                        return r;
                        }
                        avrobin_put_long(w, 0);
                        break;
                }
                }
        }
        return 0;
}

static int decode_fields(AvroReader *reader, const Field *fields, size_t n, uint8_t *base);

static int decode_channel_infos(AvroReader *reader, ControlChannelList *ret) {
        _cleanup_free_ ControlChannelInfo *items = NULL;
        size_t n = 0, allocated = 0;

        for (;;) {
                int64_t count;
                int r;

                r = avrobin_get_block_count(reader, &count);
                if (r < 0)
                        return r;
                if (count == 0)
                        break;

                /* Bounds the allocation by what the body can actually hold. */
                if ((uint64_t) count > (reader->len - reader->pos) / CHANNEL_INFO_MIN_BYTES)
                        return -EBADMSG;
                if ((size_t) count > allocated - n) {
                        size_t want = n + (size_t) count;
                        ControlChannelInfo *p;

                        /* Grow geometrically: a body of many one-item blocks stays linear. */
                        if (want < allocated * 2)
                                want = allocated * 2;
                        p = reallocarray(items, want, sizeof(*items));
                        if (!p)
                                return -ENOMEM;
                        items = p;
                        allocated = want;
                }
                for (int64_t i = 0; i < count; i++) {
                        r = decode_fields(reader, channel_info_fields,
                                          ELEMENTSOF(channel_info_fields), (uint8_t *) &items[n]);
                        if (r < 0)
                                return r;
                        n++;
                }
        }

        ret->n_channels = n;
        ret->channels = TAKE_PTR(items);
        return 0;
}

static int decode_fields(AvroReader *reader, const Field *fields, size_t n, uint8_t *base) {
        for (size_t i = 0; i < n; i++) {
                void *p = base + fields[i].offset;
                int r = 0;

                switch (fields[i].kind) {
                case FIELD_LONG:
                        r = avrobin_get_long(reader, p);
                        break;
                case FIELD_INT:
                        r = avrobin_get_int(reader, p);
                        break;
                case FIELD_BOOL:
                        r = avrobin_get_bool(reader, p);
                        break;
                case FIELD_STRING:
                case FIELD_BYTES:
                        r = avrobin_get_text(reader, p);
                        break;
                case FIELD_CHANNEL_INFO_ARRAY:
                        r = decode_channel_infos(reader, p);
                        break;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The wire type m is sent as: its own type, or the older form of it that wire_type names. */
static int resolve_wire_type(const ControlMsg *m, ControlType *ret) {
        ControlType wt;

        if (!m)
                return -EINVAL;
        wt = m->wire_type != 0 ? m->wire_type : m->type;
        if ((unsigned) wt >= _CONTROL_TYPE_MAX)
                return -EINVAL;
        if (m->type != wt && m->type != records[wt].current)
                return -EINVAL;
        *ret = wt;
        return 0;
}

static int encode_body(const ControlMsg *m, ControlType wt, uint8_t *buf, size_t size,
                       size_t *ret_len) {
        AvroWriter w = { .buf = buf, .size = buf ? size : 0 };
        int r;

        r = encode_fields(&w, records[wt].fields, records[wt].n_fields, (const uint8_t *) m);
        if (r < 0)
                return r;
        *ret_len = w.pos;
        return 0;
}

size_t control_encoded_size(const ControlMsg *m) {
        ControlType wt;
        size_t len;

        if (resolve_wire_type(m, &wt) < 0 || encode_body(m, wt, NULL, 0, &len) < 0)
                return 0;
        if (len > SIZE_MAX - FRAME_HEADER_SIZE)
                return SIZE_MAX;
        return FRAME_HEADER_SIZE + len;
}

int control_encode(const ControlMsg *m, uint8_t *buf, size_t size) {
        ControlType wt;
        size_t body_len;
        bool room;
        int r;

        if (!buf && size > 0)
                return -EINVAL;
        r = resolve_wire_type(m, &wt);
        if (r < 0)
                return r;
        r = schemas_ready();
        if (r < 0)
                return r;

        room = size >= FRAME_HEADER_SIZE;
        r = encode_body(m, wt, room ? buf + FRAME_HEADER_SIZE : NULL,
                        room ? size - FRAME_HEADER_SIZE : 0, &body_len);
        if (r < 0)
                return r;
        if (!room || body_len > size - FRAME_HEADER_SIZE || body_len > UINT32_MAX ||
            body_len > (size_t) INT_MAX - FRAME_HEADER_SIZE)
                return -EMSGSIZE;

        frame_header_encode(buf, fingerprints[wt], (uint32_t) body_len);
        return (int) (FRAME_HEADER_SIZE + body_len);
}

int control_decode(const void *record, size_t len, ControlMsg *ret) {
        ControlMsg m = {};
        ControlType wt;
        AvroReader reader;
        Frame f;
        int r;

        if (!ret)
                return -EINVAL;
        r = frame_decode(record, len, &f);
        if (r < 0)
                return r;
        r = control_type_from_fingerprint(f.schema_fp, &wt);
        if (r < 0)
                return r;

        /* m starts zeroed, which is what an older form's missing field defaults to. */
        m.type = records[wt].current;
        m.wire_type = wt;
        reader = (AvroReader) { .buf = f.body, .len = f.body_len };
        r = decode_fields(&reader, records[wt].fields, records[wt].n_fields, (uint8_t *) &m);
        if (r >= 0 && reader.pos != reader.len)
                r = -EBADMSG;   /* a v1 body is exactly one datum */
        if (r < 0) {
                control_msg_done(&m);
                return r;
        }

        *ret = m;
        return 0;
}

/* ---- RpcRequest and RpcResponse without the tables ----
 * The field order is rpc_request_fields[] / rpc_response_fields[] above, which the schema
 * check holds to schemas/control.avsc; the unit test holds these functions to
 * control_encode() and control_decode(), byte for byte and verdict for verdict. */

/* The body of a record that must be of wire type wt. */
static int rpc_body(const void *record, size_t len, ControlType wt, Frame *ret) {
        int r;

        r = frame_decode(record, len, ret);
        if (r < 0)
                return r;
        if (schemas_ready() < 0 || ret->schema_fp != fingerprints[wt])
                return -EPROTO;
        return 0;
}

/* The constant fields of an RpcRequest and of an RpcResponse have one shape, a long, bytes and a
 * long, encoded for wire type wt. */
static int rpc_const(ControlType wt, int64_t first, Text bytes, int64_t last, ControlRpcConst *ret) {
        ControlRpcConst k = {};
        AvroWriter w = { .buf = k.bytes, .size = sizeof(k.bytes) };
        int r;

        if (!ret || (!bytes.ptr && bytes.len > 0))
                return -EINVAL;
        r = schemas_ready();
        if (r < 0)
                return r;
        avrobin_put_long(&w, first);
        avrobin_put_bytes(&w, bytes.ptr, bytes.len);
        avrobin_put_long(&w, last);
        if (!avrobin_fits(&w))
                return -EMSGSIZE;
        k.len = w.pos;
        k.frame_fp = fingerprints[wt];
        *ret = k;
        return 0;
}

int control_rpc_request_const(int64_t caller_id, Text reply_segment, int64_t arg_fp, ControlRpcConst *ret) {
        return rpc_const(CONTROL_RPC_REQUEST, caller_id, reply_segment, arg_fp, ret);
}

int control_rpc_response_ok_const(int64_t result_fp, ControlRpcConst *ret) {
        return rpc_const(CONTROL_RPC_RESPONSE, CONTROL_STATUS_OK, (Text) { .ptr = "", .len = 0 }, result_fp, ret);
}

/* Completes a head whose fields end at p (the data's length last): the frame header, whose
 * body is those fields and the data_len bytes of data after them. */
static int finish_rpc_head(uint8_t *buf, const uint8_t *p, uint64_t frame_fp, size_t data_len) {
        size_t body_head = (size_t) (p - buf) - FRAME_HEADER_SIZE;

        if (data_len > UINT32_MAX - body_head)
                return -EMSGSIZE;
        frame_header_encode(buf, frame_fp, (uint32_t) (body_head + data_len));
        return (int) (p - buf);
}

int control_rpc_head(const ControlRpcConst *k, int64_t correlation_id, size_t data_len, uint8_t *buf) {
        size_t n = MIN(k->len, sizeof(k->bytes));
        uint8_t *p = buf + FRAME_HEADER_SIZE;

        /* correlation_id, the constant fields, then the data: its length, then its bytes. */
        p += avrobin_encode_long(p, correlation_id);
        memcpy(p, k->bytes, n);
        p += n;
        if (data_len > INT64_MAX)
                return -EMSGSIZE;
        p += avrobin_encode_long(p, (int64_t) data_len);
        return finish_rpc_head(buf, p, k->frame_fp, data_len);
}

int control_rpc_response_head(int64_t correlation_id, int32_t status, Text message, int64_t result_fp,
                              size_t result_len, uint8_t *buf, size_t size) {
        uint8_t *p;
        int r;

        if (!buf || (!message.ptr && message.len > 0))
                return -EINVAL;
        r = schemas_ready();
        if (r < 0)
                return r;
        if (message.len > size || size - message.len < CONTROL_RPC_RESPONSE_HEAD_MAX(0) ||
            message.len > INT64_MAX || result_len > INT64_MAX)
                return -EMSGSIZE;
        p = buf + FRAME_HEADER_SIZE;
        p += avrobin_encode_long(p, correlation_id);
        p += avrobin_encode_long(p, status);
        p += avrobin_encode_long(p, (int64_t) message.len);
        if (message.len > 0)
                memcpy(p, message.ptr, message.len);
        p += message.len;
        p += avrobin_encode_long(p, result_fp);
        p += avrobin_encode_long(p, (int64_t) result_len);
        return finish_rpc_head(buf, p, fingerprints[CONTROL_RPC_RESPONSE], result_len);
}

int control_decode_rpc_request(const void *record, size_t len, ControlRpcRequest *ret) {
        ControlRpcRequest m;
        size_t pos = 0;
        Frame f;
        int r;

        if (!ret)
                return -EINVAL;
        r = rpc_body(record, len, CONTROL_RPC_REQUEST, &f);
        if (r < 0)
                return r;
        if (avrobin_decode_long(f.body, f.body_len, &pos, &m.correlation_id) < 0 ||
            avrobin_decode_long(f.body, f.body_len, &pos, &m.caller_id) < 0 ||
            avrobin_decode_text(f.body, f.body_len, &pos, &m.reply_segment) < 0 ||
            avrobin_decode_long(f.body, f.body_len, &pos, &m.arg_fp) < 0 ||
            avrobin_decode_text(f.body, f.body_len, &pos, &m.args) < 0 || pos != f.body_len)
                return -EBADMSG;
        *ret = m;
        return 0;
}

int control_decode_rpc_response(const void *record, size_t len, ControlRpcResponse *ret) {
        ControlRpcResponse m;
        size_t pos = 0;
        int64_t status;
        Frame f;
        int r;

        if (!ret)
                return -EINVAL;
        r = rpc_body(record, len, CONTROL_RPC_RESPONSE, &f);
        if (r < 0)
                return r;
        /* status is an Avro int: a long outside int32 is malformed, as in avrobin_get_int(). */
        if (avrobin_decode_long(f.body, f.body_len, &pos, &m.correlation_id) < 0 ||
            avrobin_decode_long(f.body, f.body_len, &pos, &status) < 0 || status < INT32_MIN ||
            status > INT32_MAX || avrobin_decode_text(f.body, f.body_len, &pos, &m.message) < 0 ||
            avrobin_decode_long(f.body, f.body_len, &pos, &m.result_fp) < 0 ||
            avrobin_decode_text(f.body, f.body_len, &pos, &m.result) < 0 || pos != f.body_len)
                return -EBADMSG;
        m.status = (int32_t) status;
        *ret = m;
        return 0;
}

void control_msg_done(ControlMsg *m) {
        if (!m || m->type != CONTROL_CHANNEL_LIST)
                return;
        free(m->channel_list.channels);
        m->channel_list.channels = NULL;
        m->channel_list.n_channels = 0;
}

const char *control_status_name(int32_t status) {
        switch (status) {
        case CONTROL_STATUS_OK:
                return "OK";
        case CONTROL_STATUS_NOT_FOUND:
                return "NOT_FOUND";
        case CONTROL_STATUS_DENIED:
                return "DENIED";
        case CONTROL_STATUS_SCHEMA_MISMATCH:
                return "SCHEMA_MISMATCH";
        case CONTROL_STATUS_INTERNAL:
                return "INTERNAL";
        case CONTROL_STATUS_EXISTS:
                return "EXISTS";
        }
        return "UNKNOWN";
}
