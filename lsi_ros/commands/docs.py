"""``lsi docs``: rewrite the results tables of README.md and docs/results.md from docs/results/*.json."""

import sys
from pathlib import Path

from lsi_ros import results_tables


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "docs",
        help="regenerate the results tables in README.md and docs/results.md from docs/results/*.json",
        description="Every table between <!-- results:NAME --> markers is generated from the results "
        "files, so the pages cannot drift from the measurements. --check only compares (exit 1 on a "
        "difference), as the tests do.",
    )
    parser.add_argument("--root", default=".", help="repository root (default: the current folder)")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a page is stale")
    parser.set_defaults(func=main)


def main(args) -> int:
    root = Path(args.root)
    if args.check:
        stale = results_tables.stale(root)
        for page in stale:
            print(f"lsi docs: {page} differs from docs/results/*.json (run `lsi docs`)", file=sys.stderr)
        return 1 if stale else 0
    for page in results_tables.write(root):
        print(f"rewrote {page}")
    return 0
