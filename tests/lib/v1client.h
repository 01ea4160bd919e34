/* SPDX-License-Identifier: MIT */
/*
 * A raw wire-format v1 client for system tests, built only on the wire core (libring/core),
 * never on libring's public API: it maps a bus's control segment, owns a reply segment, sends
 * any ControlMsg (current or older form) or arbitrary bytes into the submission ring, and
 * waits for the reply with a given correlation_id. Hostile-input tests reach the raw rings and
 * segments through the struct. It never asserts: every call returns a negative errno, so
 * forked helper processes can use it too.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "control.h"
#include "names.h"
#include "ringbuf.h"
#include "segment.h"
#include "time-util.h"

/* Control segment header (ring-wire-v1 "Control segment"): "IMPRING\0" read as a
 * little-endian u64, version, broker pid, epoch; the submission ring starts at byte 64. */
#define V1CLIENT_CONTROL_MAGIC UINT64_C(0x00474E4952504D49)
#define V1CLIENT_CONTROL_VERSION 1
#define V1CLIENT_SUBMISSION_OFFSET 64

#define V1CLIENT_TIMEOUT_NS ((int64_t) (5 * NSEC_PER_SEC))
#define V1CLIENT_REPLY_CAPACITY (UINT32_C(64) * 1024)

typedef struct V1Client {
        BusNames bus;
        Segment control;                /* the bus's control segment, mapped read-write */
        RingBuf submit;                 /* producer handle on the submission ring */
        uint32_t broker_pid;            /* as read from the control segment at open */
        uint64_t epoch;
        Segment reply_seg;              /* our reply segment: created here, unlinked by close */
        RingBuf reply;                  /* consumer handle on the ring at offset 0 of reply_seg */
        uint64_t nonce;
        int64_t client_id;              /* from the last RegisterReply with status OK, else 0 */
        int64_t next_cid;               /* next correlation_id v1client_next_cid() hands out */
        uint64_t stray_replies;         /* replies dropped while waiting for another correlation_id */
} V1Client;

#define V1CLIENT_NULL ((V1Client) { .control = SEGMENT_NULL, .reply_seg = SEGMENT_NULL })

/* A received reply. msg's strings point into buf, which the reply owns: keep the V1Reply alive
 * while msg is used, then release both with v1client_reply_done(). */
typedef struct V1Reply {
        ControlMsg msg;
        uint8_t *buf;                   /* the popped record: frame header and Avro body */
        size_t len;
} V1Reply;

#define V1REPLY_NULL ((V1Reply) {})

/* Reads the control segment of bus: 0 with broker_pid and epoch when it has the magic and
 * version 1 (either output may be NULL), -ENOENT if there is none, -EBADMSG if it is not (or
 * not yet) a ready v1 control segment. Maps it only for the duration of the call. */
int v1client_probe(const BusNames *bus, uint32_t *ret_broker_pid, uint64_t *ret_epoch);

/* Maps the control segment of bus (NULL: $RING_BUS), attaches to the submission ring and
 * creates a reply segment "/<prefix>.cli.<random nonce>.v1" (mode 0600) holding an empty ring
 * of reply_capacity bytes (0: V1CLIENT_REPLY_CAPACITY). Does not register.
 * -ENOENT/-EBADMSG: no ready broker on that bus. */
int v1client_open(V1Client *ret, const char *bus, uint32_t reply_capacity);
/* What a v1 connector does when the epoch changed (broker restart): maps the bus's control
 * segment again, keeps its reply segment, and forgets its client_id (register again). */
int v1client_reopen_control(V1Client *c);
/* Sends Unregister if registered (never waits for ring space), unmaps everything and unlinks
 * the reply segment. Safe on V1CLIENT_NULL and twice. */
void v1client_close(V1Client *c);

/* Frees what a reply owns; safe on V1REPLY_NULL and twice. */
void v1client_reply_done(V1Reply *r);
/* The status and message of any reply record that carries them; -1 and "" otherwise
 * (ChannelList has neither). */
int32_t v1client_reply_status(const V1Reply *r);
Text v1client_reply_message(const V1Reply *r);

/* A fresh correlation_id (1, 2, ...). */
int64_t v1client_next_cid(V1Client *c);
/* The correlation_id field of any control record (every record starts with it). */
int64_t v1client_msg_cid(const ControlMsg *m);

/* Encodes m (its wire_type selects an older form) as one frame and pushes it into the
 * submission ring, waiting up to V1CLIENT_TIMEOUT_NS for space and the producer lock. */
int v1client_send(V1Client *c, const ControlMsg *m);
/* Pushes len arbitrary bytes as one record, timeout as for ringbuf_push(). */
int v1client_push_raw(V1Client *c, const void *bytes, size_t len, int64_t timeout_ns);
/* Waits up to timeout_ns for the reply whose correlation_id is correlation_id (< 0: any
 * reply); replies with other ids are dropped and counted in stray_replies. -ETIMEDOUT if none
 * came; -EBADMSG/-EPROTO if the broker sent something that does not decode. */
int v1client_recv(V1Client *c, int64_t correlation_id, int64_t timeout_ns, V1Reply *ret);
/* Sends m after giving it a fresh correlation_id (written back into m), then receives its
 * reply within V1CLIENT_TIMEOUT_NS. */
int v1client_call(V1Client *c, ControlMsg *m, V1Reply *ret);

/* One call per request type: fills the record from the arguments and the client's client_id,
 * and returns its reply (status inside). NULL strings are sent as "". Register (both forms)
 * names this client's reply segment and nonce and, on status OK, stores client_id. */
int v1client_register(V1Client *c, const char *app, int64_t heartbeat_ms, int64_t pid, V1Reply *ret);
int v1client_register_v0(V1Client *c, const char *app, int64_t heartbeat_ms, V1Reply *ret);
int v1client_publish(V1Client *c, const char *channel, const char *schema_json, const char *key,
                     V1Reply *ret);
int v1client_list_channels(V1Client *c, V1Reply *ret);
int v1client_subscribe(V1Client *c, int64_t channel_id, const char *key, int64_t expected_fp,
                       V1Reply *ret);
int v1client_expose(V1Client *c, const char *fn, const char *req_schema, const char *resp_schema,
                    const char *key, int64_t req_arena_cap, V1Reply *ret);
int v1client_expose_v0(V1Client *c, const char *fn, const char *req_schema, const char *resp_schema,
                       const char *key, V1Reply *ret);
int v1client_lookup(V1Client *c, const char *fn, const char *key, V1Reply *ret);
/* v1 has no reply to Unregister or Heartbeat: these only send. Unregister clears client_id. */
int v1client_unregister(V1Client *c);
int v1client_heartbeat(V1Client *c, int64_t seq);
