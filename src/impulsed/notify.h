/* SPDX-License-Identifier: MIT */
/*
 * The broker's messages to its service manager over $NOTIFY_SOCKET (sd_notify(3)): readiness,
 * a one-line status, stopping, and the watchdog keep-alive. Without $NOTIFY_SOCKET every call
 * is a no-op that returns 0. Nothing here logs; callers decide whether a failure matters.
 */
#pragma once

#include <stddef.h>

#include <systemd/sd-event.h>

/* READY=1: the bus is live (after broker_start() and the admin socket are up). */
int notify_ready(void);
/* STATUS=<clients> clients, <channels> channels, <functions> functions. */
int notify_status(size_t clients, size_t channels, size_t functions);
/* STOPPING=1: shutdown has begun; the service manager stops expecting WATCHDOG=1. */
int notify_stopping(void);

/* If the service manager asked for a watchdog ($WATCHDOG_USEC, for our pid if $WATCHDOG_PID
 * is set), adds a timer to e that sends WATCHDOG=1 every half period. It runs from the loop,
 * so a loop that stops turning stops the pings and gets the service restarted. The timer is
 * owned by e (floating) and goes with it. Returns 1 if armed, 0 if no watchdog is wanted,
 * negative errno on failure. */
int notify_watchdog_setup(sd_event *e);
