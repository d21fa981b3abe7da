#!/usr/bin/env bash
# End-to-end comparison with Unbound on this machine, in one run: builds the release binary and
# runs benches/harness/run-anchors.sh (dnsperf against Cordon and Unbound, server on core 0,
# dnsperf on core 1, an NSD upstream on 127.0.0.2; nothing leaves loopback). Results land in
# target/bench/out/anchors-*/results.md. Needs, once, as root:
#   apt-get install -y dnsperf unbound nsd tcpdump
# Knobs are run-anchors.sh's: BIG=0 skips the 1M-domain list, DURATION=N sets seconds per run;
# NOBUILD=1 keeps the release binary that is there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NOBUILD:-}" ] || cargo build --release
ANCHORS="unbound cordon" MODES=${MODES:-pinned} BIG=${BIG:-1} benches/harness/run-anchors.sh
