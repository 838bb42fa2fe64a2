#!/usr/bin/env bash
# Long crash campaign for the journal: ROUNDS rounds (default 200) of a child process appending
# batches and printing what is durable, killed with SIGKILL at a random moment; after each, the
# journal is reopened and every reported sequence must be present and intact.
# Usage: scripts/crash-test.sh [ROUNDS]   (figures go in docs/reliability.md)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-200}"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, $rounds rounds"
KEEL_CRASH_ROUNDS="$rounds" cargo test --release -p keel-journal --test crash -- --nocapture kill_9 2>&1 \
  | grep -E "crash test:|test result|panicked"
