#!/usr/bin/env python3
"""Summarise the runs recorded by measure.py: medians per target, and the
bitsgate/HAProxy, bitsgate/direct, bitsgate-1m/bitsgate (10^6 pins restored vs an
empty table), bitsgate/bitsgate-pingora (fast path vs Pingora's proxy) and
bitsgate-pingora/HAProxy and bitsgate/bitsgate-base (this build vs another, E2E_BASE_BIN)
ratios, paired within each round, with their median and spread (min-max
over the rounds).

Usage: report.py [--threads N] RESULTS.jsonl
  --threads N   the proxies' thread count of the run (a label only; default 1)
"""
import argparse
import json
import os
import statistics
import sys
from collections import defaultdict


def cpu_per_req(rec, key):
    cpu = rec.get(key)
    if not cpu or not rec["report"]["requests"]:
        return None
    return 1e6 * (cpu["user"] + cpu["sys"]) / rec["report"]["requests"]


# (scenario, metric label, function of a record, True when higher is better)
METRICS = [
    ("ping", "requests/s", lambda r: r["report"]["requests_per_s"], True),
    ("ping", "p50 us", lambda r: r["report"]["latency_us"]["p50"], False),
    ("ping", "p99 us", lambda r: r["report"]["latency_us"]["p99"], False),
    ("ping", "p99.9 us", lambda r: r["report"]["latency_us"]["p999"], False),
    ("ping", "proxy CPU us/req", lambda r: cpu_per_req(r, "proxy_cpu_s"), False),
    ("pingrate", "p50 us", lambda r: r["report"]["latency_us"]["p50"], False),
    ("pingrate", "p99 us", lambda r: r["report"]["latency_us"]["p99"], False),
    ("pingrate", "p99.9 us", lambda r: r["report"]["latency_us"]["p999"], False),
    ("pingrate", "proxy CPU us/req", lambda r: cpu_per_req(r, "proxy_cpu_s"), False),
    ("frag4k", "requests/s", lambda r: r["report"]["requests_per_s"], True),
    ("frag4k", "p99 us", lambda r: r["report"]["latency_us"]["p99"], False),
    ("frag4k", "proxy CPU us/req", lambda r: cpu_per_req(r, "proxy_cpu_s"), False),
    ("frag1m", "MiB/s", lambda r: r["report"]["throughput_mib_s"], True),
    ("frag1m", "p99 us", lambda r: r["report"]["latency_us"]["p99"], False),
    ("frag1m", "proxy CPU us/req", lambda r: cpu_per_req(r, "proxy_cpu_s"), False),
    ("upload8m", "uploads/s",
     lambda r: r["report"]["uploads_ok"] / r["report"]["elapsed_s"], True),
    ("upload8m", "p99 us", lambda r: r["report"]["latency_us"]["p99"], False),
    ("upload8m", "proxy CPU us/req", lambda r: cpu_per_req(r, "proxy_cpu_s"), False),
    ("tiny", "requests/s", lambda r: r["report"]["requests_per_s"], True),
    ("tiny", "p99 us", lambda r: r["report"]["latency_us"]["p99"], False),
    ("tiny", "proxy CPU us/req", lambda r: cpu_per_req(r, "proxy_cpu_s"), False),
]


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def ratio_cell(vals):
    if not vals:
        return "-"
    return f"{statistics.median(vals):.2f} ({min(vals):.2f}-{max(vals):.2f})"


# (column label, numerator target, denominator target)
RATIOS = [
    ("bitsgate/haproxy", "bitsgate", "haproxy"),
    ("bitsgate/direct", "bitsgate", "direct"),
    ("bitsgate-1m/bitsgate", "bitsgate-1m", "bitsgate"),
    ("bitsgate/bitsgate-pingora", "bitsgate", "bitsgate-pingora"),
    ("bitsgate-pingora/haproxy", "bitsgate-pingora", "haproxy"),
    ("bitsgate/bitsgate-base", "bitsgate", "bitsgate-base"),
    ("bitsgate-base/haproxy", "bitsgate-base", "haproxy"),
]
# The 10^6-pin target: requests/s within 5 % of the empty table's.
PINNED_TOLERANCE = 0.05


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("results")
    args = ap.parse_args()
    recs = [json.loads(l) for l in open(args.results) if l.strip()]
    by = defaultdict(dict)  # (scenario, round) -> target -> record
    failed = []
    for r in recs:
        if r["report"] is None or r["exit"] != 0 or r["report"]["errors"]:
            failed.append(r)
        if r["report"] is not None:
            by[(r["scenario"], r["round"])][r["target"]] = r
    targets = [t for t in ("direct", "bitsgate", "bitsgate-base", "bitsgate-pingora", "bitsgate-1m",
                            "haproxy")
               if any(t in v for v in by.values())]
    rounds = sorted({r for (_, r) in by})
    ratio_cols = [(label, num, den) for label, num, den in RATIOS
                  if num in targets and den in targets]

    head = ["scenario", "metric"] + [f"{t} (median)" for t in targets]
    head += [label for label, _, _ in ratio_cols]
    rows = []
    summary = {}
    for scen, label, f, _ in METRICS:
        per_target = defaultdict(list)
        ratios = {col: [] for col, _, _ in ratio_cols}
        for rnd in rounds:
            got = by.get((scen, rnd), {})
            vals = {t: f(rec) for t, rec in got.items()}
            for t, v in vals.items():
                if v is not None:
                    per_target[t].append(v)
            for col, num, den in ratio_cols:
                n, d = vals.get(num), vals.get(den)
                if n is not None and d:
                    ratios[col].append(n / d)
        if not per_target:
            continue
        summary[(scen, label)] = ratios
        rows.append([scen, label]
                    + [fmt(statistics.median(per_target[t])) if per_target[t] else "-"
                       for t in targets]
                    + [ratio_cell(ratios[col]) for col, _, _ in ratio_cols])

    config = (f"{args.threads} proxy thread" + ("s" if args.threads != 1 else "")
              + " (bitsgate [server] threads, HAProxy nbthread)")
    print(f"configuration: {config}")
    print(f"rounds: {len(rounds)}; ratio cells: median (min-max) of the per-round ratios")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")

    def check(key, want_higher):
        vals = summary.get(key, {}).get("bitsgate/haproxy")
        if not vals:
            return "not measured (no HAProxy)"
        m = statistics.median(vals)
        ok = m >= 1.0 if want_higher else m <= 1.0
        return f"{'MET' if ok else 'MISSED'} (median {m:.2f}x HAProxy)"

    def check_pinned():
        """bitsgate-1m within 5 % of bitsgate in every scenario, on the median
        per-round ratio of the scenario's throughput figure (requests/s, or MiB/s and
        uploads/s, which are requests/s times a constant for a fixed upload shape)."""
        found = []
        for scen, label, _, higher_better in METRICS:
            vals = summary.get((scen, label), {}).get("bitsgate-1m/bitsgate")
            if higher_better and vals:
                found.append((f"{scen} {label}", statistics.median(vals)))
        if not found:
            return "not measured (no bitsgate-1m target)"
        ok = all(m >= 1.0 - PINNED_TOLERANCE for _, m in found)
        cells = ", ".join(f"{scen} {m:.3f}x" for scen, m in found)
        return f"{'MET' if ok else 'MISSED'} (median bitsgate-1m/bitsgate: {cells})"

    threads = "one thread each" if args.threads == 1 else f"{args.threads} threads each"
    print()
    print(f"targets (bitsgate vs HAProxy, {threads}):")
    print("  Ping requests/s >= 1.0x HAProxy:  " + check(("ping", "requests/s"), True))
    print("  Ping p99 <= HAProxy's:            " + check(("ping", "p99 us"), False))
    print("  Ping p99.9 <= HAProxy's:          " + check(("ping", "p99.9 us"), False))
    rate = f"{float(os.environ.get('E2E_PING_RATE', '10000')):,g}/s"
    print(f"  Ping p99 at {rate} <= HAProxy's: " + check(("pingrate", "p99 us"), False))
    print(f"  Ping p99.9 at {rate} <= HAProxy's: " + check(("pingrate", "p99.9 us"), False))
    print("  Ping CPU per request <= HAProxy's: " + check(("ping", "proxy CPU us/req"), False))
    print("  1 MiB fragments CPU <= HAProxy's: " + check(("frag1m", "proxy CPU us/req"), False))
    print("  whole 1-byte uploads requests/s >= 1.0x: " + check(("tiny", "requests/s"), True))
    print("  whole 1-byte uploads CPU <= HAProxy's:  " + check(("tiny", "proxy CPU us/req"), False))
    print("  1 MiB fragments MiB/s >= 1.0x:    " + check(("frag1m", "MiB/s"), True))
    print("  10^6 pins requests/s within 5 % of empty table: " + check_pinned())
    if failed:
        print()
        print(f"runs with errors or a non-zero exit: {len(failed)}")
        for r in failed:
            rep = r["report"] or {}
            print(f"  round {r['round']} {r['scenario']} {r['target']}: exit {r['exit']}, "
                  f"errors {rep.get('errors')}, first_error {rep.get('first_error')}")


if __name__ == "__main__":
    main()
