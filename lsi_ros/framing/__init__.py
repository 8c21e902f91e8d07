"""Find and frame the face: a single-pixel camera that looks at the whole field before it measures.

The models expect one FFHQ-framed face filling the sampling grid; a robot sees a person anywhere.
The DMD can show any pattern, so the camera first acquires a coarse image of the whole field with
Walsh-Hadamard patterns (:mod:`.localize`), finds the face and its landmarks, and then shows the
model's patterns registered onto the face (:mod:`.field`: shift, scale and roll, to the nearest
mirror). :mod:`.tracking` decides when to look again; :mod:`.unframed` makes test scenes.
"""

from lsi_ros.framing.field import (
    DEFAULT_FIELD,
    field_placement,
    framed_view,
    measure_field,
    registered_patterns,
    registration_from_quad,
    registration_quad,
)

__all__ = [
    "DEFAULT_FIELD",
    "field_placement",
    "framed_view",
    "measure_field",
    "registered_patterns",
    "registration_from_quad",
    "registration_quad",
]
