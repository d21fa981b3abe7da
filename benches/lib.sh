# Shared by the end-to-end scripts in benches/: the load harness in benches/harness, its data set
# (target/bench/data), the NSD upstream on 127.0.0.2, and a release Cordon pinned to core 0.
# Loopback only. Source it from the repository root, then call bench_start and cordon_start.

ROOT=$PWD
export BENCH=$ROOT/benches/harness BENCH_WORK=$ROOT/target/bench
export DATA=$BENCH_WORK/data RUN=$BENCH_WORK/run
. "$BENCH/lib/common.sh"
. "$BENCH/lib/auth.sh"

# bench_start: the data set, a release build (NOBUILD=1 keeps the one there), a work dir ($W)
# and the upstream; all undone on exit.
bench_start() {
  [ -s "$DATA/meta.txt" ] || python3 "$BENCH/tools/gen-data.py" "$DATA"
  [ -n "${NOBUILD:-}" ] || cargo build --release
  W=$(mktemp -d)
  BG_PIDS=()
  trap 'for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; stop_auth; rm -rf "$W"' EXIT
  start_auth >/dev/null
}

# cordon_start DNS_PORT HTTP_PORT < extra-toml: Cordon with the shipped policies on those ports,
# forwarding to the upstream, with the TOML on stdin appended to its config; waits until it
# answers (CORDON_BIN: another build). Sets CORDON to its pid. Rate limiting is off unless
# DNS_EXTRA says otherwise (DNS_EXTRA= keeps the defaults, and works with builds from before it);
# POLICIES=dir reads another policy directory (an older build's, for an A/B).
cordon_start() {
  local dns=$1 http=$2
  {
    printf '[dns]\nlisten = ["127.0.0.1:%s"]\n%s\n' "$dns" "${DNS_EXTRA-rrl_responses_per_second = 0}"
    cat
    printf '[upstream]\nservers = ["udp://%s:%s"]\n' "$AUTH_ADDR" "$AUTH_PORT"
    printf '[http]\nlisten = "127.0.0.1:%s"\n[store]\npath = "%s/cordon.db"\n' "$http" "$W"
    printf '[policies]\ndir = "%s"\n' "${POLICIES:-$ROOT/policies}"
  } > "$W/cordon.toml"
  taskset -c 0 "${CORDON_BIN:-target/release/cordon}" run --config "$W/cordon.toml" 2> "$W/cordon.log" &
  CORDON=$!
  BG_PIDS+=("$CORDON")
  python3 "$BENCH/tools/dnsprobe.py" wait 127.0.0.1 "$dns" a1.bench.test ok 30 "$(date +%s%N)" > /dev/null
}

# A self-signed certificate for dns.test and *.dns.test in $W.
self_signed() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=dns.test \
    -addext "subjectAltName=DNS:dns.test,DNS:*.dns.test" -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
}
