#!/usr/bin/env bash
# Resident memory of a real `cordon run` holding DEVICES devices (ALIASES aliases each, a bound
# address, one in a hundred in a restricted Jamf group) and DOMAINS listed domains: VmRSS and
# VmHWM once /readyz says ready. The store is made by Cordon itself (its schema), then filled
# by SQLite in one transaction. Loopback only; nothing is queried upstream.
# Needs: python3, curl, bc. DEVICES=1000000 DOMAINS=2000000 ALIASES=2 by default; ALIASES up to 5
# (jamf id, serial, UDID, management id, MAC, as a Jamf inventory reports them). NOBUILD=1 keeps
# the release binary that is there.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-1000000}; DOMAINS=${DOMAINS:-2000000}; ALIASES=${ALIASES:-2}
DNS_PORT=5318; HTTP_PORT=9169
W=${W:-target/bench/memory}
mkdir -p "$W/policies"
[ -n "${NOBUILD:-}" ] || cargo build --release
BIN=$PWD/target/release/cordon

cat > "$W/policies/categories.toml" <<EOF
[[category]]
id = 0
name = "malware"
lists = ["$PWD/$W/list.txt"]
EOF
cat > "$W/policies/groups.toml" <<'EOF'
default_group = "standard"
[[group]]
name = "restricted"
priority = 100
policy = "isolation"
uem_groups = ["jamf:computer-group:42"]
[[group]]
name = "standard"
policy = "standard"
EOF
echo 'block_categories = ["malware"]' > "$W/policies/standard.toml"
echo 'default = "block"' > "$W/policies/isolation.toml"
cat > "$W/cordon.toml" <<EOF
[dns]
listen = ["127.0.0.1:$DNS_PORT"]
rrl_responses_per_second = 0
[upstream]
servers = ["udp://127.0.0.1:9"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
[store]
path = "cordon.db"
[policies]
dir = "policies"
EOF

# The list: DOMAINS distinct names of 2-4 labels, made once per size.
if [ "$(cat "$W/list.size" 2>/dev/null)" != "$DOMAINS" ]; then
  python3 - "$DOMAINS" > "$W/list.txt" <<'PY'
import random, sys
rng, n, tlds = random.Random(7), int(sys.argv[1]), ["com", "net", "org", "io", "info", "xyz"]
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(4, 14))) for _ in range(n)]
for i, w in enumerate(words):
    name = f"{w}{i}.{tlds[i % len(tlds)]}"
    print(f"sub{i % 7}.{name}" if i % 3 == 0 else name)
PY
  echo "$DOMAINS" > "$W/list.size"
fi

wait_ready() {
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" > /dev/null && return 0
    kill -0 "$1" 2> /dev/null || { cat "$W/log"; exit 1; }
    sleep 0.1
  done
  echo "not ready" >&2; exit 1
}
run() { (cd "$W" && exec "$BIN" run --config cordon.toml 2> log) & PID=$!; wait_ready $PID; }

# The store: the schema from Cordon, the fleet from SQLite, made once per shape.
shape="$DEVICES $ALIASES"
if [ "$(cat "$W/store.shape" 2>/dev/null)" != "$shape" ]; then
  rm -f "$W"/cordon.db*
  run; kill $PID; wait $PID || true
  python3 - "$W/cordon.db" "$DEVICES" "$ALIASES" <<'PY'
import sqlite3, sys, time, uuid
path, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = int(time.time())  # seen now: a binding older than identity.binding_lifetime_s lapses at start
db = sqlite3.connect(path)
kinds = [("jamf-computer", lambda i: str(1000 + i)), ("serial", lambda i: f"c02{i:09}"),
         ("udid", lambda i: str(uuid.UUID(int=i * 7919 + 1))),
         ("management-id", lambda i: str(uuid.UUID(int=i * 104729 + 3))),
         ("mac", lambda i: ":".join(f"{(i * 2654435761 >> s) & 255:02x}" for s in range(0, 48, 8)))]
db.executemany("INSERT INTO devices (id, label) VALUES (?, ?)", ((i + 1, f"MAC-{i:07}") for i in range(n)))
for kind, value in kinds[:k]:
    db.executemany("INSERT INTO aliases (kind, value, device) VALUES (?, ?, ?)",
                   ((kind, value(i), i + 1) for i in range(n)))
db.executemany("INSERT INTO bindings (addr, device, seen) VALUES (?, ?, ?)",
               ((f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", i + 1, now) for i in range(n)))
db.executemany("INSERT INTO memberships (device, uem_group) VALUES (?, 'jamf:computer-group:42')",
               ((i + 1,) for i in range(0, n, 100)))
db.commit()
PY
  echo "$shape" > "$W/store.shape"
fi
# Every binding fresh, as the MDM keeps them: a store made yesterday would lapse them at start.
python3 -c 'import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1]); db.execute("UPDATE bindings SET seen = ?", (int(time.time()),)); db.commit()' "$W/cordon.db"

started=$(date +%s.%N)
run
ready=$(date +%s.%N)
status() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' /proc/$PID/status; }
rss=$(status VmRSS); hwm=$(status VmHWM); anon=$(status RssAnon); file=$(status RssFile)
kill $PID; wait $PID || true
printf 'devices\t%s (%s aliases each)\ndomains\t%s\nready in\t%.1f s\nVmRSS\t%d MiB (anonymous %d, files %d)\nVmHWM\t%d MiB\n' \
  "$DEVICES" "$ALIASES" "$DOMAINS" "$(echo "$ready - $started" | bc)" "$rss" "$anon" "$file" "$hwm"
