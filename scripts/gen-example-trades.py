#!/usr/bin/env python3
"""Regenerates examples/trades.csv: a deterministic, realistic two-day drop copy for the demo
tenant (see docs/trade-file.md). Run from the repository root: python3 scripts/gen-example-trades.py"""
import csv
import random
from decimal import Decimal

random.seed(20261127)

# instrument -> (reference price, tick)
INSTRUMENTS = {
    "ESZ6": ("6050", "0.25"), "ESH7": ("6100", "0.25"), "NQZ6": ("21500", "0.25"),
    "FESXZ6": ("5650", "1"), "FDAXZ6": ("24000", "1"), "ZZ6": ("9600", "0.5"),
    "NK225Z6": ("49000", "10"), "HSIZ6": ("26000", "1"), "ZNZ6": ("112.5", "0.015625"),
    "ZBZ6": ("117", "0.03125"), "SR3Z6": ("96.5", "0.005"), "FGBLZ6": ("128.5", "0.01"),
    "RZ6": ("92", "0.01"), "JBZ6": ("135.2", "0.01"), "CLF7": ("68.5", "0.01"),
    "CLG7": ("68.8", "0.01"), "NGF7": ("4.25", "0.001"), "BF7": ("72.3", "0.01"),
    "GCG7": ("2650", "0.1"), "SIH7": ("31.5", "0.005"), "HGH7": ("4.6", "0.0005"),
    "ESZ6-C5800": ("260", "0.05"), "ESZ6-C6000": ("105", "0.05"), "ESZ6-P5800": ("30", "0.05"),
    "ESZ6-P5600": ("12.5", "0.05"), "LOF7-C70": ("1.85", "0.01"), "LOF7-P65": ("0.95", "0.01"),
    "OZNF7-C112": ("0.75", "0.015625"), "OZNF7-P110": ("0.25", "0.015625"),
    "OGBLG7-C130": ("0.85", "0.01"), "OGBLG7-P128": ("1.12", "0.01"),
}
VENUES = {"ES": "CME", "NQ": "CME", "SR": "CME", "FE": "XEUR", "FD": "XEUR", "FG": "XEUR",
          "OG": "XEUR", "ZZ": "IFEU", "RZ": "IFEU", "BF": "IFEU", "NK": "XOSE", "JB": "XOSE",
          "HS": "XHKF", "ZN": "CBOT", "ZB": "CBOT", "OZ": "CBOT", "CL": "NYMEX", "NG": "NYMEX",
          "LO": "NYMEX", "GC": "COMEX", "SI": "COMEX", "HG": "COMEX"}
ACCOUNTS = ["ACME-01", "ACME-02", "BRAVO-01", "BRAVO-02", "CAPITAL-01", "DELTA-HEDGE", "HOUSE"]
GROSS = {"BRAVO-02", "DELTA-HEDGE"}
COLUMNS = ["business_date", "type", "report_id", "target", "account", "instrument", "side",
           "quantity", "price", "trade_date", "venue", "executing_firm", "clearing_firm",
           "give_up_to", "position_effect", "group", "allocations"]

rows, trades, cancelled = [], {}, set()


def price(instrument, spread=20):
    reference, tick = (Decimal(x) for x in INSTRUMENTS[instrument])
    # Option premiums stay positive: never step further below the reference than it allows.
    ticks = random.randint(max(-spread, 1 - int(reference / tick)), spread)
    value = reference + ticks * tick
    return format(value.normalize() if value != value.to_integral() else value.quantize(1), "f")


def details(day, account, instrument=None, side=None, quantity=None):
    instrument = instrument or random.choice(list(INSTRUMENTS))
    return {
        "account": account, "instrument": instrument,
        "side": side or random.choice(["buy", "sell"]),
        "quantity": str(quantity or random.randint(1, 25)), "price": price(instrument),
        "trade_date": day, "venue": VENUES[instrument[:2]], "executing_firm": "KEELCLR",
        "clearing_firm": "KEELCLR",
        "position_effect": random.choice(["open", "close"]) if account in GROSS else "",
    }


def emit(day, kind, report_id, **fields):
    row = {column: "" for column in COLUMNS}
    row.update(business_date=day, type=kind, report_id=report_id, **fields)
    rows.append(row)
    return row


def comment(text):
    rows.append({"#": text})


for day, count in (("2026-11-25", 140), ("2026-11-27", 150)):
    tag = day[-2:]
    comment(f"business date {day}: ordinary fills")
    for n in range(count):
        report = f"D{tag}-{n + 1:04d}"
        trades[report] = emit(day, "new", report, **details(day, random.choice(ACCOUNTS)))
    comment("corrections: amends and cancels of earlier trades (by original report id)")
    targets = random.sample(sorted(set(trades) - cancelled), 20)
    for n, target in enumerate(targets[:12]):
        fields = dict(trades[target])
        fields.update(quantity=str(random.randint(1, 25)), price=price(fields["instrument"]))
        for key in ("business_date", "type", "report_id", "target", "give_up_to", "group", "allocations"):
            fields.pop(key, None)
        emit(day, "amend", f"A{tag}-{n + 1:03d}", target=target, **fields)
    for n, target in enumerate(targets[12:]):
        cancelled.add(target)
        emit(day, "cancel", f"X{tag}-{n + 1:03d}", target=target)

day = "2026-11-27"
comment("a give-up to PEERCLR, taken up into PEERCLR-01; and one refused")
emit(day, "new", "GU-0001", give_up_to="PEERCLR", **details(day, "ACME-01", "CLF7", "buy", 15))
emit(day, "new", "GU-0002", give_up_to="PEERCLR", **details(day, "ACME-02", "GCG7", "sell", 4))
emit(day, "give-up-accept", "GUA-0001", target="GU-0001", clearing_firm="PEERCLR", account="PEERCLR-01")
emit(day, "give-up-reject", "GUR-0002", target="GU-0002", clearing_firm="PEERCLR")
comment("an omnibus trade allocated across three customer accounts")
emit(day, "new", "OM-0001", allocations="ACME-01:10;BRAVO-01:12;CAPITAL-01:8",
     **details(day, "OMNI-EU", "FESXZ6", "buy", 30))
comment("an average-price group: four fills parked in APS-HOLD, then allocated at their average")
for n, (quantity, fill) in enumerate([(5, "6049.75"), (3, "6050.25"), (4, "6050.5"), (2, "6050")]):
    fields = details(day, "APS-HOLD", "ESZ6", "buy", quantity)
    fields["price"] = fill
    emit(day, "new", f"APF-{n + 1:04d}", group="APG-1127-ES", **fields)
emit(day, "average-price", "APA-0001", group="APG-1127-ES", account="APS-RESIDUAL",
     allocations="ACME-02:6;BRAVO-02:4;CAPITAL-01:4")
comment("a resubmission of an identical report: answered as a duplicate, booked once")
rows.append(dict(trades["D27-0001"]))
comment("deliberate rejects: price off tick, unknown account, amend of an unknown trade")
bad = details(day, "ACME-01", "ESZ6", "buy", 1)
bad["price"] = "6050.1"
emit(day, "new", "BAD-0001", **bad)
emit(day, "new", "BAD-0002", **details(day, "ZULU-99", "NQZ6", "sell", 2))
emit(day, "amend", "BAD-0003", target="NO-SUCH-TRADE", **details(day, "ACME-01", "ESZ6", "buy", 1))

with open("examples/trades.csv", "w", newline="") as out:
    out.write("# keel example drop copy for the demo tenant: see docs/trade-file.md\n")
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if "#" in row:
            out.write(f"# {row['#']}\n")
        else:
            writer.writerow(row)
print(f"wrote {sum('#' not in r for r in rows)} rows to examples/trades.csv")
