/* SPDX-License-Identifier: MIT */
/*
 * Example publisher: publishes the channel "metrics" and sends COUNT Metric records built as
 * avro-c values, one every 100 ms. Messages sent before the subscriber attaches wait in the
 * channel's ring. Usage: metric-pub [COUNT] [ACCESS_KEY]
 */
#include <avro.h>
#include <ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "schemas.h"

int main(int argc, char *argv[]) {
        int count = argc > 1 ? atoi(argv[1]) : 5;
        const char *key = argc > 2 ? argv[2] : NULL;
        ring_conn *conn = NULL;
        ring_pub *pub = NULL;
        avro_value_t metric, field;
        int r;

        r = ring_conn_open("metric-pub", 5000, &conn);
        if (r < 0) {
                fprintf(stderr, "metric-pub: cannot connect to the bus: %s\n", ring_strerror(r));
                return 1;
        }
        r = ring_pub_open(conn, "metrics", METRIC_SCHEMA, key, &pub);
        if (r < 0) {
                fprintf(stderr, "metric-pub: cannot publish \"metrics\": %s (%s)\n", ring_strerror(r),
                        ring_last_error_message());
                ring_conn_close(conn);
                return 1;
        }
        printf("metric-pub: publishing \"metrics\" (schema 0x%016llx)\n",
               (unsigned long long) ring_pub_fingerprint(pub));

        /* A value of the channel's own schema: libring checks its fingerprint once, not per send. */
        r = ring_pub_new_value(pub, &metric);
        if (r < 0) {
                fprintf(stderr, "metric-pub: cannot make a Metric value: %s\n", ring_strerror(r));
                ring_pub_close(pub);
                ring_conn_close(conn);
                return 1;
        }
        for (int i = 0; i < count && r >= 0; i++) {
                struct timespec ts;

                clock_gettime(CLOCK_REALTIME, &ts);
                avro_value_get_by_name(&metric, "host", &field, NULL);
                avro_value_set_string(&field, "localhost");
                avro_value_get_by_name(&metric, "name", &field, NULL);
                avro_value_set_string(&field, "cpu.load");
                avro_value_get_by_name(&metric, "value", &field, NULL);
                avro_value_set_double(&field, 0.25 * i);
                avro_value_get_by_name(&metric, "timestamp_ns", &field, NULL);
                avro_value_set_long(&field, (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
                /* Waits up to 5 s if the subscriber is behind: nothing is dropped. */
                r = ring_pub_send(pub, &metric, 5000);
                if (r < 0)
                        fprintf(stderr, "metric-pub: send failed: %s\n", ring_strerror(r));
                else
                        printf("metric-pub: sent cpu.load = %.2f\n", 0.25 * i);
                fflush(stdout);
                nanosleep(&(struct timespec) { .tv_nsec = 100 * 1000 * 1000 }, NULL);
        }
        avro_value_decref(&metric);
        ring_pub_close(pub);
        ring_conn_close(conn);
        return r < 0 ? 1 : 0;
}
