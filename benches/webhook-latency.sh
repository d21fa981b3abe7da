#!/usr/bin/env bash
# Webhook-to-enforcement latency under query load, loopback only: NSD upstream (benches/harness
# data), Cordon (release build) pinned to core 0, dnsperf at a fixed rate on core 1, and
# benches/webhook_latency.py posting Jamf webhooks and querying from the bound address.
# Needs: apt-get install -y dnsperf nsd; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
QPS=${QPS:-20000}; ROUNDS=${ROUNDS:-200}; DNS_PORT=5306; HTTP_PORT=9156
bench_start
cordon_start $DNS_PORT $HTTP_PORT <<'CONF'
[auth]
webhook_tokens = ["bench-token"]
CONF
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/mixed.txt" -Q "$QPS" -l 600 -c 20 > "$W/dnsperf.txt" 2>&1 & DNSPERF=$!; BG_PIDS+=("$DNSPERF")
sleep 2
taskset -c 1 python3 benches/webhook_latency.py $HTTP_PORT $DNS_PORT bench-token "$ROOT/tests/fixtures/jamf" "$ROUNDS"
kill -INT $DNSPERF; wait $DNSPERF 2>/dev/null || true
grep -E "Queries per second|Queries lost" "$W/dnsperf.txt" || true
