#!/usr/bin/env python3
"""fdatasync latency of three ways to write a journal, on the disk holding DIR (default: .):
append (the file grows: ext4 commits size and blocks to its own journal before the data is
durable), zeroed (overwrite a file written with zeros beforehand: keel's preallocated
segments), fallocate (overwrite space fallocate reserved: unwritten extents, converted at the
sync). 3,000 writes of 20 kB each, fdatasync after each. Usage: fsync-probe.py [DIR] [ROUNDS]"""
import os, time, sys

DIR = sys.argv[1] if len(sys.argv) > 1 else "."
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
def run(mode, n=3000, size=20000):
    path = os.path.join(DIR, f"fsync-probe-{mode}")
    if os.path.exists(path): os.remove(path)
    fd = os.open(path, os.O_RDWR|os.O_CREAT)
    if mode == "zeroed":
        z = b"\0"*(1<<20)
        for _ in range((n*size >> 20)+2): os.write(fd, z)
        os.fsync(fd); os.lseek(fd, 0, 0)
    elif mode == "fallocate":
        os.posix_fallocate(fd, 0, n*size + (1<<20)); os.fsync(fd)
    buf = b"x"*size
    lat = []
    for i in range(n):
        t = time.perf_counter()
        os.write(fd, buf); os.fdatasync(fd)
        lat.append(time.perf_counter()-t)
    os.close(fd); os.remove(path)
    lat.sort()
    q = lambda p: lat[min(len(lat)-1, int(p*len(lat)))]*1e3
    print(f"{mode:10} p50 {q(.5):.3f} p90 {q(.9):.3f} p99 {q(.99):.3f} p99.9 {q(.999):.3f} max {lat[-1]*1e3:.2f} ms  mean {sum(lat)/len(lat)*1e3:.3f}")
for r in range(ROUNDS):
    for m in ["append","zeroed","fallocate"]:
        run(m)
