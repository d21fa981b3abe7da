#!/usr/bin/env python3
"""SET-to-enforcement latency: a CAEP device-compliance-change SET (ES256, signed here with the
key whose JWKS Cordon reads) is pushed to /webhooks/ssf, and the device is asked from its bound
address until it answers under the new group. Timed from the start of the POST (the caller's
view, commit included) and from the moment its 202 arrived. Loopback only.

usage: set_latency.py keygen DIR                      -> DIR/key.pem, DIR/jwks.json
       set_latency.py run HTTP_PORT DNS_PORT DIR ISSUER AUDIENCE SERIAL [ROUNDS]
Prints JSON: p50/p99/max (ms) for not-compliant (-> NXDOMAIN) and compliant (-> NOERROR)."""
import base64, json, random, socket, struct, sys, time, urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

CAEP = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
MAC = "127.0.0.50"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keygen(out):
    key = ec.generate_private_key(ec.SECP256R1())
    with open(f"{out}/key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    n = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "use": "sig",
           "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}
    with open(f"{out}/jwks.json", "w") as f:
        json.dump({"keys": [jwk]}, f)


def set_token(key, issuer, audience, serial, status):
    header = {"alg": "ES256", "typ": "secevent+jwt", "kid": "bench"}
    claims = {"iss": issuer, "aud": audience, "iat": int(time.time()), "jti": f"{random.getrandbits(64):x}",
              "sub_id": {"format": "complex", "device": {"format": "opaque", "id": serial}},
              "events": {CAEP: {"current_status": status, "event_timestamp": int(time.time())}}}
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def run(http_port, dns_port, out, issuer, audience, serial, rounds):
    with open(f"{out}/key.pem", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((MAC, 0))
    sock.settimeout(2)

    def rcode():
        qid = random.randrange(65536)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x02a1\x05bench\x04test\x00" + struct.pack(">HH", 1, 1)
        sock.sendto(q, ("127.0.0.1", dns_port))
        while True:
            try:
                data, _ = sock.recvfrom(4096)
            except socket.timeout:
                sock.sendto(q, ("127.0.0.1", dns_port))
                continue
            if struct.unpack(">H", data[:2])[0] == qid:
                return data[3] & 0xF

    def push(status):
        token = set_token(key, issuer, audience, serial, status).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/webhooks/ssf", data=token,
                                     headers={"Content-Type": "application/secevent+jwt"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202, r.status

    timings = {"not-compliant": ([], []), "compliant": ([], [])}
    for _ in range(rounds):
        for status, want in (("not-compliant", 3), ("compliant", 0)):
            start = time.perf_counter()
            push(status)
            acked = time.perf_counter()
            while rcode() != want:
                pass
            done = time.perf_counter()
            timings[status][0].append((done - start) * 1000)
            timings[status][1].append((done - acked) * 1000)

    def stats(xs):
        xs = sorted(xs)
        return {"p50": round(xs[len(xs) // 2], 2), "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2),
                "max": round(xs[-1], 2)}

    print(json.dumps({status: {"from_post": stats(a), "from_202": stats(b)}
                      for status, (a, b) in timings.items()}, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    else:
        run(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7],
            int(sys.argv[8]) if len(sys.argv) > 8 else 200)
