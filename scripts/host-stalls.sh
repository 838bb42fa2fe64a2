#!/usr/bin/env bash
# How long this machine takes its CPUs away from a thread that should be running, whatever the
# thread does: the floor under P4's tail that no engine can go below (docs/benchmarks.md,
# nineteenth session).
#
# cyclictest (Debian rt-tests) runs one SCHED_FIFO thread at priority 90 per CPU, pinned,
# waking every 200 us; a wake-up late by L means that CPU was away (the hypervisor ran
# something else, or the kernel did not let go) for about L. Twice: with the machine idle, and
# with a SCHED_IDLE spinner on every CPU (the vCPUs never halt, as under load; the spinners
# yield to the probe at once, so only what is above the guest shows). It does not touch
# /dev/cpu_dma_latency (--laptop): keel does not either, and polling idle changes what the
# host does.
#
# For each CPU it prints the percentiles of the lateness, how many stalls of 1 ms and 5 ms or
# more a minute, and the share of the time that lies more than 1 ms and 5 ms inside a stall:
# work arriving then waits longer than that, whatever the engine. If the second share is above
# 0.1%, P4's p99.9 < 5 ms cannot be met on this machine at that time; if the first is above
# 1%, neither can its p99 < 1 ms. The steal counter of /proc/stat is printed beside it.
#
# Usage: scripts/host-stalls.sh [SECONDS]   (each of the two runs; default 20; root, for
#        SCHED_FIFO; installs rt-tests when missing)
set -euo pipefail
seconds="${1:-20}"
case "$seconds" in ''|*[!0-9]*|0) echo "SECONDS must be a whole number of at least 1: $seconds" >&2; exit 2;; esac
if ! command -v cyclictest >/dev/null 2>&1; then
  echo "== installing rt-tests (cyclictest)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rt-tests >/dev/null
fi
cpus=$(nproc)
work="$(mktemp -d)"
spinners=()
cleanup() {
  for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

steal_ticks() { awk '/^cpu / {print $9; exit}' /proc/stat; }

probe() { # label
  local before after
  before=$(steal_ticks)
  # A histogram of 1 us buckets up to 100 ms; anything longer is counted as an overflow.
  cyclictest --mlockall --threads="$cpus" --affinity="0-$((cpus - 1))" --priority=90 \
    --interval=200 --duration="$seconds" --quiet --histogram=100000 --laptop \
    >"$work/histogram" 2>"$work/errors" || { cat "$work/errors" >&2; exit 1; }
  after=$(steal_ticks)
  python3 - "$work/histogram" "$seconds" "$1" "$(( (after - before) * 1000 / $(getconf CLK_TCK) ))" <<'PY'
import sys
path, seconds, label, steal_ms = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
rows, overflows, maxima = [], None, None
for line in open(path):
    if line.startswith("# Histogram Overflows:"):
        overflows = [int(x) for x in line.split(":")[1].split()]
    elif line.startswith("# Max Latencies:"):
        maxima = [int(x) for x in line.split(":")[1].split()]
    elif line[:1].isdigit():
        fields = [int(x) for x in line.split()]
        rows.append((fields[0], fields[1:]))
cpus = len(rows[0][1])
overflows = overflows or [0] * cpus
print(f"{label} ({seconds:g} s, steal counter {steal_ms} ms over all CPUs):")
for cpu in range(cpus):
    total = sum(counts[cpu] for _, counts in rows) + overflows[cpu]
    def percentile(q):
        seen = 0
        for latency, counts in rows:
            seen += counts[cpu]
            if seen >= q * total:
                return f"{latency} us"
        return "> 100 ms"
    def stalls(at_least):
        return sum(c[cpu] for l, c in rows if l >= at_least) + overflows[cpu]
    def inside(beyond):
        # An overflow is counted as 100 ms: a lower bound.
        late = sum(max(0, l - beyond) * c[cpu] for l, c in rows) + overflows[cpu] * (100_000 - beyond)
        return 100 * late / 1e6 / seconds
    per_minute = 60 / seconds
    print(f"  cpu{cpu}: p50 {percentile(0.5)}, p99 {percentile(0.99)}, p99.9 {percentile(0.999)}, "
          f"max {maxima[cpu] if maxima else '?'} us; stalls a minute >= 1 ms {stalls(1000) * per_minute:.0f}, "
          f">= 5 ms {stalls(5000) * per_minute:.0f}; time > 1 ms into a stall {inside(1000):.3f}%, "
          f"> 5 ms into one {inside(5000):.3f}%")
PY
}

echo "== host stalls: cyclictest, SCHED_FIFO 90, every 200 us on each of $cpus CPUs"
probe "idle"
for cpu in $(seq 0 $((cpus - 1))); do
  # SCHED_IDLE (chrt -i 0): runs only when nothing else wants the CPU.
  taskset -c "$cpu" chrt -i 0 sh -c 'while :; do :; done' &
  spinners+=("$!")
done
probe "busy (a SCHED_IDLE spinner on every CPU)"
