"""``lsi data``: generate the (latent, face) pairs that training and evaluation use."""

import sys

from lsi_ros.training import seeds


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "data",
        help="generate training and held-out faces from fixed seeds (cached, resumable)",
        description="Faces for seeds [0, --train) and the held-out range "
        f"[{seeds.HELD_OUT_SEED_START}, +--held-out) are generated once and cached in shards of "
        f"{seeds.SHARD_SIZE} under --data-dir; interrupted runs resume where they stopped.",
    )
    parser.add_argument("--generator", default="mobilestylegan", choices=("mobilestylegan", "dcgan"))
    parser.add_argument(
        "--train",
        type=int,
        default=24832,
        help="training + validation faces (default 24832: what `lsi train` uses; label and attributes "
        "use the first 8448)",
    )
    parser.add_argument(
        "--held-out",
        type=int,
        default=2048,
        help="held-out faces (default 2048; `lsi eval` uses the first 512)",
    )
    parser.add_argument("--psi", type=float, default=seeds.DEFAULT_PSI, help="truncation psi (default 0.7)")
    parser.add_argument("--data-dir", default=None, help=f"cache folder (default {seeds.default_data_dir()})")
    parser.add_argument(
        "--export-torch",
        metavar="DIR",
        default=None,
        help="instead: write MobileStyleGAN as files torch alone runs (no OpenVINO), for rendering on a "
        "GPU machine (`lsi train --generator-export DIR`)",
    )
    parser.add_argument(
        "--export-dtype",
        choices=["float32", "float16"],
        default="float32",
        help="--export-torch: store the weights as float32 (the CPU's faces to float rounding) or "
        "float16 (half the size, for carrying; a seed's latent and face differ a little)",
    )
    parser.set_defaults(func=main)


def main(args) -> int:
    from lsi_ros.models.generators import get_generator
    from lsi_ros.training import data

    generator = get_generator(args.generator)
    if args.export_torch:
        if args.generator != "mobilestylegan":
            print(
                "lsi data: --export-torch is for mobilestylegan (the DCGAN is torch already)", file=sys.stderr
            )
            return 2
        folder = generator.export_torch(args.export_torch, args.export_dtype)
        print(f"{generator.generator_id} for torch ({args.export_dtype}) in {folder}")
        return 0
    for start, count in ((0, args.train), (data.HELD_OUT_SEED_START, args.held_out)):
        folder = data.generate(generator, args.generator, start, count, args.data_dir, args.psi)
    print(f"faces of {generator.generator_id} (psi {args.psi}) in {folder}")
    return 0
