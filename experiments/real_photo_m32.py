"""What does training on real photos buy the 1:2,048 camera (M = 32) on real people, and what does it
cost on the generator's own faces?

m32 is fine-tuned into W+ by `lsi finetune --utkface` on 6,000 UTKFace training-split photos and 3,000 of
its own training faces (the paper's losses through MobileStyleGAN's differentiable torch path; a rank-64
offset head grown at zero, so training starts from m32's faces), 900 steps of 8 faces, patterns frozen.
The tuned model ships as ``--export`` (`models/m32-real.safetensors`: m32's pattern set, model id
``lsi-mobilestylegan-m32-real``). m32 and m32-real are then scored by `lsi eval --real` on the
held-out people (the 40 Canada portraits and the first 1,024 held-out UTKFace faces, photon flux 200,
with Dlib's protocol, the people of `docs/results/real_faces.json`), and by `lsi eval` on
held-out generated faces.

The fine-tuned file goes to ``--runs`` and is reused when present (with its report). Needs face-api's
weights, the shared real-face photos and `lsi data`'s cached training faces:

    .venv/bin/python experiments/real_photo_m32.py   # about 1 h 15 min on the 2-core CPU
"""

import json
import time
from pathlib import Path

from real_photo_finetune import experiment_parser, run

FINETUNE = [
    "finetune", "--utkface", "6000", "--generated", "3000", "--model", "m32", "--latent-space", "w+",
    "--offset-rank", "64", "--losses", "paper", "--steps", "900", "--batch-size", "8", "--lr", "2e-4",
    "--teacher-exit", "fast",
]  # fmt: skip


KEPT = ("photos", "generated_faces", "config", "loss_weights", "seconds")  # of the fine-tuning report


def exported(tuned: Path, export: Path) -> Path:
    """The tuned model under the shipped name (its weights as m32 stores them)."""
    from lsi_ros.models.checkpoint import LsiModel, load_model, save_model

    model = load_model(tuned)
    named = LsiModel(f"lsi-mobilestylegan-{export.stem}", model.pattern_set, model.encoder, model.info)
    export.parent.mkdir(parents=True, exist_ok=True)
    return save_model(named, export, model.info.get("architecture", {}).get("weights", "fp16"))


def main() -> None:
    args = experiment_parser(__doc__, "real_photo_m32", "models/m32-real.safetensors").parse_args()
    started = time.monotonic()
    args.runs.mkdir(parents=True, exist_ok=True)
    tuned, report = args.runs / "m32-wplus.safetensors", args.runs / "m32-wplus.report.json"
    threads = ["--threads", str(args.threads)]
    if not (tuned.is_file() and report.is_file()):
        run([*FINETUNE, "--output", str(tuned), "--report", str(report), *threads])
    exported(tuned, args.export)
    real, generated = args.runs / "real.json", args.runs / "generated.json"
    people = ["--real", "--utkface", str(args.utkface), "--canada", "40", "--dlib", "--no-baselines"]
    models = ["m32", str(args.export)]
    run(["eval", *people, "--models", *models, *threads, "--output", str(real), "--examples", ""])
    run(["data", "--train", "1536", "--held-out", str(args.faces)])
    no_figures = ["--figure", "", "--examples", ""]
    run(["eval", "--faces", str(args.faces), "--models", *models, "--no-baselines", *threads,
         "--output", str(generated), *no_figures])  # fmt: skip
    fine_tuning = json.loads(report.read_text())
    result = {
        "command": "python experiments/real_photo_m32.py",
        "finetune": "lsi " + " ".join(FINETUNE),
        "exported": {"file": str(args.export), "bytes": args.export.stat().st_size},
        "fine_tuning": {key: fine_tuning[key] for key in KEPT} | {"final_loss": fine_tuning["history"][-1]},
        "real_faces": json.loads(real.read_text())["faces"],
        "photodiode": "photons=200",
        "real": [r for r in json.loads(real.read_text())["rows"] if r["method"] == "lsi"],
        "generated_faces": f"held-out, seeds 1000000..{1_000_000 + args.faces - 1}",
        "generated": [
            {"model": name, **r}
            for name, r in zip(
                ["m32", args.export.stem],
                [r for r in json.loads(generated.read_text())["rows"] if r["noise"] == "photons=200"],
                strict=True,
            )
        ],
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
