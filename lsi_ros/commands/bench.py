"""``lsi bench``: encoder latency, decoder throughput, bytes per frame -> docs/results/bench.json."""

import json
import sys
from pathlib import Path

COMMAND = "lsi bench"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the encoder (per shipped model), the decoder and the message sizes",
        description="Runs bench/core.py from a checkout (benchmarks are not part of the test suite) and "
        "writes docs/results/bench.json.",
    )
    parser.add_argument("--output", default="docs/results/bench.json")
    parser.set_defaults(func=main)


def main(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import core

    rows = core.encoder_rows() + core.decoder_rows() + core.bytes_rows()
    results = {"rows": rows, "machine": core.machine(), "command": COMMAND}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    for row in rows:
        print(row)
    print(f"wrote {args.output}")
    return 0
