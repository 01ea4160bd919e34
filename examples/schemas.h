/* SPDX-License-Identifier: MIT */
/* The Avro schemas the examples share (as in the files under examples/schemas). */
#pragma once

#define METRIC_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Metric\",\"namespace\":\"example.ring\",\"fields\":[" \
        "{\"name\":\"host\",\"type\":\"string\"},{\"name\":\"name\",\"type\":\"string\"}," \
        "{\"name\":\"value\",\"type\":\"double\"},{\"name\":\"timestamp_ns\",\"type\":\"long\"}]}"

#define ADD_REQUEST_SCHEMA \
        "{\"type\":\"record\",\"name\":\"AddRequest\",\"namespace\":\"example.ring\",\"fields\":[" \
        "{\"name\":\"a\",\"type\":\"long\"},{\"name\":\"b\",\"type\":\"long\"}]}"

#define ADD_RESPONSE_SCHEMA \
        "{\"type\":\"record\",\"name\":\"AddResponse\",\"namespace\":\"example.ring\",\"fields\":[" \
        "{\"name\":\"sum\",\"type\":\"long\"}]}"
