#!/usr/bin/env bash
# Full-handshake benchmark: certgate vs nginx vs HAProxy, same 1,000 ECDSA P-256 SNI
# certificates, same load client, 2 workers/threads each, runs alternating between servers.
# The figure that compares servers is each server's own CPU time per handshake
# (user+system of its processes from /proc over the run / completed handshakes).
#
# A fourth server, certgate-issued, serves the same names from an issuer (is_ca) entry whose
# leaves were signed on the fly and are cached (warmed before measuring): it should cost the
# same per handshake as static certificates.
#
# TLS13_CIPHERSUITES (environment) sets the TLS 1.3 suites the load client offers, in order
# (OpenSSL's default puts TLS_AES_256_GCM_SHA384 first; browsers put TLS_AES_128_GCM_SHA256
# first, e.g. TLS13_CIPHERSUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256).
#
# usage: bench/handshakes.sh [ROUNDS] [SECONDS] [CONCURRENCY]     (not run in CI)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONCURRENCY=${3:-8}
WORK=${BENCH_WORK:-$(mktemp -d /tmp/certgate-bench.XXXXXX)}
PORT_CERTGATE=18443 PORT_NGINX=18444 PORT_HAPROXY=18445 PORT_ISSUED=18446
CERTS=1000

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need haproxy || [ ! -f /usr/include/openssl/ssl.h ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx haproxy libssl-dev gcc >/dev/null
fi
python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography

echo "building certgate (release) and the load client…" >&2
swift build -c release --product certgate >&2
gcc -O2 -o "$WORK/handshake_load" bench/handshake_load.c -lssl -lcrypto -lpthread

echo "generating $CERTS certificates in $WORK…" >&2
python3 - "$WORK" "$CERTS" <<'PY'
import datetime, os, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
work, count = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{work}/certs", exist_ok=True); os.makedirs(f"{work}/haproxy", exist_ok=True)
now = datetime.datetime.now(datetime.timezone.utc)
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
      .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
      .not_valid_after(now + datetime.timedelta(days=30))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                   data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                   encipher_only=False, decipher_only=False), critical=True)
      .sign(ca_key, hashes.SHA256()))
open(f"{work}/ca.pem", "wb").write(ca.public_bytes(serialization.Encoding.PEM))
open(f"{work}/ca.key", "wb").write(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
names = open(f"{work}/names.txt", "w")
for i in range(count):
    name = f"site{i}.bench.test"
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False).sign(ca_key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    open(f"{work}/certs/{name}.pem", "wb").write(cert_pem)
    open(f"{work}/certs/{name}.key", "wb").write(key_pem)
    open(f"{work}/haproxy/{name}.pem", "wb").write(cert_pem + key_pem)
    names.write(name + "\n")
PY

# --- configurations -------------------------------------------------------------
{
  echo "log_level: warning"
  echo "state_dir: state-static"
  echo "listeners:"
  echo "  - { name: bench, listen: 127.0.0.1:$PORT_CERTGATE, alpn: [http/1.1] }"
  echo "routes:"
  echo "  - { server_names: ['*'], respond: { body: ok } }"
  echo "certificates:"
  while read -r name; do
    echo "  $name: { tls_cert: certs/$name.pem, tls_key: certs/$name.key }"
  done < "$WORK/names.txt"
} > "$WORK/certgate.yaml"

cat > "$WORK/certgate-issued.yaml" <<CFG
log_level: warning
state_dir: state-issued
listeners:
  - { name: issued, listen: 127.0.0.1:$PORT_ISSUED, alpn: [http/1.1] }
routes:
  - { server_names: ['*'], respond: { body: ok } }
issuing: { rate_per_second: 100000, burst: 100000 }
certificates:
  bench-ca: { tls_cert: ca.pem, tls_key: ca.key, is_ca: true, domains: "*.bench.test" }
CFG

{
  echo "worker_processes 2; pid $WORK/nginx.pid; error_log stderr warn; daemon off;"
  echo "events { worker_connections 4096; }"
  # nginx 1.22's default ssl_protocols stop at TLSv1.2: ask for 1.3 like the others speak.
  echo "http { access_log off; ssl_session_tickets off; ssl_session_cache off; ssl_protocols TLSv1.2 TLSv1.3;"
  first=1
  while read -r name; do
    default=""; [ $first = 1 ] && default=" default_server" && first=0
    echo "  server { listen 127.0.0.1:$PORT_NGINX ssl$default; server_name $name;"
    echo "    ssl_certificate $WORK/certs/$name.pem; ssl_certificate_key $WORK/certs/$name.key; return 200 ok; }"
  done < "$WORK/names.txt"
  echo "}"
} > "$WORK/nginx.conf"

cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 2
  maxconn 8000
  log stderr format raw local0 warning
defaults
  mode http
  timeout client 10s
  timeout connect 5s
  timeout server 10s
frontend bench
  bind 127.0.0.1:$PORT_HAPROXY ssl crt $WORK/haproxy/ no-tls-tickets
  http-request return status 200 content-type text/plain string ok
CFG

# --- servers ----------------------------------------------------------------------
# Each certgate has its own state folder; --reset-state: the certificates were just made anew.
.build/release/certgate run --config "$WORK/certgate.yaml" --reset-state 2>"$WORK/certgate.log" &
CERTGATE_PID=$!
nginx -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.log" &
NGINX_PID=$!
haproxy -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" &
HAPROXY_PID=$!
.build/release/certgate run --config "$WORK/certgate-issued.yaml" --reset-state 2>"$WORK/certgate-issued.log" &
ISSUED_PID=$!
trap 'kill $CERTGATE_PID $NGINX_PID $HAPROXY_PID $ISSUED_PID 2>/dev/null || true' EXIT
sleep 3
for pid in $CERTGATE_PID $NGINX_PID $HAPROXY_PID $ISSUED_PID; do
  kill -0 "$pid" 2>/dev/null || { echo "a server did not start (is its port taken?); logs in $WORK" >&2; exit 1; }
done
for port in $PORT_CERTGATE $PORT_NGINX $PORT_HAPROXY $PORT_ISSUED; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
done

# CPU ticks (user+system) of a process and its children (nginx's workers).
cpu_ticks() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" || true); do
    [ -r /proc/$pid/stat ] || continue
    total=$((total + $(awk '{print $14 + $15}' /proc/$pid/stat)))
  done
  echo $total
}

# Warm the issuer's cache: every name signed once before anything is measured.
"$WORK/handshake_load" 127.0.0.1 $PORT_ISSUED "$WORK/names.txt" "$CONCURRENCY" 3 >/dev/null

echo "server round handshakes failures seconds p50_us p99_us cpu_ticks" > "$WORK/results.txt"
for round in $(seq "$ROUNDS"); do
  for server in certgate nginx haproxy certgate-issued; do
    case $server in
      certgate-issued) pid=$ISSUED_PID port=$PORT_ISSUED ;;
      certgate) pid=$CERTGATE_PID port=$PORT_CERTGATE ;;
      nginx) pid=$NGINX_PID port=$PORT_NGINX ;;
      haproxy) pid=$HAPROXY_PID port=$PORT_HAPROXY ;;
    esac
    before=$(cpu_ticks $pid)
    result=$("$WORK/handshake_load" 127.0.0.1 $port "$WORK/names.txt" "$CONCURRENCY" "$SECONDS_PER_RUN")
    after=$(cpu_ticks $pid)
    echo "$server $round $result $((after - before))" | tee -a "$WORK/results.txt" >&2
    sleep 1
  done
done

python3 - "$WORK/results.txt" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
tick_us = 1e6 / int(sys.argv[2])
by = {}
for server, _round, hs, fail, secs, p50, p99, ticks in rows:
    by.setdefault(server, []).append((int(hs), int(fail), float(secs), float(p50), float(p99), int(ticks)))
summary = {}
for server, runs in by.items():
    summary[server] = dict(
        rate=statistics.median(h / s for h, _, s, _, _, _ in runs),
        p50=statistics.median(r[3] for r in runs), p99=statistics.median(r[4] for r in runs),
        failures=sum(r[1] for r in runs),
        cpu=statistics.median([t * tick_us / h for h, _, _, _, _, t in runs if h] or [0]))
print("| server | handshakes/s | p50 | p99 | failures | server CPU per handshake | vs certgate |")
print("|---|---|---|---|---|---|---|")
base = summary.get("certgate", {}).get("cpu") or 1
for server in ("certgate", "nginx", "haproxy", "certgate-issued"):
    s = summary.get(server)
    if s is None or not s["cpu"]:
        print(f"| {server} | no completed handshakes (see its log in the work folder) | | | | | |")
        continue
    print(f"| {server} | {s['rate']:.0f} | {s['p50']/1000:.2f} ms | {s['p99']/1000:.2f} ms | {s['failures']} | {s['cpu']:.0f} µs | {s['cpu']/base:.2f}× |")
PY
