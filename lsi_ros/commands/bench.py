"""``lsi bench``: the camera's software against the DMD's frame time -> docs/results/bench.json."""

import json
import sys
from pathlib import Path

# Each suite and the kinds of rows ("what") it writes, in the file's order.
SUITES = {
    "encoder": ("encoder",),
    "decoder": ("decoder",),
    "generator": ("generator",),
    "bytes": ("bytes_per_frame",),
    "reconstruction": ("reconstruction",),
    "pipeline": ("pipeline",),
    "soak": ("soak",),
    "training": ("train-step", "data-generation", "training"),
}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bench",
        help="benchmark encoder, decoder, generator, message sizes, classical baselines and the ROS pipeline",
        description="Runs bench/ from a checkout (benchmarks are not part of the test suite) and writes "
        "rows to docs/results/bench.json. With --only, the other suites' rows already in the file are "
        "kept. 'pipeline' runs launch/sim.launch.py (one process per node) at the DMD-limited frame "
        "rate for --duration seconds; 'soak' runs it for --soak-duration seconds (30 min) and records "
        "drops, latency per node and RSS/CPU per node every --soak-every seconds (only when asked "
        "for); 'training' times training steps (1 and 2 processes, image loss) "
        "and projects the shipped models' training time (~5 min, ~4 GB). Run it on an idle machine.",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=tuple(SUITES),
        default=tuple(s for s in SUITES if s != "soak"),
        help="suites (default all but soak)",
    )
    parser.add_argument("--model", default="m128", help="model of the pipeline run (default m128)")
    parser.add_argument("--duration", type=float, default=60.0, help="pipeline window, s (default 60)")
    parser.add_argument(
        "--soak-duration", type=float, default=1800.0, help="soak window, s (default 1800: 30 min)"
    )
    parser.add_argument("--soak-every", type=float, default=30.0, help="soak sample period, s (default 30)")
    parser.add_argument("--output", default="docs/results/bench.json")
    parser.set_defaults(func=main)


def main(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import core

    suites = {
        "encoder": core.encoder_rows,
        "decoder": core.decoder_rows,
        "generator": _generator,
        "bytes": core.bytes_rows,
        "reconstruction": core.reconstruction_rows,
        "pipeline": lambda: _pipeline(args),
        "soak": lambda: _pipeline(args, soak=True),
        "training": _training,
    }
    output = Path(args.output)
    kept = json.loads(output.read_text())["rows"] if output.exists() else []
    rerun = {kind for name in args.only for kind in SUITES[name]}
    rows = [row for row in kept if not _replaced(row, rerun, args.model)]
    for name in args.only:
        new = suites[name]()
        for row in new:
            print(row)
        rows += new
    order = [kind for kinds in SUITES.values() for kind in kinds]
    rows.sort(key=lambda row: order.index(row["what"]) if row["what"] in order else len(order))
    results = {"rows": rows, "machine": core.machine(), "command": "lsi bench (or make bench)"}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def _replaced(row: dict, rerun: set, model: str) -> bool:
    """Whether this run replaces a row already in the file: its kind is rerun (a pipeline or soak
    row only by a run of the same model, so M = 128 and M = 64 rows stand side by side)."""
    if row["what"] not in rerun:
        return False
    return row["what"] not in ("pipeline", "soak") or row.get("model") == model


def _pipeline(args, soak: bool = False) -> list:
    from bench import pipeline

    if soak:
        rows = pipeline.pipeline_rows(args.model, args.soak_duration, soak_every_s=args.soak_every)
        figure = Path(args.output).parent / "soak.png"
        pipeline.soak_figure(rows[0], figure)
        print(f"wrote {figure}")
        return rows
    return pipeline.pipeline_rows(model=args.model, duration_s=args.duration)


def _generator() -> list:
    from bench import generator

    return generator.rows()


def _training() -> list:
    from bench import training_step

    return training_step.rows()
