"""The camera's devices behind two small interfaces, with simulated and real backends side by side.

A ``PatternProjector`` (the DMD) takes a pattern set and displays it at a pattern rate; a
``Detector`` (photodiode + ADC) yields one sample per displayed pattern. Nodes pick a backend by
name (``backend:=sim``); hardware backends register in the same tables.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator

from lsi_ros.hardware.frames import Sample


class HardwareError(OSError):
    """A device is absent, unreachable, or refused a command; nodes report it and retry."""


class PatternProjector(ABC):
    """A DMD: upload a pattern set, display it cyclically, report status."""

    @abstractmethod
    def upload(self, pattern_set, registration=None, partial: bool = False) -> None:
        """Load the patterns into the device (all at once or in batches that fit its memory), moved
        and scaled onto the scene by ``registration`` (lsi_ros.optics.dmd.GridRegistration) if given;
        ``partial``: the registered grid may leave the mirror array in part (:func:`placement`)."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def status(self) -> dict:
        """Key/values for diagnostics (state, pattern rate, batches, errors)."""


class Detector(ABC):
    """A photodiode behind an ADC: one sample per displayed pattern, in display order."""

    @abstractmethod
    def set_pattern_set(self, pattern_set) -> None: ...

    @abstractmethod
    def acquire_frame(self) -> Iterator[Sample]:
        """The samples of one pass over the pattern set (hardware may miss or garble some)."""

    @abstractmethod
    def status(self) -> dict: ...


def mirror_placement(geometry, resolution, registration=None, partial: bool = False):
    """Where the patterns land on the mirror array. A calibration's registration must keep the whole
    grid on the array (lsi_ros.optics.dmd.placement raises otherwise); with ``partial`` (framing: a
    face near the field's edge, a look round it) the sampling pixels off the array are shown on no
    mirror: the scene field lies inside the array, so they would have seen no light anyway."""
    from dataclasses import replace

    from lsi_ros.optics import dmd

    if not partial:
        return dmd.placement(geometry, resolution, registration)
    from lsi_ros.framing import field_placement

    return replace(
        field_placement(resolution, registration, (geometry.rows, geometry.cols)), geometry=geometry
    )


def projector_backends() -> dict:
    from lsi_ros.hardware.alp4 import Alp4Projector
    from lsi_ros.hardware.dlpc900 import Dlpc900Projector
    from lsi_ros.hardware.sim import SimulatedDmd
    from lsi_ros.hardware.video_mode import VideoModeProjector

    return {
        "sim": SimulatedDmd,
        "dlpc900": Dlpc900Projector,
        "alp4": Alp4Projector,
        "video": VideoModeProjector,
    }


def detector_backends() -> dict:
    from lsi_ros.hardware.nidaq import NidaqPhotodiode
    from lsi_ros.hardware.serial_adc import SerialAdcPhotodiode
    from lsi_ros.hardware.sim import SimulatedPhotodiode

    return {"sim": SimulatedPhotodiode, "serial_adc": SerialAdcPhotodiode, "nidaqmx": NidaqPhotodiode}
