#!/usr/bin/env bash
# Server CPU per answered query at a fixed offered rate, for quick A/B runs between builds:
# Cordon (shipped policies, pinned to core 0) after a warm-up pass over the workload, then
# dnsperf open loop on core 1; user+system ticks of the whole process over the run, divided by
# the queries, and each thread's share. Loopback only.
# Usage: benches/cpu-per-query.sh [allowed|blocked|mixed]   (RATE=20000 DURATION=10;
# BIN=path runs another build instead of target/release/cordon; CONFIG_EXTRA='[section]\n...'
# adds whole config sections; POLICIES=dir another policy directory; SHARE=127.0.0.3:10 sends 10 %
# of the rate from 127.0.0.3). Prints the trail's and the query log's metrics at the end, when they
# are on, and with SHOW=regex the metrics it matches (SHOW='^cordon_cache_' for the cache's).
# Needs: apt-get install -y dnsperf nsd; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
WORKLOAD=${1:-allowed}; RATE=${RATE:-20000}; DURATION=${DURATION:-10}; DNS_PORT=5328; HTTP_PORT=9179
bench_start
if [ -n "${BIN:-}" ]; then cp "$BIN" "$W/cordon" && CORDON_BIN=$W/cordon; fi
CORDON_BIN=${CORDON_BIN:-target/release/cordon} cordon_start $DNS_PORT $HTTP_PORT \
  < <(printf '%b' "${CONFIG_EXTRA-}")
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/$WORKLOAD.txt" -n 1 -q 100 > /dev/null 2>&1
ticks() { sed 's/.*) //' "$1/stat" | awk '{print $12 + $13}'; }
threads() { for t in /proc/$CORDON/task/*; do echo "$(cat "$t/comm") $(ticks "$t")"; done | sort; }
threads > "$W/before"; t0=$(ticks /proc/$CORDON)
# SHARE=ADDR:PERCENT sends that share of the rate from another loopback address, at once.
share_addr=${SHARE:-}; share_addr=${share_addr%%:*}; share_pct=0
[ -z "${SHARE:-}" ] || share_pct=${SHARE##*:}
main_rate=$((RATE * (100 - share_pct) / 100))
if [ "$share_pct" -gt 0 ]; then
  taskset -c 1 dnsperf -s 127.0.0.1 -a "$share_addr" -p $DNS_PORT -d "$DATA/$WORKLOAD.txt" -l "$DURATION" \
    -Q $((RATE - main_rate)) -T 1 -c 4 -t 5 -q 100 > "$W/dnsperf-share.txt" 2>&1 &
  share_pid=$!
fi
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/$WORKLOAD.txt" -l "$DURATION" -Q "$main_rate" \
  -T 1 -c 20 -t 5 -q 500 > "$W/dnsperf.txt" 2>&1
[ "$share_pct" = 0 ] || wait "$share_pid"
t1=$(ticks /proc/$CORDON); threads > "$W/after"
answered=$(cat "$W"/dnsperf*.txt | awk '/Queries completed:/{n += $3} END{print n}')
hz=$(getconf CLK_TCK)
join <(awk '{s[$1]+=$2} END{for (k in s) print k, s[k]}' "$W/before" | sort) \
     <(awk '{s[$1]+=$2} END{for (k in s) print k, s[k]}' "$W/after" | sort) |
  awk -v hz="$hz" -v n="$answered" '$3 > $2 {printf "thread %s\t%.2f µs/query\n", $1, ($3-$2)/hz*1e6/n}'
awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$answered" -v w="$WORKLOAD" -v r="$RATE" \
  'BEGIN{printf "%s at %d qps: %d answered, %.2f µs of server CPU per query\n", w, r, n, d/hz*1e6/n}'
# What the observers of queries (the trail, the query log) did in the run, when they are on.
curl -s "127.0.0.1:$HTTP_PORT/metrics" | grep -E '^cordon_(trail|query_log|dnstap)_' || true
[ -z "${SHOW:-}" ] || curl -s "127.0.0.1:$HTTP_PORT/metrics" | grep -E "$SHOW" || true
