#!/usr/bin/env bash
# Three Cordon nodes sharing one PostgreSQL store, loopback only:
#   1. join: DEVICES Macs (1M by default) written into the store's tables, then each node started
#      and timed from exec to /readyz (a node joining a fleet of that size);
#   2. webhook-to-enforcement on the other nodes: Jamf webhooks posted to node 1, nodes 2 and 3
#      asked from the Mac's address until each enforces (benches/webhook_latency.py), while
#      dnsperf sends QPS (20k) of other queries to nodes 2 and 3;
#   3. churn: closed-loop dnsperf against node 2, quiet and then while CHURN (1,100) check-ins a
#      second, each moving a Mac's binding, are posted to node 1 (benches/checkin_churn.py).
# Needs: apt-get install -y dnsperf nsd postgresql; the harness's data set (made on first use).
# Runs PostgreSQL as the `postgres` user when run as root. Nothing is pinned: 3 nodes, PostgreSQL,
# the load and the probes share the machine's cores, as they would a small VM.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DEVICES=${DEVICES:-1000000}; QPS=${QPS:-20000}; ROUNDS=${ROUNDS:-200}
CHURN=${CHURN:-1100}; DURATION=${DURATION:-20}; PG_PORT=${PG_PORT:-5433}
FIX=$ROOT/tests/fixtures/jamf
bench_start

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_DIR=$W/pg
mkdir "$PG_DIR"
AS_PG=()
if [ "$(id -u)" = 0 ]; then
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups)
  chmod 755 "$W"; chown postgres "$PG_DIR"
fi
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U cordon -A trust -E UTF8 > /dev/null
"${AS_PG[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -k "$PG_DIR" -c listen_addresses=127.0.0.1 \
  -c shared_buffers=512MB 2> "$W/postgres.log" &
PG_PID=$!
# Immediate shutdown on exit: a smart one would wait for the nodes' connections.
trap 'kill -QUIT $PG_PID 2>/dev/null; for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
      stop_auth; wait $PG_PID 2>/dev/null; rm -rf "$W"' EXIT
until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
  kill -0 $PG_PID 2>/dev/null || { cat "$W/postgres.log"; exit 1; }
  sleep 0.1
done
psql() { command psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U cordon "$@"; }
psql -d postgres -c "CREATE DATABASE cordon"
URL="postgres://cordon@127.0.0.1:$PG_PORT/cordon?sslmode=disable"

# node N: DNS on 5310+N, HTTP on 9160+N. Sets READY to the seconds from exec to /readyz 200.
declare -A NODE
node_start() {
  local n=$1 dns=$((5310 + $1)) http=$((9160 + $1))
  cat > "$W/node$n.toml" <<CONF
[dns]
listen = ["127.0.0.1:$dns"]
rrl_responses_per_second = 0
[upstream]
servers = ["udp://$AUTH_ADDR:$AUTH_PORT"]
[http]
listen = "127.0.0.1:$http"
[store]
url = "$URL"
node = "node$n"
[policies]
dir = "$ROOT/policies"
[auth]
webhook_tokens = ["bench-token"]
CONF
  local t0; t0=$(date +%s%N)
  target/release/cordon run --config "$W/node$n.toml" > /dev/null 2> "$W/node$n.log" &
  NODE[$n]=$!
  BG_PIDS+=("$!")
  until curl -sf "http://127.0.0.1:$http/readyz" > /dev/null; do
    kill -0 "${NODE[$n]}" || { cat "$W/node$n.log"; exit 1; }
    sleep 0.02
  done
  READY=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN{printf "%.2f", (b - a) / 1e9}')
}
# cpu_s PID...: CPU seconds (user + system) of each PID and its children, summed.
cpu_s() {
  local p ticks=0
  for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t / hz}'
}
metric() { curl -s "http://127.0.0.1:$((9160 + $1))/metrics" | awk -v m="$2" '$1 == m {print $2}'; }

echo "== 1. join: $DEVICES devices in the store"
node_start 1  # creates the schema
kill "${NODE[1]}"; wait "${NODE[1]}" 2>/dev/null || true
t0=$(date +%s)
psql -d cordon <<SQL
INSERT INTO devices (id, label) SELECT g, 'MAC-' || g FROM generate_series(1, $DEVICES) g;
INSERT INTO aliases (kind, value, device)
  SELECT 'jamf-computer', g::text, g FROM generate_series(1, $DEVICES) g
  UNION ALL SELECT 'serial', 'c02churn' || lpad(g::text, 7, '0'), g FROM generate_series(1, $DEVICES) g
  UNION ALL SELECT 'udid', 'churn-' || lpad(g::text, 10, '0'), g FROM generate_series(1, $DEVICES) g
  UNION ALL SELECT 'mac', '02:00:00:' || lpad(to_hex((g >> 16) & 255), 2, '0') || ':'
      || lpad(to_hex((g >> 8) & 255), 2, '0') || ':' || lpad(to_hex(g & 255), 2, '0'), g
    FROM generate_series(1, $DEVICES) g;
INSERT INTO bindings (addr, device, seen)
  SELECT '10.' || (64 + ((g % 4194304) >> 16)) || '.' || (((g % 4194304) >> 8) & 255) || '.' || ((g % 4194304) & 255),
         g, extract(epoch FROM now())::bigint
  FROM generate_series(1, $DEVICES) g;
INSERT INTO memberships (device, uem_group)
  SELECT g, 'jamf:computer-group:42' FROM generate_series(1, $DEVICES, 100) g;
SQL
# Now, not during the measurements: autovacuum would otherwise visit the new rows then.
psql -d cordon -c "VACUUM (FREEZE, ANALYZE)"
echo "written in $(( $(date +%s) - t0 )) s"
for n in 1 2 3; do
  node_start $n
  printf 'node %s ready in %s s, RSS %s MiB\n' "$n" "$READY" "$(( $(rss_kb "${NODE[$n]}") / 1024 ))"
done

echo "== 2. webhook on node 1, enforcement on nodes 2 and 3, $QPS qps of other queries on them"
for n in 2 3; do
  dnsperf -s 127.0.0.1 -p $((5310 + n)) -d "$DATA/mixed.txt" -Q $((QPS / 2)) -l 600 -c 10 \
    > "$W/dnsperf$n.txt" 2>&1 &
  eval "DNSPERF$n=$!"; BG_PIDS+=("$!")
done
sleep 2
python3 benches/webhook_latency.py 9161 5312,5313 bench-token "$FIX" "$ROUNDS"
for n in 2 3; do
  eval "kill -INT \$DNSPERF$n; wait \$DNSPERF$n 2>/dev/null || true"
  printf 'node %s: ' "$n"; grep -E "Queries per second" "$W/dnsperf$n.txt" | xargs
done

RUNS=0
churn() {  # churn SECONDS: check-ins to node 1 in the background; CHURNER is its pid
  RUNS=$((RUNS + 1))
  python3 benches/checkin_churn.py 9161 bench-token "$FIX" "$CHURN" "$1" "$DEVICES" "$RUNS" \
    > "$W/churn.json" &
  CHURNER=$!; BG_PIDS+=("$CHURNER")
}
echo "== 3. node 2 at $QPS qps, quiet and during $CHURN check-ins/s posted to node 1"
fixed() { dnsperf -s 127.0.0.1 -p 5312 -d "$DATA/mixed.txt" -Q "$QPS" -l "$DURATION" -c 20 2>&1 \
  | awk '/Queries completed:/{c=$3} /Queries lost:/{l=$3} /Queries per second:/{q=$4}
         /Average Latency/{a=$4; m=$8} END{printf "%.0f qps, %s lost, latency avg %.3f ms max %.3f ms", q, l, a*1000, m*1000}'; }
echo "quiet  $(fixed)"
churn $((DURATION + 4)); sleep 2
echo "churn  $(fixed)"
wait $CHURNER; echo "check-ins $(cat "$W/churn.json")"

echo "== 4. DNS throughput on node 2, quiet and during $CHURN check-ins/s posted to node 1"
qps() { dnsperf -s 127.0.0.1 -p 5312 -d "$DATA/mixed.txt" -l "$DURATION" -c 20 -q 500 2>&1 \
  | awk '/Queries per second:/{printf "%.0f", $4}'; }
dnsperf -s 127.0.0.1 -p 5312 -d "$DATA/allowed.txt" -n 1 -q 100 > /dev/null 2>&1
quiet=$(qps)
position=$(psql -d cordon -tAc "SELECT COALESCE(MAX(id), 0) FROM changes")
declare -A CPU0
for k in 1 2 3; do CPU0[$k]=$(cpu_s "${NODE[$k]}"); done; CPU0[pg]=$(cpu_s "$PG_PID")
churn $((DURATION + 4))
sleep 2
busy=$(qps)
wait $CHURNER
cpu_line=""
for k in 1 2 3 pg; do
  pid=$([ $k = pg ] && echo "$PG_PID" || echo "${NODE[$k]}")
  cpu_line+="$( [ $k = pg ] && echo postgres || echo "node $k") $(awk -v a="$(cpu_s "$pid")" -v b="${CPU0[$k]}" 'BEGIN{printf "%.1f", a - b}') s; "
done
logged=$(psql -d cordon -tAc "SELECT COUNT(*) FROM changes WHERE id > $position")
printf 'quiet\t%s qps\nchurn\t%s qps\nratio\t%s\n' "$quiet" "$busy" \
  "$(awk -v a="$busy" -v b="$quiet" 'BEGIN{printf "%.3f", a/b}')"
printf 'CPU during the churn run (%s s; node 2 also answered dnsperf): %s\n' "$((DURATION + 4))" "$cpu_line"
printf 'check-ins\t%s\nchanges logged\t%s in %s s (%s/s)\n' "$(cat "$W/churn.json")" "$logged" \
  "$((DURATION + 4))" "$(awk -v a="$logged" -v b="$((DURATION + 4))" 'BEGIN{printf "%.0f", a/b}')"
for n in 2 3; do
  printf 'node %s: replication delay mean %s ms over %s publishes; lag %s s; position %s\n' "$n" \
    "$(awk -v s="$(metric $n cordon_replication_delay_seconds_sum)" -v c="$(metric $n cordon_replication_delay_seconds_count)" \
       'BEGIN{printf "%.1f", c ? 1000 * s / c : 0}')" "$(metric $n cordon_replication_delay_seconds_count)" \
    "$(metric $n cordon_replication_lag_seconds)" \
    "$(psql -d cordon -tAc "SELECT position FROM nodes WHERE name = 'node$n'")"
done
