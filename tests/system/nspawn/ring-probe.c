/* SPDX-License-Identifier: MIT */
/*
 * ring-probe: a long-running client of the installed libring for the test under a real systemd
 * (run.sh). It is built inside the container with `pkg-config --cflags --libs libring`, like
 * any program of a user, and runs in a unit of its own (systemd-run). Each role keeps its
 * traffic going across broker restarts and says how far it got in STATE_FILE, rewritten
 * atomically after every change, so the test can wait for traffic to resume:
 *
 *   ring-probe pub  NAME SECONDS STATE_FILE   publishes channel NAME, one message per 20 ms
 *   ring-probe sub  NAME SECONDS STATE_FILE   subscribes to NAME, re-subscribes after a restart
 *   ring-probe serve NAME SECONDS STATE_FILE  exposes function NAME (returns its argument + 1)
 *   ring-probe call NAME SECONDS STATE_FILE   calls NAME every 20 ms and checks the answers
 *
 * The state file holds "reconnects=R ok=N ok_since_reconnect=M errors=E". Errors while the
 * broker is away are expected and counted, never fatal. It must not know anything of Ring
 * beyond ring.h: it stands for the programs users write.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ring.h>

/* A record with one long: Avro binary of {"seq": n} is n's zigzag varint. */
#define SEQ_SCHEMA \
        "{\"type\":\"record\",\"name\":\"Seq\",\"namespace\":\"test.ring\",\"fields\":[" \
        "{\"name\":\"seq\",\"type\":\"long\"}]}"
#define PERIOD_NS (20 * 1000 * 1000)

typedef struct Probe {
        const char *role;
        const char *state_file;
        ring_conn *conn;
        unsigned reconnects;            /* as last written */
        unsigned long long ok, ok_since_reconnect, errors;
        int last_error;
} Probe;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        stop_requested = 1;
}

static size_t seq_encode(int64_t v, uint8_t *buf) {
        uint64_t z = ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);
        size_t n = 0;

        do {
                buf[n] = z & 0x7f;
                z >>= 7;
                if (z)
                        buf[n] |= 0x80;
                n++;
        } while (z && n < 10);
        return n;
}

static int seq_decode(const uint8_t *buf, size_t len, int64_t *ret) {
        uint64_t z = 0;

        for (size_t i = 0; i < len && i < 10; i++) {
                z |= (uint64_t) (buf[i] & 0x7f) << (7 * i);
                if (!(buf[i] & 0x80)) {
                        *ret = (int64_t) (z >> 1) ^ -(int64_t) (z & 1);
                        return (int) i + 1;
                }
        }
        return -EBADMSG;
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void pause_period(void) {
        nanosleep(&(struct timespec) { .tv_nsec = PERIOD_NS }, NULL);
}

static void write_state(Probe *p) {
        char tmp[4096];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", p->state_file);
        f = fopen(tmp, "we");
        if (!f)
                return;
        fprintf(f, "reconnects=%u ok=%llu ok_since_reconnect=%llu errors=%llu\n", p->reconnects, p->ok,
                p->ok_since_reconnect, p->errors);
        if (fclose(f) == 0)
                (void) rename(tmp, p->state_file);
}

/* Counts one outcome; prints each new kind of error once, and every re-registration. */
static void account(Probe *p, int r) {
        unsigned reconnects = ring_conn_reconnects(p->conn);

        if (reconnects != p->reconnects) {
                printf("%s: re-registered with the broker (reconnects=%u, client id %" PRIu64 ")\n", p->role,
                       reconnects, ring_conn_client_id(p->conn));
                p->reconnects = reconnects;
                p->ok_since_reconnect = 0;
        }
        if (r >= 0) {
                p->ok++;
                p->ok_since_reconnect++;
                if (p->ok_since_reconnect == 1 || p->ok_since_reconnect % 500 == 0)
                        printf("%s: %llu ok in all, %llu since the last re-registration\n", p->role, p->ok,
                               p->ok_since_reconnect);
                p->last_error = 0;
        } else {
                p->errors++;
                if (r != p->last_error)
                        printf("%s: %s (%s), going on\n", p->role, ring_strerror(r),
                               ring_last_error_message());
                p->last_error = r;
        }
        fflush(stdout);
        write_state(p);
}

static int run_pub(Probe *p, const char *name, uint64_t end) {
        ring_pub *pub = NULL;
        uint8_t buf[10];
        int64_t seq = 0;
        int r;

        r = ring_pub_open(p->conn, name, SEQ_SCHEMA, NULL, &pub);
        if (r < 0) {
                fprintf(stderr, "pub: cannot publish \"%s\": %s (%s)\n", name, ring_strerror(r),
                        ring_last_error_message());
                return r;
        }
        while (!stop_requested && now_ns() < end) {
                r = ring_pub_send_raw(pub, buf, seq_encode(seq, buf), 1000);
                if (r >= 0)
                        seq++;
                account(p, r);
                pause_period();
        }
        ring_pub_close(pub);
        return 0;
}

static int run_sub(Probe *p, const char *name, uint64_t end) {
        ring_sub *sub = NULL;
        uint8_t buf[64];
        int64_t seq, last = -1;
        int r;

        do {
                r = ring_sub_open(p->conn, name, SEQ_SCHEMA, NULL, &sub);
                if (r == -ENOENT)
                        pause_period();
        } while (r == -ENOENT && !stop_requested && now_ns() < end);
        if (r < 0) {
                fprintf(stderr, "sub: cannot subscribe to \"%s\": %s (%s)\n", name, ring_strerror(r),
                        ring_last_error_message());
                return r;
        }
        while (!stop_requested && now_ns() < end) {
                r = ring_sub_recv_raw(sub, buf, sizeof(buf), 1000);
                if (r == -ETIMEDOUT)
                        continue;
                if (r == -ECONNRESET || r == -ENOTCONN) {
                        account(p, r);
                        /* The broker restarted: find the channel again once it is re-published. */
                        r = ring_sub_resubscribe(sub, 1000);
                        if (r < 0) {
                                account(p, r);
                                continue;
                        }
                        /* Count from here: what came before was drained from the old arena. */
                        printf("sub: re-subscribed to \"%s\"\n", name);
                        p->ok_since_reconnect = 0;
                        last = -1;
                        continue;
                }
                if (r >= 0) {
                        r = seq_decode(buf, (size_t) r, &seq);
                        /* Sequence numbers only grow within one publisher run: a restart of the
                         * broker may lose messages in flight, never reorder them. */
                        if (r >= 0 && seq <= last && p->ok_since_reconnect > 0)
                                r = -EBADMSG;
                        if (r >= 0)
                                last = seq;
                }
                account(p, r);
        }
        ring_sub_close(sub);
        return 0;
}

static int add_one(const void *req, size_t req_len, void *resp, size_t resp_size, void *userdata) {
        int64_t v;
        int r;

        r = seq_decode(req, req_len, &v);
        if (r >= 0 && resp_size < 10)
                r = -EMSGSIZE;
        if (r >= 0)
                r = (int) seq_encode(v + 1, resp);
        account(userdata, r);
        return r;
}

static int run_serve(Probe *p, const char *name, uint64_t end) {
        ring_fn *fn = NULL;
        int r;

        r = ring_fn_expose(p->conn, name, SEQ_SCHEMA, SEQ_SCHEMA, NULL, add_one, p, &fn);
        if (r < 0) {
                fprintf(stderr, "serve: cannot expose \"%s\": %s (%s)\n", name, ring_strerror(r),
                        ring_last_error_message());
                return r;
        }
        while (!stop_requested && now_ns() < end) {
                /* Requests are counted by add_one(); here only what stops serving. */
                r = ring_fn_serve(fn, 1000);
                if (r < 0 && r != -ETIMEDOUT)
                        account(p, r);
        }
        ring_fn_close(fn);
        return 0;
}

static int run_call(Probe *p, const char *name, uint64_t end) {
        ring_rpc *rpc = NULL;
        uint8_t req[10], resp[64];
        int64_t n = 0, v;
        int r;

        do {
                r = ring_rpc_open(p->conn, name, SEQ_SCHEMA, SEQ_SCHEMA, NULL, &rpc);
                if (r == -ENOENT)
                        pause_period();
        } while (r == -ENOENT && !stop_requested && now_ns() < end);
        if (r < 0) {
                fprintf(stderr, "call: cannot look up \"%s\": %s (%s)\n", name, ring_strerror(r),
                        ring_last_error_message());
                return r;
        }
        while (!stop_requested && now_ns() < end) {
                r = ring_rpc_call_raw(rpc, req, seq_encode(n, req), resp, sizeof(resp), 1000);
                if (r >= 0) {
                        r = seq_decode(resp, (size_t) r, &v);
                        if (r >= 0 && v != n + 1)
                                r = -EBADMSG;
                        n++;
                }
                account(p, r);
                pause_period();
        }
        ring_rpc_close(rpc);
        return 0;
}

int main(int argc, char *argv[]) {
        Probe p = {};
        char app[64];
        uint64_t end;
        int r;

        if (argc != 5) {
                fprintf(stderr, "Usage: ring-probe pub|sub|serve|call NAME SECONDS STATE_FILE\n");
                return 2;
        }
        p.role = argv[1];
        p.state_file = argv[4];
        end = now_ns() + (uint64_t) strtoul(argv[3], NULL, 10) * 1000000000ULL;
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        setvbuf(stdout, NULL, _IOLBF, 0);

        snprintf(app, sizeof(app), "ring-probe-%s", p.role);
        r = ring_conn_open(app, 5000, &p.conn);
        if (r < 0) {
                fprintf(stderr, "%s: cannot connect to the bus: %s\n", p.role, ring_strerror(r));
                return 1;
        }
        printf("%s: registered as client %" PRIu64 "\n", p.role, ring_conn_client_id(p.conn));
        write_state(&p);

        if (strcmp(p.role, "pub") == 0)
                r = run_pub(&p, argv[2], end);
        else if (strcmp(p.role, "sub") == 0)
                r = run_sub(&p, argv[2], end);
        else if (strcmp(p.role, "serve") == 0)
                r = run_serve(&p, argv[2], end);
        else if (strcmp(p.role, "call") == 0)
                r = run_call(&p, argv[2], end);
        else {
                fprintf(stderr, "ring-probe: unknown role \"%s\"\n", p.role);
                r = -EINVAL;
        }
        printf("%s: done: %llu ok, %llu errors, %u reconnects\n", p.role, p.ok, p.errors, p.reconnects);
        ring_conn_close(p.conn);
        return r < 0 ? 1 : 0;
}
