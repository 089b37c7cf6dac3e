#!/usr/bin/env python3
"""Summarise a scripts/bench.sh results TSV into tables (stdlib only).

Adapted from the baselines harness's lib/stats.py (../shared/bench/ in the development setup),
with two additions: the ratio of our row to every other row of the same size, and, where a
size has METHOD_1src and METHOD_3src rows, the 3-vs-1 speedup of each METHOD.

TSV columns (no header):
  method  size_label  run  nanoseconds  bytes  peak_rss_kib  status  [note]
status is OK, FAIL or SKIP; for FAIL/SKIP the note says why.
MB = 10^6 bytes.  spread = (max - min) / median of the per-run MB/s.

usage: stats.py TSV [--ref METHOD] [--labels REGEX]
  --ref     the row the ratio column compares with (default: ours)
  --labels  only the size labels matching REGEX
"""
import argparse
import re
import statistics


def load(path, labels):
    order, ok, bad = [], {}, {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 7:
                continue
            method, label, _run, ns, nbytes, rss, status = parts[:7]
            if labels and not re.search(labels, label):
                continue
            note = parts[7] if len(parts) > 7 else ""
            key = (method, label)
            if key not in order:
                order.append(key)
            if status == "OK":
                ok.setdefault(key, []).append((int(ns), int(nbytes), int(rss or 0)))
            else:
                bad[key] = f"{status}: {note}"
    return order, ok, bad


def median_mbps(runs):
    return statistics.median(b / (ns / 1e9) / 1e6 for ns, b, _ in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tsv")
    ap.add_argument("--ref", default="ours")
    ap.add_argument("--labels", default="")
    args = ap.parse_args()
    order, ok, bad = load(args.tsv, args.labels)
    if not order:
        print("(no rows)")
        return

    ref_col = f"{args.ref}/row"
    with_ref = any(m == args.ref and ok.get((m, l)) for m, l in order)
    hdr = ("method", "size", "n", "median MB/s", "min", "max", "spread",
           "median s", "recv RSS MiB", ref_col)
    rows = []
    for key in order:
        method, label = key
        runs = ok.get(key, [])
        if not runs:
            rows.append((method, label, "0", bad.get(key, "no runs"), "", "", "", "", "", ""))
            continue
        mbps = [b / (ns / 1e9) / 1e6 for ns, b, _ in runs]
        secs = [ns / 1e9 for ns, _, _ in runs]
        med = statistics.median(mbps)
        spread = (max(mbps) - min(mbps)) / med * 100 if med else 0.0
        rss = max(r for _, _, r in runs) / 1024
        ref = ok.get((args.ref, label))
        ratio = f"{median_mbps(ref) / med:.2f}x" if ref and med else ""
        name = method + (" (!)" if key in bad else "")
        rows.append((name, label, str(len(runs)), f"{med:.0f}", f"{min(mbps):.0f}",
                     f"{max(mbps):.0f}", f"{spread:.0f}%",
                     f"{statistics.median(secs):.3f}", f"{rss:.1f}", ratio))

    normal = [r for r in rows if r[4]]
    widths = [max([len(hdr[i])] + [len(r[i]) for r in normal]) for i in range(len(hdr))]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    widths[1] = max([widths[1]] + [len(r[1]) for r in rows])

    if not with_ref:  # no row to compare with: no ratio column
        hdr, widths = hdr[:-1], widths[:-1]
        rows = [r[:-1] for r in rows]

    def fmt(r):
        return "  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                         for i, c in enumerate(r)).rstrip()

    print(fmt(hdr))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        if not r[4]:  # failed / skipped: the reason after n
            print("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                             r[2].rjust(widths[2]), r[3]]))
        else:
            print(fmt(r))
    for key in order:
        if key in bad and key in ok:
            print(f"(!) {key[0]} {key[1]}: {bad[key]}")
    if with_ref:
        print(f"{ref_col}: median MB/s of {args.ref} divided by that of the row, same size "
              f"(above 1: {args.ref} is faster)")

    # 3-vs-1 source speedups: METHOD_1src and METHOD_3src of the same size.
    lines = []
    for label in dict.fromkeys(l for _, l in order):
        for method, lab in order:
            if lab != label or not method.endswith("_1src"):
                continue
            base = method[: -len("_1src")]
            one, three = ok.get((method, label)), ok.get((base + "_3src", label))
            if one and three:
                t1 = statistics.median(ns for ns, _, _ in one) / 1e9
                t3 = statistics.median(ns for ns, _, _ in three) / 1e9
                lines.append((label, base, t1, t3))
    if lines:
        print()
        print("3 sources vs 1 (medians)")
        for label, base, t1, t3 in lines:
            print(f"  {base:<8} {label}: 1 source {t1:.2f} s, 3 sources {t3:.2f} s, speedup {t1 / t3:.2f}x")
        by_base = {(label, base): t3 for label, base, _, t3 in lines}
        for label, base, _, t3 in lines:
            other = by_base.get((label, "aria2c"))
            if base == "ours" and other:
                print(f"  ours from 3 sources: {other / t3:.2f}x the speed of aria2c from 3 ({label})")


if __name__ == "__main__":
    main()
