"""``lsi``: the offline tools of lsi_ros in one command. ``lsi <subcommand> --help`` for each."""

import argparse
import ctypes
import ctypes.util
import importlib
import sys

# Subcommands, in the order a newcomer meets them; each lives in lsi_ros/commands/<name>.py.
SUBCOMMANDS = (
    "run",
    "data",
    "train",
    "patterns",
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


# glibc mallopt parameters, and the values the offline tools run with.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
RETAINED_MALLOC = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: (1 << 31) - 1, M_TOP_PAD: 1 << 28}


def retain_freed_memory() -> bool:
    """Keep freed tensor memory in the process for reuse (glibc only; False elsewhere).

    By default glibc gives every large freed block back to the kernel, so each training or evaluation
    step maps its activations afresh and pays a page fault per 4 KiB: on a small CPU that kernel time
    can outweigh the arithmetic of a generator step. Retaining them costs at most the peak of one
    step's memory, which the process holds anyway."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(libc.mallopt(option, ctypes.c_int(size)) == 1 for option, size in RETAINED_MALLOC.items())
    except (OSError, AttributeError):
        return False


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    retain_freed_memory()
    # Only the chosen subcommand's module is imported; each imports its heavy parts when it runs.
    chosen = argv[:1] if argv and argv[0] in SUBCOMMANDS else SUBCOMMANDS
    args = build_parser(chosen).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
