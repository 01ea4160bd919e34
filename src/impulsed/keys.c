/* SPDX-License-Identifier: MIT */
/*
 * Access keys (keys.h): argon2id hashing and verification on one worker thread, completions
 * handed back to the sd-event loop through an eventfd, a cache of recently verified
 * (hash, key) pairs, and per-client rate limiting of wrong keys. Every plaintext copy made here
 * lives in sodium_malloc() memory and is wiped as soon as argon2 is done with it. This file
 * must never log or keep a plaintext key, nor run argon2 on the loop thread.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-event.h>

#include "keys.h"
#include "log.h"
#include "macro.h"
#include "time-util.h"

/* A client may send this many wrong keys per window; beyond, its keys are refused unchecked
 * until the window (which opens at its first wrong key) has passed. */
#define KEYS_FAILURE_BUDGET 5U
#define KEYS_FAILURE_WINDOW_NS (10U * NSEC_PER_SEC)
/* Failure records kept; beyond, the least recently active one is forgotten. */
#define KEYS_CLIENTS_MAX 65536U
#define KEYS_CLIENT_BUCKET_BITS_MIN 4U
/* Verified pairs remembered; a broker checks few distinct keys, so a small ring suffices. */
#define KEYS_CACHE_SIZE 64U

typedef enum JobKind {
        JOB_HASH,
        JOB_VERIFY,
} JobKind;

typedef struct Job Job;
struct Job {
        Job *next;
        JobKind kind;
        /* The outcome, set by whoever completes the job: the worker or the submitting call. */
        int r;
        uint64_t client_id;
        /* Non-zero: the job holds an in-flight slot of the client record with this serial. */
        uint64_t record_serial;
        /* A match found by argon2 (not by the cache) is remembered under digest. */
        bool cacheable;
        uint8_t digest[crypto_generichash_BYTES];
        /* The plaintext copy in guarded, locked memory; NULL once wiped. */
        char *key;
        size_t key_len;
        /* Verify: the stored hash string. Hash: the result. */
        char hash[crypto_pwhash_STRBYTES];
        KeysHashDone hash_done;
        KeysVerifyDone verify_done;
        void *userdata;
};

typedef struct JobList {
        Job *head, *tail;
} JobList;

typedef struct ClientRecord ClientRecord;
struct ClientRecord {
        uint64_t client_id;
        /* Tells a record from a later one of the same id (after keys_forget_client()). */
        uint64_t serial;
        /* CLOCK_MONOTONIC time of the first wrong key of the current window. */
        uint64_t window_start;
        unsigned failures;
        unsigned in_flight;
        /* The rate-limit warning of the current window has been logged. */
        bool warned;
        ClientRecord *bucket_next;
        ClientRecord *older, *newer;
};

struct Keys {
        sd_event *event;
        sd_event_source *completion_source;
        int efd;
        unsigned long long opslimit;
        size_t memlimit;

        /* Loop thread only. */
        unsigned n_jobs;
        ClientRecord **buckets;
        unsigned bucket_bits;
        size_t n_clients;
        uint64_t last_serial;
        ClientRecord *oldest, *newest;
        uint8_t *cache_key;
        uint8_t cache[KEYS_CACHE_SIZE][crypto_generichash_BYTES];
        unsigned n_cache, cache_next;

        /* Shared with the worker under lock; set up before the worker starts. */
        bool sync_ready;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        JobList queue;
        JobList done;
        bool stopping;
        bool worker_running;
        pthread_t worker;
};

static void job_list_push(JobList *l, Job *j) {
        j->next = NULL;
        if (l->tail)
                l->tail->next = j;
        else
                l->head = j;
        l->tail = j;
}

static Job *job_list_pop(JobList *l) {
        Job *j = l->head;

        if (!j)
                return NULL;
        l->head = j->next;
        if (!l->head)
                l->tail = NULL;
        j->next = NULL;
        return j;
}

static void job_wipe_key(Job *j) {
        if (!j->key)
                return;
        sodium_memzero(j->key, j->key_len);
        sodium_free(j->key);
        j->key = NULL;
        j->key_len = 0;
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        job_wipe_key(j);
        /* The digest identifies a key to whoever holds the cache secret: no copy outlives us. */
        sodium_memzero(j, sizeof(*j));
        free(j);
        return NULL;
}
DEFINE_FREEP(Job, job_free);

static void job_list_free(JobList *l) {
        Job *j;

        while ((j = job_list_pop(l)))
                job_free(j);
}

static int job_new(Job **ret, JobKind kind, void *userdata) {
        Job *j;

        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->kind = kind;
        j->userdata = userdata;
        *ret = j;
        return 0;
}

static int job_copy_key(Job *j, const char *key, size_t len) {
        /* sodium_malloc() puts the copy between guard pages and mlocks it, so it is neither
         * swapped out nor reachable by a stray overrun; failing mlock is not fatal there. */
        j->key = sodium_malloc(len);
        if (!j->key)
                return -ENOMEM;
        memcpy(j->key, key, len);
        j->key_len = len;
        return 0;
}

/* Called with the lock held. The eventfd counter is non-zero exactly while the done list is
 * non-empty: raised when the list stops being empty, reset when the loop takes the last job. */
static void done_push_locked(Keys *k, Job *j) {
        bool was_empty = !k->done.head;
        int r;

        job_list_push(&k->done, j);
        if (!was_empty)
                return;
        /* Cannot fail: the counter is 0 here and the fd lives until the worker is joined. */
        r = eventfd_write(k->efd, 1);
        assert(r >= 0);
        (void) r;
}

static void job_run(const Keys *k, Job *j) {
        /* libsodium reports the cause in errno, which is ours alone on this thread. */
        errno = 0;
        if (j->kind == JOB_HASH) {
                if (crypto_pwhash_str_alg(j->hash, j->key, j->key_len, k->opslimit, k->memlimit,
                                          crypto_pwhash_ALG_ARGON2ID13) < 0)
                        j->r = negative_errno();
                else
                        j->r = 0;
        } else if (crypto_pwhash_str_verify(j->hash, j->key, j->key_len) == 0)
                j->r = 1;
        else if (errno == EINVAL)
                /* libsodium's mark of a mismatch; the string itself was checked on submission. */
                j->r = 0;
        else
                j->r = negative_errno();
        job_wipe_key(j);
}

static void *worker_main(void *userdata) {
        Keys *k = userdata;

        for (;;) {
                Job *j;

                pthread_mutex_lock(&k->lock);
                while (!k->stopping && !k->queue.head)
                        pthread_cond_wait(&k->wake, &k->lock);
                if (k->stopping) {
                        pthread_mutex_unlock(&k->lock);
                        return NULL;
                }
                j = job_list_pop(&k->queue);
                pthread_mutex_unlock(&k->lock);

                /* The lock is not held while argon2 runs, so the loop can keep queueing. */
                job_run(k, j);

                pthread_mutex_lock(&k->lock);
                done_push_locked(k, j);
                pthread_mutex_unlock(&k->lock);
        }
}

static void job_enqueue(Keys *k, Job *j) {
        k->n_jobs++;
        pthread_mutex_lock(&k->lock);
        job_list_push(&k->queue, j);
        pthread_cond_signal(&k->wake);
        pthread_mutex_unlock(&k->lock);
}

/* For outcomes known at submission: still delivered from the loop, never from inside the
 * *_async() call, so callers see one completion path. */
static void job_complete_now(Keys *k, Job *j, int r) {
        j->r = r;
        k->n_jobs++;
        pthread_mutex_lock(&k->lock);
        done_push_locked(k, j);
        pthread_mutex_unlock(&k->lock);
}

static size_t client_bucket(uint64_t client_id, unsigned bits) {
        /* Fibonacci hashing: ids are mostly sequential, the multiply spreads them over the top
         * bits. */
        return (size_t) ((client_id * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - bits));
}

static ClientRecord *client_find(Keys *k, uint64_t client_id) {
        ClientRecord *c;

        for (c = k->buckets[client_bucket(client_id, k->bucket_bits)]; c; c = c->bucket_next)
                if (c->client_id == client_id)
                        return c;
        return NULL;
}

static void client_unlink_age(Keys *k, ClientRecord *c) {
        if (c->older)
                c->older->newer = c->newer;
        else
                k->oldest = c->newer;
        if (c->newer)
                c->newer->older = c->older;
        else
                k->newest = c->older;
        c->older = c->newer = NULL;
}

static void client_link_newest(Keys *k, ClientRecord *c) {
        c->older = k->newest;
        c->newer = NULL;
        if (k->newest)
                k->newest->newer = c;
        else
                k->oldest = c;
        k->newest = c;
}

static void client_touch(Keys *k, ClientRecord *c) {
        client_unlink_age(k, c);
        client_link_newest(k, c);
}

static void client_drop(Keys *k, ClientRecord *c) {
        ClientRecord **p = &k->buckets[client_bucket(c->client_id, k->bucket_bits)];

        while (*p != c)
                p = &(*p)->bucket_next;
        *p = c->bucket_next;
        client_unlink_age(k, c);
        k->n_clients--;
        free(c);
}

/* Doubles the bucket array while records outnumber buckets; on allocation failure the chains
 * just grow longer. */
static void client_maybe_grow(Keys *k) {
        unsigned bits = k->bucket_bits + 1;
        ClientRecord **buckets;

        if (k->n_clients < ((size_t) 1 << k->bucket_bits) ||
            ((size_t) 1 << bits) > KEYS_CLIENTS_MAX)
                return;
        buckets = calloc((size_t) 1 << bits, sizeof(*buckets));
        if (!buckets)
                return;
        for (ClientRecord *c = k->oldest; c; c = c->newer) {
                size_t b = client_bucket(c->client_id, bits);

                c->bucket_next = buckets[b];
                buckets[b] = c;
        }
        free(k->buckets);
        k->buckets = buckets;
        k->bucket_bits = bits;
}

static int client_get(Keys *k, uint64_t client_id, ClientRecord **ret) {
        ClientRecord *c;
        size_t b;

        c = client_find(k, client_id);
        if (c) {
                *ret = c;
                return 0;
        }
        /* A flood of fresh ids must not grow the table without bound. */
        if (k->n_clients >= KEYS_CLIENTS_MAX)
                client_drop(k, k->oldest);
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->client_id = client_id;
        c->serial = ++k->last_serial;
        b = client_bucket(client_id, k->bucket_bits);
        c->bucket_next = k->buckets[b];
        k->buckets[b] = c;
        client_link_newest(k, c);
        k->n_clients++;
        client_maybe_grow(k);
        *ret = c;
        return 0;
}

static void client_expire(ClientRecord *c, uint64_t now) {
        if (c->failures > 0 && now - c->window_start >= KEYS_FAILURE_WINDOW_NS) {
                c->failures = 0;
                c->warned = false;
        }
}

static void client_drop_if_idle(Keys *k, ClientRecord *c) {
        if (c->failures == 0 && c->in_flight == 0)
                client_drop(k, c);
}

/* Whether client_id's key must be refused unchecked. Verifications still in flight count
 * against the budget as well as wrong keys: they may yet fail, and counting them stops a
 * client from queueing a burst of guesses before the first one is judged. */
static bool client_refused(Keys *k, uint64_t client_id, uint64_t now) {
        ClientRecord *c;
        uint64_t left;

        c = client_find(k, client_id);
        if (!c)
                return false;
        client_expire(c, now);
        if (c->failures + c->in_flight < KEYS_FAILURE_BUDGET) {
                client_drop_if_idle(k, c);
                return false;
        }
        /* Only proven wrong keys are worth a warning; a burst in flight is refused quietly. */
        if (c->failures >= KEYS_FAILURE_BUDGET && !c->warned) {
                left = c->window_start + KEYS_FAILURE_WINDOW_NS - now;
                log_ctx(LOG_WARNING, LOG_MESSAGE_KEY_RATE_LIMITED,
                        &(LogContext) { .client_id = client_id },
                        "client %llu sent too many wrong access keys; refusing keys for %u s",
                        (unsigned long long) client_id,
                        (unsigned) ((left + NSEC_PER_SEC - 1) / NSEC_PER_SEC));
                c->warned = true;
        }
        return true;
}

static void client_settle(Keys *k, const Job *j, uint64_t now) {
        ClientRecord *c;

        c = client_find(k, j->client_id);
        /* Gone (forgotten or evicted) or replaced meanwhile: the outcome is charged to nobody. */
        if (!c || c->serial != j->record_serial)
                return;
        assert(c->in_flight > 0);
        c->in_flight--;
        if (j->r == 0) {
                client_expire(c, now);
                if (c->failures == 0)
                        c->window_start = now;
                c->failures++;
                client_touch(k, c);
        }
        client_drop_if_idle(k, c);
}

static void cache_digest(const Keys *k, const char *hash, const char *key, size_t len,
                         uint8_t ret[static crypto_generichash_BYTES]) {
        crypto_generichash_state st;

        crypto_generichash_init(&st, k->cache_key, crypto_generichash_KEYBYTES,
                                crypto_generichash_BYTES);
        /* The hash string goes in with its NUL, which no argon2 string contains, so the split
         * between the two parts is unambiguous. */
        crypto_generichash_update(&st, (const unsigned char *) hash, strlen(hash) + 1);
        crypto_generichash_update(&st, (const unsigned char *) key, len);
        crypto_generichash_final(&st, ret, crypto_generichash_BYTES);
        sodium_memzero(&st, sizeof(st));
}

static bool cache_contains(const Keys *k, const uint8_t digest[static crypto_generichash_BYTES]) {
        bool found = false;

        /* Every entry is compared in constant time, so timing tells nothing about which or
         * how many entries nearly matched. */
        for (unsigned i = 0; i < k->n_cache; i++)
                found |= sodium_memcmp(k->cache[i], digest, crypto_generichash_BYTES) == 0;
        return found;
}

static void cache_add(Keys *k, const uint8_t digest[static crypto_generichash_BYTES]) {
        /* Two verifications of one pair may have been in flight together. */
        if (cache_contains(k, digest))
                return;
        memcpy(k->cache[k->cache_next], digest, crypto_generichash_BYTES);
        k->cache_next = (k->cache_next + 1) % KEYS_CACHE_SIZE;
        if (k->n_cache < KEYS_CACHE_SIZE)
                k->n_cache++;
}

/* Settles a finished job's bookkeeping, frees it and then runs its callback. k is not touched
 * after the callback, which may free it. */
static void job_deliver(Keys *k, Job *j) {
        KeysHashDone hash_done = j->hash_done;
        KeysVerifyDone verify_done = j->verify_done;
        void *userdata = j->userdata;
        JobKind kind = j->kind;
        char *hash = NULL;
        int r = j->r;

        assert(k->n_jobs > 0);
        k->n_jobs--;
        if (kind == JOB_VERIFY) {
                if (j->record_serial != 0)
                        client_settle(k, j, now_ns(CLOCK_MONOTONIC));
                /* Only matches are remembered: a failure must cost argon2 every time. */
                if (r == 1 && j->cacheable)
                        cache_add(k, j->digest);
        } else if (r >= 0) {
                hash = strdup(j->hash);
                if (!hash)
                        r = -ENOMEM;
        }
        job_free(j);

        if (kind == JOB_HASH)
                hash_done(r, hash, userdata);
        else
                verify_done(r, userdata);
}

/* Delivers one completion per loop iteration: other event sources get their turn between
 * completions, and nothing here runs after a callback that may have freed k. */
static int on_completion(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Keys *k = userdata;
        eventfd_t v;
        Job *j;
        int r;

        pthread_mutex_lock(&k->lock);
        j = job_list_pop(&k->done);
        if (!k->done.head) {
                /* Cannot fail: the list was non-empty, so the counter is non-zero. */
                r = eventfd_read(fd, &v);
                assert(r >= 0);
                (void) r;
        }
        pthread_mutex_unlock(&k->lock);

        /* The source only polls readable while the done list is non-empty. */
        assert(j);
        job_deliver(k, j);
        return 0;
}

int keys_cost_from_string(const char *s, KeysCost *ret) {
        static const char *const names[] = {
                [KEYS_COST_MIN] = "min",
                [KEYS_COST_INTERACTIVE] = "interactive",
                [KEYS_COST_MODERATE] = "moderate",
        };

        if (!s || !ret)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcmp(s, names[i]) == 0) {
                        *ret = (KeysCost) i;
                        return 0;
                }
        return -EINVAL;
}

DEFINE_FREEP(Keys, keys_free);

int keys_new(Keys **ret, sd_event *event, KeysCost cost) {
        _cleanup_(keys_freep) Keys *k = NULL;
        unsigned long long opslimit;
        size_t memlimit;
        sigset_t all, saved;
        int r;

        if (!ret || !event)
                return -EINVAL;
        /* The hashes name argon2id, so its own limits apply (libsodium's crypto_pwhash_*
         * defaults are the same values today). */
        switch (cost) {
        case KEYS_COST_MIN:
                opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN;
                memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN;
                break;
        case KEYS_COST_INTERACTIVE:
                opslimit = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE;
                memlimit = crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE;
                break;
        case KEYS_COST_MODERATE:
                opslimit = crypto_pwhash_argon2id_OPSLIMIT_MODERATE;
                memlimit = crypto_pwhash_argon2id_MEMLIMIT_MODERATE;
                break;
        default:
                return -EINVAL;
        }
        /* Idempotent and thread-safe; it seeds the generator behind salts and the cache key. */
        if (sodium_init() < 0)
                return -EIO;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->efd = -1;
        k->opslimit = opslimit;
        k->memlimit = memlimit;

        r = pthread_mutex_init(&k->lock, NULL);
        if (r != 0) {
                free(TAKE_PTR(k));
                return -r;
        }
        r = pthread_cond_init(&k->wake, NULL);
        if (r != 0) {
                pthread_mutex_destroy(&k->lock);
                free(TAKE_PTR(k));
                return -r;
        }
        k->sync_ready = true;

        k->bucket_bits = KEYS_CLIENT_BUCKET_BITS_MIN;
        k->buckets = calloc((size_t) 1 << k->bucket_bits, sizeof(*k->buckets));
        if (!k->buckets)
                return -ENOMEM;

        /* A fresh secret per process: digests mean nothing outside it and die with it. */
        k->cache_key = sodium_malloc(crypto_generichash_KEYBYTES);
        if (!k->cache_key)
                return -ENOMEM;
        crypto_generichash_keygen(k->cache_key);

        k->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (k->efd < 0)
                return negative_errno();
        k->event = sd_event_ref(event);
        r = sd_event_add_io(event, &k->completion_source, k->efd, EPOLLIN, on_completion, k);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(k->completion_source, "keys-completion");

        /* Signals are the loop's business (sd_event_add_signal() needs them blocked in every
         * thread), so the worker starts with all of them blocked. */
        sigfillset(&all);
        r = pthread_sigmask(SIG_BLOCK, &all, &saved);
        if (r != 0)
                return -r;
        r = pthread_create(&k->worker, NULL, worker_main, k);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        k->worker_running = true;
        (void) pthread_setname_np(k->worker, "impulsed-keys");

        *ret = TAKE_PTR(k);
        return 0;
}

Keys *keys_free(Keys *k) {
        if (!k)
                return NULL;

        if (k->worker_running) {
                pthread_mutex_lock(&k->lock);
                k->stopping = true;
                pthread_cond_signal(&k->wake);
                pthread_mutex_unlock(&k->lock);
                /* Waits for the job in progress, if any: argon2 cannot be interrupted. */
                (void) pthread_join(k->worker, NULL);
                k->worker_running = false;
        }
        /* Cancelled work: no callbacks (keys.h); plaintext copies are wiped with their jobs. */
        job_list_free(&k->queue);
        job_list_free(&k->done);

        k->completion_source = sd_event_source_disable_unref(k->completion_source);
        k->event = sd_event_unref(k->event);
        if (k->efd >= 0)
                close(k->efd);

        while (k->oldest)
                client_drop(k, k->oldest);
        free(k->buckets);
        sodium_free(k->cache_key);
        if (k->sync_ready) {
                pthread_cond_destroy(&k->wake);
                pthread_mutex_destroy(&k->lock);
        }
        /* Also wipes the cached digests. */
        sodium_memzero(k, sizeof(*k));
        free(k);
        return NULL;
}

static int keys_check_key(const char *key, size_t len) {
        if (!key)
                return -EINVAL;
        if (len > KEYS_KEY_MAX)
                return -EMSGSIZE;
        return 0;
}

int keys_hash_async(Keys *k, const char *key, size_t len, KeysHashDone done, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        int r;

        if (!k || !done)
                return -EINVAL;
        r = keys_check_key(key, len);
        if (r < 0)
                return r;
        if (k->n_jobs >= KEYS_JOBS_MAX)
                return -EBUSY;

        r = job_new(&j, JOB_HASH, userdata);
        if (r < 0)
                return r;
        j->hash_done = done;
        r = job_copy_key(j, key, len);
        if (r < 0)
                return r;
        job_enqueue(k, TAKE_PTR(j));
        return 0;
}

int keys_verify_async(Keys *k, uint64_t client_id, const char *hash, const char *key, size_t len,
                      KeysVerifyDone done, void *userdata) {
        _cleanup_(job_freep) Job *j = NULL;
        ClientRecord *c;
        size_t hash_len;
        int r;

        if (!k || !hash || !done)
                return -EINVAL;
        r = keys_check_key(key, len);
        if (r < 0)
                return r;
        hash_len = strnlen(hash, crypto_pwhash_STRBYTES);
        if (hash_len >= crypto_pwhash_STRBYTES)
                return -EINVAL;
        /* Parses the string without running argon2: a malformed stored hash is the caller's
         * bug, not a wrong key to charge the client for. */
        if (crypto_pwhash_str_needs_rehash(hash, k->opslimit, k->memlimit) < 0)
                return -EINVAL;
        if (k->n_jobs >= KEYS_JOBS_MAX)
                return -EBUSY;

        r = job_new(&j, JOB_VERIFY, userdata);
        if (r < 0)
                return r;
        j->verify_done = done;
        j->client_id = client_id;
        memcpy(j->hash, hash, hash_len + 1);

        /* Checked before the cache: a limited client is refused even a key known to be right. */
        if (client_refused(k, client_id, now_ns(CLOCK_MONOTONIC))) {
                job_complete_now(k, TAKE_PTR(j), -EBUSY);
                return 0;
        }
        cache_digest(k, hash, key, len, j->digest);
        if (cache_contains(k, j->digest)) {
                job_complete_now(k, TAKE_PTR(j), 1);
                return 0;
        }

        r = job_copy_key(j, key, len);
        if (r < 0)
                return r;
        r = client_get(k, client_id, &c);
        if (r < 0)
                return r;
        c->in_flight++;
        client_touch(k, c);
        j->record_serial = c->serial;
        j->cacheable = true;
        job_enqueue(k, TAKE_PTR(j));
        return 0;
}

void keys_forget_client(Keys *k, uint64_t client_id) {
        ClientRecord *c;

        if (!k)
                return;
        c = client_find(k, client_id);
        if (c)
                client_drop(k, c);
}
