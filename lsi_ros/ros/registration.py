"""lsi_ros/Registration messages <-> lsi_ros.optics.dmd.GridRegistration, and the topics of framing.

Topics (relative, so they follow the nodes' namespace): ``framing/registration`` (requests: register
the model's set onto this part of the field), ``framing/applied`` (transient-local: the registration
dmd_driver shows the model's set with, and its id), ``framing/probe`` (requests: show this set once,
registered so), ``framing/probe_shown`` (dmd_driver: the probe is on the DMD now),
``framing/probe_measurements`` (the sampler's one frame of a probe), ``framing/face`` (transient-local:
face_locator's FaceLocation, the last ten).
"""

import math

from lsi_ros.msg import Registration
from lsi_ros.optics.dmd import GridRegistration

REQUEST = "framing/registration"
APPLIED = "framing/applied"
PROBE = "framing/probe"
PROBE_SHOWN = "framing/probe_shown"
PROBE_MEASUREMENTS = "framing/probe_measurements"
FACE = "framing/face"


def to_msg(registration: GridRegistration | None, field_shape=(0, 0), **fields) -> Registration:
    """A message of ``registration`` (None: identity) on a field of ``field_shape`` (rows, cols)."""
    registration = registration or GridRegistration()
    return Registration(
        shift_row=registration.shift[0],
        shift_col=registration.shift[1],
        scale=registration.scale,
        roll_deg=registration.roll,
        field_rows=int(field_shape[0]),
        field_cols=int(field_shape[1]),
        **fields,
    )


def from_msg(msg: Registration) -> GridRegistration:
    """The registration a message carries; ValueError names what is wrong with it (a scale of 0, a
    non-finite shift or roll)."""
    return GridRegistration((msg.shift_row, msg.shift_col), msg.scale, msg.roll_deg)


def field_shape(msg: Registration, default) -> tuple[int, int]:
    """The field a message's registration is expressed on (``default`` when it names none)."""
    return (msg.field_rows, msg.field_cols) if msg.field_rows and msg.field_cols else tuple(default)


def compose(outer: GridRegistration, inner: GridRegistration) -> GridRegistration:
    """``outer`` after ``inner``: a grid registered onto the field by ``inner`` (framing), on a DMD
    whose field is itself registered by ``outer`` (the calibration): p -> outer(inner(p))."""
    row, col = outer.to_scene([inner.shift])[0]
    roll = math.remainder(outer.roll + inner.roll, 360.0)
    return GridRegistration((float(row), float(col)), outer.scale * inner.scale, roll)
