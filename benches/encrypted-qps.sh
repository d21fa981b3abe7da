#!/usr/bin/env bash
# Queries per second over UDP, DoT and DoH against the same Cordon and workload, loopback only:
# NSD upstream (benches/harness data), Cordon (release) pinned to core 0, dnsperf on core 1.
# Needs: apt-get install -y dnsperf nsd openssl nghttp2-client; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DURATION=${DURATION:-15}; WORKLOAD=${WORKLOAD:-mixed}
DNS_PORT=5307; DOT_PORT=5853; DOH_PORT=5443; HTTP_PORT=9157
bench_start
self_signed
cordon_start $DNS_PORT $HTTP_PORT <<CONF
tls_listen = ["127.0.0.1:$DOT_PORT"]
https_listen = ["127.0.0.1:$DOH_PORT"]
tls_cert = "$W/cert.pem"
tls_key = "$W/key.pem"
server_name = "dns.test"
CONF
# one pass to fill the cache, so that every transport measures the same cached workload
taskset -c 1 dnsperf -s 127.0.0.1 -p $DNS_PORT -d "$DATA/allowed.txt" -n 1 -q 100 > /dev/null 2>&1
run() {  # run LABEL QUERYFILE DNSPERF-ARGS...
  local label=$1 file=$2; shift 2
  local out; out=$(taskset -c 1 timeout $((DURATION + 30)) dnsperf -s 127.0.0.1 -d "$file" -l "$DURATION" -c 20 -q 500 "$@" 2>&1)
  printf '%s\t%s\t%s\n' "$label" "$(awk '/Queries per second:/{printf "%.0f", $4}' <<<"$out")" \
    "$(sed -n 's/.*Queries lost:.*(\(.*\)%).*/\1/p' <<<"$out")"
}
# h2load: dnsperf 2.10's DoH mode tops out near a few hundred queries/s on any server here, so
# DoH is driven by nghttp2's h2load (20 connections, 32 streams each) with one query.
h2() {  # h2 LABEL H2LOAD-ARGS...
  local label=$1; shift
  local out; out=$(taskset -c 1 timeout 120 h2load -n $((DURATION * 150000)) -c 20 -m 32 -t 1 -D "$DURATION" "$@" 2>&1)
  printf '%s\t%s\t%s\n' "$label" "$(sed -n 's/.*finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out" | cut -d. -f1)" \
    "$(sed -n 's/^requests:.* \([0-9]*\) failed.*/\1 failed/p' <<<"$out")"
}
NAME=malware.cordon-test.example
printf '%s A\n' "$NAME" > "$W/one.txt"
python3 - "$NAME" "$W" <<'PY'
import base64, struct, sys
name, w = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0, 0x100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
open(f"{w}/q.bin", "wb").write(q)
open(f"{w}/q.b64", "w").write(base64.urlsafe_b64encode(q).decode().rstrip("="))
PY
printf '# one blocked name, the same query on every transport\ntransport\tqps\tlost\n'
run udp "$W/one.txt" -p $DNS_PORT -m udp
run dot "$W/one.txt" -p $DOT_PORT -m dot
h2 doh-get "https://127.0.0.1:$DOH_PORT/dns-query?dns=$(cat "$W/q.b64")"
h2 doh-post -d "$W/q.bin" -H 'content-type: application/dns-message' "https://127.0.0.1:$DOH_PORT/dns-query"
printf '# the shared bench mixed workload (70%% cached allowed, 30%% blocked)\ntransport\tqps\tlost_pct\n'
run udp "$DATA/$WORKLOAD.txt" -p $DNS_PORT -m udp
run dot "$DATA/$WORKLOAD.txt" -p $DOT_PORT -m dot
