#!/usr/bin/env bash
# Queries per second through an encrypted upstream, in one run, loopback only. The chain:
#   dnsperf (UDP, core 1) -> front resolver (core 0) -> DoT or DoH -> Unbound "middle" -> NSD
# The middle Unbound (DoT and DoH on a self-signed certificate for dns.test) forwards to the
# harness's NSD and is warmed first, so it answers from its cache; the front is Cordon with a
# tls:// or https:// upstream, then Unbound with forward-tls-upstream (Unbound has no DoH
# upstream). Every query of a run is a name the front has not seen (the 100,000 names of the
# bench zone, in order), so each one crosses the encrypted link.
# Needs: apt-get install -y dnsperf nsd unbound openssl; the harness's data set (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DNS_PORT=5338; HTTP_PORT=9188; FRONT_PORT=5339; MID_DOT=5954; MID_DOH=5945
# Knobs: NAMES (100000, the bench zone's), NOBUILD=1 (keep the release binary), AUTH_PORT (NSD)
NAMES=${NAMES:-100000}
bench_start
# the middle's certificate, also the front's CA file: an end-entity certificate (CA:FALSE), as
# webpki will not take a CA certificate as a server's own
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=dns.test \
  -addext "subjectAltName=DNS:dns.test" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
# a1 is the readiness probe: left out, so that every query of a run is a miss
seq 2 "$NAMES" | sed 's/.*/a&.bench.test A/' > "$W/names.txt"

mid=$W/middle; mkdir -p "$mid"
cat > "$mid/unbound.conf" <<CONF
server:
    directory: "$mid"
    chroot: ""
    username: ""
    pidfile: ""
    use-syslog: no
    logfile: "$mid/unbound.log"
    verbosity: 0
    do-ip6: no
    interface: 127.0.0.1@$MID_DOT
    interface: 127.0.0.1@$MID_DOH
    tls-port: $MID_DOT
    https-port: $MID_DOH
    tls-service-key: "$W/key.pem"
    tls-service-pem: "$W/cert.pem"
    http-endpoint: "/dns-query"
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    local-zone: "test." nodefault
    msg-cache-size: 64m
    rrset-cache-size: 128m
    incoming-num-tcp: 1000
    http-max-streams: 1000
forward-zone:
    name: "."
    forward-addr: $AUTH_ADDR@$AUTH_PORT
remote-control:
    control-enable: no
CONF
taskset -c 1 unbound -d -c "$mid/unbound.conf" 2> "$mid/stderr.log" &
BG_PIDS+=($!)
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$MID_DOH) 2>/dev/null && break
  sleep 0.1
done
# warm the middle: every name once, over DoT
taskset -c 1 dnsperf -s 127.0.0.1 -p $MID_DOT -m dot -d "$W/names.txt" -n 1 -c 10 -q 200 > /dev/null 2>&1

# run LABEL PORT: dnsperf through the front on PORT, every name once
run() {
  local out; out=$(taskset -c 1 timeout 300 dnsperf -s 127.0.0.1 -p "$2" -d "$W/names.txt" -n 1 -c 20 -q 500 2>&1)
  printf '%s\t%s\t%s\n' "$1" "$(awk '/Queries per second:/{printf "%.0f", $4}' <<<"$out")" \
    "$(sed -n 's/.*Queries lost:.*(\(.*\)%).*/\1/p' <<<"$out")"
}

# cordon_run UPSTREAM: Cordon (release, core 0) forwarding to UPSTREAM only, a fresh cache
cordon_run() {
  cat > "$W/cordon.toml" <<CONF
[dns]
listen = ["127.0.0.1:$DNS_PORT"]
rrl_responses_per_second = 0
[upstream]
servers = ["$1"]
ca_file = "$W/cert.pem"
[limits]
upstream_max_in_flight = 4096
[http]
listen = "127.0.0.1:$HTTP_PORT"
[store]
path = "$W/cordon.db"
[policies]
dir = "$ROOT/policies"
CONF
  rm -f "$W/cordon.db"
  taskset -c 0 "${CORDON_BIN:-target/release/cordon}" run --config "$W/cordon.toml" 2> "$W/cordon.log" &
  CORDON=$!; BG_PIDS+=("$CORDON")
  python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 $DNS_PORT a1.bench.test ok 30 "$(date +%s%N)" > /dev/null \
    || { tail -n 20 "$W/cordon.log" "$mid"/*.log >&2; exit 1; }
}

printf '# %s names, each asked once (a cache miss at the front); front on core 0, dnsperf and the middle Unbound on core 1\n' "$((NAMES - 1))"
printf 'front -> upstream\tqps\tlost_pct\n'
for upstream in "tls://127.0.0.1:$MID_DOT#dns.test" "https://127.0.0.1:$MID_DOH/dns-query#dns.test"; do
  cordon_run "$upstream"
  run "cordon -> ${upstream%%:*}" $DNS_PORT
  # with RUST_LOG=cordon::dns::upstream=debug: how many connections the run took
  [ -z "${RUST_LOG:-}" ] || echo "connections made: $(grep -c ' connected ' "$W/cordon.log")" >&2
  stop_pid "$CORDON" cordon
done

front=$W/front; mkdir -p "$front"
cat > "$front/unbound.conf" <<CONF
server:
    directory: "$front"
    chroot: ""
    username: ""
    pidfile: ""
    use-syslog: no
    logfile: "$front/unbound.log"
    verbosity: 0
    do-ip6: no
    interface: 127.0.0.1@$FRONT_PORT
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    local-zone: "test." nodefault
    tls-cert-bundle: "$W/cert.pem"
    outgoing-num-tcp: 100
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$MID_DOT#dns.test
    forward-tls-upstream: yes
remote-control:
    control-enable: no
CONF
taskset -c 0 unbound -d -c "$front/unbound.conf" 2> "$front/stderr.log" &
FRONT=$!; BG_PIDS+=("$FRONT")
python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 $FRONT_PORT a1.bench.test ok 30 "$(date +%s%N)" > /dev/null
run "unbound -> tls" $FRONT_PORT
printf '(Unbound has no DoH upstream.)\n'
