/* SPDX-License-Identifier: MIT */
/*
 * libring: the C client library of Ring, a cross-language IPC bus over POSIX shared memory.
 * Messages and RPC arguments are Apache Avro; a schema's identity is its CRC-64-AVRO
 * fingerprint, checked when a channel or function is opened and again on every message.
 *
 * This is the only installed header. It shows no struct layout and no inline code, so that
 * connectors in other languages can bind to it through a plain FFI. See libring(3).
 *
 * Errors: every fallible call returns a negative errno-style code (see ring_strerror()):
 *   -EINVAL     bad argument             -ENOTCONN   broker not running / gone
 *   -ENOENT     no such channel/function -ECONNRESET the peer (publisher, service) went away
 *   -EACCES     access key refused       -ETIMEDOUT  the timeout passed
 *   -EPROTO     schema fingerprint mismatch          -EAGAIN     would block (timeout 0)
 *   -EEXIST     name already taken       -EMSGSIZE   message too big for the ring / buffer
 *   -EREMOTEIO  the broker or the remote handler failed
 *   -EBADMSG    malformed data (bad Avro, corrupt frame)
 * For a failed control call the broker's own explanation is in ring_last_error_message().
 *
 * Timeouts are in milliseconds: 0 never waits, a negative value waits without limit.
 *
 * Threads: a ring_conn and everything opened from it may be used from several threads unless a
 * function says otherwise; a ring_pub, ring_sub and ring_fn each serve one thread at a time.
 */
#ifndef RING_H
#define RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* avro-c's value type (avro_value_t from <avro.h>); libring never needs its layout here. */
struct avro_value;

typedef struct ring_conn ring_conn;
typedef struct ring_pub ring_pub;
typedef struct ring_sub ring_sub;
typedef struct ring_fn ring_fn;
typedef struct ring_rpc ring_rpc;

/* ---- library ---- */

/* The version of the library that is running, e.g. "0.1.0". Thread-safe; never NULL. */
const char *ring_version(void);
/* A static description of error (negative or positive errno value). Thread-safe. */
const char *ring_strerror(int error);
/* The broker's or remote handler's message for the last call on this thread that failed with a
 * status from the bus (-ENOENT, -EACCES, -EPROTO, -EEXIST, -EREMOTEIO); "" if there is none.
 * Valid until the next libring call on this thread. */
const char *ring_last_error_message(void);
/* CRC-64-AVRO fingerprint of the Avro schema in schema_json (Parsing Canonical Form).
 * -EINVAL if the schema does not parse; ring_last_error_message() says why. */
int ring_schema_fingerprint(const char *schema_json, uint64_t *ret_fingerprint);

/* ---- connection ---- */

/* Attaches to the bus ($RING_BUS, or the default bus) and registers as app_name. Waits up to
 * timeout_ms for the broker's answer; -ENOTCONN at once if no broker runs. */
int ring_conn_open(const char *app_name, int timeout_ms, ring_conn **ret);
/* Unregisters, stops serving, frees everything opened from conn (NULL is fine). Not to be
 * called while other threads still use conn. */
void ring_conn_close(ring_conn *conn);
/* The id the broker gave this connection (changes when it re-registers after a restart). */
uint64_t ring_conn_client_id(const ring_conn *conn);
/* How many times the connection re-registered after the broker restarted. */
unsigned ring_conn_reconnects(const ring_conn *conn);

/* A file descriptor that becomes readable when ring_conn_dispatch() has work: requests for
 * exposed functions, completions of asynchronous calls, messages on subscriptions opened with
 * ring_sub_set_callback(). Add it to epoll, sd-event, libuv or GLib. Owned by conn. */
int ring_conn_fd(ring_conn *conn);
/* Does all work that is ready without blocking: runs handlers and callbacks in this thread.
 * Returns how many it ran. One thread at a time per connection. */
int ring_conn_dispatch(ring_conn *conn);
/* Dispatches until ring_conn_stop() (from a handler or another thread); sleeps when idle.
 * Returns 0 after a stop, or a negative error. */
int ring_conn_run(ring_conn *conn);
/* Makes ring_conn_run() return. Thread-safe and async-signal-safe. */
void ring_conn_stop(ring_conn *conn);

/* ---- publishing ---- */

/* Publishes channel with the Avro schema schema_json; subscribers must present access_key
 * (NULL or "" for none). -EEXIST if a live client already publishes the name. */
int ring_pub_open(ring_conn *conn, const char *channel, const char *schema_json, const char *access_key,
                  ring_pub **ret);
/* Sends one message: an avro-c value of the channel's schema, or Avro binary bytes the caller
 * encoded. A full channel applies backpressure: waits up to timeout_ms for space (-ETIMEDOUT,
 * or -EAGAIN with 0). Nothing is ever dropped silently. */
int ring_pub_send(ring_pub *pub, const struct avro_value *value, int timeout_ms);
int ring_pub_send_raw(ring_pub *pub, const void *avro_bytes, size_t len, int timeout_ms);
/* Initialises value as a fresh avro-c value of the channel's schema, the cheapest kind to send;
 * the caller frees it with avro_value_decref(). Since LIBRING_0.2. */
int ring_pub_new_value(ring_pub *pub, struct avro_value *value);
/* The fingerprint of the channel's schema. */
uint64_t ring_pub_fingerprint(const ring_pub *pub);
void ring_pub_close(ring_pub *pub);

/* ---- subscribing ---- */

/* Subscribes to the channel named channel (resolved through the broker's channel list),
 * expecting schema_json: -ENOENT if nobody publishes it, -EPROTO if its schema differs,
 * -EACCES if access_key is refused, -EEXIST if it already has a subscriber. */
int ring_sub_open(ring_conn *conn, const char *channel, const char *schema_json, const char *access_key,
                  ring_sub **ret);
/* Receives one message into value (a value of the subscription's schema; see
 * ring_sub_new_value()) or, raw, its Avro bytes into buf (returns the length; -EMSGSIZE if
 * size is too small, the message stays). Every message's fingerprint is checked (-EPROTO).
 * -ETIMEDOUT / -EAGAIN when nothing came in time; -ECONNRESET once when the broker restarted
 * (messages in flight may be lost): call ring_sub_resubscribe(). */
int ring_sub_recv(ring_sub *sub, struct avro_value *value, int timeout_ms);
int ring_sub_recv_raw(ring_sub *sub, void *buf, size_t size, int timeout_ms);
/* Initialises value as a fresh avro-c value of the subscription's schema; the caller frees it
 * with avro_value_decref(). */
int ring_sub_new_value(ring_sub *sub, struct avro_value *value);
/* Resolves the channel by name again and subscribes to it (after -ECONNRESET). */
int ring_sub_resubscribe(ring_sub *sub, int timeout_ms);
/* Instead of ring_sub_recv(): have ring_conn_dispatch() call callback with each message's
 * Avro bytes (valid during the call). NULL turns it off. */
typedef void (*ring_sub_callback)(ring_sub *sub, const void *avro_bytes, size_t len, void *userdata);
int ring_sub_set_callback(ring_sub *sub, ring_sub_callback callback, void *userdata);
uint64_t ring_sub_fingerprint(const ring_sub *sub);
void ring_sub_close(ring_sub *sub);

/* ---- exposing functions ---- */

/* A handler gets the request's Avro bytes and writes the response's Avro bytes into resp
 * (resp_size bytes available). It returns the response length, or a negative error that the
 * caller receives as -EREMOTEIO (with ring_strerror()'s text as the message). It runs in the
 * thread that calls ring_conn_dispatch()/ring_conn_run() or ring_fn_serve(). */
typedef int (*ring_fn_handler)(const void *req, size_t req_len, void *resp, size_t resp_size, void *userdata);
/* The same with avro-c values of the function's request and response schemas. */
typedef int (*ring_fn_value_handler)(const struct avro_value *req, struct avro_value *resp, void *userdata);

/* Exposes function name with request and response schemas; callers must present access_key
 * (NULL or "" for none). Requests are served by ring_conn_dispatch()/ring_conn_run(), or by a
 * thread of the caller's in ring_fn_serve(). */
int ring_fn_expose(ring_conn *conn, const char *name, const char *req_schema, const char *resp_schema,
                   const char *access_key, ring_fn_handler handler, void *userdata, ring_fn **ret);
int ring_fn_expose_value(ring_conn *conn, const char *name, const char *req_schema, const char *resp_schema,
                         const char *access_key, ring_fn_value_handler handler, void *userdata, ring_fn **ret);
/* Serves this function's requests in the calling thread until timeout_ms passes without one,
 * or ring_conn_stop(); returns how many it served. For a dedicated service thread: the lowest
 * latency path. */
int ring_fn_serve(ring_fn *fn, int timeout_ms);
void ring_fn_close(ring_fn *fn);

/* ---- calling functions ---- */

/* Looks function name up and checks its schemas against req_schema/resp_schema (-EPROTO),
 * presenting access_key (-EACCES). */
int ring_rpc_open(ring_conn *conn, const char *name, const char *req_schema, const char *resp_schema,
                  const char *access_key, ring_rpc **ret);
/* Calls and waits up to timeout_ms for the response. Raw: returns the response length (in resp,
 * resp_size bytes available). Errors: -ETIMEDOUT, -ECONNRESET (the service went away),
 * -ENOTCONN (the broker restarted: call again, the connection re-registers by itself),
 * -EREMOTEIO (the handler failed; ring_last_error_message() has its message). Thread-safe:
 * many calls may be in flight on one ring_rpc from several threads. */
int ring_rpc_call_raw(ring_rpc *rpc, const void *req, size_t req_len, void *resp, size_t resp_size,
                      int timeout_ms);
int ring_rpc_call(ring_rpc *rpc, const struct avro_value *req, struct avro_value *resp, int timeout_ms);
/* Starts a call and returns; done runs later from ring_conn_dispatch() with the response bytes
 * (valid during the call) or an error and the message (NULL when there is none). */
typedef void (*ring_rpc_done)(int error, const void *resp, size_t resp_len, const char *message,
                              void *userdata);
int ring_rpc_call_async(ring_rpc *rpc, const void *req, size_t req_len, int timeout_ms, ring_rpc_done done,
                        void *userdata);
/* Initialises value as a fresh avro-c value of the function's response (or request) schema. */
int ring_rpc_new_response(ring_rpc *rpc, struct avro_value *value);
int ring_rpc_new_request(ring_rpc *rpc, struct avro_value *value);
/* Asynchronous calls still pending complete with -ECANCELED before it returns. */
void ring_rpc_close(ring_rpc *rpc);

#ifdef __cplusplus
}
#endif

#endif
