#!/usr/bin/env bash
# Shell checks of the built binary, as an operator would use it: `cordon run` with the shipped
# policies, dig against it, `cordon check` on a broken policy, promtool on /metrics.
# Upstream is NSD serving a small zone on 127.0.0.2; nothing leaves loopback.
# Usage: tests/acceptance.sh [path/to/cordon]   (default target/debug/cordon)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/debug/cordon}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
pass() { echo "ok: $*"; passed=$((passed + 1)); }
passed=0; failed=0
DNS_PORT=15353; HTTP_PORT=19153; AUTH=127.0.0.2; AUTH_PORT=15300; DOT_PORT=15853; DOH_PORT=15443

# --- the upstream: NSD, authoritative for allowed.example ---
mkdir -p "$WORK/nsd"
cat > "$WORK/nsd/allowed.example.zone" <<ZONE
\$ORIGIN allowed.example.
\$TTL 3600
@ IN SOA ns.allowed.example. hostmaster.allowed.example. 1 3600 600 86400 60
@ IN NS ns
ns IN A 192.0.2.53
www IN A 192.0.2.10
loop IN A 127.0.0.1
ZONE
cat > "$WORK/nsd/nsd.conf" <<CONF
server:
  ip-address: $AUTH@$AUTH_PORT
  port: $AUTH_PORT
  username: ""
  chroot: ""
  zonesdir: "$WORK/nsd"
  database: ""
  zonelistfile: "$WORK/nsd/zone.list"
  pidfile: "$WORK/nsd/nsd.pid"
  xfrdfile: "$WORK/nsd/xfrd.state"
  logfile: "$WORK/nsd/nsd.log"
  server-count: 1
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: allowed.example
  zonefile: allowed.example.zone
CONF
nsd -d -c "$WORK/nsd/nsd.conf" & PIDS+=($!)

# --- cordon run with the shipped policies, plain DNS, DoT and DoH (self-signed certificate) ---
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=dns.test \
  -addext "subjectAltName=DNS:dns.test,DNS:*.dns.test" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
# --- a stand-in Shared Signals transmitter: an RSA key and its JWKS (docs/api.md's walkthrough) ---
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/idp-key.pem" 2>/dev/null
n=$(openssl rsa -in "$WORK/idp-key.pem" -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)
printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"idp-1","n":"%s","e":"AQAB"}]}\n' "$n" > "$WORK/idp-jwks.json"
set_for() {  # set_for JTI STATUS: a SET about the Mac, issued now, signed with the key
  header=$(printf '{"alg":"RS256","typ":"secevent+jwt","kid":"idp-1"}' | b64url)
  payload=$(printf '{"iss":"https://idp.example.com/tenant-7/","aud":"https://cordon.example.com/webhooks/ssf","iat":%s,"jti":"%s","sub_id":{"format":"complex","device":{"format":"iss_sub","iss":"https://idp.example.com/tenant-7/","sub":"C02ZK1ABMD6T"}},"events":{"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change":{"current_status":"%s","event_timestamp":%s}}}' \
    "$(date +%s)" "$1" "$2" "$(date +%s)" | b64url)
  signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/idp-key.pem" | b64url)
  printf '%s.%s.%s' "$header" "$payload" "$signature"
}

cat > "$WORK/cordon.toml" <<CONF
[dns]
listen = ["127.0.0.1:$DNS_PORT"]
tls_listen = ["127.0.0.1:$DOT_PORT"]
https_listen = ["127.0.0.1:$DOH_PORT"]
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
server_name = "dns.test"
[upstream]
servers = ["udp://$AUTH:$AUTH_PORT"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
[store]
path = "$WORK/cordon.db"
[policies]
dir = "$ROOT/policies"
[auth]
webhook_tokens = ["acceptance-webhook-token"]
token_secret = "acceptance-token-secret-0123456789"
[[auth.admin]]
token = "acceptance-viewer-token"
role = "viewer"
[[ssf.issuer]]
issuer = "https://idp.example.com/tenant-7/"
audience = "https://cordon.example.com/webhooks/ssf"
jwks_file = "$WORK/idp-jwks.json"
CONF
"$BIN" run --config "$WORK/cordon.toml" > "$WORK/cordon.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do
  dig +time=1 +tries=1 @127.0.0.1 -p $DNS_PORT www.allowed.example 2>/dev/null | grep -q "status: NOERROR" && break
  sleep 0.1
done
grep -q "cordon listening: udp+tcp 127.0.0.1:$DNS_PORT, dot 127.0.0.1:$DOT_PORT, doh 127.0.0.1:$DOH_PORT, http 127.0.0.1:$HTTP_PORT" "$WORK/cordon.log" \
  && pass "start-up logs its listeners" || fail "start-up line: $(cat "$WORK/cordon.log")"

out=$(dig @127.0.0.1 -p $DNS_PORT malware.cordon-test.example)
grep -q "status: NXDOMAIN" <<<"$out" && grep -q "EDE: 15 (Blocked)" <<<"$out" \
  && pass "listed malware domain: NXDOMAIN with EDE 15" || fail "malware domain: $out"
out=$(dig @127.0.0.1 -p $DNS_PORT www.allowed.example)
grep -q "status: NOERROR" <<<"$out" && grep -Eq "www.allowed.example.\s+300\s+IN\s+A\s+192.0.2.10" <<<"$out" \
  && pass "allowed name: the upstream's answer, TTL capped at 300" || fail "allowed name: $out"
out=$(dig +tcp @127.0.0.1 -p $DNS_PORT www.allowed.example)
grep -q "192.0.2.10" <<<"$out" && pass "allowed name over TCP" || fail "tcp: $out"

# --- answers as exact as Unbound's ---
out=$(dig +opcode=status @127.0.0.1 -p $DNS_PORT www.allowed.example 2>&1 || true)
grep -q "opcode: STATUS, status: NOTIMP" <<<"$out" && grep -q "QUERY: 1," <<<"$out" && grep -q "OPT PSEUDOSECTION" <<<"$out" \
  && pass "+opcode=status: NOTIMP with its opcode, question and OPT" || fail "opcode status: $out"
out=$(dig @127.0.0.1 -p $DNS_PORT www.allowed.example ANY || true)
grep -Eq 'www.allowed.example.\s+[0-9]+\s+IN\s+HINFO\s+"RFC8482" ""' <<<"$out" && grep -q "ANSWER: 1," <<<"$out" \
  && pass "ANY: one synthesised HINFO (RFC 8482)" || fail "ANY: $out"
out=$(dig @127.0.0.1 -p $DNS_PORT www.allowed.example TYPE250 || true)
grep -q "status: FORMERR" <<<"$out" && pass "a meta query type (TSIG): FORMERR" || fail "TYPE250: $out"
out=$(dig +norecurse @127.0.0.1 -p $DNS_PORT ns.allowed.example || true)
grep -q "status: REFUSED" <<<"$out" && pass "RD=0 and not cached: REFUSED" || fail "norecurse: $out"
out=$(dig +norecurse @127.0.0.1 -p $DNS_PORT www.allowed.example || true)
grep -q "192.0.2.10" <<<"$out" && pass "RD=0 and cached: answered" || fail "norecurse cached: $out"
out=$(dig +cd @127.0.0.1 -p $DNS_PORT www.allowed.example || true)
grep -Eq "flags: qr rd ra cd;" <<<"$out" && pass "CD comes back as asked, no AD unasked" || fail "cd: $out"

metrics=$(curl -sf 127.0.0.1:$HTTP_PORT/metrics)
if lint=$(promtool check metrics <<<"$metrics" 2>&1); then pass "promtool check metrics"; else fail "promtool: $lint"; fi
grep -q 'cordon_dns_blocked_total{category="malware",group="standard"} 1' <<<"$metrics" \
  && pass "blocked query counted" || fail "blocked counter missing"
not_after=$(date -u -d "$(openssl x509 -noout -enddate -in "$WORK/cert.pem" | cut -d= -f2)" +%s)
grep -qx "cordon_tls_cert_expiry_timestamp_seconds $not_after" <<<"$metrics" \
  && pass "certificate expiry exported: $not_after, openssl's notAfter" \
  || fail "cert expiry: want $not_after, got $(grep '^cordon_tls_cert_expiry' <<<"$metrics")"

out=$("$BIN" explain --config "$WORK/cordon.toml" --client 10.0.0.1 malware.cordon-test.example)
grep -q "decision:   block: category malware" <<<"$out" && pass "cordon explain" || fail "explain: $out"

# --- Jamf webhooks: check-in binds the Mac's address, the group event isolates it ---
FIX=$ROOT/tests/fixtures/jamf
post() { curl -s -o "$WORK/post.out" -w '%{http_code}' -H 'Authorization: Bearer acceptance-webhook-token' \
           -H 'Content-Type: application/json' --data-binary @- "http://127.0.0.1:$HTTP_PORT/webhooks/jamf"; }
mac=127.0.0.42   # the fixture's 10.20.30.142, moved onto loopback
sed "s/\"reportedIpAddress\":\"10.20.30.142\"/\"reportedIpAddress\":\"$mac\"/" "$FIX/computer-checkin.json" | post > "$WORK/code"
[ "$(cat "$WORK/code")" = 200 ] && pass "check-in webhook accepted" || fail "check-in: $(cat "$WORK/code") $(cat "$WORK/post.out")"
[ "$(post < "$FIX/smart-group-computer-added.json")" = 200 ] && pass "group-added webhook accepted" || fail "added: $(cat "$WORK/post.out")"
out=$(dig -b $mac @127.0.0.1 -p $DNS_PORT www.allowed.example)
grep -q "status: NXDOMAIN" <<<"$out" && grep -q "group restricted" <<<"$out" \
  && pass "isolated Mac gets NXDOMAIN for a normal name" || fail "isolated: $out"
out=$(dig @127.0.0.1 -p $DNS_PORT www.allowed.example)
grep -q "192.0.2.10" <<<"$out" && pass "other clients unaffected" || fail "others: $out"
# --- per-device tokens over DoH and DoT: the isolated Mac's token, and a free Mac's ---
[ "$(post < "$FIX/computer-inventory-completed.json")" = 200 ] && pass "inventory webhook accepted" || fail "inventory: $(cat "$WORK/post.out")"
iso=$("$BIN" token --config "$WORK/cordon.toml" C02ZK1ABMD6T 2>/dev/null)
free=$("$BIN" token --config "$WORK/cordon.toml" FVFH31XXQ6L4 2>/dev/null)
tlsargs=(+tls-ca="$WORK/cert.pem" +tls-hostname=dns.test)
out=$(kdig @127.0.0.1 -p $DOH_PORT +https=/dns-query/$iso "${tlsargs[@]}" www.allowed.example)
grep -q "status: NXDOMAIN" <<<"$out" && pass "kdig +https, isolated Mac's token: NXDOMAIN" || fail "kdig https iso: $out"
out=$(kdig @127.0.0.1 -p $DOH_PORT +https=/dns-query/$free "${tlsargs[@]}" www.allowed.example)
grep -q "192.0.2.10" <<<"$out" && pass "kdig +https, free Mac's token: answered" || fail "kdig https free: $out"
out=$(kdig @127.0.0.1 -p $DOT_PORT +tls-sni=$iso.dns.test "${tlsargs[@]}" www.allowed.example)
grep -q "status: NXDOMAIN" <<<"$out" && pass "kdig +tls, isolated Mac's token in the SNI: NXDOMAIN" || fail "kdig tls iso: $out"
out=$(kdig @127.0.0.1 -p $DOT_PORT +tls-sni=$free.dns.test "${tlsargs[@]}" www.allowed.example)
grep -q "192.0.2.10" <<<"$out" && pass "kdig +tls, free Mac's token in the SNI: answered" || fail "kdig tls free: $out"
doh_curl() { curl -s --max-time 5 --cacert "$WORK/cert.pem" --resolve dns.test:$DOH_PORT:127.0.0.1 \
               --doh-url "https://dns.test:$DOH_PORT/dns-query/$1" "http://loop.allowed.example:$HTTP_PORT/healthz"; }
[ "$(doh_curl "$free")" = ok ] && pass "curl --doh-url, free Mac's token: resolves and connects" || fail "curl doh free"
set +e; doh_curl "$iso" > /dev/null; code=$?; set -e
[ "$code" = 6 ] && pass "curl --doh-url, isolated Mac's token: cannot resolve" || fail "curl doh iso exit $code"

# --- the isolated Mac's DNS trail: what dig, kdig and curl asked while it was isolated ---
trail() { curl -s -H 'Authorization: Bearer acceptance-viewer-token' "http://127.0.0.1:$HTTP_PORT/v1/devices/C02ZK1ABMD6T/$1"; }
for _ in $(seq 30); do
  out=$(trail 'queries?limit=1000')
  grep -q '"transport":"doh"' <<<"$out" && grep -q '"transport":"dot"' <<<"$out" && break
  sleep 0.1
done
jq -e '[.queries[] | select(.name == "www.allowed.example" and .decision == "blocked")] | map(.transport) | unique == ["doh","dot","udp"]' <<<"$out" > /dev/null \
  && pass "the trail holds the isolated Mac's queries over UDP, DoT and DoH" || fail "trail: $out"
out=$(trail 'queries.ndjson')
[ "$(wc -l <<<"$out")" -ge 3 ] && jq -e -s 'all(.[]; .device and .at and .reason)' <<<"$out" > /dev/null \
  && pass "the trail exported as NDJSON" || fail "trail export: $out"
out=$(trail 'queries?cursor=not-a-cursor')
grep -q '"field":"cursor"' <<<"$out" && pass "a malformed trail cursor: 400 naming the cursor" || fail "cursor: $out"
[ "$(post < "$FIX/smart-group-computer-removed.json")" = 200 ] && pass "group-removed webhook accepted" || fail "removed: $(cat "$WORK/post.out")"
out=$(dig -b $mac @127.0.0.1 -p $DNS_PORT www.allowed.example)
grep -q "192.0.2.10" <<<"$out" && pass "released Mac gets its answer back" || fail "released: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$FIX/smart-group-computer-added.json" "http://127.0.0.1:$HTTP_PORT/webhooks/jamf")
[ "$code" = 401 ] && pass "webhook without a token: 401" || fail "no token gave $code"

# --- Shared Signals: SETs signed by openssl, pushed with curl ---
push() { curl -s -o "$WORK/push.out" -w '%{http_code}' -H "Content-Type: ${2:-application/secevent+jwt}" \
           --data-binary "$1" "http://127.0.0.1:$HTTP_PORT/webhooks/ssf"; }
set1=$(set_for jti-0001 not-compliant)
code=$(push "$set1")
[ "$code" = 202 ] && grep -q '"changes":1' "$WORK/push.out" && pass "SET not-compliant: 202, the Mac's UEM groups changed" \
  || fail "SET: $code $(cat "$WORK/push.out")"
code=$(push "$set1")
[ "$code" = 400 ] && grep -q '"err":"invalid_request"' "$WORK/push.out" && grep -q 'already received' "$WORK/push.out" \
  && pass "the same SET again: 400 invalid_request (replayed jti)" || fail "replay: $code $(cat "$WORK/push.out")"
forged="${set1%.*}.$(printf 'not the signature' | b64url)"
code=$(push "$forged")
[ "$code" = 400 ] && grep -q '"err":"authentication_failed"' "$WORK/push.out" \
  && pass "SET with a bad signature: 400 authentication_failed" || fail "forged: $code $(cat "$WORK/push.out")"
code=$(push "$(set_for jti-0002 compliant)" application/json)
[ "$code" = 415 ] && pass "SET as application/json: 415" || fail "content type: $code $(cat "$WORK/push.out")"
code=$(push "$(set_for jti-0003 compliant)")
[ "$code" = 202 ] && grep -q '"changes":1' "$WORK/push.out" && pass "SET compliant: 202, released" \
  || fail "compliant: $code $(cat "$WORK/push.out")"
out=$(curl -s 127.0.0.1:$HTTP_PORT/metrics | grep '^cordon_ssf_events_total{issuer="https://idp.example.com/tenant-7/"')
grep -q 'result="applied"} 2' <<<"$out" && grep -q 'result="replayed"} 1' <<<"$out" \
  && pass "SETs counted by issuer and result" || fail "ssf metrics: $out"

# --- cordon check on a policy with a typo ---
cp -r "$ROOT/policies" "$WORK/broken"
sed -i 's/"phishing",/"phishin",/' "$WORK/broken/standard.toml"
line=$(grep -n '"phishin"' "$WORK/broken/standard.toml" | cut -d: -f1)
sed "s#dir = .*#dir = \"$WORK/broken\"#" "$WORK/cordon.toml" > "$WORK/broken.toml"
set +e; out=$("$BIN" check --config "$WORK/broken.toml" 2>&1); code=$?; set -e
[ "$code" = 1 ] && grep -q "broken/standard.toml:$line: unknown category \"phishin\"" <<<"$out" \
  && pass "cordon check names file and line, exits 1" || fail "check: exit $code: $out"
"$BIN" check --config "$WORK/cordon.toml" > /dev/null && pass "cordon check on the shipped policies" || fail "shipped policies do not check"

# --- SIGHUP reload keeps serving ---
kill -HUP "${PIDS[1]}"; sleep 0.5
dig @127.0.0.1 -p $DNS_PORT www.allowed.example | grep -q "status: NOERROR" && pass "serving after SIGHUP" || fail "SIGHUP"

echo "acceptance: $passed passed, $failed failed"
[ "$failed" = 0 ]
