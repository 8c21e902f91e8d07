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
    "smoke",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsi",
        description="Latent Space Imaging tools: simulate, train, evaluate, benchmark. The nodes run "
        "with `ros2 launch lsi_ros <file>.launch.py`.",
    )
    subparsers = parser.add_subparsers(title="subcommands", metavar="<subcommand>", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"lsi_ros.commands.{name}").add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
