/* SPDX-License-Identifier: MIT */
/*
 * Small language helpers shared by every component: scope-bound cleanup, ownership
 * transfer, array sizes. Ring-agnostic; nothing here knows about the wire format.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

/* Marks the definitions that make up libring's public ABI (everything else is hidden). */
#define RING_EXPORT __attribute__((visibility("default")))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

/* Hands ownership of a cleanup-guarded variable to the caller and disarms its cleanup. */
#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) _taken_ = (p);    \
                (p) = NULL;                     \
                _taken_;                        \
        })
#define TAKE_FD(fd)                             \
        ({                                      \
                int _taken_fd_ = (fd);          \
                (fd) = -1;                      \
                _taken_fd_;                     \
        })

/* Declares x_freep() for a type whose x_free() takes NULL and returns NULL. */
#define DEFINE_FREEP(type, func)                        \
        static inline void func##p(type **p) {          \
                if (*p)                                 \
                        func(*p);                       \
        }

/* Converts a libc -1/errno result into our negative-errno convention. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}
