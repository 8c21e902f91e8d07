"""``lsi patterns``: learn a pattern set whose measurements pass on who a real person is as well as
what the generator's faces are (lsi_ros.training.readout)."""

import json
import sys
import time
from pathlib import Path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "patterns",
        help="learn a pattern set from real photos' identity and generated faces' latents (no generator "
        "in the loop, so large batches fit a CPU); give it an encoder with `lsi train --patterns-from`",
        description="Starts from a model's patterns and learns them, shown binary with a straight-through "
        "gradient, together with two small read-out networks on the measurements (photon flux "
        "--photon-flux): one reads face-api's descriptor of UTKFace training-split photos and their "
        "mirror images, one the latents of the model's own generated training faces (`lsi data` cache). "
        "Writes the pattern set (--output, a pattern set file with its own pattern_set_id) and a report "
        "(--report): the training curve, the pixels that changed, and the read-outs' scores on held-out "
        "people (same person, rank-1) and held-out generated faces (latent error). The read-outs are "
        "discarded; the camera's encoder for the new patterns is trained with `lsi train --patterns-from "
        "FILE`. Held-out UTKFace people only score, never train.",
    )
    parser.add_argument("--start", default="m128", help="model whose patterns the new ones grow from")
    parser.add_argument(
        "--identity-photos", type=int, default=100_000, help="UTKFace training-split photos (default all)"
    )
    parser.add_argument("--generated", type=int, default=6144, help="the start model's own training faces")
    parser.add_argument("--held-out", type=int, default=1024, help="held-out UTKFace people to score on")
    parser.add_argument("--generated-held-out", type=int, default=512, help="held-out generated faces")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256, help="photos and generated faces, each")
    parser.add_argument("--lr", type=float, default=1e-3, help="read-outs' peak learning rate")
    parser.add_argument("--pattern-lr", type=float, default=2e-3, help="patterns' peak learning rate")
    parser.add_argument("--photon-flux", type=float, default=200.0)
    parser.add_argument(
        "--learn-from",
        nargs="*",
        default=["identity", "latent"],
        choices=("identity", "latent"),
        help="losses whose gradient reaches the patterns (none: the start patterns stay, a reference)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir", type=Path, help="`lsi data`'s folder of generated faces (default its cache)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", type=Path, required=True, help="pattern set file (.safetensors)")
    parser.add_argument("--report", type=Path, help="JSON report (default: beside --output)")
    parser.set_defaults(func=main)


def main(args) -> int:
    import numpy as np
    import torch

    from lsi_ros.evaluation import real_faces
    from lsi_ros.evaluation.face_analysis import FaceAnalyzer
    from lsi_ros.evaluation.identity import identity_per_face, identity_scores
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics.patterns import learned_patterns, save_pattern_set
    from lsi_ros.training import data, readout
    from lsi_ros.training.finetune import generated_training_data, photo_scenes, utkface_training_photos

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    model = load_model(find_model(args.start))
    side = model.pattern_set.resolution[0]
    analyzer = FaceAnalyzer()
    try:
        train = utkface_training_photos(analyzer, args.identity_photos, resolution=side)
    except FileNotFoundError as err:
        print(f"lsi patterns: {err}", file=sys.stderr)
        return 2
    mirrored = np.ascontiguousarray(train.images[:, :, ::-1])
    box = real_faces.framed_face_box(analyzer, train.images[:64])
    descriptors = np.concatenate(
        [real_faces.read_faces(analyzer, images, box).descriptors for images in (train.images, mirrored)]
    )
    photos = torch.cat([photo_scenes(train.images, side), photo_scenes(mirrored, side)])
    del mirrored
    generated = generated_training_data(model, args.generated, args.data_dir)
    latents = readout.normalised_latents(model.encoder, generated.latents)
    scenes = photo_scenes(generated.images, side)
    del generated
    config = readout.ReadoutConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        pattern_lr=args.pattern_lr,
        photon_flux=args.photon_flux,
        learn_from=tuple(args.learn_from),
        seed=args.seed,
    )
    base = torch.from_numpy(model.pattern_set.matrix()).float()
    heads, patterns, curve = readout.train_readout(
        photos, torch.from_numpy(descriptors).float(), scenes, latents, base, config
    )
    del photos, scenes

    held_out = real_faces.real_face_set(analyzer, utkface=args.held_out, canada=0)
    truth = real_faces.read_faces(
        analyzer, held_out.images, real_faces.framed_face_box(analyzer, held_out.images[:64])
    ).descriptors
    read = readout.read_out(
        heads["identity"], patterns, photo_scenes(held_out.images, side), args.photon_flux, seed=1
    )
    test = generated_training_data(model, args.generated_held_out, args.data_dir, data.HELD_OUT_SEED_START)
    latent_read = readout.read_out(
        heads["latent"], patterns, photo_scenes(test.images, side), args.photon_flux, seed=2
    )
    true_latents = readout.normalised_latents(model.encoder, test.latents)
    changed = readout.pixels_changed(patterns, base)
    binary = patterns.binary().numpy().reshape(-1, side, side).astype(bool)
    pattern_set = learned_patterns(
        binary,
        model_id=args.output.stem,
        meta={
            "learnt_from": list(config.learn_from),
            "started_from": model.pattern_set.pattern_set_id,
            "pixels_changed": round(changed, 4),
            "identity_photos": len(train.images),
            "generated_faces": len(latents),
        },
    )
    path = save_pattern_set(pattern_set, args.output)
    report = {
        "command": "lsi patterns " + " ".join(sys.argv[2:]),
        "pattern_set_id": pattern_set.pattern_set_id,
        "started_from": {"model_id": model.model_id, "pattern_set_id": model.pattern_set.pattern_set_id},
        "pixels_changed": round(changed, 4),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "faces": {
            "identity_photos": len(train.images),
            "mirrored": True,
            "generated": len(latents),
            "held_out_people": len(truth),
            "held_out_generated": len(true_latents),
        },
        "held_out_readout": {
            **identity_scores(*identity_per_face(read, truth)),
            "rank1_among": len(truth),
            "generated_latent_error": readout.latent_error(latent_read, true_latents),
        },
        "curve": curve,
        "seconds": round(time.monotonic() - started),
    }
    report_path = args.report or path.with_suffix(".json")
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path} ({pattern_set.pattern_set_id}, {changed:.1%} of pixels changed) and {report_path}")
    print(json.dumps(report["held_out_readout"]))
    return 0
