/* SPDX-License-Identifier: MIT */
/*
 * Percentiles of one repetition's round trips, and the median and range of a figure over
 * repetitions (the benchmark reports the median with its spread, never a single run).
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples. */
static double rank(const uint64_t *sorted, size_t n, double q) {
        size_t i = (size_t) (q * (double) n + 0.999999);

        if (i == 0)
                i = 1;
        if (i > n)
                i = n;
        return (double) sorted[i - 1];
}

void stats_latency(uint64_t *samples, size_t n, Rep *ret) {
        double sum = 0;

        memset(ret, 0, sizeof(*ret));
        if (n == 0)
                return;
        qsort(samples, n, sizeof(*samples), cmp_u64);
        for (size_t i = 0; i < n; i++)
                sum += (double) samples[i];
        ret->p50 = rank(samples, n, 0.50);
        ret->p99 = rank(samples, n, 0.99);
        ret->p999 = rank(samples, n, 0.999);
        ret->mean = sum / (double) n;
        ret->n = n;
}

Summary stats_summary(const Report *r, size_t field_offset) {
        double v[BENCH_MAX_REPS];
        Summary s = { 0 };
        unsigned n = r->n_reps;

        if (n == 0)
                return s;
        for (unsigned i = 0; i < n; i++)
                memcpy(&v[i], (const char *) &r->reps[i] + field_offset, sizeof(double));
        qsort(v, n, sizeof(double), cmp_double);
        s.min = v[0];
        s.max = v[n - 1];
        s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        return s;
}
