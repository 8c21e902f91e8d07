"""How much m128's attribute accuracies move with the photodiode's noise draw.

`lsi attributes` reads the 2,048 held-out faces through one noise draw (seed 0). This repeats the
shipped m128's two read-outs for other draws: its own-estimate boundaries (``lsi-latent-fitted``)
and the labeller on the face the generator decodes from its latent (``lsi-decoded``), each scored
against the labeller on the clean face (~11 min per draw; the bounds are in attributes.json):

    python experiments/attribute_noise_draws.py --seeds 1 2     # -> docs/results/attribute_noise_draws.json
"""

import argparse
import json
from pathlib import Path

from lsi_ros.evaluation import downstream, face_labels
from lsi_ros.evaluation.face_analysis import FaceAnalyzer
from lsi_ros.evaluation.latent_imaging import decode_faces, encode_faces
from lsi_ros.models.attributes import load_boundaries
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.generators import get_generator
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/m128.safetensors")
    parser.add_argument("--boundaries", default="models/attributes-m128.safetensors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="photodiode noise seeds")
    parser.add_argument("--held-out", type=int, default=2048)
    parser.add_argument("--output", default="docs/results/attribute_noise_draws.json")
    args = parser.parse_args()
    model, boundaries = load_model(args.model), load_boundaries(args.boundaries)
    test = data.load("mobilestylegan", data.HELD_OUT_SEED_START, args.held_out)
    target = face_labels.binary_attributes(face_labels.load_labels("mobilestylegan", test.seeds))
    generator, analyzer = get_generator("mobilestylegan"), FaceAnalyzer()
    images = test.images.astype("float32") / 255.0
    draws = []
    for seed in args.seeds:
        latents = encode_faces(model, images, PhotodiodeModel(), seed)
        fitted = downstream.latent_rows(boundaries, latents, target, "lsi-latent-fitted", 128)
        decoded = decode_faces(generator, latents, desc=f"decoding (seed {seed})")
        labels = face_labels.binary_attributes(
            face_labels.label_faces(analyzer, decoded, desc=f"labelling (seed {seed})")
        )
        draw = {"seed": seed}
        for row in fitted:
            draw[f"{row['attribute']}_lsi_latent_fitted"] = row["accuracy"]
        for name, value in labels.items():
            draw[f"{name}_lsi_decoded"] = downstream.accuracy(value.astype(float), target[name])
        print(json.dumps(draw), flush=True)
        draws.append(draw)
    results = {
        "command": "python experiments/attribute_noise_draws.py --seeds " + " ".join(map(str, args.seeds)),
        "model": model.model_id,
        "pattern_set_id": model.pattern_set.pattern_set_id,
        "n_images": len(test.seeds),
        "noise": "photons=200",
        "draws": draws,
    }
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
