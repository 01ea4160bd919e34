/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test-util.h"

static unsigned test_counter;

void test_unique_bus(char *buf, size_t size) {
        snprintf(buf, size, "t%ld-%u", (long) getpid(), test_counter++);
}

void test_shm_name(char *buf, size_t size, const char *tag) {
        snprintf(buf, size, "/ring-test.%ld.%u.%s", (long) getpid(), test_counter++, tag);
}

int test_wait_child(pid_t pid) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                ;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

uint64_t test_seed(void) {
        const char *e = getenv("TEST_SEED");
        uint64_t seed;
        struct timespec ts;

        if (e)
                seed = strtoull(e, NULL, 0);
        else {
                clock_gettime(CLOCK_REALTIME, &ts);
                seed = (uint64_t) ts.tv_sec * 1000000007u ^ (uint64_t) ts.tv_nsec ^ (uint64_t) getpid();
        }
        printf("# TEST_SEED=%llu\n", (unsigned long long) seed);
        return seed;
}

uint64_t test_rng_next(uint64_t *state) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        return *state * UINT64_C(0x2545f4914f6cdd1d);
}

const char *test_srcdir_path(const char *rel, char *buf, size_t size) {
        const char *top = getenv("TOP_SRCDIR");

        snprintf(buf, size, "%s/%s", top ? top : "..", rel);
        return buf;
}

void test_nap_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}
