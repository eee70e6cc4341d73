"""Generate a valid AUS "IC Daily Export" TXT file for benchmarks.

    python benchmarks/gen_aus.py OUT.TXT --bills N [--bid 123] [--seed 7]

The file name should follow {BID}_{YYYYMMDD}_{BillType}.TXT (e.g. 123_20261101_UB.TXT)
for map_aus to accept it. About 2.5 detail lines per bill: 250,000 bills ~ 165 MB.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from icbsim.aus_files import write_file


def count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="file to write (e.g. 123_20261101_UB.TXT)")
    ap.add_argument("--bills", type=int, required=True, help="number of bills")
    ap.add_argument("--bid", default="123", help="biller BID (default 123)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = ap.parse_args(argv)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_file(args.out, args.bills, bid=args.bid, seed=args.seed)
    elapsed = time.perf_counter() - start
    size = args.out.stat().st_size
    lines = count_lines(args.out)
    print(
        f"{args.out}: {args.bills:,} bills, {size:,} bytes ({size / 2**20:.1f} MiB), "
        f"{lines:,} lines (header + {lines - 2:,} detail + trailer), {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
