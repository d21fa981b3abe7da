#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the repository's own material
(tests/fixtures/jamf, policies/lists) and small DNS packets built here. Run from anywhere;
`cargo fuzz cmin` then keeps the seeds that add coverage."""
import base64, hashlib, pathlib, struct

FUZZ = pathlib.Path(__file__).resolve().parent.parent
REPO = FUZZ.parent
CORPUS = FUZZ / "corpus"


def put(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def opt(size=1232, ttl=0, options=b"", owner=b"\0"):
    return owner + struct.pack(">HHIH", 41, size, ttl, len(options)) + options


def ecs(family, prefix, addr):
    data = struct.pack(">HBB", family, prefix, 0) + addr
    return struct.pack(">HH", 8, len(data)) + data


UMBRELLA_DEVICE = struct.pack(">HH", 26946, 15) + b"OpenDNS" + bytes.fromhex("0123456789abcdef")
UMBRELLA_IDENT_DATA = b"ODNS\x01\x00" + struct.pack(">H", 0x0010) + bytes([192, 0, 2, 1]) \
    + struct.pack(">H", 0x0040) + bytes.fromhex("0123456789abcdef")
UMBRELLA_IDENT = struct.pack(">HH", 20292, len(UMBRELLA_IDENT_DATA)) + UMBRELLA_IDENT_DATA
TEXT_ID = struct.pack(">HH", 65001, 8) + b"laptop-7"


def query(qname, qtype=1, qclass=1, edns=None, flags=0x0100, qd=1, an=0, ns=0, extra=b"",
          qid=0x1234, question=None):
    ar = (1 if edns is not None else 0) + extra.count(b"\0\x00\x29")
    head = struct.pack(">HHHHHH", qid, flags, qd, an, ns, 1 if edns is not None else 0)
    q = question if question is not None else name(qname) + struct.pack(">HH", qtype, qclass)
    return head + q + extra + (edns if edns is not None else b"")


def queries():
    yield query("www.example.com")
    yield query("WWW.Example.COM", 28)
    yield query("www.example.com", edns=opt(ttl=0x8000))
    yield query("malware.cordon-test.example", edns=opt(options=ecs(1, 24, bytes([192, 0, 2]))))
    yield query("a.example", edns=opt(options=ecs(2, 56, bytes(7))))
    yield query("b.example", edns=opt(options=UMBRELLA_DEVICE + UMBRELLA_IDENT))
    yield query("c.example", edns=opt(options=TEXT_ID))
    yield query("", 2)  # the root
    yield query("version.bind", 16, 3)
    yield query("example.com", 255)
    yield query("example.com", 252)
    yield query("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61)
    yield query(".".join(["x"] * 127))
    yield query("example.com", flags=0x0900)  # opcode 1
    yield query("example.com", flags=0x2800)  # opcode 5, update
    yield query("example.com", qd=2) + name("two.example") + b"\0\x01\0\x01"
    yield query("example.com", edns=opt(ttl=0x00010000))  # EDNS version 1
    yield query("example.com", edns=opt(owner=b"\x01x\0"))
    yield query("x", question=b"\x01a\xc0\x0c\0\x01\0\x01")
    yield query("example.com", flags=0x0110)  # CD
    yield query("example.com", edns=opt(size=4096, ttl=0x8000, options=struct.pack(">HH", 10, 8) + bytes(8)))


def rr(owner, rtype, ttl, rdata, rclass=1):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def answer(question, rcode=0, an=(), ns=(), ar=(), qid=0x1234, flags=0x8180):
    head = struct.pack(">HHHHHH", qid, flags | rcode, 1, len(an), len(ns), len(ar))
    return head + question + b"".join(an) + b"".join(ns) + b"".join(ar)


def answers():
    q = name("www.example.com") + b"\0\x01\0\x01"
    ptr = b"\xc0\x0c"
    soa = name("ns.example.com") + name("admin.example.com") + struct.pack(">IIIII", 1, 3600, 600, 86400, 300)
    yield answer(q, an=[rr(ptr, 1, 300, bytes([192, 0, 2, 1]))])
    yield answer(q, an=[rr(ptr, 1, 300, bytes([192, 0, 2, 1])), rr(ptr, 1, 60, bytes([192, 0, 2, 2]))],
                 ar=[opt(ttl=0x8000)])
    yield answer(q, an=[rr(ptr, 5, 300, name("cdn.provider.net")),
                        rr(b"\xc0\x2d", 5, 30, b"\x04edge\xc0\x31"),
                        rr(b"\xc0\x3f", 1, 20, bytes([198, 51, 100, 7]))])
    yield answer(q, rcode=3, ns=[rr(b"\xc0\x10", 6, 900, soa)], ar=[opt()])
    yield answer(q, ns=[rr(b"\xc0\x10", 6, 3600, soa)])
    yield answer(q, flags=0x8380)  # TC
    yield answer(q, rcode=2)
    q6 = name("v6.Example.NET") + b"\0\x1c\0\x01"
    yield answer(q6, an=[rr(ptr, 28, 86400, bytes(16))], ar=[opt(options=ecs(2, 56, bytes(7)))])
    yield answer(q, an=[rr(ptr, 5, 0xFFFFFFFF, b"\x03a\xc0\x0c")])


def list_texts():
    for path in sorted((REPO / "policies" / "lists").glob("*.txt")):
        # The first 60 lines of each: headers and comments in their own style, and entries.
        yield b"".join(path.read_bytes().splitlines(keepends=True)[:60])
    yield b"""127.0.0.1 localhost
::1 localhost ip6-localhost
0.0.0.0 ads.example.com
0.0.0.0\tad.doubleclick.net   # tracking
127.0.0.1 a.example b.example c.example
:: ipv6.tracker.example
0 zero.example
0.0.0.0 bad_label-.example 1.2.3.4
#0.0.0.0 disabled.example
"""
    yield "example.com\r\nWWW.Example.ORG.\n*.wild.example\nb\u00fccher.de\nads*.example.com\n*\n1.2.3.4\n_dmarc.example.net\nnot a domain\n.dotted.example\ncom\n*.zip\n::1\nlocalhost\n".encode()
    yield "\ufeffexample.org\n".encode()
    yield b"""[Adblock Plus 2.0]
! Title: EasyList
!#if env_firefox
||ads.example.com^
||tracker.example^$important
||pop.example^$popup,third-party
||partner.example^$third-party,domain=~partner-site.example
||anchor.example^|
|start.example^
plain.example^
||*.wildcard.example^
@@||allowed.example^
||172.255.103.171^$popup
||example.org^$dnsrewrite=NOERROR;A;1.2.3.4
||example.com^*.js
example.com##.ad-banner
/banner[0-9]+/
_chartbeat.js
"""
    yield b"""# dnsmasq blocklist
address=/ads.example.com/0.0.0.0
address=/tracker.example/::
address=/multi-a.example/multi-b.example/127.0.0.1
address=/nx.example/
server=/server.example/
local=/local.example/
address=/#/0.0.0.0
server=8.8.8.8
"""
    yield b"""$TTL 2h
$ORIGIN rpz.zone.
@ IN SOA localhost. root.localhost. (
        2024010101 ; serial
        2h )       ; minimum
@ IN NS localhost.
evil.example CNAME .
*.evil.example CNAME .
tracker.example 300 IN CNAME .
Nodata.Example IN 300 CNAME *.
abs.example.rpz.zone. CNAME .
garden.example CNAME walled.garden.example.
passthru.example CNAME rpz-passthru.
sink.example A 0.0.0.0
32.1.2.0.192.rpz-ip CNAME .
"""
    yield b"""server:
    local-zone: "ads.example.com" always_nxdomain
    local-zone: refuse.example. refuse
    local-zone: 'quoted.example' always_refuse
    local-zone: "null.example" always_null # sinkhole
    local-zone: "redirect.example" redirect
    local-data: "redirect.example A 0.0.0.0"
    local-zone: "transparent.example" transparent
    local-zone: "unterminated.example static
"""


def main():
    for p in queries():
        put("query_parse", p)
        put("hickory_diff", p)
        put("doh_request", b"\x01" + p)
        put("doh_request", b"\x00" + base64.urlsafe_b64encode(p).rstrip(b"="))
    put("doh_request", b"\x00" + base64.urlsafe_b64encode(query("example.com")))
    for knobs, a in zip([0x00, 0x80, 0xC5, 0x2F, 0x91, 0x33, 0x80, 0xE2, 0x14], answers()):
        put("answer_walk", bytes([knobs]) + a)
    for options in [ecs(1, 24, bytes([192, 0, 2])), ecs(2, 56, bytes(7)), ecs(1, 0, b""),
                    UMBRELLA_DEVICE, UMBRELLA_IDENT, TEXT_ID,
                    ecs(1, 32, bytes([10, 0, 0, 1])) + UMBRELLA_DEVICE + UMBRELLA_IDENT,
                    struct.pack(">HH", 10, 8) + bytes(8)]:
        put("edns_options", struct.pack(">H", 65001) + options)
        put("edns_options", b"\0\0" + options)
    fixtures = sorted((REPO / "tests" / "fixtures" / "jamf").glob("*.json"))
    for path in fixtures:
        body = path.read_bytes()
        if path.name == "classic-computergroup.json":
            put("jamf_api", b"\x00" + body)
            put("jamf_api", b"\x01" + body.replace(b"computer_group", b"mobile_device_group")
                .replace(b"computers", b"mobile_devices"))
        elif path.name == "computers-inventory.json":
            put("jamf_api", b"\x02" + struct.pack(">H", 1042) + body)
        elif path.name == "oauth-token.json":
            put("jamf_api", b"\x03" + body)
        else:
            put("jamf_webhook", body)
    put("jamf_webhook", b"\xef\xbb\xbf" + fixtures[-1].read_bytes())
    for text in list_texts():
        put("list_formats", text)


if __name__ == "__main__":
    main()
