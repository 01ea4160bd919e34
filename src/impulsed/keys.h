/* SPDX-License-Identifier: MIT */
/*
 * Access keys: argon2id hashing and verification (libsodium crypto_pwhash_str*) on a worker
 * thread, with completions delivered in the sd-event loop, so the loop keeps serving other
 * clients while a key is checked. Plaintext keys are copied into locked, wiped memory and
 * never stored or logged. Clients that keep sending wrong keys are rate-limited.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

typedef struct Keys Keys;

typedef enum KeysCost {
        KEYS_COST_MIN,          /* libsodium's minimum: tests and tiny machines */
        KEYS_COST_INTERACTIVE,  /* crypto_pwhash_*_INTERACTIVE: the default */
        KEYS_COST_MODERATE,
} KeysCost;

/* "min", "interactive", "moderate"; -EINVAL otherwise. */
int keys_cost_from_string(const char *s, KeysCost *ret);

int keys_new(Keys **ret, sd_event *event, KeysCost cost);
/* Cancels pending work (its callbacks are not called) and joins the worker. Callable from a
 * completion callback. */
Keys *keys_free(Keys *k);

/* r: 0 and a malloc'd argon2id string in hash (callee owns it), or a negative errno. */
typedef void (*KeysHashDone)(int r, char *hash, void *userdata);
/* r: 1 the key matches, 0 it does not (or the client is rate-limited: then also -EBUSY is
 * possible), negative errno on failure. */
typedef void (*KeysVerifyDone)(int r, void *userdata);

/* The longest key accepted (-EMSGSIZE beyond): every copy is locked, guarded memory. */
#define KEYS_KEY_MAX 1024
/* Jobs accepted but not yet delivered to their callback; -EBUSY beyond. */
#define KEYS_JOBS_MAX 256

/* Both copy key (len bytes) and wipe their copy after use. The callback runs later from the
 * event loop, never from inside the call. -EBUSY if too much work is queued. */
int keys_hash_async(Keys *k, const char *key, size_t len, KeysHashDone done, void *userdata);
/* Verification on behalf of client_id: a client over its failure budget (wrong keys, and
 * verifications still in flight) gets done(-EBUSY) without any hashing (and one warning log
 * entry per rate-limit period). A malformed hash is -EINVAL. */
int keys_verify_async(Keys *k, uint64_t client_id, const char *hash, const char *key, size_t len,
                      KeysVerifyDone done, void *userdata);
/* Drops the per-client failure record (client gone). */
void keys_forget_client(Keys *k, uint64_t client_id);
