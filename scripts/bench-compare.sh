#!/usr/bin/env bash
# Side-by-side reference run on this machine, in one go (docs/benchmarks.md):
#   1. the disk's fsync rate (pg_test_fsync, Debian postgresql-15),
#   2. Redis in memory and with appendfsync always (redis-benchmark -t set -P 64 -c 8), run
#      again right after each round of (3) so that each round's ratios are against the mean of
#      the Redis runs just before and just after it,
#   1b. the disk's fdatasync latency percentiles (what an ack after fsync cannot beat),
#   3. keel load closed loop against keel serve (its own process, a fresh data directory for
#      each run) with comparable concurrency,
#   4. keel load open loop at half of (3)'s one-tenant rate (latency percentiles), on the disk
#      and again with the journal on tmpfs (the engine's and pipeline's own tail), then both
#      again with the latency path in SCHED_FIFO where the kernel grants it, and with the
#      journal alone on the disk, each with the time the hypervisor stole during it; then the
#      floor an ideal group commit has at that rate, and the host's own stalls (cyclictest,
#      scripts/host-stalls.sh: what no engine can go below),
# then the ratios keel / Redis. Servers (Redis and keel serve) listen on loopback only and are
# stopped by PID.
# With ROUNDS > 1, (2) and (3) alternate ROUNDS times (Redis, keel, Redis, keel, ..., Redis) and
# the verdict on P3 is the median round's: these VMs drift by 10 to 20% within minutes, more
# than P3's margin, so a single pair can land either side of it.
# Usage: scripts/bench-compare.sh [SECONDS [ROUNDS]]   (installs its Debian packages when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
rounds="${2:-1}"
case "$rounds" in ''|*[!0-9]*|0) echo "ROUNDS must be a whole number of at least 1: $rounds" >&2; exit 2;; esac
work="$(mktemp -d -p "$PWD" keel-compare-XXXXXX)"
pids=()
pids_cleanup_shm=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -f "$work/keel-servers" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$work/keel-servers"
  fi
  rm -rf "$work"
  if [ -n "$pids_cleanup_shm" ]; then rm -rf "$pids_cleanup_shm"; fi
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
if ! need redis-server /usr/bin/redis-server || ! need redis-benchmark /usr/bin/redis-benchmark || [ ! -x /usr/lib/postgresql/15/bin/pg_test_fsync ]; then
  echo "== installing redis-server, redis-tools, postgresql-15 (pg_test_fsync)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools postgresql-15 >/dev/null
fi

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -r)"
echo "== 1. disk: pg_test_fsync (8 kB writes, fdatasync)"
fsync=$(/usr/lib/postgresql/15/bin/pg_test_fsync -s 3 -f "$work/pgtest" | awk '/^ +fdatasync/ {print $2; exit}')
echo "fdatasync: ${fsync} ops/s"
echo "== 1b. disk: fdatasync latency (20 kB appends, one sync every 2 ms, 8 s): the floor under P4"
python3 - "$work/fsync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
latencies, end = [], time.time() + 8
while time.time() < end:
    os.write(fd, b"x" * 20000)
    started = time.perf_counter(); os.fdatasync(fd); latencies.append(time.perf_counter() - started)
    time.sleep(0.002)
latencies.sort(); n = len(latencies)
q = lambda p: latencies[min(n - 1, int(n * p))] * 1e3
print(f"fdatasync latency over {n} syncs: p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, p99.9 {q(0.999):.2f} ms, max {latencies[-1] * 1e3:.2f} ms")
PY

redis_rate() { # port requests -> SET/s
  redis-benchmark -h 127.0.0.1 -p "$1" -t set -P 64 -c 8 -n "$2" -q 2>/dev/null | tr '\r' '\n' | awk '/^SET:/ {print $2}' | tail -1
}
start_redis() { # port dir extra-args...
  local port="$1" dir="$2"; shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --dir "$dir" --daemonize no "$@" >"$dir/log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis on $port did not start" >&2; exit 1
}

echo "== 2. Redis"
start_redis 6390 "$work/redis-memory" --appendonly no
start_redis 6391 "$work/redis-aof" --appendonly yes --appendfsync always
redis_pair() { # -> "in-memory fsync-always" SET/s, printed as it goes
  local memory aof
  memory=$(redis_rate 6390 3000000)
  aof=$(redis_rate 6391 1000000)
  echo "Redis in memory: ${memory} SET/s, appendfsync always: ${aof} SET/s" >&2
  echo "$memory $aof"
}
cargo build --release -q
keel=./target/release/keel
# One `keel serve` per run, as a broker deploys it: its own process on a loopback port, a
# fresh data directory (under DIR), TENANTS tenants with the shipped instruments and accounts
# (the demo tenant alone for one), the run's KEEL_* settings for both it and the load; then
# stopped by PID (SIGINT: it drains and syncs every tenant).
keel_port=7391
keel_run() { # DIR TENANTS [VAR=value...] -- keel load arguments... -> the load's JSON
  local parent="$1" count="$2"; shift 2
  local settings=(); while [ "$1" != "--" ]; do settings+=("$1"); shift; done; shift
  local dir names=() secrets=() secret server
  dir="$(mktemp -d -p "$parent" keel-serve-XXXXXX)"
  if [ "$count" -gt 1 ]; then
    for i in $(seq "$count"); do
      secret=$("$keel" tenant create "load$i" --data-dir "$dir/data" | sed -n 's/.*stored hashed): //p')
      names+=("load$i"); secrets+=("$secret")
    done
  fi
  env "${settings[@]}" KEEL_DATA_DIR="$dir/data" KEEL_LISTEN="127.0.0.1:$keel_port" KEEL_METRICS_LISTEN= \
    "$keel" serve >"$dir/log" 2>&1 &
  # (Called in a command substitution, a subshell: the PID goes to a file the cleanup reads.)
  server=$!; echo "$server" >>"$work/keel-servers"
  for _ in $(seq 300); do
    grep -q '^keel serving' "$dir/log" && break
    kill -0 "$server" 2>/dev/null || break # it stopped: a refused setting, say (its log says)
    sleep 0.1
  done
  grep -q '^keel serving' "$dir/log" || { echo "keel serve did not start:" >&2; cat "$dir/log" >&2; exit 1; }
  if [ "$count" -le 1 ]; then
    names=(demo); secrets=("$(sed -n 's/.*stored hashed): //p' "$dir/log")")
  fi
  env "${settings[@]}" KEEL_CREDENTIAL="$(IFS=,; echo "${secrets[*]}")" "$keel" load \
    --address "127.0.0.1:$keel_port" --tenant "$(IFS=,; echo "${names[*]}")" "$@" || true
  kill -INT "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$dir"
}
rate() { python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["achieved_per_s"]))' "$1"; }
redis_runs=("$(redis_pair)")
keel_ones=(); keel_twos=()
for round in $(seq "$rounds"); do
  echo "== 3. keel serve loaded by keel load (closed loop, 8 connections, batches of 500, ack after fsync), round $round of $rounds"
  one=$(keel_run "$work" 1 -- --seconds "$seconds" --connections 8 --in-flight 2 --batch 500 --json)
  two=$(keel_run "$work" 2 -- --seconds "$seconds" --connections 8 --in-flight 2 --batch 500 --json)
  keel_ones+=("$(rate "$one")"); keel_twos+=("$(rate "$two")")
  echo "keel, 1 tenant: ${keel_ones[-1]} instructions/s"
  echo "keel, 2 tenants: ${keel_twos[-1]} instructions/s"
  # These VMs drift by 10 to 20% over minutes: Redis again right after keel, and the ratios
  # against the mean of the Redis runs on either side, so that a drift shows instead of
  # skewing one side.
  echo "== 2. Redis again after round $round"
  redis_runs+=("$(redis_pair)")
done

echo "== 4. keel open loop at half the 1-tenant closed-loop rate (P4: p99 < 1 ms, p99.9 < 5 ms)"
keel_one=$(printf '%s\n' "${keel_ones[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
half=$(( keel_one / 2 ))
echo "(half of ${keel_one}/s, the median round's one-tenant rate)"
open_loop() { # DIR [VAR=value...] -> the run's JSON (keel serve's data directory under DIR)
  local parent="$1"; shift
  keel_run "$parent" 1 "$@" -- --seconds "$seconds" --connections 4 --batch 100 --rate "$half" --json
}
# Each run with the time the hypervisor took from the machine during it (steal, all CPUs): a run
# that lost much more than 4g's figures was loaded on a busy host.
report_open() {
  python3 - "$1" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); l = d["batch_latency_us"]
print(f"offered {d['offered_per_s']:.0f}/s, achieved {d['achieved_per_s']:.0f}/s: p50 {l['p50']} us, "
      f"p99 {l['p99']} us, p99.9 {l['p999']} us, max {l['max']} us; host steal {d['host_steal_ms']} ms")
print(f"worst batch latency in each second (us): {d['max_latency_us_per_second']}")
print(f"host steal in each second (ms):          {d['host_steal_ms_per_second']}")
PY
}
report_open "$(open_loop "$work")"
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm="$(mktemp -d -p /dev/shm keel-compare-XXXXXX)"
  pids_cleanup_shm="$shm"
  echo "== 4b. the same with the journal on tmpfs (fdatasync free): keel's own tail, without the disk's"
  report_open "$(open_loop "$shm")"
fi
# The latency path in SCHED_FIFO (docs/architecture.md, "Scheduling classes"): needs root or
# CAP_SYS_NICE (the load's pacer too); skipped where the kernel refuses it.
rt_open=$(open_loop "$work" KEEL_REALTIME_PRIORITY=10 2>/dev/null) || rt_open=""
if [ -n "$rt_open" ]; then
  echo "== 4c. the disk run with KEEL_REALTIME_PRIORITY=10 (shards, journal writers, sessions in SCHED_FIFO)"
  report_open "$rt_open"
  if [ -n "$shm" ]; then
    echo "== 4d. the tmpfs run with KEEL_REALTIME_PRIORITY=10"
    report_open "$(open_loop "$shm" KEEL_REALTIME_PRIORITY=10)"
  fi
  echo "== 4e. the disk run in real time with the journal alone on the disk (no segment preallocation, no snapshot in the run)"
  report_open "$(open_loop "$work" KEEL_REALTIME_PRIORITY=10 KEEL_JOURNAL_PREALLOCATE=false KEEL_SNAPSHOT_INTERVAL=1000000000)"
else
  echo "== 4c/4d skipped: the real-time class is not granted here (KEEL_REALTIME_PRIORITY needs CAP_SYS_NICE)"
fi

echo "== 4f. the floor: an ideal group commit of 130-byte records at that rate, nothing else running (scripts/sync-floor.py)"
TMPDIR="$work" python3 scripts/sync-floor.py --rate "$half" --seconds "$seconds"

echo "== 4g. the host's own stalls (scripts/host-stalls.sh): what no engine can go below"
# Needs SCHED_FIFO (root or CAP_SYS_NICE): without it, said and skipped, the ratios still come.
scripts/host-stalls.sh 20 || echo "(4g skipped: cyclictest could not run here)"

echo "== ratios against Redis's mean of the runs before and after each round (P3 targets: >= 2.0 x fsync-always, >= 0.5 x in-memory)"
python3 - "${redis_runs[*]}" "${keel_ones[*]}" "${keel_twos[*]}" <<'PY'
import statistics, sys
redis = [float(x) for x in sys.argv[1].split()]
pairs = list(zip(redis[0::2], redis[1::2]))  # (in memory, fsync always), one per Redis run
ones = [float(x) for x in sys.argv[2].split()]
twos = [float(x) for x in sys.argv[3].split()]
rows = {"1 tenant": [], "2 tenants": []}
for round, (one, two) in enumerate(zip(ones, twos)):
    memory = (pairs[round][0] + pairs[round + 1][0]) / 2
    aof = (pairs[round][1] + pairs[round + 1][1]) / 2
    for label, keel in (("1 tenant", one), ("2 tenants", two)):
        rows[label].append((keel / aof, keel / memory))
        print(f"round {round + 1}: keel {label} / Redis fsync-always: {keel / aof:.2f}   keel {label} / Redis in memory: {keel / memory:.2f}")
if len(ones) > 1:
    for label, ratios in rows.items():
        aof_ratio = statistics.median(r[0] for r in ratios)
        memory_ratio = statistics.median(r[1] for r in ratios)
        met = sum(1 for a, m in ratios if a >= 2.0 and m >= 0.5)
        print(f"median of {len(ratios)} rounds, keel {label}: {aof_ratio:.2f} x fsync-always, "
              f"{memory_ratio:.2f} x in memory; both halves met in {met} of {len(ratios)} rounds")
PY
