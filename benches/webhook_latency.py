#!/usr/bin/env python3
"""Webhook-to-enforcement latency: a Jamf webhook is posted to one node, and each node in
DNS_PORTS is asked from the device's bound address until it answers under the new group. Timed
from the start of the POST (the caller's view, commit included) and from the moment its 2xx
arrived (what contract 2 promises: zero on the node that answered; the replication delay on the
others). Loopback only.

usage: webhook_latency.py HTTP_PORT DNS_PORT[,DNS_PORT...] TOKEN FIXTURES_DIR [ROUNDS]
Prints JSON: per DNS port, p50/p99/max (ms) for isolating (added -> NXDOMAIN) and releasing
(removed -> NOERROR), from the POST and from the 2xx, and how many answers under the old group
the node gave after the 2xx."""
import json, random, socket, struct, sys, time, urllib.request

http_port, token, fixtures = int(sys.argv[1]), sys.argv[3], sys.argv[4]
dns_ports = [int(p) for p in sys.argv[2].split(",")]
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


def rcode(port, name="a1.bench.test"):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    sock.sendto(q, ("127.0.0.1", port))
    while True:
        try:
            data, _ = sock.recvfrom(4096)
        except socket.timeout:
            sock.sendto(q, ("127.0.0.1", port))
            continue
        if struct.unpack(">H", data[:2])[0] == qid:
            return data[3] & 0xF


def load(name):
    with open(f"{fixtures}/{name}") as f:
        return f.read()


def until(want, deadline=30):
    """Asks every node until each answers `want`: per port, (when, answers under the old group)."""
    t0 = time.perf_counter()
    left = {p: 0 for p in dns_ports}
    done = {}
    while left:
        for port in list(left):
            if rcode(port) == want:
                done[port] = (time.perf_counter(), left.pop(port))
            else:
                left[port] += 1
        assert time.perf_counter() - t0 < deadline, f"nodes {list(left)} never answered rcode {want}"
    return done


checkin = load("computer-checkin.json").replace('"reportedIpAddress":"10.20.30.142"', f'"reportedIpAddress":"{MAC}"')
added, removed = load("smart-group-computer-added.json"), load("smart-group-computer-removed.json")
post(checkin)
post(removed)
until(0)

KINDS = ("isolate", "release")
samples = {p: {k: {"from_post": [], "from_2xx": []} for k in KINDS} | {"stale": 0} for p in dns_ports}
for _ in range(rounds):
    for body, want, kind in ((added, 3, "isolate"), (removed, 0, "release")):
        started = time.perf_counter()
        post(body)
        acked = time.perf_counter()
        for port, (at, stale) in until(want).items():
            samples[port][kind]["from_post"].append((at - started) * 1000)
            samples[port][kind]["from_2xx"].append((at - acked) * 1000)
            samples[port]["stale"] += stale


def summary(xs):
    xs = sorted(xs)
    pct = lambda p: round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)
    return {"p50": pct(.5), "p99": pct(.99), "max": round(xs[-1], 2)}


print(json.dumps({
    "rounds": rounds,
    "nodes": {
        str(port): {kind: {since: summary(xs) for since, xs in s[kind].items()} for kind in KINDS}
        | {"answers_under_the_old_group_after_the_2xx": s["stale"]}
        for port, s in samples.items()
    },
}, indent=1))
