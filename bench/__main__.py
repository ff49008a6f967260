"""`python -m bench [--quick]`: run the benchmark suite, write bench/results.json, print a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import suite

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Digi benchmarks against a private dSpace: floor(k), propagation latency, "
                    "scale, startup, data pipelines. Definitions: bench/README.md.",
        epilog="examples:\n  python -m bench --quick\n  python -m bench --only propagation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="reduced run (fewer trials, N=100 only) in a few minutes")
    parser.add_argument("--only", action="append", choices=[s.name for s in suite.SECTIONS],
                        help="run only this section after the floor (repeatable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the results (default {DEFAULT_OUT})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp root (logs of the space, manager and workers)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record the manager and workers with py-spy during the Room→Lamp "
                             "and throughput trials; summaries in DIR/*.top.txt")
    args = parser.parse_args()
    results = suite.main(args.quick, args.out, set(args.only) if args.only else None,
                         args.profile, args.keep)
    print(results.table())
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
