#!/usr/bin/env bash
# Startup, reload and memory benchmark: certgate vs nginx vs HAProxy on the same N ECDSA
# P-256 certificates (one SNI name each), release builds, one server at a time; see
# bench/startup.py for what is measured. Not run in CI.
#
# usage: bench/startup.sh [COUNTS] [RUNS] [PEERS_UP_TO] [SERVERS]
#   COUNTS       comma-separated set sizes (default 100,1000,10000; add 100000 for the big one)
#   RUNS         runs per server and size, medians reported (default 3)
#   PEERS_UP_TO  nginx and HAProxy are measured up to this size (default 10000)
#   SERVERS      comma-separated, of certgate, nginx, haproxy (default all three)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${1:-100,1000,10000}
RUNS=${2:-3}
PEERS_UP_TO=${3:-10000}
SERVERS=${4:-certgate,nginx,haproxy}
WORK=${BENCH_WORK:-$(mktemp -d /tmp/certgate-startup.XXXXXX)}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need haproxy; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx haproxy >/dev/null
fi

echo "building certgate and the certificate generator (release)…" >&2
swift build -c release --product certgate >&2
swift build -c release --product certgate-gen-certs >&2

for count in ${COUNTS//,/ }; do
  if [ ! -f "$WORK/$count/names.txt" ]; then
    echo "generating $count certificates…" >&2
    .build/release/certgate-gen-certs "$count" "$WORK/$count" >&2
  fi
done
echo "measuring in $WORK (logs in each server's folder)…" >&2
python3 bench/startup.py "$WORK" "$COUNTS" "$RUNS" "$PEERS_UP_TO" "$SERVERS"
