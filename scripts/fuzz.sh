#!/usr/bin/env bash
# Fuzzes certgate's input decoders with libFuzzer (it ships with the Swift toolchain).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Targets (Fuzz/FuzzTargets.swift): config (the YAML configuration), pem (PEM/DER
# material), sni (ServerName / NamePattern), control (the control API's CertificateEntry).
# CERTGATE_FUZZ_TARGETS="pem sni" limits the run to some of them.
#
# 1. Builds the package's library modules (Gateway and what it depends on) with
#    coverage instrumentation into their own scratch folder, .build-fuzz (never .build),
#    and links Fuzz/FuzzTargets.swift against them with `swiftc -sanitize=fuzzer`.
# 2. Writes seed inputs to Fuzz/seeds/ (a configuration, PEM made with openssl, names,
#    a serialized entry); the growing corpus is kept in Fuzz/corpus/ between runs.
# 3. Runs each target for SECONDS_PER_TARGET seconds. A crash, a timeout (an input that
#    takes over 5 s) or an input that needs over 2 GB leaves its input in Fuzz/crashes/
#    and makes the script exit 1 once every target has run. Reproduce one with
#      CERTGATE_FUZZ_TARGET=<target> .build-fuzz/certgate-fuzz Fuzz/crashes/<file>
#    (which prints the Swift runtime's backtrace of the trap).
#
# Builds and runs under `nice` so that other work on the machine keeps priority.
set -euo pipefail
cd "$(dirname "$0")/.."

# All in one function, read whole before it runs: editing this file during a run is safe.
main() {

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
targets="${CERTGATE_FUZZ_TARGETS:-config pem sni control}"

scratch=.build-fuzz
fuzzer="$scratch/certgate-fuzz"
logs="$scratch/fuzz-logs"
command -v openssl >/dev/null || { echo "fuzz.sh: openssl is needed for the seed inputs" >&2; exit 2; }

# --- build ------------------------------------------------------------------------------

build_start=$(date +%s)
# -sanitize=fuzzer on a library module only instruments it (edge coverage, comparisons);
# nothing is linked here, so the flag is harmless to every module.
nice -n 15 swift build --scratch-path "$scratch" --target Gateway -Xswiftc -sanitize=fuzzer
bin="$(swift build --scratch-path "$scratch" --show-bin-path)"

# The clang modules (BoringSSL, NIO's C parts, libyaml, SQLite, ...) that importing Gateway
# needs, as SwiftPM passed them when it compiled Gateway.
gateway_args="$(awk '/^  "C\.Gateway-.*-debug\.module":$/ { found = 1 } found && /^    args: / { print; exit }' "$scratch/debug.yaml")"
if [ -z "$gateway_args" ]; then
    echo "fuzz.sh: cannot find the Gateway compile command in $scratch/debug.yaml" >&2
    exit 1
fi
response="$scratch/certgate-fuzz.args"
{
    grep -o '"-fmodule-map-file=[^"]*"' <<<"$gateway_args" | tr -d '"' | sort -u | sed 's/^/-Xcc\n/'
    grep -o '"-Xcc","-I","-Xcc","[^"]*"' <<<"$gateway_args" | sed 's/^"-Xcc","-I","-Xcc","//; s/"$//' | sort -u | sed 's/^/-Xcc\n-I\n-Xcc\n/'
    # Every object of the modules built above (some file names have spaces, hence the quotes); not the executables', tests' or benchmarks'.
    find "$bin" -path '*.build/*' -name '*.o' \
        -not -path '*/certgate.build/*' -not -path '*/certgate_bench.build/*' \
        -not -path '*/certgate_control_bench.build/*' -not -path '*/BenchmarkSupport.build/*' \
        -not -path '*/CertificateTestSupport.build/*' -not -path '*Tests.build/*' | sort
} | sed 's/[\\"]/\\&/g; s/.*/"&"/' >"$response"
# -lz -lm: the linkedLibrary settings of grpc-swift-nio-transport, swift-nio-extras and
# swift-numerics, which SwiftPM adds only when it links a product.
nice -n 15 swiftc -sanitize=fuzzer -parse-as-library -Onone -g \
    -I "$bin/Modules" -module-cache-path "$bin/ModuleCache" \
    Fuzz/FuzzTargets.swift @"$response" -lz -lm -o "$fuzzer"
echo "fuzz.sh: built $fuzzer in $(( $(date +%s) - build_start ))s"

# --- seeds ------------------------------------------------------------------------------

seeds=Fuzz/seeds
rm -rf "$seeds"
mkdir -p "$seeds"/{config,pem,sni,control} Fuzz/corpus Fuzz/crashes "$logs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# PEM material: every key format the parser accepts, and a certificate for each.
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=fuzz.example.test" -addext "subjectAltName=DNS:fuzz.example.test,DNS:*.fuzz.example.test,IP:127.0.0.1" \
    -keyout "$work/ec.key" -out "$work/ec.pem"
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=rsa.example.test" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$work/rsa.key" -out "$work/rsa.pem"
openssl_quiet req -x509 -newkey ed25519 -nodes -days 30 -subj "/CN=ed.example.test" \
    -addext "subjectAltName=DNS:ed.example.test" -keyout "$work/ed.key" -out "$work/ed.pem"
openssl_quiet ec -in "$work/ec.key" -out "$work/ec-sec1.key"
openssl_quiet ecparam -name secp384r1 -genkey -out "$work/ec-params.key"
openssl_quiet rsa -in "$work/rsa.key" -traditional -out "$work/rsa-pkcs1.key" \
    || openssl_quiet rsa -in "$work/rsa.key" -out "$work/rsa-pkcs1.key"
for name in ec rsa ed; do
    cp "$work/$name.pem" "$seeds/pem/$name-cert.pem"
    cp "$work/$name.key" "$seeds/pem/$name-key.pem"
    cat "$work/$name.pem" "$work/$name.key" >"$seeds/pem/$name-combined.pem"
done
cp "$work/ec-sec1.key" "$seeds/pem/ec-sec1.pem"
cp "$work/ec-params.key" "$seeds/pem/ec-params.pem"
cp "$work/rsa-pkcs1.key" "$seeds/pem/rsa-pkcs1.pem"
cat "$work/ec.pem" "$work/rsa.pem" >"$seeds/pem/chain.pem"
base64 -w0 "$work/ec.pem" >"$seeds/pem/base64-of-pem.txt"
printf 'certs/example.pem' >"$seeds/pem/path.txt"
# The harness reads the first byte as the block label (0: CERTIFICATE, with the high bit
# also followed by a PRIVATE KEY block; 1: PRIVATE KEY, 2: EC PRIVATE KEY, 3: RSA PRIVATE KEY)
# and the rest as that block's DER.
der_seed() { { printf "\\x$1"; openssl "${@:3}" -outform DER 2>/dev/null; } >"$seeds/pem/$2"; }
der_seed 80 ec-cert.der x509 -in "$work/ec.pem"
der_seed 00 rsa-cert.der x509 -in "$work/rsa.pem"
der_seed 01 ec-pkcs8.der pkcs8 -topk8 -nocrypt -in "$work/ec.key"
der_seed 01 ed-pkcs8.der pkcs8 -topk8 -nocrypt -in "$work/ed.key"
der_seed 02 ec-sec1.der ec -in "$work/ec.key"
der_seed 03 rsa-pkcs1.der rsa -in "$work/rsa-pkcs1.key"

# Configurations: the shipped one, one with every section, inline material, edge cases.
cp config/certgate.yaml "$seeds/config/certgate.yaml"
{
    cat <<'EOF'
log_level: debug
shutdown_timeout: 500ms
state_dir: state
listeners:
  - name: https
    listen: 127.0.0.1:8443
    alpn: [h2, http/1.1]
    min_tls_version: tls1.2
    max_tls_version: tls1.3
    handshake_timeout: 10s
  - listen: "[::1]:8443"
routes:
  - server_names: ["api.example.test", "*.apps.example.test"]
    upstream: 127.0.0.1:9000
    proxy_protocol: v2
    connect_timeout: 5s
  - server_names: ["*"]
    respond:
      status: 200
      headers: { x-served-by: certgate }
      body: "certgate is serving {sni}\n"
issuing:
  cache_size: 10000
  max_concurrent: 2
  rate_per_second: 200
  burst: 400
  idle_timeout: 24h
metrics:
  listen: 127.0.0.1:9100
validity:
  interval: 1h
  notify:
    - webhook: http://127.0.0.1:9999/hook
      timeout: 5s
      retries: 3
    - command: ["/usr/local/bin/cert-alert", "--team", "edge"]
control:
  socket: state/control.sock
  mode: "0600"
  max_message_bytes: 4194304
certificates:
  example:
    tls_cert: certs/example.pem
    tls_key: certs/example.key
    domains: "example.test,www.example.test"
    buffer_days: 14
    remark: main site
    create_if_missing: true
  dev-ca:
    tls_cert: state/ca.pem
    tls_key: state/ca.key
    is_ca: true
    is_default: true
    domains: ["*.dev.test", "*", 127.0.0.1, "::1"]
    leaf_names: wildcard
    leaf_validity_days: 30
  inline:
    tls_cert: |
EOF
    sed 's/^/      /' "$work/ec.pem"
    printf '    tls_key: %s\n' "$(base64 -w0 "$work/ec.key")"
} >"$seeds/config/full.yaml"
printf '' >"$seeds/config/empty.yaml"
printf '{}\n' >"$seeds/config/flow.yaml"
printf 'listeners:\n  - listen: 127.0.0.1:8443\n    min_tls_version: tls1.3\n    max_tls_version: tls1.2\nlistners: []\n' >"$seeds/config/errors.yaml"
printf 'anchors: &a {listen: "0.0.0.0:1"}\nlisteners: [*a, *a]\ncertificates: {x: {domains: 3}}\n' >"$seeds/config/anchors.yaml"

# Server names and patterns ("pattern NUL name" is matched).
i=0
for name in example.com API.Example.COM. "*.example.com" "*" 127.0.0.1 "::1" "[::1]" xn--bcher-kva.example \
    " padded.example.com " "a..b" "-lead.example" "trail-.example" "under_score.example" "*.*.example" \
    "$(printf 'a%.0s' {1..63}).example" "$(printf 'abc.%.0s' {1..63})com" "bücher.example"; do
    printf '%s' "$name" >"$seeds/sni/name-$i"
    i=$((i + 1))
done
printf '*.example.com\0www.example.com' >"$seeds/sni/match-wildcard"
printf 'Example.COM\0example.com.' >"$seeds/sni/match-exact"

# CertificateEntry, protobuf binary by hand: field 1 name, 2 tls_cert, 3 tls_key, 4 domains,
# 5 is_default, 6 is_ca, 7 acme, 8 buffer_days, 9 remark, 10 leaf_names, 11 leaf_validity_days.
pb_string() { # field-number text: a length-delimited field (text under 128 octets)
    printf "\\x$(printf '%02x' $(($1 << 3 | 2)))\\x$(printf '%02x' ${#2})%s" "$2"
}
{
    pb_string 1 example; pb_string 2 certs/example.pem; pb_string 3 certs/example.key
    pb_string 4 example.test; pb_string 4 '*.example.test'; printf '\x28\x01'
    pb_string 7 letsencrypt; printf '\x40\x0e'; pb_string 9 'main site'
} >"$seeds/control/entry"
{
    pb_string 1 dev-ca; pb_string 2 state/ca.pem; pb_string 3 state/ca.key; pb_string 4 '*'
    printf '\x30\x01'; pb_string 10 wildcard; printf '\x58\x1e'
} >"$seeds/control/issuer"
{ pb_string 1 bad; pb_string 10 sideways; } >"$seeds/control/bad-leaf-names"
{ pb_string 1 big; printf '\x40\xff\xff\xff\xff\x0f\x58\xff\xff\xff\xff\x0f'; } >"$seeds/control/max-numbers"
printf '' >"$seeds/control/empty"

# --- run --------------------------------------------------------------------------------

failed=()
for target in $targets; do
    mkdir -p "Fuzz/corpus/$target"
    dict=()
    [ -f "Fuzz/$target.dict" ] && dict=("-dict=Fuzz/$target.dict")
    echo "fuzz.sh: $target for ${seconds}s"
    status=0
    # SWIFT_BACKTRACE=enable=no: the Swift runtime's backtracer would take the crash signal
    # before libFuzzer's handler, and no crash input would be written.
    CERTGATE_FUZZ_TARGET="$target" SWIFT_BACKTRACE=enable=no nice -n 15 "$fuzzer" \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="Fuzz/crashes/$target-" "${dict[@]}" \
        "Fuzz/corpus/$target" "$seeds/$target" >"$logs/$target.log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units|^stat::peak_rss_mb' "$logs/$target.log" | sed 's/^/  /' || true
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "fuzz.sh: $target FAILED (exit $status); the end of $logs/$target.log:" >&2
        tail -n 60 "$logs/$target.log" >&2
        grep -o "Test unit written to .*" "$logs/$target.log" >&2 || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]} (inputs in Fuzz/crashes/; reproduce with CERTGATE_FUZZ_TARGET=<target> $fuzzer <file>)" >&2
    exit 1
fi
echo "fuzz.sh: no crash, timeout or out-of-memory in: $targets"
}

main "$@"
