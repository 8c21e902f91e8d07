"""The find-and-frame loop scored on unframed scenes: is the face found, is the empty field left
empty, and does the model image the face framed by the locator as well as the face framed by hand.

Per scene with a face (:mod:`lsi_ros.framing.unframed`): the locator's registration and the hand
registration each put the model's patterns on the field (``measure_field``, mirror level, the
realistic photodiode); each set of counts is encoded and decoded, and both decoded faces are scored
against the hand-framed face (``framed_view`` of the hand registration: what the model should see):
grayscale SSIM and face-api descriptor distance (same person below 0.6). A scene where the locator
finds no face counts as a miss (it has no locator-framed reconstruction). The walking sequence runs
the tracking loop: every frame measured with the current registration, which the tracker moves with
the face, a zoom round the tracked box whenever the tracker or :class:`RelocalisationPolicy` asks, and
the share of all patterns that went to localisation and tracking.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from lsi_ros.evaluation.identity import SAME_PERSON_DISTANCE, uint8_images
from lsi_ros.evaluation.latent_imaging import score_image
from lsi_ros.framing import correction
from lsi_ros.framing.field import field_to_grid, framed_view, measure_field
from lsi_ros.framing.tracking import LocalisationCost, RelocalisationPolicy
from lsi_ros.framing.unframed import unframed_scene, unframed_scenes, walking_sequence
from lsi_ros.optics.forward import ForwardModel

RESOLUTION = 256


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    low, high = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(high - low, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    return inter / union if union > 0 else 0.0


def registration_error(found, truth) -> dict:
    """Centre error in sampling pixels of the field-wide grid and of the face's own grid (what the model
    sees: a 2-pixel error there costs identity), scale ratio and roll difference (degrees)."""
    return {
        "centre_px": float(np.hypot(*np.subtract(found.shift, truth.shift))),
        "centre_face_px": float(np.hypot(*truth.to_grid(np.asarray(found.shift)))),
        "scale_ratio": float(found.scale / truth.scale),
        "roll_deg": float(found.roll - truth.roll),
    }


# Faces that fit the framing offset and correction: training-range seeds beyond the face finder's bank,
# never evaluated.
FRAMING_OFFSET_FIRST_SEED = 750_000


def fit_framing_offset(locator, faces, seed: int = 0) -> dict:
    """The locator's ``framing_offset`` for the generator's own framing: the median, over unframed
    scenes of ``faces``, of where the true grid centre lies in the grid the locator frames with no
    offset (sampling pixels of that grid, rows and columns of the face upright). The landmark net
    places the FFHQ rule's square a few pixels off the generator's framing, and more so the blurrier
    the zoomed image, so the offset belongs to the locator's zoom settings."""
    unbiased = copy.copy(locator)
    unbiased.config = dataclasses.replace(locator.config, framing_offset=(0.0, 0.0), framing_correction=False)
    scenes = unframed_scenes(faces, len(faces), 0, seed=seed, field_shape=locator.field_shape)
    where = []
    for scene in tqdm(scenes, total=len(faces), desc="framing offset", unit="scene"):
        found = unbiased.locate(scene.image)
        if found.found:
            where.append(found.registration.to_grid(np.asarray(scene.registration.shift)))
    if not where:
        raise ValueError("no face was found: the framing offset cannot be fitted")
    where = np.array(where)
    offset = np.median(where, axis=0)
    return {
        "framing_offset": [round(float(v), 2) for v in offset],
        "faces": len(faces),
        "found": len(where),
        "spread_px_median": round(float(np.median(np.hypot(*(where - offset).T))), 3),
    }


def framing_correction_data(locator, faces, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`lsi_ros.framing.correction.fit_framing_correction` learns from: per unframed scene of
    ``faces`` where the locator (without a correction) finds the face, the landmarks in the grid it
    framed (N, 136) and where the true grid lies in that grid (N, 4). Scenes are made one at a time."""
    plain = copy.copy(locator)
    plain.config = dataclasses.replace(locator.config, framing_correction=False)
    rng = np.random.default_rng(seed)
    x, y = [], []
    for i, face in enumerate(tqdm(faces, desc="framing correction", unit="scene")):
        scene = unframed_scene(f"face {i}", face, rng, locator.field_shape)
        found = plain.locate(scene.image)
        if found.found:
            marks = field_to_grid(found.landmarks, locator.field_shape, locator.config.resolution)
            x.append(correction.features(found.registration, marks))
            y.append(correction.residual(found.registration, scene.registration))
    if not x:
        raise ValueError("no face was found: the framing correction cannot be fitted")
    return np.array(x), np.array(y)


class FramedImaging:
    """The model imaging a field through a registration: counts -> latent -> decoded face."""

    def __init__(self, model, generator, photodiode, seed: int = 0):
        self.model, self.generator, self.photodiode = model, generator, photodiode
        self.forward = ForwardModel(model.pattern_set, np.float32)
        self.rng = np.random.default_rng(seed)

    def counts(self, field_image, registration) -> np.ndarray:
        return measure_field(field_image, self.forward, registration, self.photodiode, self.rng)

    def decode(self, counts: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            latents = self.model.encoder(torch.from_numpy(np.asarray(counts, np.float32))).numpy()
        return np.concatenate(
            [self.generator.synthesize(latents[i : i + 8]) for i in range(0, len(latents), 8)]
        )


# The hand framing moved by this much (sampling pixels of the face's own grid, a random direction per
# scene): how much of the identity a framing error of the locator's size costs the model by itself.
MOVED_BY_FACE_PX = 2.0


def moved_registration(registration, face_px: float, angle: float):
    """``registration`` with its grid centre moved ``face_px`` of its own sampling pixels at ``angle``."""
    offset = face_px * np.array([np.sin(angle), np.cos(angle)])
    return dataclasses.replace(registration, shift=tuple(registration.to_scene(offset)))


def evaluate_scenes(
    locator,
    imaging: FramedImaging,
    analyzer,
    faces,
    names,
    empty: int,
    seed: int,
    source: str,
    keep_fields=None,
):
    """Scores of one face set (N, R, R, 3) uint8 placed once each into unframed scenes, plus ``empty``
    scenes without a face; returns (summary dict, per-scene records for figures). Only the records
    of the scenes in ``keep_fields`` (default: the first two face scenes and the first empty one, what
    a figure shows) keep their field image; the others keep everything else."""
    count = len(faces) + empty
    keep_fields = {0, 1, len(faces)} if keep_fields is None else set(keep_fields)
    scenes = unframed_scenes(
        faces, len(faces), empty, seed=seed, field_shape=locator.field_shape, names=names
    )
    angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, count)
    records = []
    progress = tqdm(scenes, total=count, desc=f"framing: {source}", unit="scene")
    for index, (scene, angle) in enumerate(zip(progress, angles, strict=True)):
        found = locator.locate(scene.image)
        record = {"scene": scene, "found": found}
        if scene.has_face:
            record["truth"] = framed_view(scene.image, scene.registration, RESOLUTION)
            record["hand_counts"] = imaging.counts(scene.image, scene.registration)
            moved = moved_registration(scene.registration, MOVED_BY_FACE_PX, angle)
            record["moved_counts"] = imaging.counts(scene.image, moved)
            if found.found:
                record["located_counts"] = imaging.counts(scene.image, found.registration)
                record["iou"] = box_iou(found.box, scene.box)
                record["error"] = registration_error(found.registration, scene.registration)
        if index not in keep_fields:
            record["scene"] = dataclasses.replace(scene, image=None)
        records.append(record)
    with_face = [r for r in records if r["scene"].has_face]
    truth = np.stack([r["truth"] for r in with_face])
    truth_desc = analyzer.describe(uint8_images(truth))
    index = {id(r): i for i, r in enumerate(with_face)}
    for name in ("hand", "moved", "located"):
        scored = [r for r in with_face if f"{name}_counts" in r]
        if not scored:
            continue
        decoded = imaging.decode(np.stack([r[f"{name}_counts"] for r in scored]))
        descriptors = analyzer.describe(uint8_images(decoded))
        for k, r in enumerate(scored):
            i = index[id(r)]
            r[name] = decoded[k]
            r[f"{name}_ssim"] = score_image(truth[i], decoded[k])["ssim"]
            r[f"{name}_distance"] = float(np.linalg.norm(descriptors[k] - truth_desc[i]))
    return _summary(records, source), records


def _summary(records: list, source: str) -> dict:
    with_face = [r for r in records if r["scene"].has_face]
    empty = [r for r in records if not r["scene"].has_face]
    located = [r for r in with_face if "located" in r]
    costs = [r["found"] for r in records if r["scene"].has_face]

    def rate(values) -> float | None:
        return round(float(np.mean(values)), 4) if len(values) else None

    summary = {
        "faces": source,
        "n_face_scenes": len(with_face),
        "n_empty_scenes": len(empty),
        "detection_rate": rate([r["found"].found for r in with_face]),
        "false_positive_rate": rate([r["found"].found for r in empty]),
        "face_width_range": [round(min(r["scene"].face_width for r in with_face), 3),
                             round(max(r["scene"].face_width for r in with_face), 3)],
        "hand": {
            "ssim": rate([r["hand_ssim"] for r in with_face]),
            "same_person_rate": rate([r["hand_distance"] < SAME_PERSON_DISTANCE for r in with_face]),
            "median_distance": round(float(np.median([r["hand_distance"] for r in with_face])), 4),
        },
        "hand_moved": {
            "shift_face_px": MOVED_BY_FACE_PX,
            "ssim": rate([r["moved_ssim"] for r in with_face]),
            "same_person_rate": rate([r["moved_distance"] < SAME_PERSON_DISTANCE for r in with_face]),
            "median_distance": round(float(np.median([r["moved_distance"] for r in with_face])), 4),
        },
    }  # fmt: skip
    if located:
        errors = {k: np.array([r["error"][k] for r in located]) for k in located[0]["error"]}
        summary["located"] = {
            "n": len(located),
            "ssim": rate([r["located_ssim"] for r in located]),
            "same_person_rate": rate([r["located_distance"] < SAME_PERSON_DISTANCE for r in located]),
            "median_distance": round(float(np.median([r["located_distance"] for r in located])), 4),
            "hand_ssim_same_scenes": rate([r["hand_ssim"] for r in located]),
            "hand_same_person_rate_same_scenes": rate(
                [r["hand_distance"] < SAME_PERSON_DISTANCE for r in located]
            ),
            "box_iou_median": round(float(np.median([r["iou"] for r in located])), 4),
            "centre_error_px_median": round(float(np.median(errors["centre_px"])), 3),
            **_spread("centre_error_face_px", errors["centre_face_px"], 3, percentile=90),
            "scale_error_median": round(float(np.median(np.abs(errors["scale_ratio"] - 1))), 4),
            "roll_error_deg_median": round(float(np.median(np.abs(errors["roll_deg"]))), 3),
        }
        # Misses count as failures end to end: no locator-framed face is no face imaged.
        summary["located"]["same_person_rate_all_scenes"] = rate(
            [r.get("located_distance", np.inf) < SAME_PERSON_DISTANCE for r in with_face]
        )
    summary["localisation"] = {
        "patterns_mean": round(float(np.mean([c.patterns for c in costs])), 1),
        "display_ms_mean": round(float(np.mean([c.display_ms for c in costs])), 2),
        "compute_ms_mean": round(float(np.mean([c.compute_ms for c in costs])), 1),
    }
    return summary


def evaluate_tracking(
    locator,
    imaging: FramedImaging,
    face: np.ndarray,
    frames: int,
    policy: RelocalisationPolicy,
    tracker,
    track_every: int = 2,
    seed: int | None = None,
):
    """The tracking loop over a walking sequence: a localisation (a zoom round the tracked box) when
    the tracker or the policy asks, and in between the tracker's updates: with a
    :class:`~lsi_ros.framing.tracking.MeasurementTracker`, each frame's own measurements move the
    registration for the next frame (and a coarse look when it asks); with a
    :class:`~lsi_ros.framing.tracking.FaceTracker`, an update of its own patterns every ``track_every``
    frames. The cost and how well each frame stayed framed, the error measured on the registration the
    frame was taken through. The cost is given over the whole sequence and once the face is found (the
    search of the whole field before the first frame left out: on a long walk it is paid once).
    ``seed``: the walk's background, and fresh photodiode noise for the camera and the locator (None:
    background 0, the noise where the generators stand)."""
    if seed is not None:
        imaging.rng, locator.rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    cost = LocalisationCost(imaging.model.num_measurements)
    registration, errors, misses, pending, search = None, [], 0, True, 0
    follows = hasattr(tracker, "follow")
    sequence = walking_sequence(face, frames, locator.field_shape, seed=seed or 0)
    for index, scene in enumerate(tqdm(sequence, total=frames, desc="tracking", unit="frame")):
        if pending:
            near = None if registration is None else tracker.box()
            result = locator.locate(scene.image, near, held=tracker.still_holds)
            cost.add_localisation(result.patterns, result.display_ms)
            if registration is None and result.found:
                search = cost.localisation_patterns  # finding the face at all, before any frame
            policy.localised()
            pending = not result.found
            if result.found:
                tracker.start(result)
                registration = result.registration
            else:
                misses += 1
        elif not follows and index % track_every == 0:
            registration, _, ok = tracker.update(scene.image)
            shown = tracker.last_patterns
            cost.add_tracking(shown, 1000.0 * locator.timing.frame_time(shown))
            policy.reframed()
            pending = not ok
        if registration is None:
            continue
        cost.add_frame()
        counts = imaging.counts(scene.image, registration)
        errors.append(registration_error(registration, scene.registration))
        pending = policy.should_localise(counts) or pending
        if follows and not pending:
            # The tracker's own fit judges the change; the policy keeps its count of frames.
            registration, _, ok = tracker.follow(counts)
            policy.reframed()
            pending = not ok
            if ok and tracker.wants_look:
                shown = tracker.look_again(scene.image)
                cost.add_tracking(shown, 1000.0 * locator.timing.frame_time(shown))
    summary = cost.summary()
    centre = np.array([e["centre_px"] for e in errors])
    face_centre = np.array([e["centre_face_px"] for e in errors])
    spent = cost.localisation_patterns + cost.tracking_patterns - search
    summary.update(
        {
            "tracker": type(tracker).__name__,
            "search_patterns": search,
            "fraction_of_patterns_once_found": round(spent / (spent + cost.frames * cost.frame_patterns), 4),
            "reference_windows": tracker.anchors,
            "reference_window_patterns": tracker.anchor_cost,
            "frame_ms": round(1000.0 * locator.timing.frame_time(cost.frame_patterns), 3),
            "tracking_update_every_frames": track_every,
            "tracking_patterns_per_update": tracker.cost,
            "relocalise_every_frames": policy.every,
            "relocalise_change": policy.change,
            "failed_localisations": misses,
            **_spread("centre_error_px", centre, 3),
            **_spread("centre_error_face_px", face_centre, 3),
            **_spread("scale_error", np.array([abs(e["scale_ratio"] - 1) for e in errors]), 4),
            **_spread("roll_error_deg", np.array([abs(e["roll_deg"]) for e in errors]), 3),
        }
    )
    return summary


def evaluate_walks(locator, imaging: FramedImaging, faces, frames: int, new_tracker, names=None) -> dict:
    """``evaluate_tracking`` over one walk of each face, each with its own background and noise (one
    walk's cost turns on whether its noise triggers one more localisation): every walk's summary, and
    the mean over the walks of each number (the cost also as its largest)."""
    walks = []
    for index, face in enumerate(faces):
        summary = evaluate_tracking(
            locator, imaging, face, frames, RelocalisationPolicy(), new_tracker(), seed=1000 + index
        )
        walks.append({"face": names[index] if names else index, **summary})
    numbers = [k for k, v in walks[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {"walks": len(walks)}
    out |= {k: round(float(np.mean([w[k] for w in walks])), 4) for k in numbers}
    for key in ("fraction_of_patterns", "fraction_of_patterns_once_found", "localisations"):
        out[f"{key}_max"] = max(w[key] for w in walks)
    out["tracker"] = walks[0]["tracker"]
    out["per_walk"] = walks
    return out


def _spread(name: str, values: np.ndarray, digits: int, percentile: int = 95) -> dict:
    """Median and a high percentile of an error, keyed ``{name}_median`` and ``{name}_p{percentile}``."""
    return {
        f"{name}_median": round(float(np.median(values)), digits),
        f"{name}_p{percentile}": round(float(np.percentile(values, percentile)), digits),
    }


def plot_framing(records: list, path, title: str) -> None:
    """Rows of examples: the field with the located (green) and true (white) boxes, the hand-framed face,
    its reconstruction framed by hand, and framed by the locator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(len(records), 4, figsize=(10, 2.6 * len(records)), squeeze=False)
    for row, (label, r) in zip(axes, records, strict=True):
        scene, found = r["scene"], r["found"]
        row[0].imshow(scene.image)
        if scene.box is not None:
            x0, y0, x1, y1 = scene.box
            row[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.2))
        if found.found:
            x0, y0, x1, y1 = found.box
            row[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.2))
        row[0].set_title(
            f"{label}: {'found' if found.found else 'no face'} ({found.patterns} patterns)", fontsize=8
        )
        panels = [("framed by hand (truth)", r.get("truth")), ("LSI, hand-framed", r.get("hand")),
                  ("LSI, framed by the locator", r.get("located"))]  # fmt: skip
        for ax, (name, image) in zip(row[1:], panels, strict=True):
            if image is not None:
                ax.imshow(np.clip(image, 0, 1))
            ax.set_title(name, fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
