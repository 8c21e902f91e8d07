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
    def upload(self, pattern_set, registration=None) -> None:
        """Load the patterns into the device (all at once or in batches that fit its memory), moved
        and scaled onto the scene by ``registration`` (lsi_ros.optics.dmd.GridRegistration) if given."""

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
