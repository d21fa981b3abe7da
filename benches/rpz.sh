#!/usr/bin/env bash
# RPZ by zone transfer, Unbound against Cordon, in one run (loopback only):
#   1. an RPZ zone of N entries (benches/rpz_zone.py: `h<i>.bad-<i % 1000>.example CNAME .`),
#      served by Knot DNS (knotd in a temp dir, zonefile-load: difference, a journal of changes,
#      so that a reload of a changed file is an IXFR), NOTIFYing every resolver under test;
#   2. each resolver as its secondary, timed from exec until the zone's last name answers
#      NXDOMAIN, and its RSS once loaded minus its RSS without the feed (same config otherwise),
#      per entry;
#   3. an IXFR of CHANGES (1,000) changes: CHANGES/2 entries removed, CHANGES/2 added, then
#      `knotc zone-reload`; for each resolver, the time from the reload command until a new
#      name answers NXDOMAIN and a removed one resolves again (both: "enforced").
# The "internet" is a local Unbound answering A 192.0.2.1 (TTL 0, so nothing is cached) for any
# name under example., which both resolvers forward to. Resolvers run on core 0; Knot, the
# upstream and the probes on core 1.
# Unbound: 1 thread, `rpz:` with `primary:` Knot (no zone file). Cordon: the shipped policies
# (group "standard" blocks category malware with NXDOMAIN) and a `[[feed]]` of category
# malware. Cordon also reports its `cordon_feed_*` metrics and its `published in` log lines.
#
#   benches/rpz.sh                                   # N=1000000, builds the release binary
#   N=100000 NOBUILD=1 benches/rpz.sh                # keep target/release/cordon as it is
#   RESOLVERS=unbound benches/rpz.sh                 # Unbound only (no build)
#   CORDON_BIN=/path/to/cordon NOBUILD=1 benches/rpz.sh
#   IXFR_VIA=ddns benches/rpz.sh                     # the change as one DNS UPDATE (knsupdate)
#                                                    # instead of a reload of the whole file,
#                                                    # whose parse and diff take Knot ~3 s at 1M
#                                                    # (but Knot 3.2 NOTIFYs ~1 s after an update,
#                                                    # at once after a reload)
# The last column is the resolver's own share: from Knot's NOTIFY (its TCP SYN to the resolver's
# port, seen by tcpdump on lo; "-" without tcpdump) to enforcement.
# Needs: apt-get install -y knot knot-dnsutils unbound python3 curl (knotd, knotc, kdig, knsupdate);
# tcpdump for the last column.
# KEEP=1 keeps the work dir (configs, logs, zones) and prints it.
#
# LOAD=1 adds a phase after the table, for each resolver alone (the others stopped, so that
# none loads a zone on core 0 while another is measured), with dnsperf on core 1:
#   4. qps without the feed and with it (same config otherwise): closed loop (-c 20 -q 500) for
#      QPS_SECONDS (10) on a 70/30 mix of names outside the zone (w<j>.ok.example, 10,000 of
#      them) and names in it (h<i>.bad-500.example, NXDOMAIN with the feed), all of which the
#      upstream answers with TTL 3600 and which a first pass puts in the resolver's cache;
#   5. the same mix at a fixed RATE (20,000 q/s, dnsperf -Q -S 1; up to 6 s of queries in
#      flight, 5 s timeout) for WINDOW (20) seconds, three times: quiet; with an IXFR of CHANGES
#      changes (zone-reload of the file) 3 s in; with a full re-transfer 3 s in (`knotc
#      zone-purge -f +journal` and a zone-reload of a changed file with zonefile-load: whole,
#      which writes no change to the journal, so that the resolver's IXFR request gets the
#      whole zone, AXFR-shaped; Cordon's log says "full zone", Knot's "AXFR, outgoing").
#      Reported per window from dnsperf: queries lost, average and max latency (of the answered
#      queries), the worst second's answered q/s and the seconds under 90% of RATE (its -S 1
#      lines). Knot (its reload of the file, ~3 s at 1M)
#      shares core 1 with dnsperf.
#   LOAD=1 NOBUILD=1 benches/rpz.sh
#   LOAD=1 RATE=20000 WINDOW=20 QPS_SECONDS=10 NOBUILD=1 benches/rpz.sh
# Needs dnsperf for LOAD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export BENCH=$ROOT/benches/harness BENCH_WORK=$ROOT/target/bench RUN=$ROOT/target/bench/run
. "$BENCH/lib/common.sh"
N=${N:-1000000}; CHANGES=${CHANGES:-1000}; TIMEOUT=${TIMEOUT:-900}; IXFR_VIA=${IXFR_VIA:-reload}
RESOLVERS=${RESOLVERS:-unbound cordon}
CORDON_BIN=${CORDON_BIN:-$ROOT/target/release/cordon}
ZONE=rpz.bench
for tool in knotd knotc kdig unbound python3 curl taskset; do
  command -v "$tool" > /dev/null || { echo "missing $tool (see the header)" >&2; exit 1; }
done
[ -z "${LOAD:-}" ] || command -v dnsperf > /dev/null || { echo "LOAD=1 needs dnsperf" >&2; exit 1; }
RATE=${RATE:-20000}; WINDOW=${WINDOW:-20}; QPS_SECONDS=${QPS_SECONDS:-10}
has() { case " $RESOLVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if has cordon; then
  [ -n "${NOBUILD:-}" ] || cargo build --release
  [ -x "$CORDON_BIN" ] || { echo "no Cordon binary at $CORDON_BIN" >&2; exit 1; }
fi

# A short path: knotd's control socket must fit in a sockaddr_un.
W=$(mktemp -d /tmp/rpz-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
# start NAME CPU CMD...: runs CMD in the background on core CPU, output to $W/NAME.log; PID.
start() {
  local name=$1 cpu=$2; shift 2
  START_NS=$(date +%s%N)
  taskset -c "$cpu" "$@" > "$W/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# Five distinct ports free for both UDP and TCP on 127.0.0.1.
read -r UP_PORT KNOT_PORT UB_PORT CD_PORT CH_PORT < <(python3 - <<'PY'
import socket
held, ports = [], []
while len(ports) < 5:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", u.getsockname()[1]))
    except OSError:
        u.close(); t.close(); continue
    held += [u, t]; ports.append(u.getsockname()[1])
print(*ports)
PY
)

LAST=h$((N - 1)).bad-$(((N - 1) % 1000)).example
K=$((CHANGES / 2))
REMOVED=h$((K - 1)).bad-$(((K - 1) % 1000)).example
NEW=n$((K - 1)).new-$(((K - 1) % 1000)).example
[ "$N" -gt "$K" ] || { echo "N must be larger than CHANGES/2" >&2; exit 1; }
log "zone $ZONE: $N entries (last $LAST); IXFR: -$K +$K (removed $REMOVED, new $NEW)"
mkdir -p "$W/knot"
python3 benches/rpz_zone.py "$ZONE" "$N" 1 > "$W/knot/zone"
python3 benches/rpz_zone.py "$ZONE" "$N" 2 "$CHANGES" > "$W/zone.v2"

# The upstream: any name under example. is A 192.0.2.1, TTL 0.
mkdir -p "$W/upstream"
cat > "$W/upstream/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$UP_PORT
  port: $UP_PORT
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$W/upstream"
  pidfile: ""
  use-syslog: no
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "example." redirect
  local-data: "example. 0 IN A 192.0.2.1"
remote-control:
  control-enable: no
CONF
# LOAD=1: two subtrees answered with TTL 3600, so that the resolvers cache them and dnsperf
# measures their decision path: ok.example. (never in the zone) and bad-500.example. (1 entry
# in 1,000 of the zone, all of them kept by every change below).
[ -z "${LOAD:-}" ] || cat >> "$W/upstream/unbound.conf" <<CONF
server:
  local-zone: "ok.example." redirect
  local-data: "ok.example. 3600 IN A 192.0.2.2"
  local-zone: "bad-500.example." redirect
  local-data: "bad-500.example. 3600 IN A 192.0.2.3"
CONF
start upstream 1 unbound -d -c "$W/upstream/unbound.conf"
python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 "$UP_PORT" "$LAST" ok 30 "$START_NS" > /dev/null \
  || { cat "$W/upstream.log"; exit 1; }

# Knot: transfers to 127.0.0.1 without a key, NOTIFY (over TCP) to each resolver under test.
notify=()
remotes=""
for r in $RESOLVERS; do
  port=$([ "$r" = unbound ] && echo "$UB_PORT" || echo "$CD_PORT")
  remotes+="  - id: $r"$'\n'"    address: 127.0.0.1@$port"$'\n'
  notify+=("$r")
done
cat > "$W/knot/knot.conf" <<CONF
server:
    rundir: "$W/knot"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "$W/knot"
    journal-db: "$W/knot/journal"
    timer-db: "$W/knot/timer"
    kasp-db: "$W/knot/kasp"
control:
    listen: "$W/knot/knot.sock"
remote:
$remotes
acl:
  - id: transfer
    address: 127.0.0.1
    action: $([ "$IXFR_VIA" = ddns ] && echo "[transfer, update]" || echo transfer)
template:
  - id: default
    storage: "$W/knot"
    zonefile-sync: -1
    zonefile-load: difference
    journal-content: changes
zone:
  - domain: $ZONE.
    file: "$W/knot/zone"
    acl: transfer
    notify: [$(IFS=,; echo "${notify[*]}")]
CONF
knotc -c "$W/knot/knot.conf" conf-check > /dev/null
start knot 1 knotd -c "$W/knot/knot.conf"
KNOT_PID=$PID
knot_serial() { kdig @127.0.0.1 -p "$KNOT_PORT" "$ZONE" SOA +short +timeout=1 +retry=0 2> /dev/null | awk '{print $3}'; }
for _ in $(seq 600); do
  [ "$(knot_serial)" = 1 ] && break
  kill -0 "$KNOT_PID" 2> /dev/null || { cat "$W/knot.log"; exit 1; }
  sleep 0.1
done
[ "$(knot_serial)" = 1 ] || { echo "knotd does not serve $ZONE" >&2; cat "$W/knot.log"; exit 1; }
log "knot serves $ZONE serial 1 ($(ms_since "$START_NS") ms after exec)"

# unbound_conf FILE WITH_RPZ: the resolver under test, with or without the rpz: clause.
unbound_conf() {
  cat > "$1" <<CONF
server:
  interface: 127.0.0.1@$UB_PORT
  port: $UB_PORT
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$W/unbound"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "respip iterator"
  qname-minimisation: no
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UP_PORT
CONF
  [ "$2" = 1 ] && printf 'rpz:\n  name: "%s."\n  primary: 127.0.0.1@%s\n' "$ZONE" "$KNOT_PORT" >> "$1"
  return 0
}
cordon_conf() {  # cordon_conf FILE WITH_FEED
  cat > "$1" <<CONF
[dns]
listen = ["127.0.0.1:$CD_PORT"]
rrl_responses_per_second = 0
[upstream]
servers = ["udp://127.0.0.1:$UP_PORT"]
[http]
listen = "127.0.0.1:$CH_PORT"
[store]
path = "$W/cordon/cordon.db"
[policies]
dir = "$ROOT/policies"
CONF
  [ "$2" = 1 ] && cat >> "$1" <<CONF
[[feed]]
name = "bench-rpz"
primary = "127.0.0.1:$KNOT_PORT"
zone = "$ZONE"
category = "malware"
CONF
  return 0
}
# run_resolver NAME WITH_FEED: starts it on core 0 (PID, START_NS); waits until it resolves.
run_resolver() {
  local r=$1 feed=$2
  mkdir -p "$W/$r"
  if [ "$r" = unbound ]; then
    unbound_conf "$W/unbound/unbound.conf" "$feed"
    start "unbound-$feed" 0 unbound -d -c "$W/unbound/unbound.conf"
  else
    rm -f "$W/cordon/cordon.db"*
    cordon_conf "$W/cordon/cordon.toml" "$feed"
    start "cordon-$feed" 0 "$CORDON_BIN" run --config "$W/cordon/cordon.toml"
  fi
  PORT=$([ "$r" = unbound ] && echo "$UB_PORT" || echo "$CD_PORT")
}
probe() { python3 "$BENCH/tools/dnsprobe.py" "$@"; }
# await_probe PID PORT NAME EXPECT TIMEOUT START_NS: `dnsprobe.py wait` (prints the seconds since
# START_NS), given up at once if PID (the resolver) exits.
await_probe() {
  local pid=$1 w; shift
  probe wait 127.0.0.1 "$@" > "$W/await.out" &
  w=$!
  while kill -0 "$w" 2> /dev/null; do
    kill -0 "$pid" 2> /dev/null || { kill "$w" 2> /dev/null; wait "$w" 2> /dev/null; return 1; }
    sleep 0.05
  done
  wait "$w" || return 1
  cat "$W/await.out"
}

declare -A LOAD RSS0 RSS1 IXFR_NEW IXFR_GONE PUBLISHED RPID
for r in $RESOLVERS; do
  log "$r without the feed"
  run_resolver "$r" 0
  await_probe "$PID" "$PORT" "$LAST" ok 60 "$START_NS" > /dev/null || { cat "$W/$r-0.log"; exit 1; }
  sleep 2
  RSS0[$r]=$(rss_kb "$PID")
  stop_pid "$PID" "$r"
  log "$r with the feed"
  run_resolver "$r" 1
  RPID[$r]=$PID
  LOAD[$r]=$(await_probe "$PID" "$PORT" "$LAST" blocked "$TIMEOUT" "$START_NS") \
    || { echo "$r: $LAST not blocked (it exited, or not within $TIMEOUT s)" >&2; tail -20 "$W/$r-1.log"; exit 1; }
  probe wait 127.0.0.1 "$PORT" h0.bad-0.example blocked 10 "$(date +%s%N)" > /dev/null
  probe wait 127.0.0.1 "$PORT" allowed.example ok 10 "$(date +%s%N)" > /dev/null \
    || { echo "$r does not resolve names outside the zone" >&2; exit 1; }
  sleep 2
  RSS1[$r]=$(rss_kb "$PID")
  log "$r: loaded in ${LOAD[$r]} s, RSS ${RSS0[$r]} kB -> ${RSS1[$r]} kB"
done
if has cordon; then
  echo "-- Cordon's metrics and log once loaded:"
  curl -s "http://127.0.0.1:$CH_PORT/metrics" | grep '^cordon_feed_' || echo "(no cordon_feed_ metric)"
  grep 'published in' "$W/cordon-1.log" || echo "(no 'published in' line)"
fi

# The IXFR: each resolver must still block REMOVED and must not have been asked NEW.
port_of() { [ "$1" = unbound ] && echo "$UB_PORT" || echo "$CD_PORT"; }
for r in $RESOLVERS; do
  [ "$(probe query 127.0.0.1 "$(port_of "$r")" "$REMOVED" | cut -d' ' -f1)" = NXDOMAIN ] \
    || { echo "$r does not block $REMOVED before the IXFR" >&2; exit 1; }
done
if [ "$IXFR_VIA" = ddns ]; then
  {
    echo "server 127.0.0.1 $KNOT_PORT"
    echo "zone $ZONE."
    for ((i = 0; i < K; i++)); do echo "del h$i.bad-$((i % 1000)).example.$ZONE. CNAME ."; done
    for ((i = 0; i < K; i++)); do echo "add n$i.new-$((i % 1000)).example.$ZONE. 300 CNAME ."; done
    echo send
  } > "$W/update"
fi
# Knot NOTIFYs over TCP: the SYNs to the resolvers' ports time it (when tcpdump is there).
TCPDUMP=
if command -v tcpdump > /dev/null; then
  filter="tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0 and ("
  filter+=$(for r in $RESOLVERS; do printf 'dst port %s or ' "$(port_of "$r")"; done)
  filter="${filter% or })"
  taskset -c 1 tcpdump -i lo -n -tt -l "$filter" > "$W/syn.txt" 2> "$W/tcpdump.log" &
  TCPDUMP=$!
  PIDS+=("$TCPDUMP")
  for _ in $(seq 50); do grep -q listening "$W/tcpdump.log" 2> /dev/null && break; sleep 0.1; done
fi
T0=$(date +%s%N)
if [ "$IXFR_VIA" = ddns ]; then
  knsupdate < "$W/update" > "$W/knotc.out" &
else
  cp "$W/zone.v2" "$W/knot/zone"
  knotc -c "$W/knot/knot.conf" -b zone-reload "$ZONE" > "$W/knotc.out" &
fi
KNOTC=$!
waiters=()
for r in $RESOLVERS; do
  taskset -c 1 python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 "$(port_of "$r")" "$NEW" blocked 120 "$T0" \
    > "$W/ixfr-$r-new" &
  waiters+=($!)
  taskset -c 1 python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 "$(port_of "$r")" "$REMOVED" ok 120 "$T0" \
    > "$W/ixfr-$r-gone" &
  waiters+=($!)
done
until [ "$(knot_serial)" = 2 ]; do
  [ "$(ms_since "$T0")" -lt 120000 ] || { echo "knot did not load serial 2" >&2; cat "$W/knot.log"; exit 1; }
  sleep 0.01
done
KNOT_MS=$(ms_since "$T0")
wait "$KNOTC"
for w in "${waiters[@]}"; do wait "$w" || true; done
[ -z "$TCPDUMP" ] || { sleep 0.2; stop_pid "$TCPDUMP" tcpdump; }
sec_to_ms() { awk -v s="$1" 'BEGIN{ if (s ~ /^[0-9.]+$/) printf "%.0f", s * 1000; else print "timeout" }'; }
declare -A NOTIFY_MS ENFORCED
for r in $RESOLVERS; do
  IXFR_NEW[$r]=$(sec_to_ms "$(cat "$W/ixfr-$r-new")")
  IXFR_GONE[$r]=$(sec_to_ms "$(cat "$W/ixfr-$r-gone")")
  ENFORCED[$r]=$(awk -v a="${IXFR_NEW[$r]}" -v b="${IXFR_GONE[$r]}" \
    'BEGIN{ if (a == "timeout" || b == "timeout") print "timeout"; else print (a > b ? a : b) }')
  # "1796001156.707901 IP 127.0.0.1.57044 > 127.0.0.1.43013: Flags [S], ...": the first SYN
  NOTIFY_MS[$r]=$(awk -v p="127.0.0.1.$(port_of "$r"):" -v t0="$T0" \
    '$5 == p { printf "%.0f", ($1 - t0 / 1e9) * 1000; exit }' "$W/syn.txt" 2> /dev/null)
  NOTIFY_MS[$r]=${NOTIFY_MS[$r]:--}
done
how=$([ "$IXFR_VIA" = ddns ] && echo "one dynamic update" || echo "zone-reload of the whole file")
echo "-- IXFR of $CHANGES changes ($how), times from the command:"
echo "knot: serves serial 2 after $KNOT_MS ms"
for r in $RESOLVERS; do
  echo "$r: NOTIFY sent after ${NOTIFY_MS[$r]} ms, new name NXDOMAIN after ${IXFR_NEW[$r]} ms," \
    "removed name resolving after ${IXFR_GONE[$r]} ms"
done
if has cordon; then
  curl -s "http://127.0.0.1:$CH_PORT/metrics" | grep '^cordon_feed_' || true
  PUBLISHED=$(grep 'published in' "$W/cordon-1.log" | tail -1 | grep -oE 'published in [0-9.]+ ?[mµu]?s' || true)
  echo "cordon's last publish: ${PUBLISHED:-(no 'published in' line)}"
fi

echo
echo "RPZ of $N entries by AXFR, then an IXFR of $CHANGES changes by $how (Knot $(knotd -V | awk '{print $NF}') on 127.0.0.1)"
echo
echo "| resolver | load time (s) | RSS delta (MiB) | bytes/entry | IXFR $CHANGES → enforced (ms) | NOTIFY → enforced (ms) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for r in $RESOLVERS; do
  name=$([ "$r" = unbound ] && echo "Unbound $(unbound -V | awk 'NR==1{print $2}')" || echo Cordon)
  awk -v n="$name" -v l="${LOAD[$r]}" -v a="${RSS0[$r]}" -v b="${RSS1[$r]}" -v e="${ENFORCED[$r]}" -v N="$N" \
    -v k="${NOTIFY_MS[$r]}" 'BEGIN{ printf "| %s | %.2f | %.1f | %.0f | %s | %s |\n", n, l, (b - a) / 1024,
      (b - a) * 1024 / N, e, (e == "timeout" || k == "-") ? "-" : e - k }'
done

[ -n "${LOAD:-}" ] || exit 0

# -- LOAD=1: queries while the feed loads and changes, one resolver at a time.
for r in $RESOLVERS; do stop_pid "${RPID[$r]}" "$r"; done
# 70% w<j>.ok.example (j < 10,000), 30% h<i>.bad-500.example (i >= K: in every version below).
python3 - "$N" "$K" > "$W/load.txt" <<'PY'
import random, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(1)
blocked = [f"h{i}.bad-500.example" for i in range(500, n, 1000) if i >= k]
if not blocked:
    raise SystemExit("LOAD=1 needs N > max(CHANGES/2, 500) + 1000")
allowed = [f"w{j}.ok.example" for j in range(10000)]
lines = allowed + [rnd.choice(allowed) for _ in range(4000)] + [rnd.choice(blocked) for _ in range(6000)]
rnd.shuffle(lines)
print("".join(f"{name} A\n" for name in lines), end="")
PY
DP=(taskset -c 1 timeout -k 5 120 dnsperf -s 127.0.0.1 -d "$W/load.txt" -c 20 -T 1 -t 5)
# The zone is at serial 2 with the CHANGES applied; each change below toggles them.
SERIAL=2; CHANGED=1
next_zone() {  # writes the next serial (the changes toggled) to $W/zone.next
  SERIAL=$((SERIAL + 1)); CHANGED=$((1 - CHANGED))
  if [ "$CHANGED" = 1 ]; then python3 benches/rpz_zone.py "$ZONE" "$N" "$SERIAL" "$CHANGES"
  else python3 benches/rpz_zone.py "$ZONE" "$N" "$SERIAL"; fi > "$W/zone.next"
}
# knotc_load whole|difference: Knot's zonefile-load. With "whole", a reload replaces the zone
# and writes no change to the journal (purged as well), so that a secondary's IXFR request from
# the last serial is answered with the whole zone (AXFR-shaped).
knotc_load() {
  knotc -c "$W/knot/knot.conf" conf-begin > /dev/null
  knotc -c "$W/knot/knot.conf" conf-set "zone[$ZONE.].zonefile-load" "$1" > /dev/null
  knotc -c "$W/knot/knot.conf" conf-commit > /dev/null
}
# transfer PORT ixfr|full: puts zone.next in force at Knot, then waits until the resolver
# enforces it (NEW and REMOVED both flipped); prints the ms from the knotc command and from its
# return (knotc -b: Knot has loaded the file; its NOTIFY may come later), or "timeout -".
transfer() {
  local port=$1 t0 t1 a b
  t0=$(date +%s%N)
  cp "$W/zone.next" "$W/knot/zone"
  if [ "$2" = full ]; then
    knotc_load whole
    knotc -c "$W/knot/knot.conf" -f zone-purge "$ZONE" +journal > /dev/null
  fi
  knotc -c "$W/knot/knot.conf" -b zone-reload "$ZONE" > /dev/null
  t1=$(date +%s%N)
  [ "$2" != full ] || knotc_load difference
  if [ "$CHANGED" = 1 ]; then a=blocked b=ok; else a=ok b=blocked; fi
  if probe wait 127.0.0.1 "$port" "$NEW" "$a" 120 "$t0" > /dev/null \
    && probe wait 127.0.0.1 "$port" "$REMOVED" "$b" 120 "$t0" > /dev/null; then
    echo "$(ms_since "$t0") $(ms_since "$t1")"
  else echo timeout -; fi
}
# window NAME PORT [ixfr|full]: dnsperf at RATE for WINDOW s; the transfer (if any) 3 s in.
window() {
  local name=$1 port=$2 dp
  [ -z "${3:-}" ] || next_zone
  # -q: up to 6 s of queries in flight, so that a stalled resolver still gets RATE (and the
  # queries it does not answer within the 5 s timeout count as lost).
  "${DP[@]}" -p "$port" -Q "$RATE" -q $((RATE * 6)) -l "$WINDOW" -S 1 > "$W/window-$name.txt" 2>&1 &
  dp=$!
  PIDS+=("$dp")
  sleep 3
  ENF="- -"
  [ -z "${3:-}" ] || ENF=$(transfer "$port" "$3")
  wait "$dp" || true
}
# dp_stats FILE -> "lost avg_ms max_ms worst_second_qps seconds_under_90%_of_RATE" from a
# dnsperf -S 1 output
dp_stats() {
  awk -v rate="$RATE" '/Queries lost:/ { lost = $3 }
    /Average Latency/ { gsub(/[(),]/, ""); avg = $4 * 1000; max = $8 * 1000 }
    # -S lines: "<unix time>: <answered q/s in the last second>"; the first one is at 0 s.
    /^[0-9]+\.[0-9]+: [0-9.]+$/ { q[++n] = $2 }
    END { w = "-"; slow = 0
      for (i = 2; i <= n; i++) { if (w == "-" || q[i] + 0 < w + 0) w = q[i]; if (q[i] < 0.9 * rate) slow++ }
      printf "%s %.2f %.2f %s %d\n", lost, avg, max, w == "-" ? w : sprintf("%.0f", w), slow }' "$1"
}
declare -A QPS0 QPS1 CODES1 WIN FULL_LINE
for r in $RESOLVERS; do
  port=$(port_of "$r")
  for feed in 0 1; do
    log "load: $r $([ "$feed" = 1 ] && echo with || echo without) the feed"
    run_resolver "$r" "$feed"
    pid=$PID
    if [ "$feed" = 1 ]; then want=blocked; else want=ok; fi
    await_probe "$pid" "$port" "$LAST" "$want" "$TIMEOUT" "$START_NS" > /dev/null \
      || { echo "$r: $LAST not $want" >&2; tail -20 "$W/$r-$feed.log"; exit 1; }
    "${DP[@]}" -p "$port" -n 1 -q 100 > "$W/warm-$r-$feed.txt" 2>&1   # fills the cache
    "${DP[@]}" -p "$port" -q 500 -l "$QPS_SECONDS" > "$W/qps-$r-$feed.txt" 2>&1
    q=$(awk '/Queries per second/ { printf "%.0f", $4 }' "$W/qps-$r-$feed.txt")
    codes=$(grep 'Response codes' "$W/qps-$r-$feed.txt" | sed 's/^ *Response codes: *//')
    log "$r feed=$feed: $q qps ($codes)"
    if [ "$feed" = 0 ]; then QPS0[$r]=$q; stop_pid "$pid" "$r"; continue; fi
    QPS1[$r]=$q; CODES1[$r]=$codes
    for w in quiet ixfr full; do
      log "load: $r at $RATE q/s for $WINDOW s, $w"
      window "$r-$w" "$port" "$([ "$w" = quiet ] || echo "$w")"
      WIN[$r-$w]="$ENF $(dp_stats "$W/window-$r-$w.txt")"
      log "$r $w: serial $SERIAL; enforced, lost, avg, max, worst, slow: ${WIN[$r-$w]}"
      [ "$w" = quiet ] || echo "knot: $(grep -E 'XFR, outgoing' "$W/knot.log" | grep -vE 'finished' \
        | tail -1 | sed 's/^.*\] //')"
    done
    if [ "$r" = cordon ]; then
      FULL_LINE[$r]=$(grep -oE "serial $SERIAL in force \([^)]*\)" "$W/cordon-1.log" | tail -1)
      echo "cordon, last transfer: ${FULL_LINE[$r]:-(no 'serial $SERIAL in force' line)}"
      case "${FULL_LINE[$r]}" in *"full zone"*) ;; *) echo "cordon: the re-transfer was not a full zone" >&2 ;; esac
      grep -E 'in force' "$W/cordon-1.log" | sed 's/^.*feed bench-rpz: /  /' || true
    fi
    stop_pid "$pid" "$r"
  done
done

echo
echo "Queries against a feed of $N entries, resolver on core 0, dnsperf on core 1 (loopback)"
echo
echo "| resolver | qps without feed | qps with feed | with / without | response codes with feed |"
echo "| --- | ---: | ---: | ---: | --- |"
for r in $RESOLVERS; do
  name=$([ "$r" = unbound ] && echo "Unbound $(unbound -V | awk 'NR==1{print $2}')" || echo Cordon)
  awk -v n="$name" -v a="${QPS0[$r]}" -v b="${QPS1[$r]}" -v c="${CODES1[$r]}" \
    'BEGIN{ printf "| %s | %d | %d | %.2f | %s |\n", n, a, b, b / a, c }'
done
echo
echo "At $RATE q/s for $WINDOW s, the transfer (if any) 3 s in. Enforced: until the resolver answers"
echo "by the new serial, from the knotc command (with Knot's reload of the file) and from its return"
echo "(knotc -b: Knot has loaded the file; its NOTIFY may come later). Latencies are of the answered"
echo "queries; slow seconds: under 90% of $RATE answers"
echo
echo "| resolver | window | enforced after (ms) | after knotc returned (ms) | queries lost | avg latency (ms) | max latency (ms) | worst second (q/s) | slow seconds |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for r in $RESOLVERS; do
  name=$([ "$r" = unbound ] && echo "Unbound $(unbound -V | awk 'NR==1{print $2}')" || echo Cordon)
  for w in quiet ixfr full; do
    label=$(case $w in quiet) echo "quiet" ;; ixfr) echo "IXFR of $CHANGES changes" ;;
      full) echo "full re-transfer ($N)" ;; esac)
    read -r enf knot lost avg max worst slow <<< "${WIN[$r-$w]}"
    echo "| $name | $label | $enf | $knot | $lost | $avg | $max | $worst | $slow |"
  done
done
