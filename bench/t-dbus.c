/* SPDX-License-Identifier: MIT */
/*
 * A D-Bus method call through a private dbus-daemon, with sd-bus (libsystemd): the echo side
 * owns a well-known name and answers Echo(ay) -> ay; the caller makes a synchronous call per
 * round trip. Latency only: D-Bus is not a streaming transport.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "bench.h"

#define DBUS_PATH "/org/ringbench/Echo"
#define DBUS_IFACE "org.ringbench.Echo"

typedef struct DbusPeer {
        sd_bus *bus;
        sd_bus_slot *slot;
        char name[64];
        bool stopped;
} DbusPeer;

static const char *unavailable(const Env *env) {
        return env->dbus_pid > 0 ? NULL : env->dbus_error[0] ? env->dbus_error : "dbus-daemon is not running";
}

static void peer_close(void *h) {
        DbusPeer *p = h;

        if (!p)
                return;
        sd_bus_slot_unref(p->slot);
        sd_bus_flush_close_unref(p->bus);
        free(p);
}

static int peer_new(const Job *j, DbusPeer **ret) {
        DbusPeer *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        snprintf(p->name, sizeof(p->name), "org.ringbench.Echo%u", j->id);
        r = sd_bus_new(&p->bus);
        if (r >= 0)
                r = sd_bus_set_address(p->bus, j->env->dbus_address);
        if (r >= 0)
                r = sd_bus_set_bus_client(p->bus, 1);
        if (r >= 0)
                r = sd_bus_start(p->bus);
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int method_echo(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        DbusPeer *p = userdata;
        sd_bus_message *reply = NULL;
        const void *data;
        size_t n;
        int r;

        r = sd_bus_message_read_array(m, 'y', &data, &n);
        if (r < 0)
                return r;
        if (n >= 8 && payload_seq(data) == BENCH_STOP_SEQ)
                p->stopped = true;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', data, n);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        return r < 0 ? r : 1;
}

static const sd_bus_vtable echo_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Echo", "ay", "ay", method_echo, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int echo_open(const Job *j, Sync *s, void **ret) {
        DbusPeer *p;
        int r;

        r = peer_new(j, &p);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(p->bus, &p->slot, DBUS_PATH, DBUS_IFACE, echo_vtable, p);
        if (r >= 0)
                r = sd_bus_request_name(p->bus, p->name, 0);
        if (r < 0) {
                peer_close(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int echo_run(void *h, const Job *j) {
        DbusPeer *p = h;
        int r;

        while (!p->stopped) {
                r = sd_bus_process(p->bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = sd_bus_wait(p->bus, (uint64_t) BENCH_IO_TIMEOUT_MS * 1000u);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -ETIMEDOUT;
        }
        return sd_bus_flush(p->bus);
}

static int call_open(const Job *j, Sync *s, void **ret) {
        DbusPeer *p;
        int r;

        r = peer_new(j, &p);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}

static int dcall(void *h, const void *msg, size_t len, void *reply, size_t size) {
        DbusPeer *p = h;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *ans = NULL;
        const void *data;
        size_t n = 0;
        int r;

        r = sd_bus_message_new_method_call(p->bus, &m, p->name, DBUS_PATH, DBUS_IFACE, "Echo");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', msg, len);
        if (r >= 0)
                r = sd_bus_call(p->bus, m, (uint64_t) BENCH_IO_TIMEOUT_MS * 1000u, &error, &ans);
        if (r >= 0)
                r = sd_bus_message_read_array(ans, 'y', &data, &n);
        if (r >= 0 && n > size)
                r = -EMSGSIZE;
        if (r >= 0) {
                memcpy(reply, data, n);
                r = (int) n;
        }
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        sd_bus_message_unref(ans);
        return r;
}

const Transport transport_dbus = {
        .name = "dbus",
        .label = "D-Bus method call (sd-bus, dbus-daemon)",
        .flags = T_LATENCY | T_COLD,
        .unavailable = unavailable,
        .echo_open = echo_open,
        .echo_run = echo_run,
        .call_open = call_open,
        .call = dcall,
        .close = peer_close,
};
