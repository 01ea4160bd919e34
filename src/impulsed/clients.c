/* SPDX-License-Identifier: MIT */
/*
 * Client reply segments and replies (clients.h). Everything here touches memory the client can
 * change or truncate at any moment, so every access runs under the SIGBUS guard and every
 * field is validated on a local copy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "clients.h"
#include "log.h"
#include "macro.h"
#include "sigbus.h"
#include "time-util.h"

/* Smallest and largest reply segment we map: a minimal ring, and a bound so a client cannot
 * make the broker map gigabytes. */
#define REPLY_SEGMENT_MIN ringbuf_size(RINGBUF_MIN_CAPACITY)
#define REPLY_SEGMENT_MAX ringbuf_size(UINT32_C(1) << 28)

/* Real and effective uid of pid, from /proc (the pid was checked alive by the caller). */
static int read_proc_uids(pid_t pid, uid_t *ret_ruid, uid_t *ret_euid) {
        char path[64], line[256];
        unsigned long ruid, euid;
        FILE *f;
        int r = -ESRCH;

        snprintf(path, sizeof(path), "/proc/%ld/status", (long) pid);
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ESRCH : negative_errno();
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Uid: %lu %lu", &ruid, &euid) == 2) {
                        *ret_ruid = (uid_t) ruid;
                        *ret_euid = (uid_t) euid;
                        r = 0;
                        break;
                }
        fclose(f);
        return r;
}

typedef struct AttachArgs {
        Client *c;
} AttachArgs;

static int attach_guarded(void *arg) {
        Client *c = ((AttachArgs *) arg)->c;

        return ringbuf_attach_producer(&c->reply, c->reply_seg.base, c->reply_seg.size);
}

int clients_open_reply(Broker *b, Client *c, const char *name, pid_t pid) {
        AttachArgs args = { .c = c };
        struct stat st;
        uid_t ruid, euid;
        int r;

        if (!names_is_client_segment(&b->bus, name))
                return -EINVAL;
        r = segment_open(&c->reply_seg, name, REPLY_SEGMENT_MIN, REPLY_SEGMENT_MAX);
        if (r < 0)
                return r;
        r = fstat(c->reply_seg.fd, &st) < 0 ? negative_errno() : 0;
        /* Nothing needs the descriptor after this: replies go through the mapping, which keeps
         * the file alive; the reaper recognises the file by dev/ino. Closed now, a client costs
         * one descriptor (its pidfd), and the checks below can reuse this one. */
        segment_close_fd(&c->reply_seg);
        if (r < 0)
                goto fail;
        c->uid = st.st_uid;
        c->reply_dev = st.st_dev;
        c->reply_ino = st.st_ino;

        /* The pid must be a live process of the user who owns the segment: otherwise anyone
         * could register another user's segment (or pid) and have replies or reaping aimed at
         * it. */
        if (pid > 0) {
                r = read_proc_uids(pid, &ruid, &euid);
                if (r < 0)
                        goto fail;
                if (ruid != st.st_uid && euid != st.st_uid) {
                        r = -EPERM;
                        goto fail;
                }
        }

        r = sigbus_run(attach_guarded, &args);
        if (r < 0) {
                r = r == -EFAULT ? -EBADMSG : r;
                goto fail;
        }
        return 0;
fail:
        segment_done(&c->reply_seg);
        return r;
}

typedef struct SendArgs {
        RingBuf *ring;
        const uint8_t *buf;
        size_t len;
} SendArgs;

static int push_guarded(void *arg) {
        SendArgs *a = arg;

        /* Never wait: a client that does not read its replies must not stall the broker. */
        return ringbuf_push(a->ring, a->buf, a->len, 0);
}

int clients_send(Broker *b, Client *c, const ControlMsg *m) {
        SendArgs args;
        int n, r;

        n = control_encode(m, b->reply, BROKER_REPLY_MAX);
        if (n < 0)
                return n;
        args = (SendArgs) { .ring = &c->reply, .buf = b->reply, .len = (size_t) n };
        r = sigbus_run(push_guarded, &args);
        if (r == -EAGAIN || r == -ETIMEDOUT) {
                LogContext ctx = client_log_context(c);

                c->replies_dropped++;
                /* Log the first drop and then every 1000th, so a stuck client cannot flood. */
                if (c->replies_dropped == 1 || c->replies_dropped % 1000 == 0)
                        log_ctx(LOG_WARNING, LOG_MESSAGE_HOSTILE_INPUT, &ctx,
                                "Reply ring of client %llu (\"%s\") is full or locked; dropped %llu "
                                "replies so far. It keeps its registration; the broker does not wait.",
                                (unsigned long long) c->id, c->app_name,
                                (unsigned long long) c->replies_dropped);
                return -EAGAIN;
        }
        return r;
}

uint64_t clients_new_id(Broker *b) {
        uint64_t id;

        do {
                randombytes_buf(&id, sizeof(id));
                /* Avro longs are signed: keep ids positive so every v1 peer prints them sanely. */
                id &= INT64_MAX;
        } while (id == 0 || registry_client(b->registry, id));
        return id;
}
