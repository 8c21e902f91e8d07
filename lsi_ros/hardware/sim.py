"""Simulated DMD and photodiode: the optics core (lsi_ros.optics) driven like the real devices.

The objective lens maps the scene onto the DMD's sampling grid (lsi_ros.optics.objective); the
photodiode sums the light of all channels passing the pattern, and the detector model adds shot,
read and dark noise and ADC quantisation with saturation. With a ``field_shape`` (framing) the scene
fills the whole field of the DMD's active area instead, and the patterns measure it where the
registration puts them (lsi_ros.framing.measure_field).
"""

from collections.abc import Iterator
from dataclasses import replace

import cv2
import numpy as np
import torch

from lsi_ros.framing import measure_field
from lsi_ros.framing.field import detect_light, light_fraction
from lsi_ros.hardware import Detector, PatternProjector, mirror_placement
from lsi_ros.hardware.frames import Sample
from lsi_ros.optics import dmd as dmd_geometry
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.objective import scene_on_dmd
from lsi_ros.optics.photodiode import PhotodiodeModel


class SimulatedDmd(PatternProjector):
    """A DMD that checks what a real one would (fit on the mirror array, pattern memory) and keeps time."""

    def __init__(self, device: str = "DLP6500", pattern_rate_hz: float = 9500.0):
        self.geometry = dmd_geometry.MIRROR_ARRAYS[device]
        self.timing = replace(dmd_geometry.TIMINGS[device], pattern_rate_hz=pattern_rate_hz)
        self.pattern_set = None
        self.running = False

    def upload(self, pattern_set, registration=None, partial: bool = False) -> None:
        self.placement = mirror_placement(self.geometry, pattern_set.resolution, registration, partial)
        self.pattern_set = pattern_set

    def start(self) -> None:
        if self.pattern_set is None:
            raise RuntimeError("no pattern set uploaded")
        self.running = True

    def stop(self) -> None:
        self.running = False

    def status(self) -> dict:
        status = {"backend": "sim", "device": self.geometry.name, "running": self.running}
        if self.pattern_set is not None:
            m = self.pattern_set.num_patterns
            status |= {
                "pattern_rate_hz": self.timing.pattern_rate_hz,
                "frame_time_ms": 1e3 * self.timing.frame_time(m),
                "upload_batches": self.timing.batches(m),
                "mirror_block": self.placement.block,
            }
        return status


class SimulatedPhotodiode(Detector):
    """One reading per pattern of the current scene through the photodiode model."""

    def __init__(self, model: PhotodiodeModel, seed: int = 0, field_shape: tuple[int, int] | None = None):
        self.model = model
        self.rng = np.random.default_rng(seed)
        self.pattern_set = None
        self._forward = None
        self.scene = None
        self.field_shape = field_shape
        self.registration = None

    def set_pattern_set(self, pattern_set) -> None:
        self.pattern_set = pattern_set
        self._forward = ForwardModel(pattern_set, dtype=np.float32)

    def set_scene(self, rgb: np.ndarray) -> None:
        """The scene (H, W, 3) in [0, 1], any size; kept on the DMD's sampling grid, or with a
        ``field_shape`` resized to the field (the objective images all of it onto the active area)."""
        if self.field_shape is None:
            self.scene = scene_on_dmd(rgb, self.pattern_set.resolution[0])
        else:
            rows, cols = self.field_shape
            self.scene = cv2.resize(rgb, (cols, rows), interpolation=cv2.INTER_AREA)

    def measure_field(self, forward, registration) -> np.ndarray:
        """ADC counts of one pass of ``forward``'s patterns, registered so, over the field scene."""
        return measure_field(self.scene, forward, registration, self.model, self.rng)

    def measure_probe(self, forward, registration) -> tuple[np.ndarray, np.ndarray]:
        """A probe's counts and those of one all-off pattern after it (the ambient light)."""
        fraction = light_fraction(forward.resolution, registration, self.field_shape)
        dark = detect_light(np.zeros(1), fraction, self.model, self.rng)
        return self.measure_field(forward, registration), dark

    def acquire_frame(self) -> Iterator[Sample]:
        if self.field_shape is not None:
            counts = self.measure_field(self._forward, self.registration)
        else:
            # one float32 matrix-vector product of the scene's intensity (the photodiode sums the
            # colours) with the pattern matrix the forward model keeps in torch (numpy's BLAS is 3-5x
            # slower on this (P, H·W) shape; summing the interleaved channels first halves the cost)
            intensity = self.scene[..., 0] + self.scene[..., 1] + self.scene[..., 2]
            ideal = self._forward.measure_torch(torch.from_numpy(intensity)).numpy()
            counts = self.model.sample(ideal, self.rng).counts
        clipped = counts >= self.model.full_scale
        set_id = self.pattern_set.pattern_set_id
        for index, (value, saturated) in enumerate(zip(counts.tolist(), clipped.tolist(), strict=True)):
            yield Sample(set_id, index, value, saturated)

    def status(self) -> dict:
        return {"backend": "sim", "scene": self.scene is not None, "noise": self.model.label}
