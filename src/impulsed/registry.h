/* SPDX-License-Identifier: MIT */
/*
 * The broker's tables: registered clients, published channels, exposed functions, with
 * lookups by id and by name. Pure bookkeeping: no I/O, no event loop, no shared memory
 * policy, so it is testable on its own. Names and strings are owned copies.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "ringbuf.h"
#include "segment.h"

typedef struct Registry Registry;

typedef struct Client {
        uint64_t id;
        char *app_name;
        pid_t pid;                      /* 0: an older v1 client that did not send its pid */
        uid_t uid;                      /* owner of its reply segment */
        uint64_t nonce;
        Segment reply_seg;              /* mapped; its fd is closed once checked (fd -1) */
        dev_t reply_dev;                /* the reply segment's file, for the reaper's check that */
        ino_t reply_ino;                /* its name still means that file (mapped: kept alive) */
        RingBuf reply;                  /* producer handle into the client's reply ring */
        int64_t heartbeat_ms;
        uint64_t last_seen_ns;          /* CLOCK_MONOTONIC of the last record from it */
        char *cgroup;                   /* cgroup v2 path from /proc/PID/cgroup, or NULL */
        char *unit;                     /* systemd unit derived from cgroup, or NULL */
        uint64_t replies_dropped;       /* replies refused because its ring was full */
        void *watch;                    /* owned by reaper.c: pidfd event source etc. */
} Client;

typedef struct Channel {
        uint64_t id;
        char *name;
        uint64_t owner_id;
        char *owner_app;
        uint64_t schema_fp;
        char *key_hash;                 /* argon2id string, NULL when no key is required */
        Segment arena;
        uint64_t subscriber_id;         /* 0 = none (v1: at most one subscriber) */
} Channel;

typedef struct Function {
        uint64_t id;
        char *name;
        uint64_t owner_id;
        char *owner_app;
        uint64_t req_fp, resp_fp;
        char *key_hash;
        Segment arena;
} Function;

int registry_new(Registry **ret);
/* Frees the tables and everything in them; segments are unmapped, never unlinked here. */
Registry *registry_free(Registry *r);

/* Counts, for STATUS= and the admin view. */
size_t registry_n_clients(const Registry *r);
size_t registry_n_channels(const Registry *r);
size_t registry_n_functions(const Registry *r);

/* Channel and function ids are never reused within one broker run. Client ids are chosen by
 * the caller (clients_new_id(): random, because they are the only v1 credential). */
uint64_t registry_next_channel_id(Registry *r);
uint64_t registry_next_function_id(Registry *r);

/* Adding takes ownership of the object (allocated by the caller with calloc; strings
 * malloc'd). -EEXIST if its id, for a client its reply segment name, for channels/functions
 * their name, is already present. */
int registry_add_client(Registry *r, Client *c);
int registry_add_channel(Registry *r, Channel *ch);
int registry_add_function(Registry *r, Function *f);

Client *registry_client(const Registry *r, uint64_t id);
/* The client registered with this reply segment name, or NULL: a hash lookup, so Register's
 * one-registration-per-segment check costs the same with 1 or 10,000 clients. */
Client *registry_client_by_reply_segment(const Registry *r, const char *name);
Channel *registry_channel(const Registry *r, uint64_t id);
Channel *registry_channel_by_name(const Registry *r, const char *name);
Function *registry_function_by_name(const Registry *r, const char *name);

/* Unlinks from the tables and returns the object, now owned by the caller (NULL if absent). */
Client *registry_remove_client(Registry *r, uint64_t id);
Channel *registry_remove_channel(Registry *r, uint64_t id);
Function *registry_remove_function(Registry *r, const char *name);

/* Destructors for objects no longer in a registry (accept NULL, return NULL). */
Client *client_free(Client *c);
Channel *channel_free(Channel *ch);
Function *function_free(Function *f);
DEFINE_FREEP(Client, client_free)
DEFINE_FREEP(Channel, channel_free)
DEFINE_FREEP(Function, function_free)

/* Visits every object in id order. The callback
 * must not add or remove; returning a negative value stops the walk and is returned. */
int registry_foreach_client(const Registry *r, int (*cb)(Client *c, void *userdata), void *userdata);
int registry_foreach_channel(const Registry *r, int (*cb)(Channel *ch, void *userdata), void *userdata);
int registry_foreach_function(const Registry *r, int (*cb)(Function *f, void *userdata), void *userdata);
