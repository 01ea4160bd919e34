/* SPDX-License-Identifier: MIT */
/*
 * The v1 ring in one process and across fork(): wrap-around with odd record sizes, backpressure,
 * futex wake-ups of a sleeping consumer (ours and a v1-style one), and corrupt headers and
 * records rejected with errors. Rings live in real POSIX shm segments.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "futex.h"
#include "ringbuf-layout.h"
#include "ringbuf.h"
#include "segment.h"
#include "test-util.h"
#include "time-util.h"

#define SECOND ((int64_t) NSEC_PER_SEC)

typedef struct TestRing {
        Segment seg;
        RingBuf prod, cons;
        RingShared *hdr;
} TestRing;

static void ring_setup(TestRing *t, uint32_t capacity) {
        char name[NAMES_SEGMENT_MAX];

        test_shm_name(name, sizeof(name), "ring");
        t->seg = SEGMENT_NULL;
        ck_assert_int_eq(segment_create(&t->seg, name, ringbuf_size(capacity), 0600), 0);
        /* The name is not needed once mapped: unlink now so a failing test leaves nothing. */
        ck_assert_int_eq(segment_unlink(name), 0);
        ck_assert_int_eq(ringbuf_format(t->seg.base, t->seg.size, capacity), 0);
        ck_assert_int_eq(ringbuf_attach_producer(&t->prod, t->seg.base, t->seg.size), 0);
        ck_assert_int_eq(ringbuf_attach_consumer(&t->cons, t->seg.base, t->seg.size), 0);
        t->hdr = (RingShared *) t->seg.base;
}

static void ring_teardown(TestRing *t) {
        segment_done(&t->seg);
}

/* Deterministic record contents: byte i of record n. */
static uint8_t pattern(uint64_t n, size_t i) {
        return (uint8_t) (n * 131 + i * 7 + (n >> 8));
}

static void fill(uint8_t *buf, uint64_t n, size_t len) {
        for (size_t i = 0; i < len; i++)
                buf[i] = pattern(n, i);
}

static void check(const uint8_t *buf, uint64_t n, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (buf[i] != pattern(n, i))
                        ck_abort_msg("record %llu byte %zu corrupt", (unsigned long long) n, i);
}

/* Waits until *word == want, for tests that synchronise on a state a peer exposes. */
static bool wait_word(_Atomic uint32_t *word, uint32_t want, int64_t timeout_ns) {
        uint64_t deadline = deadline_after(timeout_ns);

        while (atomic_load(word) != want)
                if (now_ns(CLOCK_MONOTONIC) > deadline)
                        return false;
        return true;
}

START_TEST(test_v1_header_layout) {
        TestRing t;
        const uint8_t *b;

        ring_setup(&t, 1024);
        b = t.seg.base;
        ck_assert_uint_eq(b[0] | b[1] << 8 | b[2] << 16 | (uint32_t) b[3] << 24, 0x474E4952);
        ck_assert_uint_eq(b[4] | b[5] << 8 | b[6] << 16 | (uint32_t) b[7] << 24, 1024);
        ck_assert_int_eq(ringbuf_push(&t.prod, "abc", 3, 0), 0);
        /* head at 64 is 7 (4-byte length + 3), the record sits at data offset 0 (byte 192). */
        ck_assert_uint_eq(b[64], 7);
        ck_assert_uint_eq(b[192], 3);
        ck_assert_uint_eq(b[193], 0);
        ck_assert_int_eq(memcmp(b + 196, "abc", 3), 0);
        /* Our consumer announces its sleeps and is awake: no data_seq change is needed. */
        ck_assert_uint_eq(b[136], 0);
        ck_assert_int_eq(ringbuf_pop(&t.cons, (char[8]) { 0 }, 8), 3);
        /* The tail is published once the consumer has caught up. */
        ck_assert_int_eq(ringbuf_pop(&t.cons, (char[8]) { 0 }, 8), -EAGAIN);
        ck_assert_uint_eq(b[128], 7); /* tail */
        /* A v1 consumer (no announcement) sees data_seq change on every publish. */
        ringbuf_reset_consumer_ext(t.seg.base);
        ck_assert_int_eq(ringbuf_push(&t.prod, "abc", 3, 0), 0);
        ck_assert_uint_eq(b[136], 1);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_wraparound_odd_sizes) {
        TestRing t;
        uint8_t in[300], out[300];
        uint64_t seed = test_seed(), pushed = 0, popped = 0, state = seed | 1;
        unsigned queued = 0;

        ring_setup(&t, 512);
        for (unsigned op = 0; op < 200000; op++) {
                state ^= state << 13, state ^= state >> 7, state ^= state << 17;
                /* Bias to pushes until the ring fills, so both full and empty states recur. */
                if ((state & 3) != 0 || queued == 0) {
                        size_t len = (size_t) ((state >> 8) % 254) | 1; /* odd sizes 1..253 */
                        fill(in, pushed, len);
                        int r = ringbuf_push(&t.prod, in, len, 0);
                        if (r == -EAGAIN) {
                                ck_assert_uint_gt(queued, 0);
                                continue;
                        }
                        ck_assert_int_eq(r, 0);
                        pushed++, queued++;
                } else {
                        int n = ringbuf_pop(&t.cons, out, sizeof(out));
                        ck_assert_int_ge(n, 1);
                        check(out, popped++, (size_t) n);
                        queued--;
                }
        }
        while (queued--) {
                int n = ringbuf_pop(&t.cons, out, sizeof(out));
                ck_assert_int_ge(n, 1);
                check(out, popped++, (size_t) n);
        }
        ck_assert_uint_eq(pushed, popped);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), -EAGAIN);
        /* Many laps of the 512-byte ring were made. */
        ck_assert_uint_gt(atomic_load(&t.hdr->head), 512 * 1000);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_full_ring_backpressure) {
        TestRing t;
        uint8_t rec[60], out[256];
        unsigned n = 0;

        ring_setup(&t, 256);
        /* 64-byte records (4 + 60) fill a 256-byte ring in exactly four. */
        for (;;) {
                fill(rec, n, sizeof(rec));
                int r = ringbuf_push(&t.prod, rec, sizeof(rec), 0);
                if (r == -EAGAIN)
                        break;
                ck_assert_int_eq(r, 0);
                n++;
        }
        ck_assert_uint_eq(n, 4);
        ck_assert_int_eq(ringbuf_push(&t.prod, "", 0, 0), -EAGAIN);
        ck_assert_int_eq(ringbuf_push(&t.prod, rec, sizeof(rec), 20 * NSEC_PER_MSEC), -ETIMEDOUT);

        /* Too big to ever fit is a different error from "full". */
        ck_assert_int_eq(ringbuf_push(&t.prod, out, 253, 0), -EMSGSIZE);

        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), 60);
        check(out, 0, 60);
        ck_assert_int_eq(ringbuf_push(&t.prod, rec, sizeof(rec), 0), 0);
        for (unsigned i = 1; i <= 4; i++) {
                ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), 60);
                check(out, i, 60);
        }
        /* A record of exactly capacity - 4 bytes fits an empty ring. */
        ck_assert_int_eq(ringbuf_push(&t.prod, out, 252, 0), 0);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), 252);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_small_buffer_keeps_record) {
        TestRing t;
        uint8_t out[16];

        ring_setup(&t, 256);
        ck_assert_int_eq(ringbuf_push(&t.prod, "0123456789abcdef!", 17, 0), 0);
        ck_assert_int_eq(ringbuf_peek_len(&t.cons), 17);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), -EMSGSIZE);
        ck_assert_int_eq(ringbuf_pop(&t.cons, (uint8_t[32]) { 0 }, 32), 17);
        ck_assert_int_eq(ringbuf_peek_len(&t.cons), -EAGAIN);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_producer_waits_for_space) {
        TestRing t;
        uint8_t rec[124], out[256];
        pid_t pid;

        ring_setup(&t, 256);
        ck_assert_int_eq(ringbuf_push(&t.prod, rec, sizeof(rec), 0), 0);
        ck_assert_int_eq(ringbuf_push(&t.prod, rec, sizeof(rec), 0), 0);

        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* The consumer frees space only once the producer is really waiting for it. */
                if (!wait_word(&t.hdr->space_waiters, 1, 30 * SECOND))
                        _exit(2);
                _exit(ringbuf_pop(&t.cons, out, sizeof(out)) == sizeof(rec) ? 0 : 3);
        }
        fill(rec, 9, sizeof(rec));
        ck_assert_int_eq(ringbuf_push(&t.prod, rec, sizeof(rec), 60 * SECOND), 0);
        ck_assert_int_eq(test_wait_child(pid), 0);
        ck_assert_uint_eq(atomic_load(&t.hdr->space_waiters), 0);
        /* The child consumed with its own copy of the handle: take the consumer role back. */
        ck_assert_int_eq(ringbuf_attach_consumer(&t.cons, t.seg.base, t.seg.size), 0);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), sizeof(rec));
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), sizeof(rec));
        check(out, 9, sizeof(rec));
        ring_teardown(&t);
}
END_TEST

START_TEST(test_sleeping_consumer_is_woken) {
        TestRing t;
        uint8_t out[64];
        pid_t pid;

        ring_setup(&t, 1024);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* Publish only once the consumer has announced it is going to FUTEX_WAIT. */
                if (!wait_word(&t.hdr->consumer_sleeping, 1, 30 * SECOND))
                        _exit(2);
                _exit(ringbuf_push(&t.prod, "wake", 4, SECOND) == 0 ? 0 : 3);
        }
        ck_assert_int_eq(ringbuf_wait(&t.cons, 60 * SECOND), 0);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), 4);
        ck_assert_int_eq(memcmp(out, "wake", 4), 0);
        ck_assert_int_eq(test_wait_child(pid), 0);
        ck_assert_uint_eq(atomic_load(&t.hdr->consumer_sleeping), 0);
        ring_teardown(&t);
}
END_TEST

/* True once pid is blocked in the futex system call (from /proc/PID/syscall). */
static bool blocked_in_futex(pid_t pid) {
        char path[64];
        long nr = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%ld/syscall", (long) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (fscanf(f, "%ld", &nr) != 1)
                nr = -1;
        fclose(f);
        return nr == SYS_futex;
}

START_TEST(test_v1_consumer_without_sleep_flag_is_woken) {
        TestRing t;
        uint64_t deadline;
        pid_t pid;

        ring_setup(&t, 1024);
        /* A v1 consumer does not announce its sleeps: the broker clears the flag for it. */
        ringbuf_reset_consumer_ext(t.seg.base);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* v1 consumer: snapshot data_seq, check head, plain FUTEX_WAIT. */
                uint32_t seq = atomic_load(&t.hdr->data_seq);
                if (atomic_load(&t.hdr->head) == 0)
                        syscall(SYS_futex, &t.hdr->data_seq, FUTEX_WAIT, seq, NULL, NULL, 0);
                _exit(atomic_load(&t.hdr->head) != 0 ? 0 : 3);
        }
        deadline = deadline_after(30 * SECOND);
        while (!blocked_in_futex(pid))
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline, "child never slept");
        ck_assert_int_eq(ringbuf_push(&t.prod, "v1", 2, SECOND), 0);
        ck_assert_int_eq(test_wait_child(pid), 0);
        ring_teardown(&t);
}
END_TEST

typedef struct Sleeper {
        RingBuf rb;             /* the consumer's view, copied (as the watcher thread does) */
        int result;
        _Atomic bool done;
} Sleeper;

static void *sleeper_main(void *arg) {
        Sleeper *sl = arg;

        /* -EAGAIN: a spurious wake-up, sleep again. */
        do
                sl->result = ringbuf_sleep(&sl->rb, now_ns(CLOCK_MONOTONIC) + 60 * SECOND);
        while (sl->result == -EAGAIN);
        atomic_store(&sl->done, true);
        return NULL;
}

/* Two threads of one consumer asleep on the same ring (a caller waiting for its reply and the
 * connection's event-loop watcher): one record wakes both, and neither's wake-up withdraws the
 * other's announcement. A broken count never reaches 2; a wake-up of one thread leaves the
 * other asleep for a minute, and the test fails after 30 s. */
START_TEST(test_two_sleeping_consumer_threads_are_woken) {
        Sleeper sl[2] = { 0 };
        pthread_t th[2];
        uint64_t deadline;
        TestRing t;

        ring_setup(&t, 1024);
        for (int i = 0; i < 2; i++) {
                sl[i].rb = t.cons;
                ck_assert_int_eq(pthread_create(&th[i], NULL, sleeper_main, &sl[i]), 0);
        }
        ck_assert_msg(wait_word(&t.hdr->consumer_sleeping, 2, 30 * SECOND), "both threads never announced their sleep");
        ck_assert_int_eq(ringbuf_push(&t.prod, "both", 4, SECOND), 0);
        deadline = deadline_after(30 * SECOND);
        while (!atomic_load(&sl[0].done) || !atomic_load(&sl[1].done))
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline, "a sleeping thread was not woken");
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(pthread_join(th[i], NULL), 0);
                ck_assert_int_eq(sl[i].result, 0);
        }
        ck_assert_uint_eq(atomic_load(&t.hdr->consumer_sleeping), 0);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_wait_times_out_when_idle) {
        TestRing t;

        ring_setup(&t, 256);
        ck_assert_int_eq(ringbuf_wait(&t.cons, 0), -EAGAIN);
        ck_assert_int_eq(ringbuf_wait(&t.cons, 5 * NSEC_PER_MSEC), -ETIMEDOUT);
        ck_assert_int_eq(ringbuf_wait(&t.cons, 30 * NSEC_PER_MSEC), -ETIMEDOUT);
        ck_assert_uint_eq(atomic_load(&t.hdr->consumer_sleeping), 0);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_corrupt_headers_rejected) {
        TestRing t;
        RingBuf rb;
        uint8_t *b;

        ring_setup(&t, 1024);
        b = t.seg.base;
        ck_assert_int_eq(ringbuf_format(b + 8, t.seg.size - 8, 512), -EINVAL);
        ck_assert_int_eq(ringbuf_format(b, t.seg.size, 1000), -EINVAL);
        ck_assert_int_eq(ringbuf_format(b, t.seg.size, 2048), -EINVAL);
        ck_assert_int_eq(ringbuf_attach_producer(&rb, b, 100), -EINVAL);

        /* Capacity larger than the mapping, not a power of two, too small, zero. */
        t.hdr->capacity = 2048;
        ck_assert_int_eq(ringbuf_attach_producer(&rb, b, t.seg.size), -EBADMSG);
        t.hdr->capacity = 1000;
        ck_assert_int_eq(ringbuf_attach_consumer(&rb, b, t.seg.size), -EBADMSG);
        t.hdr->capacity = 32;
        ck_assert_int_eq(ringbuf_attach_consumer(&rb, b, t.seg.size), -EBADMSG);
        t.hdr->capacity = 0;
        ck_assert_int_eq(ringbuf_attach_consumer(&rb, b, t.seg.size), -EBADMSG);
        t.hdr->capacity = 1024;
        atomic_store(&t.hdr->magic, 0x12345678);
        ck_assert_int_eq(ringbuf_attach_producer(&rb, b, t.seg.size), -EBADMSG);
        atomic_store(&t.hdr->magic, RINGBUF_MAGIC);

        /* Cursors out of order: head behind tail, or further ahead than the capacity. */
        atomic_store(&t.hdr->head, 5000);
        ck_assert_int_eq(ringbuf_attach_consumer(&rb, b, t.seg.size), -EBADMSG);
        ck_assert_int_eq(ringbuf_pop(&t.cons, (uint8_t[64]) { 0 }, 64), -EBADMSG);
        ck_assert_int_eq(ringbuf_push(&t.prod, "x", 1, 0), -EBADMSG);
        atomic_store(&t.hdr->head, 0);
        /* A tail far ahead of head: a producer trusts the tail it saw last until it needs more
         * space, then re-reads it and refuses. */
        atomic_store(&t.hdr->tail, UINT64_C(1) << 40);
        int pushed = 0, r;
        while ((r = ringbuf_push(&t.prod, "x", 1, 0)) == 0)
                ck_assert_int_le(++pushed, 1024 / 5);
        ck_assert_int_eq(r, -EBADMSG);
        atomic_store(&t.hdr->head, 0);
        atomic_store(&t.hdr->tail, 0);
        /* Both sides saw the corruption and keep their view of it: attach afresh. */
        ck_assert_int_eq(ringbuf_attach_producer(&t.prod, b, t.seg.size), 0);
        ck_assert_int_eq(ringbuf_attach_consumer(&t.cons, b, t.seg.size), 0);

        /* The capacity copied at attach is what counts, not a later write by a peer. */
        t.hdr->capacity = 1u << 30;
        ck_assert_int_eq(ringbuf_push(&t.prod, "ok", 2, 0), 0);
        ck_assert_int_eq(ringbuf_pop(&t.cons, (uint8_t[8]) { 0 }, 8), 2);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_corrupt_records_rejected) {
        TestRing t;
        uint8_t out[1024];
        uint64_t head;

        ring_setup(&t, 1024);
        ck_assert_int_eq(ringbuf_push(&t.prod, "hello", 5, 0), 0);
        /* A record length beyond what was published. */
        t.seg.base[RINGBUF_HEADER_SIZE] = 200;
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), -EBADMSG);
        ck_assert_int_eq(ringbuf_peek_len(&t.cons), -EBADMSG);
        /* A length larger than the whole ring. */
        memcpy(t.seg.base + RINGBUF_HEADER_SIZE, (uint8_t[4]) { 0xff, 0xff, 0xff, 0xff }, 4);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), -EBADMSG);
        /* Fewer published bytes than a length prefix. */
        head = atomic_load(&t.hdr->head);
        atomic_store(&t.hdr->head, 2);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), -EBADMSG);
        atomic_store(&t.hdr->head, head);

        /* Recovery drops everything published and the ring works again. */
        ck_assert_uint_eq(ringbuf_discard_all(&t.cons), 9);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), -EAGAIN);
        ck_assert_int_eq(ringbuf_push(&t.prod, "again", 5, 0), 0);
        ck_assert_int_eq(ringbuf_pop(&t.cons, out, sizeof(out)), 5);
        ck_assert_int_eq(memcmp(out, "again", 5), 0);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_dead_lock_holder_is_broken) {
        TestRing t;
        pid_t pid;

        ring_setup(&t, 256);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* Die holding the producer lock, as a crashed client would mid-push. */
                atomic_store(&t.hdr->prod_lock, 1);
                atomic_store(&t.hdr->lock_owner, (uint32_t) getpid());
                _exit(0);
        }
        ck_assert_int_eq(test_wait_child(pid), 0);
        ck_assert_int_eq(ringbuf_push(&t.prod, "x", 1, 0), -EAGAIN);
        ck_assert_int_eq(ringbuf_push(&t.prod, "x", 1, 10 * NSEC_PER_MSEC), -ETIMEDOUT);
        /* Only the dead holder's pid breaks it. */
        ck_assert_int_eq(ringbuf_break_lock_of(&t.cons, (uint32_t) pid + 1), 0);
        ck_assert_int_eq(ringbuf_break_lock_of(&t.cons, (uint32_t) pid), 1);
        ck_assert_int_eq(ringbuf_break_lock_of(&t.cons, (uint32_t) pid), 0);
        ck_assert_int_eq(ringbuf_push(&t.prod, "x", 1, 0), 0);

        /* A lock now held by someone else (here: an anonymous v1 holder) is not the dead pid's. */
        atomic_store(&t.hdr->prod_lock, 2);
        ck_assert_int_eq(ringbuf_break_lock_of(&t.cons, (uint32_t) pid), 0);
        ck_assert_uint_eq(atomic_load(&t.hdr->prod_lock), 2);
        atomic_store(&t.hdr->prod_lock, 0);
        ring_teardown(&t);
}
END_TEST

START_TEST(test_capacity_helpers) {
        ck_assert_uint_eq(ringbuf_size(1024), 192 + 1024);
        ck_assert_uint_eq(ringbuf_capacity_for(192 + 1024), 1024);
        ck_assert_uint_eq(ringbuf_capacity_for(192 + 2047), 1024);
        ck_assert_uint_eq(ringbuf_capacity_for(100), 0);
        ck_assert_uint_eq(ringbuf_capacity_for(SIZE_MAX), RINGBUF_MAX_CAPACITY);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("ringbuf");
        TCase *tc = tcase_create("ringbuf");

        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_v1_header_layout);
        tcase_add_test(tc, test_wraparound_odd_sizes);
        tcase_add_test(tc, test_full_ring_backpressure);
        tcase_add_test(tc, test_small_buffer_keeps_record);
        tcase_add_test(tc, test_producer_waits_for_space);
        tcase_add_test(tc, test_sleeping_consumer_is_woken);
        tcase_add_test(tc, test_v1_consumer_without_sleep_flag_is_woken);
        tcase_add_test(tc, test_two_sleeping_consumer_threads_are_woken);
        tcase_add_test(tc, test_wait_times_out_when_idle);
        tcase_add_test(tc, test_corrupt_headers_rejected);
        tcase_add_test(tc, test_corrupt_records_rejected);
        tcase_add_test(tc, test_dead_lock_holder_is_broken);
        tcase_add_test(tc, test_capacity_helpers);
        suite_add_tcase(s, tc);
        return s;
}
