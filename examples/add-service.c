/* SPDX-License-Identifier: MIT */
/*
 * Example service: exposes the function "add" (AddRequest -> AddResponse) and serves calls
 * until SERVE_MS milliseconds pass without one. Usage: add-service [SERVE_MS]
 */
#include <avro.h>
#include <ring.h>
#include <stdio.h>
#include <stdlib.h>

#include "schemas.h"

static int add(const struct avro_value *req, struct avro_value *resp, void *userdata) {
        avro_value_t a, b, sum;
        int64_t x, y;
        unsigned *served = userdata;

        avro_value_get_by_name((avro_value_t *) req, "a", &a, NULL);
        avro_value_get_by_name((avro_value_t *) req, "b", &b, NULL);
        avro_value_get_long(&a, &x);
        avro_value_get_long(&b, &y);
        avro_value_get_by_name(resp, "sum", &sum, NULL);
        avro_value_set_long(&sum, x + y);
        (*served)++;
        return 0;
}

int main(int argc, char *argv[]) {
        int serve_ms = argc > 1 ? atoi(argv[1]) : 3000;
        ring_conn *conn = NULL;
        ring_fn *fn = NULL;
        unsigned served = 0;
        int r;

        r = ring_conn_open("add-service", 5000, &conn);
        if (r < 0) {
                fprintf(stderr, "add-service: cannot connect to the bus: %s\n", ring_strerror(r));
                return 1;
        }
        r = ring_fn_expose_value(conn, "add", ADD_REQUEST_SCHEMA, ADD_RESPONSE_SCHEMA, NULL, add, &served, &fn);
        if (r < 0) {
                fprintf(stderr, "add-service: cannot expose \"add\": %s (%s)\n", ring_strerror(r),
                        ring_last_error_message());
                ring_conn_close(conn);
                return 1;
        }
        printf("add-service: serving \"add\"\n");
        fflush(stdout);
        ring_fn_serve(fn, serve_ms);
        printf("add-service: served %u calls\n", served);
        ring_fn_close(fn);
        ring_conn_close(conn);
        return 0;
}
