/* SPDX-License-Identifier: MIT */
/*
 * Serving the v1 control plane: one decoded submission at a time, with the v1 status codes and
 * a human-readable message on every error (spec/bootstrap.md, "Requests"). Requests that need
 * an access key checked continue asynchronously when the key worker answers.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "broker-internal.h"

/* Serves one record popped from the submission ring (record stays valid during the call). */
void requests_serve(Broker *b, const uint8_t *record, size_t len);
/* Frees requests still waiting for the key worker (after keys_free() cancelled them). */
void requests_free_pending(Broker *b);
