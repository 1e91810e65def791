#!/usr/bin/env bash
# Fleet benchmark: three release certgate nodes on one throw-away PostgreSQL cluster —
# propagation latency of commits (p50/p99) and a node's catch-up after 10,000 missed
# changes (bench/fleet.py); then upsert 1 entry into 100,000 through the socket with the
# set on PostgreSQL (certgate-control-bench --postgres). Not run in CI.
#
# usage: bench/fleet.sh [ROUNDS]     (propagation rounds; default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/lib/postgresql ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography
echo "building certgate and certgate-control-bench (release)…" >&2
swift build -c release --product certgate >&2
swift build -c release --product certgate-control-bench >&2
python3 bench/fleet.py "${1:-1000}"
python3 bench/fleet_scale.py
