#!/usr/bin/env python3
"""Data for the P6 memory measurement (docs/benchmarks.md, "P6 for the server"): an account
list and a trade file that open one position per (account, live future) pair, 1,000,000 in
all by default.

    scripts/p6-data.py OUT_DIR [POSITIONS] [BUSINESS_DATE]

Writes OUT_DIR/accounts.csv and OUT_DIR/trades.csv. Futures of the shipped instrument master
whose last trading day is on or after BUSINESS_DATE (default: today, UTC) are used; each trade
is a buy of 1 at a price on the contract's tick."""
import csv
import datetime
import os
import sys
from decimal import Decimal

out = sys.argv[1]
positions = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
date = sys.argv[3] if len(sys.argv) > 3 else datetime.datetime.now(datetime.timezone.utc).date().isoformat()
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(root, "examples", "instruments.csv")) as f:
    rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
futures = [r for r in rows if r["kind"] == "future" and r["last_trade_date"] >= date]
accounts = -(-positions // len(futures))
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "accounts.csv"), "w") as f:
    f.write("id,firm,kind,position_mode\n")
    f.writelines(f"P6-{n:06d},KEELCLR,customer,net\n" for n in range(accounts))
header = "business_date,type,report_id,target,account,instrument,side,quantity,price,trade_date,venue,executing_firm,clearing_firm,give_up_to,position_effect,group,allocations\n"
with open(os.path.join(out, "trades.csv"), "w") as f:
    f.write(header)
    for n in range(positions):
        future = futures[n % len(futures)]
        price = Decimal(future["tick_size"]) * 1000
        f.write(f"{date},new,P6-{n:07d},,P6-{n // len(futures):06d},{future['id']},buy,1,{price},{date},{future['exchange']},KEELCLR,KEELCLR,,,,\n")
print(f"{accounts} accounts x {len(futures)} futures: {positions} trades in {out}", file=sys.stderr)
