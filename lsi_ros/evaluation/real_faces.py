"""Real people for the camera: UTKFace re-framed to the FFHQ rule, and the FFHQ-framed Canada portraits.

The camera images faces framed as its generator draws them (FFHQ: an oriented square from the eye
and mouth landmarks). The Canada portraits ship framed that way. UTKFace ships as tight 200² crops
(eyes 0.40 of the width apart against 0.24 in FFHQ), so each photo is re-framed here: face-api's
68 landmarks (lsi_ros.evaluation.face_analysis) give eye and mouth points, the FFHQ dataset
script's rule gives the square, and the square is cut out with the photo's edges replicated where
it leaves the photo (the crop shows little more than the face; the rest of the frame is smeared
edge).

Split: UTKFace's files are keyed by the sha256 of their bytes (identical photos under two names are
one face); a face whose key falls in the first quarter of the hash space (``HELD_OUT_BUCKETS`` of
``SPLIT_BUCKETS``) is held out for evaluation and must never be trained on (about 2,400 faces); the
rest is the training split. The held-out faces are evaluated in key order, so any first N is a
fixed set. Framed faces are cached under ``~/.cache/lsi_ros/real-faces`` (never in the project).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from lsi_ros.evaluation.face_labels import AGE_THRESHOLD

UTKFACE_FOLDER = "utkface-crop-part1"
CANADA_FOLDER = "frll-canada-ffhq256"
SPLIT_BUCKETS = 16
HELD_OUT_BUCKETS = 4
RESOLUTION = 256
# Replicated border added before landmark detection: the detector needs some context round a tight crop.
DETECTION_MARGIN = 0.3
FRAMING_VERSION = "ffhq-quad-v1"
PADDINGS = ("replicate", "ffhq")
FACE_BOXES = ("detect", "chip")
OVER_AGE = f"age_over_{AGE_THRESHOLD:g}"  # the attribute as the boundaries name it
FRAMING = (
    "UTKFace: face-api's 68 landmarks (photo padded by 30 % with replicated edges for the detector) -> the "
    "FFHQ dataset script's oriented square (eyes and mouth corners) -> 256x256; outside the photo its "
    "edges replicated (padding 'replicate') or the FFHQ script's reflected, blurred, median-faded fill "
    "('ffhq'); Canada portraits as shipped (the same rule from the set's own landmarks)"
)


def default_real_faces_dir() -> Path:
    """``../shared/data/real-faces`` next to the repository root (absent on most installs)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-faces"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsi_ros" / "real-faces"


@dataclass(frozen=True)
class RealFace:
    """One photo: its file, content key, set, and own labels (age in years, 1 = female; None if unknown)."""

    path: Path
    key: str
    source: str
    age: float | None
    female: int | None

    @property
    def name(self) -> str:
        return f"{self.source}:{self.path.name}"

    @property
    def label(self) -> str:
        """A short caption: set, file stem and the labels."""
        gender = {0: "M", 1: "F"}.get(self.female, "?")
        age = "" if self.age is None else f"{self.age:.0f} "
        return f"{self.source} {self.path.name.split('.')[0][-6:]} ({age}{gender})"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_held_out(key: str) -> bool:
    """The fixed split: a face is held out when its content hash falls in the first buckets."""
    return int(key[:8], 16) % SPLIT_BUCKETS < HELD_OUT_BUCKETS


def utkface_faces(folder, split: str = "held-out") -> list[RealFace]:
    """UTKFace photos of one split ('held-out', 'train' or 'all'), one per distinct content, in key order.

    Labels come from the file name ``age_gender_race_date.jpg.chip.jpg`` (gender 0 = male, 1 = female);
    a name that does not parse gives unknown labels."""
    if split not in ("held-out", "train", "all"):
        raise ValueError(f"split must be 'held-out', 'train' or 'all', not {split!r}")
    faces = {}
    for path in sorted(Path(folder).glob("*.jpg")):
        key = _sha256(path)
        if key in faces or (split != "all" and is_held_out(key) != (split == "held-out")):
            continue
        fields = path.name.split("_")
        try:
            age, female = float(fields[0]), int(fields[1])
        except (IndexError, ValueError):
            age, female = None, None
        faces[key] = RealFace(path, key, "utkface", age, female if female in (0, 1) else None)
    return sorted(faces.values(), key=lambda f: f.key)


def folder_faces(folder) -> list[RealFace]:
    """Every image in a folder (any framing: each is re-framed to the FFHQ rule), labels unknown."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [RealFace(p, _sha256(p), "folder", None, None) for p in paths]


def canada_faces(folder) -> list[RealFace]:
    """The 40 FFHQ-framed Canada portraits; gender from the name's last letter (f/m), age unknown.

    The files list all women before all men, so they come woman, man, woman, ... (each in file order;
    unlabelled ones last): the first N portraits are then balanced by gender for any N."""
    by_gender = {1: [], 0: [], None: []}
    for path in sorted(Path(folder).glob("*.png")):
        female = {"f": 1, "m": 0}.get(path.stem[-1])
        by_gender[female].append(RealFace(path, _sha256(path), "canada", None, female))
    women, men = by_gender[1], by_gender[0]
    paired = [face for pair in zip(women, men, strict=False) for face in pair]
    longer = women if len(women) > len(men) else men
    return paired + longer[len(paired) // 2 :] + by_gender[None]


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ dataset script's oriented square from 68 landmarks (x, y): corners (4, 2) in the order
    top-left, bottom-left, bottom-right, top-right."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (landmarks[48] + landmarks[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def ffhq_pad(image: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The FFHQ script's padding where the square leaves the photo: reflected photo, blurred more and
    faded to the median colour the further out it lies. Returns the padded photo and the shifted quad."""
    from scipy.ndimage import gaussian_filter

    side = float(np.hypot(*(quad[3] - quad[0])))
    border = max(int(np.rint(side * 0.1)), 3)
    h, w = image.shape[:2]
    low, high = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    left, top = max(-low[0] + border, 0), max(-low[1] + border, 0)
    right, bottom = max(high[0] - w + border, 0), max(high[1] - h + border, 0)
    if max(left, top, right, bottom) <= border - 4:
        return image, quad
    padded = np.pad(np.float32(image), ((top, bottom), (left, right), (0, 0)), "reflect")
    ph, pw = padded.shape[:2]
    y, x = np.ogrid[:ph, :pw]
    with np.errstate(divide="ignore", invalid="ignore"):
        mask = np.maximum(
            1.0 - np.minimum(np.float32(x) / left, np.float32(pw - 1 - x) / right),
            1.0 - np.minimum(np.float32(y) / top, np.float32(ph - 1 - y) / bottom),
        )[..., None]
    mask = np.nan_to_num(mask, nan=0.0)
    blur = side * 0.02
    padded += (gaussian_filter(padded, [blur, blur, 0]) - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(padded), 0, 255).astype(np.uint8), quad + [left, top]


def warp_quad(image: np.ndarray, quad: np.ndarray, size: int = RESOLUTION, padding: str = "replicate"):
    """The quad cut out to (size, size); outside the photo its edges are replicated ("replicate") or
    padded as the FFHQ script does ("ffhq": reflected, blurred, faded to the median colour)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
    side = float(np.hypot(*(quad[3] - quad[0])))
    # Shrink the photo first when the square is much larger than the output (as the FFHQ script does).
    shrink = int(np.floor(side / size / 2))
    if shrink > 1:
        image = cv2.resize(
            image, (image.shape[1] // shrink, image.shape[0] // shrink), interpolation=cv2.INTER_AREA
        )
        quad = quad / shrink
    if padding == "ffhq":
        image, quad = ffhq_pad(image, quad)
    target = np.float32([[0, 0], [0, size], [size, size]])
    matrix = cv2.getAffineTransform(np.float32(quad[:3]), target)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _padded(images: np.ndarray, margin: float) -> tuple[np.ndarray, int]:
    pad = int(round(margin * images.shape[1]))
    return np.stack([cv2.copyMakeBorder(i, pad, pad, pad, pad, cv2.BORDER_REPLICATE) for i in images]), pad


def landmarks_of(analyzer, images: np.ndarray, margin: float = DETECTION_MARGIN, box=None):
    """68 landmarks (N, 68, 2) and detection scores of tight face crops (N, H, W, 3) uint8, found in the
    crop padded by ``margin`` of its side with replicated edges (in the unpadded crop's pixels).

    ``box``: the face box in the padded crop when every crop frames the face alike (``chip_face_box``);
    the landmarks are then found in it (score 1) instead of in each crop's detection."""
    padded, pad = _padded(images, margin)
    if box is None:
        labels = analyzer.label(padded)
        return labels.landmarks - pad, labels.detection_scores
    boxes = np.repeat(np.asarray(box, np.float32)[None], len(images), 0)
    crops, frames = analyzer.crop(padded, boxes)
    landmarks = frames[:, None, :2] + analyzer.landmarks(crops) * frames[:, None, 2:3]
    return landmarks - pad, np.ones(len(images), np.float32)


def chip_face_box(analyzer, images: np.ndarray, margin: float = DETECTION_MARGIN) -> np.ndarray:
    """The detector's median box over aligned face chips (N, H, W, 3) uint8 that it finds with a score of
    at least 0.5, in the padded chip: aligned chips all frame the face alike, so this box serves every
    chip, also where the detector misses."""
    padded, _ = _padded(images, margin)
    boxes, scores = analyzer.detect(padded)
    confident = scores >= 0.5
    return np.median(boxes[confident] if confident.any() else boxes, axis=0)


@dataclass
class RealFaceSet:
    """Framed faces (N, 256, 256, 3) uint8 with their records and detection scores (1 where not detected)."""

    faces: list[RealFace]
    images: np.ndarray
    detection_scores: np.ndarray

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.faces]

    def subset(self, keep) -> RealFaceSet:
        keep = np.asarray(keep)
        return RealFaceSet([self.faces[i] for i in keep], self.images[keep], self.detection_scores[keep])


def frame_faces(
    analyzer,
    faces: list[RealFace],
    cache_dir=None,
    batch: int = 32,
    progress: bool = True,
    padding: str = "replicate",
    face_box: str = "detect",
) -> RealFaceSet:
    """Each photo re-framed to the FFHQ rule, the Canada portraits as they ship. Landmarks and the
    replicate-padded face are cached per photo; other paddings re-cut the photo from the cached landmarks.

    ``face_box``: where the landmark net looks, "detect" (face-api's detector in each photo) or "chip"
    (one box for all photos, ``chip_face_box`` of the first 64: UTKFace's chips are aligned crops)."""
    if face_box not in FACE_BOXES:
        raise ValueError(f"face_box must be one of {FACE_BOXES}, not {face_box!r}")
    version = FRAMING_VERSION if face_box == "detect" else f"{FRAMING_VERSION}-{face_box}-box"
    cache_dir = Path(cache_dir or default_cache_dir()) / version
    images, scores = [None] * len(faces), np.ones(len(faces), dtype=np.float32)
    todo = []
    for i, face in enumerate(faces):
        if face.source == "canada":
            images[i] = _read_rgb(face.path)
            continue
        cached = cache_dir / f"{face.key}.safetensors"
        if not cached.is_file():
            todo.append(i)
            continue
        with safe_open(str(cached), "np") as f:
            images[i], scores[i] = f.get_tensor("image"), float(f.get_tensor("detection_score")[0])
            if padding != "replicate":
                landmarks = np.array(json.loads(f.metadata()["landmarks"]))
                images[i] = warp_quad(_read_rgb(face.path), ffhq_quad(landmarks), padding=padding)
    cache_dir.mkdir(parents=True, exist_ok=True)
    box = None
    if todo and face_box == "chip":
        chips = [i for i, face in enumerate(faces) if face.source != "canada"][:64]
        box = chip_face_box(analyzer, np.stack([_read_rgb(faces[i].path) for i in chips]))
    for start in tqdm(range(0, len(todo), batch), desc="framing (FFHQ rule)", disable=not progress):
        chunk = todo[start : start + batch]
        photos = np.stack([_read_rgb(faces[i].path) for i in chunk])
        landmarks, detected = landmarks_of(analyzer, photos, box=box)
        for k, i in enumerate(chunk):
            quad = ffhq_quad(landmarks[k])
            replicated = warp_quad(photos[k], quad)
            images[i] = replicated if padding == "replicate" else warp_quad(photos[k], quad, padding=padding)
            scores[i] = detected[k]
            tmp = cache_dir / f"{faces[i].key}.tmp"
            save_file(
                {"image": replicated, "detection_score": np.float32([detected[k]])},
                str(tmp),
                {"landmarks": json.dumps(np.round(landmarks[k], 2).tolist())},
            )
            tmp.replace(cache_dir / f"{faces[i].key}.safetensors")
    for i, image in enumerate(images):
        if image.shape != (RESOLUTION, RESOLUTION, 3):
            images[i] = cv2.resize(image, (RESOLUTION, RESOLUTION), interpolation=cv2.INTER_AREA)
    return RealFaceSet(list(faces), np.stack(images), scores)


def real_face_set(
    analyzer,
    root=None,
    utkface: int | None = None,
    cache_dir=None,
    progress: bool = True,
    padding: str = "replicate",
    canada: int | None = None,
    face_box: str = "detect",
) -> RealFaceSet:
    """Framed real faces from ``root`` (default: the shared real-faces folder). A folder holding the
    shared sets gives the first ``canada`` Canada portraits, then the first ``utkface`` held-out UTKFace
    faces (all when None); any other folder gives its images, each re-framed."""
    root = Path(root or default_real_faces_dir())
    if not root.is_dir():
        raise FileNotFoundError(f"no real face photos at {root} (see the shared data README)")
    shared = [root / CANADA_FOLDER, root / UTKFACE_FOLDER]
    if any(folder.is_dir() for folder in shared):
        faces = canada_faces(shared[0])[:canada] if shared[0].is_dir() else []
        faces += utkface_faces(shared[1])[:utkface] if shared[1].is_dir() else []
    else:
        faces = folder_faces(root)
    if not faces:
        raise FileNotFoundError(f"no face photos (.jpg/.png) in {root}")
    return frame_faces(analyzer, faces, cache_dir, progress=progress, padding=padding, face_box=face_box)


# -- evaluation ---------------------------------------------------------------------------------
SOURCES = ("canada", "utkface", "folder")
# Figures show photos only from sets whose licence lets them be redistributed (Canada: CC BY 4.0),
# or from the user's own folder.
SHOWN_SETS = ("canada", "folder")
EXAMPLES_PER_SET = 5


@dataclass
class FaceReadout:
    """What face-api reads from one set of images: descriptors (N, 128), age (N,), p(male) (N,)."""

    descriptors: np.ndarray
    age: np.ndarray
    p_male: np.ndarray


def framed_face_box(analyzer, images: np.ndarray) -> np.ndarray:
    """The detector's median face box (x0, y0, x1, y1) over faces framed alike (N, R, R, 3) uint8: with
    it, every framed image (real or decoded) skips the detector."""
    boxes, _ = analyzer.detect(images)
    return np.median(boxes, axis=0)


def read_faces(analyzer, images: np.ndarray, box=None, batch: int = 64) -> FaceReadout:
    """face-api descriptor, age and gender of images (N, R, R, 3) uint8 (or gray (N, R, R) in [0, 1]);
    ``box``: the face box of framed images (``framed_face_box``), None to detect each face."""
    from lsi_ros.evaluation.identity import uint8_images

    parts = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        chunk = chunk if chunk.dtype == np.uint8 else uint8_images(chunk)
        descriptors, labels = analyzer.describe_and_label(chunk, box=box)
        parts.append((descriptors, labels.age, labels.p_male))
    return FaceReadout(*(np.concatenate(p) for p in zip(*parts, strict=True)))


def _scores(
    face_set: RealFaceSet,
    truth: FaceReadout,
    read: FaceReadout,
    quality: list[dict] | None,
    dlib_pair: tuple[np.ndarray, np.ndarray] | None = None,
    latent_p: dict[str, np.ndarray] | None = None,
    gallery: np.ndarray | None = None,
) -> dict:
    """Per source and over all faces: image quality, identity (rank-1 among all faces of the set) and
    attribute agreement with face-api on the real face and with the set's own labels; with
    ``dlib_pair`` (Dlib's descriptors of the image and of the real face), identity by Dlib's protocol
    as well (``dlib``); with ``latent_p`` (attribute -> p per face, read off the latent codes), those
    readings against the same references (``latent_attributes``); with ``gallery`` (face-api's
    descriptors of other people's photos), rank-1 among the set and the gallery together
    (``rank1_in_gallery`` of ``gallery_people``)."""
    from scipy.spatial.distance import cdist

    from lsi_ros.evaluation.identity import identity_per_face, identity_scores

    distances, rank1 = identity_per_face(read.descriptors, truth.descriptors)
    rank1_gallery = None
    if gallery is not None and len(gallery):
        rank1_gallery = rank1 & (distances < cdist(read.descriptors, gallery).min(axis=1))
    dlib_distances, dlib_rank1 = identity_per_face(*dlib_pair) if dlib_pair is not None else (None, None)
    female = np.array([np.nan if f.female is None else f.female for f in face_set.faces])
    age = np.array([np.nan if f.age is None else f.age for f in face_set.faces])
    sources = np.array([f.source for f in face_set.faces])

    def summary(keep: np.ndarray) -> dict:
        out = {"n_images": int(keep.sum())}
        if quality is not None:
            for metric in quality[0]:
                out[metric] = round(float(np.mean([quality[i][metric] for i in np.flatnonzero(keep)])), 3)
        out |= identity_scores(distances[keep], rank1[keep])
        if rank1_gallery is not None:
            out["rank1_in_gallery"] = round(float(np.mean(rank1_gallery[keep])), 3)
            out["gallery_people"] = len(distances) + len(gallery)
        if dlib_distances is not None:
            out["dlib"] = identity_scores(dlib_distances[keep], dlib_rank1[keep])
        out["gender_agreement"] = round(
            float(np.mean(((read.p_male > 0.5) == (truth.p_male > 0.5))[keep])), 3
        )
        out["age_difference"] = round(float(np.mean(np.abs(read.age - truth.age)[keep])), 2)
        labelled = keep & ~np.isnan(female)
        if labelled.any():
            agree = (read.p_male[labelled] <= 0.5) == (female[labelled] == 1)
            out["gender_agreement_with_label"] = round(float(np.mean(agree)), 3)
        aged = keep & ~np.isnan(age)
        if aged.any():
            out["age_error_vs_label"] = round(float(np.mean(np.abs(read.age[aged] - age[aged]))), 2)
            over = (read.age[aged] > AGE_THRESHOLD) == (age[aged] > AGE_THRESHOLD)
            out[f"{OVER_AGE}_agreement_with_label"] = round(float(np.mean(over)), 3)
        if latent_p is not None:
            out["latent_attributes"] = _latent_attribute_scores(latent_p, truth, female, age, keep)
        return out

    row = summary(np.ones(len(sources), dtype=bool))
    row["by_set"] = {s: summary(sources == s) for s in SOURCES if (sources == s).any()}
    return row


def label_rates(face_set: RealFaceSet) -> dict:
    """Per set, the share of labelled faces that are male and over 40, and how many are labelled:
    always answering the larger class is right max(rate, 1 - rate) of the time."""
    out = {}
    for source in SOURCES:
        faces = [f for f in face_set.faces if f.source == source]
        genders = [f.female for f in faces if f.female is not None]
        ages = [f.age for f in faces if f.age is not None]
        rates = {}
        if genders:
            rates |= {"male": round(1 - float(np.mean(genders)), 3), "n_gender": len(genders)}
        if ages:
            rates |= {OVER_AGE: round(float(np.mean(np.array(ages) > AGE_THRESHOLD)), 3), "n_age": len(ages)}
        if rates:
            out[source] = rates
    return out


def _latent_attribute_scores(latent_p: dict, truth: FaceReadout, female, age, keep) -> dict:
    """Attributes read off the latent (p > 0.5) that a photo can check: ``male`` and ``age_over_40``
    against the set's own labels and against face-api on the real face (the labeller the boundaries
    were fitted to)."""
    references = {
        "male": (female == 0, ~np.isnan(female), truth.p_male > 0.5),
        OVER_AGE: (age > AGE_THRESHOLD, ~np.isnan(age), truth.age > AGE_THRESHOLD),
    }
    out = {}
    for name, (label, labelled, photo) in references.items():
        if name not in latent_p:
            continue
        said = latent_p[name] > 0.5
        entry = {"agreement_with_real_face": round(float(np.mean((said == photo)[keep])), 3)}
        if (keep & labelled).any():
            entry["accuracy_vs_label"] = round(float(np.mean((said == label)[keep & labelled])), 3)
            entry["n_labelled"] = int((keep & labelled).sum())
        out[name] = entry
    return out


def evaluate(
    analyzer,
    models,
    generator,
    face_set: RealFaceSet,
    photodiode,
    baseline_budgets=(32, 64, 128, 256),
    chunk: int = 64,
    progress: bool = True,
    examples: dict | None = None,
    on_row=None,
    box=None,
    names=None,
    dlib=None,
    attributes=None,
    gallery=None,
) -> list[dict]:
    """Rows for the real faces: each model (measured through ``photodiode``, encoded, decoded) and the
    Hadamard pinv baselines at each pattern budget, next to the real face itself, the face in gray, the
    mean face and someone else. ``examples``, if given, gets the first faces' tiles per method (models
    of the same M told apart by ``names``, default their ids); ``on_row(rows)`` is called as rows come
    (a long run keeps what it finished); ``box``: see read_faces; ``dlib`` (a ``DlibFaces``) scores
    identity by Dlib's protocol too; ``attributes`` (an ``AttributeReader``) reads each model's codes
    as latent_classifier does (``attribute_boundaries``: the model whose estimates fitted them, or
    ``general``); ``gallery``: descriptors of other people's photos to identify among too (_scores)."""
    from lsi_ros.evaluation.identity import hadamard_reconstructions
    from lsi_ros.evaluation.images import grayscale
    from lsi_ros.evaluation.latent_imaging import decode_faces, encode_faces, score_image

    truth_rgb = face_set.images
    truth = read_faces(analyzer, truth_rgb, box)
    label = photodiode.label
    dlib_box = None if dlib is None else dlib.face_box(truth_rgb[:64])

    def dlib_of(images: np.ndarray) -> np.ndarray | None:
        """Dlib's descriptors of ``images`` (None without ``dlib``)."""
        return None if dlib is None else dlib.describe(images, dlib_box)

    dlib_truth = dlib_of(truth_rgb)

    def row(method, m, patterns, noise, read, quality=None, dlib_read=None, latent_p=None) -> dict:
        pair = None if dlib_read is None else (dlib_read, dlib_truth)
        return {
            "method": method,
            "M": m,
            "patterns": patterns,
            "noise": noise,
            **_scores(face_set, truth, read, quality, pair, latent_p, gallery),
        }

    gray = np.stack([grayscale(f / np.float32(255)) for f in truth_rgb])
    others = np.roll(np.arange(len(truth_rgb)), 1)
    other = FaceReadout(*(a[others] for a in vars(truth).values()))
    rows = [
        row("real-face", 0, 0, "none", truth, dlib_read=dlib_truth),
        row("grayscale-face", 0, 0, "none", read_faces(analyzer, gray, box), dlib_read=dlib_of(gray)),
        row("other-face", 0, 0, "none", other, dlib_read=None if dlib is None else dlib_truth[others]),
    ]
    mean_face = decode_faces(generator, generator.mean_latent()[None], progress=False)[0]
    mean_read = read_faces(analyzer, mean_face[None], box)

    def everyone(one: np.ndarray) -> np.ndarray:
        return np.repeat(one, len(truth_rgb), axis=0)

    rows.append(
        row(
            "mean-latent",
            0,
            0,
            "none",
            FaceReadout(*(everyone(a) for a in vars(mean_read).values())),
            [score_image(t / np.float32(255), mean_face / np.float32(255)) for t in truth_rgb],
            dlib_read=None if dlib is None else everyone(dlib_of(mean_face[None])),
        )
    )
    sources = [f.source for f in face_set.faces]
    shown = [i for s in SHOWN_SETS for i in [k for k, t in enumerate(sources) if t == s][:EXAMPLES_PER_SET]]
    if examples is not None:
        for i in shown:
            examples[face_set.faces[i].label] = {"real face": truth_rgb[i] / np.float32(255)}
    bar = tqdm(total=len(models) * len(truth_rgb), desc="real faces: lsi", unit="face", disable=not progress)
    for number, model in enumerate(models):
        decoded, quality, codes = [], [], []
        for start in range(0, len(truth_rgb), chunk):
            faces = truth_rgb[start : start + chunk] / np.float32(255)
            latents = encode_faces(model, faces, photodiode, seed=start)
            images = decode_faces(generator, latents, progress=False)
            quality += [score_image(t, d / np.float32(255)) for t, d in zip(faces, images, strict=True)]
            decoded.append(images)
            codes.append(latents)
            bar.update(len(faces))
        decoded = np.concatenate(decoded)
        m = model.num_measurements
        boundaries = None if attributes is None else attributes.boundaries_for(model.model_id)
        latent_p, read_by = None, {}
        if boundaries is not None:
            codes = np.concatenate(codes)
            p = boundaries.read(codes if codes.ndim == 3 else codes[:, None])
            latent_p = {name: p[:, k] for k, name in enumerate(boundaries.names)}
            read_by = {"attribute_boundaries": boundaries.model_id or "general"}
        read = read_faces(analyzer, decoded, box)
        rows.append(
            {
                "model_id": model.model_id,
                **read_by,
                **row("lsi", m, m, label, read, quality, dlib_of(decoded), latent_p),
            }
        )
        if on_row is not None:
            on_row(rows)
        if examples is not None:
            column = f"LSI M={m}"
            if [other.num_measurements for other in models].count(m) > 1:
                column = f"LSI {(names or [other.model_id for other in models])[number]}"
            for i in shown:
                examples[face_set.faces[i].label][column] = decoded[i] / np.float32(255)
    bar.close()
    for patterns in tqdm(baseline_budgets, desc="real faces: hadamard-pinv", disable=not progress):
        pinv, _ = hadamard_reconstructions(truth_rgb, patterns, photodiode, tv=False)
        quality = [
            score_image(t / np.float32(255), np.repeat(p[..., None], 3, -1))
            for t, p in zip(truth_rgb, pinv, strict=True)
        ]
        rows.append(
            row(
                "hadamard-pinv",
                patterns // 2,
                patterns,
                label,
                read_faces(analyzer, pinv, box),
                quality,
                dlib_of(pinv),
            )
        )
        if on_row is not None:
            on_row(rows)
        if examples is not None and patterns == max(baseline_budgets):
            for i in shown:
                examples[face_set.faces[i].label][f"pinv P={patterns}"] = pinv[i]
    return rows


def ceiling(
    analyzer,
    generator,
    model,
    face_set: RealFaceSet,
    spaces=("w", "w+"),
    steps: int = 100,
    lr: float | None = None,
    cache_dir=None,
    progress: bool = True,
    examples: dict | None = None,
    box=None,
    schedule: str = "constant",
    checkpoints=(),
    teacher_generator=None,
    wplus_start: str = "encoder",
    wplus_steps: int | None = None,
    batch_size: int | None = None,
    gallery: np.ndarray | None = None,
) -> list[dict]:
    """How close can the generator come to each real face at all? The latent teacher's inversion of
    every face in W and in W+ (started at ``model``'s noiseless encoding), scored like the camera's rows:
    no encoder can decode a face closer than its generator can draw it.

    ``checkpoints``: step counts at which the best latent so far is scored too (each row's
    ``convergence``); ``teacher_generator``: the generator the inversion optimises through (default
    ``generator``; e.g. its fast exit), while every latent is scored as ``generator`` draws it;
    ``wplus_start``: W+ starts at the encoding ("encoder") or where the W inversion ended ("w": W+
    contains W, so it continues from there; its steps then count on from W's); ``wplus_steps``: W+'s
    own step count (default ``steps``); ``batch_size``: images inverted at once (default the teacher's;
    each image's steps are its own either way, one at a time is quickest on one CPU thread);
    ``gallery``: descriptors of other people's photos, among whom each inversion is identified too
    (``rank1_in_gallery``). The last step of each space is always on its curve."""
    if wplus_start not in ("encoder", "w") or (wplus_start == "w" and list(spaces) != ["w", "w+"]):
        raise ValueError(
            f"wplus_start must be 'encoder', or 'w' with spaces ('w', 'w+'), not {wplus_start!r}"
        )
    from dataclasses import asdict, replace

    from lsi_ros.evaluation.latent_imaging import decode_faces, score_image
    from lsi_ros.training.teacher import LatentTeacher, TeacherConfig
    from lsi_ros.training.teacher import default_cache_dir as teacher_cache

    truth = read_faces(analyzer, face_set.images, box)
    references = face_set.images / np.float32(255)

    def scored(latents) -> tuple[dict, np.ndarray]:
        decoded = decode_faces(generator, latents, progress=False)
        quality = [score_image(r, d / np.float32(255)) for r, d in zip(references, decoded, strict=True)]
        read = read_faces(analyzer, decoded, box)
        return _scores(face_set, truth, read, quality, gallery=gallery), decoded

    rows, start, steps_before = [], None, 0
    for space in spaces:
        steps_here = wplus_steps if space == "w+" and wplus_steps else steps
        config = replace(
            TeacherConfig(),
            steps=steps_here,
            space=space,
            schedule=schedule,
            checkpoints=tuple(sorted({k for k in checkpoints if k <= steps_here})),
            **({"lr": lr} if lr else {}),
            **({"batch_size": batch_size} if batch_size else {}),
        )
        teacher = LatentTeacher(teacher_generator or generator, model, config, cache_dir or teacher_cache())
        taught = teacher.invert(references, progress=progress, start=start)
        # W+ started from W: its step 0 is W's last latent, already scored.
        curve = {
            k: rows[-1]["_last"] if k == 0 and start is not None else scored(latents)
            for k, latents in taught.history.items()
        }
        if steps_here not in curve:
            curve[steps_here] = scored(taught.latents)
        scores, decoded = curve[steps_here]  # the last step's latent is the result
        began = [{k: q[f"initial_{k}"] for k in ("psnr", "ssim", "ms_ssim")} for q in taught.quality]
        row = {
            "method": f"inversion-{space}",
            "M": 0,
            "patterns": 0,
            "noise": "none",
            **scores,
            "start": {k: round(float(np.mean([b[k] for b in began])), 3) for k in began[0]},
            "teacher": {
                **asdict(config),
                "start_model": model.model_id,
                "optimised_through": (teacher_generator or generator).generator_id,
                "scored_on": generator.generator_id,
                "started_from": "the W inversion"
                if start is not None
                else "start_model's noiseless encoding",
            },
            "total_steps": steps_before + steps_here,
            "convergence": [
                {"steps": k, "total_steps": steps_before + k, **point} for k, (point, _) in curve.items()
            ],
        }
        teacher_exit_quality = {
            k: round(float(np.mean([q[k] for q in taught.quality])), 3) for k in ("psnr", "ssim")
        }
        if teacher_generator is not None:
            row["quality_through_optimised_generator"] = teacher_exit_quality
        if space == "w" and wplus_start == "w":
            start, steps_before = taught.latents, steps_here
        if taught.seconds_per_step is not None:
            row["seconds_per_image_step"] = round(taught.seconds_per_step, 3)
        rows.append(row | {"_last": (scores, decoded)})
        if examples is not None:
            for face, image in zip(face_set.faces, decoded, strict=True):
                if face.label in examples:
                    examples[face.label][f"inversion {space.upper()}"] = image / np.float32(255)
    return [{k: v for k, v in row.items() if k != "_last"} for row in rows]


def step_costs(generator, model, configurations=(("exact", 1), ("fast", 1), ("fast", 2))) -> list[dict]:
    """Seconds per image of one W+ inversion step through a MobileStyleGAN exit at a batch size, per
    (exit, batch), at this process's torch threads and with the machine's load (it may be shared)."""
    import torch

    from lsi_ros.models.generators import get_generator
    from lsi_ros.training.teacher import LatentTeacher, TeacherConfig

    rows, teachers = [], {}
    for early_exit, batch in configurations:
        if early_exit not in teachers:
            same = generator.early_exit == early_exit
            net = generator if same else get_generator("mobilestylegan", early_exit=early_exit)
            net.torch_synthesis()  # built once, outside the timing
            teachers[early_exit] = LatentTeacher(net, model, TeacherConfig(space="w+"))
        rows.append(
            {
                "backend": "native-torch",
                "early_exit": early_exit,
                "batch": batch,
                "threads": torch.get_num_threads(),
                "seconds_per_image_step": round(teachers[early_exit].step_seconds(batch), 2),
                "load_1min": round(os.getloadavg()[0], 1),
            }
        )
    return rows


def plot_convergence(rows: list[dict], path) -> None:
    """Same person and gray SSIM of the inversions against their steps, per space and set, and rank-1
    among all the set's people where the rows have it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chained = any(c["total_steps"] != c["steps"] for r in rows for c in r.get("convergence", []))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"all": "-", "canada": "--", "utkface": ":"}
    for row in rows:
        curve = row.get("convergence") or []
        if not curve:
            continue
        steps = [c["total_steps"] for c in curve]
        space = row["method"].removeprefix("inversion-").upper()
        for name, style in styles.items():
            points = [c if name == "all" else c["by_set"].get(name) for c in curve]
            if any(p is None for p in points):
                continue
            label = f"{space}, {name} ({points[0]['n_images']})"
            color = "C1" if space == "W+" else "C0"
            for ax, key in zip(axes, ("same_person_rate", "ssim"), strict=True):
                ax.plot(steps, [p[key] for p in points], style, color=color, marker="o", ms=3, label=label)
        if "rank1_in_gallery" in curve[0]:  # every face, picked out among all the set's people
            label = f"{space}, rank-1 among {curve[0]['gallery_people']:,}"
            gallery = [c["rank1_in_gallery"] for c in curve]
            color = "C3" if space == "W+" else "C2"
            axes[0].plot(steps, gallery, "-.", color=color, marker="s", ms=3, label=label)
    axes[0].legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("same person (face-api distance < 0.6), rank-1")
    axes[1].set_ylabel("gray SSIM")
    for ax in axes:
        ax.set_xlabel(
            "inversion steps" + (" (W+ counted on from the W steps it started at)" if chained else "")
        )
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    fig.suptitle("the generator's ceiling on real faces: inversion in W and W+")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
