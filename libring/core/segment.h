/* SPDX-License-Identifier: MIT */
/*
 * POSIX shared-memory segments: create, open, map and unlink by name. Errors are negative
 * errno values; nothing here aborts on a bad segment. A mapped segment may be shared with
 * hostile processes: callers bound every access by Segment.size.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "names.h"

typedef struct Segment {
        char name[NAMES_SEGMENT_MAX];
        int fd;                 /* O_CLOEXEC, open until segment_close_fd(); -1 when unset or closed */
        uint8_t *base;
        size_t size;
} Segment;

#define SEGMENT_NULL ((Segment) { .fd = -1 })

/* Creates name exclusively (-EEXIST if present) with exactly mode (umask ignored), sized and
 * mapped read-write. On failure nothing is left behind. */
int segment_create(Segment *ret, const char *name, size_t size, mode_t mode);
/* Opens and maps an existing segment read-write. -ENOENT if missing, -EBADMSG if its size is
 * outside [min_size, max_size]. */
int segment_open(Segment *ret, const char *name, size_t min_size, size_t max_size);
/* Closes the descriptor and keeps the mapping, for owners that need no fstat(), fchown() or
 * flock() after set-up: a process holding many segments would otherwise hold as many
 * descriptors. The mapping alone keeps the file's memory (and its inode number) alive. */
void segment_close_fd(Segment *s);
/* Unmaps and closes; safe on SEGMENT_NULL and on a half-built segment. Does not unlink. */
void segment_done(Segment *s);
/* shm_unlink with negative errno; -ENOENT if it was already gone. */
int segment_unlink(const char *name);
