#!/usr/bin/env python3
"""Checks of deploy/ that need no cluster, run by tests/deploy-check.sh.

  check.py manifests NAME RENDERED.yaml     every object of a `kubectl kustomize` rendering
  check.py config RENDERED.yaml OUTDIR      cordon.toml + secrets.toml + policies, ready for `cordon check`
  check.py dashboard deploy/grafana/cordon.json RULES.yml   (RULES.yml: its queries, for promtool)
  check.py rule-metrics deploy/prometheus/alerts.yml

Each prints what it checked and exits 1 with every problem it found.
"""

import base64
import json
import os
import re
import sys
import tomllib
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# The oldest Kubernetes the manifests are for (a LoadBalancer with UDP and TCP ports needs
# 1.26) and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.26.0", kubernetes_validate.latest_version()]
# Metrics the replicas work adds; every other name must be registered in src/metrics.rs.
NEW_METRICS = {
    "cordon_replication_delay_seconds",
    "cordon_replication_lag_seconds",
    "cordon_store_up",
    "cordon_leader",
}
# Made outside kustomize: the certificate (cert-manager or `kubectl create secret tls`).
EXTERNAL_SECRETS = {"cordon-tls"}

problems = []


def fail(msg):
    problems.append(msg)


def finish(what):
    if problems:
        for p in problems:
            print(f"FAIL {what}: {p}", file=sys.stderr)
        sys.exit(1)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kn(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield d, d["spec"]["template"]


def containers(spec):
    return spec.get("containers", []) + spec.get("initContainers", [])


def secret_data(docs, prefix):
    """The decoded data of the one generated Secret whose name starts with `prefix-`."""
    found = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith(prefix + "-")]
    if len(found) != 1:
        fail(f"expected one Secret {prefix}-<hash>, found {[kn(d) for d in found]}")
        return {}
    return {k: base64.b64decode(v).decode() for k, v in found[0].get("data", {}).items()}


def config_map(docs, prefix):
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix + "-")]
    if len(found) != 1:
        fail(f"expected one ConfigMap {prefix}-<hash>, found {[kn(d) for d in found]}")
        return {}
    return found[0].get("data", {})


def check_schemas(docs):
    sm_schema = json.load(open(os.path.join(HERE, "servicemonitor.schema.json")))
    for d in docs:
        if d.get("apiVersion") == "monitoring.coreos.com/v1":
            # A CRD: the API server has no built-in schema for it; ours is a strict subset.
            for e in jsonschema.Draft7Validator(sm_schema).iter_errors(d):
                fail(f"{kn(d)}: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}")
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                # The first error of this object (kubernetes-validate stops there).
                path = ".".join(map(str, e.absolute_path)) or "(top)"
                fail(f"{kn(d)} (Kubernetes {version}): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                fail(f"{kn(d)}: no schema for {d.get('apiVersion')} {d.get('kind')} in Kubernetes {version}: {e}")
            except kubernetes_validate.InvalidSchemaError as e:
                fail(f"{kn(d)}: invalid schema in Kubernetes {version}: {e}")


def check_references(docs):
    """Names that the API server does not check: what a pod mounts, what a Service selects."""
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for owner, tpl in pod_templates(docs):
        spec = tpl["spec"]
        labels = tpl["metadata"].get("labels", {})
        if not matches(owner["spec"]["selector"].get("matchLabels"), labels):
            fail(f"{kn(owner)}: its selector does not match its pod template's labels")
        for v in spec.get("volumes", []):
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
                fail(f"{kn(owner)}: volume {v['name']} names ConfigMap {v['configMap']['name']}, not in the rendering")
            if "secret" in v:
                s = v["secret"]["secretName"]
                if s in EXTERNAL_SECRETS:
                    print(f"  note: {kn(owner)} mounts Secret {s}, made outside kustomize (your certificate)")
                elif ("Secret", s) not in names:
                    fail(f"{kn(owner)}: volume {v['name']} names Secret {s}, not in the rendering")
        vols = {v["name"] for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in owner["spec"].get("volumeClaimTemplates", [])}
        for c in containers(spec):
            ports = {p.get("name") for p in c.get("ports", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols | claims:
                    fail(f"{kn(owner)}: container {c['name']} mounts {m['name']}, which is no volume")
            for ef in c.get("envFrom", []):
                ref = ef.get("secretRef") or ef.get("configMapRef")
                kind = "Secret" if "secretRef" in ef else "ConfigMap"
                if (kind, ref["name"]) not in names:
                    fail(f"{kn(owner)}: container {c['name']} takes env from {kind} {ref['name']}, not in the rendering")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                p = c.get(probe, {})
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    fail(f"{kn(owner)}: {c['name']}.{probe} uses port {port!r}, which the container does not name")
        aff = spec.get("affinity", {}).get("podAntiAffinity", {})
        for term in aff.get("requiredDuringSchedulingIgnoredDuringExecution", []):
            if not matches(term["labelSelector"].get("matchLabels"), labels):
                fail(f"{kn(owner)}: its podAntiAffinity selector does not match its own pods")

    for svc in (d for d in docs if d["kind"] == "Service"):
        targets = [t for _, t in pod_templates(docs) if matches(svc["spec"].get("selector"), t["metadata"].get("labels", {}))]
        if not targets:
            fail(f"{kn(svc)}: its selector matches no pod template")
            continue
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort", port["port"])
            proto = port.get("protocol", "TCP")
            for t in targets:
                cports = [p for c in t["spec"]["containers"] for p in c.get("ports", [])]
                ok = any(
                    (p.get("name") == tp if isinstance(tp, str) else p["containerPort"] == tp)
                    and p.get("protocol", "TCP") == proto
                    for p in cports
                )
                if not ok:
                    fail(f"{kn(svc)}: port {port.get('name')} targets {tp}/{proto}, which its pods do not open")

    for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        if not any(matches(pdb["spec"]["selector"].get("matchLabels"), t["metadata"].get("labels", {})) for _, t in pod_templates(docs)):
            fail(f"{kn(pdb)}: its selector matches no pod template")

    for sm in (d for d in docs if d["kind"] == "ServiceMonitor"):
        svcs = [s for s in docs if s["kind"] == "Service" and matches(sm["spec"]["selector"].get("matchLabels"), s["metadata"].get("labels", {}))]
        if not svcs:
            fail(f"{kn(sm)}: its selector matches no Service's labels")
        for ep in sm["spec"]["endpoints"]:
            if not any(ep.get("port") in {p.get("name") for p in s["spec"]["ports"]} for s in svcs):
                fail(f"{kn(sm)}: endpoint port {ep.get('port')!r} is not a port of the Services it selects")


def check_cordon(docs, name):
    """What docs/kubernetes.md promises of the Cordon Deployment."""
    deps = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cordon"]
    if len(deps) != 1:
        fail("no Deployment cordon")
        return
    dep = deps[0]
    spec = dep["spec"]["template"]["spec"]
    if dep["spec"].get("replicas") != 3:
        fail(f"Deployment cordon: replicas {dep['spec'].get('replicas')!r}, not 3")
    terms = spec.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" for t in terms):
        fail("Deployment cordon: no required podAntiAffinity across nodes (kubernetes.io/hostname)")
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail("Deployment cordon: the pod's securityContext lacks runAsNonRoot or seccompProfile RuntimeDefault")
    for c in containers(spec):
        sc = c.get("securityContext", {})
        caps = sc.get("capabilities", {})
        want_add = ["NET_BIND_SERVICE"] if c["name"] == "cordon" else []
        if not (
            sc.get("runAsNonRoot") is True
            and sc.get("readOnlyRootFilesystem") is True
            and sc.get("allowPrivilegeEscalation") is False
            and caps.get("drop") == ["ALL"]
            and caps.get("add", []) == want_add
            and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        ):
            fail(f"Deployment cordon: container {c['name']}'s securityContext is not the restricted one (drop ALL, add {want_add or 'nothing'})")
    main = next((c for c in spec["containers"] if c["name"] == "cordon"), None)
    if not main:
        fail("Deployment cordon: no container cordon")
        return
    mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    # The image's entrypoint is `cordon run --config /etc/cordon/cordon.toml`: `args` would be
    # appended to it, so the container must set `command`, with the config the init container
    # writes into the shared emptyDir.
    cmd = main.get("command", [])
    init = " ".join(" ".join(c.get("command", []) + c.get("args", [])) for c in spec.get("initContainers", []))
    if "--config" not in cmd[:-1]:
        fail("Deployment cordon: container cordon sets no `command` with --config (args alone would follow the image's entrypoint)")
    else:
        config_path = cmd[cmd.index("--config") + 1]
        run_vol = vols.get(mounts.get(os.path.dirname(config_path), ""), {})
        if "emptyDir" not in run_vol:
            fail(f"Deployment cordon: --config {config_path} is not on an emptyDir shared with the init container")
        if f"> {config_path}" not in init:
            fail(f"Deployment cordon: no init container writes {config_path}")
    if main.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        fail("Deployment cordon: readinessProbe is not HTTP /readyz")
    if main.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        fail("Deployment cordon: livenessProbe is not HTTP /healthz")
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    if not any(p["spec"].get("minAvailable") == 2 for p in pdbs):
        fail("no PodDisruptionBudget with minAvailable 2")
    svc_ports = {(p["port"], p.get("protocol", "TCP")) for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]}
    for want in [(53, "UDP"), (53, "TCP"), (853, "TCP"), (853, "UDP"), (443, "TCP"), (9153, "TCP")]:
        if want not in svc_ports:
            fail(f"no Service port {want[0]}/{want[1]}")

    # The config the pod assembles must point where the pod mounts things.
    conf_text = config_map(docs, "cordon-config").get("cordon.toml", "")
    try:
        conf = tomllib.loads(conf_text)
    except tomllib.TOMLDecodeError as e:
        fail(f"cordon.toml in ConfigMap cordon-config: {e}")
        return
    def volume_at(path):
        d = os.path.dirname(path)
        return vols.get(mounts.get(d, ""), {})

    url_file = conf.get("store", {}).get("url_file", "")
    v = volume_at(url_file)
    if not v.get("secret", {}).get("secretName", "").startswith("cordon-store-"):
        fail(f"[store] url_file {url_file!r} is not in the mounted Secret cordon-store")
    elif os.path.basename(url_file) not in secret_data(docs, "cordon-store"):
        fail(f"[store] url_file {url_file!r}: Secret cordon-store has no key {os.path.basename(url_file)!r}")
    pol = conf.get("policies", {}).get("dir", "")
    if not vols.get(mounts.get(pol, ""), {}).get("configMap", {}).get("name", "").startswith("cordon-policies-"):
        fail(f"[policies] dir {pol!r} is not where ConfigMap cordon-policies is mounted")
    for key in ("tls_cert", "tls_key"):
        p = conf.get("dns", {}).get(key, "")
        if volume_at(p).get("secret", {}).get("secretName") != "cordon-tls":
            fail(f"dns.{key} {p!r} is not in the mounted Secret cordon-tls")
    ports = {(p["containerPort"], p.get("protocol", "TCP")) for p in main["ports"]}
    wanted = []
    for a in conf.get("dns", {}).get("listen", []):
        wanted += [(a, "UDP"), (a, "TCP")]
    wanted += [(a, "TCP") for a in conf.get("dns", {}).get("tls_listen", []) + conf.get("dns", {}).get("https_listen", [])]
    wanted += [(a, "UDP") for a in conf.get("dns", {}).get("quic_listen", [])]
    wanted.append((conf.get("http", {}).get("listen", ""), "TCP"))
    for addr, proto in wanted:
        port = int(addr.rsplit(":", 1)[1]) if ":" in addr else None
        if (port, proto) not in ports:
            fail(f"cordon.toml listens on {addr} ({proto}), which the container does not open")
    for table in ("auth", "jamf"):
        if table in conf:
            fail(f"cordon.toml in the ConfigMap holds [{table}]: its secrets belong in the Secret cordon-auth")
    secrets = secret_data(docs, "cordon-auth").get("secrets.toml", "")
    try:
        tomllib.loads(conf_text + secrets)  # as `cat` joins them
    except tomllib.TOMLDecodeError as e:
        fail(f"cordon.toml + secrets.toml, as the init container joins them: {e}")

    if name == "base":
        # The base's Secrets are placeholders and must say so.
        for prefix in ("cordon-auth", "cordon-store"):
            for key, value in secret_data(docs, prefix).items():
                if "REPLACE-ME" not in value:
                    fail(f"Secret {prefix} key {key} in the base holds no REPLACE-ME placeholder")
    else:
        check_postgres(docs)


def check_postgres(docs):
    """The overlay's store URL names its PostgreSQL: Service, port, user, password, database."""
    url = urlsplit(secret_data(docs, "cordon-store").get("store-url", "").strip())
    pg = secret_data(docs, "cordon-postgres")
    if url.scheme not in ("postgres", "postgresql"):
        fail(f"store-url scheme {url.scheme!r} is not postgres")
    svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    svc = svcs.get(url.hostname or "")
    if not svc:
        fail(f"store-url host {url.hostname!r} is no Service of the rendering")
    elif url.port not in {p["port"] for p in svc["spec"]["ports"]}:
        fail(f"store-url port {url.port} is not a port of Service {url.hostname}")
    for field, key in ((url.username, "POSTGRES_USER"), (url.password, "POSTGRES_PASSWORD"), (url.path.lstrip("/"), "POSTGRES_DB")):
        if field != pg.get(key):
            fail(f"store-url's {key.split('_')[1].lower()} {field!r} is not the Secret cordon-postgres's {key} {pg.get(key)!r}")
    sts = [d for d in docs if d["kind"] == "StatefulSet"]
    if not any(s["spec"].get("replicas") == 1 and s["spec"].get("volumeClaimTemplates") for s in sts):
        fail("no StatefulSet of one replica with a volumeClaimTemplate")


def cmd_manifests(name, path):
    docs = load_docs(path)
    if not docs:
        fail(f"{path}: the rendering is empty")
    check_schemas(docs)
    check_references(docs)
    check_cordon(docs, name)
    finish(name)
    kinds = sorted({d["kind"] for d in docs})
    print(f"  {name}: {len(docs)} objects ({', '.join(kinds)}) valid against Kubernetes {' and '.join(K8S_VERSIONS)} (ServiceMonitor against tests/deploy/servicemonitor.schema.json); references, selectors, ports and config paths agree")


def cmd_config(path, out):
    """Writes OUT/cordon.toml and OUT/policies/ as the pod would see them, for `cordon check`."""
    docs = load_docs(path)
    conf = config_map(docs, "cordon-config").get("cordon.toml", "")
    secrets = secret_data(docs, "cordon-auth").get("secrets.toml", "")
    policies = config_map(docs, "cordon-policies")
    finish("config")
    os.makedirs(os.path.join(out, "policies"), exist_ok=True)
    for key, text in policies.items():
        with open(os.path.join(out, "policies", key), "w") as f:
            f.write(text)
    text = conf + secrets  # as the init container's `cat` joins them
    text = re.sub(r'(?m)^dir = "/etc/cordon/policies"', f'dir = "{out}/policies"', text)
    text = re.sub(r'(?m)^tls_cert = .*', f'tls_cert = "{out}/tls.crt"', text)
    text = re.sub(r'(?m)^tls_key = .*', f'tls_key = "{out}/tls.key"', text)
    # The Secret's database URL, where the pod would find it: `cordon check` parses it.
    with open(os.path.join(out, "store-url"), "w") as f:
        f.write(secret_data(docs, "cordon-store").get("store-url", ""))
    text = re.sub(r'(?m)^url_file = .*', f'url_file = "{out}/store-url"', text)
    with open(os.path.join(out, "cordon.toml"), "w") as f:
        f.write(text)
    print(f"  config: cordon.toml + secrets.toml, the store URL and {len(policies)} policy files written to {out} (TLS by a throwaway certificate)")


def known_metrics():
    src = open(os.path.join(ROOT, "src", "metrics.rs")).read()
    return set(re.findall(r'"(cordon_[a-z0-9_]+)"', src)) | NEW_METRICS


def unknown_names(expr, known):
    bad = []
    for m in re.findall(r"\bcordon_[a-z0-9_]+", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in known and base not in known:
            bad.append(m)
    return bad


# Grafana's variables, replaced by plain values so that promtool can parse each query.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*", "$isolation_group": "restricted"}


def cmd_dashboard(path, rules_out):
    try:
        dash = json.load(open(path))
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON: {e}")
        finish("dashboard")
    known = known_metrics()
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
        fail("no datasource variable DS_PROMETHEUS")
    panels = []
    for p in dash.get("panels", []):
        panels += [p] + p.get("panels", [])
    exprs = 0
    for p in panels:
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            fail(f"panel {p.get('title')!r}: datasource is not ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            fail(f"panel {p.get('title')!r}: no query")
        for t in p.get("targets", []):
            exprs += 1
            if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                fail(f"panel {p.get('title')!r} query {t.get('refId')}: datasource is not ${{DS_PROMETHEUS}}")
            if not re.search(r"\bcordon_[a-z0-9_]+", t.get("expr", "")):
                fail(f"panel {p.get('title')!r} query {t.get('refId')}: no cordon_ metric in {t.get('expr')!r}")
            for bad in unknown_names(t.get("expr", ""), known):
                fail(f"panel {p.get('title')!r}: metric {bad} is neither in src/metrics.rs nor one of {sorted(NEW_METRICS)}")
    # Every query as a recording rule: `promtool check rules` then parses it as PromQL.
    rules = []
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                fail(f"panel {p.get('title')!r}: a Grafana variable the check does not know in {expr!r}")
            rules.append({"record": f"dashboard:panel{p.get('id')}:{t.get('refId')}", "expr": expr})
    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f)
    for v in variables.values():
        q = v.get("definition") or (v.get("query") if isinstance(v.get("query"), str) else "")
        for bad in unknown_names(q or "", known):
            fail(f"variable {v.get('name')}: metric {bad} is unknown")
    finish("dashboard")
    print(f"  dashboard: JSON, {len([p for p in panels if p.get('type') != 'row'])} panels, {exprs} queries on ${{DS_PROMETHEUS}}, every metric known (promtool parses them next)")


def cmd_rule_metrics(path):
    known = known_metrics()
    rules = [r for g in yaml.safe_load(open(path))["groups"] for r in g["rules"]]
    for r in rules:
        for bad in unknown_names(r["expr"], known):
            fail(f"rule {r.get('alert') or r.get('record')}: metric {bad} is unknown")
    finish("alerts")
    print(f"  alerts: {len(rules)} rules, every cordon_ metric known")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"manifests": cmd_manifests, "config": cmd_config, "dashboard": cmd_dashboard, "rule-metrics": cmd_rule_metrics}[cmd](*args)
