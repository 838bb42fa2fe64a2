#!/usr/bin/env python3
"""Time the hypervisor took from this VM (the steal column of /proc/stat), in ms per second,
summed over CPUs, for N seconds: run it beside a benchmark to see whether a tail second was
the host's. Usage: steal.py SECONDS"""
import time, sys, os
n=int(sys.argv[1]); hz=os.sysconf('SC_CLK_TCK')
def steal():
    f=open('/proc/stat').readline().split(); return int(f[8])
out=[]
prev=steal(); t0=time.time()
for sec in range(n):
    tot=0; mx=0
    for _ in range(10):
        time.sleep(0.1); s=steal(); d=s-prev; prev=s; tot+=d; mx=max(mx,d)
    out.append((tot*1000//hz, mx*1000//hz))
print("steal_ms_per_second", [o[0] for o in out])
