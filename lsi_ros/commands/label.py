"""``lsi label``: label the cached generated faces with the ported face-api networks."""

import argparse
import sys

from lsi_ros.training import seeds


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "label",
        help="gender, age, expression and 68 landmarks of the cached faces (face-api port) -> labels file",
        description="Runs the torch port of @vladmandic/face-api (lsi_ros.evaluation.face_analysis) on the "
        "faces of `lsi data` (training seeds and the held-out range from "
        f"{seeds.HELD_OUT_SEED_START}) and writes labels.safetensors next "
        "to them. The weights are fetched once with `npm pack` (--fetch) into ~/.cache/lsi_ros/face-api. "
        "--check writes the portrait check figure (astronaut, Grace Hopper: box, landmarks, age, gender).",
    )
    parser.add_argument("--fetch", action="store_true", help="fetch the face-api weights with npm if missing")
    parser.add_argument("--generator", default="mobilestylegan", choices=("mobilestylegan", "dcgan"))
    parser.add_argument("--train", type=int, default=8448, help="training faces to label (default 8448)")
    parser.add_argument("--held-out", type=int, default=2048, help="held-out faces to label (default 2048)")
    parser.add_argument(
        "--seeds",
        action="append",
        default=[],
        type=seed_range,
        metavar="FIRST:COUNT",
        help="also label these cached seeds (repeatable), e.g. 24832:50432, the faces m32, m64 and m256 "
        "never saw, on which `lsi attributes --fit-estimates` fits their boundaries",
    )
    parser.add_argument(
        "--relabel", action="store_true", help="label every face again (default: keep the labels on file)"
    )
    parser.add_argument("--data-dir", default=None, help="cache folder of `lsi data`")
    parser.add_argument("--batch", type=int, default=64, help="faces per forward pass (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--check", default="", metavar="PNG", help="only write the portrait check figure to PNG"
    )
    parser.set_defaults(func=main)


def seed_range(text: str) -> tuple[int, int]:
    """FIRST:COUNT -> (first, count), for argparse."""
    first, sep, count = text.partition(":")
    try:
        if not sep or int(count) < 1 or int(first) < 0:
            raise ValueError
        return int(first), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:COUNT with COUNT >= 1, got {text!r}") from None


def main(args) -> int:
    import torch

    from lsi_ros.evaluation import face_analysis, face_labels
    from lsi_ros.training import data

    torch.set_num_threads(args.threads)
    try:
        if args.fetch:
            print(f"face-api weights in {face_analysis.fetch_face_api()}")
        analyzer = face_analysis.FaceAnalyzer()
    except face_analysis.FaceApiMissingError as error:
        print(f"lsi label: {error}", file=sys.stderr)
        return 1
    if args.check:
        results = face_labels.check_portraits(analyzer, args.check)
        for name, result in results.items():
            print(f"{name}: {result}")
        return 0
    try:
        ranges = [(0, args.train), (data.HELD_OUT_SEED_START, args.held_out), *args.seeds]
        path, labelled = face_labels.label_dataset(
            analyzer, args.generator, ranges, args.data_dir, batch=args.batch, relabel=args.relabel
        )
    except FileNotFoundError as error:  # faces not generated yet
        print(f"lsi label: {error}", file=sys.stderr)
        return 1
    names = ", ".join(f"{first}..{first + count - 1}" for first, count in ranges)
    print(f"labels of seeds {names} in {path} ({labelled} labelled now, the others were on file)")
    return 0
