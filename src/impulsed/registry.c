/* SPDX-License-Identifier: MIT */
/*
 * The broker's tables (registry.h). Balanced trees from <search.h> give O(log n) lookups by id
 * and by name, which keeps Register/Subscribe/Lookup flat up to tens of thousands of clients,
 * and in-order walks for the admin view; clients are also indexed by reply segment name in a
 * hash table (SegmentIndex). Only bookkeeping lives here: no I/O, no policy.
 */
#include <assert.h>
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "macro.h"
#include "registry.h"

#define SEGMENT_INDEX_MIN_SLOTS 64

typedef struct SegmentSlot {
        Client *client;                 /* NULL: free */
        uint64_t hash;                  /* of client->reply_seg.name, so probes and moves skip strcmp */
} SegmentSlot;

/* Clients by reply segment name: open addressing with linear probing, at most 3/4 full (so
 * every probe run ends at a free slot), deletion by backward shift (no tombstones). The
 * hash is SipHash-2-4 under a random key: clients choose their segment names and must not be
 * able to pile them into one probe run. */
typedef struct SegmentIndex {
        SegmentSlot *slots;
        size_t mask;                    /* slot count - 1, a power of two; 0 while slots is NULL */
        size_t n;
        unsigned char key[crypto_shorthash_KEYBYTES];
} SegmentIndex;

struct Registry {
        SegmentIndex by_segment;        /* Client*, by reply segment name */
        void *clients;                  /* Client*, by id */
        void *channels;                 /* Channel*, by id */
        void *channels_by_name;         /* Channel*, by name */
        void *functions;                /* Function*, by id */
        void *functions_by_name;        /* Function*, by name */
        size_t n_clients, n_channels, n_functions;
        uint64_t last_channel_id, last_function_id;
};

/* Every object type starts with its id, then (channels, functions) its name pointer. */
static int cmp_client_id(const void *a, const void *b) {
        uint64_t x = ((const Client *) a)->id, y = ((const Client *) b)->id;
        return x < y ? -1 : x > y;
}

static int cmp_channel_id(const void *a, const void *b) {
        uint64_t x = ((const Channel *) a)->id, y = ((const Channel *) b)->id;
        return x < y ? -1 : x > y;
}

static int cmp_channel_name(const void *a, const void *b) {
        return strcmp(((const Channel *) a)->name, ((const Channel *) b)->name);
}

static int cmp_function_id(const void *a, const void *b) {
        uint64_t x = ((const Function *) a)->id, y = ((const Function *) b)->id;
        return x < y ? -1 : x > y;
}

static int cmp_function_name(const void *a, const void *b) {
        return strcmp(((const Function *) a)->name, ((const Function *) b)->name);
}

static uint64_t segment_hash(const SegmentIndex *x, const char *name) {
        unsigned char out[crypto_shorthash_BYTES];
        uint64_t h;

        crypto_shorthash(out, (const unsigned char *) name, strlen(name), x->key);
        memcpy(&h, out, sizeof(h));
        return h;
}

static SegmentSlot *segment_find(const SegmentIndex *x, const char *name, uint64_t hash) {
        if (!x->slots)
                return NULL;
        for (size_t i = hash & x->mask;; i = (i + 1) & x->mask) {
                SegmentSlot *s = &x->slots[i];

                if (!s->client)
                        return NULL;
                if (s->hash == hash && strcmp(s->client->reply_seg.name, name) == 0)
                        return s;
        }
}

static void segment_place(SegmentSlot *slots, size_t mask, Client *c, uint64_t hash) {
        size_t i = hash & mask;

        while (slots[i].client)
                i = (i + 1) & mask;
        slots[i] = (SegmentSlot) { .client = c, .hash = hash };
}

static int segment_insert(SegmentIndex *x, Client *c) {
        uint64_t hash = segment_hash(x, c->reply_seg.name);

        if (segment_find(x, c->reply_seg.name, hash))
                return -EEXIST;
        if (!x->slots || 4 * (x->n + 1) > 3 * (x->mask + 1)) {
                size_t size = x->slots ? 2 * (x->mask + 1) : SEGMENT_INDEX_MIN_SLOTS;
                SegmentSlot *slots = calloc(size, sizeof(*slots));

                if (!slots)
                        return -ENOMEM;
                for (size_t i = 0; x->slots && i <= x->mask; i++)
                        if (x->slots[i].client)
                                segment_place(slots, size - 1, x->slots[i].client, x->slots[i].hash);
                free(x->slots);
                x->slots = slots;
                x->mask = size - 1;
        }
        segment_place(x->slots, x->mask, c, hash);
        x->n++;
        return 0;
}

static void segment_erase(SegmentIndex *x, const Client *c) {
        SegmentSlot *s = segment_find(x, c->reply_seg.name, segment_hash(x, c->reply_seg.name));
        size_t hole, j;

        /* Names are unique in the index and every registered client is in it. */
        assert(s && s->client == c);
        hole = j = (size_t) (s - x->slots);
        /* Close the hole: a later member of the probe run moves into it unless the hole lies
         * before that member's home slot (then lookups starting at home would miss it). */
        for (;;) {
                j = (j + 1) & x->mask;
                if (!x->slots[j].client)
                        break;
                if (((j - (x->slots[j].hash & x->mask)) & x->mask) >= ((j - hole) & x->mask)) {
                        x->slots[hole] = x->slots[j];
                        hole = j;
                }
        }
        x->slots[hole] = (SegmentSlot) {};
        x->n--;
}

int registry_new(Registry **ret) {
        Registry *r;

        if (!ret)
                return -EINVAL;
        /* Idempotent and thread-safe; seeds the generator behind the index key. */
        if (sodium_init() < 0)
                return -EIO;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        crypto_shorthash_keygen(r->by_segment.key);
        *ret = r;
        return 0;
}

static void free_client_node(void *p) {
        client_free(p);
}

static void free_channel_node(void *p) {
        channel_free(p);
}

static void free_function_node(void *p) {
        function_free(p);
}

static void no_free(void *p) {
}

Registry *registry_free(Registry *r) {
        if (!r)
                return NULL;
        /* The by-name trees share their objects with the by-id trees: free those once. */
        tdestroy(r->channels_by_name, no_free);
        tdestroy(r->functions_by_name, no_free);
        tdestroy(r->channels, free_channel_node);
        tdestroy(r->functions, free_function_node);
        tdestroy(r->clients, free_client_node);
        free(r->by_segment.slots);
        free(r);
        return NULL;
}

size_t registry_n_clients(const Registry *r) {
        return r->n_clients;
}

size_t registry_n_channels(const Registry *r) {
        return r->n_channels;
}

size_t registry_n_functions(const Registry *r) {
        return r->n_functions;
}

uint64_t registry_next_channel_id(Registry *r) {
        return ++r->last_channel_id;
}

uint64_t registry_next_function_id(Registry *r) {
        return ++r->last_function_id;
}

/* tsearch() inserts when absent; tells "inserted" from "already there" by the stored pointer. */
static int insert(void **root, void *obj, int (*cmp)(const void *, const void *)) {
        void **slot = tsearch(obj, root, cmp);

        if (!slot)
                return -ENOMEM;
        return *slot == obj ? 0 : -EEXIST;
}

static void *find(void *const *root, const void *key, int (*cmp)(const void *, const void *)) {
        void **slot = tfind(key, root, cmp);
        return slot ? *slot : NULL;
}

int registry_add_client(Registry *r, Client *c) {
        int k;

        if (!r || !c || c->id == 0 || !c->reply_seg.name[0])
                return -EINVAL;
        if (find(&r->clients, c, cmp_client_id))
                return -EEXIST;
        k = segment_insert(&r->by_segment, c);
        if (k < 0)
                return k;
        if (insert(&r->clients, c, cmp_client_id) < 0) {
                segment_erase(&r->by_segment, c);
                return -ENOMEM;
        }
        r->n_clients++;
        return 0;
}

int registry_add_channel(Registry *r, Channel *ch) {
        int k;

        if (!r || !ch || ch->id == 0 || !ch->name)
                return -EINVAL;
        if (find(&r->channels, ch, cmp_channel_id) || find(&r->channels_by_name, ch, cmp_channel_name))
                return -EEXIST;
        k = insert(&r->channels, ch, cmp_channel_id);
        if (k < 0)
                return k;
        k = insert(&r->channels_by_name, ch, cmp_channel_name);
        if (k < 0) {
                tdelete(ch, &r->channels, cmp_channel_id);
                return k;
        }
        r->n_channels++;
        return 0;
}

int registry_add_function(Registry *r, Function *f) {
        int k;

        if (!r || !f || f->id == 0 || !f->name)
                return -EINVAL;
        if (find(&r->functions, f, cmp_function_id) || find(&r->functions_by_name, f, cmp_function_name))
                return -EEXIST;
        k = insert(&r->functions, f, cmp_function_id);
        if (k < 0)
                return k;
        k = insert(&r->functions_by_name, f, cmp_function_name);
        if (k < 0) {
                tdelete(f, &r->functions, cmp_function_id);
                return k;
        }
        r->n_functions++;
        return 0;
}

Client *registry_client(const Registry *r, uint64_t id) {
        Client key = { .id = id };
        return find(&r->clients, &key, cmp_client_id);
}

Client *registry_client_by_reply_segment(const Registry *r, const char *name) {
        SegmentSlot *s;

        if (!name)
                return NULL;
        s = segment_find(&r->by_segment, name, segment_hash(&r->by_segment, name));
        return s ? s->client : NULL;
}

Channel *registry_channel(const Registry *r, uint64_t id) {
        Channel key = { .id = id };
        return find(&r->channels, &key, cmp_channel_id);
}

Channel *registry_channel_by_name(const Registry *r, const char *name) {
        Channel key = { .name = (char *) name };
        return name ? find(&r->channels_by_name, &key, cmp_channel_name) : NULL;
}

Function *registry_function_by_name(const Registry *r, const char *name) {
        Function key = { .name = (char *) name };
        return name ? find(&r->functions_by_name, &key, cmp_function_name) : NULL;
}

Client *registry_remove_client(Registry *r, uint64_t id) {
        Client *c = registry_client(r, id);

        if (!c)
                return NULL;
        tdelete(c, &r->clients, cmp_client_id);
        segment_erase(&r->by_segment, c);
        r->n_clients--;
        return c;
}

Channel *registry_remove_channel(Registry *r, uint64_t id) {
        Channel *ch = registry_channel(r, id);

        if (!ch)
                return NULL;
        tdelete(ch, &r->channels, cmp_channel_id);
        tdelete(ch, &r->channels_by_name, cmp_channel_name);
        r->n_channels--;
        return ch;
}

Function *registry_remove_function(Registry *r, const char *name) {
        Function *f = registry_function_by_name(r, name);

        if (!f)
                return NULL;
        tdelete(f, &r->functions, cmp_function_id);
        tdelete(f, &r->functions_by_name, cmp_function_name);
        r->n_functions--;
        return f;
}

Client *client_free(Client *c) {
        if (!c)
                return NULL;
        segment_done(&c->reply_seg);
        free(c->app_name);
        free(c->cgroup);
        free(c->unit);
        free(c);
        return NULL;
}

Channel *channel_free(Channel *ch) {
        if (!ch)
                return NULL;
        segment_done(&ch->arena);
        free(ch->name);
        free(ch->owner_app);
        free(ch->key_hash);
        free(ch);
        return NULL;
}

Function *function_free(Function *f) {
        if (!f)
                return NULL;
        segment_done(&f->arena);
        free(f->name);
        free(f->owner_app);
        free(f->key_hash);
        free(f);
        return NULL;
}

/* In-order walk; after the first negative callback result the rest is skipped. */
typedef struct Walk {
        int (*client_cb)(Client *c, void *userdata);
        int (*channel_cb)(Channel *ch, void *userdata);
        int (*function_cb)(Function *f, void *userdata);
        void *userdata;
        int r;
} Walk;

static void walk_action(const void *nodep, VISIT which, void *closure) {
        Walk *w = closure;
        void *obj = *(void *const *) nodep;
        int k;

        if (w->r < 0 || (which != postorder && which != leaf))
                return;
        if (w->client_cb)
                k = w->client_cb(obj, w->userdata);
        else if (w->channel_cb)
                k = w->channel_cb(obj, w->userdata);
        else
                k = w->function_cb(obj, w->userdata);
        if (k < 0)
                w->r = k;
}

int registry_foreach_client(const Registry *r, int (*cb)(Client *c, void *userdata), void *userdata) {
        Walk w = { .client_cb = cb, .userdata = userdata };

        twalk_r(r->clients, walk_action, &w);
        return w.r;
}

int registry_foreach_channel(const Registry *r, int (*cb)(Channel *ch, void *userdata), void *userdata) {
        Walk w = { .channel_cb = cb, .userdata = userdata };

        twalk_r(r->channels, walk_action, &w);
        return w.r;
}

int registry_foreach_function(const Registry *r, int (*cb)(Function *f, void *userdata), void *userdata) {
        Walk w = { .function_cb = cb, .userdata = userdata };

        twalk_r(r->functions, walk_action, &w);
        return w.r;
}
