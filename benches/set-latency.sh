#!/usr/bin/env bash
# SET-to-enforcement latency under query load, loopback only: Cordon (release build) pinned to
# core 0 with a Shared Signals issuer whose JWKS the script makes, dnsperf at a fixed rate on
# core 1, and benches/set_latency.py pushing CAEP device-compliance-change SETs (ES256) for the
# device a Jamf check-in bound to 127.0.0.50, then querying from that address until the answer
# changes. groups.toml maps the issuer's not-compliant group to `restricted`.
# Needs: apt-get install -y dnsperf nsd; python3 with cryptography; the harness's data set.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
QPS=${QPS:-20000}; ROUNDS=${ROUNDS:-200}; DNS_PORT=5307; HTTP_PORT=9157
ISSUER=https://edr.bench; AUDIENCE=https://cordon.bench/webhooks/ssf
bench_start
POLICIES=$W/policies; export POLICIES
cp -r policies/. "$POLICIES/"
python3 - "$POLICIES/groups.toml" "ssf:$ISSUER:not-compliant" <<'PY'
import sys
path, key = sys.argv[1], sys.argv[2]
text = open(path).read()
open(path, "w").write(text.replace("uem_groups = [", f'uem_groups = ["{key}", ', 1))
PY
python3 benches/set_latency.py keygen "$W"
cordon_start $DNS_PORT $HTTP_PORT <<CONF
[auth]
webhook_tokens = ["bench-token"]
[ssf]
[[ssf.issuer]]
issuer = "$ISSUER"
audience = "$AUDIENCE"
jwks_file = "$W/jwks.json"
CONF
# The device: a Jamf check-in from the fixture, bound to 127.0.0.50.
sed 's/"reportedIpAddress":"10.20.30.142"/"reportedIpAddress":"127.0.0.50"/' \
  tests/fixtures/jamf/computer-checkin.json |
  curl -sf -H 'Authorization: Bearer bench-token' -H 'Content-Type: application/json' \
    --data-binary @- "http://127.0.0.1:$HTTP_PORT/webhooks/jamf" > /dev/null
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/mixed.txt" -Q "$QPS" -l 600 -c 20 > "$W/dnsperf.txt" 2>&1 & DNSPERF=$!; BG_PIDS+=("$DNSPERF")
sleep 2
taskset -c 1 python3 benches/set_latency.py run $HTTP_PORT $DNS_PORT "$W" "$ISSUER" "$AUDIENCE" C02ZK1ABMD6T "$ROUNDS"
kill -INT $DNSPERF; wait $DNSPERF 2>/dev/null || true
grep -E "Queries per second|Queries lost" "$W/dnsperf.txt" || true
