/* SPDX-License-Identifier: MIT */
/*
 * Noticing dead clients and reclaiming what they held (spec/bootstrap.md, "Liveness"): a pidfd
 * per client with a pid, heartbeat expiry for older v1 clients that sent pid 0, and the
 * client's cgroup (its systemd unit) whose emptying reaps every client in it. Reaping removes
 * the client's registrations, unlinks the arenas it owned, and frees its reply segment mapping.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

typedef struct Broker Broker;
typedef struct Client Client;
typedef struct Reaper Reaper;

int reaper_new(Reaper **ret, Broker *b);
Reaper *reaper_free(Reaper *r);

/* Starts watching a newly registered client: opens its pidfd (verifying it is alive), reads
 * its cgroup and unit, arms heartbeat expiry. -ESRCH if the pid is not running; -EMFILE,
 * -ENFILE, -ENOMEM when the broker is short of descriptors or memory. */
int reaper_watch(Reaper *r, Client *c);
/* Forgets the client's watches (before it is freed). */
void reaper_unwatch(Reaper *r, Client *c);
/* The client sent something: push back its heartbeat deadline. */
void reaper_seen(Reaper *r, Client *c);

/* Removes the client and everything it owned, logging what was reclaimed with reason. died:
 * the client is gone (or broken) rather than leaving politely, so its reply segment is unlinked
 * too and any producer lock it held is released. */
void reaper_reap(Broker *b, uint64_t client_id, bool died, const char *reason);
/* Whether the client is known to be gone (dead pid) even if not yet reaped. */
bool reaper_client_dead(Reaper *r, const Client *c);
