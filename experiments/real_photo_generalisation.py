"""What holds m128-real back on real people: fitting, generalising, or photon noise?

m128-real is scored (as `lsi eval --real` scores it) on three sets of UTKFace faces of the same size:
photos it was fine-tuned on (spread over the training-split photos it saw), training-split photos it
never saw, and held-out faces; the held-out faces once more with noiseless measurements. If the
faces it learnt from score far above the others, it has not learnt what carries over to new people;
if they score low as well, it could not fit them; if the noiseless row scores above the noisy one,
the light level is what limits it.

    .venv/bin/python experiments/real_photo_generalisation.py   # about 4 min on the 2-core CPU
"""

import argparse
import json
import time
from pathlib import Path

from lsi_ros.cli import retain_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="m128-real")
    parser.add_argument("--faces", type=int, default=200, help="faces in each set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("docs/results/real_photo_generalisation.json"))
    args = parser.parse_args()
    retain_freed_memory()
    import torch

    from lsi_ros.evaluation import real_faces
    from lsi_ros.evaluation.face_analysis import FaceAnalyzer
    from lsi_ros.evaluation.quality import default_photodiodes
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    model = load_model(find_model(args.model))
    seen = model.info["photo_finetune"]["photos"]  # the first `seen` training-split faces, in key order
    folder = real_faces.default_real_faces_dir() / real_faces.UTKFACE_FOLDER
    train = real_faces.utkface_faces(folder, split="train")
    if len(train) - seen < args.faces:
        raise SystemExit(f"{args.model} saw {seen} of {len(train)} training photos: too few left unseen")
    sets = {
        "trained on": train[:seen][:: seen // args.faces][: args.faces],
        "training split, never trained on": train[seen:][: args.faces],
        "held out": real_faces.utkface_faces(folder)[: args.faces],
    }
    noiseless, photodiode = default_photodiodes()[:2]
    runs = [(name, faces, photodiode) for name, faces in sets.items()]
    runs.append(("held out", sets["held out"], noiseless))
    analyzer, generator = FaceAnalyzer(), get_generator("mobilestylegan")
    rows = []
    for name, faces, light in runs:
        framed = real_faces.frame_faces(analyzer, faces, None, progress=False)
        box = real_faces.framed_face_box(analyzer, framed.images[:64])
        scored = real_faces.evaluate(analyzer, [model], generator, framed, light, (), progress=False, box=box)
        row = next(r for r in scored if r["method"] == "lsi")
        keep = ("n_images", "psnr", "ssim", "same_person_rate", "rank1_identification", "gender_agreement")
        rows.append({"faces": name, "photodiode": light.label, **{k: row[k] for k in keep}})
        print(rows[-1], flush=True)
    result = {
        "command": "python experiments/real_photo_generalisation.py",
        "model": args.model,
        "trained_on_photos": seen,
        "note": f"rank-1 among the {args.faces} faces of each set",
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
