"""``lsi attributes``: attribute boundaries in the latent space, task patterns, and the comparison table."""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from lsi_ros.commands.label import seed_range

COMMAND = "lsi attributes"
# Labelled faces --fit-estimates fits the boundaries on, less each model's own training and validation
# seeds: m32, m64 and m256 (seeds 0..24831) never saw any of them, m128 (0..49919) the last 25,344.
ESTIMATE_FACES = "24832:50432"
MIN_ESTIMATE_FACES = 1024


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "attributes",
        help="latent boundaries + task patterns for face attributes; accuracy table -> docs/results",
        description="Needs `lsi data` and `lsi label`, and for the default --fit-estimates the faces of "
        "`lsi data --train 75264` labelled by `lsi label --seeds 24832:50432`. Fits logistic-regression "
        "boundaries on the training latents (seeds 0..--train) for the labeller's binary attributes "
        "(male, smiling, age over 40) and "
        "writes them to --boundaries; scores them on the held-out faces from the true latent and from the "
        "latents of the LSI models; trains task patterns + a tiny head for each --task-attributes at "
        "--task-m and compares with Hadamard patterns + logistic regression at the same M; writes "
        "--output (JSON) and --figure.",
    )
    parser.add_argument("--generator", default="mobilestylegan", choices=("mobilestylegan", "dcgan"))
    parser.add_argument("--data-dir", default=None, help="cache folder of `lsi data`")
    parser.add_argument("--train", type=int, default=8448, help="training faces (default 8448)")
    parser.add_argument("--held-out", type=int, default=2048, help="held-out faces (default 2048)")
    parser.add_argument(
        "--models", nargs="*", default=["m32", "m64", "m128", "m256"], help="LSI models to read latents from"
    )
    parser.add_argument(
        "--estimate-boundaries",
        nargs="*",
        default=[],
        metavar="MODEL=FILE",
        help="boundaries fitted on a model's own latent estimates "
        "(experiments/device_estimate_boundaries.py), scored on that model's latents as source "
        "lsi-latent-fitted (skipped when the file is absent)",
    )
    parser.add_argument(
        "--fit-estimates",
        nargs="*",
        default=["m32", "m64", "m128", "m256"],
        metavar="MODEL",
        help="models whose boundaries are fitted here on their own estimates of the --estimate-faces "
        "(fresh photon noise) and written beside --boundaries as attributes-MODEL.safetensors (default "
        "m32 m64 m128 m256); scored as lsi-latent-fitted. Each model is fitted on the faces of that "
        f"range it never trained or validated on (at least {MIN_ESTIMATE_FACES:,}): an encoder estimates "
        "its own training faces too well for a boundary fitted there to learn how it shrinks new ones. "
        "A model may not also have an --estimate-boundaries file",
    )
    parser.add_argument(
        "--estimate-faces",
        type=seed_range,
        default=seed_range(ESTIMATE_FACES),
        metavar="FIRST:COUNT",
        help=f"labelled cached faces --fit-estimates fits on, less each model's own training seeds "
        f"(default {ESTIMATE_FACES}: faces m32, m64 and m256 never saw, and m128 the last 25,344 of them; "
        "`lsi data --train FIRST+COUNT` and `lsi label --seeds FIRST:COUNT` make them)",
    )
    parser.add_argument(
        "--decoded",
        nargs="*",
        default=["m128"],
        metavar="MODEL",
        help="models whose latents are also decoded by the generator and read by the labeller, as source "
        "lsi-decoded (about 8 min per model on 2 cores; default m128)",
    )
    parser.add_argument(
        "--task-attributes",
        nargs="*",
        default=["male", "smiling", "age_over_40"],
        help="attributes to train task patterns for (default: all three)",
    )
    parser.add_argument(
        "--task-m", type=int, nargs="*", default=[4, 8, 16, 32], help="M of the task patterns"
    )
    parser.add_argument("--task-steps", type=int, default=8000, help="training steps per task model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--boundaries", default="models/attributes.safetensors", help="boundaries file to write"
    )
    parser.add_argument(
        "--task-model", default="models/task-male-m4.safetensors", help="where the male M=4 task model goes"
    )
    parser.add_argument("--output", default="docs/results/attributes.json")
    parser.add_argument("--figure", default="docs/results/attributes.png")
    parser.set_defaults(func=main)


def seen_seeds(model) -> list[tuple[int, int]]:
    """The (first, last) seed ranges ``model`` trained and validated on, from its file's metadata."""
    return [tuple(model.info[key]) for key in ("training_seeds", "validation_seeds") if key in model.info]


def unseen(seeds, seen: list[tuple[int, int]]):
    """Which of ``seeds`` lie outside every (first, last) range in ``seen``: the faces a model never saw."""
    import numpy as np

    seeds = np.asarray(seeds)
    mask = np.ones(len(seeds), bool)
    for first, last in seen:
        mask &= (seeds < first) | (seeds > last)
    return mask


def seed_runs(seeds) -> str:
    """Sorted seeds as their contiguous runs, e.g. "seeds 0..9, 20..29"."""
    import numpy as np

    seeds = np.asarray(seeds)
    breaks = np.flatnonzero(np.diff(seeds) != 1) + 1
    return "seeds " + ", ".join(f"{run[0]}..{run[-1]}" for run in np.split(seeds, breaks) if len(run))


def fit_estimate_boundaries(
    models: dict,
    keep: dict,
    labels: dict,
    faces: tuple,
    photodiode,
    boundaries_path,
    data_dir=None,
    chunk=1024,
) -> dict:
    """Boundaries fitted on each model's own estimates of the labelled faces ``keep[name]`` selects
    in ``faces`` (generator, first seed, count), with fresh noise, saved as attributes-<name> beside
    the others and named by its pattern set; returns their paths. The faces are read ``chunk`` at a
    time, once for all models, so tens of thousands of them are never held at once."""
    import numpy as np
    from tqdm import tqdm

    from lsi_ros.evaluation import downstream
    from lsi_ros.evaluation.latent_imaging import encode_faces
    from lsi_ros.models.attributes import save_boundaries
    from lsi_ros.training import data

    generator, first, count = faces
    parts = {name: [] for name in models}
    generator_id = ""
    for start in tqdm(range(0, count, chunk), desc="estimating fit faces", unit="chunk"):
        batch = data.load(generator, first + start, min(chunk, count - start), data_dir)
        generator_id = batch.generator_id
        images = batch.images.astype(np.float32) / 255.0
        for name, model in models.items():
            rows = keep[name][start : start + chunk]
            if rows.any():
                parts[name].append(encode_faces(model, images[rows], photodiode, seed=100 + start))
    paths = {}
    for name, model in models.items():
        chosen = {attribute: value[keep[name]] for attribute, value in labels.items()}
        fitted = downstream.fit_boundaries(np.concatenate(parts[name]), chosen, generator_id)
        fitted = replace(fitted, pattern_set_id=model.pattern_set.pattern_set_id, model_id=model.model_id)
        paths[name] = save_boundaries(
            fitted, Path(boundaries_path).with_name(f"attributes-{name}.safetensors")
        )
    return paths


def main(args) -> int:
    import numpy as np
    import torch

    from lsi_ros.evaluation import downstream, face_labels
    from lsi_ros.evaluation.face_analysis import FaceAnalyzer
    from lsi_ros.evaluation.latent_imaging import decode_faces, encode_faces
    from lsi_ros.models.attributes import load_boundaries, save_boundaries
    from lsi_ros.models.checkpoint import ModelFileError, load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model
    from lsi_ros.models.task import save_task_model
    from lsi_ros.optics import PhotodiodeModel
    from lsi_ros.optics.patterns import hadamard_split_patterns
    from lsi_ros.training import data

    torch.set_num_threads(args.threads)
    timings = {}
    malformed = [item for item in args.estimate_boundaries if "=" not in item]
    if malformed:
        print(
            f"lsi attributes: --estimate-boundaries takes MODEL=FILE, got {malformed[0]!r}", file=sys.stderr
        )
        return 2
    estimate_boundaries = dict(item.split("=", 1) for item in args.estimate_boundaries)
    both = sorted(set(estimate_boundaries) & set(args.fit_estimates))
    if both:
        print(
            f"lsi attributes: {both[0]} has an --estimate-boundaries file and is in --fit-estimates",
            file=sys.stderr,
        )
        return 2
    first, count = args.estimate_faces
    estimate_seeds = np.arange(first, first + count)
    outside = sorted(set(args.fit_estimates) - set(args.models))
    if outside:
        print(f"lsi attributes: {outside[0]} is in --fit-estimates but not in --models", file=sys.stderr)
        return 2
    try:
        models = {name: load_model(find_model(name)) for name in args.models}
    except (FileNotFoundError, ModelFileError) as error:
        print(f"lsi attributes: {error}", file=sys.stderr)
        return 1
    fit_models = {name: models[name] for name in args.fit_estimates}
    fit_faces = {}
    for name, model in fit_models.items():
        seen = seen_seeds(model)
        fit_faces[name] = unseen(estimate_seeds, seen)
        if fit_faces[name].sum() < MIN_ESTIMATE_FACES:
            inside = [f"{a}..{b}" for a, b in seen if a < first + count and first <= b]
            why = f"it trained or validated on seeds {', '.join(inside)}, so " if inside else ""
            print(
                f"lsi attributes: {name}: {why}only {fit_faces[name].sum()} faces of --estimate-faces "
                f"{first}:{count} are faces it never saw (at least {MIN_ESTIMATE_FACES} needed)",
                file=sys.stderr,
            )
            return 2
    try:
        train = data.load(args.generator, 0, args.train, args.data_dir)
        test = data.load(args.generator, data.HELD_OUT_SEED_START, args.held_out, args.data_dir)
        train_labels = face_labels.load_labels(args.generator, train.seeds, args.data_dir)
        test_labels = face_labels.load_labels(args.generator, test.seeds, args.data_dir)
        if fit_models:  # labels come only with cached faces: checks the whole range before any work
            estimate_y = face_labels.binary_attributes(
                face_labels.load_labels(args.generator, estimate_seeds, args.data_dir)
            )
    except (FileNotFoundError, ValueError) as error:  # faces or labels missing: says which command to run
        print(f"lsi attributes: {error}", file=sys.stderr)
        return 1
    train_y = face_labels.binary_attributes(train_labels)
    test_y = face_labels.binary_attributes(test_labels)
    photodiode = PhotodiodeModel()
    noise = {"noise": photodiode.label}
    rows = []

    start = time.perf_counter()
    boundaries = downstream.fit_boundaries(train.latents, train_y, train.generator_id)
    save_boundaries(boundaries, args.boundaries)
    timings["boundaries_s"] = round(time.perf_counter() - start, 1)
    rows += downstream.latent_rows(boundaries, test.latents, test_y, "true-latent", None)
    summary = {
        "names": list(boundaries.names),
        "attributes": {name: face_labels.ATTRIBUTES[name] for name in boundaries.names},
        "labeller": face_labels.FACE_API_PACKAGE,
        "generator_id": train.generator_id,
        "latent": "W (512), p = sigmoid(weight . w + bias)",
        "training_seeds": [int(train.seeds[0]), int(train.seeds[-1])],
        "held_out_true_latent": {r["attribute"]: {"accuracy": r["accuracy"], "ece": r["ece"]} for r in rows},
        "command": COMMAND,
    }
    Path(args.boundaries).with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    landmarks_from = downstream.fit_landmarks(train.latents, train_labels["landmarks"])
    rows.append(
        downstream.nme_row(None, "true-latent", landmarks_from(test.latents), test_labels["landmarks"])
    )
    mean_shape = np.broadcast_to(train_labels["landmarks"].mean(0), test_labels["landmarks"].shape)
    rows.append(downstream.nme_row(0, "mean-landmarks", mean_shape, test_labels["landmarks"]))

    # The labeller on the mirrored faces: its own consistency under a label-preserving change; and on
    # the mirrored grayscale faces, the full 256² image a raster-scanned panchromatic photodiode gives.
    start = time.perf_counter()
    analyzer = FaceAnalyzer()
    mirrored = np.ascontiguousarray(test.images[:, :, ::-1])
    pixels = int(test.images.shape[1] * test.images.shape[2])
    for source, view in (("image", mirrored), ("image-grayscale", downstream.panchromatic(mirrored))):
        labels = face_labels.label_faces(analyzer, view, desc=f"labelling ({source})")
        for name, value in face_labels.binary_attributes(labels).items():
            rows.append(downstream.accuracy_row(name, pixels, source, value.astype(float), test_y[name]))
    timings["label_mirrored_s"] = round(time.perf_counter() - start, 1)

    # The full grayscale image read out like LSI's M values: image -> latent (ridge) -> boundaries.
    start = time.perf_counter()
    pool = 2
    image_latent = downstream.fit_image_latents(downstream.channel_sums(train.images, pool), train.latents)
    latents = image_latent(downstream.channel_sums(test.images, pool))
    scale = train.latents.std(0)
    readout = {
        "pool": pool,
        "ridge_alpha": image_latent.alpha,
        "latent_mse": round(downstream.latent_error(latents, test.latents, scale), 4),
    }
    rows += downstream.latent_rows(boundaries, latents, test_y, "image-latent", pixels, **readout)
    rows.append(
        downstream.nme_row(
            pixels, "image-latent", landmarks_from(latents), test_labels["landmarks"], **readout
        )
    )
    timings["image_latent_s"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    fitted_here = (
        fit_estimate_boundaries(
            fit_models,
            fit_faces,
            estimate_y,
            (args.generator, first, count),
            photodiode,
            args.boundaries,
            args.data_dir,
        )
        if fit_models
        else {}
    )
    timings["fit_estimates_s"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    images = test.images.astype(np.float32) / 255.0
    generator = get_generator(args.generator) if args.decoded else None
    for name in args.models:
        model = models[name]
        latents = encode_faces(model, images, photodiode)
        m = model.num_measurements
        error = {"latent_mse": round(downstream.latent_error(latents, test.latents, scale), 4)}
        rows += downstream.latent_rows(
            boundaries, latents, test_y, "lsi-latent", m, model=name, **noise, **error
        )
        fitted = fitted_here.get(name, estimate_boundaries.get(name))
        if fitted is not None and Path(fitted).is_file():
            rows += downstream.latent_rows(
                load_boundaries(fitted),
                latents,
                test_y,
                "lsi-latent-fitted",
                m,
                model=name,
                boundaries_file=str(fitted),
                fitted_on=seed_runs(estimate_seeds[fit_faces[name]])
                if name in fit_models
                else "held-back faces",
                **noise,
                **error,
            )
        predicted = landmarks_from(latents)
        rows.append(
            downstream.nme_row(m, "lsi-latent", predicted, test_labels["landmarks"], model=name, **noise)
        )
        if name in args.decoded:
            decoded_start = time.perf_counter()
            decoded = decode_faces(generator, latents, desc=f"decoding ({name})")
            labels = face_labels.label_faces(analyzer, decoded, desc=f"labelling (lsi-decoded {name})")
            for attribute, value in face_labels.binary_attributes(labels).items():
                rows.append(
                    downstream.accuracy_row(
                        attribute,
                        m,
                        "lsi-decoded",
                        value.astype(float),
                        test_y[attribute],
                        model=name,
                        **noise,
                    )
                )
            timings[f"lsi_decoded_{name}_s"] = round(time.perf_counter() - decoded_start, 1)
    timings["lsi_latent_s"] = round(time.perf_counter() - start, 1)
    del images

    resolution = int(train.images.shape[1])
    block = 4
    train_sums = downstream.channel_sums(train.images, block)
    test_sums = downstream.channel_sums(test.images, block)
    start = time.perf_counter()
    for m in args.task_m:
        matrix = downstream.block_matrix(hadamard_split_patterns(m, resolution), block)
        train_counts = downstream.measure_counts(train_sums, matrix, photodiode, seed=1)
        test_counts = downstream.measure_counts(test_sums, matrix, photodiode, seed=2)
        for name in face_labels.ATTRIBUTES:
            probabilities = downstream.hadamard_probe(train_counts, train_y[name], test_counts)
            rows.append(downstream.accuracy_row(name, m, "hadamard", probabilities, test_y[name], **noise))
    timings["hadamard_s"] = round(time.perf_counter() - start, 1)

    for target in args.task_attributes:
        for m in args.task_m:
            start = time.perf_counter()
            task = downstream.train_task_patterns(
                train_sums, train_y[target], m, target, block, resolution, steps=args.task_steps
            )
            timings[f"task_{target}_m{m}_train_s"] = round(time.perf_counter() - start, 1)
            counts = downstream.measure_task(task, test.images, photodiode, seed=3)
            probabilities = task.probabilities(counts)
            row = downstream.accuracy_row(target, m, "task-patterns", probabilities, test_y[target], **noise)
            rows.append(row)
            if (target, m) == ("male", 4) and args.task_model:
                task.info = {
                    "training_seeds": [int(train.seeds[0]), int(train.seeds[-1])],
                    "steps": args.task_steps,
                    "mirror_block": block,
                    "held_out_accuracy": row["accuracy"],
                    "held_out_seeds": [int(test.seeds[0]), int(test.seeds[-1])],
                    "labels": face_labels.ATTRIBUTES[target],
                }
                save_task_model(task, args.task_model)

    results = {
        "rows": rows,
        "command": COMMAND,
        "attributes": face_labels.ATTRIBUTES,
        "labeller": f"{face_labels.FACE_API_PACKAGE} (torch port, lsi_ros.evaluation.face_analysis)",
        "held_out_seeds": [int(test.seeds[0]), int(test.seeds[-1])],
        "majority_class_accuracy": {
            name: round(float(max(value.mean(), 1 - value.mean())), 4) for name, value in test_y.items()
        },
        "positive_rate_train": {name: round(float(value.mean()), 4) for name, value in train_y.items()},
        "sources": {
            "image": "the labeller on the mirrored 256² face against its label on the face (M = pixels): "
            "the labeller's own consistency, the ceiling for any camera",
            "image-grayscale": "the labeller on the mirrored face as a panchromatic detector sees it "
            "(channel mean): the full 256² image of this single-pixel camera with M = 65536 measurements",
            "image-latent": "boundaries on the latent that ridge regression (trained on the same "
            "training faces) estimates from the full grayscale image, 2x2-pooled to 128²: the full "
            "image read out like LSI",
            "true-latent": "boundaries on the true latent of the face (nothing measured)",
            "lsi-latent": "boundaries on the latent the LSI model encodes from M photodiode values",
            "lsi-latent-fitted": "the same latent, read by boundaries fitted on that model's own estimates "
            "(the read-out the estimator needs, not the true latent's): with --fit-estimates (the default "
            "for every shipped model) fitted here on its estimates of labelled faces its encoders never "
            "saw (fitted_on), with fresh photon noise; with --estimate-boundaries read from a file fitted "
            "elsewhere (boundaries_file)",
            "lsi-decoded": "the labeller on the colour face the generator decodes from that model's latent "
            "(what the latent_decoder shows), against its label on the true face",
            "task-patterns": "M learned binary patterns + a tiny head trained for the attribute",
            "hadamard": "M low-sequency Walsh-Hadamard split patterns + logistic regression on the counts",
        },
        "nme": "landmarks68 rows: mean point error / outer-eye-corner distance, mean (nme) and median "
        "(nme_median) over faces; latent -> landmarks by ridge "
        "regression; truth = the labeller's landmarks on the face; mean-landmarks = the training mean shape "
        "for every face (nothing measured)",
        "timings": timings,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    if args.figure:
        downstream.plot_comparison(results, args.figure)
    for row in rows:
        print(json.dumps(row))
    print(f"boundaries in {args.boundaries}; results in {args.output}")
    return 0
