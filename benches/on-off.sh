#!/usr/bin/env bash
# What a feature costs the query path: server CPU per answered query with it off and on, the same
# build and policies, alternated (off first in odd rounds), through benches/cpu-per-query.sh. The
# load comes from 127.0.0.1, bound to one device by `identity.static` in both, so that every query
# is an identified device's. Features:
#   tripwire  the default group's policy names tripwire categories (a lookup of the name) and a
#             tripwire list (a rule lookup) that the workload never hits: what every query pays.
#   trail     the device is placed in the isolation group by groups.toml, so that every query is
#             an isolated device's and, with the trail on, goes to the store (the worst case); the
#             isolation policy allows the workload's *.bench.test names, so that they are answered
#             as before and the rest (the listed names) blocked.
#   trail-share  the same, but only a tenth of the load is the isolated device's (from
#             127.0.0.3, SHARE=127.0.0.3:10), the rest another device's: a fleet with some
#             devices isolated.
#   dnstap    the query log in mode "all" to dnstap, over a Unix socket to fstrm_capture.
#   log       the query log in mode "all" to a JSON-lines file.
# Usage: benches/on-off.sh FEATURE [allowed|blocked|mixed]   (ROUNDS=4 RATE=20000 DURATION=10;
# NOBUILD=1 keeps target/release/cordon as it is; METRICS=regex prints those metrics after each
# run, e.g. METRICS=trail_ with RATE=200000 for the drops at saturation).
# Needs what cpu-per-query.sh needs (dnsperf, nsd); dnstap: fstrm_capture (fstrm-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
FEATURE=${1:?tripwire, trail, trail-share, dnstap or log}; WORKLOAD=${2:-mixed}; ROUNDS=${ROUNDS:-4}
[ -n "${NOBUILD:-}" ] || cargo build --release
work=$(mktemp -d)
collector=
trap '[ -z "$collector" ] || kill "$collector" 2>/dev/null; rm -rf "$work"' EXIT
policies=$work/policies; mkdir -p "$policies"
cp -r policies/. "$policies/"
off='[[identity.static]]\ncidr = "127.0.0.1/32"\ndevice = "BENCH-MAC"\n'
case $FEATURE in
  tripwire)
    printf '%s\n' 'tripwire_categories = ["cryptomining", "dns_tunneling"]' \
      'tripwire = ["beacon.incident.example"]' >> "$policies/standard.toml"
    on="$off[tripwire]\nenabled = true\n" ;;
  trail|trail-share)
    if [ "$FEATURE" = trail-share ]; then
      export SHARE=127.0.0.3:10
      off='[[identity.static]]\ncidr = "127.0.0.3/32"\ndevice = "BENCH-MAC"\n'
    fi
    sed -i '0,/^devices = \[\]/s//devices = ["BENCH-MAC"]/' "$policies/groups.toml"
    sed -i 's/^allow = \[/allow = [ "*.bench.test",/' "$policies/isolation.toml"
    on=$off; off="$off[trail]\nenabled = false\n" ;;
  dnstap)
    # The collector is another program (usually on another machine): on the load generator's core.
    taskset -c 1 fstrm_capture -t protobuf:dnstap.Dnstap -u "$work/dnstap.sock" -w /dev/null &
    collector=$!; sleep 0.5
    on="$off[query_log]\nmode = \"all\"\noutput = \"dnstap\"\n[query_log.dnstap]\nunix = \"$work/dnstap.sock\"\n" ;;
  log)
    on="$off[query_log]\nmode = \"all\"\noutput = \"file\"\nfile = \"$work/queries.jsonl\"\n" ;;
  *) echo "unknown feature $FEATURE" >&2; exit 2 ;;
esac
run() {  # CONFIG_EXTRA -> µs per query (and the metrics asked for, on stderr)
  CONFIG_EXTRA=$1 POLICIES=$policies benches/cpu-per-query.sh "$WORKLOAD" > "$work/out"
  [ -z "${METRICS:-}" ] || grep -E "^cordon_($METRICS)" "$work/out" | sed 's/^/    /' >&2
  awk '/of server CPU per query/{print $(NF-6)}' "$work/out"
}
declare -a offs ons
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then offs+=("$(run "$off")"); ons+=("$(run "$on")");
  else ons+=("$(run "$on")"); offs+=("$(run "$off")"); fi
  echo "round $r: off ${offs[-1]} µs, on ${ons[-1]} µs" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{print lo "–" hi}'; }
m_off=$(median "${offs[@]}"); m_on=$(median "${ons[@]}")
echo "| feature | workload | rounds | off, µs/query | on | on ÷ off |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
printf '| %s | %s | %d | %.2f (%s) | %.2f (%s) | %.2f |\n' "$FEATURE" "$WORKLOAD" "$ROUNDS" "$m_off" \
  "$(range "${offs[@]}")" "$m_on" "$(range "${ons[@]}")" "$(echo "$m_on $m_off" | awk '{print $1/$2}')"
