#!/usr/bin/env bash
# Throughput under membership churn: closed-loop dnsperf (mixed workload) against Cordon, once
# quiet and once while 100 Jamf group changes a second are posted (alternating add and remove
# of one bound Mac), same server, same run. Loopback only.
# Needs: apt-get install -y dnsperf nsd; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DURATION=${DURATION:-20}; RATE=${RATE:-100}; DNS_PORT=5308; HTTP_PORT=9159
bench_start
cordon_start $DNS_PORT $HTTP_PORT <<'CONF'
[auth]
webhook_tokens = ["bench-token"]
CONF
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/allowed.txt" -n 1 -q 100 > /dev/null 2>&1
qps() { taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/mixed.txt" -l "$DURATION" -c 20 -q 500 2>&1 | awk '/Queries per second:/{printf "%.0f", $4}'; }
quiet=$(qps)
FIX=$ROOT/tests/fixtures/jamf
taskset -c 1 python3 - "$HTTP_PORT" "$FIX" "$RATE" "$((DURATION + 5))" > "$W/churn.out" <<'PY' & CHURN=$!
import sys, time, urllib.request
port, fix, rate, secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
bodies = [open(f"{fix}/smart-group-computer-{k}.json").read().encode() for k in ("added", "removed")]
checkin = open(f"{fix}/computer-checkin.json").read().replace('"10.20.30.142"', '"127.0.0.70"').encode()
def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/jamf", data=body,
        headers={"Authorization": "Bearer bench-token", "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
post(checkin)
start, n = time.monotonic(), 0
while time.monotonic() - start < secs:
    post(bodies[n % 2]); n += 1
    time.sleep(max(0, start + n / rate - time.monotonic()))
print(n / (time.monotonic() - start))
PY
BG_PIDS+=("$CHURN")
sleep 1
busy=$(qps)
wait $CHURN || true
printf 'quiet\t%s qps\nchurn\t%s qps while %.0f changes/s were applied\nratio\t%s\n' "$quiet" "$busy" "$(cat "$W/churn.out")" \
  "$(awk -v a="$busy" -v b="$quiet" 'BEGIN{printf "%.3f", a/b}')"
