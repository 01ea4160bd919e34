/* SPDX-License-Identifier: MIT */
/*
 * A client's connection as the broker sees it: its reply segment (opened by the name it sent,
 * checked to belong to this bus, to be a ring, and to be owned by the user running its pid) and
 * the replies the broker sends there. A reply never blocks the broker: a full or broken reply
 * ring costs that client its reply, nobody else anything.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "broker-internal.h"

/* Opens, maps and checks the reply segment `name`; fills c->reply_seg (mapped, its descriptor
 * already closed), c->reply, c->uid, c->reply_dev and c->reply_ino. With pid > 0 the process
 * must exist and run as the segment's owner. On failure c->reply_seg is SEGMENT_NULL.
 * The client's doing: -EINVAL bad name, -ENOENT missing, -EBADMSG not a ring, -EPERM owner
 * mismatch, -ESRCH no pid. The broker's (broker_is_resource_error()): -EMFILE, -ENFILE,
 * -ENOMEM. */
int clients_open_reply(Broker *b, Client *c, const char *name, pid_t pid);
/* Sends m to c without waiting. 0 sent, -EAGAIN dropped (ring full, counted and logged),
 * -EFAULT the segment was truncated under us (the caller reaps the client), other negative
 * errno for an encoding failure. */
int clients_send(Broker *b, Client *c, const ControlMsg *m);
/* Picks a fresh, unguessable, non-zero client id (v1 requests name their client by id alone,
 * so a sequential id would let any process act for others). */
uint64_t clients_new_id(Broker *b);
