#!/usr/bin/env python3
"""An RPZ zone for benches/rpz.sh, on stdout (stdlib only, deterministic).

  rpz_zone.py ZONE N SERIAL [CHANGES]

N entries `h<i>.bad-<i % 1000>.example CNAME .` (i = 0 .. N-1: NXDOMAIN for that name), after
the apex (SOA serial SERIAL, refresh 3600, NS localhost.). With CHANGES (even, default 0): the
same zone less its first CHANGES/2 entries (h0 .. h<CHANGES/2 - 1>) plus CHANGES/2 new ones
`n<j>.new-<j % 1000>.example CNAME .`, i.e. CHANGES record changes for one IXFR.
"""
import sys


def main():
    zone, n, serial = sys.argv[1].rstrip("."), int(sys.argv[2]), int(sys.argv[3])
    changes = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    half = changes // 2
    if changes % 2 or half > n:
        raise SystemExit("CHANGES must be even and at most 2 N")
    out = sys.stdout
    out.write(f"$ORIGIN {zone}.\n$TTL 300\n")
    out.write(f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 60\n")
    out.write("@ NS localhost.\n")
    step = 100_000
    for start in range(half, n, step):
        out.write("".join(f"h{i}.bad-{i % 1000}.example CNAME .\n" for i in range(start, min(n, start + step))))
    out.write("".join(f"n{j}.new-{j % 1000}.example CNAME .\n" for j in range(half)))


if __name__ == "__main__":
    main()
