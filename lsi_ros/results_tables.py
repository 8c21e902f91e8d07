"""The results tables of README.md and docs/results.md, generated from docs/results/*.json.

A generated block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; `lsi docs`
rewrites every block from the JSON files and `lsi docs --check` fails when a page differs from what
the files say, so a number in a table cannot drift from its measurement. Standard library only:
`lsi --help` stays fast.
"""

import json
import re
from pathlib import Path

PAGES = ("README.md", "docs/results.md")
RESULTS = Path("docs/results")
BLOCK = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)

# What each results file holds, for the index of files (a file not named here is listed without).
ABOUT = {
    "quality.json": "reconstruction quality of the shipped models and the Hadamard baselines",
    "identity.json": "same person? face descriptors of decoded vs true faces",
    "attributes.json": "attributes read off the latent, the decoded face and task patterns",
    "bench.json": "latency, throughput, bytes per frame, the ROS pipeline, training steps",
    "make_run_summary.json": "the summary `make run` writes (one run, copied here)",
    "finetune.json": "encoder fine-tuning on the offline portraits",
    "framing.json": "find and frame: the locator against hand framing on unframed scenes, and its cost",
    "framing_sequence.json": "the framing camera (framing:=auto) on a person walking across the field",
    "framing_offset.json": "the locator's offset from the landmark square, fitted on training-range scenes",
    "framing_correction.json": "the locator's framing correction from all 68 landmarks: cross-validated "
    "framing errors without and with it",
    "framing_landmarks.json": "face-api's 68 points against Dlib's started from them: cross-validated "
    "framing errors of each at its best linear read",
    "framing_jitter.json": "m128 fine-tuned with and without framing errors: located against hand framing",
    "quality_images.json": "models on the offline portraits (real photos)",
    "quality_offline_images.json": "Hadamard baselines on offline test images",
    "attribute_noise_draws.json": "m128's attribute read-outs over more photodiode noise draws",
    "device_scaling.json": "a GPU run: many more faces rendered, labelled and trained on",
    "ensemble_scaling.json": "m128's latent error against encoders averaged, steps and faces",
    "identity_readout.json": "who a person is, read straight off M = 128 measurements (m128's patterns "
    "and patterns learnt for it, and for generated faces' latents too); codes fitted to the measurements",
    "estimate_boundaries.json": "boundaries fitted on m128's own estimates, on a GPU",
    "latent_data_scaling.json": "m128's latent against the number of training faces (frozen patterns)",
    "real_faces.json": "real people never trained on: quality, identity (face-api, Dlib), gender, attributes "
    "read off the codes; the generator's ceiling",
    "real_photo_finetune.json": "m128 fine-tuned into W+ on real photos: real people and generated faces",
    "real_faces_chip_box.json": "m128 on real people with one detector box for every aligned crop",
    "real_photo_generalisation.json": "m128-real on photos it learnt from, on new ones, and without noise",
    "real_photo_patterns.json": "m128-real tuned on real photos with its patterns free to learn: what moved",
    "real_photo_m32.json": "m32 fine-tuned into W+ on real photos (m32-real): real people, generated faces",
    "people_patterns.json": "m128-people: patterns learnt for identity (lsi patterns), an encoder trained "
    "for them, fine-tuned on real photos; real people and generated faces",
    "contrast_finetune.json": "m128-people fine-tuned further with the contrast term (lsi finetune --losses "
    "contrast=0.1): 300 held-out people and generated faces, before and after",
    "attribute_finetune.json": "m128-real fine-tuned further with the attributes term (lsi finetune --losses "
    "attributes=0.5) and, as a control, with the paper's terms alone: 300 held-out people and generated "
    "faces, before and after",
    "compact_resume.json": "a streamed run resumed from the compact checkpoint against an uninterrupted one "
    "(DCGAN test double), and checkpoint sizes at the shipped models' shape",
}


def load(name: str, results: Path = RESULTS) -> dict:
    return json.loads((results / name).read_text())


def fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pick(rows: list[dict], **match) -> dict | None:
    """The first row whose fields equal ``match`` (None when there is none)."""
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


INT8_DIFFERENCE, INT8_WORST_FACE = "latent_rms_difference_vs_fp32", "decoded_gray_psnr_vs_fp32_db_min"


def encoder_row(rows: list[dict], model: str, kernels: str | None = None) -> dict | None:
    """A model's encoder bench row: the kernels latent_encoder runs it with (int8 where the model is
    stored so), or those named."""
    if kernels is not None:
        return pick(rows, what="encoder", model=model, kernels=kernels)
    return pick(rows, what="encoder", model=model, kernels="int8") or pick(rows, what="encoder", model=model)


def value(row: dict | None, key: str, digits: int) -> str:
    return fmt(None if row is None else row.get(key), digits)


def psnr_ssim(row: dict | None) -> str:
    return f"{value(row, 'psnr', 2)} / {value(row, 'ssim', 3)}"


def compression(m: int) -> str:
    """M values against the 256² pixels of the image."""
    return f"1:{65536 // m:,}"


ATTRIBUTES = ("male", "smiling", "age_over_40")
MODELS = (32, 64, 128, 256)


def accuracies(rows: list[dict], **match) -> list[str]:
    return [value(pick(rows, attribute=a, **match), "accuracy", 3) for a in ATTRIBUTES]


def summary(results: Path) -> str:
    quality = load("quality.json", results)["rows"]
    identity = load("identity.json", results)["rows"]
    attributes = load("attributes.json", results)["rows"]
    bench = load("bench.json", results)["rows"]
    rows = []
    for m in MODELS:
        q = pick(quality, method="lsi", M=m, noise="photons=200")
        tv = pick(quality, method="hadamard-tv", patterns=m, noise="photons=200")
        ident = pick(identity, method="lsi", patterns=m)
        enc = encoder_row(bench, f"m{m}")
        rows.append(
            [
                f"m{m}",
                compression(m),
                psnr_ssim(q),
                psnr_ssim(tv),
                f"{100 * ident['rank1_identification']:.0f} %" if ident else "–",
                " / ".join(accuracies(attributes, source="lsi-latent-fitted", M=m)),
                value(enc, "p50_ms", 2),
            ]
        )
    male = value(pick(attributes, attribute="male", source="task-patterns", M=4), "accuracy", 3)
    rows.append(["task-male-m4", "1:16,384", "–", "–", "–", f"{male} / – / – (male only)", "–"])
    header = [
        "model",
        "compression",
        "PSNR dB / SSIM",
        "Hadamard TV, same patterns",
        "same person found",
        "male / smiling / age > 40",
        "encoder ms",
    ]
    return table(header, rows)


def quality(results: Path) -> str:
    rows_in = load("quality.json", results)["rows"]
    rows = []
    for noise in ("none", "photons=200", "photons=2"):
        for m in MODELS:
            lsi = pick(rows_in, method="lsi", M=m, noise=noise)
            pinv = pick(rows_in, method="hadamard-pinv", patterns=m, noise=noise)
            tv = pick(rows_in, method="hadamard-tv", patterns=m, noise=noise)
            rows.append(
                [
                    f"{m} ({compression(m)})",
                    noise,
                    " / ".join(value(lsi, k, d) for k, d in (("psnr", 2), ("ssim", 3), ("ms_ssim", 3))),
                    value(lsi, "latent_mse", 3),
                    psnr_ssim(pinv),
                    psnr_ssim(tv),
                ]
            )
    mean = pick(rows_in, method="mean-latent")
    rows.append(["0", "none", psnr_ssim(mean) + " (mean latent)", "–", "–", "–"])
    header = [
        "patterns",
        "detector",
        "LSI PSNR / SSIM / MS-SSIM",
        "latent error",
        "pinv PSNR / SSIM",
        "TV PSNR / SSIM",
    ]
    return table(header, rows)


def identity(results: Path) -> str:
    rows = [
        [
            r["method"],
            str(r["patterns"]),
            r["noise"],
            fmt(r["median_distance"], 3),
            f"{100 * r['same_person_rate']:.0f} %",
            f"{100 * r['rank1_identification']:.0f} %",
        ]
        for r in load("identity.json", results)["rows"]
    ]
    header = ["method", "patterns", "detector", "median distance", "below 0.6", "rank-1 identification"]
    return table(header, rows)


ATTRIBUTE_SOURCES = (
    ("image", None, "the labeller on the mirrored face (its own consistency)"),
    ("image-grayscale", None, "the labeller on the mirrored face in gray (a raster-scanned photodiode)"),
    ("image-latent", None, "boundaries on a ridge-regression latent of the full gray image"),
    ("true-latent", None, "boundaries on the true latent"),
    ("lsi-latent", MODELS, "boundaries on the LSI latent"),
    ("lsi-latent-fitted", MODELS, "boundaries fitted on the model's own estimates (what ships)"),
    ("lsi-decoded", (128,), "the labeller on the face decoded from the LSI latent"),
    ("task-patterns", (4, 8, 16, 32), "task patterns + a small head"),
    ("hadamard", (4, 8, 16, 32), "Hadamard split patterns + logistic regression"),
)


def attributes(results: Path) -> str:
    data = load("attributes.json", results)
    rows_in = data["rows"]
    chance = data["majority_class_accuracy"]
    rows = [["majority class (chance)", "–", *(fmt(chance[a], 3) for a in ATTRIBUTES)]]
    for source, budgets, label in ATTRIBUTE_SOURCES:
        for m in budgets or (None,):
            match = {"source": source} if m is None else {"source": source, "M": m}
            if pick(rows_in, **match) is None:
                continue
            shown = str(m) if m is not None else str(pick(rows_in, **match)["M"] or "–")
            rows.append([label, shown, *accuracies(rows_in, **match)])
    return table(["read-out", "M", *ATTRIBUTES], rows)


def bench(results: Path) -> str:
    rows_in = load("bench.json", results)["rows"]
    enc = [encoder_row(rows_in, f"m{m}") for m in MODELS]
    size = [pick(rows_in, what="bytes_per_frame", M=m) for m in MODELS]
    pinv = [pick(rows_in, what="reconstruction", method="hadamard-pinv", patterns=m) for m in MODELS]
    tv = [pick(rows_in, what="reconstruction", method="hadamard-tv", patterns=m) for m in MODELS]
    rows = [
        ["DMD frame time at 9.5 kHz / 22.7 kHz, ms"]
        + [f"{value(e, 'frame_time_ms_9.5kHz', 2)} / {value(e, 'frame_time_ms_22.7kHz', 2)}" for e in enc],
        ["encoder, one frame, one thread, p50 / p95 ms"]
        + [f"{value(e, 'p50_ms', 2)} / {value(e, 'p95_ms', 2)}" for e in enc],
        ["encoder, batches of 256, frames/s"] + [value(e, "batched_frames_per_s", 0) for e in enc],
        ["`Measurements` on the wire, bytes"] + [value(s, "measurements", 0) for s in size],
        ["image / `Measurements`"] + [value(s, "image_over_measurements", 0) for s in size],
        ["`LatentCode` on the wire, bytes"] + [value(s, "latent", 0) for s in size],
        ["Hadamard pinv reconstruction, ms"] + [value(r, "ms_per_frame", 1) for r in pinv],
        ["Hadamard TV reconstruction, ms"] + [value(r, "ms_per_frame", 0) for r in tv],
    ]
    return table(["", *(f"M = {m}" for m in MODELS)], rows)


def encoders(results: Path) -> str:
    """Every shipped encoder on one frame, through the int8 kernels latent_encoder runs and in fp32."""
    rows_in = load("bench.json", results)["rows"]
    models = dict.fromkeys(r["model"] for r in rows_in if r.get("what") == "encoder")
    rows = []
    for model in models:
        int8, fp32 = encoder_row(rows_in, model, "int8"), encoder_row(rows_in, model, "fp32")
        rows.append(
            [
                model,
                value(fp32, "frame_time_ms_22.7kHz", 2),
                f"{value(int8, 'p50_ms', 2)} / {value(int8, 'p95_ms', 2)}",
                f"{value(fp32, 'p50_ms', 2)} / {value(fp32, 'p95_ms', 2)}",
                f"{value(int8, INT8_DIFFERENCE, 4)} / {value(int8, INT8_WORST_FACE, 1)}",
            ]
        )
    header = [
        "model",
        "DMD frame time at 22.7 kHz, ms",
        "int8 kernels: p50 / p95 ms",
        "fp32: p50 / p95 ms",
        "int8 against fp32: latent RMS difference / worst decoded face, dB",
    ]
    return table(header, rows)


def pipeline(results: Path) -> str:
    """One column per pipeline row (each model at its own DMD-limited frame rate)."""
    rows_in = load("bench.json", results)["rows"]
    runs = [r for r in rows_in if r.get("what") == "pipeline"] or [{}]
    rows = [
        ["scenes offered / s"] + [value(p, "offered_fps", 1) for p in runs],
        ["measurement frames"] + [value(p, "measurement_frames", 0) for p in runs],
        ["`LatentCode` messages"] + [value(p, "latent_codes", 0) for p in runs],
        ["frames dropped"] + [value(p, "frames_dropped", 0) for p in runs],
        ["of which lost scene → frame / frame → code (node counters)"]
        + [f"{value(p, 'lost_scene_to_frame', 0)} / {value(p, 'lost_frame_to_code', 0)}" for p in runs],
        ["scene → `LatentCode` p50 / p95, ms"]
        + [
            f"{value(p, 'scene_to_latent_p50_ms', 0)} / {value(p, 'scene_to_latent_p95_ms', 0)}" for p in runs
        ],
        ["decoded images / s (one thread)"] + [value(p, "decoded_fps", 2) for p in runs],
    ]
    names = dict.fromkeys(name for p in runs for name in p.get("nodes", {}))
    for name in names:
        cells = []
        for p in runs:
            node = p.get("nodes", {}).get(name)
            cells.append(
                "–"
                if node is None
                else f"{node['cpu_percent_of_one_core']:.0f} / {value(node, 'cpu_ms_per_scene', 1)} / "
                f"{node['rss_peak_mb']:,.0f}"
            )
        rows.append([f"`{name}` CPU % of a core / CPU ms per scene / peak MB", *cells])
    decoders = [r for r in rows_in if r.get("what") == "decoder"]
    rows += [
        [f"decoder alone, `{d['early_exit']}` exit, images/s", fmt(d["images_per_s"], 1)]
        + [""] * (len(runs) - 1)
        for d in decoders
    ]
    header = [f"M = {p.get('M', '–')}, {p.get('duration_s', 0):.0f} s" for p in runs]
    return table(["", *header], rows)


def soak(results: Path) -> str:
    """The long run (`lsi bench --only soak`): totals over the window, then per node how memory and
    CPU moved between the first and the last sample."""
    runs = [r for r in load("bench.json", results)["rows"] if r.get("what") == "soak"]
    if not runs:
        return "No soak has been run (`lsi bench --only soak`).\n"
    run = runs[0]
    timeline = run["timeline"]
    first, last = timeline[0], timeline[-1]
    dropped_slices = sum(1 for sample in timeline if sample["frames_dropped"])
    rows = [
        ["window", f"{run['duration_s'] / 60:.1f} min, M = {run['M']} at {run['offered_fps']:.1f} scenes/s"],
        ["scenes / `LatentCode` messages", f"{run['scenes']:,} / {run['latent_codes']:,}"],
        [
            "frames dropped",
            f"{run['frames_dropped']:,} ({dropped_slices} of {len(timeline)} samples had any)",
        ],
        [
            "scene → `LatentCode` p50 / p95, ms",
            f"{value(run, 'scene_to_latent_p50_ms', 0)} / {value(run, 'scene_to_latent_p95_ms', 0)}",
        ],
        ["1-minute load at start / end", " / ".join(fmt(x, 1) for x in run["load_average_1min"])],
    ]
    for name, growth in run["rss_growth_mb"].items():
        cpu = [s["nodes"][name]["cpu_percent_of_one_core"] for s in timeline if name in s["nodes"]]
        cpu = [c for c in cpu if c is not None]
        rows.append(
            [
                f"`{name}` RSS first → last sample, MB (growth) / mean CPU %",
                f"{first['nodes'][name]['rss_mb']:,.0f} → {last['nodes'][name]['rss_mb']:,.0f} "
                f"({growth:+.1f}) / {sum(cpu) / max(len(cpu), 1):.0f}",
            ]
        )
    return table(["", f"sampled every {run['sample_every_s']:.0f} s"], rows)


def training(results: Path) -> str:
    rows = [
        [
            str(r["processes"]),
            str(r["threads_per_process"]),
            str(r["M"]),
            str(r["batch_size"]),
            r["image_loss"] or "latent only",
            fmt(r["ms_per_step"], 0),
        ]
        for r in load("bench.json", results)["rows"]
        if r.get("what") == "train-step"
    ]
    return table(["processes", "threads each", "M", "batch", "loss", "ms per step"], rows)


def make_run(results: Path) -> str:
    s = load("make_run_summary.json", results)
    lat = s["latency_ms"]
    rows = [
        [
            "scenes → measurement frames → codes → decoded images",
            f"{s['scenes']} → {s['measurement_frames']} → {s['latent_messages']} → {s['decoded_images']}",
        ],
        ["dropped frames", str(s["dropped_frames"])],
        [
            "scene → `LatentCode` p50 / p95, ms",
            f"{lat['scene_to_latent']['p50']:.0f} / {lat['scene_to_latent']['p95']:.0f}",
        ],
        [
            "scene → image p50 / p95, ms",
            f"{lat['scene_to_image']['p50']:.0f} / {lat['scene_to_image']['p95']:.0f}",
        ],
        [
            "bytes per frame: `Measurements` / `LatentCode` / rgb8 image",
            " / ".join(f"{s['bytes_per_frame'][k]:,}" for k in ("measurements", "latent", "image_rgb8")),
        ],
        [
            "decoded vs its scene, RGB PSNR dB / SSIM",
            f"{s['quality_rgb']['psnr_db']:.1f} / {s['quality_rgb']['ssim']:.2f}",
        ],
        ["decoded vs another scene, RGB PSNR dB", f"{s['quality_rgb']['psnr_db_unpaired']:.1f}"],
    ]
    return table([f"`make run`, model {s['model']}, {s['duration_s']:.0f} s", "value"], rows)


def finetune(results: Path) -> str:
    f = load("finetune.json", results)
    rows = [
        [
            f"{name}: the teacher from the model's encoding",
            f"{q['initial_psnr']:.2f} / {q['initial_ssim']:.3f}",
            f"{q['psnr']:.2f} / {q['ssim']:.3f}",
        ]
        for name, q in f["teacher_quality"].items()
    ]
    before, after, teacher = f["held_out_before"], f["held_out_after"], f["held_out_teacher"]
    rows.append(
        [
            f"held out ({', '.join(f['held_out_scenes'])}): base model → fine-tuned (teacher)",
            f"{before['psnr']:.2f} / {before['ssim']:.3f}",
            f"{after['psnr']:.2f} / {after['ssim']:.3f} ({teacher['psnr']:.2f} / {teacher['ssim']:.3f})",
        ]
    )
    return table(
        [f"photo (pattern set {f['pattern_set_id']})", "before: PSNR / SSIM", "after: PSNR / SSIM"], rows
    )


def framing_jitter(results: Path) -> str:
    """Each encoder variant on the same measurement frames: hand, moved and located framing."""
    f = load("framing_jitter.json", results)
    rows = [
        [
            row["variant"],
            *(f"{percent(row[name], 'same_person_rate')} / {row[name]['ssim']:.3f}" for name in FRAMINGS),
            f"{100 * (row['hand']['same_person_rate'] - row['located']['same_person_rate']):.1f}",
        ]
        for row in f["rows"]
    ]
    header = ["encoder", "hand: same person / SSIM", "moved 2 px", "located", "hand − located (points)"]
    return table(header, rows)


FRAMINGS = ("hand", "moved", "located")


def files(results: Path) -> str:
    rows = []
    for path in sorted(results.glob("*.json")):
        command = json.loads(path.read_text()).get("command", "")
        rows.append(
            [
                f"[{path.name}](results/{path.name})",
                ABOUT.get(path.name, ""),
                f"`{command}`" if command else "",
            ]
        )
    return table(["file", "what", "command"], rows)


def percent(row: dict | None, key: str) -> str:
    return "–" if row is None or row.get(key) is None else f"{100 * row[key]:.1f} %"


def real_faces(results: Path) -> str:
    """The camera on real people beside the same models on generated faces, and what the generator
    can reach at all (its inversions in W and W+, on the faces the ceiling ran on, rank-1 among all the
    set's people where the ceiling has that). The labels column:
    male and over 40 against UTKFace's labels, read off the code by latent_classifier for the models,
    by face-api on the image for the photos."""
    real = load("real_faces.json", results)
    generated = load("identity.json", results)["rows"]
    quality_rows = load("quality.json", results)["rows"]

    def scores(r: dict | None, labels: str, rank1: str = "rank1_identification") -> list[str]:
        return [
            psnr_ssim(r) if r is not None and "psnr" in r else "–",
            percent(r, "same_person_rate"),
            percent(None if r is None else r.get("dlib"), "same_person_rate"),
            percent(r, rank1),
            percent(r, "gender_agreement"),
            labels,
        ]

    def male_and_over_40(male: dict | None, over: dict | None, male_key: str, over_key: str) -> str:
        return (
            "–"
            if male is None or male_key not in male
            else f"{percent(male, male_key)} / {percent(over, over_key)}"
        )

    def read_off_code(r: dict | None) -> str:
        latent = {} if r is None else r.get("latent_attributes", {})
        key = "accuracy_vs_label"
        return male_and_over_40(latent.get("male"), latent.get("age_over_40"), key, key)

    # m32-real is scored on the same people by its own experiment
    fine_tuned = load("real_photo_m32.json", results)["real"]
    rows = []
    for name in (*(f"m{m}" for m in MODELS), "m32-real", "m128-real"):
        r = pick(real["rows"] + fine_tuned, method="lsi", model_id=f"lsi-mobilestylegan-{name}")
        if r is None:
            continue
        m = r["M"]
        own = name == f"m{m}"  # the generated-face columns are the W models'
        g = pick(quality_rows, method="lsi", M=m, noise="photons=200") if own else None
        gi = pick(generated, method="lsi", patterns=m) if own else None
        rows.append(
            [
                name,
                *scores(r, read_off_code(r)),
                psnr_ssim(g) if own else "–",
                percent(gi, "same_person_rate"),
            ]
        )
    photo_labels = ("gender_agreement_with_label", "age_over_40_agreement_with_label")
    for label, method in (
        ("the photo itself", "real-face"),
        ("the photo in gray", "grayscale-face"),
        ("someone else's photo", "other-face"),
    ):
        r = pick(real["rows"], method=method)
        labels = male_and_over_40(r, r, *photo_labels) if method != "other-face" else "–"
        rows.append([label, *scores(r, labels), "–", "–"])
    ceiling = real.get("ceiling", {})
    for method in ("inversion-w", "inversion-w+"):
        r = pick(ceiling.get("rows", []), method=method)
        if r is not None:
            steps = r.get("total_steps", r["teacher"]["steps"])
            space = method.removeprefix("inversion-").upper()
            label = f"generator's ceiling, {space} ({r['n_images']} faces, {steps} steps)"
            # rank-1 among all the set's people, as the camera's rows rank, where the ceiling has it
            rank1 = "rank1_in_gallery" if "rank1_in_gallery" in r else "rank1_identification"
            rows.append([label, *scores(r, "–", rank1), "–", "–"])
    faces = real["faces"]
    header = [
        f"real people ({sum(faces.values())})",
        "PSNR dB / SSIM",
        "same person",
        "same person (Dlib)",
        "rank-1",
        "gender agrees",
        "male / over 40 vs label",
        "generated faces: PSNR / SSIM",
        "generated: same person",
    ]
    return table(header, rows)


def real_photo_finetune(results: Path) -> str:
    """The shipped m128 and its W+ fine-tunes on real photos, on the same held-out people and faces."""
    f = load("real_photo_finetune.json", results)
    rows = []
    for row in f["rows"]:
        tuning = row.get("fine_tuning")
        if tuning is None:
            trained = "generated faces"
        else:
            trained = f"+ {tuning['photos']:,} photos"
            if tuning["generated_faces"]:
                trained += f", {tuning['generated_faces']:,} generated"
            if tuning["config"].get("mirror"):
                trained += ", mirrored"
            if tuning["config"]["losses"] != "paper":
                trained += f", identity weight {tuning['loss_weights']['identity']:g}"
            trained += f"; {tuning['config']['steps']:,} steps"
        real = row["real"]
        rows.append(
            [
                row["variant"],
                trained,
                psnr_ssim(real),
                percent(real, "same_person_rate"),
                percent(real.get("dlib"), "same_person_rate"),
                percent(real, "rank1_identification"),
                percent(real, "gender_agreement"),
                psnr_ssim(row["generated"]),
                f"{row['file_bytes'] / 2**20:.1f}",
            ]
        )
    people = sum(f["real_faces"].values())
    header = [
        "encoder",
        "trained on",
        f"real people ({people}): PSNR dB / SSIM",
        "same person",
        "same person (Dlib)",
        "rank-1",
        "gender agrees",
        "generated faces: PSNR / SSIM",
        "file MiB",
    ]
    return table(header, rows)


GENERATORS = {
    "summary": summary,
    "quality": quality,
    "identity": identity,
    "attributes": attributes,
    "bench": bench,
    "encoders": encoders,
    "pipeline": pipeline,
    "soak": soak,
    "training": training,
    "make-run": make_run,
    "finetune": finetune,
    "framing-jitter": framing_jitter,
    "real-faces": real_faces,
    "real-photo-finetune": real_photo_finetune,
    "files": files,
}


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` with every generated block rewritten from the results files."""

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in GENERATORS:
            raise KeyError(f"unknown results block {name!r} (known: {', '.join(GENERATORS)})")
        return match.group(1) + GENERATORS[name](results) + match.group(4)

    return BLOCK.sub(block, text)


def blocks(text: str) -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(text)]


def outside_blocks(text: str) -> str:
    """``text`` without its generated blocks and fenced code (what a person wrote by hand)."""
    text = BLOCK.sub("", text)
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


def stale(root: Path) -> list[str]:
    """The pages under ``root`` whose generated blocks differ from the results files."""
    results = root / RESULTS
    return [page for page in PAGES if (root / page).read_text() != render((root / page).read_text(), results)]


def write(root: Path) -> list[str]:
    changed = stale(root)
    for page in changed:
        path = root / page
        path.write_text(render(path.read_text(), root / RESULTS))
    return changed
