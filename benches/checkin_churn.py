#!/usr/bin/env python3
"""Check-in churn: ComputerCheckIn webhooks for a pool of Macs, each check-in from an address the
Mac did not have before (a change every time: the binding moves), at a fixed rate, from several
threads with kept-alive connections so that the writer can batch them. Loopback only. The Macs
are those benches/replicas.sh writes into the store (jamf id, serial, UDID, MAC and name match).

usage: checkin_churn.py HTTP_PORT TOKEN FIXTURES_DIR RATE SECONDS [POOL] [RUN]
RUN (1, 2, ...) numbers the run: each run's addresses differ from every earlier run's.
Prints JSON: check-ins sent per second, how many got 2xx, and the p50/p99 of their latency (ms)."""
import http.client, json, sys, threading, time

port, token, fixtures = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rate, seconds = float(sys.argv[4]), float(sys.argv[5])
pool = int(sys.argv[6]) if len(sys.argv) > 6 else 50000
run = int(sys.argv[7]) if len(sys.argv) > 7 else 1
THREADS = 24

with open(f"{fixtures}/computer-checkin.json") as f:
    template = f.read()


def body(n):
    mac, round_ = n % pool + 1, n // pool + 1000 * run
    # 10.64.0.0/10, as the store was filled: each round a Mac moves to an address it did not have.
    a = (mac + round_ * 7919) % (1 << 22)
    addr = f"10.{64 + (a >> 16)}.{(a >> 8) & 255}.{a & 255}"
    return (template.replace('"jssID":1042', f'"jssID":{mac}')
            .replace('"C02ZK1ABMD6T"', f'"C02CHURN{mac:07d}"')
            .replace('"5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B"', f'"CHURN-{mac:010d}"')
            .replace('"3C:22:FB:91:0A:42"', f'"02:00:00:{mac >> 16 & 255:02X}:{mac >> 8 & 255:02X}:{mac & 255:02X}"')
            .replace('"72:00:04:1B:9C:11"', '""')
            .replace('"FIN-MBP-0142"', f'"MAC-{mac}"')
            .replace('"10.20.30.142"', f'"{addr}"')).encode()


lock = threading.Lock()
latencies, ok, sent = [], [0], [0]
start = time.monotonic()


def worker(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = k
    while True:
        due = start + n / rate
        now = time.monotonic()
        if due - start > seconds:
            return
        if due > now:
            time.sleep(due - now)
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/webhooks/jamf", body(n),
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            status = r.status
        except Exception:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        with lock:
            sent[0] += 1
            latencies.append((time.perf_counter() - t0) * 1000)
            ok[0] += status == 200
        n += THREADS


threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
latencies.sort()
pct = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)
print(json.dumps({"sent_per_s": round(sent[0] / elapsed, 1), "ok": ok[0], "sent": sent[0],
                  "latency_ms": {"p50": pct(.5), "p99": pct(.99)}}))
