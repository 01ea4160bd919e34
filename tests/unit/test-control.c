/* SPDX-License-Identifier: MIT */
/*
 * Control records (libring/core/control.c): every wire type round-trips, our bytes are the
 * bytes avro-c's generic codec writes for the schema in schemas/control.avsc and read back
 * both ways, the fingerprints are the schemas' own and stay pinned, and no malformed or
 * mutated record crashes the decoder or is accepted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <check.h>
#include <jansson.h>

#include "control.h"
#include "fingerprint.h"
#include "frame.h"
#include "macro.h"
#include "test-util.h"
#include "unaligned.h"

/* The v1 fingerprints, computed independently of fingerprint.c from the schemas of
 * ring-wire-v1.md. A change here breaks every v1 peer: the schemas must not change. */
static const uint64_t pinned_fingerprints[_CONTROL_TYPE_MAX] = {
        [CONTROL_REGISTER] = UINT64_C(0x879b416683ef2068),
        [CONTROL_REGISTER_REPLY] = UINT64_C(0x3af224883f4dec77),
        [CONTROL_UNREGISTER] = UINT64_C(0x82cdc2b7ebd36a6a),
        [CONTROL_PUBLISH_CHANNEL] = UINT64_C(0xf271a4c7a09fcdd7),
        [CONTROL_PUBLISH_REPLY] = UINT64_C(0x055439d7c0240142),
        [CONTROL_LIST_CHANNELS] = UINT64_C(0xa5035910e842f4e6),
        [CONTROL_CHANNEL_LIST] = UINT64_C(0xa1048915e5931da2),
        [CONTROL_SUBSCRIBE] = UINT64_C(0x8ebc74e247531cff),
        [CONTROL_SUBSCRIBE_REPLY] = UINT64_C(0x83b6f56ef3d10c31),
        [CONTROL_EXPOSE_FUNCTION] = UINT64_C(0x642a6c8e5b677e6a),
        [CONTROL_EXPOSE_REPLY] = UINT64_C(0x94bb3fe569f8abf8),
        [CONTROL_LOOKUP_FUNCTION] = UINT64_C(0xe732b44c32d796fc),
        [CONTROL_LOOKUP_REPLY] = UINT64_C(0x5c9c6cbc1f3d26b2),
        [CONTROL_HEARTBEAT] = UINT64_C(0xa5073570fc81a3ea),
        [CONTROL_RPC_REQUEST] = UINT64_C(0xe88f548e4f540ca4),
        [CONTROL_RPC_RESPONSE] = UINT64_C(0x5c4e149239ad5d24),
        [CONTROL_REGISTER_V0] = UINT64_C(0xfc723bd7afcffc02),
        [CONTROL_EXPOSE_FUNCTION_V0] = UINT64_C(0xa1acec8abc87f374),
};

static ControlType current_type(ControlType wt) {
        switch (wt) {
        case CONTROL_REGISTER_V0:
                return CONTROL_REGISTER;
        case CONTROL_EXPOSE_FUNCTION_V0:
                return CONTROL_EXPOSE_FUNCTION;
        default:
                return wt;
        }
}

/* --- distinctive values: no two fields of a record share a value, so a swap shows --- */

#define N_VARIANTS 3
#define GEN_STRINGS 64

typedef struct Gen {
        unsigned variant;
        unsigned n;
        char strings[GEN_STRINGS][320];
        ControlChannelInfo infos[8];
} Gen;

static Gen gen;

static void gen_reset(Gen *g, unsigned variant) {
        g->variant = variant;
        g->n = 0;
}

static int64_t gen_long(Gen *g) {
        /* Variant 1 walks the varint edges; the others give large values of both signs. */
        static const int64_t edges[] = { INT64_MIN, INT64_MAX, -1, 1, 63, -64, 64, -65,
                                         INT32_MAX, (int64_t) INT32_MIN - 1, 8191, -8193 };
        unsigned i = g->n++;

        if (g->variant == 1)
                return edges[i % ELEMENTSOF(edges)] + (int64_t) (i / ELEMENTSOF(edges));
        return (int64_t) (UINT64_C(0x9e3779b97f4a7c15) * (i + 1 + 1000 * g->variant));
}

static int32_t gen_int(Gen *g) {
        static const int32_t edges[] = { INT32_MIN, INT32_MAX, -1, 5, 0 };
        unsigned i = g->n++;

        if (g->variant == 1)
                return edges[i % ELEMENTSOF(edges)];
        return (int32_t) (UINT32_C(0x9e3779b9) * (i + 1 + 1000 * g->variant));
}

static Text gen_text(Gen *g) {
        unsigned i = g->n++;
        char *s = g->strings[i % GEN_STRINGS];
        size_t len;

        if (g->variant == 1 && i % 3 == 0)
                return (Text) { .ptr = s, .len = 0 };
        if (g->variant == 2 && i % 4 == 0) {
                /* Long enough for a two-byte length prefix. */
                len = sizeof(g->strings[0]) - 1;
                for (size_t j = 0; j < len; j++)
                        s[j] = (char) ('a' + (j + i) % 26);
                return (Text) { .ptr = s, .len = len };
        }
        len = (size_t) snprintf(s, sizeof(g->strings[0]), "field-%u-vär-%u/✓", i, g->variant);
        return (Text) { .ptr = s, .len = len };
}

static Text gen_bytes(Gen *g) {
        unsigned i = g->n++;
        char *s = g->strings[i % GEN_STRINGS];
        size_t len = 3 + i % 17;

        /* Raw bytes, NULs and high bytes included. */
        for (size_t j = 0; j < len; j++)
                s[j] = (char) (j * 37 + i);
        s[0] = 0;
        s[len - 1] = (char) 0xff;
        return (Text) { .ptr = s, .len = len };
}

static bool gen_bool(Gen *g) {
        return (g->n++ + g->variant) % 2 == 0;
}

/* Fills m as wire type wt with distinctive values; ChannelList gets n_channels entries. */
static void fill_msg(Gen *g, ControlType wt, size_t n_channels, ControlMsg *m) {
        *m = (ControlMsg) { .type = current_type(wt), .wire_type = wt };

        switch (current_type(wt)) {
        case CONTROL_REGISTER:
                m->reg.correlation_id = gen_long(g);
                m->reg.app_name = gen_text(g);
                m->reg.nonce = gen_long(g);
                m->reg.reply_segment = gen_text(g);
                m->reg.heartbeat_ms = gen_long(g);
                m->reg.pid = wt == CONTROL_REGISTER ? gen_long(g) : 0;
                break;
        case CONTROL_REGISTER_REPLY:
                m->register_reply.correlation_id = gen_long(g);
                m->register_reply.client_id = gen_long(g);
                m->register_reply.status = gen_int(g);
                m->register_reply.message = gen_text(g);
                break;
        case CONTROL_UNREGISTER:
                m->unregister.correlation_id = gen_long(g);
                m->unregister.client_id = gen_long(g);
                break;
        case CONTROL_PUBLISH_CHANNEL:
                m->publish.correlation_id = gen_long(g);
                m->publish.client_id = gen_long(g);
                m->publish.channel = gen_text(g);
                m->publish.schema_json = gen_text(g);
                m->publish.access_key = gen_text(g);
                break;
        case CONTROL_PUBLISH_REPLY:
                m->publish_reply.correlation_id = gen_long(g);
                m->publish_reply.channel_id = gen_long(g);
                m->publish_reply.schema_fp = gen_long(g);
                m->publish_reply.arena = gen_text(g);
                m->publish_reply.status = gen_int(g);
                m->publish_reply.message = gen_text(g);
                break;
        case CONTROL_LIST_CHANNELS:
                m->list_channels.correlation_id = gen_long(g);
                m->list_channels.client_id = gen_long(g);
                break;
        case CONTROL_CHANNEL_LIST:
                ck_assert_uint_le(n_channels, ELEMENTSOF(g->infos));
                m->channel_list.correlation_id = gen_long(g);
                for (size_t i = 0; i < n_channels; i++)
                        g->infos[i] = (ControlChannelInfo) {
                                .channel_id = gen_long(g),
                                .name = gen_text(g),
                                .owner_app = gen_text(g),
                                .schema_fp = gen_long(g),
                                .requires_key = gen_bool(g),
                        };
                m->channel_list.n_channels = n_channels;
                m->channel_list.channels = n_channels > 0 ? g->infos : NULL;
                break;
        case CONTROL_SUBSCRIBE:
                m->subscribe.correlation_id = gen_long(g);
                m->subscribe.client_id = gen_long(g);
                m->subscribe.channel_id = gen_long(g);
                m->subscribe.access_key = gen_text(g);
                m->subscribe.expected_fp = gen_long(g);
                break;
        case CONTROL_SUBSCRIBE_REPLY:
                m->subscribe_reply.correlation_id = gen_long(g);
                m->subscribe_reply.arena = gen_text(g);
                m->subscribe_reply.schema_fp = gen_long(g);
                m->subscribe_reply.status = gen_int(g);
                m->subscribe_reply.message = gen_text(g);
                break;
        case CONTROL_EXPOSE_FUNCTION:
                m->expose.correlation_id = gen_long(g);
                m->expose.client_id = gen_long(g);
                m->expose.fn_name = gen_text(g);
                m->expose.req_schema_json = gen_text(g);
                m->expose.resp_schema_json = gen_text(g);
                m->expose.access_key = gen_text(g);
                m->expose.req_arena_cap = wt == CONTROL_EXPOSE_FUNCTION ? gen_long(g) : 0;
                break;
        case CONTROL_EXPOSE_REPLY:
        case CONTROL_LOOKUP_REPLY: {
                ControlFunctionReply *f = wt == CONTROL_EXPOSE_REPLY ? &m->expose_reply
                                                                     : &m->lookup_reply;

                f->correlation_id = gen_long(g);
                f->fn_id = gen_long(g);
                f->req_fp = gen_long(g);
                f->resp_fp = gen_long(g);
                f->req_arena = gen_text(g);
                f->status = gen_int(g);
                f->message = gen_text(g);
                break;
        }
        case CONTROL_LOOKUP_FUNCTION:
                m->lookup.correlation_id = gen_long(g);
                m->lookup.client_id = gen_long(g);
                m->lookup.fn_name = gen_text(g);
                m->lookup.access_key = gen_text(g);
                break;
        case CONTROL_HEARTBEAT:
                m->heartbeat.correlation_id = gen_long(g);
                m->heartbeat.client_id = gen_long(g);
                m->heartbeat.seq = gen_long(g);
                break;
        case CONTROL_RPC_REQUEST:
                m->rpc_request.correlation_id = gen_long(g);
                m->rpc_request.caller_id = gen_long(g);
                m->rpc_request.reply_segment = gen_text(g);
                m->rpc_request.arg_fp = gen_long(g);
                m->rpc_request.args = gen_bytes(g);
                break;
        case CONTROL_RPC_RESPONSE:
                m->rpc_response.correlation_id = gen_long(g);
                m->rpc_response.status = gen_int(g);
                m->rpc_response.message = gen_text(g);
                m->rpc_response.result_fp = gen_long(g);
                m->rpc_response.result = gen_bytes(g);
                break;
        default:
                ck_abort_msg("no such type %d", wt);
        }
}

/* --- avro-c: the reference codec, driven by the schemas in schemas/control.avsc --- */

static json_t *load_avsc(void) {
        char path[4096];
        json_error_t jerr;
        json_t *all;

        test_srcdir_path("schemas/control.avsc", path, sizeof(path));
        all = json_load_file(path, 0, &jerr);
        ck_assert_msg(all, "%s:%d: %s", path, jerr.line, jerr.text);
        ck_assert(json_is_array(all));
        ck_assert_uint_eq(json_array_size(all), _CONTROL_TYPE_MAX);
        return all;
}

typedef struct Ref {
        avro_schema_t schema;
        avro_value_iface_t *iface;
} Ref;

static Ref ref_new(ControlType wt) {
        json_t *all = load_avsc();
        _cleanup_free_ char *text = json_dumps(json_array_get(all, wt), JSON_COMPACT);
        Ref ref = {};

        ck_assert_ptr_nonnull(text);
        ck_assert_msg(avro_schema_from_json_length(text, strlen(text), &ref.schema) == 0, "%s",
                      avro_strerror());
        ref.iface = avro_generic_class_from_schema(ref.schema);
        ck_assert_ptr_nonnull(ref.iface);
        json_decref(all);
        return ref;
}

static void ref_done(Ref *ref) {
        avro_value_iface_decref(ref->iface);
        avro_schema_decref(ref->schema);
}

/* Sets one field by name and counts it, so that a field left unset is noticed. */
static avro_value_t field_of(avro_value_t *rec, const char *name, size_t *count) {
        avro_value_t child;

        ck_assert_msg(avro_value_get_by_name(rec, name, &child, NULL) == 0, "no field %s", name);
        (*count)++;
        return child;
}

static void set_long(avro_value_t *rec, const char *name, int64_t v, size_t *count) {
        avro_value_t f = field_of(rec, name, count);

        ck_assert_int_eq(avro_value_set_long(&f, v), 0);
}

static void set_int(avro_value_t *rec, const char *name, int32_t v, size_t *count) {
        avro_value_t f = field_of(rec, name, count);

        ck_assert_int_eq(avro_value_set_int(&f, v), 0);
}

static void set_bool(avro_value_t *rec, const char *name, bool v, size_t *count) {
        avro_value_t f = field_of(rec, name, count);

        ck_assert_int_eq(avro_value_set_boolean(&f, v), 0);
}

static void set_string(avro_value_t *rec, const char *name, Text t, size_t *count) {
        avro_value_t f = field_of(rec, name, count);
        _cleanup_free_ char *s = strndup(t.ptr, t.len);

        /* avro-c sizes strings with their NUL terminator. */
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(avro_value_set_string_len(&f, s, t.len + 1), 0);
}

static void set_bytes(avro_value_t *rec, const char *name, Text t, size_t *count) {
        avro_value_t f = field_of(rec, name, count);

        ck_assert_int_eq(avro_value_set_bytes(&f, (void *) t.ptr, t.len), 0);
}

static void assert_all_set(avro_value_t *rec, size_t count) {
        size_t n;

        ck_assert_int_eq(avro_value_get_size(rec, &n), 0);
        ck_assert_uint_eq(count, n);
}

/* Writes m into rec, field by field by schema name; wt decides the older forms' fields. */
static void to_avro(const ControlMsg *m, ControlType wt, avro_value_t *rec) {
        size_t c = 0;

        ck_assert_int_eq(m->type, current_type(wt));
        switch (wt) {
        case CONTROL_REGISTER:
        case CONTROL_REGISTER_V0:
                set_long(rec, "correlation_id", m->reg.correlation_id, &c);
                set_string(rec, "app_name", m->reg.app_name, &c);
                set_long(rec, "nonce", m->reg.nonce, &c);
                set_string(rec, "reply_segment", m->reg.reply_segment, &c);
                set_long(rec, "heartbeat_ms", m->reg.heartbeat_ms, &c);
                if (wt == CONTROL_REGISTER)
                        set_long(rec, "pid", m->reg.pid, &c);
                break;
        case CONTROL_REGISTER_REPLY:
                set_long(rec, "correlation_id", m->register_reply.correlation_id, &c);
                set_long(rec, "client_id", m->register_reply.client_id, &c);
                set_int(rec, "status", m->register_reply.status, &c);
                set_string(rec, "message", m->register_reply.message, &c);
                break;
        case CONTROL_UNREGISTER:
                set_long(rec, "correlation_id", m->unregister.correlation_id, &c);
                set_long(rec, "client_id", m->unregister.client_id, &c);
                break;
        case CONTROL_PUBLISH_CHANNEL:
                set_long(rec, "correlation_id", m->publish.correlation_id, &c);
                set_long(rec, "client_id", m->publish.client_id, &c);
                set_string(rec, "channel", m->publish.channel, &c);
                set_string(rec, "schema_json", m->publish.schema_json, &c);
                set_string(rec, "access_key", m->publish.access_key, &c);
                break;
        case CONTROL_PUBLISH_REPLY:
                set_long(rec, "correlation_id", m->publish_reply.correlation_id, &c);
                set_long(rec, "channel_id", m->publish_reply.channel_id, &c);
                set_long(rec, "schema_fp", m->publish_reply.schema_fp, &c);
                set_string(rec, "arena", m->publish_reply.arena, &c);
                set_int(rec, "status", m->publish_reply.status, &c);
                set_string(rec, "message", m->publish_reply.message, &c);
                break;
        case CONTROL_LIST_CHANNELS:
                set_long(rec, "correlation_id", m->list_channels.correlation_id, &c);
                set_long(rec, "client_id", m->list_channels.client_id, &c);
                break;
        case CONTROL_CHANNEL_LIST: {
                avro_value_t arr = field_of(rec, "channels", &c);

                set_long(rec, "correlation_id", m->channel_list.correlation_id, &c);
                for (size_t i = 0; i < m->channel_list.n_channels; i++) {
                        const ControlChannelInfo *ci = &m->channel_list.channels[i];
                        avro_value_t item;
                        size_t ic = 0;

                        ck_assert_int_eq(avro_value_append(&arr, &item, NULL), 0);
                        set_long(&item, "channel_id", ci->channel_id, &ic);
                        set_string(&item, "name", ci->name, &ic);
                        set_string(&item, "owner_app", ci->owner_app, &ic);
                        set_long(&item, "schema_fp", ci->schema_fp, &ic);
                        set_bool(&item, "requires_key", ci->requires_key, &ic);
                        assert_all_set(&item, ic);
                }
                break;
        }
        case CONTROL_SUBSCRIBE:
                set_long(rec, "correlation_id", m->subscribe.correlation_id, &c);
                set_long(rec, "client_id", m->subscribe.client_id, &c);
                set_long(rec, "channel_id", m->subscribe.channel_id, &c);
                set_string(rec, "access_key", m->subscribe.access_key, &c);
                set_long(rec, "expected_fp", m->subscribe.expected_fp, &c);
                break;
        case CONTROL_SUBSCRIBE_REPLY:
                set_long(rec, "correlation_id", m->subscribe_reply.correlation_id, &c);
                set_string(rec, "arena", m->subscribe_reply.arena, &c);
                set_long(rec, "schema_fp", m->subscribe_reply.schema_fp, &c);
                set_int(rec, "status", m->subscribe_reply.status, &c);
                set_string(rec, "message", m->subscribe_reply.message, &c);
                break;
        case CONTROL_EXPOSE_FUNCTION:
        case CONTROL_EXPOSE_FUNCTION_V0:
                set_long(rec, "correlation_id", m->expose.correlation_id, &c);
                set_long(rec, "client_id", m->expose.client_id, &c);
                set_string(rec, "fn_name", m->expose.fn_name, &c);
                set_string(rec, "req_schema_json", m->expose.req_schema_json, &c);
                set_string(rec, "resp_schema_json", m->expose.resp_schema_json, &c);
                set_string(rec, "access_key", m->expose.access_key, &c);
                if (wt == CONTROL_EXPOSE_FUNCTION)
                        set_long(rec, "req_arena_cap", m->expose.req_arena_cap, &c);
                break;
        case CONTROL_EXPOSE_REPLY:
        case CONTROL_LOOKUP_REPLY: {
                const ControlFunctionReply *f = wt == CONTROL_EXPOSE_REPLY ? &m->expose_reply
                                                                           : &m->lookup_reply;

                set_long(rec, "correlation_id", f->correlation_id, &c);
                set_long(rec, "fn_id", f->fn_id, &c);
                set_long(rec, "req_fp", f->req_fp, &c);
                set_long(rec, "resp_fp", f->resp_fp, &c);
                set_string(rec, "req_arena", f->req_arena, &c);
                set_int(rec, "status", f->status, &c);
                set_string(rec, "message", f->message, &c);
                break;
        }
        case CONTROL_LOOKUP_FUNCTION:
                set_long(rec, "correlation_id", m->lookup.correlation_id, &c);
                set_long(rec, "client_id", m->lookup.client_id, &c);
                set_string(rec, "fn_name", m->lookup.fn_name, &c);
                set_string(rec, "access_key", m->lookup.access_key, &c);
                break;
        case CONTROL_HEARTBEAT:
                set_long(rec, "correlation_id", m->heartbeat.correlation_id, &c);
                set_long(rec, "client_id", m->heartbeat.client_id, &c);
                set_long(rec, "seq", m->heartbeat.seq, &c);
                break;
        case CONTROL_RPC_REQUEST:
                set_long(rec, "correlation_id", m->rpc_request.correlation_id, &c);
                set_long(rec, "caller_id", m->rpc_request.caller_id, &c);
                set_string(rec, "reply_segment", m->rpc_request.reply_segment, &c);
                set_long(rec, "arg_fp", m->rpc_request.arg_fp, &c);
                set_bytes(rec, "args", m->rpc_request.args, &c);
                break;
        case CONTROL_RPC_RESPONSE:
                set_long(rec, "correlation_id", m->rpc_response.correlation_id, &c);
                set_int(rec, "status", m->rpc_response.status, &c);
                set_string(rec, "message", m->rpc_response.message, &c);
                set_long(rec, "result_fp", m->rpc_response.result_fp, &c);
                set_bytes(rec, "result", m->rpc_response.result, &c);
                break;
        default:
                ck_abort_msg("no such type %d", wt);
        }
        assert_all_set(rec, c);
}

/* --- helpers --- */

/* Encodes m into a malloc'd buffer of exactly the encoded size (so ASan sees overreads). */
static uint8_t *encode_exact(const ControlMsg *m, size_t *ret_len) {
        size_t len = control_encoded_size(m);
        uint8_t *buf;

        ck_assert_uint_ge(len, FRAME_HEADER_SIZE);
        buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(control_encode(m, buf, len), (int) len);
        *ret_len = len;
        return buf;
}

/* A frame with header fields fp and body_len around body, in an exact-size buffer. */
static uint8_t *make_frame(uint64_t fp, const void *body, size_t body_len, size_t *ret_len) {
        uint8_t *buf = malloc(FRAME_HEADER_SIZE + body_len);

        ck_assert_ptr_nonnull(buf);
        frame_header_encode(buf, fp, (uint32_t) body_len);
        if (body_len > 0)
                memcpy(buf + FRAME_HEADER_SIZE, body, body_len);
        *ret_len = FRAME_HEADER_SIZE + body_len;
        return buf;
}

static int decode_body(ControlType wt, const void *body, size_t body_len, ControlMsg *ret) {
        _cleanup_free_ uint8_t *frame = NULL;
        size_t len;

        frame = make_frame(control_fingerprint(wt), body, body_len, &len);
        return control_decode(frame, len, ret);
}

static size_t n_channels_for(ControlType wt, unsigned k) {
        static const size_t counts[] = { 0, 1, 5 };

        return wt == CONTROL_CHANNEL_LIST ? counts[k % ELEMENTSOF(counts)] : 0;
}

/* True if t views bytes inside rec[0..len). */
static bool text_inside(Text t, const uint8_t *rec, size_t len) {
        return t.len == 0 ||
               ((const uint8_t *) t.ptr >= rec && (const uint8_t *) t.ptr + t.len <= rec + len);
}

/* --- tests --- */

START_TEST(test_schemas_check) {
        const char *error = NULL;
        int r;

        r = control_schemas_check(&error);
        ck_assert_msg(r == 0, "schemas/control.avsc disagrees with control.c: %s", error);
}
END_TEST

START_TEST(test_fingerprints) {
        json_t *all = load_avsc();

        for (unsigned t = 0; t < _CONTROL_TYPE_MAX; t++) {
                const json_t *s = json_array_get(all, t);
                _cleanup_free_ char *text = json_dumps(s, JSON_COMPACT), *error = NULL,
                                    *fullname = NULL;
                ControlType back;
                uint64_t fp;

                ck_assert_int_eq(fingerprint_schema_json(text, strlen(text), &fp, NULL, &error), 0);
                ck_assert_msg(fp == control_fingerprint(t), "%s: %016" PRIx64 " != %016" PRIx64,
                              control_type_name(t), fp, control_fingerprint(t));
                ck_assert_msg(fp == pinned_fingerprints[t], "%s: %016" PRIx64 " is not v1's",
                              control_type_name(t), fp);
                ck_assert_int_eq(control_type_from_fingerprint(fp, &back), 0);
                ck_assert_int_eq(back, t);
                for (unsigned u = 0; u < t; u++)
                        ck_assert_uint_ne(control_fingerprint(u), fp);

                ck_assert_int_ge(asprintf(&fullname, "ring.proto.%s",
                                          json_string_value(json_object_get(s, "name"))), 0);
                ck_assert_str_eq(control_type_name(t), fullname);
        }
        json_decref(all);

        ck_assert_ptr_null(control_type_name(_CONTROL_TYPE_MAX));
        ck_assert_ptr_null(control_type_name((ControlType) -1));
        ck_assert_uint_eq(control_fingerprint(_CONTROL_TYPE_MAX), 0);
        ck_assert_int_eq(control_type_from_fingerprint(0, NULL), -EPROTO);
        ck_assert_int_eq(control_type_from_fingerprint(UINT64_C(0x1234), NULL), -EPROTO);
}
END_TEST

START_TEST(test_status_names) {
        ck_assert_str_eq(control_status_name(0), "OK");
        ck_assert_str_eq(control_status_name(1), "NOT_FOUND");
        ck_assert_str_eq(control_status_name(2), "DENIED");
        ck_assert_str_eq(control_status_name(3), "SCHEMA_MISMATCH");
        ck_assert_str_eq(control_status_name(4), "INTERNAL");
        ck_assert_str_eq(control_status_name(5), "EXISTS");
        ck_assert_str_eq(control_status_name(6), "UNKNOWN");
        ck_assert_str_eq(control_status_name(-1), "UNKNOWN");
}
END_TEST

/* Our encoding equals avro-c's, and each side reads the other's back to the same values. */
static void check_against_avro_c(ControlType wt, unsigned variant, size_t n_channels) {
        _cleanup_free_ uint8_t *ours = NULL, *theirs_frame = NULL;
        _cleanup_free_ char *theirs = NULL;
        avro_value_t want, got, back;
        avro_reader_t reader;
        avro_writer_t writer;
        ControlMsg m, d = {};
        Ref ref = ref_new(wt);
        size_t len, want_size, frame_len;
        uint8_t extra;

        gen_reset(&gen, variant);
        fill_msg(&gen, wt, n_channels, &m);
        ours = encode_exact(&m, &len);

        /* The frame names the wire type by its fingerprint. */
        ck_assert_uint_eq(unaligned_read_le16(ours), FRAME_MAGIC);
        ck_assert_uint_eq(ours[2], 1);
        ck_assert_uint_eq(ours[3], 0);
        ck_assert_uint_eq(unaligned_read_le64(ours + 4), control_fingerprint(wt));
        ck_assert_uint_eq(unaligned_read_le32(ours + 12), len - FRAME_HEADER_SIZE);

        /* The value m should be, built by avro-c from the schema. */
        ck_assert_int_eq(avro_generic_value_new(ref.iface, &want), 0);
        to_avro(&m, wt, &want);
        ck_assert_int_eq(avro_value_sizeof(&want, &want_size), 0);
        ck_assert_uint_eq(want_size, len - FRAME_HEADER_SIZE);

        /* avro-c reads our body, to the last byte. */
        ck_assert_int_eq(avro_generic_value_new(ref.iface, &got), 0);
        reader = avro_reader_memory((const char *) ours + FRAME_HEADER_SIZE,
                                    (int64_t) (len - FRAME_HEADER_SIZE));
        ck_assert_msg(avro_value_read(reader, &got) == 0, "%s", avro_strerror());
        ck_assert_int_ne(avro_read(reader, &extra, 1), 0);
        avro_reader_free(reader);
        ck_assert_msg(avro_value_equal(&want, &got), "%s variant %u: avro-c reads other values",
                      control_type_name(wt), variant);

        /* avro-c writes exactly our bytes. */
        theirs = malloc(want_size);
        ck_assert_ptr_nonnull(theirs);
        writer = avro_writer_memory(theirs, (int64_t) want_size);
        ck_assert_msg(avro_value_write(writer, &want) == 0, "%s", avro_strerror());
        ck_assert_int_eq(avro_writer_tell(writer), (int64_t) want_size);
        avro_writer_free(writer);
        ck_assert_msg(memcmp(theirs, ours + FRAME_HEADER_SIZE, want_size) == 0,
                      "%s variant %u: bytes differ from avro-c's", control_type_name(wt), variant);

        /* We decode avro-c's bytes back to the same values. */
        theirs_frame = make_frame(control_fingerprint(wt), theirs, want_size, &frame_len);
        ck_assert_int_eq(control_decode(theirs_frame, frame_len, &d), 0);
        ck_assert_int_eq(d.type, current_type(wt));
        ck_assert_int_eq(d.wire_type, wt);
        ck_assert_int_eq(avro_generic_value_new(ref.iface, &back), 0);
        to_avro(&d, wt, &back);
        ck_assert_msg(avro_value_equal(&want, &back), "%s variant %u: decoded other values",
                      control_type_name(wt), variant);
        if (wt == CONTROL_REGISTER_V0)
                ck_assert_int_eq(d.reg.pid, 0);
        if (wt == CONTROL_EXPOSE_FUNCTION_V0)
                ck_assert_int_eq(d.expose.req_arena_cap, 0);
        if (wt == CONTROL_CHANNEL_LIST)
                ck_assert_uint_eq(d.channel_list.n_channels, n_channels);
        control_msg_done(&d);
        control_msg_done(&d);

        avro_value_decref(&want);
        avro_value_decref(&got);
        avro_value_decref(&back);
        ref_done(&ref);
}

START_TEST(test_avro_c_cross_check) {
        ControlType wt = (ControlType) _i;

        for (unsigned variant = 0; variant < N_VARIANTS; variant++)
                for (unsigned k = 0; k < (wt == CONTROL_CHANNEL_LIST ? 3u : 1u); k++)
                        check_against_avro_c(wt, variant, n_channels_for(wt, k));
}
END_TEST

/* Decodes what we encoded and compares the structs directly, strings as views of the frame. */
START_TEST(test_round_trip) {
        ControlType wt = (ControlType) _i;

        for (unsigned variant = 0; variant < N_VARIANTS; variant++)
                for (unsigned k = 0; k < (wt == CONTROL_CHANNEL_LIST ? 3u : 1u); k++) {
                        _cleanup_free_ uint8_t *buf = NULL, *again = NULL;
                        ControlMsg m, d = { .type = CONTROL_HEARTBEAT };
                        size_t len, len2;

                        gen_reset(&gen, variant);
                        fill_msg(&gen, wt, n_channels_for(wt, k), &m);
                        buf = encode_exact(&m, &len);
                        ck_assert_int_eq(control_decode(buf, len, &d), 0);
                        ck_assert_int_eq(d.type, m.type);
                        ck_assert_int_eq(d.wire_type, wt);

                        /* Re-encoding the decoded message gives the same bytes. */
                        again = encode_exact(&d, &len2);
                        ck_assert_uint_eq(len, len2);
                        ck_assert_mem_eq(buf, again, len);

                        if (wt == CONTROL_CHANNEL_LIST) {
                                const ControlChannelList *a = &m.channel_list, *b = &d.channel_list;

                                ck_assert_uint_eq(a->n_channels, b->n_channels);
                                for (size_t i = 0; i < a->n_channels; i++) {
                                        const ControlChannelInfo *x = &a->channels[i],
                                                                 *y = &b->channels[i];

                                        ck_assert_int_eq(x->channel_id, y->channel_id);
                                        ck_assert_uint_eq(x->name.len, y->name.len);
                                        ck_assert_mem_eq(x->name.ptr, y->name.ptr, x->name.len);
                                        ck_assert_uint_eq(x->owner_app.len, y->owner_app.len);
                                        ck_assert_int_eq(x->schema_fp, y->schema_fp);
                                        ck_assert_int_eq(x->requires_key, y->requires_key);
                                        /* Views into the record, not copies. */
                                        ck_assert(text_inside(y->name, buf, len));
                                }
                                if (a->n_channels == 0)
                                        ck_assert_ptr_null(b->channels);
                        }
                        control_msg_done(&d);
                        control_msg_done(&d);
                }
}
END_TEST

START_TEST(test_older_forms) {
        _cleanup_free_ uint8_t *reg = NULL, *expose = NULL;
        ControlMsg m, d;
        size_t len;

        /* The older forms leave out the field even when the struct has it set. */
        gen_reset(&gen, 0);
        fill_msg(&gen, CONTROL_REGISTER, 0, &m);
        m.wire_type = CONTROL_REGISTER_V0;
        m.reg.pid = 4242;
        reg = encode_exact(&m, &len);
        ck_assert_uint_eq(unaligned_read_le64(reg + 4), control_fingerprint(CONTROL_REGISTER_V0));
        ck_assert_int_eq(control_decode(reg, len, &d), 0);
        ck_assert_int_eq(d.type, CONTROL_REGISTER);
        ck_assert_int_eq(d.wire_type, CONTROL_REGISTER_V0);
        ck_assert_int_eq(d.reg.pid, 0);
        ck_assert_int_eq(d.reg.heartbeat_ms, m.reg.heartbeat_ms);
        ck_assert_uint_eq(d.reg.reply_segment.len, m.reg.reply_segment.len);
        ck_assert_mem_eq(d.reg.reply_segment.ptr, m.reg.reply_segment.ptr, m.reg.reply_segment.len);

        fill_msg(&gen, CONTROL_EXPOSE_FUNCTION, 0, &m);
        m.wire_type = CONTROL_EXPOSE_FUNCTION_V0;
        m.expose.req_arena_cap = 1 << 20;
        expose = encode_exact(&m, &len);
        ck_assert_int_eq(control_decode(expose, len, &d), 0);
        ck_assert_int_eq(d.type, CONTROL_EXPOSE_FUNCTION);
        ck_assert_int_eq(d.wire_type, CONTROL_EXPOSE_FUNCTION_V0);
        ck_assert_int_eq(d.expose.req_arena_cap, 0);
        ck_assert_uint_eq(d.expose.access_key.len, m.expose.access_key.len);

        /* Naming the older type itself as type works too. */
        m = (ControlMsg) { .type = CONTROL_REGISTER_V0 };
        ck_assert_uint_eq(control_encoded_size(&m), FRAME_HEADER_SIZE + 5);
}
END_TEST

START_TEST(test_encode_errors) {
        ControlMsg m = { .type = _CONTROL_TYPE_MAX };
        uint8_t buf[256];

        ck_assert_int_eq(control_encode(&m, buf, sizeof(buf)), -EINVAL);
        ck_assert_uint_eq(control_encoded_size(&m), 0);
        ck_assert_int_eq(control_encode(NULL, buf, sizeof(buf)), -EINVAL);
        ck_assert_uint_eq(control_encoded_size(NULL), 0);

        /* An older form of another record. */
        m = (ControlMsg) { .type = CONTROL_HEARTBEAT, .wire_type = CONTROL_REGISTER_V0 };
        ck_assert_int_eq(control_encode(&m, buf, sizeof(buf)), -EINVAL);
        m = (ControlMsg) { .type = CONTROL_HEARTBEAT, .wire_type = _CONTROL_TYPE_MAX };
        ck_assert_int_eq(control_encode(&m, buf, sizeof(buf)), -EINVAL);

        /* Views that cannot be read. */
        m = (ControlMsg) { .type = CONTROL_REGISTER_REPLY };
        m.register_reply.message = (Text) { .ptr = NULL, .len = 3 };
        ck_assert_int_eq(control_encode(&m, buf, sizeof(buf)), -EINVAL);
        m = (ControlMsg) { .type = CONTROL_CHANNEL_LIST };
        m.channel_list.n_channels = 2;
        ck_assert_int_eq(control_encode(&m, buf, sizeof(buf)), -EINVAL);

        /* A NULL view of length 0 is the empty string. */
        m = (ControlMsg) { .type = CONTROL_REGISTER_REPLY };
        ck_assert_int_eq(control_encode(&m, buf, sizeof(buf)), FRAME_HEADER_SIZE + 4);

        /* Every size short of the need is -EMSGSIZE and writes nothing past size. */
        gen_reset(&gen, 2);
        fill_msg(&gen, CONTROL_PUBLISH_CHANNEL, 0, &m);
        for (size_t size = 0; size < control_encoded_size(&m); size++) {
                uint8_t *small = malloc(size ?: 1);

                ck_assert_ptr_nonnull(small);
                ck_assert_int_eq(control_encode(&m, small, size), -EMSGSIZE);
                free(small);
        }
        ck_assert_int_eq(control_encode(&m, NULL, 0), -EMSGSIZE);
        ck_assert_int_eq(control_encode(&m, NULL, 100), -EINVAL);
}
END_TEST

/* Every proper prefix of every body is rejected: Avro data are self-delimiting. */
START_TEST(test_truncations) {
        ControlType wt = (ControlType) _i;

        for (unsigned variant = 0; variant < N_VARIANTS; variant++)
                for (unsigned k = 0; k < (wt == CONTROL_CHANNEL_LIST ? 3u : 1u); k++) {
                        _cleanup_free_ uint8_t *full = NULL;
                        ControlMsg m, d = { .type = CONTROL_HEARTBEAT };
                        size_t len;

                        gen_reset(&gen, variant);
                        fill_msg(&gen, wt, n_channels_for(wt, k), &m);
                        full = encode_exact(&m, &len);

                        for (size_t cut = FRAME_HEADER_SIZE; cut < len; cut++) {
                                ck_assert_int_eq(decode_body(wt, full + FRAME_HEADER_SIZE,
                                                             cut - FRAME_HEADER_SIZE, &d),
                                                 -EBADMSG);
                                /* The record cut without fixing the header. */
                                ck_assert_int_eq(control_decode(full, cut, &d), -EBADMSG);
                        }
                        for (size_t cut = 0; cut < FRAME_HEADER_SIZE; cut++)
                                ck_assert_int_eq(control_decode(full, cut, &d), -EBADMSG);
                        /* Outputs are set only on success. */
                        ck_assert_int_eq(d.type, CONTROL_HEARTBEAT);
                }
}
END_TEST

START_TEST(test_trailing_bytes) {
        ControlType wt = (ControlType) _i;
        _cleanup_free_ uint8_t *full = NULL, *longer = NULL;
        ControlMsg m, d;
        size_t len, len2;
        uint8_t *body;

        gen_reset(&gen, 0);
        fill_msg(&gen, wt, n_channels_for(wt, 1), &m);
        full = encode_exact(&m, &len);

        body = malloc(len - FRAME_HEADER_SIZE + 1);
        ck_assert_ptr_nonnull(body);
        memcpy(body, full + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE);
        body[len - FRAME_HEADER_SIZE] = 0;
        longer = make_frame(control_fingerprint(wt), body, len - FRAME_HEADER_SIZE + 1, &len2);
        free(body);
        ck_assert_int_eq(control_decode(longer, len2, &d), -EBADMSG);
        /* A record longer than its frame says. */
        memcpy(longer, full, FRAME_HEADER_SIZE);
        ck_assert_int_eq(control_decode(longer, len2, &d), -EBADMSG);
}
END_TEST

START_TEST(test_bad_frames) {
        _cleanup_free_ uint8_t *full = NULL;
        ControlMsg m, d;
        size_t len;

        gen_reset(&gen, 0);
        fill_msg(&gen, CONTROL_HEARTBEAT, 0, &m);
        full = encode_exact(&m, &len);
        ck_assert_int_eq(control_decode(full, len, &d), 0);

        full[0] ^= 1;
        ck_assert_int_eq(control_decode(full, len, &d), -EBADMSG);
        full[0] ^= 1;
        full[1] = 0;
        ck_assert_int_eq(control_decode(full, len, &d), -EBADMSG);
        full[1] = 0x52;
        full[2] = 2;
        ck_assert_int_eq(control_decode(full, len, &d), -EBADMSG);
        full[2] = 0;
        ck_assert_int_eq(control_decode(full, len, &d), -EBADMSG);
        full[2] = 1;
        ck_assert_int_eq(control_decode(full, len, &d), 0);

        /* A fingerprint that is no control record's. */
        unaligned_write_le64(full + 4, control_fingerprint(CONTROL_HEARTBEAT) ^ 1);
        ck_assert_int_eq(control_decode(full, len, &d), -EPROTO);
        unaligned_write_le64(full + 4, 0);
        ck_assert_int_eq(control_decode(full, len, &d), -EPROTO);

        ck_assert_int_eq(control_decode(NULL, 0, &d), -EBADMSG);
        ck_assert_int_eq(control_decode(full, len, NULL), -EINVAL);
}
END_TEST

/* Builds a body from longs and raw bytes: L(v) is a long, R(b) a raw byte. */
typedef struct Piece {
        bool raw;
        int64_t v;
} Piece;
#define L(x) { false, (x) }
#define R(x) { true, (x) }

/* Decoded views point into the last body built here, so it outlives the call. */
static uint8_t pieces_frame[FRAME_HEADER_SIZE + 8192];

static int decode_pieces(ControlType wt, const Piece *p, size_t n, ControlMsg *ret) {
        uint8_t *buf = pieces_frame + FRAME_HEADER_SIZE;
        AvroWriter w = { .buf = buf, .size = sizeof(pieces_frame) - FRAME_HEADER_SIZE };

        for (size_t i = 0; i < n; i++) {
                if (p[i].raw) {
                        uint8_t b = (uint8_t) p[i].v;

                        if (w.pos < w.size)
                                buf[w.pos] = b;
                        w.pos++;
                } else
                        avrobin_put_long(&w, p[i].v);
        }
        ck_assert(avrobin_fits(&w));
        frame_header_encode(pieces_frame, control_fingerprint(wt), (uint32_t) w.pos);
        return control_decode(pieces_frame, FRAME_HEADER_SIZE + w.pos, ret);
}
#define DECODE(wt, ret, ...)                                                                    \
        decode_pieces(wt, (const Piece[]) { __VA_ARGS__ },                                      \
                      sizeof((const Piece[]) { __VA_ARGS__ }) / sizeof(Piece), ret)

START_TEST(test_malformed_fields) {
        ControlMsg d;

        /* RegisterReply: correlation_id, client_id, status, message. */
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L(0), L(1), R('h')), 0);
        ck_assert(text_eq_cstr(d.register_reply.message, "h"));
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L(0), L(-1), R('h')),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L(0), L(4), R('h')),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L(0), L(INT64_MAX), R('h')),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L(0), L(INT64_MIN), R('h')),
                         -EBADMSG);
        /* status outside int32. */
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L((int64_t) INT32_MAX + 1),
                                L(0)),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, L(1), L(2), L(INT32_MIN), L(0)), 0);
        ck_assert_int_eq(d.register_reply.status, INT32_MIN);
        /* Overlong and overflowing varints. */
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, R(0x80), R(0x00), L(2), L(0), L(0)),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_REGISTER_REPLY, &d, R(0xff), R(0xff), R(0xff), R(0xff),
                                R(0xff), R(0xff), R(0xff), R(0xff), R(0xff), R(0x7f), L(2), L(0),
                                L(0)),
                         -EBADMSG);
        /* An empty body. */
        ck_assert_int_eq(DECODE(CONTROL_UNREGISTER, &d), -EBADMSG);
}
END_TEST

START_TEST(test_malformed_arrays) {
        ControlMsg d;

        /* ChannelList: correlation_id, then blocks of ChannelInfo{channel_id, name, owner_app,
         * schema_fp, requires_key}. */
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(0)), 0);
        ck_assert_uint_eq(d.channel_list.n_channels, 0);
        ck_assert_ptr_null(d.channel_list.channels);
        control_msg_done(&d);

        /* Two blocks, the second with a negative count and its byte size. */
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9),
                                L(1), L(7), L(1), R('a'), L(0), L(-5), R(1),
                                L(-2), L(12), L(8), L(0), L(1), R('b'), L(6), R(0),
                                L(10), L(1), R('c'), L(0), L(-7), R(1),
                                L(0)),
                         0);
        ck_assert_uint_eq(d.channel_list.n_channels, 3);
        ck_assert_int_eq(d.channel_list.channels[0].channel_id, 7);
        ck_assert(text_eq_cstr(d.channel_list.channels[0].name, "a"));
        ck_assert_int_eq(d.channel_list.channels[0].schema_fp, -5);
        ck_assert(d.channel_list.channels[0].requires_key);
        ck_assert(text_eq_cstr(d.channel_list.channels[1].owner_app, "b"));
        ck_assert(!d.channel_list.channels[1].requires_key);
        ck_assert_int_eq(d.channel_list.channels[2].channel_id, 10);
        ck_assert_int_eq(d.channel_list.channels[2].schema_fp, -7);
        control_msg_done(&d);
        ck_assert_ptr_null(d.channel_list.channels);

        /* Counts the body cannot hold, counts without items, and INT64_MIN. */
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(INT64_MAX), L(0)), -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(INT32_MAX), L(0)), -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(INT64_MIN), L(0), L(0)),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(-INT64_MAX), L(0), L(0)),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(-1), L(-1),
                                L(7), L(0), L(0), L(0), R(0), L(0)),
                         -EBADMSG);
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(-1), L(INT64_MAX),
                                L(7), L(0), L(0), L(0), R(0), L(0)),
                         -EBADMSG);
        /* Two items announced, bytes for one (plus slack below two items' minimum). */
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(2),
                                L(7), L(0), L(0), L(0), R(0), L(0), L(0), L(0)),
                         -EBADMSG);
        /* A boolean that is neither 0 nor 1. */
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(1),
                                L(7), L(0), L(0), L(0), R(2), L(0)),
                         -EBADMSG);
        /* The array's end marker missing. */
        ck_assert_int_eq(DECODE(CONTROL_CHANNEL_LIST, &d, L(9), L(1),
                                L(7), L(0), L(0), L(0), R(1)),
                         -EBADMSG);
        /* Many one-item blocks: accepted, and sized by the items actually present. */
        {
                Piece p[1 + 200 * 6 + 1];
                size_t n = 0;

                p[n++] = (Piece) L(9);
                for (int i = 0; i < 200; i++) {
                        p[n++] = (Piece) L(1);
                        p[n++] = (Piece) L(i);
                        p[n++] = (Piece) L(0);
                        p[n++] = (Piece) L(0);
                        p[n++] = (Piece) L(0);
                        p[n++] = (Piece) R(i % 2);
                }
                p[n++] = (Piece) L(0);
                ck_assert_uint_eq(n, ELEMENTSOF(p));
                ck_assert_int_eq(decode_pieces(CONTROL_CHANNEL_LIST, p, n, &d), 0);
                ck_assert_uint_eq(d.channel_list.n_channels, 200);
                ck_assert_int_eq(d.channel_list.channels[199].channel_id, 199);
                control_msg_done(&d);
        }
}
END_TEST

/* --- the RPC call path: control.c's fast encoders and decoders against the tables --- */

static const int64_t rpc_longs[] = { 0, 1, -1, 63, -64, 64, -65, 8191, INT32_MAX, INT32_MIN,
                                     (int64_t) INT32_MAX + 1, INT64_MAX, INT64_MIN,
                                     -0x0123456789abcdef, (int64_t) UINT64_C(0xe88f548e4f540ca4) };
static const size_t rpc_lengths[] = { 0, 1, 63, 64, 127, 128, 300, 8192, 70000 };

/* A record in one allocation: the n bytes of head, then the len bytes of data. */
static uint8_t *head_then_data(const uint8_t *head, int n, const void *data, size_t len) {
        uint8_t *rec = malloc((size_t) n + len);

        ck_assert_ptr_nonnull(rec);
        memcpy(rec, head, (size_t) n);
        if (len > 0)
                memcpy(rec + n, data, len);
        return rec;
}

/* The record the fast encoder makes: head from control_rpc_head(), then the data. */
static uint8_t *fast_record(const ControlRpcConst *k, int64_t corr, const void *data, size_t len,
                            size_t *ret_len) {
        uint8_t head[CONTROL_RPC_HEAD_MAX];
        int n;

        n = control_rpc_head(k, corr, len, head);
        ck_assert_int_gt(n, FRAME_HEADER_SIZE);
        *ret_len = (size_t) n + len;
        return head_then_data(head, n, data, len);
}

static void assert_same_record(const ControlMsg *m, const uint8_t *fast, size_t fast_len) {
        _cleanup_free_ uint8_t *want = NULL;
        size_t want_len;

        want = encode_exact(m, &want_len);
        ck_assert_uint_eq(fast_len, want_len);
        ck_assert_mem_eq(fast, want, want_len);
}

/* control_rpc_head() writes control_encode()'s bytes, whatever the values: correlation ids of
 * every varint length and sign, constant fields of several sizes, data of every length. */
START_TEST(test_rpc_fast_encoders) {
        static const char *segments[] = { "", "/r", "/ring.bench1234.client.0123456789abcdef" };
        _cleanup_free_ uint8_t *data = malloc(70000);
        char long_segment[CONTROL_RPC_CONST_MAX + 1];
        ControlRpcConst k;
        uint8_t head[CONTROL_RPC_RESPONSE_HEAD_MAX(300)];

        ck_assert_ptr_nonnull(data);
        for (size_t i = 0; i < 70000; i++)
                data[i] = (uint8_t) (i * 31 + 7);

        for (size_t a = 0; a < ELEMENTSOF(rpc_longs); a++)
                for (size_t b = 0; b < ELEMENTSOF(rpc_lengths); b++) {
                        int64_t corr = rpc_longs[a], other = rpc_longs[(a + b + 3) % ELEMENTSOF(rpc_longs)],
                                fp = rpc_longs[(a * 7 + b) % ELEMENTSOF(rpc_longs)];
                        Text seg = text_from_cstr(segments[(a + b) % ELEMENTSOF(segments)]);
                        Text bytes = { .ptr = (const char *) data, .len = rpc_lengths[b] };
                        _cleanup_free_ uint8_t *req = NULL, *ok = NULL;
                        ControlMsg m = { .type = CONTROL_RPC_REQUEST };
                        size_t len;
                        int n;

                        /* RpcRequest */
                        ck_assert_int_eq(control_rpc_request_const(other, seg, fp, &k), 0);
                        req = fast_record(&k, corr, data, rpc_lengths[b], &len);
                        m.rpc_request = (ControlRpcRequest) { corr, other, seg, fp, bytes };
                        assert_same_record(&m, req, len);

                        /* RpcResponse, successful */
                        ck_assert_int_eq(control_rpc_response_ok_const(fp, &k), 0);
                        ok = fast_record(&k, corr, data, rpc_lengths[b], &len);
                        m = (ControlMsg) { .type = CONTROL_RPC_RESPONSE };
                        m.rpc_response = (ControlRpcResponse) { corr, CONTROL_STATUS_OK, TEXT_NULL, fp, bytes };
                        assert_same_record(&m, ok, len);

                        /* RpcResponse, any status and message (the data is sent separately) */
                        m.rpc_response.status = (int32_t) (other & 0x7fffffff) - (int32_t) (b * 1000);
                        m.rpc_response.message = (Text) { .ptr = (const char *) data,
                                                          .len = rpc_lengths[b] % 301 };
                        n = control_rpc_response_head(corr, m.rpc_response.status, m.rpc_response.message, fp,
                                                      rpc_lengths[b], head, sizeof(head));
                        ck_assert_int_gt(n, FRAME_HEADER_SIZE);
                        {
                                _cleanup_free_ uint8_t *rec = head_then_data(head, n, data, rpc_lengths[b]);

                                assert_same_record(&m, rec, (size_t) n + rpc_lengths[b]);
                        }
                }

        /* Limits: constant fields that do not fit, views that cannot be read, data too long for
         * a frame, a buffer too small for the message. */
        memset(long_segment, 'x', sizeof(long_segment) - 1);
        long_segment[sizeof(long_segment) - 1] = 0;
        ck_assert_int_eq(control_rpc_request_const(0, text_from_cstr(long_segment), 1, &k), -EMSGSIZE);
        ck_assert_int_eq(control_rpc_request_const(0, (Text) { .ptr = NULL, .len = 2 }, 1, &k), -EINVAL);
        ck_assert_int_eq(control_rpc_request_const(0, TEXT_NULL, 1, NULL), -EINVAL);
        ck_assert_int_eq(control_rpc_response_ok_const(1, NULL), -EINVAL);
        ck_assert_int_eq(control_rpc_request_const(INT64_MIN, text_from_cstr(segments[2]), INT64_MIN, &k), 0);
        {
                uint8_t h[CONTROL_RPC_HEAD_MAX];

                ck_assert_int_gt(control_rpc_head(&k, INT64_MIN, UINT32_MAX - 100, h), 0);
                ck_assert_int_eq(control_rpc_head(&k, INT64_MIN, UINT32_MAX, h), -EMSGSIZE);
                ck_assert_int_eq(control_rpc_head(&k, INT64_MIN, SIZE_MAX, h), -EMSGSIZE);
        }
        ck_assert_int_eq(control_rpc_response_head(1, 0, (Text) { .ptr = "abc", .len = 3 }, 1, 0, head,
                                                   CONTROL_RPC_RESPONSE_HEAD_MAX(3) - 1),
                         -EMSGSIZE);
        ck_assert_int_gt(control_rpc_response_head(1, 0, (Text) { .ptr = "abc", .len = 3 }, 1, 0, head,
                                                   CONTROL_RPC_RESPONSE_HEAD_MAX(3)),
                         0);
        ck_assert_int_eq(control_rpc_response_head(1, 0, (Text) { .ptr = NULL, .len = 3 }, 1, 0, head,
                                                   sizeof(head)),
                         -EINVAL);
        ck_assert_int_eq(control_rpc_response_head(1, 0, TEXT_NULL, 1, UINT32_MAX, head, sizeof(head)),
                         -EMSGSIZE);
}
END_TEST

/* The fast decoders' verdict on a record: control_decode()'s when the frame names their
 * record, -EPROTO for any other fingerprint, -EBADMSG for a frame that does not parse. On
 * success both decoders must give the same fields. */
static void check_fast_decoders(const uint8_t *rec, size_t len) {
        ControlMsg d = { .type = CONTROL_HEARTBEAT };
        ControlRpcRequest q = { .correlation_id = 4242 };
        ControlRpcResponse p = { .correlation_id = 4242 };
        Frame f;
        int r, want_q, want_p;

        r = control_decode(rec, len, &d);
        if (frame_decode(rec, len, &f) < 0)
                want_q = want_p = -EBADMSG;
        else {
                want_q = f.schema_fp == control_fingerprint(CONTROL_RPC_REQUEST) ? r : -EPROTO;
                want_p = f.schema_fp == control_fingerprint(CONTROL_RPC_RESPONSE) ? r : -EPROTO;
        }
        ck_assert_int_eq(control_decode_rpc_request(rec, len, &q), want_q);
        ck_assert_int_eq(control_decode_rpc_response(rec, len, &p), want_p);
        if (want_q == 0) {
                ck_assert_int_eq(d.type, CONTROL_RPC_REQUEST);
                ck_assert_int_eq(q.correlation_id, d.rpc_request.correlation_id);
                ck_assert_int_eq(q.caller_id, d.rpc_request.caller_id);
                ck_assert_ptr_eq(q.reply_segment.ptr, d.rpc_request.reply_segment.ptr);
                ck_assert_uint_eq(q.reply_segment.len, d.rpc_request.reply_segment.len);
                ck_assert_int_eq(q.arg_fp, d.rpc_request.arg_fp);
                ck_assert_ptr_eq(q.args.ptr, d.rpc_request.args.ptr);
                ck_assert_uint_eq(q.args.len, d.rpc_request.args.len);
        } else
                ck_assert_int_eq(q.correlation_id, 4242);       /* set only on success */
        if (want_p == 0) {
                ck_assert_int_eq(d.type, CONTROL_RPC_RESPONSE);
                ck_assert_int_eq(p.correlation_id, d.rpc_response.correlation_id);
                ck_assert_int_eq(p.status, d.rpc_response.status);
                ck_assert_ptr_eq(p.message.ptr, d.rpc_response.message.ptr);
                ck_assert_uint_eq(p.message.len, d.rpc_response.message.len);
                ck_assert_int_eq(p.result_fp, d.rpc_response.result_fp);
                ck_assert_ptr_eq(p.result.ptr, d.rpc_response.result.ptr);
                ck_assert_uint_eq(p.result.len, d.rpc_response.result.len);
        } else
                ck_assert_int_eq(p.correlation_id, 4242);
        if (r == 0)
                control_msg_done(&d);
}

/* Every record of every type, every truncation of the RPC records (header fixed up or not),
 * a trailing byte, and every single-byte change of the RPC records' bodies. */
START_TEST(test_rpc_fast_decoders) {
        for (unsigned wt = 0; wt < _CONTROL_TYPE_MAX; wt++)
                for (unsigned variant = 0; variant < N_VARIANTS; variant++) {
                        _cleanup_free_ uint8_t *full = NULL, *longer = NULL;
                        bool rpc = wt == CONTROL_RPC_REQUEST || wt == CONTROL_RPC_RESPONSE;
                        ControlMsg m;
                        size_t len, len2;

                        gen_reset(&gen, variant);
                        fill_msg(&gen, wt, n_channels_for(wt, 1), &m);
                        full = encode_exact(&m, &len);
                        check_fast_decoders(full, len);
                        if (!rpc)
                                continue;

                        for (size_t cut = 0; cut < len; cut++) {
                                _cleanup_free_ uint8_t *fixed = NULL, *raw = malloc(cut ?: 1);
                                size_t flen;

                                ck_assert_ptr_nonnull(raw);
                                memcpy(raw, full, cut);
                                check_fast_decoders(raw, cut);
                                if (cut >= FRAME_HEADER_SIZE) {
                                        fixed = make_frame(control_fingerprint(wt), full + FRAME_HEADER_SIZE,
                                                           cut - FRAME_HEADER_SIZE, &flen);
                                        check_fast_decoders(fixed, flen);
                                }
                        }
                        /* The body and one more byte. */
                        longer = malloc(len + 1);
                        ck_assert_ptr_nonnull(longer);
                        memcpy(longer, full, len);
                        longer[len] = 0;
                        {
                                _cleanup_free_ uint8_t *frame = make_frame(control_fingerprint(wt),
                                                                           longer + FRAME_HEADER_SIZE,
                                                                           len + 1 - FRAME_HEADER_SIZE, &len2);
                                check_fast_decoders(frame, len2);
                        }
                        for (size_t at = FRAME_HEADER_SIZE; at < len; at++)
                                for (unsigned v = 0; v < 256; v += 17) {
                                        uint8_t saved = full[at];

                                        full[at] = (uint8_t) v;
                                        check_fast_decoders(full, len);
                                        full[at] = saved;
                                }
                        /* The other RPC record's fingerprint on this body. */
                        unaligned_write_le64(full + 4, control_fingerprint(wt == CONTROL_RPC_REQUEST
                                                                                   ? CONTROL_RPC_RESPONSE
                                                                                   : CONTROL_RPC_REQUEST));
                        check_fast_decoders(full, len);
                }
        ck_assert_int_eq(control_decode_rpc_request(NULL, 0, &(ControlRpcRequest) {}), -EBADMSG);
        ck_assert_int_eq(control_decode_rpc_response(NULL, 0, &(ControlRpcResponse) {}), -EBADMSG);
        {
                uint8_t rec[FRAME_HEADER_SIZE];

                ck_assert_int_eq(control_decode_rpc_request(rec, sizeof(rec), NULL), -EINVAL);
                ck_assert_int_eq(control_decode_rpc_response(rec, sizeof(rec), NULL), -EINVAL);
        }
}
END_TEST

/* --- fuzz: mutated valid records, decoded in exact-size buffers --- */

#define FUZZ_ITERATIONS 200000
#define FUZZ_MAX_BODY 1024

static uint64_t rng_state;

static uint64_t rng(void) {
        /* xorshift64*: deterministic for a given TEST_SEED. */
        return test_rng_next(&rng_state);
}

static size_t rng_below(size_t n) {
        return n == 0 ? 0 : (size_t) (rng() % n);
}

static size_t mutate(uint8_t *body, size_t len, size_t cap) {
        static const uint8_t interesting[] = { 0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff };
        size_t at = rng_below(len + 1), n;

        switch (rng_below(8)) {
        case 0:
                if (len > 0)
                        body[rng_below(len)] ^= (uint8_t) (1u << rng_below(8));
                break;
        case 1:
                if (len > 0)
                        body[rng_below(len)] = interesting[rng_below(ELEMENTSOF(interesting))];
                break;
        case 2:
                if (len > 0)
                        body[rng_below(len)] = (uint8_t) rng();
                break;
        case 3:
                return rng_below(len + 1);
        case 4:
                n = 1 + rng_below(8);
                if (len + n > cap)
                        break;
                memmove(body + at + n, body + at, len - at);
                for (size_t i = 0; i < n; i++) {
                        size_t pick = rng_below(ELEMENTSOF(interesting));

                        body[at + i] = rng_below(2) ? (uint8_t) rng() : interesting[pick];
                }
                return len + n;
        case 5:
                if (at >= len)
                        break;
                n = 1 + rng_below(len - at);
                memmove(body + at, body + at + n, len - at - n);
                return len - n;
        case 6:
                /* A huge varint: lengths and counts far beyond the body. */
                n = 1 + rng_below(10);
                if (len + n > cap)
                        break;
                memmove(body + at + n, body + at, len - at);
                memset(body + at, 0xff, n);
                body[at + n - 1] = (uint8_t) (rng_below(2) ? 0x01 : 0x0f);
                return len + n;
        case 7:
                /* Repeat a chunk, as a second array block would. */
                if (len == 0)
                        break;
                n = 1 + rng_below(len < 32 ? len : 32);
                if (len + n > cap)
                        break;
                {
                        size_t from = rng_below(len - n + 1);
                        uint8_t chunk[32];

                        memcpy(chunk, body + from, n);
                        memmove(body + at + n, body + at, len - at);
                        memcpy(body + at, chunk, n);
                }
                return len + n;
        }
        return len;
}

START_TEST(test_fuzz) {
        enum { N_SEEDS = _CONTROL_TYPE_MAX * N_VARIANTS + 2 * N_VARIANTS };
        struct {
                uint8_t *bytes;
                size_t len;
                ControlType wt;
        } seeds[N_SEEDS];
        size_t n_seeds = 0, accepted = 0;
        uint8_t body[FUZZ_MAX_BODY];

        /* A splitmix64 step spreads nearby seeds apart; xorshift needs a nonzero state. */
        rng_state = test_seed() + UINT64_C(0x9e3779b97f4a7c15);
        rng_state = (rng_state ^ (rng_state >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        rng_state = (rng_state ^ (rng_state >> 27)) * UINT64_C(0x94d049bb133111eb);
        rng_state ^= rng_state >> 31;
        if (rng_state == 0)
                rng_state = 1;

        for (unsigned wt = 0; wt < _CONTROL_TYPE_MAX; wt++)
                for (unsigned v = 0; v < N_VARIANTS; v++)
                        for (unsigned k = 0; k < (wt == CONTROL_CHANNEL_LIST ? 3u : 1u); k++) {
                                ControlMsg m;

                                ck_assert_uint_lt(n_seeds, N_SEEDS);
                                gen_reset(&gen, v);
                                fill_msg(&gen, wt, n_channels_for(wt, k), &m);
                                seeds[n_seeds].bytes = encode_exact(&m, &seeds[n_seeds].len);
                                seeds[n_seeds].wt = wt;
                                ck_assert_uint_le(seeds[n_seeds].len - FRAME_HEADER_SIZE,
                                                  FUZZ_MAX_BODY);
                                n_seeds++;
                        }

        for (unsigned it = 0; it < FUZZ_ITERATIONS; it++) {
                size_t s = rng_below(n_seeds), len = seeds[s].len - FRAME_HEADER_SIZE, rec_len;
                unsigned rounds = 1 + (unsigned) rng_below(4);
                ControlType wt = seeds[s].wt;
                _cleanup_free_ uint8_t *rec = NULL;
                ControlMsg d;
                int r;

                memcpy(body, seeds[s].bytes + FRAME_HEADER_SIZE, len);
                for (unsigned i = 0; i < rounds; i++)
                        len = mutate(body, len, sizeof(body));
                /* Sometimes read the body as another record type. */
                if (rng_below(8) == 0)
                        wt = (ControlType) rng_below(_CONTROL_TYPE_MAX);

                rec = make_frame(control_fingerprint(wt), body, len, &rec_len);
                /* Sometimes the header is damaged too. */
                if (rng_below(16) == 0)
                        rec[rng_below(FRAME_HEADER_SIZE)] ^= (uint8_t) (1u << rng_below(8));

                /* The RPC path's decoders agree with the tables on every record. */
                check_fast_decoders(rec, rec_len);
                r = control_decode(rec, rec_len, &d);
                ck_assert_msg(r == 0 || r == -EBADMSG || r == -EPROTO,
                              "iteration %u: decode returned %d", it, r);
                if (r < 0)
                        continue;
                accepted++;

                /* What decodes is canonical: encoding it again gives the record back, except
                 * that arrays come back as one block. */
                {
                        _cleanup_free_ uint8_t *again = NULL;
                        size_t len2;

                        if (d.type == CONTROL_CHANNEL_LIST)
                                for (size_t i = 0; i < d.channel_list.n_channels; i++) {
                                        ck_assert(text_inside(d.channel_list.channels[i].name,
                                                              rec, rec_len));
                                        ck_assert(text_inside(d.channel_list.channels[i].owner_app,
                                                              rec, rec_len));
                                }
                        again = encode_exact(&d, &len2);
                        /* Skips the flags byte, which decode ignores and encode zeroes. */
                        if (d.type != CONTROL_CHANNEL_LIST) {
                                ck_assert_uint_eq(len2, rec_len);
                                ck_assert_msg(memcmp(again, rec, 3) == 0 &&
                                              memcmp(again + 4, rec + 4, rec_len - 4) == 0,
                                              "iteration %u: not canonical", it);
                        }
                }
                control_msg_done(&d);
        }
        printf("# fuzz: %u records, %zu accepted\n", FUZZ_ITERATIONS, accepted);

        for (size_t i = 0; i < n_seeds; i++)
                free(seeds[i].bytes);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("control");
        TCase *tc;

        tc = tcase_create("schemas");
        tcase_add_test(tc, test_schemas_check);
        tcase_add_test(tc, test_fingerprints);
        tcase_add_test(tc, test_status_names);
        suite_add_tcase(s, tc);

        tc = tcase_create("codec");
        tcase_add_loop_test(tc, test_avro_c_cross_check, 0, _CONTROL_TYPE_MAX);
        tcase_add_loop_test(tc, test_round_trip, 0, _CONTROL_TYPE_MAX);
        tcase_add_test(tc, test_older_forms);
        tcase_add_test(tc, test_encode_errors);
        tcase_add_test(tc, test_rpc_fast_encoders);
        suite_add_tcase(s, tc);

        tc = tcase_create("malformed");
        tcase_add_loop_test(tc, test_truncations, 0, _CONTROL_TYPE_MAX);
        tcase_add_loop_test(tc, test_trailing_bytes, 0, _CONTROL_TYPE_MAX);
        tcase_add_test(tc, test_bad_frames);
        tcase_add_test(tc, test_malformed_fields);
        tcase_add_test(tc, test_malformed_arrays);
        tcase_add_test(tc, test_rpc_fast_decoders);
        suite_add_tcase(s, tc);

        tc = tcase_create("fuzz");
        /* Generous: the same loop runs under valgrind and ASan. */
        tcase_set_timeout(tc, 600);
        tcase_add_test(tc, test_fuzz);
        suite_add_tcase(s, tc);
        return s;
}
