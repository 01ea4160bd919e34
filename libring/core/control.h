/* SPDX-License-Identifier: MIT */
/*
 * The v1 control-plane records (spec/wire-format.md, "Control records"; schemas/control.avsc):
 * typed C structs, their Avro binary encoding, and the framing that identifies each record by
 * the fingerprint of its schema. Decoded strings are views into the decoded record's bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "avrobin.h"
#include "frame.h"

typedef enum ControlType {
        CONTROL_REGISTER,
        CONTROL_REGISTER_REPLY,
        CONTROL_UNREGISTER,
        CONTROL_PUBLISH_CHANNEL,
        CONTROL_PUBLISH_REPLY,
        CONTROL_LIST_CHANNELS,
        CONTROL_CHANNEL_LIST,
        CONTROL_SUBSCRIBE,
        CONTROL_SUBSCRIBE_REPLY,
        CONTROL_EXPOSE_FUNCTION,
        CONTROL_EXPOSE_REPLY,
        CONTROL_LOOKUP_FUNCTION,
        CONTROL_LOOKUP_REPLY,
        CONTROL_HEARTBEAT,
        CONTROL_RPC_REQUEST,
        CONTROL_RPC_RESPONSE,
        /* The older forms that v1 peers may still send: Register without pid, ExposeFunction
         * without req_arena_cap. They decode into the current struct with the field at 0. */
        CONTROL_REGISTER_V0,
        CONTROL_EXPOSE_FUNCTION_V0,
        _CONTROL_TYPE_MAX,
} ControlType;

/* v1 status codes carried in replies. */
typedef enum ControlStatus {
        CONTROL_STATUS_OK = 0,
        CONTROL_STATUS_NOT_FOUND = 1,
        CONTROL_STATUS_DENIED = 2,
        CONTROL_STATUS_SCHEMA_MISMATCH = 3,
        CONTROL_STATUS_INTERNAL = 4,
        CONTROL_STATUS_EXISTS = 5,
} ControlStatus;

typedef struct ControlRegister {
        int64_t correlation_id;
        Text app_name;
        int64_t nonce;
        Text reply_segment;
        int64_t heartbeat_ms;
        int64_t pid;            /* 0 when sent in the older form */
} ControlRegister;

typedef struct ControlRegisterReply {
        int64_t correlation_id;
        int64_t client_id;
        int32_t status;
        Text message;
} ControlRegisterReply;

typedef struct ControlUnregister {
        int64_t correlation_id;
        int64_t client_id;
} ControlUnregister;

typedef struct ControlPublishChannel {
        int64_t correlation_id;
        int64_t client_id;
        Text channel;
        Text schema_json;
        Text access_key;
} ControlPublishChannel;

typedef struct ControlPublishReply {
        int64_t correlation_id;
        int64_t channel_id;
        int64_t schema_fp;
        Text arena;
        int32_t status;
        Text message;
} ControlPublishReply;

typedef struct ControlListChannels {
        int64_t correlation_id;
        int64_t client_id;
} ControlListChannels;

typedef struct ControlChannelInfo {
        int64_t channel_id;
        Text name;
        Text owner_app;
        int64_t schema_fp;
        bool requires_key;
} ControlChannelInfo;

typedef struct ControlChannelList {
        int64_t correlation_id;
        size_t n_channels;
        ControlChannelInfo *channels;   /* decoded: malloc'd, freed by control_msg_done() */
} ControlChannelList;

typedef struct ControlSubscribe {
        int64_t correlation_id;
        int64_t client_id;
        int64_t channel_id;
        Text access_key;
        int64_t expected_fp;
} ControlSubscribe;

typedef struct ControlSubscribeReply {
        int64_t correlation_id;
        Text arena;
        int64_t schema_fp;
        int32_t status;
        Text message;
} ControlSubscribeReply;

typedef struct ControlExposeFunction {
        int64_t correlation_id;
        int64_t client_id;
        Text fn_name;
        Text req_schema_json;
        Text resp_schema_json;
        Text access_key;
        int64_t req_arena_cap;  /* 0 = broker default, and when sent in the older form */
} ControlExposeFunction;

/* ExposeReply and LookupReply have the same fields. */
typedef struct ControlFunctionReply {
        int64_t correlation_id;
        int64_t fn_id;
        int64_t req_fp;
        int64_t resp_fp;
        Text req_arena;
        int32_t status;
        Text message;
} ControlFunctionReply;

typedef struct ControlLookupFunction {
        int64_t correlation_id;
        int64_t client_id;
        Text fn_name;
        Text access_key;
} ControlLookupFunction;

typedef struct ControlHeartbeat {
        int64_t correlation_id;
        int64_t client_id;
        int64_t seq;
} ControlHeartbeat;

typedef struct ControlRpcRequest {
        int64_t correlation_id;
        int64_t caller_id;
        Text reply_segment;
        int64_t arg_fp;
        Text args;
} ControlRpcRequest;

typedef struct ControlRpcResponse {
        int64_t correlation_id;
        int32_t status;
        Text message;
        int64_t result_fp;
        Text result;
} ControlRpcResponse;

typedef struct ControlMsg {
        /* The record kind. Decoding an older form gives CONTROL_REGISTER or
         * CONTROL_EXPOSE_FUNCTION here and the older type in wire_type. */
        ControlType type;
        ControlType wire_type;  /* what travels: set by decode; for encode, 0 means "type" */
        union {
                ControlRegister reg;
                ControlRegisterReply register_reply;
                ControlUnregister unregister;
                ControlPublishChannel publish;
                ControlPublishReply publish_reply;
                ControlListChannels list_channels;
                ControlChannelList channel_list;
                ControlSubscribe subscribe;
                ControlSubscribeReply subscribe_reply;
                ControlExposeFunction expose;
                ControlFunctionReply expose_reply;
                ControlLookupFunction lookup;
                ControlFunctionReply lookup_reply;
                ControlHeartbeat heartbeat;
                ControlRpcRequest rpc_request;
                ControlRpcResponse rpc_response;
        };
} ControlMsg;

/* Schema name ("ring.proto.Register"...) of a wire type; NULL if out of range. */
const char *control_type_name(ControlType t);
/* The fingerprint of a wire type's schema (computed once from schemas/control.avsc). */
uint64_t control_fingerprint(ControlType t);
/* Wire type for a fingerprint; -EPROTO if it is no control record. */
int control_type_from_fingerprint(uint64_t fp, ControlType *ret);

/* 0 once the schemas embedded from schemas/control.avsc have parsed, have 18 distinct
 * fingerprints and match, record by record and field by field, the C tables control.c encodes
 * and decodes with. Otherwise the negative errno (-EPROTO: schemas and code disagree, a build
 * bug the unit test reports; -ENOMEM) with which, from then on, control_encode() fails, every
 * fingerprint reads 0 and control_decode() answers -EPROTO; *ret_error, if ret_error is not
 * NULL, then names the first difference (static text). Computed once, thread-safe. */
int control_schemas_check(const char **ret_error);

/* Bytes control_encode() needs for m, frame header included; 0 for a bad type. */
size_t control_encoded_size(const ControlMsg *m);
/* Writes m as a complete frame into buf. Returns bytes written, -EMSGSIZE if size is too
 * small, -EINVAL for a bad type (or a Text with NULL ptr and nonzero len, or channels NULL
 * with n_channels > 0), or the error of control_schemas_check(). */
int control_encode(const ControlMsg *m, uint8_t *buf, size_t size);
/* Decodes one ring record (frame + body) into ret: -EBADMSG for a malformed frame or body
 * (truncated, negative or oversize lengths, trailing bytes), -EPROTO for an unknown
 * fingerprint. Strings in ret point into record, which must outlive ret. */
int control_decode(const void *record, size_t len, ControlMsg *ret);
/* Frees what decode allocated (ChannelList entries); safe to call twice. */
void control_msg_done(ControlMsg *m);

/* ---- RpcRequest and RpcResponse on the call path ----
 * The same bytes and the same verdicts as control_encode() / control_decode() for these two
 * records, without walking the field tables or building a ControlMsg: every RPC makes one of
 * each, and the tables cost more than the call's own bookkeeping. */

/* Room for the constant fields of an RpcRequest or RpcResponse. */
#define CONTROL_RPC_CONST_MAX 192

/* The fields between correlation_id and the data (an RpcRequest's args, an RpcResponse's
 * result) that stay the same from call to call: caller_id, reply_segment and arg_fp of one
 * caller's requests to one function; status OK, no message and result_fp of one function's
 * successful responses. Encoded once, by control_rpc_request_const() or
 * control_rpc_response_ok_const(). */
typedef struct ControlRpcConst {
        uint64_t frame_fp;              /* the record schema's fingerprint */
        size_t len;
        uint8_t bytes[CONTROL_RPC_CONST_MAX];
} ControlRpcConst;

/* Room for the frame header and the fields control_rpc_head() writes. */
#define CONTROL_RPC_HEAD_MAX (FRAME_HEADER_SIZE + AVROBIN_LONG_MAX + CONTROL_RPC_CONST_MAX + AVROBIN_LONG_MAX)
/* Room for the frame header and the fields control_rpc_response_head() writes with a
 * message of message_len bytes. */
#define CONTROL_RPC_RESPONSE_HEAD_MAX(message_len) (FRAME_HEADER_SIZE + 5 * AVROBIN_LONG_MAX + (message_len))

/* Encode the constant fields. -EMSGSIZE if reply_segment does not fit, -EINVAL for a NULL view
 * of nonzero length, or the error of control_schemas_check(). */
int control_rpc_request_const(int64_t caller_id, Text reply_segment, int64_t arg_fp, ControlRpcConst *ret);
int control_rpc_response_ok_const(int64_t result_fp, ControlRpcConst *ret);
/* Writes the frame header and every field before the data's bytes, the data's length
 * included, into buf (CONTROL_RPC_HEAD_MAX bytes); the data_len bytes of data follow them in
 * the record. Returns the bytes written, or -EMSGSIZE if the record would be too long for a
 * frame. */
int control_rpc_head(const ControlRpcConst *k, int64_t correlation_id, size_t data_len, uint8_t *buf);
/* The same for an RpcResponse, whose result (result_len bytes) follows. -EMSGSIZE if size is
 * less than CONTROL_RPC_RESPONSE_HEAD_MAX(message.len) or the record would be too long for a
 * frame, -EINVAL for a NULL view of nonzero length, or the error of control_schemas_check(). */
int control_rpc_response_head(int64_t correlation_id, int32_t status, Text message, int64_t result_fp,
                              size_t result_len, uint8_t *buf, size_t size);

/* control_decode() of a record that should be an RpcRequest / RpcResponse: the same fields
 * (views into record), the same -EBADMSG for malformed frames and bodies (trailing bytes
 * included); -EPROTO for any other fingerprint, whether or not another control record's. */
int control_decode_rpc_request(const void *record, size_t len, ControlRpcRequest *ret);
int control_decode_rpc_response(const void *record, size_t len, ControlRpcResponse *ret);

/* The v1 status code name ("OK", "NOT_FOUND", ...), or "UNKNOWN". */
const char *control_status_name(int32_t status);
