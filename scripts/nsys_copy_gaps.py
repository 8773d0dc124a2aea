#!/usr/bin/env python3
"""Where the copy engines sat idle during a transfer, from an Nsight Systems trace.

    nsys profile --trace=cuda -o run kvtier-bench load ...
    nsys export --type sqlite -o run.sqlite run.nsys-rep
    scripts/nsys_copy_gaps.py run.sqlite [--kind d2h|h2d] [--burst-gap-ms 20]

Copies of one direction are cut into bursts (a pause longer than
--burst-gap-ms ends one: the bench's repetitions). For each burst it prints
the bytes, the span, the time the engines were busy (the union of the copies'
intervals), the achieved GB/s over the span and over the busy time, and the
longest idle gaps inside the burst with what ran on the GPU meanwhile.
"""
import argparse
import sqlite3
import sys

KINDS = {"h2d": 1, "d2h": 2}


def union_ns(intervals):
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sqlite")
    ap.add_argument("--kind", choices=sorted(KINDS), default="d2h")
    ap.add_argument("--burst-gap-ms", type=float, default=20.0)
    ap.add_argument("--min-burst-gb", type=float, default=1.0, help="skip smaller bursts")
    ap.add_argument("--gaps", type=int, default=8, help="longest gaps listed per burst")
    a = ap.parse_args()
    db = sqlite3.connect(a.sqlite)
    rows = db.execute("SELECT start, end, bytes FROM CUPTI_ACTIVITY_KIND_MEMCPY WHERE copyKind = ? "
                      "ORDER BY start", (KINDS[a.kind],)).fetchall()
    if not rows:
        sys.exit(f"no {a.kind} copies in {a.sqlite}")
    names = {}
    try:
        names = dict(db.execute("SELECT id, value FROM StringIds").fetchall())
    except sqlite3.Error:
        pass
    kernels = db.execute("SELECT start, end, shortName FROM CUPTI_ACTIVITY_KIND_KERNEL ORDER BY start").fetchall()
    bursts, cur = [], [rows[0]]
    for r in rows[1:]:
        if r[0] - max(x[1] for x in cur[-4:]) > a.burst_gap_ms * 1e6:
            bursts.append(cur)
            cur = []
        cur.append(r)
    bursts.append(cur)
    for i, b in enumerate(bursts):
        nbytes = sum(r[2] for r in b)
        if nbytes < a.min_burst_gb * 1e9:
            continue
        span = max(r[1] for r in b) - b[0][0]
        busy = union_ns([(r[0], r[1]) for r in b])
        print(f"burst {i}: {len(b)} copies, {nbytes / 1e9:.3f} GB, span {span / 1e6:.2f} ms, "
              f"busy {busy / 1e6:.2f} ms ({busy / span:.3f}), {nbytes / span:.1f} GB/s over the span, "
              f"{nbytes / busy:.1f} GB/s while busy")
        # Idle gaps: between the running end of the copies so far and the next start.
        gaps, end = [], b[0][1]
        for r in b[1:]:
            if r[0] > end:
                gaps.append((r[0] - end, end, r[0]))
            end = max(end, r[1])
        gaps.sort(reverse=True)
        total_gap = sum(g[0] for g in gaps)
        print(f"  idle: {len(gaps)} gaps, {total_gap / 1e6:.2f} ms in all")
        for g, s, e in gaps[: a.gaps]:
            during = sorted({names.get(k[2], str(k[2])) for k in kernels if k[0] < e and k[1] > s})
            print(f"    {g / 1e3:8.1f} us at +{(s - b[0][0]) / 1e6:7.2f} ms; kernels: {', '.join(during) or '-'}")


if __name__ == "__main__":
    main()
