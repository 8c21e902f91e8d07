"""A camera for real people at 1:512: a pattern set learnt for identity, an encoder trained anew for
it, then taught real people through the generator.

m128's patterns were learnt for generated faces and pass on little of who a real person is
(`experiments/identity_readout.py`). This builds the 128-pattern model ``m128-people`` in three stages,
each an `lsi` command, each skipped when its output is in ``--runs`` already:

1. `lsi patterns`: m128's patterns learn, beside two read-out networks, face-api's descriptors of the
   UTKFace training-split photos (and their mirror images) and the latents of 6,144 generated faces.
2. `lsi train --patterns-from`: eight W encoders on those fixed patterns, on 5,888 generated faces
   (validation 256), averaged: the encoder m128's patterns have, for the new ones.
3. `lsi finetune --utkface`: into W+ (rank-64 offset head grown at zero) on every training-split photo,
   mirrored half the time, and 3,000 generated faces, with the paper's losses through the generator.

The result is written as ``--export`` (model id ``lsi-mobilestylegan-m128-people``, its own pattern set)
and scored like m128-real: `lsi eval --real` on the 1,064 held-out people of
`docs/results/real_faces.json` (the 40 Canada portraits and the first 1,024 held-out UTKFace faces,
photon flux 200, with Dlib's protocol; rank-1 among all 1,064), and `lsi eval` on 200 held-out
generated faces. The stage-2 encoder, which has seen no real photo, is scored on the same people.
m128-real's rows come from `real_faces.json` and `real_photo_finetune.json`, which score the same
frames.

    .venv/bin/python experiments/people_patterns.py   # about 2 h on the 2-core CPU
"""

import json
from pathlib import Path

from real_photo_finetune import experiment_parser, run
from real_photo_m32 import exported

PATTERNS = ["patterns", "--start", "m128", "--steps", "4000"]
ENCODER = [
    "train", "--name", "m128-people", "--members", "8", "--width", "512", "--train-faces", "5888",
    "--validation-faces", "256", "--steps", "800", "--batch-size", "256", "--checkpoint-every", "100",
    "--weight-format", "int8",
]  # fmt: skip
FINETUNE = [
    "finetune", "--utkface", "7199", "--generated", "3000", "--mirror", "--latent-space", "w+",
    "--offset-rank", "64", "--losses", "paper", "--steps", "1400", "--batch-size", "8", "--lr", "2e-4",
    "--teacher-exit", "fast",
]  # fmt: skip
REFERENCE_MODELS = ("lsi-mobilestylegan-m128", "lsi-mobilestylegan-m128-real")
KEPT = ("photos", "generated_faces", "config", "loss_weights", "seconds")  # of the fine-tuning report


def stages(runs: Path, threads: list[str]) -> dict[str, Path]:
    """Run what is missing of the three stages; returns their outputs."""
    out = {
        "patterns": runs / "m128-people-patterns.safetensors",
        "encoder": runs / "m128-people-w.safetensors",
        "tuned": runs / "m128-people-wplus.safetensors",
    }
    report = {name: runs / f"{path.stem}.report.json" for name, path in out.items() if name != "encoder"}
    if not report["patterns"].is_file():
        run([*PATTERNS, *threads, "--output", str(out["patterns"]), "--report", str(report["patterns"])])
    if not out["encoder"].is_file():
        source = ["--patterns-from", str(out["patterns"]), "--run-dir", str(runs / "train")]
        run([*ENCODER, *source, *threads, "--export", str(out["encoder"])])
    if not report["tuned"].is_file():
        start = ["--model", str(out["encoder"]), "--output", str(out["tuned"])]
        run([*FINETUNE, *start, *threads, "--report", str(report["tuned"])])
    return out | {f"{name}_report": path for name, path in report.items()}


def main() -> None:
    args = experiment_parser(
        __doc__, "people_patterns", "runs/people-patterns/m128-people.safetensors"
    ).parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)]
    out = stages(args.runs, threads)
    exported(out["tuned"], args.export)
    real, generated = args.runs / "real.json", args.runs / "generated.json"
    real_w = args.runs / "real-w.json"  # the stage-2 encoder: the new patterns before any real photo
    people = ["--real", "--utkface", str(args.utkface), "--canada", "40", "--dlib", "--no-baselines"]
    for scored, model in ((real, args.export), (real_w, out["encoder"])):
        if not scored.is_file():
            run(
                ["eval", *people, "--models", str(model), *threads, "--output", str(scored), "--examples", ""]
            )
    if not generated.is_file():
        no_figures = ["--figure", "", "--examples", ""]
        run(["eval", "--faces", str(args.faces), "--models", str(args.export), "--no-baselines", *threads,
             "--output", str(generated), *no_figures])  # fmt: skip
    shipped_real = json.loads(Path("docs/results/real_faces.json").read_text())
    shipped_generated = json.loads(Path("docs/results/real_photo_finetune.json").read_text())
    encoder = json.loads(out["encoder"].with_suffix(".json").read_text())
    fine_tuning = json.loads(out["tuned_report"].read_text())
    rows = json.loads(real.read_text())["rows"]
    result = {
        "command": "python experiments/people_patterns.py",
        "stages": {
            "patterns": "lsi " + " ".join(PATTERNS),
            "encoder": "lsi " + " ".join(ENCODER),
            "finetune": "lsi " + " ".join(FINETUNE),
        },
        "patterns": json.loads(out["patterns_report"].read_text()),
        "encoder": {
            "val_latent_mse": encoder.get("val_latent_mse"),
            "members": [
                {k: m[k] for k in ("seed", "exported_step", "val_latent_mse")} for m in encoder["members"]
            ],
        },
        "exported": {"file": str(args.export), "bytes": args.export.stat().st_size},
        "fine_tuning": {key: fine_tuning[key] for key in KEPT} | {"final_loss": fine_tuning["history"][-1]},
        "real_faces": json.loads(real.read_text())["faces"],
        "photodiode": "photons=200",
        "real": [r for r in rows if r["method"] == "lsi"],
        "real_before_photos": [r for r in json.loads(real_w.read_text())["rows"] if r["method"] == "lsi"],
        "real_reference": {
            "source": "docs/results/real_faces.json",
            "rows": [r for r in shipped_real["rows"] if r.get("model_id") in REFERENCE_MODELS],
        },
        "generated_faces": f"held-out, seeds 1000000..{1_000_000 + args.faces - 1}",
        "generated": [r for r in json.loads(generated.read_text())["rows"] if r["noise"] == "photons=200"],
        "generated_reference": {
            "source": "docs/results/real_photo_finetune.json",
            "rows": [{"variant": r["variant"], **r["generated"]} for r in shipped_generated["rows"]],
        },
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
