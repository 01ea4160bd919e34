#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Ring under a real systemd: builds the Debian packages of this tree (dpkg-buildpackage, then
# lintian), boots a minimal Debian bookworm with systemd-nspawn (systemd as PID 1), installs
# the packages with apt, and drives the bus only the way a user would: systemctl, ringctl,
# journalctl, and client programs built inside the container against libring-dev with
# pkg-config, each in a unit of its own. Prints TAP (one "ok"/"not ok" line per check, the
# plan last); tests/run-all.sh adds the lines into its "N passed, N failed".
#
# Needs root, debootstrap, systemd-container, debhelper, dpkg-dev and lintian (.ci/install-deps)
# and, for the first debootstrap, the Debian mirror. The host's PID 1 need not be systemd:
# nspawn runs with --register=no --keep-unit, in a cgroup subtree of its own, with the unified
# cgroup hierarchy, and the test reaches the container with nsenter. The container is always
# torn down; its journal is printed when a check fails. Environment:
#   RING_NSPAWN_CACHE=DIR    cache of the pristine rootfs tarball (default /var/cache/ring-ci;
#                            empty: no cache)
#   RING_NSPAWN_MIRROR=URL   Debian mirror (default: the one apt uses here)
#   RING_NSPAWN_DEBS=DIR     install these .debs instead of building them
#   RING_NSPAWN_NOCHECK=1    build the packages without running make check
#   RING_NSPAWN_KEEP=1       keep the work folder (rootfs, packages, logs) for a look after
set -uo pipefail

top=$(cd "$(dirname "$0")/../../.." && pwd)
here="$top/tests/system/nspawn"
cache_dir=${RING_NSPAWN_CACHE-/var/cache/ring-ci}
suite=bookworm
# Everything the packages and the clients need, so that a cached rootfs installs them offline.
include=systemd,systemd-sysv,dbus,procps,passwd,libavro23,libjansson4,libsodium23,libsystemd0
include+=,gcc,libc6-dev,pkg-config,libavro-dev,libjansson-dev
# How long clients may take to get traffic going again after the broker restarted, and how
# much later than WatchdogSec the watchdog's restart may come.
resume_deadline=30
watchdog_margin=6

n=0
failed=0
work=""
nspawn_pid=""
pid1=""
cgroups=()
t_start=$(date +%s)

# --- TAP ---
say() { printf '# %s\n' "$*"; }
indent() { sed 's/^/#   /'; }
ok() { n=$((n + 1)); printf 'ok %d - %s\n' "$n" "$*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); printf 'not ok %d - %s\n' "$n" "$*"; }
# check DESCRIPTION COMMAND...: one test point; the command's output becomes diagnostics. The
# command runs in this shell (not a subshell), so that it can set the container's variables.
check() {
        local desc=$1 t0 rc
        shift
        t0=$(date +%s.%N)
        "$@" > "$work/check.out" 2>&1
        rc=$?
        indent < "$work/check.out"
        desc="$desc ($(elapsed "$t0"))"
        if [ $rc -eq 0 ]; then ok "$desc"; else not_ok "$desc"; fi
        return $rc
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
bail() {
        printf 'Bail out! %s\n' "$*"
        exit 1
}

# --- the container ---
# cin COMMAND...: runs COMMAND inside the container (all its namespaces), with a clean
# environment, as root; the way an admin's shell there would.
cin() {
        nsenter -t "$pid1" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
# as_user USER COMMAND...: COMMAND in a transient unit of its own as USER (with the user's
# groups), waiting for it and passing its output and status through.
as_user() {
        local user=$1
        shift
        cin systemd-run --quiet --wait --pipe --collect --uid="$user" --working-directory=/tmp "$@"
}
unit_prop() { cin systemctl show -P "$2" "$1"; }
# fields LINE: the MESSAGE, MESSAGE_ID and RING_* fields of one journal entry in JSON, one a line.
fields() { grep -oE '"(MESSAGE|MESSAGE_ID|RING_[A-Z_]+)":"([^"\\]|\\.)*"' <<<"$1" | sort; }
# shm_seen_by PID: the Ring segments (name, inode) in the mount namespace of process PID.
shm_seen_by() {
        cin nsenter -t "$1" -m find /dev/shm -maxdepth 1 -name 'impulse-ring*' -printf '%f %i\n' | sort
}
segments() { cin find /dev/shm -maxdepth 1 -name 'impulse-ring*' -printf '%f %i %u:%g %m\n' | sort; }
# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds; 1 on timeout.
wait_for() {
        local deadline
        deadline=$(($(date +%s%N) + $1 * 1000000000))
        shift
        until "$@" >/dev/null 2>&1; do
                [ "$(date +%s%N)" -lt "$deadline" ] || return 1
                sleep 0.1
        done
}

teardown() {
        local rc=$?
        if [ -n "$pid1" ] && [ $failed -gt 0 ] && kill -0 "$pid1" 2>/dev/null; then
                say "journal of the container (last 300 lines; whole journal in $work/journal.txt):"
                cin journalctl -b --no-pager -o short-monotonic > "$work/journal.txt" 2>&1
                tail -n 300 "$work/journal.txt" | indent
        fi
        if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
                # One SIGTERM halts the container cleanly; then it must be gone.
                kill -TERM "$nspawn_pid"
                for _ in $(seq 1 300); do
                        kill -0 "$nspawn_pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -0 "$nspawn_pid" 2>/dev/null && kill -KILL "$nspawn_pid"
                wait "$nspawn_pid" 2>/dev/null
        fi
        for cg in "${cgroups[@]}"; do
                [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
        done
        if [ -n "$work" ]; then
                if [ "${RING_NSPAWN_KEEP:-0}" = 1 ] || [ $failed -gt 0 ]; then
                        # The rootfs is large and useless after the run; the logs are not.
                        [ "${RING_NSPAWN_KEEP:-0}" = 1 ] || rm -rf "$work/root"
                        say "work folder kept: $work"
                else
                        rm -rf "$work"
                fi
        fi
        printf '1..%d\n' "$n"
        say "$((n - failed)) passed, $failed failed in $(($(date +%s) - t_start)) s"
        [ $failed -eq 0 ] && [ $rc -eq 0 ]
        exit
}

if [ "$(id -u)" != 0 ]; then
        echo "1..0 # SKIP needs root (systemd-nspawn, debootstrap)"
        exit 0
fi
for tool in systemd-nspawn debootstrap dpkg-buildpackage lintian nsenter; do
        command -v "$tool" >/dev/null || bail "$tool is missing: run .ci/install-deps"
done

work=$(mktemp -d /var/tmp/ring-nspawn.XXXXXX)
# make check runs programs of the build as nobody too: they must reach them.
chmod 0755 "$work"
trap teardown EXIT
trap 'exit 1' INT TERM
say "work folder $work"

# ---------------------------------------------------------------------------------------
# Packages: dpkg-buildpackage in a copy of the tree (it writes next to the source), lintian.
# ---------------------------------------------------------------------------------------
build_packages() {
        local src="$work/src/ring" opts="parallel=$(nproc)"
        mkdir -p "$src"
        # The files of the tree as git sees them (tracked, or new and not ignored): no build
        # folders or in-tree build products get into the package.
        if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
                (cd "$top" && git ls-files -z --cached --others --exclude-standard |
                        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
                        tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
        else
                tar -C "$top" --exclude='./build*' --exclude=./.git --exclude=./autom4te.cache -cf - . |
                        tar -C "$src" -xf -
        fi || return 1
        [ "${RING_NSPAWN_NOCHECK:-0}" = 1 ] && opts="$opts nocheck"
        echo "DEB_BUILD_OPTIONS=$opts dpkg-buildpackage -us -uc -b"
        if ! (cd "$src" && DEB_BUILD_OPTIONS=$opts dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1
        then
                tail -n 60 "$work/build.log"
                return 1
        fi
        mkdir -p "$work/debs"
        mv "$work"/src/*.deb "$work"/src/*.changes "$work"/src/*.buildinfo "$work/debs/"
        (cd "$work/debs" && ls -l ./*.deb)
}

run_lintian() {
        local out
        out=$(lintian --fail-on error --display-info --tag-display-limit 0 "$work"/debs/*.changes 2>&1 |
                grep -v 'running with root privileges is not recommended')
        local rc=$?
        printf '%s\n' "${out:-(no tags)}"
        printf 'errors: %d, warnings: %d, info: %d\n' "$(grep -c '^E:' <<<"$out")" \
                "$(grep -c '^W:' <<<"$out")" "$(grep -c '^I:' <<<"$out")"
        return $rc
}

if [ -n "${RING_NSPAWN_DEBS:-}" ]; then
        mkdir -p "$work/debs" && cp "$RING_NSPAWN_DEBS"/*.deb "$work/debs/" ||
                bail "no .debs in $RING_NSPAWN_DEBS"
        cp "$RING_NSPAWN_DEBS"/*.changes "$work/debs/" 2>/dev/null
        ok "packages taken from $RING_NSPAWN_DEBS # SKIP build"
else
        check "dpkg-buildpackage -us -uc -b builds impulsed, libring0, libring-dev" build_packages ||
                bail "the packages do not build (log: $work/build.log)"
fi
if ls "$work"/debs/*.changes >/dev/null 2>&1; then
        check "lintian reports no errors on the packages" run_lintian
fi

# ---------------------------------------------------------------------------------------
# The rootfs: a pristine debootstrap, cached as a tarball when a cache folder is set.
# ---------------------------------------------------------------------------------------
mirror=${RING_NSPAWN_MIRROR:-}
if [ -z "$mirror" ]; then
        # The first Debian archive (not security) that apt here is configured with.
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.{list,sources} 2>/dev/null |
                grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?' | grep -v security |
                head -n 1)
        mirror=${mirror:-http://deb.debian.org/debian}
fi
root="$work/root"
key=$(printf '%s %s' "$suite" "$include" | sha256sum | cut -c1-12)
cache="${cache_dir:+$cache_dir/rootfs-$suite-$key.tar}"

make_rootfs() {
        if [ -n "$cache" ] && [ -f "$cache" ]; then
                echo "from the cache $cache"
                mkdir -p "$root" && tar -C "$root" --numeric-owner -xpf "$cache"
                return
        fi
        echo "debootstrap --variant=minbase $suite from $mirror (no cache${cache:+ yet at $cache})"
        if ! debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
                > "$work/debootstrap.log" 2>&1; then
                tail -n 30 "$work/debootstrap.log"
                return 1
        fi
        # apt's downloads are of no use in the cache.
        rm -f "$root"/var/cache/apt/archives/*.deb
        if [ -n "$cache" ] && mkdir -p "$cache_dir" &&
                tar -C "$root" --numeric-owner -cpf "$cache.tmp.$$" . &&
                mv "$cache.tmp.$$" "$cache"; then
                echo "cached as $cache ($(du -h "$cache" | cut -f1))"
        else
                rm -f "$cache.tmp.$$"
        fi
        return 0
}
check "minimal $suite rootfs with systemd, dbus and a C compiler" make_rootfs || bail "no rootfs"

# What the container gets: the packages (not their debug symbols), the test client's source
# (the examples come with libring-dev) and a host name.
mkdir -p "$root/root/ring-test/debs"
cp "$work"/debs/*.deb "$root/root/ring-test/debs/"
rm -f "$root"/root/ring-test/debs/*-dbgsym_*.deb
cp "$here/ring-probe.c" "$root/root/ring-test/"
echo ring-test > "$root/etc/hostname"

# ---------------------------------------------------------------------------------------
# Boot: a cgroup subtree of its own, the unified hierarchy, systemd-nspawn --boot.
# ---------------------------------------------------------------------------------------
boot() {
        local name=ring-nspawn-$$ h
        for h in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
                [ -d "$h" ] && mkdir -p "$h/$name" && cgroups+=("$h/$name")
        done
        # A pure cgroup2 host: one subtree at the top.
        if [ ${#cgroups[@]} -eq 0 ] && [ -f /sys/fs/cgroup/cgroup.procs ]; then
                mkdir -p "/sys/fs/cgroup/$name" && cgroups+=("/sys/fs/cgroup/$name")
        fi
        (
                for cg in "${cgroups[@]}"; do echo "$BASHPID" > "$cg/cgroup.procs"; done
                export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
                exec systemd-nspawn --quiet --directory="$root" --machine=ring-test \
                        --register=no --keep-unit --console=read-only --boot
        ) < /dev/null > "$work/console.log" 2>&1 &
        nspawn_pid=$!
        # PID 1 of the container is the systemd child of nspawn.
        for _ in $(seq 1 200); do
                for p in $(pgrep -P "$nspawn_pid" -x systemd); do pid1=$p; done
                [ -n "$pid1" ] && break
                kill -0 "$nspawn_pid" 2>/dev/null || break
                sleep 0.05
        done
        if [ -z "$pid1" ]; then
                tail -n 30 "$work/console.log"
                return 1
        fi
        echo "nspawn PID $nspawn_pid, container PID 1 is $pid1"
        # systemctl answers once PID 1 has made its private socket; then it waits for the boot.
        local state="" deadline=$((SECONDS + 120))
        while [ $SECONDS -lt $deadline ] && kill -0 "$pid1" 2>/dev/null; do
                state=$(timeout 120 nsenter -t "$pid1" -a systemctl is-system-running --wait 2>&1)
                grep -q 'Failed to connect' <<<"$state" || break
                sleep 0.1
        done
        echo "systemctl is-system-running: $state"
        cin systemctl --no-legend --failed | sed 's/^/failed unit: /'
        cin systemctl --version | head -n 1
        [ "$state" = running ] || [ "$state" = degraded ]
}
check "the container boots with systemd as PID 1" boot || bail "the container does not boot"

# ---------------------------------------------------------------------------------------
# Installation: apt, as a user would; postinst makes the user and starts the units.
# ---------------------------------------------------------------------------------------
install_packages() {
        local debs
        debs=$(cd "$root/root/ring-test/debs" && ls ./*.deb | sed 's|^\./|/root/ring-test/debs/|')
        # Offline first (the rootfs has every dependency); a mirror when something is missing.
        # shellcheck disable=SC2086
        if ! cin apt-get install -y -q --no-install-recommends $debs > "$work/apt.log" 2>&1; then
                echo "offline install failed; with the mirror's lists:"
                tail -n 5 "$work/apt.log"
                # shellcheck disable=SC2086
                { cin apt-get update -q && cin apt-get install -y -q --no-install-recommends $debs; } \
                        > "$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log"; return 1; }
        fi
        grep -E '^(Setting up|Created symlink)' "$work/apt.log"
        cin dpkg-query -W impulsed libring0 libring-dev
}
check "apt installs the packages" install_packages || bail "the packages do not install"

after_install() {
        local r=0
        cin getent passwd impulse || r=1
        cin getent group impulse || r=1
        echo "enabled: service $(cin systemctl is-enabled impulsed.service)," \
                "socket $(cin systemctl is-enabled impulsed.socket)"
        echo "active: service $(cin systemctl is-active impulsed.service)," \
                "socket $(cin systemctl is-active impulsed.socket)"
        echo "ExecStart: $(unit_prop impulsed.service ExecStart | grep -o 'argv\[\]=[^;]*')"
        segments
        cin systemd-analyze security impulsed.service 2>/dev/null | tail -n 1
        [ "$(cin systemctl is-enabled impulsed.service)" = enabled ] || r=1
        [ "$(cin systemctl is-enabled impulsed.socket)" = enabled ] || r=1
        [ "$(cin systemctl is-active impulsed.service)" = active ] || r=1
        [ "$(cin systemctl is-active impulsed.socket)" = active ] || r=1
        # The bus's access policy (README.Debian): segments 0660, user and group impulse.
        segments | grep -q '^impulse-ring\.ctl\.v1 [0-9]* impulse:impulse 660$' || r=1
        return $r
}
check "postinst: user and group impulse, both units enabled and running, segments 0660 impulse:impulse" \
        after_install

# ---------------------------------------------------------------------------------------
# 1. Socket activation.
# ---------------------------------------------------------------------------------------
step1() {
        cin systemctl stop impulsed.service impulsed.socket
        echo "after systemctl stop impulsed.service impulsed.socket:" \
                "service $(cin systemctl is-active impulsed.service), segments: $(segments | wc -l)"
        [ "$(cin systemctl is-active impulsed.service)" = inactive ] || return 1
        echo "\$ systemctl enable --now impulsed.socket"
        cin systemctl enable --now impulsed.socket || return 1
        [ "$(cin systemctl is-active impulsed.service)" = inactive ] ||
                { echo "the broker runs already"; return 1; }
        echo "\$ ringctl status"
        cin ringctl status || return 1
        echo "\$ systemctl status impulsed"
        cin systemctl status --no-pager --lines=0 impulsed.service
        cin systemctl status --no-pager --lines=0 impulsed.service |
                grep -q 'Active: active (running)' || return 1
        unit_prop impulsed.service StatusText |
                grep -Eq '^[0-9]+ clients, [0-9]+ channels, [0-9]+ functions$' ||
                { echo "no STATUS= counts"; return 1; }
        # ringctl's connection is what started it: the socket unit triggered the service.
        cin journalctl -u impulsed.service --no-pager -o cat | grep -q 'Started' || return 1
}
check "1. socket activation: ringctl status starts impulsed; active (running) with STATUS= counts" step1

# ---------------------------------------------------------------------------------------
# 2. The examples, built inside against libring-dev with pkg-config, as ordinary users.
# ---------------------------------------------------------------------------------------
ex=/home/ringuser/examples
build_examples() {
        # ringuser may use the bus (group impulse); outsider may not.
        cin useradd --create-home --groups impulse ringuser || return 1
        cin useradd --create-home outsider || return 1
        cin id ringuser
        cin cp -r /usr/share/doc/libring-dev/examples "$ex" &&
                cin cp /root/ring-test/ring-probe.c "$ex/" && cin chown -R ringuser: "$ex" || return 1
        local flags='$(pkg-config --cflags --libs libring avro-c)'
        echo "pkg-config --cflags --libs libring: $(cin pkg-config --cflags --libs libring)"
        # shellcheck disable=SC2016
        as_user ringuser /bin/sh -ec "cd $ex
                for p in metric-pub metric-sub add-service add-call; do
                        cc -Wall -O2 -o \$p \$p.c $flags
                done
                cc -Wall -Wextra -Wno-unused-parameter -Werror -O2 -o ring-probe ring-probe.c \
                        \$(pkg-config --cflags --libs libring)
                ls -l metric-pub metric-sub add-service add-call ring-probe"
}
check "2. the examples build inside the container against libring-dev with pkg-config" build_examples

pubsub() {
        local pub_out="$work/metric-pub.out" pub rc=0
        # Each in a unit of its own: the broker's segments must be visible to other units.
        as_user ringuser --unit=ring-example-metric-pub "$ex/metric-pub" 10 > "$pub_out" 2>&1 &
        pub=$!
        as_user ringuser --unit=ring-example-metric-sub "$ex/metric-sub" 10 || rc=1
        wait "$pub" || rc=1
        sed 's/^/[pub unit] /' "$pub_out"
        return $rc
}
check "2. pub/sub: metric-pub and metric-sub, as ringuser (group impulse), each in its own unit" pubsub

rpc() {
        local svc rc=0 pid bpid shared
        as_user ringuser --unit=ring-example-add-service "$ex/add-service" 4000 \
                >"$work/add-service.out" 2>&1 &
        svc=$!
        wait_for 10 sh -c "nsenter -t $pid1 -a ringctl functions | grep -qw add" ||
                { echo "add never exposed"; rc=1; }
        echo "\$ ringctl functions   (as ringuser: group impulse is the admin group too)"
        as_user ringuser ringctl functions || { rc=1; cin ls -la /run/impulsed; }
        echo "\$ ringctl clients"
        cin ringctl clients
        # /dev/shm of the sandboxed broker is the one of the clients' units: the same segments,
        # the same inodes, seen from the broker's mount namespace and from the service's.
        bpid=$(unit_prop impulsed.service MainPID)
        pid=$(unit_prop ring-example-add-service.service MainPID)
        local in_broker in_client
        in_broker=$(shm_seen_by "$bpid")
        in_client=$(shm_seen_by "$pid")
        if [ -n "$in_broker" ] && [ "$in_broker" = "$in_client" ] &&
                grep -q '\.cli\.' <<<"$in_broker"; then
                shared=$(wc -l <<<"$in_broker")
                echo "SHARED /dev/shm: impulsed.service (mount ns $(cin readlink /proc/"$bpid"/ns/mnt))" \
                        "and ring-example-add-service.service (mount ns" \
                        "$(cin readlink /proc/"$pid"/ns/mnt)) see the same $shared Ring segments," \
                        "clients' reply segments included"
        else
                echo "/dev/shm differs between the broker and the client unit:"
                echo "broker: $in_broker"
                echo "client: $in_client"
                rc=1
        fi
        as_user ringuser --unit=ring-example-add-call "$ex/add-call" || rc=1
        wait "$svc" || rc=1
        sed 's/^/[service unit] /' "$work/add-service.out"
        return $rc
}
check "2. RPC: add-service and add-call in their own units; the broker shares /dev/shm with them" rpc

outsider() {
        local out
        out=$(as_user outsider "$ex/metric-pub" 1 2>&1)
        local rc=$?
        echo "as outsider (not in group impulse): exit $rc: $out"
        [ $rc -ne 0 ] && grep -qiE 'permission|denied|refused' <<<"$out"
}
check "bus policy: a user outside group impulse cannot attach to the bus" outsider

# ---------------------------------------------------------------------------------------
# 3. Structured journal fields of the clients that registered.
# ---------------------------------------------------------------------------------------
step3() {
        local json app rc=0
        json=$(cin journalctl -u impulsed.service -o json --no-pager)
        for app in metric-pub metric-sub add-service add-call; do
                local line
                line=$(grep "\"RING_APP\":\"$app\"" <<<"$json" | grep '"RING_CLIENT_ID":"' | head -n 1)
                if [ -z "$line" ]; then
                        echo "$app: no entry with RING_APP and RING_CLIENT_ID"
                        rc=1
                        continue
                fi
                # The fields of one entry, as an admin would pick them out.
                fields "$line"
                grep -q "\"RING_UNIT\":\"ring-example-$app.service\"" <<<"$line" ||
                        { echo "$app: RING_UNIT does not name its unit"; rc=1; }
        done
        return $rc
}
check "3. journalctl -u impulsed -o json has RING_APP, RING_CLIENT_ID, RING_UNIT for each client" step3

# ---------------------------------------------------------------------------------------
# 4. SIGKILL: systemd restarts the broker, running clients re-register, traffic resumes.
# ---------------------------------------------------------------------------------------
state_of() { cin cat "/run/ring-probe/$1" 2>/dev/null; }
field() { state_of "$1" | grep -oE "(^| )$2=[0-9]+" | cut -d= -f2; }
# resumed ROLE RECONNECTS: ROLE re-registered at least RECONNECTS times and has 20 good
# messages or calls since.
resumed() {
        [ "$(field "$1" reconnects)" -ge "$2" ] 2>/dev/null &&
                [ "$(field "$1" ok_since_reconnect)" -ge 20 ] 2>/dev/null
}
probes_flowing() { resumed sub "$1" && resumed call "$1"; }
start_probes() {
        cin install -d -o ringuser -m 0755 /run/ring-probe
        for role in serve pub sub call; do
                name=tick
                case $role in serve | call) name=inc ;; esac
                cin systemd-run --quiet --uid=ringuser --unit="ring-probe-$role" \
                        "$ex/ring-probe" "$role" "$name" 600 "/run/ring-probe/$role" || return 1
        done
        wait_for 20 probes_flowing 0 || { echo "the probes never got going"; probe_states; return 1; }
        probe_states
}
probe_states() { for role in pub sub serve call; do echo "ring-probe-$role: $(state_of $role)"; done; }
# inode numbers of the segments that are not clients' reply segments (those belong to the
# client processes, which live on).
broker_segments() { segments | awk '$1 !~ /\.cli\./ { print $1, $2 }'; }

kill_restart() {
        local before_pid before_restarts before_segs t0 after_pid rc=0
        start_probes || return 1
        before_pid=$(unit_prop impulsed.service MainPID)
        before_restarts=$(unit_prop impulsed.service NRestarts)
        before_segs=$(broker_segments)
        echo "broker PID $before_pid, NRestarts=$before_restarts; \$ systemctl kill -s KILL impulsed"
        t0=$(date +%s.%N)
        cin systemctl kill -s KILL impulsed.service || return 1
        restarted() {
                [ "$(cin systemctl is-active impulsed.service)" = active ] &&
                        [ "$(unit_prop impulsed.service MainPID)" != "$before_pid" ] &&
                        [ "$(unit_prop impulsed.service MainPID)" != 0 ]
        }
        wait_for 15 restarted || { echo "systemd did not restart the broker"; return 1; }
        after_pid=$(unit_prop impulsed.service MainPID)
        echo "restarted by systemd after $(elapsed "$t0"): PID $after_pid," \
                "NRestarts=$(unit_prop impulsed.service NRestarts)"
        [ "$(unit_prop impulsed.service NRestarts)" -gt "$before_restarts" ] || rc=1
        wait_for "$resume_deadline" probes_flowing 1 || { echo "traffic did not resume"; rc=1; }
        echo "traffic resumed $(elapsed "$t0") after the kill:"
        probe_states
        # Nothing of the old run is left: every segment that is not a live client's reply
        # segment was made by the new broker (a new inode), and every reply segment is mapped.
        local stale=""
        while read -r name ino; do
                [ -n "$name" ] && grep -qx "$name $ino" <<<"$before_segs" && stale+="$name "
        done <<<"$(broker_segments)"
        for cli in $(segments | awk '$1 ~ /\.cli\./ { print $1 }'); do
                cin sh -c "grep -lF '/dev/shm/$cli' /proc/[0-9]*/maps" >/dev/null 2>&1 ||
                        stale+="$cli(unmapped) "
        done
        echo "segments now:"
        segments
        if [ -n "$stale" ]; then
                echo "stale segments of the old run: $stale"
                rc=1
        fi
        return $rc
}
check "4. kill -s KILL impulsed: restarted, clients re-register, traffic resumes, no stale segment" \
        kill_restart

# ---------------------------------------------------------------------------------------
# 5. The watchdog: a frozen broker is killed and restarted.
# ---------------------------------------------------------------------------------------
watchdog() {
        local wd before_pid t0 secs limit rc=0 since
        wd=$(unit_prop impulsed.service WatchdogUSec)
        # A time span: "10s", "1min", "1min 30s".
        secs=$(awk '{ t = 0; for (i = 1; i <= NF; i++) { v = $i + 0; if ($i ~ /min$/) v *= 60; t += v }
                      print int(t) }' <<<"$wd")
        [ "$secs" -gt 0 ] 2>/dev/null || { echo "no watchdog: WatchdogUSec=$wd"; return 1; }
        limit=$((secs + watchdog_margin))
        before_pid=$(unit_prop impulsed.service MainPID)
        since=$(cin date '+%Y-%m-%d %H:%M:%S')
        echo "WatchdogSec=$wd; broker PID $before_pid; \$ systemctl kill -s STOP impulsed"
        t0=$(date +%s.%N)
        cin systemctl kill -s STOP impulsed.service || return 1
        restarted() {
                [ "$(cin systemctl is-active impulsed.service)" = active ] &&
                        [ "$(unit_prop impulsed.service MainPID)" != "$before_pid" ]
        }
        if ! wait_for "$limit" restarted; then
                echo "not restarted within WatchdogSec + ${watchdog_margin} s = $limit s"
                rc=1
        fi
        echo "killed by the watchdog and restarted $(elapsed "$t0") after SIGSTOP (limit $limit s)"
        cin journalctl -u impulsed.service --since "$since" --no-pager -o cat > "$work/watchdog.log"
        grep -iE 'watchdog|Scheduled restart|Started' "$work/watchdog.log"
        grep -qi 'watchdog timeout' "$work/watchdog.log" || rc=1
        wait_for "$resume_deadline" probes_flowing 2 || { echo "traffic did not resume"; rc=1; }
        probe_states
        return $rc
}
check "5. kill -s STOP impulsed: the watchdog restarts it within WatchdogSec + ${watchdog_margin} s" watchdog

upgrade() {
        local before_pid deb rc=0
        before_pid=$(unit_prop impulsed.service MainPID)
        deb=$(cd "$root/root/ring-test/debs" && ls impulsed_*.deb)
        echo "\$ apt-get install --reinstall $deb   (runs the maintainer scripts of an upgrade)"
        cin apt-get install -y -q --reinstall "/root/ring-test/debs/$deb" >"$work/reinstall.log" 2>&1 ||
                { tail -n 20 "$work/reinstall.log"; return 1; }
        echo "broker PID $before_pid -> $(unit_prop impulsed.service MainPID)," \
                "service $(cin systemctl is-active impulsed.service)," \
                "socket $(cin systemctl is-active impulsed.socket)"
        [ "$(unit_prop impulsed.service MainPID)" != "$before_pid" ] || { echo "not restarted"; rc=1; }
        [ "$(cin systemctl is-active impulsed.socket)" = active ] || rc=1
        # The restarted broker got the re-made socket, and the group may still use it.
        as_user ringuser ringctl status | grep -E '^(Broker PID|Clients)' || rc=1
        wait_for "$resume_deadline" probes_flowing 3 || { echo "traffic did not resume"; rc=1; }
        probe_states
        return $rc
}
check "upgrade (apt-get install --reinstall): broker and socket restarted, clients carry on" upgrade

# ---------------------------------------------------------------------------------------
# 6. A client killed with SIGKILL is reaped; the log line names its unit and cgroup.
# ---------------------------------------------------------------------------------------
reap() {
        local unit=ring-victim.service pid cgroup line rc=0 seg
        cin systemd-run --quiet --uid=ringuser --unit=ring-victim "$ex/add-service" 600000 || return 1
        registered() { cin ringctl clients | grep -q add-service; }
        wait_for 10 registered || { echo "the victim never registered"; return 1; }
        pid=$(unit_prop "$unit" MainPID)
        cgroup=$(unit_prop "$unit" ControlGroup)
        seg=$(cin sh -c "grep -o '/dev/shm/impulse-ring[^ ]*\.cli\.[0-9]*\.v1' /proc/$pid/maps" | head -n 1)
        echo "victim: $unit, PID $pid, cgroup $cgroup, reply segment ${seg:-?}"
        echo "\$ systemctl kill -s KILL $unit"
        cin systemctl kill -s KILL "$unit"
        reaped() {
                cin journalctl -u impulsed.service -o json --no-pager | grep '"MESSAGE":"Reaped client' |
                        grep -q "\"RING_UNIT\":\"$unit\""
        }
        wait_for 15 reaped || { echo "no \"Reaped client\" entry with RING_UNIT=$unit"; rc=1; }
        line=$(cin journalctl -u impulsed.service -o json --no-pager | grep '"MESSAGE":"Reaped client' |
                grep "\"RING_UNIT\":\"$unit\"" | tail -n 1)
        fields "$line"
        grep -qF "$cgroup" <<<"$line" || { echo "the entry does not name the cgroup $cgroup"; rc=1; }
        if [ -n "$seg" ]; then
                gone() { ! cin test -e "$seg"; }
                wait_for 5 gone || { echo "the victim's reply segment is left:"; cin ls -l "$seg"; rc=1; }
        fi
        cin systemctl reset-failed "$unit" 2>/dev/null
        return $rc
}
check "6. a client killed with SIGKILL is reaped; the log names its unit and cgroup (RING_UNIT)" reap

# ---------------------------------------------------------------------------------------
# 7. Stopping leaves nothing behind.
# ---------------------------------------------------------------------------------------
step7() {
        local left
        for role in call sub pub serve; do cin systemctl stop "ring-probe-$role.service"; done
        cin systemctl stop impulsed impulsed.socket || return 1
        echo "service $(cin systemctl is-active impulsed.service)," \
                "socket $(cin systemctl is-active impulsed.socket)"
        left=$(segments)
        if [ -n "$left" ]; then
                echo "left in /dev/shm:"
                echo "$left"
                return 1
        fi
        echo "no Ring segment in /dev/shm"
}
check "7. systemctl stop impulsed impulsed.socket leaves no Ring segment in /dev/shm" step7

removal() {
        cin systemctl start impulsed.socket impulsed.service || return 1
        cin apt-get purge -y -q impulsed libring-dev libring0 > "$work/purge.log" 2>&1 ||
                { tail -n 20 "$work/purge.log"; return 1; }
        echo "after apt-get purge: service $(cin systemctl is-active impulsed.service), socket" \
                "$(cin systemctl is-active impulsed.socket), segments: $(segments | wc -l)"
        [ "$(cin systemctl is-active impulsed.service)" != active ] && [ -z "$(segments)" ]
}
check "apt-get purge stops the broker and its socket and leaves no segment" removal
