/* SPDX-License-Identifier: MIT */
/*
 * impulsed(8): command line, the sd-event loop, signals and the service manager protocol.
 * Everything the broker does is in broker.c and its helpers; this file only wires them up and
 * decides when to stop.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <systemd/sd-event.h>

#include "admin.h"
#include "broker.h"
#include "keys.h"
#include "log.h"
#include "macro.h"
#include "notify.h"
#include "ringbuf.h"

static const char *arg_bus;
static const char *arg_control_socket;
static gid_t arg_admin_gid = (gid_t) -1;
static gid_t arg_bus_gid = (gid_t) -1;
static KeysCost arg_key_cost = KEYS_COST_INTERACTIVE;
static uint32_t arg_arena_capacity = BROKER_DEFAULT_ARENA_CAPACITY;
static uint32_t arg_max_arena_capacity = BROKER_MAX_ARENA_CAPACITY;

static void help(void) {
        printf("Usage: impulsed [OPTIONS]\n"
               "The Ring broker: serves the control plane of a Ring bus over shared memory.\n\n"
               "  -h --help                   Show this help and exit\n"
               "     --version                Show the version and exit\n"
               "     --bus NAME               Serve bus NAME instead of $RING_BUS or the default bus\n"
               "     --control-socket PATH    Admin socket to create when not socket-activated\n"
               "     --admin-group GROUP      Group whose members may use the admin socket\n"
               "     --bus-group GROUP        Make segments mode 0660 owned by GROUP (default: 0666)\n"
               "     --log-level LEVEL        err, warning, notice, info (default) or debug\n"
               "     --key-cost COST          argon2id cost for access keys: min, interactive, moderate\n"
               "     --arena-capacity BYTES   Ring capacity of channel and default function arenas\n"
               "     --max-arena-capacity BYTES  Upper bound for ExposeFunction.req_arena_cap\n"
               "\nSee impulsed(8).\n");
}

static int parse_group(const char *name, gid_t *ret) {
        struct group *g;
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(name, &end, 10);
        if (*name && !*end && errno == 0 && v < (gid_t) -1) {
                *ret = (gid_t) v;
                return 0;
        }
        g = getgrnam(name);
        if (!g)
                return -ENOENT;
        *ret = g->gr_gid;
        return 0;
}

static int parse_capacity(const char *s, uint32_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || *end || v < RINGBUF_MIN_CAPACITY || v > RINGBUF_MAX_CAPACITY || (v & (v - 1)))
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_BUS,
                ARG_CONTROL_SOCKET,
                ARG_ADMIN_GROUP,
                ARG_BUS_GROUP,
                ARG_LOG_LEVEL,
                ARG_KEY_COST,
                ARG_ARENA_CAPACITY,
                ARG_MAX_ARENA_CAPACITY,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "bus", required_argument, NULL, ARG_BUS },
                { "control-socket", required_argument, NULL, ARG_CONTROL_SOCKET },
                { "admin-group", required_argument, NULL, ARG_ADMIN_GROUP },
                { "bus-group", required_argument, NULL, ARG_BUS_GROUP },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "key-cost", required_argument, NULL, ARG_KEY_COST },
                { "arena-capacity", required_argument, NULL, ARG_ARENA_CAPACITY },
                { "max-arena-capacity", required_argument, NULL, ARG_MAX_ARENA_CAPACITY },
                {}
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("impulsed %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_BUS:
                        arg_bus = optarg;
                        break;
                case ARG_CONTROL_SOCKET:
                        arg_control_socket = optarg;
                        break;
                case ARG_ADMIN_GROUP:
                        if (parse_group(optarg, &arg_admin_gid) < 0) {
                                fprintf(stderr, "impulsed: unknown group \"%s\" for --admin-group\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_BUS_GROUP:
                        if (parse_group(optarg, &arg_bus_gid) < 0) {
                                fprintf(stderr, "impulsed: unknown group \"%s\" for --bus-group\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0) {
                                fprintf(stderr, "impulsed: invalid --log-level \"%s\" (use err, warning, notice, "
                                        "info or debug)\n", optarg);
                                return -EINVAL;
                        }
                        log_set_max_level(r);
                        break;
                case ARG_KEY_COST:
                        if (keys_cost_from_string(optarg, &arg_key_cost) < 0) {
                                fprintf(stderr, "impulsed: invalid --key-cost \"%s\" (use min, interactive or "
                                        "moderate)\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_ARENA_CAPACITY:
                case ARG_MAX_ARENA_CAPACITY:
                        if (parse_capacity(optarg, c == ARG_ARENA_CAPACITY ? &arg_arena_capacity :
                                                                             &arg_max_arena_capacity) < 0) {
                                fprintf(stderr, "impulsed: %s must be a power of two between %u and %u, not "
                                        "\"%s\"\n", c == ARG_ARENA_CAPACITY ? "--arena-capacity" :
                                        "--max-arena-capacity", RINGBUF_MIN_CAPACITY, RINGBUF_MAX_CAPACITY, optarg);
                                return -EINVAL;
                        }
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "impulsed: unexpected argument \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        if (arg_arena_capacity > arg_max_arena_capacity) {
                fprintf(stderr, "impulsed: --arena-capacity exceeds --max-arena-capacity\n");
                return -EINVAL;
        }
        return 1;
}

static void on_counts_changed(Broker *b, void *userdata) {
        const Registry *r = broker_registry(b);

        (void) notify_status(registry_n_clients(r), registry_n_channels(r), registry_n_functions(r));
}

/* Each client with a pid costs the broker a descriptor (its pidfd; segments are only mapped):
 * take the whole hard limit the service manager allows instead of the 1024 soft default. */
static void raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning_errno(-errno, "Cannot raise the open file limit to %llu",
                                  (unsigned long long) rl.rlim_max);
}

static int run(void) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Broker *broker = NULL;
        Admin *admin = NULL;
        BrokerConfig config = {
                .bus = arg_bus,
                .arena_capacity = arg_arena_capacity,
                .max_arena_capacity = arg_max_arena_capacity,
                .bus_gid = arg_bus_gid,
                .key_cost = arg_key_cost,
        };
        sigset_t mask;
        int r;

        raise_fd_limit();

        /* Signals arrive through the event loop, never as asynchronous handlers. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGPIPE);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(-errno, "Cannot block signals");

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Cannot create the event loop");
        r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot watch SIGTERM/SIGINT");

        r = broker_new(&broker, event, &config);
        if (r < 0) {
                if (r == -EINVAL)
                        return log_error_errno(r, "Invalid bus name (RING_BUS or --bus): use 1-32 of "
                                               "[A-Za-z0-9_-]");
                return log_error_errno(r, "Cannot set up the broker");
        }
        r = broker_start(broker);
        if (r < 0)
                goto finish;
        broker_set_counts_changed(broker, on_counts_changed, NULL);

        r = admin_new(&admin, event, broker, arg_control_socket, arg_admin_gid);
        if (r < 0)
                goto finish;    /* admin_new() logged why */
        r = notify_watchdog_setup(event);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the watchdog");
                goto finish;
        }
        (void) notify_ready();
        on_counts_changed(broker, NULL);

        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "Event loop failed");
        else
                log_info("Shutting down on request");
finish:
        (void) notify_stopping();
        admin = admin_free(admin);
        broker = broker_free(broker);
        return r;
}

int main(int argc, char *argv[]) {
        int r;

        log_open();
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : EXIT_SUCCESS;
        r = run();
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
