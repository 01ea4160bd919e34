/* SPDX-License-Identifier: MIT */
/*
 * The measured loops, the same for every transport. Latency: peer A times each round trip
 * (warm-up first; with a gap, A sleeps between calls so that the echo side has to go to sleep
 * too). Streaming: A sends numbered messages for a fixed time, then a stop message; B checks
 * every sequence number and the length, and times from the first message to the stop message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static int fail(Report *rep, int r, const char *what) {
        if (!rep->message[0])
                snprintf(rep->message, sizeof(rep->message), "%s: %s", what, strerror(r < 0 ? -r : EIO));
        return r < 0 ? r : -EIO;
}

static void sleep_ns(uint64_t ns) {
        struct timespec ts = { .tv_sec = (time_t) (ns / 1000000000u), .tv_nsec = (long) (ns % 1000000000u) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int loops_echo(const Job *j, Sync *s, Report *rep) {
        void *h = NULL;
        int r;

        r = j->t->echo_open(j, s, &h);
        if (r < 0)
                return fail(rep, r, "echo side set-up");
        r = peer_sync_send(s, 'R');
        if (r >= 0) {
                r = j->t->echo_run(h, j);
                if (r < 0)
                        fail(rep, r, "echo");
        }
        j->t->close(h);
        return r < 0 ? r : 0;
}

int loops_call(const Job *j, Sync *s, Report *rep) {
        uint8_t *msg = malloc(j->size), *reply = malloc(j->size + 64);
        uint64_t *samples = calloc(j->max_samples, sizeof(uint64_t)), seq = 0;
        void *h = NULL;
        int r;

        if (!msg || !reply || !samples) {
                r = fail(rep, -ENOMEM, "buffers");
                goto out;
        }
        payload_init(msg, j->size);
        r = j->t->call_open(j, s, &h);
        if (r < 0) {
                fail(rep, r, "caller set-up");
                goto out;
        }
        r = peer_sync_wait(s, 'R');
        if (r < 0) {
                fail(rep, r, "waiting for the echo side");
                goto close;
        }
        for (unsigned i = 0; i < j->warmup; i++, seq++) {
                payload_set_seq(msg, seq);
                r = j->t->call(h, msg, j->size, reply, j->size + 64);
                if (r < 0) {
                        fail(rep, r, "warm-up call");
                        goto close;
                }
        }
        for (unsigned k = 0; k < j->reps; k++) {
                uint64_t end = peer_now_ns() + j->duration_ns;
                size_t n = 0;

                while (n < j->max_samples && (n < 100 || peer_now_ns() < end)) {
                        if (j->gap_ns)
                                sleep_ns(j->gap_ns);
                        payload_set_seq(msg, seq);
                        uint64_t t0 = peer_now_ns();
                        r = j->t->call(h, msg, j->size, reply, j->size + 64);
                        uint64_t t1 = peer_now_ns();
                        if (r < 0) {
                                fail(rep, r, "call");
                                goto close;
                        }
                        if ((size_t) r != j->size || payload_seq(reply) != seq)
                                rep->seq_errors++;
                        samples[n++] = t1 - t0;
                        seq++;
                }
                stats_latency(samples, n, &rep->reps[k]);
                rep->n_reps = k + 1;
        }
        payload_set_seq(msg, BENCH_STOP_SEQ);
        r = j->t->call(h, msg, j->size, reply, j->size + 64);
        if (r < 0)
                fail(rep, r, "stop call");
        else if (rep->seq_errors) {
                snprintf(rep->message, sizeof(rep->message), "%llu replies had a wrong length or sequence number",
                         (unsigned long long) rep->seq_errors);
                r = -EBADMSG;
        }
close:
        j->t->close(h);
out:
        free(msg);
        free(reply);
        free(samples);
        return r < 0 ? r : 0;
}

int loops_send(const Job *j, Sync *s, Report *rep) {
        uint8_t *msg = malloc(j->size);
        /* Look at the clock every so many messages: often enough for large ones. */
        unsigned every = j->size >= 65536 ? 1 : j->size >= 1024 ? 16 : 256;
        void *h = NULL;
        int r;

        if (!msg)
                return fail(rep, -ENOMEM, "buffers");
        payload_init(msg, j->size);
        r = j->t->send_open(j, s, &h);
        if (r < 0) {
                fail(rep, r, "sender set-up");
                goto out;
        }
        r = peer_sync_wait(s, 'R');
        if (r < 0) {
                fail(rep, r, "waiting for the receiver");
                goto close;
        }
        for (unsigned k = 0; k < j->reps; k++) {
                uint64_t end = peer_now_ns() + j->duration_ns, seq = 0;

                for (;;) {
                        payload_set_seq(msg, seq++);
                        r = j->t->send(h, msg, j->size);
                        if (r < 0) {
                                fail(rep, r, "send");
                                goto close;
                        }
                        if (seq % every == 0 && peer_now_ns() >= end)
                                break;
                }
                payload_set_seq(msg, BENCH_STOP_SEQ);
                r = j->t->send(h, msg, j->size);
                if (r < 0) {
                        fail(rep, r, "send");
                        goto close;
                }
                rep->n_reps = k + 1;
        }
        /* Close only once the receiver has everything (some transports drop what is in flight). */
        r = peer_sync_wait(s, 'D');
        if (r < 0)
                fail(rep, r, "waiting for the receiver to finish");
close:
        j->t->close(h);
out:
        free(msg);
        return r < 0 ? r : 0;
}

int loops_recv(const Job *j, Sync *s, Report *rep) {
        uint8_t *buf = malloc(j->size + 64);
        void *h = NULL;
        int r;

        if (!buf)
                return fail(rep, -ENOMEM, "buffers");
        r = j->t->recv_open(j, s, &h);
        if (r < 0) {
                fail(rep, r, "receiver set-up");
                goto out;
        }
        r = peer_sync_send(s, 'R');
        if (r < 0)
                goto close;
        for (unsigned k = 0; k < j->reps; k++) {
                uint64_t expected = 0, count = 0, t0 = 0, t1;

                for (;;) {
                        const void *m = NULL;
                        uint64_t seq;

                        r = j->t->recv(h, buf, j->size + 64, &m);
                        if (r < 0) {
                                fail(rep, r, "receive");
                                goto close;
                        }
                        if (count == 0 && t0 == 0)
                                t0 = peer_now_ns();
                        seq = payload_seq(m);
                        if ((size_t) r != j->size)
                                rep->seq_errors++;
                        if (j->t->recv_done)
                                j->t->recv_done(h, m);
                        if (seq == BENCH_STOP_SEQ)
                                break;
                        if (seq != expected)
                                rep->seq_errors++;
                        expected = seq + 1;
                        count++;
                }
                t1 = peer_now_ns();
                /* count messages (all but the first, plus the stop message) in t1 - t0. */
                rep->reps[k].n = count;
                rep->reps[k].msgs_per_s = t1 > t0 ? (double) count * 1e9 / (double) (t1 - t0) : 0;
                rep->reps[k].bytes_per_s = rep->reps[k].msgs_per_s * (double) j->size;
                rep->n_reps = k + 1;
        }
        r = peer_sync_send(s, 'D');
        if (rep->seq_errors) {
                snprintf(rep->message, sizeof(rep->message), "%llu messages had a wrong length or sequence number",
                         (unsigned long long) rep->seq_errors);
                r = -EBADMSG;
        }
close:
        j->t->close(h);
out:
        free(buf);
        return r < 0 ? r : 0;
}

int loops_solo(const Job *j, Report *rep) {
        int r;

        for (unsigned k = 0; k < j->reps; k++) {
                r = j->t->solo(j, &rep->reps[k]);
                if (r < 0)
                        return fail(rep, r, "run");
                rep->n_reps = k + 1;
        }
        return 0;
}
