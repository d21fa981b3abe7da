#!/usr/bin/env bash
# The tripwires' cost on the query path: server CPU per answered query with `[tripwire]` off
# and on, the same build and policies, alternated (off first in odd rounds), through
# benches/cpu-per-query.sh. The load comes from 127.0.0.1, bound to one device by
# `identity.static` in both, so that every query is an identified device's and, with tripwires
# on, is checked: the default group's policy names tripwire categories (a lookup of the name)
# and a tripwire list (a rule lookup) that the workload never hits, the cost every query pays.
# Usage: benches/tripwire-cost.sh [allowed|blocked|mixed]   (ROUNDS=4 RATE=20000 DURATION=10;
# NOBUILD=1 keeps target/release/cordon as it is).
# Needs what cpu-per-query.sh needs (dnsperf, nsd).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:-mixed}; ROUNDS=${ROUNDS:-4}
[ -n "${NOBUILD:-}" ] || cargo build --release
policies=$(mktemp -d)
trap 'rm -rf "$policies"' EXIT
cp -r policies/. "$policies/"
printf '%s\n' 'tripwire_categories = ["cryptomining", "dns_tunneling"]' \
  'tripwire = ["beacon.incident.example"]' >> "$policies/standard.toml"
bound='[[identity.static]]\ncidr = "127.0.0.1/32"\ndevice = "BENCH-MAC"\n'
run() {  # off|on -> µs per query
  local extra=$bound
  [ "$1" = on ] && extra="$extra[tripwire]\nenabled = true\n"
  CONFIG_EXTRA=$extra POLICIES=$policies benches/cpu-per-query.sh "$WORKLOAD" |
    awk '/of server CPU per query/{print $(NF-6)}'
}
declare -a off on
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then off+=("$(run off)"); on+=("$(run on)");
  else on+=("$(run on)"); off+=("$(run off)"); fi
  echo "round $r: off ${off[-1]} µs, on ${on[-1]} µs" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{print lo "–" hi}'; }
m_off=$(median "${off[@]}"); m_on=$(median "${on[@]}")
echo "| workload | rounds | tripwires off, µs/query | tripwires on | on ÷ off |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '| %s | %d | %.2f (%s) | %.2f (%s) | %.2f |\n' "$WORKLOAD" "$ROUNDS" "$m_off" "$(range "${off[@]}")" \
  "$m_on" "$(range "${on[@]}")" "$(echo "$m_on $m_off" | awk '{print $1/$2}')"
