"""Does more light lift the attributes read off the LSI latent?

Encodes the held-out faces through a shipped model at each photon flux (and noiseless) and reads them
with the model's own-estimate boundaries, against the labeller's label on the clean face. A flat
curve says the photodiode noise is not what the read-out lacks. Needs the held-out faces and labels
(`lsi data`, `lsi label`); prints a table (about 2 min on the 2-core CPU for m128):

    .venv/bin/python experiments/attribute_flux_sweep.py --model m128
"""

import argparse

import numpy as np
import torch

from lsi_ros.evaluation import downstream, face_labels
from lsi_ros.evaluation.latent_imaging import encode_faces
from lsi_ros.models.attributes import load_boundaries
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.registry import find_model
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training import data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="m128", help="a shipped model name or a model file")
    parser.add_argument(
        "--boundaries",
        help="boundaries file (default models/attributes-<model>.safetensors; needed for a model file)",
    )
    parser.add_argument("--fluxes", type=float, nargs="+", default=[20, 50, 200, 500, 2000])
    parser.add_argument("--held-out", type=int, default=2048)
    parser.add_argument("--generator", default="mobilestylegan")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.boundaries is None and args.model.endswith(".safetensors"):
        parser.error("--boundaries is needed when --model is a file")
    torch.set_num_threads(args.threads)

    model = load_model(find_model(args.model))
    boundaries = load_boundaries(args.boundaries or f"models/attributes-{args.model}.safetensors")
    if boundaries.pattern_set_id not in ("", model.pattern_set.pattern_set_id):
        parser.error(
            f"the boundaries were fitted on pattern set {boundaries.pattern_set_id}, "
            f"{args.model} measures with {model.pattern_set.pattern_set_id}"
        )
    faces = data.load(args.generator, data.HELD_OUT_SEED_START, args.held_out)
    truth = face_labels.binary_attributes(face_labels.load_labels(args.generator, faces.seeds))
    images = faces.images.astype(np.float32) / 255.0
    print(f"{args.model}, {len(images)} held-out faces: accuracy per attribute")
    print("photon flux  " + "  ".join(f"{name:>12}" for name in boundaries.names))
    conditions = [(f"{flux:g}", PhotodiodeModel().with_photon_flux(flux)) for flux in args.fluxes]
    for label, photodiode in conditions + [("noiseless", PhotodiodeModel.noiseless())]:
        latents = encode_faces(model, images, photodiode)
        rows = downstream.latent_rows(boundaries, latents, truth, "lsi-latent", model.num_measurements)
        print(f"{label:>11}  " + "  ".join(f"{row['accuracy']:12.4f}" for row in rows), flush=True)


if __name__ == "__main__":
    main()
