"""Acquiring calibration captures from a projector + detector pair (any backend).

A session has four stages, each needing a different scene in front of the camera: ``dark``
(objective covered), ``ambient`` and ``ptc`` (a flat field, e.g. a white reference card evenly
lit), ``target`` (the registration target). ``prepare(stage)`` is called before each pattern set
of a stage is displayed: in simulation :class:`SimulatedBench` swaps the scene; a hardware backend
would prompt the operator when the stage changes (only ``sim`` exists so far).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from lsi_ros.hardware import Detector, PatternProjector
from lsi_ros.hardware.frames import FrameAssembler
from lsi_ros.hardware.sim import SimulatedDmd, SimulatedPhotodiode
from lsi_ros.optics.calibration import (
    TARGET_SUPERSAMPLING,
    CalibrationCaptures,
    CalibrationError,
    registration_target,
    target_pattern_set,
)
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.patterns import PatternSet, bernoulli_patterns
from lsi_ros.optics.photodiode import PhotodiodeModel

STAGES = ("dark", "ambient", "ptc", "target")
MAX_RETRIES = 10


@dataclass(frozen=True)
class CapturePlan:
    """How many frames and patterns each stage takes (defaults: ~45 k samples, a second in sim)."""

    resolution: int = 32
    frames: int = 64
    offset_patterns: int = 64  # all-off patterns per frame, dark and ambient stages
    levels: int = 20  # fill-factor levels of the photon-transfer series, 0 … 1
    patterns_per_level: int = 32
    target_frames: int = 2
    flat_field: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.resolution
        if n < 2 or n & (n - 1):
            raise CalibrationError(f"the Hadamard target basis needs a power-of-2 resolution, got {n}")
        if self.frames < 2 or self.target_frames < 1 or self.levels < 3 or self.patterns_per_level < 1:
            raise CalibrationError(f"capture plan too small: {self}")

    def fill_factors(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.levels)

    def level_pattern_set(self, level: int) -> PatternSet:
        fill = float(self.fill_factors()[level])
        return bernoulli_patterns(self.patterns_per_level, self.resolution, fill=fill, seed=self.seed + level)


def capture(
    projector: PatternProjector,
    detector: Detector,
    pattern_set: PatternSet,
    frames: int,
    prepare: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """``(frames, P)`` counts of complete measurement frames; incomplete ones are retaken.
    ``prepare`` runs once the patterns are loaded, before the display starts."""
    projector.upload(pattern_set)
    detector.set_pattern_set(pattern_set)
    prepare()
    projector.start()
    assembler = FrameAssembler(pattern_set.pattern_set_id, pattern_set.num_patterns)
    rows = []
    try:
        while len(rows) < frames:
            if assembler.counters.dropped > MAX_RETRIES:
                raise CalibrationError(
                    f"{assembler.counters.dropped} incomplete frames for pattern set "
                    f"{pattern_set.pattern_set_id}"
                )
            for sample in detector.acquire_frame():
                frame = assembler.add(sample, 0)
                if frame is not None:
                    rows.append(frame.values.astype(np.float64))
    finally:
        projector.stop()
    return np.stack(rows)


def acquire_captures(
    projector: PatternProjector,
    detector: Detector,
    prepare: Callable[[str], None],
    plan: CapturePlan,
    adc_full_scale: float,
    source: str,
    progress: bool = True,
) -> CalibrationCaptures:
    """Run the four stages and return their raw counts."""
    offsets = bernoulli_patterns(plan.offset_patterns, plan.resolution, fill=0.0)
    target_set = target_pattern_set(plan.resolution)
    total = 2 * plan.frames + plan.levels * plan.frames + plan.target_frames
    bar = tqdm(total=total, desc="calibration frames", unit="frame", disable=not progress)

    def run(stage: str, pattern_set: PatternSet, frames: int) -> np.ndarray:
        counts = capture(projector, detector, pattern_set, frames, lambda: prepare(stage))
        bar.update(frames)
        return counts

    dark = run("dark", offsets, plan.frames)
    ambient = run("ambient", offsets, plan.frames)
    ptc_counts, ptc_light = [], []
    flat = np.full((plan.resolution, plan.resolution, 3), plan.flat_field)
    for level in range(plan.levels):
        pattern_set = plan.level_pattern_set(level)
        ptc_counts.append(run("ptc", pattern_set, plan.frames))
        ptc_light.append(ForwardModel(pattern_set).measure(flat))
    target = run("target", target_set, plan.target_frames)
    bar.close()
    return CalibrationCaptures(
        dark=dark,
        ambient=ambient,
        ptc_counts=np.stack(ptc_counts),
        ptc_light=np.stack(ptc_light),
        target=target,
        resolution=plan.resolution,
        flat_field=plan.flat_field,
        adc_full_scale=adc_full_scale,
        source=source,
    )


@dataclass
class SimulatedBench:
    """A simulated DMD + photodiode with known "true" parameters and a target placed with a known
    shift and scale, so a calibration can be checked against the truth."""

    model: PhotodiodeModel
    plan: CapturePlan
    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.projector = SimulatedDmd()
        self.detector = SimulatedPhotodiode(self.model, seed=self.seed)

    def prepare(self, stage: str) -> None:
        n = self.plan.resolution
        if stage == "dark":  # objective covered: no scene light, no stray light
            self.detector.model = replace(self.model, ambient=0.0)
            scene = np.zeros((n, n, 3))
        elif stage in ("ambient", "ptc"):
            self.detector.model = self.model
            scene = np.full((n, n, 3), self.plan.flat_field)
        elif stage == "target":
            self.detector.model = self.model
            # rendered finer than the grid, as a printed target is; scene_on_dmd area-resamples it
            fine = registration_target(
                n * TARGET_SUPERSAMPLING,
                shift=(TARGET_SUPERSAMPLING * self.shift[0], TARGET_SUPERSAMPLING * self.shift[1]),
                scale=self.scale,
                supersampling=2,
            )
            scene = np.repeat(fine[..., None], 3, axis=-1)
        else:
            raise ValueError(f"unknown calibration stage {stage!r}, expected one of {STAGES}")
        self.detector.set_scene(scene)

    def acquire(self, progress: bool = True) -> CalibrationCaptures:
        return acquire_captures(
            self.projector,
            self.detector,
            self.prepare,
            self.plan,
            adc_full_scale=self.model.full_scale,
            source="sim",
            progress=progress,
        )
