"""``lsi finetune``: adapt a model's encoder to real images or recorded captures (patterns frozen, or
learning too on real photos with ``--pattern-lr``)."""

import json
import sys
import time
from pathlib import Path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model's encoder on real images or a recorded bag (patterns stay as they are, "
        "unless --pattern-lr)",
        description="Targets come from a latent teacher: each real image (or reference-camera image) is "
        "inverted into the generator's latent by optimisation (cached per image in --cache-dir). Inputs are "
        "either simulated measurements of the images through the model's own patterns and the photodiode "
        "model (--images), or the measured frames of a bag recorded by bag_recorder / `ros2 bag record`, "
        "paired with a co-located camera's images by header stamp (--bag). Only the encoder learns; the "
        "output is a normal model file with the same pattern_set_id (the DMD keeps its patterns). Scenes "
        "are split into training and held-out sets; held-out latent error and PSNR/SSIM before and after "
        "are printed and stored in the model's metadata (<output>.json). --utkface N instead trains on the "
        "first N faces of UTKFace's training split with no teacher: each photo is measured, encoded, decoded "
        "by the frozen generator and compared with the photo (image L2, identity and perceptual terms, "
        "--losses), in W or W+ (--latent-space); held-out faces are never used, evaluate with "
        "`lsi eval --real`. With --pattern-lr the patterns learn from the photos too: the output is a new "
        "pattern set (a new pattern_set_id, which the DMD must be given).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images",
        metavar="DIR",
        help="folder of real images (face crops work best), or 'portraits': the real face photos that ship "
        "offline (scikit-image astronaut, matplotlib Grace Hopper, 2 tiny LFW faces)",
    )
    source.add_argument("--bag", metavar="PATH", help="rosbag2 folder (MCAP) with measurements and reference")
    source.add_argument(
        "--utkface",
        type=int,
        metavar="N",
        help="the first N faces of UTKFace's training split (FFHQ-framed, cached), trained through the "
        "generator with image and identity losses",
    )
    source.add_argument(
        "--framing-jitter",
        type=float,
        nargs="+",
        metavar="V",
        help="the generator's first --generated training faces (their latents the targets, no teacher), "
        "each measured through a grid off by a random framing error, as the locator frames a face: "
        "SHIFT_PX SCALE ROLL_DEG [FRACTION] (e.g. 4 0.06 4 0.75: within 4 sampling pixels, 6 %%, 4 "
        "degrees, three faces in four); the encoder that framing:=auto is for",
    )
    parser.add_argument(
        "--generated",
        type=int,
        default=0,
        metavar="N",
        help="--utkface: also train on the generator's first N training faces (`lsi data`), under the same "
        "losses, so generated-face quality holds while the encoder learns real people; --framing-jitter: "
        "the faces to train on (default 0)",
    )
    parser.add_argument(
        "--latent-space",
        choices=("w", "w+"),
        default="w+",
        help="--utkface: encode into W, or W+ (per-layer offsets grown at zero from the model's W encoder)",
    )
    parser.add_argument(
        "--offset-rank",
        type=int,
        default=0,
        help="--utkface, W+: the grown offset head passes through this many features (a smaller file; "
        "default 0, the full head)",
    )
    parser.add_argument(
        "--losses",
        default="paper",
        help="--utkface: loss weights, 'paper' (image L2 1.0, identity 0.5, perceptual 0.1) or e.g. "
        "'l2=1,identity=0.5,perceptual=0'; 'contrast=0.1' adds to the paper's terms an InfoNCE that tells "
        "each decoded face apart from the other training photos' people",
    )
    parser.add_argument(
        "--mirror",
        action="store_true",
        help="--utkface: mirror each face drawn left-right half the time (its measurements are those of "
        "the mirrored face)",
    )
    parser.add_argument(
        "--pattern-lr",
        type=float,
        default=0.0,
        metavar="LR",
        help="--utkface: the patterns learn too, starting from the model's, at this peak learning rate "
        "(e.g. 1e-3; default 0: the patterns stay as they are)",
    )
    parser.add_argument(
        "--measurements-topic", default="/measurements", help="bag: lsi_ros/Measurements topic"
    )
    parser.add_argument("--reference-topic", default="/camera/image", help="bag: sensor_msgs/Image topic")
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        help="bag: largest stamp difference of a frame and its reference image (default: "
        "lsi_ros.training.finetune.DEFAULT_TOLERANCE_S, 20 ms)",
    )
    parser.add_argument(
        "--split-block-s",
        type=float,
        help="bag: frames go to the training or held-out set in whole blocks of this many seconds, since "
        "neighbouring frames see the same scene (default: DEFAULT_SPLIT_BLOCK_S, 5 s)",
    )
    parser.add_argument("--model", default="m128", help="model name or file to start from (default m128)")
    parser.add_argument(
        "--output", required=True, help="model file to write, e.g. models/m128-ft.safetensors"
    )
    parser.add_argument("--steps", type=int, default=300, help="encoder training steps (default 300)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    parser.add_argument("--batch-size", type=int, default=32, help="(--utkface: 8 is plenty on a CPU)")
    parser.add_argument(
        "--held-out", type=float, default=0.25, help="fraction of scenes held out (default 0.25)"
    )
    parser.add_argument(
        "--teacher-steps", type=int, default=100, help="GAN inversion steps per image (default 100)"
    )
    parser.add_argument(
        "--teacher-init",
        choices=("encoder", "mean"),
        default="encoder",
        help="inversion start: the model's encoding of the image's noiseless measurements, or the mean w",
    )
    parser.add_argument(
        "--teacher-exit",
        choices=("exact", "fast"),
        default="exact",
        help="MobileStyleGAN 256² exit the teacher (or --utkface training) optimises through (fast: ~2.5x "
        "quicker, approximate)",
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="images: simulated noisy frames per image (default 4)"
    )
    parser.add_argument("--photon-flux", type=float, default=200.0, help="images: simulated light level")
    parser.add_argument("--cache-dir", default=None, help="teacher cache (default ~/.cache/lsi_ros/teacher)")
    parser.add_argument("--report", default=None, help="also write the results as JSON here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.set_defaults(func=main)


def main(args) -> int:
    """Runs the fine-tuning; bad input (missing folder, bag, topic or model; no pairs) is one clear line."""
    from lsi_ros.models.checkpoint import ModelFileError
    from lsi_ros.scenes import SceneSourceError

    try:
        return run(args)
    except (FileNotFoundError, ModelFileError, SceneSourceError, ValueError) as error:
        print(f"lsi finetune: error: {error}", file=sys.stderr)
        return 2


def run(args) -> int:
    import numpy as np
    import torch

    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics import PhotodiodeModel
    from lsi_ros.scenes import folder_scenes, offline_faces
    from lsi_ros.training import finetune, teacher

    sidecar = Path(args.output).with_suffix(".json")
    if args.report and Path(args.report).resolve() == sidecar.resolve():
        raise ValueError(
            f"--report {args.report} is where the model's metadata copy goes beside --output; name the "
            f"report otherwise, e.g. {sidecar.with_suffix('.report.json')}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    model = load_model(find_model(args.model))
    if args.utkface is not None:
        return run_photos(args, model, started)
    if args.framing_jitter is not None:
        return run_framing(args, model, started)
    generator = finetune.generator_for(model)
    teacher_generator = generator
    if args.teacher_exit != "exact" and generator.generator_id.startswith("mobilestylegan"):
        teacher_generator = finetune.generator_for(model, early_exit=args.teacher_exit)
    latent_teacher = teacher.LatentTeacher(
        teacher_generator,
        model,
        teacher.TeacherConfig(steps=args.teacher_steps, init=args.teacher_init),
        args.cache_dir or teacher.default_cache_dir(),
    )
    if args.images:
        scenes = offline_faces() if args.images == "portraits" else folder_scenes(args.images)
        images = {name: rgb / np.float32(255) for name, rgb in scenes}
        photodiode = PhotodiodeModel().with_photon_flux(args.photon_flux)
        pairs = finetune.pairs_from_images(model, latent_teacher, images, photodiode, args.repeats, args.seed)
    else:
        tolerance_s = finetune.DEFAULT_TOLERANCE_S if args.tolerance_ms is None else args.tolerance_ms / 1e3
        split_s = finetune.DEFAULT_SPLIT_BLOCK_S if args.split_block_s is None else args.split_block_s
        pairs = finetune.pairs_from_bag(
            model,
            latent_teacher,
            args.bag,
            args.measurements_topic,
            args.reference_topic,
            tolerance_s,
            split_block_s=split_s,
        )
        counted = ("frames", "paired", "unmatched_frames", "unmatched_references", "refused_frames")
        print("bag pairs: " + ", ".join(f"{k} {pairs.source[k]}" for k in counted))
    config = finetune.FinetuneConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        held_out_fraction=args.held_out,
        seed=args.seed,
    )
    result = finetune.finetune(model, pairs, generator, config)
    result.model.info["finetune"]["teacher"] = {
        "generator_id": teacher_generator.generator_id,
        **latent_teacher.context["config"],
    }
    path = save_and_report(args, model, result.model, started, "finetune")
    print(f"held-out scenes: {', '.join(result.held_out_scenes)}")
    for label, row in (("before", result.before), ("after", result.after), ("teacher", result.teacher)):
        latent = f"latent MSE {row['latent_mse']:.4f}  " if "latent_mse" in row else ""
        print(
            f"{label:8s} {latent}PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}  "
            f"RGB PSNR {row['psnr_rgb']:.2f} dB"
        )
    print(
        f"wrote {path} (pattern set {result.model.pattern_set.pattern_set_id}), {path.with_suffix('.json')}"
    )
    return 0


def run_photos(args, model, started: float) -> int:
    """``--utkface N``: image and identity losses on real photos of the training split, no teacher."""
    from lsi_ros.evaluation.face_analysis import FaceAnalyzer
    from lsi_ros.training import finetune, losses

    if args.utkface < 1:
        raise ValueError(f"--utkface needs at least one face, not {args.utkface}")
    config = finetune.PhotoFinetuneConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        latent_space=args.latent_space,
        offset_rank=args.offset_rank,
        losses=args.losses,
        seed=args.seed,
        mirror=args.mirror,
        pattern_lr=args.pattern_lr,
    )
    weights = config.loss_weights()  # a bad --losses fails before the photos are framed
    analyzer = FaceAnalyzer()
    generator = finetune.generator_for(model)
    if args.teacher_exit != "exact" and generator.generator_id.startswith("mobilestylegan"):
        generator = finetune.generator_for(model, early_exit=args.teacher_exit)
    photos = finetune.utkface_training_photos(analyzer, args.utkface, generator.resolution)
    generated = finetune.generated_training_faces(model, args.generated, generator.resolution)
    face_loss = losses.FaceLoss(analyzer) if weights.needs_faces else None
    tuned, history = finetune.finetune_on_photos(
        model, photos.images, generator, config, face_loss, generated=generated
    )
    path = save_and_report(args, model, tuned, started, "photo_finetune")
    first, last = history[0], history[-1]
    print(
        f"training loss {first['total']:.4f} at step {first['step']} -> {last['total']:.4f} at {last['step']}"
    )
    print(
        f"wrote {path} ({tuned.encoder.latent_space}, pattern set {tuned.pattern_set.pattern_set_id}); "
        "evaluate on held-out people with `lsi eval --real --models <it> ...`"
    )
    return 0


def run_framing(args, model, started: float) -> int:
    """``--framing-jitter``: generated training faces measured through random framing errors."""
    from lsi_ros.training import finetune
    from lsi_ros.training.augment import FramingJitter

    if args.generated < 1:
        raise ValueError("--framing-jitter trains on generated faces: give --generated N (e.g. 6144)")
    FramingJitter.from_config(args.framing_jitter)  # a bad jitter fails before the faces are read
    config = finetune.FramingFinetuneConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        jitter=tuple(args.framing_jitter),
        seed=args.seed,
    )
    faces = finetune.generated_training_data(model, args.generated)
    tuned, history = finetune.finetune_for_framing(model, faces, config)
    path = save_and_report(args, model, tuned, started, "framing_finetune")
    print(
        f"training loss {history[0]['train_loss']:.4f} at step {history[0]['step']} -> "
        f"{history[-1]['train_loss']:.4f} at {history[-1]['step']}"
    )
    print(
        f"wrote {path} (pattern set {tuned.pattern_set.pattern_set_id}); score it behind the locator with "
        f"`lsi eval --scenes unframed --framing-model {path}`"
    )
    return 0


def save_and_report(args, model, tuned, started: float, section: str) -> Path:
    """Write the tuned model (weights stored as the source stores them) and, with ``--report``, its
    metadata ``section`` as JSON with the command that made it."""
    from lsi_ros.models.checkpoint import save_model

    weight_format = model.info.get("architecture", {}).get("weights", "fp16")
    path = save_model(tuned, Path(args.output), weight_format)
    if args.report:
        report = {
            "command": "lsi finetune " + " ".join(sys.argv[2:]),
            "base_model": args.model,
            "output": str(path),
            "pattern_set_id": tuned.pattern_set.pattern_set_id,
            "seconds": round(time.monotonic() - started, 1),
            **tuned.info[section],
        }
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return path
