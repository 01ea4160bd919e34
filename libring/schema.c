/* SPDX-License-Identifier: MIT */
/*
 * Schemas as libring keeps them (conn-internal.h, Schema): parsed once with avro-c, identified
 * by fingerprint, with a generic value class for callers that use avro_value_t; and the avro-c
 * value path: the check of a value's schema, encoding and decoding. The check runs on every
 * value sent or received, so after the first value of a parsed schema it is a pointer compare;
 * avro-c's memory reader and writer are made once per thread. What is left per value is
 * avro-c's own work, including the allocation it makes for every string, bytes and fixed field
 * it decodes; callers on the hottest path send and receive raw Avro bytes, which allocates
 * nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn-internal.h"
#include "fingerprint.h"
#include "macro.h"

int schema_parse(const char *json, Schema *ret) {
        _cleanup_free_ char *canonical = NULL;
        Schema s = { 0 };
        int r;

        if (!json)
                return -EINVAL;
        if (avro_schema_from_json_length(json, strlen(json), &s.schema) != 0) {
                const char *e = avro_strerror();
                error_set_message(e, strlen(e));
                return -EINVAL;
        }
        r = fingerprint_canonical(s.schema, &canonical);
        if (r < 0)
                goto fail;
        s.fp = fingerprint_rabin(canonical, strlen(canonical));
        s.iface = avro_generic_class_from_schema(s.schema);
        s.json = strdup(json);
        if (!s.iface || !s.json) {
                r = -ENOMEM;
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        schema_done(&s);
        return r;
}

void schema_done(Schema *s) {
        /* No thread uses s any more (the ring_*_close() rules): nothing races these loads. */
        for (size_t i = 0; i < SCHEMA_MATCHED_MAX; i++) {
                avro_schema_t m = atomic_load_explicit(&s->matched[i], memory_order_relaxed);

                if (m)
                        avro_schema_decref(m);
        }
        if (s->iface)
                avro_value_iface_decref(s->iface);
        if (s->schema)
                avro_schema_decref(s->schema);
        free(s->json);
        *s = (Schema) { 0 };
}

/*
 * Which avro_schema_t objects a Schema accepts values of, without fingerprinting them again:
 * its own (values from ring_pub_new_value(), ring_sub_new_value(), ring_rpc_new_*() and value
 * handlers), and up to SCHEMA_MATCHED_MAX others whose fingerprint was once found equal to its
 * own (a user's own parse of the schema; a subscription's value relayed by a publisher).
 *
 * Several threads may check values against one Schema at once (a ring_rpc's two Schemas serve
 * every thread that calls it; a ring_pub, ring_sub or ring_fn serves one thread at a time), so
 * s->matched takes no lock. Why a pointer compare is enough, and safe:
 * - A slot goes from NULL to a schema once, by compare-and-swap, holding a reference taken
 *   before it is published, until schema_done(), which runs when no thread uses s any more.
 *   So the schema a slot names stays alive, and no other schema can get its address.
 * - The caller's value holds a reference to its schema throughout the call. If that schema's
 *   address equals a slot's, both are one object: two live objects never share an address.
 *   The acquire load puts the slot's publication, and so that schema's allocation, before our
 *   compare; an older, freed schema at the same address cannot be the caller's.
 * - A thread fills slot i only after it found slots 0..i-1 taken, and taken slots stay taken:
 *   the taken slots are a prefix, and a lookup stops at the first NULL. Two threads that
 *   remember the same schema meet at one slot; the second sees the first's pointer and stops.
 * - Only a schema whose fingerprint was just found equal to s->fp enters a slot. A schema that
 *   does not match is never remembered: it is fingerprinted and refused on every call.
 * - With every slot taken, further schemas are fingerprinted on every call: slow, still right.
 */
static bool remembered(Schema *s, avro_schema_t vs) {
        for (size_t i = 0; i < SCHEMA_MATCHED_MAX; i++) {
                /* Acquire: pairs with the release compare-and-swap in remember(). */
                avro_schema_t m = atomic_load_explicit(&s->matched[i], memory_order_acquire);

                if (!m)
                        return false;
                if (m == vs)
                        return true;
        }
        return false;
}

static void remember(Schema *s, avro_schema_t vs) {
        avro_schema_incref(vs);
        for (size_t i = 0; i < SCHEMA_MATCHED_MAX; i++) {
                avro_schema_t expected = NULL;

                /* Release: the reference above is taken before a thread can find vs here
                 * (remembered()). A failed exchange only compares the pointer it finds. */
                if (atomic_compare_exchange_strong_explicit(&s->matched[i], &expected, vs, memory_order_release,
                                                            memory_order_relaxed))
                        return;
                if (expected == vs)
                        break;
        }
        avro_schema_decref(vs);
}

/* The slow path of schema_check_value(): vs is neither s's schema nor remembered. */
static int check_fingerprint(Schema *s, avro_schema_t vs) {
        _cleanup_free_ char *canonical = NULL;
        char msg[128];
        uint64_t fp;
        int n, r;

        r = fingerprint_canonical(vs, &canonical);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                error_set_message("the value's schema has no Parsing Canonical Form", 48);
                return -EPROTO;
        }
        fp = fingerprint_rabin(canonical, strlen(canonical));
        if (fp != s->fp) {
                n = snprintf(msg, sizeof(msg), "the value's schema has fingerprint 0x%016" PRIx64 ", not 0x%016" PRIx64,
                             fp, s->fp);
                error_set_message(msg, (size_t) MAX(n, 0));
                return -EPROTO;
        }
        remember(s, vs);
        return 0;
}

int schema_check_value(Schema *s, const avro_value_t *value) {
        avro_schema_t vs;

        if (!value || !value->iface)
                return -EINVAL;
        vs = avro_value_get_schema(value);
        if (_likely_(vs == s->schema))
                return 0;
        if (!vs)
                return -EINVAL;
        if (remembered(s, vs))
                return 0;
        return check_fingerprint(s, vs);
}

/* avro-c's memory writer and reader, made once per thread and pointed at each value's buffer:
 * made per value, each costs an allocation. Per thread, not per Schema, because a Schema may
 * serve several threads at once. busy: in use further up this thread's stack (a value whose
 * own avro-c class calls back into libring), which then gets a writer or reader of its own. */
typedef struct Codec {
        avro_writer_t writer;
        avro_reader_t reader;
        bool busy;
} Codec;

static pthread_key_t codec_key;
static pthread_once_t codec_once = PTHREAD_ONCE_INIT;
static bool codec_key_made;

static void codec_free(void *p) {
        Codec *c = p;

        if (c->writer)
                avro_writer_free(c->writer);
        if (c->reader)
                avro_reader_free(c->reader);
        free(c);
}

static void codec_init(void) {
        codec_key_made = pthread_key_create(&codec_key, codec_free) == 0;
}

/* This thread's Codec, marked busy; NULL if it is busy already or cannot be made. */
static Codec *codec_take(void) {
        Codec *c;

        pthread_once(&codec_once, codec_init);
        if (!codec_key_made)
                return NULL;
        c = pthread_getspecific(codec_key);
        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c)
                        return NULL;
                c->writer = avro_writer_memory(NULL, 0);
                c->reader = avro_reader_memory(NULL, 0);
                if (!c->writer || !c->reader || pthread_setspecific(codec_key, c) != 0) {
                        codec_free(c);
                        return NULL;
                }
        }
        if (c->busy)
                return NULL;
        c->busy = true;
        return c;
}

/* schema_encode_value(); on -EMSGSIZE *ret_need is the size the value needs. */
static int encode_value(Schema *s, const avro_value_t *value, uint8_t *buf, size_t size, size_t *ret_need) {
        Codec *c;
        avro_writer_t w;
        size_t need;
        int r;

        if (size > INT64_MAX)
                return -EINVAL;
        r = schema_check_value(s, value);
        if (r < 0)
                return r;
        c = codec_take();
        if (c) {
                w = c->writer;
                avro_writer_memory_set_dest(w, (const char *) buf, (int64_t) size);
        } else {
                w = avro_writer_memory((const char *) buf, (int64_t) size);
                if (!w)
                        return -ENOMEM;
        }
        /* No avro_value_sizeof() first: it walks the value as far as writing it does. A write
         * that fails tells by the size whether buf was too small. */
        r = avro_value_write(w, (avro_value_t *) value);
        if (r == 0) {
                int64_t len = avro_writer_tell(w);
                r = len >= 0 && len <= INT_MAX ? (int) len : -EMSGSIZE;
        } else if (avro_value_sizeof((avro_value_t *) value, &need) == 0 && need > size) {
                *ret_need = need;
                r = -EMSGSIZE;
        } else
                r = -EINVAL;
        if (c)
                c->busy = false;
        else
                avro_writer_free(w);
        return r;
}

int schema_new_value(const Schema *s, avro_value_t *ret) {
        return avro_generic_value_new(s->iface, ret) == 0 ? 0 : -ENOMEM;
}

int schema_encode_value(Schema *s, const avro_value_t *value, uint8_t *buf, size_t size) {
        size_t need;

        return encode_value(s, value, buf, size, &need);
}

int schema_encode_value_grow(Schema *s, const avro_value_t *value, uint8_t **buf, size_t *size) {
        size_t need = 0;
        uint8_t *grown;
        int n;

        n = encode_value(s, value, *buf, *size, &need);
        if (n != -EMSGSIZE)
                return n;
        /* At least twofold, so that slowly growing values reallocate (and are sized) only now
         * and then. */
        need = MAX(need, *size * 2);
        grown = realloc(*buf, need);
        if (!grown)
                return -ENOMEM;
        *buf = grown;
        *size = need;
        return encode_value(s, value, *buf, *size, &need);
}

int schema_decode_value(const void *data, size_t len, avro_value_t *value) {
        avro_reader_t rd;
        Codec *c;
        int r;

        if (len > INT64_MAX)
                return -EINVAL;
        c = codec_take();
        if (c) {
                rd = c->reader;
                avro_reader_memory_set_source(rd, data, (int64_t) len);
        } else {
                rd = avro_reader_memory(data, (int64_t) len);
                if (!rd)
                        return -ENOMEM;
        }
        /* avro_value_read() resets value first. */
        r = avro_value_read(rd, value);
        if (c)
                c->busy = false;
        else
                avro_reader_free(rd);
        return r == 0 ? 0 : -EBADMSG;
}
