"""``lsi``: the offline tools of lsi_ros in one command. ``lsi <subcommand> --help`` for each."""

import argparse
import importlib
import sys

# Subcommands, in the order a newcomer meets them; each lives in lsi_ros/commands/<name>.py.
SUBCOMMANDS = (
    "run",
    "data",
    "train",
    "finetune",
    "eval",
    "label",
    "attributes",
    "calibrate",
    "bench",
    "docs",
    "smoke",
    "bag",
)


def build_parser(names=SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsi",
        description="Latent Space Imaging tools: simulate, train, evaluate, benchmark. The nodes run "
        "with `ros2 launch lsi_ros <file>.launch.py`.",
    )
    subparsers = parser.add_subparsers(title="subcommands", metavar="<subcommand>", required=True)
    for name in names:
        importlib.import_module(f"lsi_ros.commands.{name}").add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen subcommand's module is imported; each imports its heavy parts when it runs.
    chosen = argv[:1] if argv and argv[0] in SUBCOMMANDS else SUBCOMMANDS
    args = build_parser(chosen).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
