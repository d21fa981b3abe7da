#!/usr/bin/env python3
"""Webhook-to-enforcement latency: from the start of the Jamf webhook POST until a query from the
device's bound address is answered under the new group. Loopback only.

usage: webhook_latency.py HTTP_PORT DNS_PORT TOKEN FIXTURES_DIR [ROUNDS]
Prints p50/p99 (ms) for isolating (added -> NXDOMAIN) and releasing (removed -> NOERROR)."""
import json, random, socket, struct, sys, time, urllib.request

http_port, dns_port, token, fixtures = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 200
MAC = "127.0.0.50"

def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/webhooks/jamf", data=body.encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.status

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((MAC, 0))
sock.settimeout(2)

def rcode(name="a1.bench.test"):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    sock.sendto(q, ("127.0.0.1", dns_port))
    while True:
        data, _ = sock.recvfrom(4096)
        if struct.unpack(">H", data[:2])[0] == qid:
            return data[3] & 0xF

def load(name):
    with open(f"{fixtures}/{name}") as f:
        return f.read()

checkin = load("computer-checkin.json").replace('"reportedIpAddress":"10.20.30.142"', f'"reportedIpAddress":"{MAC}"')
added, removed = load("smart-group-computer-added.json"), load("smart-group-computer-removed.json")
post(checkin)
post(removed)

def measure(body, want):
    t0 = time.perf_counter()
    post(body)
    polls = 0
    while rcode() != want:
        polls += 1
    return (time.perf_counter() - t0) * 1000, polls

iso, rel, late = [], [], 0
for _ in range(rounds):
    ms, polls = measure(added, 3); iso.append(ms); late += polls
    ms, polls = measure(removed, 0); rel.append(ms); late += polls

def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]

print(json.dumps({
    "rounds": rounds,
    "isolate_ms": {"p50": round(pct(iso, .5), 2), "p99": round(pct(iso, .99), 2), "max": round(max(iso), 2)},
    "release_ms": {"p50": round(pct(rel, .5), 2), "p99": round(pct(rel, .99), 2), "max": round(max(rel), 2)},
    "queries_answered_under_the_old_group_after_a_2xx": late,
}))
