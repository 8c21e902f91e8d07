"""Fine-tuning the measurement encoder on real data with the patterns frozen (the paper's real-data step).

Training pairs are (measurement frame values, target latent w):

- from a folder of real images: each image, framed on the DMD like the simulated camera does, is
  measured through the model's frozen patterns and the photodiode model (``repeats`` noisy frames
  per image); its target is the latent teacher's inversion of the image;
- from a recorded bag (``bag_recorder`` or ``ros2 bag record``): ``lsi_ros/Measurements`` frames and
  ``sensor_msgs/Image`` frames of a co-located conventional camera, paired by header stamp within a
  tolerance; the measured values are the inputs, the teacher's inversion of the reference image the
  target. Frames and references without a partner (or frames of another pattern set) are skipped and
  counted.

Only the encoder learns, so the DMD keeps showing the same patterns and the exported model keeps
its ``pattern_set_id``. Scenes are split into training and held-out sets (every frame of one scene
on one side; a bag's frames in blocks of time); latent error and decoded-image PSNR/SSIM on the
held-out scenes are reported before and after, next to the teacher's own reconstruction (the
ceiling a perfect encoder would reach).

Real photos without a teacher (``finetune_on_photos``): the UTKFace training split (never a held-out
face, lsi_ros.evaluation.real_faces) framed by the FFHQ rule, measured through the model's patterns
and the photodiode model at a random light level each step, encoded, decoded by the frozen generator's
differentiable torch path and compared with the photo itself (image L2, identity and perceptual terms
of ``losses.loss_terms``; no latent term, a photo has no true latent). In W+ the encoder first gains
per-layer offsets at zero (``with_layer_offsets``): training starts from the shipped W encoder's faces.
"""

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lsi_ros.evaluation.latent_imaging import score_image
from lsi_ros.models.checkpoint import LsiModel
from lsi_ros.models.encoder import LATENT_SPACES, BinaryPatterns, normalised_error, with_layer_offsets
from lsi_ros.optics import ForwardModel, PhotodiodeModel
from lsi_ros.optics.objective import scene_on_dmd
from lsi_ros.optics.patterns import learned_patterns
from lsi_ros.training import losses
from lsi_ros.training.losses import LossWeights
from lsi_ros.training.train import channel_sums, learning_rate, log_uniform_flux, measure

DEFAULT_TOLERANCE_S = 0.02
DEFAULT_SPLIT_BLOCK_S = 5.0


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    held_out_fraction: float = 0.25
    seed: int = 0


@dataclass
class MeasurementPairs:
    """Frames (N, M) with target latents (N, D); ``scenes[i]`` indexes the reference image frame i saw."""

    values: np.ndarray
    latents: np.ndarray
    scenes: np.ndarray
    references: np.ndarray  # (S, R, R, 3) float32 in [0, 1] at the generator's resolution
    names: list[str]
    source: dict = field(default_factory=dict)
    teacher_quality: list[dict] | None = None  # per scene, from the teacher
    # per scene: scenes of one group go to the same side of the train/held-out split (None: each its own)
    split_groups: np.ndarray | None = None

    def __post_init__(self):
        if not (len(self.values) == len(self.latents) == len(self.scenes)):
            raise ValueError("values, latents and scenes must have one row per frame")
        if len(self.names) != len(self.references):
            raise ValueError("one name per reference image")

    def subset(self, scene_indices) -> "MeasurementPairs":
        """The frames of the given scenes, scenes renumbered in the given order."""
        scene_indices = np.asarray(scene_indices)
        renumber = {int(s): k for k, s in enumerate(scene_indices)}
        keep = np.isin(self.scenes, scene_indices)
        quality = self.teacher_quality
        return MeasurementPairs(
            self.values[keep],
            self.latents[keep],
            np.array([renumber[int(s)] for s in self.scenes[keep]], dtype=np.int64),
            self.references[scene_indices],
            [self.names[s] for s in scene_indices],
            self.source,
            None if quality is None else [quality[s] for s in scene_indices],
            None if self.split_groups is None else self.split_groups[scene_indices],
        )


def split_scenes(num_scenes: int, held_out_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scene indices (training, held-out); at least one scene on each side."""
    if num_scenes < 2:
        raise ValueError(f"fine-tuning needs at least 2 scenes (one to hold out), got {num_scenes}")
    order = np.random.default_rng(seed).permutation(num_scenes)
    held = min(num_scenes - 1, max(1, round(held_out_fraction * num_scenes)))
    return np.sort(order[held:]), np.sort(order[:held])


def split_pairs(pairs: MeasurementPairs, held_out_fraction: float, seed: int = 0):
    """Scene indices (training, held-out), whole split groups on each side."""
    groups = np.arange(len(pairs.names)) if pairs.split_groups is None else np.asarray(pairs.split_groups)
    inverse = np.unique(groups, return_inverse=True)[1]
    if pairs.split_groups is not None and inverse.max() < 1:
        raise ValueError(
            "the recording falls into one split block: record longer or pass a shorter --split-block-s"
        )
    train_groups, held_groups = split_scenes(int(inverse.max()) + 1, held_out_fraction, seed)
    return np.flatnonzero(np.isin(inverse, train_groups)), np.flatnonzero(np.isin(inverse, held_groups))


def time_blocks(stamps_ns: np.ndarray, block_s: float) -> np.ndarray:
    """Consecutive block index (0, 1, ...) of each stamp in blocks of ``block_s`` seconds.

    Neighbouring frames of a recording see nearly the same scene; holding out single frames would
    test the encoder on frames it has all but trained on, so a bag is split in stretches of time."""
    if not block_s > 0:
        raise ValueError(f"split block must be positive, got {block_s} s")
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    blocks = (stamps_ns - stamps_ns.min()) // int(round(block_s * 1e9))
    return np.unique(blocks, return_inverse=True)[1]


def generator_for(model: LsiModel, **kwargs):
    """The frozen generator a model's latents belong to, from the generator id in its metadata."""
    from lsi_ros.models.generators import get_generator

    generator_id = model.info.get("generator_id", "")
    name = generator_id.split("-", 1)[0]
    if name not in ("mobilestylegan", "dcgan"):
        raise ValueError(f"model {model.model_id}: unknown generator {generator_id!r}")
    return get_generator(name, **kwargs)


# -- pair sources ------------------------------------------------------------------------------
def simulate_measurements(
    model: LsiModel, images, photodiode: PhotodiodeModel, repeats: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Detector values (S·repeats, M) of RGB images in [0, 1] framed on the DMD, and each frame's scene."""
    side = model.pattern_set.resolution[0]
    on_dmd = np.stack([scene_on_dmd(image, side) for image in images])
    ideal = ForwardModel(model.pattern_set).measure(on_dmd)
    rng = np.random.default_rng(seed)
    values = np.concatenate([photodiode.sample(ideal, rng).counts for _ in range(repeats)])
    scenes = np.tile(np.arange(len(images)), repeats)
    return values.astype(np.float32), scenes


def references_for(generator, images) -> np.ndarray:
    """RGB images in [0, 1] framed like the camera (centre square) at the generator's resolution."""
    return np.stack([scene_on_dmd(np.asarray(image, np.float32), generator.resolution) for image in images])


def pairs_from_images(
    model: LsiModel,
    teacher,
    images: dict,
    photodiode: PhotodiodeModel | None = None,
    repeats: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> MeasurementPairs:
    """Simulated frames of real images (name -> RGB float in [0, 1], any size), teacher latents as targets."""
    if not images:
        raise ValueError("no images to fine-tune on")
    photodiode = photodiode or PhotodiodeModel()
    names = list(images)
    references = references_for(teacher.generator, [images[n] for n in names])
    taught = teacher.invert(references, progress=progress)
    values, scenes = simulate_measurements(model, [images[n] for n in names], photodiode, repeats, seed)
    source = {
        "kind": "images",
        "scenes": len(names),
        "frames_per_scene": repeats,
        "photodiode": asdict(photodiode),
    }
    return MeasurementPairs(values, taught.latents[scenes], scenes, references, names, source, taught.quality)


@dataclass
class CapturePairs:
    """Measurement frames matched to reference-camera images by header stamp."""

    values: np.ndarray  # (N, M) float32 as measured
    references: list  # N RGB float images in [0, 1] (the reference camera's size)
    stamps_ns: np.ndarray  # (N,) frame stamps
    offsets_ns: np.ndarray  # (N,) reference stamp - frame stamp
    counts: dict  # frames, references, paired, unmatched_frames, unmatched_references, refused_frames


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_capture_pairs(
    bag,
    measurements_topic: str,
    reference_topic: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    pattern_set_id: str | None = None,
    num_measurements: int | None = None,
) -> CapturePairs:
    """Pairs each measurement frame with the nearest unused reference image within ``tolerance_s``.

    Frames of another pattern set or with another number of values are refused (counted); frames and
    references without a partner are counted as unmatched.
    """
    from rosbags.highlevel import AnyReader

    from lsi_ros.ros.image import to_rgb_float

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    frames, references = [], []
    refused = 0
    with AnyReader([bag]) as reader:
        topics = {c.topic for c in reader.connections}
        for topic in (measurements_topic, reference_topic):
            if topic not in topics:
                raise ValueError(f"{bag}: no topic {topic}; the bag holds {sorted(topics)}")
        wanted = [c for c in reader.connections if c.topic in (measurements_topic, reference_topic)]
        for connection, _, raw in reader.messages(connections=wanted):
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic == measurements_topic:
                values = np.asarray(msg.values, dtype=np.float32)
                if (pattern_set_id and msg.pattern_set_id != pattern_set_id) or (
                    num_measurements and values.size != num_measurements
                ):
                    refused += 1
                    continue
                frames.append((_stamp_ns(msg.header), values))
            else:
                references.append((_stamp_ns(msg.header), to_rgb_float(msg)))
    reference_stamps = np.array([s for s, _ in references], dtype=np.int64)
    order = np.argsort(reference_stamps, kind="stable")
    sorted_stamps = reference_stamps[order]
    used = np.zeros(len(references), dtype=bool)
    tolerance_ns = int(round(tolerance_s * 1e9))
    paired = []
    for stamp, values in frames:
        position = np.searchsorted(sorted_stamps, stamp)
        candidates = [k for k in (position - 1, position) if 0 <= k < len(sorted_stamps)]
        candidates = [k for k in candidates if not used[order[k]]]
        if not candidates:
            continue
        best = min(candidates, key=lambda k: abs(int(sorted_stamps[k]) - stamp))
        offset = int(sorted_stamps[best]) - stamp
        if abs(offset) <= tolerance_ns:
            used[order[best]] = True
            paired.append((stamp, offset, values, references[order[best]][1]))
    counts = {
        "frames": len(frames) + refused,
        "references": len(references),
        "paired": len(paired),
        "unmatched_frames": len(frames) - len(paired),
        "unmatched_references": int((~used).sum()),
        "refused_frames": refused,
    }
    num = num_measurements or (len(frames[0][1]) if frames else 0)
    return CapturePairs(
        np.stack([p[2] for p in paired]) if paired else np.zeros((0, num), np.float32),
        [p[3] for p in paired],
        np.array([p[0] for p in paired], dtype=np.int64),
        np.array([p[1] for p in paired], dtype=np.int64),
        counts,
    )


def pairs_from_bag(
    model: LsiModel,
    teacher,
    bag,
    measurements_topic: str = "/measurements",
    reference_topic: str = "/camera/image",
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    progress: bool = True,
    split_block_s: float = DEFAULT_SPLIT_BLOCK_S,
) -> MeasurementPairs:
    """Recorded frames as inputs, the teacher's inversion of each paired reference image as target;
    frames are split into training and held-out sets in blocks of ``split_block_s`` seconds."""
    capture = read_capture_pairs(
        bag,
        measurements_topic,
        reference_topic,
        tolerance_s,
        model.pattern_set.pattern_set_id,
        model.num_measurements,
    )
    if not capture.counts["paired"]:
        raise ValueError(f"{bag}: no measurement frame has a reference image within {tolerance_s} s")
    blocks = time_blocks(capture.stamps_ns, split_block_s)  # before the costly inversion
    references = references_for(teacher.generator, capture.references)
    taught = teacher.invert(references, progress=progress)
    source = {
        "kind": "bag",
        "bag": str(bag),
        "measurements_topic": measurements_topic,
        "reference_topic": reference_topic,
        "tolerance_s": tolerance_s,
        "max_abs_offset_ms": round(float(np.abs(capture.offsets_ns).max()) / 1e6, 3),
        **capture.counts,
    }
    names = [f"frame@{s}" for s in capture.stamps_ns]
    scenes = np.arange(len(names))
    source |= {"split_block_s": split_block_s, "split_blocks": int(blocks.max()) + 1}
    return MeasurementPairs(
        capture.values, taught.latents, scenes, references, names, source, taught.quality, blocks
    )


# -- evaluation and training -------------------------------------------------------------------
@torch.no_grad()
def evaluate_pairs(encoder, pairs: MeasurementPairs, generator) -> dict:
    """Latent MSE (the encoder's normalised units) and decoded-image PSNR/SSIM against the references."""
    encoder.eval()
    predicted = encoder(torch.from_numpy(pairs.values)).numpy()
    std = encoder.latent_std.numpy()
    latent_mse = float(np.mean(normalised_error(predicted, pairs.latents, std) ** 2))
    decoded = generator.synthesize(predicted)
    scores = [score_image(pairs.references[s], d) for s, d in zip(pairs.scenes, decoded, strict=True)]
    metrics = {k: round(float(np.mean([s[k] for s in scores])), 4) for k in scores[0]}
    return {
        "latent_mse": round(latent_mse, 5),
        **metrics,
        "frames": len(pairs.values),
        "scenes": len(pairs.names),
    }


def teacher_ceiling(pairs: MeasurementPairs, generator) -> dict:
    """Quality of decoding the targets themselves: what a perfect encoder would show."""
    first = [int(np.flatnonzero(pairs.scenes == s)[0]) for s in range(len(pairs.names))]
    decoded = generator.synthesize(pairs.latents[first])
    scores = [score_image(r, d) for r, d in zip(pairs.references, decoded, strict=True)]
    return {k: round(float(np.mean([s[k] for s in scores])), 4) for k in scores[0]}


def train_encoder(encoder, pairs: MeasurementPairs, config: FinetuneConfig, progress: bool = True) -> list:
    """Latent-loss training of ``encoder`` (in place) on the pairs; returns the loss every 50 steps."""
    rng = torch.Generator().manual_seed(config.seed)
    values = torch.from_numpy(pairs.values)
    target = (torch.from_numpy(pairs.latents) - encoder.latent_mean) / encoder.latent_std
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = []
    encoder.train()
    for step in tqdm(range(config.steps), desc="fine-tune encoder", unit="step", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.steps, config.lr)
        index = torch.randint(0, len(values), (min(config.batch_size, len(values)),), generator=rng)
        loss = losses.latent_loss(encoder.normalised(values[index]), target[index], "l2")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 50 == 0 or step + 1 == config.steps:
            history.append({"step": step + 1, "train_loss": round(float(loss.detach()), 5)})
    encoder.eval()
    return history


@dataclass
class FinetuneResult:
    model: LsiModel
    before: dict
    after: dict
    teacher: dict
    history: list
    train_scenes: list[str]
    held_out_scenes: list[str]


def finetune(
    model: LsiModel,
    pairs: MeasurementPairs,
    generator,
    config: FinetuneConfig = FinetuneConfig(),
    progress=True,
) -> FinetuneResult:
    """Fine-tune a copy of ``model``'s encoder on the training scenes; metrics on the held-out scenes."""
    train_index, held_index = split_pairs(pairs, config.held_out_fraction, config.seed)
    train, held = pairs.subset(train_index), pairs.subset(held_index)
    encoder = copy.deepcopy(model.encoder).float().cpu()
    for parameter in encoder.parameters():
        parameter.requires_grad_(True)
    before = evaluate_pairs(encoder, held, generator)
    history = train_encoder(encoder, train, config, progress)
    after = evaluate_pairs(encoder, held, generator)
    teacher = teacher_ceiling(held, generator)
    info = dict(model.info)
    info["finetune"] = {
        "base_model_id": model.model_id,
        "source": pairs.source,
        "train_scenes": train.names,
        "held_out_scenes": held.names,
        "train_frames": len(train.values),
        "config": asdict(config),
        "held_out_before": before,
        "held_out_after": after,
        "held_out_teacher": teacher,
        "teacher_quality": None
        if pairs.teacher_quality is None
        else dict(zip(pairs.names, pairs.teacher_quality, strict=True)),
        "history": history,
    }
    tuned = LsiModel(f"{model.model_id}-ft", model.pattern_set, encoder, info)
    return FinetuneResult(tuned, before, after, teacher, history, train.names, held.names)


# -- generated faces through framing errors: the encoder the locator's framing needs ---------------
@dataclass(frozen=True)
class FramingFinetuneConfig:
    """``jitter``: (shift_px, scale, roll_deg, fraction) of ``augment.FramingJitter``, () for none (the
    control: the same training without framing errors)."""

    steps: int = 1200
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-4
    jitter: tuple = (4.0, 0.06, 4.0, 0.75)
    photon_flux_range: tuple = (20.0, 2000.0)
    seed: int = 0


def finetune_for_framing(
    model: LsiModel, faces, config: FramingFinetuneConfig = FramingFinetuneConfig(), progress: bool = True
) -> tuple[LsiModel, list]:
    """Every member of ``model``'s encoder trained further on the latent MSE of generated training
    ``faces`` (``data.FaceData``: their true latents are the targets) measured through random framing
    errors, as a located face is (patterns frozen); the same draws for any ``jitter``. Returns the
    model (``<id>-framed``) and the mean loss every 100 steps."""
    from lsi_ros.training.augment import FramingJitter

    jitter = FramingJitter.from_config(config.jitter)
    sums = channel_sums(faces.images)
    latents = torch.from_numpy(faces.latents)
    patterns = torch.from_numpy(ForwardModel(model.pattern_set, np.float32).matrix)
    resolution = model.pattern_set.resolution[0]
    encoder = copy.deepcopy(model.encoder).float().train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = torch.Generator().manual_seed(config.seed)
    jitter_rng = torch.Generator().manual_seed(config.seed + 1)
    mean, std = encoder.latent_mean, encoder.latent_std
    history, window = [], []
    steps = tqdm(range(config.steps), desc="fine-tune for framing errors", unit="step", disable=not progress)
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.steps, config.lr)
        index = torch.randint(0, len(sums), (config.batch_size,), generator=rng)
        x = sums[index].float() / 255.0
        if jitter is not None:
            x = jitter(x, resolution, jitter_rng)
        y = measure(x, patterns, log_uniform_flux(config.photon_flux_range, rng), rng)
        target = (latents[index] - mean) / std
        members = getattr(encoder, "members", [encoder])  # an ensemble: each member learns alone
        loss = sum(torch.nn.functional.mse_loss(m.normalised(y), target) for m in members) / len(members)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(float(loss.detach()))
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            history.append({"step": step + 1, "train_loss": round(float(np.mean(window)), 5)})
            window = []
    encoder.eval()
    info = dict(model.info)
    info["framing_finetune"] = {
        "base_model_id": model.model_id,
        "faces": len(sums),
        "config": asdict(config),
        "history": history,
    }
    return LsiModel(f"{model.model_id}-framed", model.pattern_set, encoder, info), history


# -- real photos through the generator: image and identity losses, no latent target ----------------
@dataclass(frozen=True)
class PhotoFinetuneConfig:
    steps: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    latent_space: str = "w+"
    offset_rank: int = 0  # W+: features the grown offset head passes through (0: a full head)
    losses: str = "paper"  # "paper" (LossWeights defaults) or "l2=1,identity=0.5,perceptual=0.1"
    photon_flux_range: tuple = (20.0, 2000.0)
    seed: int = 0
    mirror: bool = False  # each face drawn is mirrored left-right half the time: twice the faces seen
    pattern_lr: float = 0.0  # > 0: the patterns learn too, from the model's own (a new pattern set)

    def loss_weights(self) -> LossWeights:
        return LossWeights.parse(self.losses)


def utkface_training_photos(
    analyzer, count: int, resolution: int | None = None, root=None, cache_dir=None, progress: bool = True
):
    """The first ``count`` faces of UTKFace's training split (key order), FFHQ-framed (cached), at
    ``resolution`` (default the framing's 256²): the real-face training source. Held-out faces are
    refused here as well as by the split itself."""
    from lsi_ros.evaluation import real_faces

    root = Path(root or real_faces.default_real_faces_dir())
    folder = root / real_faces.UTKFACE_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"no UTKFace photos at {folder} (see the shared data README)")
    faces = real_faces.utkface_faces(folder, split="train")[:count]
    if not faces:
        raise ValueError(f"no UTKFace training-split faces in {folder}")
    if any(real_faces.is_held_out(face.key) for face in faces):
        raise AssertionError("a held-out UTKFace face reached the training set")
    framed = real_faces.frame_faces(analyzer, faces, cache_dir, progress=progress)
    if resolution:
        framed.images = _at_resolution(framed.images, resolution)
    return framed


def _at_resolution(images: np.ndarray, resolution: int) -> np.ndarray:
    """(N, R, R, 3) images at ``resolution`` (area-averaged when shrunk), as they are when they fit."""
    if images.shape[1] == resolution:
        return images
    import cv2

    size = (resolution, resolution)
    return np.stack([cv2.resize(i, size, interpolation=cv2.INTER_AREA) for i in images])


def generated_training_data(model: LsiModel, count: int, root=None, seed_start: int = 0):
    """``count`` of the model's own generated faces and their latents from ``seed_start`` (by default
    its training faces from seed 0; ``data.HELD_OUT_SEED_START`` for held-out ones), read from `lsi
    data`'s cache for the model's generator and truncation: ``data.FaceData``."""
    from lsi_ros.training import data

    name = model.info.get("generator_id", "").split("-", 1)[0]
    psi = float(model.info.get("truncation_psi", data.DEFAULT_PSI))
    return data.load(name, seed_start, count, root, truncation_psi=psi)


def generated_training_faces(model: LsiModel, count: int, resolution: int, root=None) -> np.ndarray | None:
    """The first ``count`` of the model's own training faces (seeds from 0, read from `lsi data`'s cache)
    as (N, R, R, 3) uint8 at ``resolution``; None for none."""
    if count < 0:
        raise ValueError(f"--generated needs zero or more faces, not {count}")
    if not count:
        return None
    return _at_resolution(generated_training_data(model, count, root).images, resolution)


PATTERN_MARGIN = 0.05  # how far from 0.5 the model's patterns start when they learn: a pixel flips only
# where the loss pushes it the same way for many steps


def photo_scenes(photos: np.ndarray, side: int) -> torch.Tensor:
    """Uint8 photos (N, R, R, 3) as the DMD sees them: (N, side²) 16-bit channel sums at the patterns'
    resolution (the photodiode sees only the sum; 10k photos at 256² take 1.3 GB)."""
    return channel_sums(torch.from_numpy(np.ascontiguousarray(_at_resolution(photos, side))))


def photo_batch(scenes: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, mirror=False, rng=None):
    """The scenes on the DMD (B, side²) in [0, 3] and target images (B, 3, R, R) in [0, 1] of the faces
    at ``index``; with ``mirror``, each face is mirrored left-right with probability 1/2 (drawn from
    ``rng``), its scene and its target alike."""
    on_dmd = scenes[index].float() / 255.0
    images = targets[index].permute(0, 3, 1, 2).float() / 255.0
    if not mirror:
        return on_dmd, images
    flip = torch.rand(len(index), generator=rng) < 0.5
    side = math.isqrt(on_dmd.shape[1])
    on_dmd = torch.where(flip[:, None], on_dmd.unflatten(1, (side, side)).flip(-1).flatten(1), on_dmd)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return on_dmd, images


def same_person(index: torch.Tensor, num_photos: int, bank_size: int) -> torch.Tensor:
    """(B, bank_size) mask of the bank entries that show the person at each drawn ``index``: the photo
    itself and, in a bank of photos then mirror images, its mirror image (generated faces, drawn at
    ``index >= num_photos``, are in no bank)."""
    mask = torch.zeros(len(index), bank_size, dtype=torch.bool)
    rows = torch.nonzero(index < num_photos).flatten()
    for copy_start in range(0, bank_size, num_photos):
        mask[rows, index[rows] + copy_start] = True
    return mask


def finetune_on_photos(
    model: LsiModel,
    photos: np.ndarray,
    generator,
    config: PhotoFinetuneConfig = PhotoFinetuneConfig(),
    face_loss: losses.FaceLoss | None = None,
    progress: bool = True,
    generated: np.ndarray | None = None,
) -> tuple[LsiModel, list]:
    """A copy of ``model`` whose encoder (W, or W+ grown from it) learnt to decode ``photos``
    (N, R, R, 3) uint8, FFHQ-framed at the generator's resolution, through the frozen generator; the
    patterns stay as they are. ``generated`` faces (same form, the generator's own training faces) join
    the photos under the same losses, so the encoder keeps what it decodes well while it learns real
    people. With a ``contrast`` loss weight, face-api's descriptors of the photos (and their mirror
    images with ``config.mirror``) are the bank the decoded faces must be told apart from. Returns the
    model and the loss terms every 10 steps."""
    if config.latent_space not in LATENT_SPACES:
        raise ValueError(f"latent space must be one of {LATENT_SPACES}, not {config.latent_space!r}")
    if not config.pattern_lr >= 0:
        raise ValueError(f"a pattern learning rate is >= 0 (0: the patterns stay), not {config.pattern_lr!r}")
    weights = config.loss_weights()
    if weights.needs_faces and face_loss is None:
        face_loss = losses.FaceLoss(attributes=bool(weights.attributes))
    resolution = generator.resolution
    if photos.ndim != 4 or photos.shape[1:] != (resolution, resolution, 3) or photos.dtype != np.uint8:
        raise ValueError(f"photos must be (N, {resolution}, {resolution}, 3) uint8, not {photos.shape}")
    if generated is not None and (generated.shape[1:] != photos.shape[1:] or generated.dtype != np.uint8):
        raise ValueError(
            f"generated faces must be (N, {resolution}, {resolution}, 3) uint8, not {generated.shape}"
        )
    num_photos = len(photos)
    if generated is not None:
        photos = np.concatenate([photos, generated])
    encoder = copy.deepcopy(model.encoder).float().cpu()
    if config.latent_space == "w+":
        if generator.num_ws == 1:
            raise ValueError(f"{generator.generator_id} takes one latent per image: W+ is its W")
        # A W+ model tuned again keeps its own head unless another rank is asked for.
        encoder = with_layer_offsets(encoder, generator.num_ws, config.offset_rank or encoder.offset_rank)
    encoder.train().requires_grad_(True)
    side = model.pattern_set.resolution[0]
    scenes = photo_scenes(photos, side)
    targets = torch.from_numpy(photos)  # uint8, a batch at a time to float: a float copy is 4x the photos
    base = torch.from_numpy(model.pattern_set.matrix())
    patterns = BinaryPatterns.from_binary(base, PATTERN_MARGIN) if config.pattern_lr > 0 else None
    groups = [{"params": encoder.parameters(), "peak": config.lr}]
    if patterns is not None:
        groups.append({"params": patterns.parameters(), "peak": config.pattern_lr, "weight_decay": 0.0})
    bank = None
    if weights.contrast:  # the training photos (and their mirror images) are the other people
        shown = [photos[:num_photos]] + ([photos[:num_photos, :, ::-1]] if config.mirror else [])
        bank = torch.cat([face_loss.descriptors(images, progress=progress) for images in shown])
    net = generator.torch_synthesis()
    rng = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    history = []
    bar = tqdm(range(config.steps), desc=f"fine-tune on photos ({config.latent_space})", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.steps, group["peak"])
        index = torch.randint(0, len(photos), (min(config.batch_size, len(photos)),), generator=rng)
        on_dmd, batch = photo_batch(scenes, targets, index, config.mirror, rng)
        shown = base if patterns is None else patterns()
        counts = measure(on_dmd, shown, log_uniform_flux(config.photon_flux_range, rng), rng)
        predicted = encoder.normalised(counts)
        decoded = net(encoder.latent_mean + encoder.latent_std * predicted)
        same = None if bank is None else same_person(index, num_photos, len(bank))
        terms = losses.loss_terms(weights, predicted, None, batch, decoded, face_loss, bank, same)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        values = {k: round(float(v.detach()), 5) for k, v in terms.items()}
        bar.set_postfix(loss=f"{values['total']:.4f}")
        if step % 10 == 0 or step + 1 == config.steps:
            if patterns is not None:
                values["pixels_changed"] = round(float((patterns.binary().float() != base).float().mean()), 6)
            history.append({"step": step + 1, **values})
    encoder.eval().requires_grad_(False)
    info = dict(model.info)
    info["photo_finetune"] = {
        "base_model_id": model.model_id,
        "photos": num_photos,
        "generated_faces": len(photos) - num_photos,
        "config": asdict(config),
        "loss_weights": asdict(weights),
        "history": history,
    }
    if "photo_finetune" in model.info:  # a fine-tune tuned again keeps how it began
        info["photo_finetune"]["previous"] = model.info["photo_finetune"]
    suffix = "-wplus-ft" if config.latent_space == "w+" else "-ft"
    if patterns is None:
        return LsiModel(f"{model.model_id}{suffix}", model.pattern_set, encoder, info), history
    model_id = f"{model.model_id}-patterns{suffix}"
    binary = patterns.binary().numpy().reshape(-1, side, side)
    pattern_set = learned_patterns(binary, model_id=model_id)
    info.pop("patterns_from", None)  # the patterns are this model's own now
    info["patterns_tuned_from"] = {
        "model_id": model.model_id,
        "pattern_set_id": model.pattern_set.pattern_set_id,
        "pixels_changed": history[-1]["pixels_changed"],
    }
    return LsiModel(model_id, pattern_set, encoder, info), history
