#!/usr/bin/env bash
# The test command: formatting, lints, unit and integration tests, then the shell checks
# against the built binary, the offline checks of deploy/ (tests/deploy-check.sh: Kubernetes
# manifests, dashboard, alerts), then a short run of every fuzz target (tests/fuzz-smoke.sh, on
# the nightly toolchain). Needs dig, promtool, nsd, kubectl, PostgreSQL's server (the replica
# tests run initdb into a temporary folder) and Python's kubernetes-validate (.ci/run installs
# them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
bash tests/acceptance.sh target/debug/cordon
bash tests/deploy-check.sh target/debug/cordon
bash tests/fuzz-smoke.sh
