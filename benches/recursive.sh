#!/usr/bin/env bash
# Recursive mode against Unbound's, on one local tree, in one run. NSD serves the root
# (127.0.53.1), test. (127.0.53.2) and leaf.test. (127.0.53.3, $NAMES names) on port 53: a
# delegation carries no port, so this needs root. Cordon (upstream.mode = "recursive", the
# shipped policies) and Unbound (root-hints at the same root, do-not-query-localhost: no, the
# iterator alone, no DNSSEC on either side, test. taken out of its RFC 6761 local zones) each
# run alone on core 0; dnsperf and the NSD servers run on core 1.
#   cold: every name asked once of a freshly started server (one leaf query per name; the
#         delegations of test. and leaf.test. are learnt on the first ones)
#   warm: the same names again for $DURATION seconds, all from the cache
# Prints a Markdown table. Loopback only. Needs, once, as root:
#   apt-get install -y nsd unbound dnsperf
# NOBUILD=1 keeps the release binary that is there; NAMES, DURATION, CLIENTS, OUTSTANDING.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=${NAMES:-20000} DURATION=${DURATION:-10} CLIENTS=${CLIENTS:-10} OUTSTANDING=${OUTSTANDING:-200}
[ "$(id -u)" = 0 ] || { echo "needs root: the tree's servers listen on port 53 of 127.0.53.x" >&2; exit 2; }
for tool in nsd unbound dnsperf taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 2; }
done
[ -n "${NOBUILD:-}" ] || CARGO_BUILD_JOBS=1 nice -n 10 cargo build --release
W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  rm -rf "$W"
}
trap cleanup EXIT

soa() { printf '$TTL 3600\n%s IN SOA %s hostmaster.%s 1 3600 900 604800 60\n' "$1" "$2" "${1#.}"; }
{ soa . ns.root.; printf '. NS ns.root.\nns.root. A 127.0.53.1\ntest. NS ns.test.\nns.test. A 127.0.53.2\n'; } > "$W/root.zone"
{ soa test. ns.test.; printf 'test. NS ns.test.\nns.test. A 127.0.53.2\nleaf.test. NS ns.leaf.test.\nns.leaf.test. A 127.0.53.3\n'; } > "$W/test.zone"
{ soa leaf.test. ns.leaf.test.; printf 'leaf.test. NS ns.leaf.test.\nns.leaf.test. A 127.0.53.3\n'
  awk -v n="$NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "h%d.leaf.test. A 192.0.2.%d\n", i, i % 250 + 1 }'
} > "$W/leaf.zone"
awk -v n="$NAMES" 'BEGIN { for (i = 0; i < n; i++) printf "h%d.leaf.test. A\n", i }' > "$W/names.txt"

# nsd N ZONE FILE: an NSD on 127.0.53.N:53 serving ZONE, on core 1 (with dnsperf, away from the server measured)
nsd_start() {
  local d=$W/nsd$1
  mkdir -p "$d"
  cat > "$d/nsd.conf" <<CONF
server:
  ip-address: 127.0.53.$1@53
  do-ip6: no
  username: ""
  chroot: ""
  database: ""
  zonelistfile: "$d/zone.list"
  xfrdfile: "$d/xfrd.state"
  xfrdir: "$d"
  pidfile: "$d/nsd.pid"
  logfile: "$d/nsd.log"
  zonesdir: "$W"
  server-count: 1
  verbosity: 0
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "$2"
  zonefile: "$3"
CONF
  taskset -c 1 nsd -d -c "$d/nsd.conf" > "$d/out.log" 2>&1 &
  PIDS+=($!)
}
nsd_start 1 . root.zone
nsd_start 2 test. test.zone
nsd_start 3 leaf.test. leaf.zone
for n in 1 2 3; do
  for _ in $(seq 1 100); do dig +time=1 +tries=1 +short @127.0.53.$n . SOA +norec >/dev/null 2>&1 && break; sleep 0.1; done
done
printf '. 3600000 NS ns.root.\nns.root. 3600000 A 127.0.53.1\n' > "$W/root.hints"

# server_start NAME PORT: Cordon or Unbound on core 0 on 127.0.0.1:PORT; sets SERVER
server_start() {
  case $1 in
    cordon)
      cat > "$W/cordon.toml" <<CONF
[dns]
listen = ["127.0.0.1:$2"]
rrl_responses_per_second = 0
[upstream]
mode = "recursive"
root_hints = ["127.0.53.1"]
allow_servers = ["127.0.53.0/24"]
timeout_ms = 5000
[http]
listen = ""
[store]
path = "$W/cordon-$2.db"
[policies]
dir = "$PWD/policies"
CONF
      taskset -c 0 target/release/cordon run --config "$W/cordon.toml" > "$W/cordon.out" 2> "$W/cordon.log" &
      ;;
    unbound)
      cat > "$W/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$2
  port: $2
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$W"
  pidfile: "$W/unbound.pid"
  use-syslog: no
  logfile: "$W/unbound.log"
  access-control: 127.0.0.0/8 allow
  root-hints: "$W/root.hints"
  do-not-query-localhost: no
  local-zone: "test." nodefault
  module-config: "iterator"
  msg-cache-size: 128m
  rrset-cache-size: 256m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  ratelimit: 0
  ip-ratelimit: 0
remote-control:
  control-enable: no
CONF
      taskset -c 0 unbound -d -c "$W/unbound.conf" > "$W/unbound.out" 2> "$W/unbound.err" &
      ;;
  esac
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 1 100); do
    [ "$(dig +time=1 +tries=1 +short -p "$2" @127.0.0.1 ns.test. A)" = 127.0.53.2 ] && return 0
    sleep 0.1
  done
  echo "$1 did not answer; its log:" >&2; for f in "$W/$1.log" "$W/$1.err" "$W/$1.out"; do tail -n 20 "$f"; done >&2; dig -p "$2" @127.0.0.1 ns.test. A >&2; exit 1
}

# qps LOG: dnsperf's "Queries per second" and "Queries lost"
qps() { awk '/Queries per second/ { q = $4 } /Queries lost/ { l = $3 } END { printf "%.0f (%s lost)", q, l }' "$1"; }

echo "| server | cold q/s | warm q/s |"
echo "| --- | ---: | ---: |"
port=5390
for server in ${SERVERS:-cordon unbound}; do
  port=$((port + 1))
  server_start "$server" "$port"
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$W/names.txt" -n 1 -c "$CLIENTS" -q "$OUTSTANDING" -t 5 > "$W/$server-cold.log" 2>&1
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$W/names.txt" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -t 5 > "$W/$server-warm.log" 2>&1
  echo "| $server | $(qps "$W/$server-cold.log") | $(qps "$W/$server-warm.log") |"
  kill "$SERVER"; while kill -0 "$SERVER" 2>/dev/null; do sleep 0.1; done
done
