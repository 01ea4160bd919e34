/* SPDX-License-Identifier: MIT */
/*
 * Access keys (src/impulsed/keys.c) with a real sd-event loop and real argon2id: hashing and
 * verification, completions that always come from the loop, a loop that keeps turning while
 * argon2 runs, the verified-key cache, per-client rate limiting with its one warning, the
 * bound on outstanding work, and cancellation by keys_free(). Orderings asserted here follow
 * from the single FIFO worker, not from timing; where a claim needs argon2 to take time, the
 * job is argon2id-interactive (64 MiB), which takes tens of milliseconds at the very least.
 * Rate-limit checks assume only that a test takes less than the 10 s failure window.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "keys.h"
#include "log.h"
#include "test-util.h"
#include "time-util.h"

/* Generous: argon2-interactive under valgrind takes seconds. */
#define DEADLINE_NS (120 * (int64_t) NSEC_PER_SEC)
#define SLOW_TIMEOUT_S 300

/* argon2id at crypto_pwhash_argon2id_*_INTERACTIVE of the key "slow": verifying any key
 * against it keeps the worker busy for tens of milliseconds at least. */
#define SLOW_HASH \
        "$argon2id$v=19$m=65536,t=2,p=1$MaDAo5M7S5nkEzK7dyIrUA$" \
        "Bto5hUe/12eCDk5npQJpk5XNupWSFVkGNuGu5TRhL1A"
#define SLOW_WRONG_KEY "not slow"

/* Order in which callbacks ran, across all results of a test. */
static unsigned completions;

typedef struct HashResult {
        bool done;
        int r;
        char *hash;
        unsigned seq;
} HashResult;

typedef struct VerifyResult {
        bool done;
        int r;
        unsigned seq;
        /* Timer ticks seen when the callback ran (test_loop_responsive). */
        unsigned ticks;
} VerifyResult;

static unsigned ticks;

static void on_hash(int r, char *hash, void *userdata) {
        HashResult *h = userdata;

        ck_assert_msg(!h->done, "hash callback ran twice");
        h->done = true;
        h->r = r;
        h->hash = hash;
        h->seq = ++completions;
}

static void on_verify(int r, void *userdata) {
        VerifyResult *v = userdata;

        ck_assert_msg(!v->done, "verify callback ran twice");
        v->done = true;
        v->r = r;
        v->seq = ++completions;
        v->ticks = ticks;
}

static void on_hash_forbidden(int r, char *hash, void *userdata) {
        ck_abort_msg("hash callback of a cancelled job ran (r=%d)", r);
}

static void on_verify_forbidden(int r, void *userdata) {
        ck_abort_msg("verify callback of a cancelled job ran (r=%d)", r);
}

/* Runs the loop until *flag is set; a deadline turns a hang into a failure. */
static void run_until(sd_event *e, const bool *flag) {
        uint64_t deadline = deadline_after(DEADLINE_NS);

        while (!*flag) {
                /* Wakes every 100 ms (the timeout is in us) to check the deadline. */
                ck_assert_int_ge(sd_event_run(e, 100 * 1000), 0);
                ck_assert_msg(now_ns(CLOCK_MONOTONIC) < deadline, "no completion before deadline");
        }
}

static void setup(sd_event **ret_e, Keys **ret_k, KeysCost cost) {
        completions = 0;
        ticks = 0;
        ck_assert_int_ge(sd_event_new(ret_e), 0);
        ck_assert_int_eq(keys_new(ret_k, *ret_e, cost), 0);
}

static void teardown(sd_event *e, Keys *k) {
        ck_assert_ptr_null(keys_free(k));
        sd_event_unref(e);
}

/* Hashes key on k and waits for the result; the caller frees it. */
static char *hash_now(sd_event *e, Keys *k, const char *key) {
        HashResult h = {};

        ck_assert_int_eq(keys_hash_async(k, key, strlen(key), on_hash, &h), 0);
        run_until(e, &h.done);
        ck_assert_int_eq(h.r, 0);
        ck_assert_ptr_nonnull(h.hash);
        return h.hash;
}

static int verify_now(sd_event *e, Keys *k, uint64_t client_id, const char *hash, const char *key) {
        VerifyResult v = {};

        ck_assert_int_eq(keys_verify_async(k, client_id, hash, key, strlen(key), on_verify, &v), 0);
        ck_assert_msg(!v.done, "callback ran inside keys_verify_async()");
        run_until(e, &v.done);
        return v.r;
}

START_TEST(test_cost_from_string) {
        KeysCost c = KEYS_COST_MODERATE;

        ck_assert_int_eq(keys_cost_from_string("min", &c), 0);
        ck_assert_int_eq(c, KEYS_COST_MIN);
        ck_assert_int_eq(keys_cost_from_string("interactive", &c), 0);
        ck_assert_int_eq(c, KEYS_COST_INTERACTIVE);
        ck_assert_int_eq(keys_cost_from_string("moderate", &c), 0);
        ck_assert_int_eq(c, KEYS_COST_MODERATE);
        ck_assert_int_eq(keys_cost_from_string("Moderate", &c), -EINVAL);
        ck_assert_int_eq(keys_cost_from_string("", &c), -EINVAL);
        ck_assert_int_eq(keys_cost_from_string(NULL, &c), -EINVAL);
        ck_assert_int_eq(keys_cost_from_string("min", NULL), -EINVAL);
        ck_assert_int_eq(c, KEYS_COST_MODERATE);
}
END_TEST

START_TEST(test_bad_arguments) {
        char long_key[KEYS_KEY_MAX + 1], long_hash[300];
        VerifyResult v = {};
        HashResult h = {};
        sd_event *e;
        Keys *k, *k2 = NULL;
        char *hash;

        setup(&e, &k, KEYS_COST_MIN);
        ck_assert_int_eq(keys_new(NULL, e, KEYS_COST_MIN), -EINVAL);
        ck_assert_int_eq(keys_new(&k2, NULL, KEYS_COST_MIN), -EINVAL);
        ck_assert_int_eq(keys_new(&k2, e, (KeysCost) 42), -EINVAL);
        ck_assert_ptr_null(k2);
        ck_assert_ptr_null(keys_free(NULL));
        keys_forget_client(NULL, 1);
        keys_forget_client(k, 12345);

        memset(long_key, 'k', sizeof(long_key));
        memset(long_hash, 'a', sizeof(long_hash) - 1);
        long_hash[sizeof(long_hash) - 1] = '\0';
        hash = hash_now(e, k, "key");

        ck_assert_int_eq(keys_hash_async(NULL, "key", 3, on_hash, &h), -EINVAL);
        ck_assert_int_eq(keys_hash_async(k, NULL, 3, on_hash, &h), -EINVAL);
        ck_assert_int_eq(keys_hash_async(k, "key", 3, NULL, &h), -EINVAL);
        ck_assert_int_eq(keys_hash_async(k, long_key, sizeof(long_key), on_hash, &h), -EMSGSIZE);

        ck_assert_int_eq(keys_verify_async(NULL, 1, hash, "key", 3, on_verify, &v), -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, NULL, "key", 3, on_verify, &v), -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, hash, NULL, 3, on_verify, &v), -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, hash, "key", 3, NULL, &v), -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, hash, long_key, sizeof(long_key), on_verify, &v),
                         -EMSGSIZE);
        /* Malformed stored hashes are the caller's error, refused before any work. */
        ck_assert_int_eq(keys_verify_async(k, 1, "", "key", 3, on_verify, &v), -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, "$argon2id$garbage", "key", 3, on_verify, &v),
                         -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, "$2y$10$abcdefghijklmnopqrstuv", "key", 3,
                                           on_verify, &v), -EINVAL);
        ck_assert_int_eq(keys_verify_async(k, 1, long_hash, "key", 3, on_verify, &v), -EINVAL);

        /* None of the refused calls may complete later. */
        ck_assert_int_eq(sd_event_run(e, 0), 0);
        ck_assert(!h.done);
        ck_assert(!v.done);
        /* Nor did they count against client 1. */
        ck_assert_int_eq(verify_now(e, k, 1, hash, "key"), 1);

        free(hash);
        teardown(e, k);
}
END_TEST

START_TEST(test_hash_verify) {
        static const char binary[] = { 'a', 'b', '\0', 'c', 'd' };
        HashResult h1 = {}, h2 = {}, hb = {};
        VerifyResult v = {};
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        ck_assert_int_eq(keys_hash_async(k, "correct horse", 13, on_hash, &h1), 0);
        ck_assert_int_eq(keys_hash_async(k, "correct horse", 13, on_hash, &h2), 0);
        ck_assert_int_eq(keys_hash_async(k, binary, sizeof(binary), on_hash, &hb), 0);
        ck_assert_msg(!h1.done && !h2.done && !hb.done, "callback ran inside keys_hash_async()");
        run_until(e, &hb.done);
        /* One FIFO worker: completions arrive in submission order. */
        ck_assert(h1.done && h2.done);
        ck_assert_uint_lt(h1.seq, h2.seq);
        ck_assert_uint_lt(h2.seq, hb.seq);
        ck_assert_int_eq(h1.r, 0);
        ck_assert_int_eq(h2.r, 0);
        ck_assert_int_eq(hb.r, 0);
        ck_assert_msg(strncmp(h1.hash, "$argon2id$", 10) == 0, "not argon2id: %s", h1.hash);
        ck_assert_msg(strncmp(hb.hash, "$argon2id$", 10) == 0, "not argon2id: %s", hb.hash);
        /* KEYS_COST_MIN is libsodium's minimum: 8 KiB, one pass. */
        ck_assert_ptr_nonnull(strstr(h1.hash, "$m=8,t=1,p=1$"));
        /* Random salts: the same key never hashes to the same string. */
        ck_assert_str_ne(h1.hash, h2.hash);
        /* The plaintext appears nowhere in the result. */
        ck_assert_ptr_null(strstr(h1.hash, "correct horse"));

        ck_assert_int_eq(verify_now(e, k, 1, h1.hash, "correct horse"), 1);
        ck_assert_int_eq(verify_now(e, k, 2, h2.hash, "correct horse"), 1);
        ck_assert_int_eq(verify_now(e, k, 3, h1.hash, "correct hors"), 0);
        ck_assert_int_eq(verify_now(e, k, 3, h1.hash, "Correct horse"), 0);
        ck_assert_int_eq(verify_now(e, k, 3, h1.hash, ""), 0);

        /* Keys are bytes with a length, NUL included. */
        ck_assert_int_eq(keys_verify_async(k, 4, hb.hash, binary, sizeof(binary), on_verify, &v),
                         0);
        run_until(e, &v.done);
        ck_assert_int_eq(v.r, 1);
        ck_assert_int_eq(verify_now(e, k, 4, hb.hash, "ab"), 0);

        free(h1.hash);
        free(h2.hash);
        free(hb.hash);
        teardown(e, k);
}
END_TEST

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        ticks++;
        /* From now, not from usec: a loop that was held up ticks once, it does not catch up. */
        ck_assert_int_ge(sd_event_source_set_time(s, now_ns(CLOCK_MONOTONIC) / 1000 + 1000), 0);
        ck_assert_int_ge(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT), 0);
        return 0;
}

START_TEST(test_loop_responsive) {
        sd_event_source *timer = NULL;
        uint64_t loop_cpu, all_cpu;
        VerifyResult v = {};
        HashResult h = {};
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_INTERACTIVE);
        /* A 1 ms timer with 1 us accuracy stands for other clients' requests. It outranks the
         * completions, so once it is due it runs before one that is ready in the same
         * iteration: however threads are scheduled (valgrind runs one at a time), it ticks
         * before a verification that takes longer than 1 ms, and argon2 at 64 MiB does. */
        ck_assert_int_ge(sd_event_add_time(e, &timer, CLOCK_MONOTONIC,
                                           now_ns(CLOCK_MONOTONIC) / 1000 + 1000, 1, on_tick, NULL),
                         0);
        ck_assert_int_ge(sd_event_source_set_priority(timer, SD_EVENT_PRIORITY_IMPORTANT), 0);

        ck_assert_int_eq(keys_hash_async(k, "interactive key", 15, on_hash, &h), 0);
        run_until(e, &h.done);
        ck_assert_int_eq(h.r, 0);
        ck_assert_ptr_nonnull(strstr(h.hash, "$argon2id$v=19$m=65536,t=2,p=1$"));

        ticks = 0;
        ck_assert_int_ge(sd_event_source_set_time(timer, now_ns(CLOCK_MONOTONIC) / 1000 + 1000), 0);
        ck_assert_int_ge(sd_event_source_set_enabled(timer, SD_EVENT_ONESHOT), 0);
        loop_cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
        all_cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID);
        ck_assert_int_eq(keys_verify_async(k, 1, h.hash, "interactive key", 15, on_verify, &v), 0);
        ck_assert(!v.done);
        run_until(e, &v.done);
        loop_cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - loop_cpu;
        all_cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID) - all_cpu;
        ck_assert_int_eq(v.r, 1);
        ck_assert_uint_ge(v.ticks, 1);
        /* Ticks alone would also follow an argon2 run inside the call. This tells where it
         * ran: the loop thread's share of the CPU time is its ticks, about 1%, not half. */
        ck_assert_msg(loop_cpu * 2 < all_cpu, "loop thread used %llu of %llu ns CPU",
                      (unsigned long long) loop_cpu, (unsigned long long) all_cpu);
        printf("# %u timer ticks during one interactive verification; loop thread CPU %llu us "
               "of %llu us\n", v.ticks, (unsigned long long) (loop_cpu / 1000),
               (unsigned long long) (all_cpu / 1000));

        sd_event_source_unref(timer);
        free(h.hash);
        teardown(e, k);
}
END_TEST

START_TEST(test_cache) {
        VerifyResult first[5] = {}, refused = {}, hits[6] = {}, other[5] = {}, refused2 = {};
        VerifyResult wrong = {};
        HashResult before = {};
        char *hash, *hash2;
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        hash = hash_now(e, k, "alpha");
        hash2 = hash_now(e, k, "alpha");

        /* Uncached, each verification holds one of its client's in-flight slots until it is
         * delivered (test_rate_limit), so a sixth at once is refused. The loop does not run
         * between the calls, so none is delivered early: this is exact, not a race. */
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(keys_verify_async(k, 1, hash, "alpha", 5, on_verify, &first[i]),
                                 0);
        ck_assert_int_eq(keys_verify_async(k, 1, hash, "alpha", 5, on_verify, &refused), 0);
        /* The refusal is queued for delivery when submitted, so it may come before or after
         * any of the five: wait for both ends. */
        run_until(e, &first[4].done);
        run_until(e, &refused.done);
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(first[i].r, 1);
        ck_assert_int_eq(refused.r, -EBUSY);

        /* Cached now: hits take no slot and no argon2, so six at once all match, and each
         * still completes from the loop, never inside the call. */
        for (unsigned i = 0; i < 6; i++) {
                ck_assert_int_eq(keys_verify_async(k, 1, hash, "alpha", 5, on_verify, &hits[i]), 0);
                ck_assert(!hits[i].done);
        }
        run_until(e, &hits[5].done);
        for (unsigned i = 0; i < 6; i++)
                ck_assert_int_eq(hits[i].r, 1);

        /* The pair is cached, not the key: the same key under another hash needs argon2. */
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(keys_verify_async(k, 2, hash2, "alpha", 5, on_verify, &other[i]),
                                 0);
        ck_assert_int_eq(keys_verify_async(k, 2, hash2, "alpha", 5, on_verify, &refused2), 0);
        run_until(e, &other[4].done);
        run_until(e, &refused2.done);
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(other[i].r, 1);
        ck_assert_int_eq(refused2.r, -EBUSY);

        /* Failures are never cached: the same wrong pair again waits for the worker, behind a
         * job submitted before it. */
        ck_assert_int_eq(verify_now(e, k, 3, hash, "alphb"), 0);
        ck_assert_int_eq(keys_hash_async(k, "x", 1, on_hash, &before), 0);
        ck_assert_int_eq(keys_verify_async(k, 3, hash, "alphb", 5, on_verify, &wrong), 0);
        run_until(e, &wrong.done);
        ck_assert(before.done);
        ck_assert_uint_lt(before.seq, wrong.seq);
        ck_assert_int_eq(wrong.r, 0);

        free(before.hash);
        free(hash);
        free(hash2);
        teardown(e, k);
}
END_TEST

/* Sends stderr, where the broker logs outside journald, to a memory file. */
static int stderr_capture(int *ret_saved) {
        int fd, saved;

        fd = memfd_create("stderr", MFD_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        saved = dup(STDERR_FILENO);
        ck_assert_int_ge(saved, 0);
        ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
        /* Chosen after the redirection: a memory file is no journal stream. */
        log_open();
        *ret_saved = saved;
        return fd;
}

/* Lines holding needle in what was captured so far. */
static unsigned stderr_count(int fd, const char *needle) {
        char buf[16384];
        unsigned n = 0;
        ssize_t len;

        len = pread(fd, buf, sizeof(buf) - 1, 0);
        ck_assert_int_ge(len, 0);
        buf[len] = '\0';
        for (const char *p = buf; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static void stderr_release(int fd, int saved) {
        ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
        close(saved);
        close(fd);
}

START_TEST(test_rate_limit) {
        static const char warning7[] = "client 7 sent too many wrong access keys",
                          warning9[] = "client 9 sent too many wrong access keys";
        VerifyResult burst[5] = {}, sixth = {}, over = {};
        int log_fd, saved;
        char *hash;
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        hash = hash_now(e, k, "sesame");
        log_fd = stderr_capture(&saved);

        /* A right key first, so that it is cached: being limited must override the cache. */
        ck_assert_int_eq(verify_now(e, k, 7, hash, "sesame"), 1);
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(verify_now(e, k, 7, hash, "guess"), 0);
        ck_assert_uint_eq(stderr_count(log_fd, warning7), 0);
        ck_assert_int_eq(verify_now(e, k, 7, hash, "sesame"), -EBUSY);
        ck_assert_int_eq(verify_now(e, k, 7, hash, "guess"), -EBUSY);
        ck_assert_int_eq(verify_now(e, k, 7, hash, "sesame"), -EBUSY);
        /* One warning per window, however often the client is refused. */
        ck_assert_uint_eq(stderr_count(log_fd, warning7), 1);
        /* Other clients are not affected. */
        ck_assert_int_eq(verify_now(e, k, 8, hash, "sesame"), 1);
        ck_assert_int_eq(verify_now(e, k, 8, hash, "guess"), 0);
        ck_assert_int_eq(verify_now(e, k, 8, hash, "sesame"), 1);

        /* A client that is gone starts afresh under a reused id. */
        keys_forget_client(k, 7);
        ck_assert_int_eq(verify_now(e, k, 7, hash, "sesame"), 1);
        ck_assert_int_eq(verify_now(e, k, 7, hash, "guess"), 0);

        /* Guesses still in flight count: a burst cannot queue more than the budget. Refusing
         * it is quiet, as no key has been proven wrong yet. */
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(keys_verify_async(k, 9, hash, "guess", 5, on_verify, &burst[i]),
                                 0);
        ck_assert_int_eq(keys_verify_async(k, 9, hash, "sesame", 6, on_verify, &sixth), 0);
        run_until(e, &sixth.done);
        ck_assert_int_eq(sixth.r, -EBUSY);
        ck_assert_uint_eq(stderr_count(log_fd, warning9), 0);
        run_until(e, &burst[4].done);
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(burst[i].r, 0);
        ck_assert_int_eq(keys_verify_async(k, 9, hash, "sesame", 6, on_verify, &over), 0);
        ck_assert(!over.done);
        run_until(e, &over.done);
        ck_assert_int_eq(over.r, -EBUSY);
        ck_assert_uint_eq(stderr_count(log_fd, warning9), 1);
        /* Neither key made it into the log. */
        ck_assert_uint_eq(stderr_count(log_fd, "sesame"), 0);
        ck_assert_uint_eq(stderr_count(log_fd, "guess"), 0);

        stderr_release(log_fd, saved);
        free(hash);
        teardown(e, k);
}
END_TEST

START_TEST(test_many_clients) {
        enum { CLIENTS = 50, BASE = 1000 };
        VerifyResult *v;
        int log_fd, saved;
        char *hash;
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        hash = hash_now(e, k, "sesame");
        v = calloc(CLIENTS * 6, sizeof(*v));
        ck_assert_ptr_nonnull(v);
        log_fd = stderr_capture(&saved);

        /* Enough records to make the client table grow several times, all in flight at once
         * (5 * CLIENTS <= KEYS_JOBS_MAX). */
        for (unsigned i = 0; i < CLIENTS * 5; i++)
                ck_assert_int_eq(keys_verify_async(k, BASE + i % CLIENTS, hash, "guess", 5,
                                                   on_verify, &v[i]), 0);
        run_until(e, &v[CLIENTS * 5 - 1].done);
        for (unsigned i = 0; i < CLIENTS * 5; i++)
                ck_assert_int_eq(v[i].r, 0);
        ck_assert_uint_eq(stderr_count(log_fd, "sent too many wrong access keys"), 0);

        /* Every one of them is limited now, each with its own warning, even with the right
         * key, except the one that is forgotten. */
        keys_forget_client(k, BASE + 7);
        for (unsigned i = CLIENTS * 5; i < CLIENTS * 6; i++)
                ck_assert_int_eq(keys_verify_async(k, BASE + i % CLIENTS, hash, "sesame", 6,
                                                   on_verify, &v[i]), 0);
        /* The refusals are delivered as submitted; the forgotten client's key waits for argon2. */
        run_until(e, &v[CLIENTS * 6 - 1].done);
        run_until(e, &v[CLIENTS * 5 + 7].done);
        for (unsigned i = CLIENTS * 5; i < CLIENTS * 6; i++)
                ck_assert_int_eq(v[i].r, i % CLIENTS == 7 ? 1 : -EBUSY);
        ck_assert_uint_eq(stderr_count(log_fd, "sent too many wrong access keys"), CLIENTS - 1);
        ck_assert_uint_eq(stderr_count(log_fd, "client 1007 "), 0);

        stderr_release(log_fd, saved);
        free(v);
        free(hash);
        teardown(e, k);
}
END_TEST

START_TEST(test_queue_full) {
        HashResult *h;
        VerifyResult v = {};
        HashResult extra = {};
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        h = calloc(KEYS_JOBS_MAX, sizeof(*h));
        ck_assert_ptr_nonnull(h);

        /* Jobs count until their callback runs, and callbacks need the loop, which is not
         * running: exactly KEYS_JOBS_MAX are accepted, whatever the worker has done. */
        for (unsigned i = 0; i < KEYS_JOBS_MAX; i++)
                ck_assert_int_eq(keys_hash_async(k, "q", 1, on_hash, &h[i]), 0);
        ck_assert_int_eq(keys_hash_async(k, "q", 1, on_hash, &extra), -EBUSY);
        ck_assert_int_eq(keys_verify_async(k, 1, SLOW_HASH, "q", 1, on_verify, &v), -EBUSY);

        run_until(e, &h[KEYS_JOBS_MAX - 1].done);
        for (unsigned i = 0; i < KEYS_JOBS_MAX; i++) {
                ck_assert(h[i].done);
                ck_assert_int_eq(h[i].r, 0);
                ck_assert_uint_eq(h[i].seq, i + 1);
                free(h[i].hash);
        }
        ck_assert(!extra.done && !v.done);

        /* Delivered jobs free their slots. */
        ck_assert_int_eq(keys_hash_async(k, "q", 1, on_hash, &extra), 0);
        run_until(e, &extra.done);
        ck_assert_int_eq(extra.r, 0);
        free(extra.hash);

        free(h);
        teardown(e, k);
}
END_TEST

START_TEST(test_free_cancels) {
        char *hash;
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        hash = hash_now(e, k, "key");
        ck_assert_int_eq(verify_now(e, k, 1, hash, "key"), 1);

        /* Work at every stage: the slow job running, jobs queued behind it, and jobs complete
         * but undelivered (a cache hit, a rate-limit refusal). None may call back. */
        ck_assert_int_eq(keys_verify_async(k, 2, SLOW_HASH, SLOW_WRONG_KEY, strlen(SLOW_WRONG_KEY),
                                           on_verify_forbidden, NULL), 0);
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_eq(keys_verify_async(k, 3, hash, "bad", 3, on_verify_forbidden, NULL),
                                 0);
        ck_assert_int_eq(keys_verify_async(k, 3, hash, "key", 3, on_verify_forbidden, NULL), 0);
        ck_assert_int_eq(keys_verify_async(k, 1, hash, "key", 3, on_verify_forbidden, NULL), 0);
        for (unsigned i = 0; i < 8; i++)
                ck_assert_int_eq(keys_hash_async(k, "k", 1, on_hash_forbidden, NULL), 0);

        ck_assert_ptr_null(keys_free(k));
        ck_assert_int_eq(sd_event_run(e, 0), 0);

        free(hash);
        sd_event_unref(e);
}
END_TEST

static Keys *free_from_callback_keys;

static void on_verify_free(int r, void *userdata) {
        VerifyResult *v = userdata;

        on_verify(r, v);
        free_from_callback_keys = keys_free(free_from_callback_keys);
}

START_TEST(test_free_from_callback) {
        VerifyResult v = {};
        char *hash;
        sd_event *e;
        Keys *k;

        setup(&e, &k, KEYS_COST_MIN);
        hash = hash_now(e, k, "key");
        free_from_callback_keys = k;
        ck_assert_int_eq(keys_verify_async(k, 1, hash, "key", 3, on_verify_free, &v), 0);
        for (unsigned i = 0; i < 4; i++)
                ck_assert_int_eq(keys_hash_async(k, "k", 1, on_hash_forbidden, NULL), 0);
        run_until(e, &v.done);
        ck_assert_int_eq(v.r, 1);
        ck_assert_ptr_null(free_from_callback_keys);
        ck_assert_int_eq(sd_event_run(e, 0), 0);

        free(hash);
        sd_event_unref(e);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("keys");
        TCase *tc = tcase_create("keys");

        tcase_set_timeout(tc, SLOW_TIMEOUT_S);
        tcase_add_test(tc, test_cost_from_string);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_hash_verify);
        tcase_add_test(tc, test_loop_responsive);
        tcase_add_test(tc, test_cache);
        tcase_add_test(tc, test_rate_limit);
        tcase_add_test(tc, test_many_clients);
        tcase_add_test(tc, test_queue_full);
        tcase_add_test(tc, test_free_cancels);
        tcase_add_test(tc, test_free_from_callback);
        suite_add_tcase(s, tc);
        return s;
}
