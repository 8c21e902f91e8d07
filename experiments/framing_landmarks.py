"""Whose 68 points frame the face better: face-api's landmark net alone, or Dlib's shape predictor
started from them?

The locator (shipped finder and zoom, its framing correction off) frames unframed scenes of
training-range generated faces (seeds from 750000, never evaluated; photon flux 200). On every zoom
that finds a face, both point sets are kept: face-api's, which start Dlib's predictor, and Dlib's,
which the locator frames by. Each set frames the face by the FFHQ rule in its own grid and is then
read by the framing correction's ridge regression (``lsi_ros.framing.correction.fit_framing_correction``:
its 68 points in that grid -> where the generator's grid lies in it, ridge chosen by 5-fold
cross-validation), so each is scored at its best linear read, bias (a framing offset) included. The
row ``dlib, rule and offset`` is the locator's framing without a correction: the rule on Dlib's
points moved by ``LocatorConfig.framing_offset``. Dlib's compute per zoom is timed. Needs face-api's
weights and Dlib (requirements.txt):

    .venv/bin/python experiments/framing_landmarks.py --scenes 600   # about 4 min on the 2-core CPU
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lsi_ros.commands.eval import _face_analyzer
from lsi_ros.evaluation import framing, quality
from lsi_ros.evaluation.real_faces import ffhq_quad
from lsi_ros.framing import correction
from lsi_ros.framing.field import field_to_grid, registration_from_quad
from lsi_ros.framing.finder import load_face_finder
from lsi_ros.framing.localize import FaceLocator, LocatorConfig, to_field
from lsi_ros.framing.unframed import generated_faces, unframed_scene
from lsi_ros.models.generators import get_generator
from lsi_ros.models.registry import find_model


class RecordedLandmarks:
    """The locator's Dlib predictor, keeping what went in (face-api's points) and came out."""

    def __init__(self, predictor):
        self.predictor, self.last, self.seconds = predictor, None, []

    def refine(self, image, landmarks):
        start = time.perf_counter()
        refined = self.predictor.refine(image, landmarks)
        self.seconds.append(time.perf_counter() - start)
        self.last = (np.array(landmarks), refined)
        return refined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=600)
    parser.add_argument("--first-seed", type=int, default=framing.FRAMING_OFFSET_FIRST_SEED)
    parser.add_argument("--output", default="docs/results/framing_landmarks.json")
    args = parser.parse_args()
    started = time.time()
    photodiode = quality.default_photodiodes()[1]
    config = LocatorConfig(framing_correction=False)
    locator = FaceLocator(
        load_face_finder(find_model("face-finder")), _face_analyzer(), config=config, photodiode=photodiode
    )
    recorded = RecordedLandmarks(locator.shape_predictor)
    locator.shape_predictor = recorded
    faces = generated_faces(get_generator("mobilestylegan"), args.first_seed, args.scenes)
    rng = np.random.default_rng(args.first_seed)
    points = {"face-api": [], "dlib": []}
    residuals = {"face-api": [], "dlib": []}
    for index, face in enumerate(tqdm(faces, desc="framing landmarks", unit="scene")):
        scene = unframed_scene(f"face {index}", face, rng, locator.field_shape)
        found = locator.locate(scene.image)
        if not found.found:
            continue
        for name, marks in zip(points, recorded.last, strict=True):
            field = to_field(marks, config.zoom_resolution, found.window, locator.field_shape)
            framed = found.registration
            if name == "face-api":
                framed = registration_from_quad(ffhq_quad(field), locator.field_shape, config.resolution)
            grid = field_to_grid(field, locator.field_shape, config.resolution)
            points[name].append(correction.features(framed, grid))
            residuals[name].append(correction.residual(framed, scene.registration))
    reports = {
        name: correction.fit_framing_correction(np.array(x), np.array(residuals[name]))[1]
        for name, x in points.items()
    }
    rows = {
        "dlib, rule and offset": reports["dlib"]["without"],
        "face-api, best linear read": reports["face-api"]["with"],
        "dlib, best linear read": reports["dlib"]["with"],
    }
    results = {
        "command": f"python experiments/framing_landmarks.py --scenes {args.scenes}",
        "seeds": f"{args.first_seed}..{args.first_seed + args.scenes - 1}",
        "photodiode": photodiode.label,
        "zoom": {"window": config.zoom_window, "patterns": config.zoom_patterns},
        "framing_offset": list(config.framing_offset),
        "scenes_found": len(residuals["dlib"]),
        "framing_errors": rows,
        "ridge": {name: report["ridge"] for name, report in reports.items()},
        "dlib_ms_per_zoom_median": round(1000 * float(np.median(recorded.seconds)), 2),
        "seconds": round(time.time() - started),
    }
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
