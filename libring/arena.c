/* SPDX-License-Identifier: MIT */
/*
 * Arenas as libring objects hold them (conn-internal.h, ArenaSlot): the ring of a channel or
 * function that the broker made, the replacement the supervisor prepares after a broker
 * restart, and earlier arenas. Earlier arenas stay mapped until the object is freed, because
 * the watcher thread (or a peer's late message) may still touch them; the thread that uses the
 * object switches to a replacement at its next operation, so that path takes no lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "conn-internal.h"
#include "macro.h"

int conn_open_arena(ring_conn *c, const char *name, bool consumer, Arena *ret) {
        Arena a = { .seg = SEGMENT_NULL };
        int r;

        if (!names_valid(name))
                return -EBADMSG;
        r = segment_open(&a.seg, name, ringbuf_size(RINGBUF_MIN_CAPACITY), ringbuf_size(RINGBUF_MAX_CAPACITY));
        if (r < 0)
                return r == -ENOENT ? -ECONNRESET : r;
        r = consumer ? ringbuf_attach_consumer(&a.ring, a.seg.base, a.seg.size) :
                       ringbuf_attach_producer(&a.ring, a.seg.base, a.seg.size);
        if (r < 0) {
                segment_done(&a.seg);
                return r;
        }
        *ret = a;
        return 0;
}

void arena_done(Arena *a) {
        segment_done(&a->seg);
}

void arena_slot_init(ArenaSlot *s) {
        *s = (ArenaSlot) { .current.seg = SEGMENT_NULL };
}

void arena_slot_retire(ArenaSlot *s) {
        Arena *grown;

        if (!s->attached)
                return;
        /* Without memory the arena is leaked, never unmapped under another thread. */
        grown = reallocarray(s->retired, s->n_retired + 1, sizeof(Arena));
        if (grown) {
                s->retired = grown;
                s->retired[s->n_retired++] = s->current;
        }
        s->attached = false;
}

void arena_slot_set(ArenaSlot *s, Arena a) {
        arena_slot_retire(s);
        s->current = a;
        s->attached = true;
}

int arena_slot_offer(ArenaSlot *s, const Arena *a) {
        Arena *copy = malloc(sizeof(*copy)), *old;

        if (!copy)
                return -ENOMEM;
        *copy = *a;
        old = atomic_exchange(&s->next, copy);
        if (old) {
                /* Never taken: nobody used it, so it can go now. */
                arena_done(old);
                free(old);
        }
        return 0;
}

bool arena_slot_take(ArenaSlot *s, pthread_mutex_t *list_lock) {
        Arena *n;

        if (_likely_(!atomic_load_explicit(&s->next, memory_order_relaxed)))
                return false;
        n = atomic_exchange(&s->next, NULL);
        if (!n)
                return false;
        pthread_mutex_lock(list_lock);
        arena_slot_set(s, *n);
        pthread_mutex_unlock(list_lock);
        free(n);
        return true;
}

void arena_slot_done(ArenaSlot *s) {
        Arena *n = atomic_exchange(&s->next, NULL);

        if (n) {
                arena_done(n);
                free(n);
        }
        if (s->attached)
                arena_done(&s->current);
        for (size_t i = 0; i < s->n_retired; i++)
                arena_done(&s->retired[i]);
        free(s->retired);
        *s = (ArenaSlot) { .current.seg = SEGMENT_NULL };
}
