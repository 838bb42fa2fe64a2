#!/usr/bin/env python3
"""The open-loop latency floor this disk sets for an ideal group commit.

P4 asks for p99 < 1 ms and p99.9 < 5 ms from intended send to durable acknowledgement. No
engine can acknowledge a batch before the sync that covers it returns, so this script measures
what a journal writer doing nothing else gets: batches of `--batch` records of `--bytes` bytes
"arrive" at the offered rate (their intended send times are computed, never late: no
coordinated omission), and one writer loop appends everything that has arrived (direct I/O,
whole 4 KiB blocks, into a preallocated file, as keel's journal does) and calls fdatasync.
A batch's latency is the end of the sync that covered it minus its intended send time.

If this floor misses P4 at keel's rate and bytes per command, so will keel on this disk, and
what moves it is the disk or fewer bytes, not the engine.

`--extra-mb-per-s N` adds a companion writing N MB/s of other data to the same disk in
256 KiB direct writes, each synced (as keel's segment preallocation and snapshots do): the
writer's tail as the disk's total write load grows.

Usage: scripts/sync-floor.py [--rate 324000] [--bytes 130] [--batch 100] [--seconds 10]
       [--dir /tmp] [--buffered] [--prealloc zeros|fallocate|none] [--extra-mb-per-s 0] [--json]
"""

import argparse
import json
import mmap
import os
import sys
import threading
import time

BLOCK = 4096


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(p / 100.0 * len(sorted_values)))
    return sorted_values[index]


def extra_load(path, mb_per_s, direct, stop):
    """Writes `mb_per_s` of other data to `path` in synced 256 KiB steps until `stop`."""
    step = 256 << 10
    buffer = mmap.mmap(-1, step)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0))
    try:
        offset = 0
        start = time.monotonic()
        while not stop.is_set():
            os.pwrite(fd, buffer, offset)
            os.fdatasync(fd)
            offset += step
            ahead = start + offset / (mb_per_s * 1e6) - time.monotonic()
            if ahead > 0:
                stop.wait(ahead)
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=324_000, help="records per second offered")
    parser.add_argument("--bytes", type=int, default=130, help="journal bytes per record")
    parser.add_argument("--batch", type=int, default=100, help="records per client batch")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--buffered", action="store_true", help="no O_DIRECT")
    parser.add_argument(
        "--prealloc",
        choices=("zeros", "fallocate", "none"),
        default="zeros",
        help="the file written into: zero-filled ahead (keel's segments), fallocated, or grown by appends",
    )
    parser.add_argument("--extra-mb-per-s", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    batch_bytes = args.bytes * args.batch
    batches_per_s = args.rate / args.batch
    total_batches = int(batches_per_s * args.seconds)
    size = (total_batches * batch_bytes // BLOCK + 2) * BLOCK
    path = os.path.join(args.dir, f"sync-floor-{os.getpid()}.dat")
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
    direct = not args.buffered and hasattr(os, "O_DIRECT")
    fd = os.open(path, flags)
    try:
        if args.prealloc == "zeros":
            # Written zeros, as keel's segment preallocation does: the measured syncs carry
            # data only, no block allocation.
            zeros = b"\0" * (1 << 20)
            written = 0
            while written < size:
                written += os.write(fd, zeros[: min(len(zeros), size - written)])
        elif args.prealloc == "fallocate":
            # Allocated but unwritten extents: each first write converts some (metadata).
            os.posix_fallocate(fd, 0, size)
        os.fsync(fd)
        os.close(fd)
        fd = os.open(path, os.O_RDWR | (os.O_DIRECT if direct else 0))
        # A page-aligned buffer of recognisable bytes (direct I/O needs alignment).
        buffer = mmap.mmap(-1, size + BLOCK)
        buffer.write(bytes(range(256)) * ((size + BLOCK) // 256))

        stop = threading.Event()
        companion = None
        if args.extra_mb_per_s > 0:
            companion = threading.Thread(
                target=extra_load,
                args=(os.path.join(args.dir, f"sync-floor-{os.getpid()}.extra"), args.extra_mb_per_s, direct, stop),
            )
            companion.start()
        latencies = []
        writes = []
        syncs = []
        done = 0  # batches durable
        durable_bytes = 0
        start = time.monotonic()
        while done < total_batches:
            now = time.monotonic() - start
            arrived = min(total_batches, int(now * batches_per_s) + 1)
            if arrived == done:
                time.sleep(max(0.0, done / batches_per_s - now))
                continue
            end = arrived * batch_bytes
            # Rewrite the partial last block, as an appending direct-I/O writer does.
            first = durable_bytes // BLOCK * BLOCK
            last = (end + BLOCK - 1) // BLOCK * BLOCK
            view = memoryview(buffer)[first:last]
            write_start = time.monotonic()
            os.pwrite(fd, view, first)
            view.release()
            sync_start = time.monotonic()
            writes.append(sync_start - write_start)
            os.fdatasync(fd)
            finished = time.monotonic() - start
            syncs.append(finished - (sync_start - start))
            for batch in range(done, arrived):
                latencies.append(finished - batch / batches_per_s)
            done = arrived
            durable_bytes = end
        elapsed = time.monotonic() - start
        stop.set()
        if companion is not None:
            companion.join()
    finally:
        os.close(fd)
        os.unlink(path)

    latencies.sort()
    writes.sort()
    syncs.sort()
    ms = lambda s: round(s * 1000.0, 3)
    result = {
        "offered_per_s": args.rate,
        "bytes_per_record": args.bytes,
        "batch": args.batch,
        "seconds": round(elapsed, 3),
        "direct_io": direct,
        "prealloc": args.prealloc,
        "extra_mb_per_s": args.extra_mb_per_s,
        "mb_per_s": round(durable_bytes / elapsed / 1e6, 1),
        "syncs": len(syncs),
        "write_ms": {p: ms(percentile(writes, float(p))) for p in ("50", "99", "99.9")}
        | {"max": ms(writes[-1] if writes else 0.0)},
        "sync_ms": {p: ms(percentile(syncs, float(p))) for p in ("50", "99", "99.9")}
        | {"max": ms(syncs[-1] if syncs else 0.0)},
        "batch_latency_ms": {p: ms(percentile(latencies, float(p))) for p in ("50", "99", "99.9")}
        | {"max": ms(latencies[-1] if latencies else 0.0)},
    }
    if args.json:
        json.dump(result, sys.stdout)
        print()
    else:
        w, s, b = result["write_ms"], result["sync_ms"], result["batch_latency_ms"]
        print(
            f"{args.rate:,.0f} records/s x {args.bytes} B ({result['mb_per_s']} MB/s, "
            f"{'direct' if direct else 'buffered'}, prealloc {args.prealloc}, "
            f"other writes {args.extra_mb_per_s:g} MB/s), "
            f"{result['syncs']} syncs in {elapsed:.1f} s"
        )
        print(f"  pwrite         p50 {w['50']} ms  p99 {w['99']} ms  p99.9 {w['99.9']} ms  max {w['max']} ms")
        print(f"  fdatasync      p50 {s['50']} ms  p99 {s['99']} ms  p99.9 {s['99.9']} ms  max {s['max']} ms")
        print(f"  batch latency  p50 {b['50']} ms  p99 {b['99']} ms  p99.9 {b['99.9']} ms  max {b['max']} ms")


if __name__ == "__main__":
    main()
