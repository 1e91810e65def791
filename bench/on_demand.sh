#!/usr/bin/env bash
# On-demand ACME benchmark: a first handshake that obtains a certificate, a storm of 500
# random names from one client, handshakes for another name meanwhile, event-loop lag and
# memory. Against a local Pebble. Not run in CI.
#
# usage: bench/on_demand.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need() { command -v "$1" >/dev/null 2>&1; }
if ! need pebble || ! need pebble-challtestsrv; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends pebble >/dev/null
fi
python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography
echo "building certgate (release)…" >&2
swift build -c release --product certgate >&2
exec python3 bench/on_demand.py
