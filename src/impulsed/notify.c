/* SPDX-License-Identifier: MIT */
/*
 * Thin wrappers over sd_notify(3) (notify.h) and the watchdog timer. It formats messages and
 * keeps a timer; it knows nothing of the broker and never blocks the loop: sd_notify() is one
 * non-blocking datagram.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "notify.h"

int notify_ready(void) {
        return sd_notify(false, "READY=1");
}

int notify_status(size_t clients, size_t channels, size_t functions) {
        return sd_notifyf(false, "STATUS=%zu clients, %zu channels, %zu functions", clients,
                          channels, functions);
}

int notify_stopping(void) {
        return sd_notify(false, "STOPPING=1");
}

static int watchdog_handler(sd_event_source *s, uint64_t usec, void *userdata) {
        uint64_t half_period = (uint64_t) (uintptr_t) userdata;
        int r;

        /* A failed ping is not worth stopping for: the service manager's own deadline judges. */
        (void) sd_notify(false, "WATCHDOG=1");

        /* Counted from this wake-up, not from when the ping was due: after a stall the loop
         * sends one ping, not a burst of the missed ones. */
        r = sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &usec);
        if (r < 0)
                return r;
        r = sd_event_source_set_time(s, usec + half_period);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

int notify_watchdog_setup(sd_event *e) {
        sd_event_source *s = NULL;
        uint64_t period, now;
        int r;

        if (!e)
                return -EINVAL;
        /* Keeps $WATCHDOG_* in the environment: harmless, as the broker starts no children. */
        r = sd_watchdog_enabled(false, &period);
        if (r <= 0)
                return r;
        /* Half the period, as sd_watchdog_enabled(3) recommends, leaves one late ping of slack. */
        period /= 2;
        if (period == 0)
                period = 1;

        r = sd_event_now(e, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        /* The first ping goes out at once: the manager's clock started when it forked us, and
         * start-up may already have used much of the period. */
        /* sd-event's default accuracy (250 ms) would let a short period's pings come late;
         * a quarter of the interval keeps them within the period and still lets wake-ups
         * coalesce. */
        r = sd_event_add_time(e, &s, CLOCK_MONOTONIC, now, period / 4 + 1, watchdog_handler,
                              (void *) (uintptr_t) period);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s, "watchdog");
        r = sd_event_source_set_enabled(s, SD_EVENT_ON);
        if (r >= 0)
                r = sd_event_source_set_floating(s, true);
        sd_event_source_unref(s);
        return r < 0 ? r : 1;
}
