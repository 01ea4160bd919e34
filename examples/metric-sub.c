/* SPDX-License-Identifier: MIT */
/*
 * Example subscriber: subscribes to "metrics" by name (waiting up to 5 s for a publisher) and
 * prints COUNT Metric records. Usage: metric-sub [COUNT] [ACCESS_KEY]
 */
#include <avro.h>
#include <errno.h>
#include <ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "schemas.h"

int main(int argc, char *argv[]) {
        int count = argc > 1 ? atoi(argv[1]) : 5;
        const char *key = argc > 2 ? argv[2] : NULL;
        ring_conn *conn = NULL;
        ring_sub *sub = NULL;
        avro_value_t metric, field;
        int r, received = 0;

        r = ring_conn_open("metric-sub", 5000, &conn);
        if (r < 0) {
                fprintf(stderr, "metric-sub: cannot connect to the bus: %s\n", ring_strerror(r));
                return 1;
        }
        /* Nobody publishes "metrics" yet (-ENOENT): look again for a while. */
        for (int tries = 0; tries < 50; tries++) {
                r = ring_sub_open(conn, "metrics", METRIC_SCHEMA, key, &sub);
                if (r != -ENOENT)
                        break;
                nanosleep(&(struct timespec) { .tv_nsec = 100 * 1000 * 1000 }, NULL);
        }
        if (r < 0) {
                fprintf(stderr, "metric-sub: cannot subscribe to \"metrics\": %s (%s)\n", ring_strerror(r),
                        ring_last_error_message());
                ring_conn_close(conn);
                return 1;
        }
        ring_sub_new_value(sub, &metric);
        while (received < count) {
                const char *host, *name;
                double value;
                size_t len;

                r = ring_sub_recv(sub, &metric, 10000);
                if (r < 0) {
                        fprintf(stderr, "metric-sub: receive failed: %s\n", ring_strerror(r));
                        break;
                }
                avro_value_get_by_name(&metric, "host", &field, NULL);
                avro_value_get_string(&field, &host, &len);
                avro_value_get_by_name(&metric, "name", &field, NULL);
                avro_value_get_string(&field, &name, &len);
                avro_value_get_by_name(&metric, "value", &field, NULL);
                avro_value_get_double(&field, &value);
                printf("metric-sub: %s %s = %.2f\n", host, name, value);
                fflush(stdout);
                received++;
        }
        avro_value_decref(&metric);
        ring_sub_close(sub);
        ring_conn_close(conn);
        return received == count ? 0 : 1;
}
