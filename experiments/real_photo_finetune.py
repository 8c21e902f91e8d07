"""What does fine-tuning on real photos buy the camera on real people, and what does it cost on the
generator's own faces?

The shipped m128 (patterns frozen) is fine-tuned by `lsi finetune --utkface` into W+: UTKFace
training-split photos, FFHQ-framed, measured through m128's patterns and the photodiode model at a
random light level, encoded, decoded by MobileStyleGAN's differentiable torch path and compared with
the photo (the paper's losses: image L2 1.0, identity 0.5 through face-api's descriptor network,
perceptual 0.1). One variant learns from the photos alone (550 steps), one from the photos and the
generator's own training faces (`--generated`, 550 steps), the third goes on from the second for
1,500 steps on twice as many photos and generated faces, and the fourth goes on from the third for
1,300 steps on every training-split photo, each mirrored half the time (`--mirror`), with the identity
term weighted 1.0. The third one's offset head is then factorised
to rank ``--rank`` (``lsi_ros.models.encoder.low_rank_offsets``: the same trunk, a file a third the
size) and written to ``--export``, the shipped `m128-real`. The shipped m128 and the four variants are scored
by `lsi eval --real` on the held-out people (UTKFace faces no training touches and the Canada
portraits, photon flux 200, the same frames for every model) and by `lsi eval` on held-out generated
faces. Note that the identity loss and the same-person score use the same descriptor network; SSIM,
PSNR and the gender network's agreement are independent of it.

Fine-tuned files go to ``--runs`` and are reused when present (with their reports). Needs face-api's
weights, the shared real-face photos and `lsi data`'s cached training faces:

    .venv/bin/python experiments/real_photo_finetune.py   # about 4 h on the 2-core CPU, 12 GB at most
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from lsi_ros.models.registry import find_model

RECIPE = ["--latent-space", "w+", "--batch-size", "8", "--lr", "2e-4", "--teacher-exit", "fast"]
PAPER = ["--losses", "paper"]
IDENTITY_1 = "l2=1,identity=1,perceptual=0.1"  # the paper's weights with the identity term doubled
# name: (file stem, training faces and losses, starting model (a shipped name or an earlier stem), steps)
VARIANTS = {
    "real photos": ("photos", ["--utkface", "3000", *PAPER], "m128", 550),
    "real photos + generated faces": (
        "photos-and-generated", ["--utkface", "3000", "--generated", "1500", *PAPER], "m128", 550,
    ),
    "twice the faces, 1,500 steps more": (
        "twice-the-faces", ["--utkface", "6000", "--generated", "3000", *PAPER], "photos-and-generated", 1500,
    ),
    "every training photo, mirrored, identity 1.0, 1,300 steps more": (
        "all-photos-mirrored",
        ["--utkface", "7199", "--generated", "3000", "--mirror", "--losses", IDENTITY_1],
        "twice-the-faces",
        1300,
    ),
}  # fmt: skip
SHIPPED = "twice the faces, 1,500 steps more"  # the variant exported, with its offset head factorised
LSI = [sys.executable, "-m", "lsi_ros.cli"]


def run(args: list[str]) -> None:
    print("$ lsi " + " ".join(args), flush=True)
    subprocess.run([*LSI, *args], check=True)


def fine_tuned(runs: Path, threads: int) -> dict[str, tuple[Path, dict]]:
    """Each variant's model file and its `lsi finetune --report` (trained now unless both exist)."""
    made = {}
    for name, (stem, source, start, steps) in VARIANTS.items():
        model, report = runs / f"{stem}.safetensors", runs / f"{stem}.report.json"
        if not (model.is_file() and report.is_file()):
            outputs = ["--output", str(model), "--report", str(report), "--threads", str(threads)]
            run(["finetune", *source, *start_and_steps(runs, start, steps), *RECIPE, *outputs])
        made[name] = (model, json.loads(report.read_text()))
    return made


def start_and_steps(runs: Path, start: str, steps: int) -> list[str]:
    """``--model`` and ``--steps`` of a variant: a shipped model by name, or an earlier variant's file."""
    earlier = runs / f"{start}.safetensors"
    return ["--model", str(earlier) if earlier.is_file() else start, "--steps", str(steps)]


def factorised(path: Path, rank: int, export: Path) -> Path:
    """``path``'s model with its W+ offset head at ``rank`` (int8, as m128 ships), named for the export."""
    from lsi_ros.models.checkpoint import LsiModel, load_model, save_model
    from lsi_ros.models.encoder import low_rank_offsets

    tuned = load_model(path)
    info = tuned.info | {"offset_head": {"factorised_from": str(path), "rank": rank}}
    model_id = f"lsi-mobilestylegan-{export.stem}"
    compact = LsiModel(model_id, tuned.pattern_set, low_rank_offsets(tuned.encoder, rank), info)
    export.parent.mkdir(parents=True, exist_ok=True)
    return save_model(compact, export, "int8")


def experiment_parser(doc: str, name: str, export: str | None) -> argparse.ArgumentParser:
    """The options of a real-photo experiment: its runs folder, what is scored, the exported model (none
    for an experiment that ships nothing) and the results file (``docs/results/{name}.json``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs") / name.replace("_", "-"))
    parser.add_argument("--utkface", type=int, default=1024, help="held-out UTKFace faces scored")
    parser.add_argument("--faces", type=int, default=200, help="held-out generated faces scored")
    parser.add_argument("--threads", type=int, default=2)
    if export is not None:
        parser.add_argument("--export", type=Path, default=Path(export))
    parser.add_argument("--output", type=Path, default=Path(f"docs/results/{name}.json"))
    return parser


def main() -> None:
    parser = experiment_parser(__doc__, "real_photo_finetune", "models/m128-real.safetensors")
    parser.add_argument("--rank", type=int, default=64, help="features of the exported offset head")
    parser.add_argument("--figure", type=Path, default=Path("docs/results/real_photo_finetune.png"))
    args = parser.parse_args()
    started = time.monotonic()
    args.runs.mkdir(parents=True, exist_ok=True)
    made = fine_tuned(args.runs, args.threads)
    source, report = made[SHIPPED]
    made[f"{SHIPPED}, offsets at rank {args.rank} ({args.export.stem})"] = (
        factorised(source, args.rank, args.export),
        report,
    )
    models = ["m128", *(str(path) for path, _ in made.values())]
    real, generated = args.runs / "real.json", args.runs / "generated.json"
    threads = ["--threads", str(args.threads)]
    run(["data", "--train", "1536", "--held-out", str(args.faces)])
    scored = ["--models", *models, "--no-baselines", *threads]
    people = ["--real", "--utkface", str(args.utkface), "--canada", "40", "--dlib"]
    run(["eval", *people, *scored, "--output", str(real), "--examples", str(args.figure)])
    no_figures = ["--figure", "", "--examples", ""]
    run(["eval", "--faces", str(args.faces), *scored, "--output", str(generated), *no_figures])
    real_rows = [r for r in json.loads(real.read_text())["rows"] if r["method"] == "lsi"]
    generated_rows = [
        r
        for r in json.loads(generated.read_text())["rows"]
        if r["method"] == "lsi" and r["noise"] == "photons=200"
    ]
    if len(real_rows) != len(models) or len(generated_rows) != len(models):
        raise SystemExit(f"expected a row per model: {len(real_rows)} real, {len(generated_rows)} generated")
    reports = [None, *(report for _, report in made.values())]
    rows = []
    for name, real_row, generated_row, report in zip(
        ["shipped m128", *made], real_rows, generated_rows, reports, strict=True
    ):
        size = find_model(models[len(rows)]).stat().st_size
        row = {"variant": name, "file_bytes": size, "real": real_row, "generated": generated_row}
        if report is not None:
            row["fine_tuning"] = {
                "photos": report["photos"],
                "generated_faces": report.get("generated_faces", 0),
                "config": report["config"],
                "loss_weights": report["loss_weights"],
                "seconds": report["seconds"],
                "final_loss_terms": report["history"][-1],
            }
        rows.append(row)
    result = {
        "command": "python experiments/real_photo_finetune.py",
        "recipe": "lsi finetune " + " ".join(RECIPE),
        "variants": {
            name: "lsi finetune " + " ".join([*source, *start_and_steps(args.runs, start, steps)])
            for name, (_, source, start, steps) in VARIANTS.items()
        },
        "exported": {"file": str(args.export), "from": SHIPPED, "offset_rank": args.rank},
        "real_faces": json.loads(real.read_text())["faces"],
        "photodiode": "photons=200",
        "generated_faces": f"held-out, seeds 1000000..{1_000_000 + args.faces - 1}",
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}, {args.figure}")


if __name__ == "__main__":
    main()
