#!/usr/bin/env bash
# DoH (and DoT) CPU per answered request at a fixed rate (issue 16): Cordon and, as the anchor,
# dnsdist, each in turn alone on core 0 with DoH and DoT listeners on the same self-signed P-256
# certificate,
# both blocking the harness's 100k list and caching answers from the same NSD; h2load on core 1
# at RATE requests a second (20 HTTP/2 connections over TLS 1.3, both servers held to
# TLS_AES_128_GCM_SHA256), GET `?dns=` or POST, asking one name again and again: `hot` (an
# allowed name, answered from the cache after the first) or `blocked` (on the list); `dot-hot`
# and `dot-blocked` ask the same over DoT with dnsperf (20 connections, the same suite through
# an OpenSSL config). CPU is the
# server process's user+system ticks over the run, divided by the requests h2load saw succeed.
# Prints one line a server, round and workload, then the medians and Cordon ÷ dnsdist paired
# within each round.
# Usage: benches/doh-cpu.sh   (ROUNDS=3 RATE=20000 DURATION=10 WORKLOADS="get-hot get-blocked
# post-hot post-blocked", and dot-hot dot-blocked; BIN=path runs another Cordon build; NOBUILD=1 keeps target/release;
# PERF=1 records Cordon's last workload with perf into target/bench/doh.perf.data; CLOSED=1 runs
# closed loop instead, as fast as the server answers, and compares requests a second).
# Needs: apt-get install -y nsd dnsdist nghttp2-client dnsperf openssl; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROUNDS=${ROUNDS:-3}; RATE=${RATE:-20000}; DURATION=${DURATION:-10}
WORKLOADS=${WORKLOADS:-get-hot get-blocked post-hot post-blocked}
DNS_PORT=5331; DOH_PORT=5444; DOT_PORT=5855; HTTP_PORT=9181; CONNS=20
bench_start
if [ -n "${BIN:-}" ]; then cp "$BIN" "$W/cordon" && CORDON_BIN=$W/cordon; fi
self_signed
for p in $(pgrep -f "nsd -d -c $RUN/auth/nsd.conf"); do taskset -a -p -c 1 "$p" > /dev/null; done

HOT=$(meta allowed_probe); BLOCKED=$(meta last_blocked_100k)
# query NAME: the query's wire form in $W/NAME.bin and base64url in $W/NAME.b64 (id 0, RD).
query() {
  python3 - "$1" "$W" <<'PY'
import base64, struct, sys
name, w = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0, 0x100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
open(f"{w}/{name}.bin", "wb").write(q)
open(f"{w}/{name}.b64", "w").write(base64.urlsafe_b64encode(q).decode().rstrip("="))
PY
}
query "$HOT"; query "$BLOCKED"
printf '%s A\n' "$HOT" > "$W/hot.txt"; printf '%s A\n' "$BLOCKED" > "$W/blocked.txt"
# dnsperf has no cipher option: its OpenSSL is held to the suite h2load is given.
cat > "$W/openssl.cnf" <<'CNF'
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = TLS_AES_128_GCM_SHA256
CNF

# The list as Cordon's policies (category malware, blocked for the default group).
mkdir -p "$W/policies"
printf '[[category]]\nid = 0\nname = "malware"\nlists = ["%s"]\n' "$DATA/blocklist-100k.txt" > "$W/policies/categories.toml"
printf 'default_group = "standard"\n[[group]]\nname = "standard"\npriority = 0\npolicy = "standard"\n' > "$W/policies/groups.toml"
printf 'default = "allow"\nblock_categories = ["malware"]\nresponse = "nxdomain"\n' > "$W/policies/standard.toml"

start_cordon() {
  POLICIES=$W/policies cordon_start $DNS_PORT $HTTP_PORT <<CONF
https_listen = ["127.0.0.1:$DOH_PORT"]
tls_listen = ["127.0.0.1:$DOT_PORT"]
tls_cert = "$W/cert.pem"
tls_key = "$W/key.pem"
server_name = "dns.test"
CONF
  SERVER=$CORDON
}

# dnsdist: the same list as a suffix rule answering NXDOMAIN, a packet cache, NSD behind it.
cat > "$W/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$DNS_PORT")
setSecurityPollSuffix("")
setACL({"127.0.0.0/8"})
addDOHLocal("127.0.0.1:$DOH_PORT", "$W/cert.pem", "$W/key.pem", "/dns-query")
addTLSLocal("127.0.0.1:$DOT_PORT", "$W/cert.pem", "$W/key.pem")
newServer({address="$AUTH_ADDR:$AUTH_PORT", checkName="$HOT."})
getPool(""):setCache(newPacketCache(100000))
local listed = newSuffixMatchNode()
for line in io.lines("$DATA/blocklist-100k.txt") do listed:add(newDNSName(line)) end
addAction(SuffixMatchNodeRule(listed), RCodeAction(DNSRCode.NXDOMAIN))
CONF
start_dnsdist() {
  taskset -c 0 dnsdist --supervised --disable-syslog -C "$W/dnsdist.conf" > "$W/dnsdist.log" 2>&1 &
  SERVER=$!; BG_PIDS+=("$SERVER")
  python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 $DNS_PORT "$BLOCKED" blocked 60 "$(date +%s%N)" > /dev/null
}

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# h2 WORKLOAD RATE SECONDS: h2load's output for that workload at that rate (a warm-up when RATE
# is 0, closed loop when it is -1).
h2() {
  local method=${1%-*} which=${1#*-} name
  if [ "$which" = hot ]; then name=$HOT; else name=$BLOCKED; fi
  local args=(-c $CONNS -m 8 -t 1 --tls13-ciphers=TLS_AES_128_GCM_SHA256)
  if [ "$2" -gt 0 ]; then args+=(--rps $(($2 / CONNS)) -D "$3")
  elif [ "$2" -lt 0 ]; then args+=(-D "$3")
  else args+=(-n 200); fi
  local url="https://127.0.0.1:$DOH_PORT/dns-query"
  if [ "$method" = get ]; then
    taskset -c 1 h2load "${args[@]}" "$url?dns=$(cat "$W/$name.b64")"
  else
    taskset -c 1 h2load "${args[@]}" -d "$W/$name.bin" -H 'content-type: application/dns-message' "$url"
  fi
}

# dot WORKLOAD RATE SECONDS: dnsperf's output over DoT (a warm-up pass when RATE is 0, closed
# loop when it is -1).
dot() {
  local file=$W/${1#dot-}.txt args
  if [ "$2" -gt 0 ]; then args=(-l "$3" -Q "$2")
  elif [ "$2" -lt 0 ]; then args=(-l "$3")
  else args=(-n 100); fi
  OPENSSL_CONF=$W/openssl.cnf taskset -c 1 dnsperf -s 127.0.0.1 -p $DOT_PORT -m dot -c $CONNS \
    -q 200 -d "$file" "${args[@]}"
}

# load WORKLOAD RATE SECONDS: the run's output; answered WORKLOAD OUTPUT: how many succeeded.
load() { case $1 in dot-*) dot "$@" ;; *) h2 "$@" ;; esac; }
answered() {
  case $1 in
    dot-*) awk '/Queries completed:/{print $3}' <<< "$2" ;;
    *) sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<< "$2" ;;
  esac
}

# measure SERVER ROUND WORKLOAD: a warm-up, then the run; one line of results.
measure() {
  local server=$1 round=$2 workload=$3 hz out t0 t1 ok perf_pid=
  hz=$(getconf CLK_TCK)
  load "$workload" 0 0 > /dev/null 2>&1
  if [ -n "${PERF:-}" ] && [ "$server" = cordon ]; then
    perf record -e cpu-clock -g -o "$BENCH_WORK/doh.perf.data" -p "$SERVER" -- sleep "$DURATION" 2> /dev/null &
    perf_pid=$!
  fi
  t0=$(ticks "$SERVER")
  out=$(load "$workload" "$([ -n "${CLOSED:-}" ] && echo -1 || echo "$RATE")" "$DURATION" 2>&1)
  t1=$(ticks "$SERVER")
  [ -z "$perf_pid" ] || wait "$perf_pid"
  ok=$(answered "$workload" "$out")
  if [ -z "$ok" ] || [ "$ok" -eq 0 ]; then echo "$server $workload: no answer"; echo "$out" | tail -5; return; fi
  awk -v s="$server" -v r="$round" -v w="$workload" -v n="$ok" -v hz="$hz" -v d=$((t1 - t0)) \
    -v secs="$DURATION" \
    'BEGIN {printf "%s\t%s\t%s\t%d\t%.2f\t%.0f\n", s, r, w, n, d / hz * 1e6 / n, n / secs}' |
    tee -a "$W/results"
}

printf 'server\tround\tworkload\tanswered\tcpu_us_per_request\trequests_per_s\n'
for round in $(seq 1 "$ROUNDS"); do
  for server in cordon dnsdist; do
    "start_$server"
    for workload in $WORKLOADS; do measure "$server" "$round" "$workload"; done
    kill "$SERVER"; wait "$SERVER" 2> /dev/null || true
  done
done
echo "# medians; Cordon ÷ dnsdist paired within each round: median (min–max)"
python3 - "$W/results" "${CLOSED:-}" $WORKLOADS <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
closed, unit = bool(sys.argv[2]), "/s" if sys.argv[2] else " µs"
for w in sys.argv[3:]:
    v = {(s, r): float(q if closed else c) for s, r, wl, n, c, q in rows if wl == w}
    rounds = sorted({r for s, r in v})
    cordon = [v[("cordon", r)] for r in rounds if ("cordon", r) in v]
    dnsdist = [v[("dnsdist", r)] for r in rounds if ("dnsdist", r) in v]
    ratios = sorted(v[("cordon", r)] / v[("dnsdist", r)] for r in rounds
                    if ("cordon", r) in v and ("dnsdist", r) in v)
    if ratios:
        print(f"{w}\tcordon {statistics.median(cordon):.2f}{unit}\tdnsdist {statistics.median(dnsdist):.2f}{unit}"
              f"\tratio {statistics.median(ratios):.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f})")
PY
