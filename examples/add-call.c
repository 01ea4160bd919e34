/* SPDX-License-Identifier: MIT */
/* Example caller: calls "add" with a few pairs and prints the sums. Usage: add-call */
#include <avro.h>
#include <ring.h>
#include <stdio.h>

#include "schemas.h"

int main(void) {
        ring_conn *conn = NULL;
        ring_rpc *rpc = NULL;
        avro_value_t req, resp, field;
        int r, failed = 0;

        r = ring_conn_open("add-call", 5000, &conn);
        if (r < 0) {
                fprintf(stderr, "add-call: cannot connect to the bus: %s\n", ring_strerror(r));
                return 1;
        }
        r = ring_rpc_open(conn, "add", ADD_REQUEST_SCHEMA, ADD_RESPONSE_SCHEMA, NULL, &rpc);
        if (r < 0) {
                fprintf(stderr, "add-call: cannot look up \"add\": %s (%s)\n", ring_strerror(r),
                        ring_last_error_message());
                ring_conn_close(conn);
                return 1;
        }
        ring_rpc_new_request(rpc, &req);
        ring_rpc_new_response(rpc, &resp);
        for (int64_t a = 1; a <= 3; a++) {
                int64_t b = a * 10, sum;

                avro_value_get_by_name(&req, "a", &field, NULL);
                avro_value_set_long(&field, a);
                avro_value_get_by_name(&req, "b", &field, NULL);
                avro_value_set_long(&field, b);
                r = ring_rpc_call(rpc, &req, &resp, 5000);
                if (r < 0) {
                        fprintf(stderr, "add-call: add(%lld, %lld) failed: %s (%s)\n", (long long) a,
                                (long long) b, ring_strerror(r), ring_last_error_message());
                        failed = 1;
                        continue;
                }
                avro_value_get_by_name(&resp, "sum", &field, NULL);
                avro_value_get_long(&field, &sum);
                printf("add-call: add(%lld, %lld) = %lld\n", (long long) a, (long long) b, (long long) sum);
        }
        avro_value_decref(&req);
        avro_value_decref(&resp);
        ring_rpc_close(rpc);
        ring_conn_close(conn);
        return failed;
}
