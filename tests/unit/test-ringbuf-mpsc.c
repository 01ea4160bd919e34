/* SPDX-License-Identifier: MIT */
/*
 * Multi-process MPSC stress on a real shm ring: several producer processes push numbered,
 * self-checking records of varying sizes through a small ring (so wrap-around, backpressure
 * and futex sleeps on the lock, on space and on data all happen), and the consumer verifies
 * that every record arrives exactly once, unmodified, in per-producer order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ringbuf.h"
#include "segment.h"
#include "test-util.h"
#include "time-util.h"
#include "unaligned.h"

#define TIMEOUT_NS (60 * (int64_t) NSEC_PER_SEC)
#define MAX_PRODUCERS 8
#define MAX_PAYLOAD 300

static uint64_t run_seed;

/* Record n of producer p: 8 header bytes (p, n), then len(p, n) pattern bytes. */
static size_t record_len(uint32_t p, uint32_t n) {
        uint64_t x = (run_seed ^ ((uint64_t) p << 32 | n)) * UINT64_C(0x9E3779B97F4A7C15);
        return 8 + (size_t) ((x >> 40) % (MAX_PAYLOAD - 8));
}

static uint8_t record_byte(uint32_t p, uint32_t n, size_t i) {
        return (uint8_t) (p * 97 + n * 31 + i * 13);
}

static void build_record(uint8_t *buf, uint32_t p, uint32_t n, size_t len) {
        unaligned_write_le32(buf, p);
        unaligned_write_le32(buf + 4, n);
        for (size_t i = 8; i < len; i++)
                buf[i] = record_byte(p, n, i);
}

static int produce(void *base, size_t size, uint32_t p, uint32_t count) {
        uint8_t buf[MAX_PAYLOAD];
        RingBuf rb;

        if (ringbuf_attach_producer(&rb, base, size) < 0)
                return 2;
        for (uint32_t n = 0; n < count; n++) {
                size_t len = record_len(p, n);
                build_record(buf, p, n, len);
                if (ringbuf_push(&rb, buf, len, TIMEOUT_NS) < 0)
                        return 3;
        }
        return 0;
}

static void run_stress(uint32_t capacity, unsigned producers, uint32_t per_producer) {
        uint32_t next[MAX_PRODUCERS] = { 0 };
        char name[NAMES_SEGMENT_MAX];
        pid_t pids[MAX_PRODUCERS];
        uint8_t buf[MAX_PAYLOAD];
        uint64_t total = (uint64_t) producers * per_producer, received = 0;
        Segment seg = SEGMENT_NULL;
        RingBuf rb;

        run_seed = test_seed();
        test_shm_name(name, sizeof(name), "mpsc");
        ck_assert_int_eq(segment_create(&seg, name, ringbuf_size(capacity), 0600), 0);
        ck_assert_int_eq(segment_unlink(name), 0);
        ck_assert_int_eq(ringbuf_format(seg.base, seg.size, capacity), 0);
        ck_assert_int_eq(ringbuf_attach_consumer(&rb, seg.base, seg.size), 0);

        for (unsigned p = 0; p < producers; p++) {
                pids[p] = fork();
                ck_assert_int_ge(pids[p], 0);
                if (pids[p] == 0)
                        _exit(produce(seg.base, seg.size, p, per_producer));
        }

        while (received < total) {
                int r = ringbuf_wait(&rb, TIMEOUT_NS);
                ck_assert_msg(r == 0, "no record for 60 s after %llu of %llu (%d)",
                              (unsigned long long) received, (unsigned long long) total, r);
                for (;;) {
                        int n = ringbuf_pop(&rb, buf, sizeof(buf));
                        if (n == -EAGAIN)
                                break;
                        ck_assert_int_ge(n, 8);
                        uint32_t p = unaligned_read_le32(buf), seq = unaligned_read_le32(buf + 4);
                        ck_assert_msg(p < producers, "unknown producer %u", p);
                        ck_assert_msg(seq == next[p], "producer %u: got record %u, expected %u",
                                      p, seq, next[p]);
                        ck_assert_uint_eq((size_t) n, record_len(p, seq));
                        for (int i = 8; i < n; i++)
                                if (buf[i] != record_byte(p, seq, (size_t) i))
                                        ck_abort_msg("producer %u record %u byte %d corrupt", p, seq, i);
                        next[p]++;
                        received++;
                }
        }

        for (unsigned p = 0; p < producers; p++) {
                ck_assert_int_eq(test_wait_child(pids[p]), 0);
                ck_assert_uint_eq(next[p], per_producer);
        }
        /* Nothing beyond the expected records was published. */
        ck_assert_int_eq(ringbuf_pop(&rb, buf, sizeof(buf)), -EAGAIN);
        segment_done(&seg);
}

START_TEST(test_four_producers_240k_records) {
        run_stress(4096, 4, 60000);
}
END_TEST

START_TEST(test_six_producers_tiny_ring) {
        /* 512 bytes hold at most a few records: producers mostly sleep on space and lock. */
        run_stress(512, 6, 10000);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("ringbuf-mpsc");
        TCase *tc = tcase_create("mpsc");

        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, test_four_producers_240k_records);
        tcase_add_test(tc, test_six_producers_tiny_ring);
        suite_add_tcase(s, tc);
        return s;
}
