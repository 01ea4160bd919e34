/* SPDX-License-Identifier: MIT */
/*
 * The broker's registry on its own: clients by id and by reply segment name stay in step
 * through adds, refused duplicates and removals in random order, thousands of them, checked
 * against a plain array after every step. Prints its seed (TEST_SEED replays it).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "registry.h"
#include "test-util.h"

#define N 3000
#define STEPS 30000

static uint64_t rng_state;      /* xorshift64*, test_rng_next() */

static void segment_name(char *buf, size_t size, unsigned name) {
        snprintf(buf, size, "/impulse-ring-test.cli.%u.v1", name);
}

static Client *client_make(uint64_t id, unsigned name) {
        Client *c = calloc(1, sizeof(*c));

        ck_assert_ptr_nonnull(c);
        c->id = id;
        c->reply_seg = SEGMENT_NULL;
        segment_name(c->reply_seg.name, sizeof(c->reply_seg.name), name);
        return c;
}

START_TEST(test_clients_by_id_and_segment) {
        static Client *model[N];        /* model[i]: the client holding name i, or NULL */
        Registry *reg = NULL;
        char name[NAMES_SEGMENT_MAX];
        size_t present = 0, max_present = 0;
        uint64_t next_id = 1;

        rng_state = test_seed();
        ck_assert_int_eq(registry_new(&reg), 0);
        for (unsigned step = 0; step < STEPS; step++) {
                unsigned i = (unsigned) (test_rng_next(&rng_state) % N);
                /* Grow for the first half, then mostly shrink: removals in bulk. */
                bool add = test_rng_next(&rng_state) % 100 < (step < STEPS / 2 ? 70u : 30u);

                if (add && !model[i]) {
                        Client *c = client_make(next_id++, i);

                        ck_assert_int_eq(registry_add_client(reg, c), 0);
                        model[i] = c;
                        present++;
                } else if (add) {
                        /* The name is taken: refused whatever the id, and nothing changes. */
                        Client *dup = client_make(next_id++, i);
                        Client *same_id = client_make(model[i]->id, (i + 1) % N + N);

                        ck_assert_int_eq(registry_add_client(reg, dup), -EEXIST);
                        ck_assert_int_eq(registry_add_client(reg, same_id), -EEXIST);
                        segment_name(name, sizeof(name), (i + 1) % N + N);
                        ck_assert_ptr_null(registry_client_by_reply_segment(reg, name));
                        client_free(dup);
                        client_free(same_id);
                } else if (model[i]) {
                        ck_assert_ptr_eq(registry_remove_client(reg, model[i]->id), model[i]);
                        client_free(model[i]);
                        model[i] = NULL;
                        present--;
                }
                max_present = present > max_present ? present : max_present;
                ck_assert_uint_eq(registry_n_clients(reg), present);

                /* Spot checks every step, a full check now and then. */
                for (unsigned k = 0; k < 4; k++) {
                        unsigned j = k == 0 ? i : (unsigned) (test_rng_next(&rng_state) % N);

                        segment_name(name, sizeof(name), j);
                        ck_assert_ptr_eq(registry_client_by_reply_segment(reg, name), model[j]);
                        if (model[j])
                                ck_assert_ptr_eq(registry_client(reg, model[j]->id), model[j]);
                }
                if (step % 5000 == 0 || step == STEPS - 1)
                        for (unsigned j = 0; j < N; j++) {
                                segment_name(name, sizeof(name), j);
                                ck_assert_ptr_eq(registry_client_by_reply_segment(reg, name), model[j]);
                        }
        }
        printf("# %u steps, up to %zu clients at once, %zu left\n", STEPS, max_present, present);
        ck_assert_ptr_null(registry_client_by_reply_segment(reg, "/impulse-ring-test.cli.none.v1"));
        ck_assert_ptr_null(registry_client_by_reply_segment(reg, NULL));
        /* What is left is freed with the registry (valgrind and ASan check). */
        registry_free(reg);
}
END_TEST

START_TEST(test_remove_all_then_reuse) {
        Registry *reg = NULL;
        char name[NAMES_SEGMENT_MAX];

        ck_assert_int_eq(registry_new(&reg), 0);
        for (unsigned round = 0; round < 3; round++) {
                for (unsigned i = 0; i < 1000; i++)
                        ck_assert_int_eq(registry_add_client(reg, client_make(round * 1000 + i + 1, i)),
                                         0);
                for (unsigned i = 0; i < 1000; i++) {
                        segment_name(name, sizeof(name), i);
                        ck_assert_ptr_nonnull(registry_client_by_reply_segment(reg, name));
                        client_free(registry_remove_client(reg, round * 1000 + i + 1));
                        ck_assert_ptr_null(registry_client_by_reply_segment(reg, name));
                }
                ck_assert_uint_eq(registry_n_clients(reg), 0);
        }
        /* A client without a reply segment name cannot be indexed. */
        Client *nameless = client_make(1, 0);
        nameless->reply_seg.name[0] = 0;
        ck_assert_int_eq(registry_add_client(reg, nameless), -EINVAL);
        client_free(nameless);
        registry_free(reg);
}
END_TEST

Suite *test_suite(void) {
        Suite *s = suite_create("registry");
        TCase *tc = tcase_create("registry");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_clients_by_id_and_segment);
        tcase_add_test(tc, test_remove_all_then_reuse);
        suite_add_tcase(s, tc);
        return s;
}
