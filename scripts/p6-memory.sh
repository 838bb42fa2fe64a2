#!/usr/bin/env bash
# P6 (docs/benchmarks.md): the server's resident set with 1,000,000 open positions.
# Creates a tenant of 45,455 accounts x 22 live futures (scripts/p6-data.py), starts
# `keel serve` on a loopback port, sends one opening trade per position with `keel send`, and
# samples the server's VmRSS every 200 ms until the automatic snapshot at a million commands is
# written. Prints the peak (VmHWM) and the resident set at rest. Stops the server by PID.
#
#   scripts/p6-memory.sh [POSITIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
positions="${1:-1000000}"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --bin keel >/dev/null 2>&1
keel=./target/release/keel
python3 scripts/p6-data.py "$work/data" "$positions"
credential=$("$keel" tenant create big --data-dir "$work/keel-data" --accounts "$work/data/accounts.csv" | grep -oE '[0-9a-f]{32,}' | head -1)
port=$((20000 + RANDOM % 20000))
KEEL_DATA_DIR="$work/keel-data" KEEL_LISTEN="127.0.0.1:$port" KEEL_METRICS_LISTEN="" KEEL_LOG=info \
    "$keel" serve --config /nonexistent.toml 2>"$work/serve.log" >/dev/null &
server=$!
for _ in $(seq 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
echo "started: $(rss) kB"
start=$(date +%s.%N)
"$keel" send "$work/data/trades.csv" --tenant big --credential "$credential" --address "127.0.0.1:$port" | tail -2
echo "sent in $(echo "$(date +%s.%N) - $start" | bc) s: $(rss) kB"
for _ in $(seq 300); do
    grep -q "state pass done" "$work/serve.log" && break
    sleep 0.2
done
sleep 1
echo "at rest: VmRSS $(rss) kB, peak VmHWM $(awk '/^VmHWM/ {print $2}' "/proc/$server/status") kB"
grep -E "image taken|state pass done|snapshot written" "$work/serve.log" | cut -c1-200 || true
