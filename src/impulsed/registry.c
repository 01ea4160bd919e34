/* SPDX-License-Identifier: MIT */
/*
 * The broker's tables (registry.h). Balanced trees from <search.h> give O(log n) lookups by id
 * and by name, which keeps Register/Subscribe/Lookup flat up to tens of thousands of clients,
 * and in-order walks for the admin view; clients are indexed by id and by reply segment name.
 * Only bookkeeping lives here: no I/O, no policy.
 */
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "registry.h"

struct Registry {
        void *clients;                  /* Client*, by id */
        void *clients_by_segment;       /* Client*, by reply segment name */
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

static int cmp_client_segment(const void *a, const void *b) {
        return strcmp(((const Client *) a)->reply_seg.name, ((const Client *) b)->reply_seg.name);
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

int registry_new(Registry **ret) {
        Registry *r;

        if (!ret)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
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
        tdestroy(r->clients_by_segment, no_free);
        tdestroy(r->channels_by_name, no_free);
        tdestroy(r->functions_by_name, no_free);
        tdestroy(r->channels, free_channel_node);
        tdestroy(r->functions, free_function_node);
        tdestroy(r->clients, free_client_node);
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

/* Adds obj to both indexes of one kind or to neither: refuses a clash in either, undoes the first
 * insertion when the second fails. */
static int insert_both(void **root_a, int (*cmp_a)(const void *, const void *), void **root_b,
                       int (*cmp_b)(const void *, const void *), void *obj) {
        int k;

        if (find(root_a, obj, cmp_a) || find(root_b, obj, cmp_b))
                return -EEXIST;
        k = insert(root_a, obj, cmp_a);
        if (k < 0)
                return k;
        k = insert(root_b, obj, cmp_b);
        if (k < 0) {
                tdelete(obj, root_a, cmp_a);
                return k;
        }
        return 0;
}

int registry_add_client(Registry *r, Client *c) {
        int k;

        if (!r || !c || c->id == 0 || !c->reply_seg.name[0])
                return -EINVAL;
        k = insert_both(&r->clients, cmp_client_id, &r->clients_by_segment, cmp_client_segment, c);
        if (k < 0)
                return k;
        r->n_clients++;
        return 0;
}

int registry_add_channel(Registry *r, Channel *ch) {
        int k;

        if (!r || !ch || ch->id == 0 || !ch->name)
                return -EINVAL;
        k = insert_both(&r->channels, cmp_channel_id, &r->channels_by_name, cmp_channel_name, ch);
        if (k < 0)
                return k;
        r->n_channels++;
        return 0;
}

int registry_add_function(Registry *r, Function *f) {
        int k;

        if (!r || !f || f->id == 0 || !f->name)
                return -EINVAL;
        k = insert_both(&r->functions, cmp_function_id, &r->functions_by_name, cmp_function_name, f);
        if (k < 0)
                return k;
        r->n_functions++;
        return 0;
}

Client *registry_client(const Registry *r, uint64_t id) {
        Client key = { .id = id };
        return find(&r->clients, &key, cmp_client_id);
}

Client *registry_client_by_reply_segment(const Registry *r, const char *name) {
        Client key;

        /* The name lives in the client (Segment.name), not behind a pointer: copy it into a key. */
        if (!name || strlen(name) >= sizeof(key.reply_seg.name))
                return NULL;
        strcpy(key.reply_seg.name, name);
        return find(&r->clients_by_segment, &key, cmp_client_segment);
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
        tdelete(c, &r->clients_by_segment, cmp_client_segment);
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
