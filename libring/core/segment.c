/* SPDX-License-Identifier: MIT */
/*
 * POSIX shared-memory segments. Every function reports failure as a negative errno and leaves
 * nothing half-made behind: a segment that cannot be sized or mapped after creation is
 * unlinked again. Sizes of segments we open are checked against the caller's bounds before
 * mapping, because the file belongs to whoever created it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "segment.h"

static int map_fd(int fd, size_t size, uint8_t **ret) {
        void *p;

        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return negative_errno();
        *ret = p;
        return 0;
}

int segment_create(Segment *ret, const char *name, size_t size, mode_t mode) {
        _cleanup_close_ int fd = -1;
        uint8_t *base;
        int r;

        if (!ret || !names_valid(name) || size == 0 || (mode & ~(mode_t) 0777))
                return -EINVAL;

        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0)
                return negative_errno();

        /* shm_open applies the umask; the mode is part of our access policy, so set it exactly. */
        if (fchmod(fd, mode) < 0 || ftruncate(fd, (off_t) size) < 0) {
                r = negative_errno();
                goto fail;
        }
        r = map_fd(fd, size, &base);
        if (r < 0)
                goto fail;

        *ret = (Segment) { .fd = TAKE_FD(fd), .base = base, .size = size };
        snprintf(ret->name, sizeof(ret->name), "%s", name);
        return 0;
fail:
        shm_unlink(name);
        return r;
}

int segment_open(Segment *ret, const char *name, size_t min_size, size_t max_size) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        uint8_t *base;
        int r;

        if (!ret || !names_valid(name) || min_size == 0 || min_size > max_size)
                return -EINVAL;

        /* O_NOFOLLOW: /dev/shm is world-writable, a symlink planted there must not redirect us. */
        fd = shm_open(name, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
        if (fd < 0)
                return errno == ELOOP ? -EBADMSG : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t) st.st_size < min_size ||
            (uint64_t) st.st_size > max_size)
                return -EBADMSG;

        r = map_fd(fd, (size_t) st.st_size, &base);
        if (r < 0)
                return r;

        *ret = (Segment) { .fd = TAKE_FD(fd), .base = base, .size = (size_t) st.st_size };
        snprintf(ret->name, sizeof(ret->name), "%s", name);
        return 0;
}

void segment_close_fd(Segment *s) {
        if (s && s->fd >= 0) {
                close(s->fd);
                s->fd = -1;
        }
}

void segment_done(Segment *s) {
        if (!s)
                return;
        if (s->base)
                munmap(s->base, s->size);
        if (s->fd >= 0)
                close(s->fd);
        *s = SEGMENT_NULL;
}

int segment_unlink(const char *name) {
        if (!names_valid(name))
                return -EINVAL;
        if (shm_unlink(name) < 0)
                return negative_errno();
        return 0;
}
