#!/usr/bin/env bash
# The cache-miss path (issue 16): every query a name never asked before, so every one is
# forwarded to the upstream. Cordon (shipped policies, pinned to core 0) and, as the anchor,
# dnsdist (a pure proxy, no cache, the same core) forwarding to the same NSD; dnsperf open loop
# on core 1 at a fixed rate, and NSD on core 1 too so that core 0 holds the server alone.
# Prints, for each server, CPU µs per answered query (user+system ticks of the whole process
# over the run) and each thread's share, and answer latency p50/p90/p99/max with the count of
# answers over 5 and 10 ms (from dnsperf -v).
# Names are <random>-<n>.adsNN.test, under the harness's wildcard zones (gen-data.py), which the
# shipped policies do not block. Loopback only.
# Usage: benches/miss.sh [cordon|dnsdist|both]   (RATE=10000 DURATION=10; BIN=path runs another
# Cordon build; NOBUILD=1 keeps target/release as it is; PERF=1 records Cordon with perf -g into
# target/bench/miss.perf.data).
# Needs: apt-get install -y dnsperf nsd dnsdist; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
WHICH=${1:-both}; RATE=${RATE:-10000}; DURATION=${DURATION:-10}; DNS_PORT=5329; HTTP_PORT=9180
bench_start
if [ -n "${BIN:-}" ]; then cp "$BIN" "$W/cordon" && CORDON_BIN=$W/cordon; fi
# NSD beside the load generator: core 0 is the server's alone.
for p in $(pgrep -f "nsd -d -c $RUN/auth/nsd.conf"); do taskset -a -p -c 1 "$p" > /dev/null; done

# names FILE COUNT: COUNT unique names under the wildcard zones, tagged by this run.
names() {
  local tag; tag=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  awk -v n="$2" -v t="$tag" 'BEGIN{split("ads trk pix metric beacon stat promo adsrv", p, " ");
    for (i = 0; i < n; i++) printf "%s%d-%s.%s%02d.test A\n", substr(t, 1, 4), i, substr(t, 5),
      p[i % 8 + 1], int(i / 8) % 5}' > "$1"
}

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
threads() { for t in /proc/$1/task/*; do echo "$(cat "$t/comm" | tr ' ' _) $(ticks "${t#/proc/}")"; done | sort; }

# measure NAME PID PORT: the warm-up (2,000 other new names), then the run; prints one line.
measure() {
  local name=$1 pid=$2 port=$3 hz; hz=$(getconf CLK_TCK)
  names "$W/warm.txt" 2000; names "$W/run.txt" $((RATE * DURATION + RATE))
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$W/warm.txt" -n 1 -Q 2000 -q 100 > /dev/null 2>&1
  local perf_pid=
  if [ -n "${PERF:-}" ] && [ "$name" = cordon ]; then
    perf record -g -o "$BENCH_WORK/miss.perf.data" -p "$pid" -- sleep "$DURATION" 2> /dev/null &
    perf_pid=$!
  fi
  threads "$pid" > "$W/before"
  local t0 t1; t0=$(ticks "$pid")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$W/run.txt" -l "$DURATION" -Q "$RATE" \
    -T 1 -c 20 -t 5 -q 1000 -v > "$W/$name.txt" 2>&1
  t1=$(ticks "$pid"); threads "$pid" > "$W/after"
  [ -z "$perf_pid" ] || wait "$perf_pid"
  local answered lost; answered=$(awk '/Queries completed:/{print $3}' "$W/$name.txt")
  lost=$(awk '/Queries lost:/{print $3}' "$W/$name.txt")
  # -v: "> RCODE NAME TYPE SECONDS" a response.
  awk '$1 == ">" {print $NF * 1000}' "$W/$name.txt" | sort -g > "$W/$name.lat"
  awk -v name="$name" -v r="$RATE" -v n="$answered" -v lost="$lost" -v hz="$hz" \
    -v d=$((t1 - t0)) '
    {v[NR] = $1; if ($1 > 5) o5++; if ($1 > 10) o10++}
    function pct(p) { return v[int((NR - 1) * p) + 1] }
    END {printf "%s at %d qps: %d answered, %d lost, %.2f µs CPU/query, " \
      "latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f, >5 ms %d, >10 ms %d\n",
      name, r, n, lost, d / hz * 1e6 / n, pct(0.5), pct(0.9), pct(0.99),
      v[NR], o5, o10}' "$W/$name.lat"
  # Each thread's share (threads of one name summed).
  join <(awk '{s[$1]+=$2} END{for (k in s) print k, s[k]}' "$W/before" | sort) \
       <(awk '{s[$1]+=$2} END{for (k in s) print k, s[k]}' "$W/after" | sort) |
    awk -v hz="$hz" -v n="$answered" '$3 > $2 {printf "  thread %s\t%.2f µs/query\n", $1, ($3-$2)/hz*1e6/n}'
  grep -E 'NOERROR|SERVFAIL|NXDOMAIN|REFUSED' "$W/$name.txt" | grep -v '^>' | sed 's/^/  /' || true
}

if [ "$WHICH" != dnsdist ]; then
  CORDON_BIN=${CORDON_BIN:-target/release/cordon} cordon_start $DNS_PORT $HTTP_PORT < /dev/null
  measure cordon "$CORDON" $DNS_PORT
  curl -s "127.0.0.1:$HTTP_PORT/metrics" | grep -E '^cordon_upstream_(requests_total|shed|unmatched)' \
    | sed 's/^/  /' || true
  kill "$CORDON"; wait "$CORDON" 2> /dev/null || true
fi
if [ "$WHICH" != cordon ]; then
  # No cache, one backend socket (its default), no security polling (no traffic off loopback).
  cat > "$W/dnsdist.conf" <<CONF
setLocal("127.0.0.1:$DNS_PORT")
setSecurityPollSuffix("")
setACL({"127.0.0.0/8"})
newServer({address="$AUTH_ADDR:$AUTH_PORT", checkName="$(meta allowed_probe)."})
CONF
  taskset -c 0 dnsdist --supervised --disable-syslog -C "$W/dnsdist.conf" > "$W/dnsdist.log" 2>&1 &
  DNSDIST=$!; BG_PIDS+=("$DNSDIST")
  python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 $DNS_PORT a1.bench.test ok 30 "$(date +%s%N)" > /dev/null
  measure dnsdist "$DNSDIST" $DNS_PORT
fi
