#!/usr/bin/env bash
# ACME benchmark: upsert of an acme entry -> first handshake serving the obtained
# certificate, per challenge type, against a local Pebble; handshake latency for another
# name while orders run. Not run in CI.
#
# usage: bench/acme.sh [ROUNDS]     (orders per challenge type; default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null 2>&1; }
if ! need pebble || ! need pebble-challtestsrv || ! need curl; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends pebble curl >/dev/null
fi
python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography
echo "building certgate (release)…" >&2
swift build -c release --product certgate >&2
exec python3 bench/acme.py "${1:-10}"
