#!/usr/bin/env bash
# Soak: DURATION seconds (600 by default) of dnsperf load, 100 Jamf webhooks a second and the
# connection attacks of the hardening issue at once, against one release Cordon with UDP, TCP,
# DoT, DoH and the HTTP API. Legitimate clients (dnsperf over UDP, a DoT and a DoH client asking
# once a second, the webhook poster) must see no error, and the server's resident memory must
# stay flat. Loopback only. Server on core 0; load, attacks and probes on core 1.
# Usage: benches/soak.sh   (DURATION=600 RATE=5000 HOOKS=100 ATTACKERS=1000; NOBUILD=1 keeps the
# release build; BIN=path runs another build).
# Needs: apt-get install -y dnsperf nsd openssl python3; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DURATION=${DURATION:-600}; RATE=${RATE:-5000}; HOOKS=${HOOKS:-100}; ATTACKERS=${ATTACKERS:-1000}
ulimit -n "$(ulimit -Hn)"   # the attackers hold thousands of sockets
DNS_PORT=5309; DOT_PORT=5854; DOH_PORT=5444; HTTP_PORT=9160
ATTACK=benches/harness/tools/attacks.py
bench_start
self_signed
if [ -n "${BIN:-}" ]; then cp "$BIN" "$W/cordon" && CORDON_BIN=$W/cordon; fi
CORDON_BIN=${CORDON_BIN:-target/release/cordon} cordon_start $DNS_PORT $HTTP_PORT <<CONF
tls_listen = ["127.0.0.1:$DOT_PORT"]
https_listen = ["127.0.0.1:$DOH_PORT"]
tls_cert = "$W/cert.pem"
tls_key = "$W/key.pem"
server_name = "dns.test"
[auth]
webhook_tokens = ["soak-token"]
CONF
rss() { awk '/VmRSS/{print $2}' "/proc/$CORDON/status"; }
(while kill -0 "$CORDON" 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 10; done) > "$W/rss" &
BG_PIDS+=("$!")
# the webhook poster: a bound Mac joins and leaves a mapped group HOOKS times a second
taskset -c 1 python3 - "$HTTP_PORT" "$ROOT/tests/fixtures/jamf" "$HOOKS" "$DURATION" > "$W/hooks.json" <<'PY' &
import json, sys, time, urllib.request
port, fix, rate, secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
bodies = [open(f"{fix}/smart-group-computer-{k}.json").read().encode() for k in ("added", "removed")]
checkin = open(f"{fix}/computer-checkin.json").read().replace('"10.20.30.142"', '"127.0.0.71"').encode()
ok = failed = 0
def post(body):
    global ok, failed
    req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/jamf", data=body,
        headers={"Authorization": "Bearer soak-token", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            ok += r.status == 200
            failed += r.status != 200
    except Exception:
        failed += 1
post(checkin)
start, n = time.monotonic(), 0
while time.monotonic() - start < secs:
    post(bodies[n % 2]); n += 1
    time.sleep(max(0, start + n / rate - time.monotonic()))
print(json.dumps({"kind": "webhooks", "ok": ok, "failed": failed}))
PY
BG_PIDS+=("$!")
# the attacks, each holding its share of connections for the whole run
for a in "silent-tls $DOH_PORT" "silent-tls $DOT_PORT" "slow-headers $DOH_PORT" \
         "pipeline-noread $DNS_PORT" "big-unauth $HTTP_PORT"; do
  set -- $a
  taskset -c 1 python3 $ATTACK "$1" 127.0.0.1 "$2" "$DURATION" "$ATTACKERS" > "$W/attack-$1-$2.json" 2>&1 &
  BG_PIDS+=("$!")
done
# legitimate encrypted clients, one question a second each
taskset -c 1 python3 $ATTACK probe-dot 127.0.0.1 $DOT_PORT "$DURATION" 1 "$W/cert.pem" > "$W/probe-dot.json" &
BG_PIDS+=("$!")
taskset -c 1 python3 $ATTACK probe-doh 127.0.0.1 $DOH_PORT "$DURATION" 1 "$W/cert.pem" > "$W/probe-doh.json" &
BG_PIDS+=("$!")
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/mixed.txt" -l "$DURATION" -Q "$RATE" \
  -c 20 -t 5 -q 500 > "$W/dnsperf.txt" 2>&1
sleep 5
wait_for() { for _ in $(seq 60); do [ -s "$1" ] && return; sleep 1; done; }
for f in hooks.json probe-dot.json probe-doh.json; do wait_for "$W/$f"; done
echo "# soak: ${DURATION}s, dnsperf at $RATE qps (mixed), $HOOKS webhooks/s, $ATTACKERS connections per attack"
grep -E "Queries (sent|completed|lost)" "$W/dnsperf.txt"
cat "$W/hooks.json" "$W/probe-dot.json" "$W/probe-doh.json"
for f in "$W"/attack-*.json; do cat "$f"; done
# RSS once the attacks are in full swing (after a minute), its highest, and at the end
awk 'NR==1{t0=$1} $1-t0>=60 && !warm{warm=$2} {if ($2>max) max=$2; last=$2}
     END{printf "rss_kib\tafter 60 s %d\tmax %d\tlast %d\n", warm, max, last}' "$W/rss"
# what the defences did: every shedding, timeout and limit counter that is not zero
curl -s "http://127.0.0.1:$HTTP_PORT/metrics" |
  grep -E '^cordon_(connections_shed_total|connections_timed_out_total|dns_rate_limited_total|upstream_shed_total|dns_refused_clients_total)' |
  awk '$2 != 0' || true
lost=$(awk '/Queries lost:/{print $3}' "$W/dnsperf.txt")
failed=$(cat "$W/hooks.json" "$W/probe-dot.json" "$W/probe-doh.json" | python3 -c \
  'import json,sys; print(sum(json.loads(l)["failed"] for l in sys.stdin if l.strip()))')
if [ "${lost:-1}" = 0 ] && [ "$failed" = 0 ]; then echo "PASS: no legitimate client saw an error"; else
  echo "FAIL: dnsperf lost ${lost:-?}, other clients failed $failed"; exit 1; fi
