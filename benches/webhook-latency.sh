#!/usr/bin/env bash
# Webhook-to-enforcement latency under query load, loopback only: NSD upstream (shared bench
# data), Cordon (release build) pinned to core 0, dnsperf at a fixed rate on core 1, and
# benches/webhook_latency.py posting Jamf webhooks and querying from the bound address.
# Needs: apt-get install -y dnsperf nsd; ../shared/bench data (run-anchors.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export BENCH=${BENCH_DIR:-$ROOT/../shared/bench} BENCH_WORK=$ROOT/target/bench
export DATA=$BENCH_WORK/data RUN=$BENCH_WORK/run
QPS=${QPS:-20000}; ROUNDS=${ROUNDS:-200}; DNS_PORT=5306; HTTP_PORT=9156
. "$BENCH/lib/common.sh"; . "$BENCH/lib/auth.sh"
[ -s "$DATA/meta.txt" ] || python3 "$BENCH/tools/gen-data.py" "$DATA"
cargo build --release
W=$(mktemp -d); trap 'kill $CORDON $DNSPERF 2>/dev/null || true; stop_auth; rm -rf "$W"' EXIT
start_auth >/dev/null
cp -r policies "$W/policies"
cat > "$W/cordon.toml" <<CONF
[dns]
listen = ["127.0.0.1:$DNS_PORT"]
[upstream]
servers = ["udp://$AUTH_ADDR:$AUTH_PORT"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
[store]
path = "$W/cordon.db"
[policies]
dir = "$W/policies"
[auth]
webhook_tokens = ["bench-token"]
CONF
taskset -c 0 target/release/cordon run --config "$W/cordon.toml" 2> "$W/cordon.log" & CORDON=$!
python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 $DNS_PORT a1.bench.test ok 30 "$(date +%s%N)" > /dev/null
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/mixed.txt" -Q "$QPS" -l 600 -c 20 > "$W/dnsperf.txt" 2>&1 & DNSPERF=$!
sleep 2
taskset -c 1 python3 benches/webhook_latency.py $HTTP_PORT $DNS_PORT bench-token "$ROOT/../shared/fixtures/jamf" "$ROUNDS"
kill -INT $DNSPERF; wait $DNSPERF 2>/dev/null || true
grep -E "Queries per second|Queries lost" "$W/dnsperf.txt" || true
