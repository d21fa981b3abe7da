#!/usr/bin/env python3
"""Connection attacks and legitimate probes for the soak test, on loopback only.

usage: attacks.py KIND HOST PORT SECONDS [COUNT] [CAFILE]

Attacks hold COUNT connections open for SECONDS from many loopback addresses (127.0.1.x and
127.0.2.x), opening a new one whenever the server closes one (what an attacker would do), and
print how many they opened:
  silent-tls      TLS connections that never send a byte (not even a handshake)
  slow-headers    HTTP/1.1 over TLS, one header line every 4 s
  pipeline-noread TCP DNS: queries pipelined, answers never read
  big-unauth      webhook POSTs with no token and a 1 MB body, sent slowly
Probes ask one question a second as a legitimate client and print ok/failed counts as JSON:
  probe-dot       DNS over TLS (CAFILE verifies the server)
  probe-doh       DNS over HTTPS, POST /dns-query (CAFILE verifies the server)
"""
import json, random, selectors, socket, ssl, struct, sys, time

kind, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
count = int(sys.argv[5]) if len(sys.argv) > 5 else 100
cafile = sys.argv[6] if len(sys.argv) > 6 else None
if not (host.startswith("127.") or host == "::1"):
    sys.exit("loopback addresses only")
deadline = time.monotonic() + seconds


def query(name="a1.bench.test", qid=0x4242):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return q + struct.pack(">HH", 1, 1)


def tls_context():
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    if cafile is None:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def hold(open_one, feed=None, every=4.0):
    """Keeps `count` connections open until the deadline; `feed` is called on each every `every` s."""
    sel, opened, conns = selectors.DefaultSelector(), 0, {}
    while time.monotonic() < deadline:
        while len(conns) < count:
            try:
                s = open_one()
            except OSError:
                time.sleep(0.05)
                break
            opened += 1
            s.setblocking(False)
            conns[s] = time.monotonic()
            sel.register(s, selectors.EVENT_READ)
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                data = b""
            if not data:  # the server closed it: open another
                sel.unregister(s)
                s.close()
                conns.pop(s, None)
        if feed:
            now = time.monotonic()
            for s, last in list(conns.items()):
                if now - last >= every:
                    try:
                        feed(s)
                    except OSError:
                        sel.unregister(s)
                        s.close()
                        conns.pop(s, None)
                        continue
                    conns[s] = now
    print(json.dumps({"kind": kind, "opened": opened}))


def tcp():
    """A connection from one of 508 loopback addresses, as a botnet would come from many."""
    source = (f"127.0.{random.randrange(1, 3)}.{random.randrange(1, 255)}", 0) if host.startswith("127.") else None
    return socket.create_connection((host, port), timeout=2, source_address=source)


def tls_raw():
    s = tcp()
    return s


def slow_tls():
    s = tls_context().wrap_socket(tcp(), server_hostname="dns.test")
    s.sendall(b"GET /dns-query?dns=AAABAAABAAAAAAAAAWEFYmVuY2gEdGVzdAAAAQAB HTTP/1.1\r\nHost: dns.test\r\n")
    return s


def pipelined():
    s = tcp()
    q = query()
    s.sendall((struct.pack(">H", len(q)) + q) * 200)
    return s


def big_unauth():
    s = tcp()
    s.sendall(b"POST /webhooks/jamf HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000000\r\n\r\n" + b"{" * 4096)
    return s


def probe(ask):
    ok = failed = 0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            answer = ask()
            ok += answer[:2] == b"\x42\x42"
            failed += answer[:2] != b"\x42\x42"
        except OSError:
            failed += 1
        time.sleep(max(0, 1 - (time.monotonic() - t0)))
    print(json.dumps({"kind": kind, "ok": ok, "failed": failed}))


def ask_dot():
    with tls_context().wrap_socket(socket.create_connection((host, port), timeout=3),
                                   server_hostname="dns.test") as s:
        q = query()
        s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2))[0]
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        return data


def ask_doh():
    import http.client
    c = http.client.HTTPSConnection(host, port, timeout=3, context=tls_context())
    c.request("POST", "/dns-query", body=query(), headers={"Content-Type": "application/dns-message"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return body if r.status == 200 else b""


if kind == "silent-tls":
    hold(tls_raw)
elif kind == "slow-headers":
    hold(slow_tls, feed=lambda s: s.sendall(b"X-Slow: 1\r\n"))
elif kind == "pipeline-noread":
    hold(pipelined)
elif kind == "big-unauth":
    hold(big_unauth, feed=lambda s: s.sendall(b"{" * 1024), every=1.0)
elif kind == "probe-dot":
    probe(ask_dot)
elif kind == "probe-doh":
    probe(ask_doh)
else:
    sys.exit(__doc__)
