#!/usr/bin/env bash
# Offline checks of deploy/: the Kubernetes manifests, the Grafana dashboard, the Prometheus
# alerts. No cluster and no network: kubectl renders, nothing is applied.
#   tests/deploy-check.sh [path/to/cordon]          (default target/debug/cordon)
# Needs kubectl (Debian's kubernetes-client is enough), python3 with kubernetes-validate,
# promtool and openssl; .ci/run installs them. KUBECTL=/path/to/kubectl picks another kubectl.
# Fails, naming every problem, when anything is invalid.
set -euo pipefail
cd "$(dirname "$0")/.."
cordon=${1:-target/debug/cordon}
kubectl=${KUBECTL:-kubectl}
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for tool in "$kubectl" python3 promtool openssl; do
  command -v "$tool" >/dev/null || { echo "deploy-check: $tool is missing (.ci/run installs it)" >&2; exit 1; }
done
python3 -c 'import kubernetes_validate, jsonschema, yaml' \
  || { echo "deploy-check: python3 lacks kubernetes-validate (.ci/run installs it)" >&2; exit 1; }
[ -x "$cordon" ] || { echo "deploy-check: $cordon is missing: cargo build first" >&2; exit 1; }

echo "deploy-check: $("$kubectl" version --client 2>/dev/null | head -1)"
for dir in base overlays/try-postgres; do
  name=$(basename "$dir")
  echo "deploy-check: kubectl kustomize deploy/kubernetes/$dir"
  # kustomize's deprecation warnings (bases, commonLabels: kept for kubectl 1.20) go to stderr.
  "$kubectl" kustomize "deploy/kubernetes/$dir" >"$work/$name.yaml" 2>"$work/$name.err" || {
    cat "$work/$name.err" >&2; echo "deploy-check: FAIL: kustomize cannot render $dir" >&2; exit 1; }
  python3 tests/deploy/check.py manifests "$name" "$work/$name.yaml"
done

# The config and policies as the pod sees them, through `cordon check`.
python3 tests/deploy/check.py config "$work/base.yaml" "$work/pod"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=dns.example.com -keyout "$work/pod/tls.key" -out "$work/pod/tls.crt" 2>/dev/null
if ! "$cordon" check --config "$work/pod/cordon.toml" >"$work/check.out" 2>&1; then
  cat "$work/check.out" >&2
  echo "deploy-check: FAIL: cordon check rejects the config or policies of deploy/kubernetes/base" >&2
  exit 1
fi
echo "  cordon check: the ConfigMaps' config and policies pass ($(grep -c . "$work/check.out") lines of report)"

python3 tests/deploy/check.py dashboard deploy/grafana/cordon.json "$work/dashboard-queries.yml"
promtool check rules "$work/dashboard-queries.yml" >/dev/null \
  || { promtool check rules "$work/dashboard-queries.yml" >&2; echo "deploy-check: FAIL: a dashboard query is not PromQL" >&2; exit 1; }
echo "  dashboard: every query parses as PromQL (promtool)"
python3 tests/deploy/check.py rule-metrics deploy/prometheus/alerts.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts-test.yml
echo "deploy-check: passed in $(( $(date +%s) - start )) s"
