"""Does telling people apart, not only matching each one, bring real people's identity through?

The paper's identity term (``1 − cosine`` of face-api's descriptors) is small once a decoded face is
of the right kind: an average face of the right sex, age and skin passes face-api's same-person rule
for most people (`experiments/identity_readout.py`). The ``contrast`` term of `lsi finetune --losses`
also asks each decoded face to be nearer its own person's descriptor than any of the other training
photos' (an InfoNCE over a bank of face-api's descriptors of every UTKFace training-split photo and
its mirror image, temperature 0.1 on squared distances).

The contrast arm goes on from ``--start`` (by default ``m128-people``'s fine-tune from
`experiments/people_patterns.py`, whose patterns pass on seven times m128's identity) for 600 steps of
8 faces with the recipe that made it, the paper's terms plus ``contrast``. The start and the arm are
scored side by side by `lsi eval --real` on the first 300 held-out UTKFace people (photon flux 200,
the same frames for both, with Dlib's protocol; rank-1 among the 300) and by `lsi eval` on 200
held-out generated faces. No arm with the paper's terms alone goes on beside it: from m128-real's
parent, 1,300 such steps more bought nothing (`docs/results/real_photo_finetune.json`).

    .venv/bin/python experiments/contrast_finetune.py   # about 40 min on the 2-core CPU
"""

import json
import math
from pathlib import Path

from real_photo_finetune import RECIPE, experiment_parser, run

PHOTOS = 7199  # every UTKFace training-split photo
FACES = ["--utkface", str(PHOTOS), "--generated", "3000", "--mirror"]
STEPS = 600
CONTRAST_WEIGHT = 0.1  # beside the paper's terms (latent L1 1, image L2 1, identity 0.5, perceptual 0.1)
CONTRAST = f"contrast={CONTRAST_WEIGHT}"
ARMS = {f"paper terms + {CONTRAST.replace('=', ' ')}": ("contrast", CONTRAST)}  # name: (file stem, losses)
BANK = 2 * PHOTOS  # descriptors the contrast term compares with: each training photo and its mirror
START = "runs/people-patterns/m128-people-wplus.safetensors"
KEPT = ("photos", "generated_faces", "config", "loss_weights", "seconds")  # of the fine-tuning report


def arms(
    runs: Path, start: Path, threads: list[str], table=ARMS, faces=FACES, steps: int = STEPS
) -> dict[str, Path]:
    """Each arm of ``table`` (name: (file stem, losses)) fine-tuned from ``start`` on ``faces`` for
    ``steps`` (trained now unless its model and report exist)."""
    if not start.is_file():
        raise SystemExit(f"no start model at {start}: run the experiment that makes it first, or --start")
    made = {}
    for name, (stem, recipe) in table.items():
        model, report = runs / f"{stem}.safetensors", runs / f"{stem}.report.json"
        if not (model.is_file() and report.is_file()):
            source = ["--model", str(start), "--steps", str(steps), "--losses", recipe]
            outputs = ["--output", str(model), "--report", str(report), *threads]
            run(["finetune", *faces, *source, *RECIPE, *outputs])
        made[name] = model
    return made


def scored(runs: Path, models: list[Path], args, threads: list[str]) -> tuple[list, list]:
    """The models' real-face and generated-face rows, in order (each eval run once)."""
    real, generated = runs / "real.json", runs / "generated.json"
    listed = ["--models", *(str(path) for path in models), "--no-baselines", *threads]
    if not real.is_file():
        people = ["--real", "--utkface", str(args.utkface), "--canada", "0", "--dlib"]
        run(["eval", *people, *listed, "--output", str(real), "--examples", ""])
    if not generated.is_file():
        no_figures = ["--figure", "", "--examples", ""]
        run(["eval", "--faces", str(args.faces), *listed, "--output", str(generated), *no_figures])
    real_rows = [r for r in json.loads(real.read_text())["rows"] if r["method"] == "lsi"]
    generated_rows = [r for r in json.loads(generated.read_text())["rows"] if r["noise"] == "photons=200"]
    if len(real_rows) != len(models) or len(generated_rows) != len(models):
        raise SystemExit(f"expected a row per model: {len(real_rows)} real, {len(generated_rows)} generated")
    return real_rows, generated_rows


def scored_rows(args, made: dict[str, Path], threads: list[str]) -> list[dict]:
    """The start and each arm: real-face and generated-face rows, and the arm's fine-tuning report."""
    real_rows, generated_rows = scored(args.runs, [args.start, *made.values()], args, threads)
    rows = []
    for name, path, real_row, generated_row in zip(
        ["start", *made], [None, *made.values()], real_rows, generated_rows, strict=True
    ):
        row = {"model": name, "real": real_row, "generated": generated_row}
        if path is not None:
            report = json.loads(path.with_name(f"{path.stem}.report.json").read_text())
            first, last = report["history"][0], report["history"][-1]
            losses = {"first_loss": first, "final_loss": last}
            row["fine_tuning"] = {key: report[key] for key in KEPT} | losses
        rows.append(row)
    return rows


def run_arms(doc: str, name: str, start: str, table: dict, faces: list[str], steps: int, extra=None) -> None:
    """A fine-tuning experiment end to end: parse its options, train each arm of ``table`` from
    ``--start``, score the start and the arms, and write ``docs/results/{name}.json`` (with ``extra``
    fields after the arms)."""
    parser = experiment_parser(doc, name, None)
    parser.add_argument("--start", type=Path, default=Path(start), help="the model the arms go on from")
    parser.set_defaults(utkface=300)
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)]
    made = arms(args.runs, args.start, threads, table, faces, steps)
    rows = scored_rows(args, made, threads)
    result = {
        "command": f"python experiments/{name}.py",
        "start": str(args.start),
        "arms": {
            arm: "lsi finetune " + " ".join([*faces, "--steps", str(steps), "--losses", recipe, *RECIPE])
            for arm, (_, recipe) in table.items()
        },
        **(extra or {}),
        "real_faces": json.loads((args.runs / "real.json").read_text())["faces"],
        "photodiode": "photons=200",
        "generated_faces": f"held-out, seeds 1000000..{1_000_000 + args.faces - 1}",
        "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


def main() -> None:
    chance = round(CONTRAST_WEIGHT * math.log(BANK + 1), 4)  # own no nearer than any
    extra = {"contrast_bank": BANK, "contrast_at_chance": chance}
    run_arms(__doc__, "contrast_finetune", START, ARMS, FACES, STEPS, extra)


if __name__ == "__main__":
    main()
