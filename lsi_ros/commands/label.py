"""``lsi label``: label the cached generated faces with the ported face-api networks."""

import sys

from lsi_ros.training import data


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "label",
        help="gender, age, expression and 68 landmarks of the cached faces (face-api port) -> labels file",
        description="Runs the torch port of @vladmandic/face-api (lsi_ros.evaluation.face_analysis) on the "
        "faces of `lsi data` (training seeds and the held-out range from "
        f"{data.HELD_OUT_SEED_START}) and writes labels.safetensors next "
        "to them. The weights are fetched once with `npm pack` (--fetch) into ~/.cache/lsi_ros/face-api. "
        "--check writes the portrait check figure (astronaut, Grace Hopper: box, landmarks, age, gender).",
    )
    parser.add_argument("--fetch", action="store_true", help="fetch the face-api weights with npm if missing")
    parser.add_argument("--generator", default="mobilestylegan", choices=("mobilestylegan", "dcgan"))
    parser.add_argument("--train", type=int, default=8448, help="training faces to label (default 8448)")
    parser.add_argument("--held-out", type=int, default=2048, help="held-out faces to label (default 2048)")
    parser.add_argument("--data-dir", default=None, help="cache folder of `lsi data`")
    parser.add_argument("--batch", type=int, default=64, help="faces per forward pass (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--check", default="", metavar="PNG", help="only write the portrait check figure to PNG"
    )
    parser.set_defaults(func=main)


def main(args) -> int:
    import torch

    from lsi_ros.evaluation import face_analysis, face_labels

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
        path = face_labels.label_dataset(
            analyzer, args.generator, args.train, args.held_out, args.data_dir, batch=args.batch
        )
    except FileNotFoundError as error:  # faces not generated yet
        print(f"lsi label: {error}", file=sys.stderr)
        return 1
    print(f"labels of {args.train} + {args.held_out} faces in {path}")
    return 0
