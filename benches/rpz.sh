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
