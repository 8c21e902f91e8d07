"""Linear attribute boundaries in a generator's latent space: p(attribute | w) = sigmoid(a·w + b).

The latent space of a StyleGAN is close to linearly separable for face attributes, so one linear
layer reads them off a latent code (the paper's downstream heads). A boundaries file is one
``.safetensors`` with ``weight`` (K, D) and ``bias`` (K) float32, and metadata ``format``,
``names`` (JSON list of K names), ``generator_id``, and ``model_id`` and ``pattern_set_id``: empty for
boundaries fitted on true latents; else the LSI model whose own latent estimates they were fitted on,
and its pattern set (an estimate is shrunk towards the mean where the measurements say little;
boundaries fitted on the estimates weigh each direction by how well that model reads it, so they suit
its codes best, and only its: a fine-tune of it with the same patterns shrinks differently).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsi_ros.models.files import read_safetensors, write_safetensors

FILE_FORMAT = "lsi_ros.attribute_boundaries"


class BoundariesError(ValueError):
    """A boundaries file that is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class AttributeBoundaries:
    names: tuple
    weight: np.ndarray
    bias: np.ndarray
    generator_id: str = ""
    pattern_set_id: str = ""
    model_id: str = ""

    @property
    def latent_dim(self) -> int:
        return int(self.weight.shape[1])

    def probabilities(self, latent: np.ndarray) -> np.ndarray:
        """(D,) or (N, D) latents -> (K,) or (N, K) probabilities."""
        logits = np.asarray(latent, dtype=np.float64) @ self.weight.T.astype(np.float64) + self.bias
        return 1.0 / (1.0 + np.exp(-logits))

    def read(self, codes: np.ndarray) -> np.ndarray:
        """Latent codes (..., L, D), W (L = 1) or W+ -> probabilities (..., K). The boundaries live in W,
        so a W+ code is read by its layers' mean."""
        return self.probabilities(np.asarray(codes).mean(axis=-2))


def save_boundaries(boundaries: AttributeBoundaries, path) -> Path:
    tensors = {"weight": boundaries.weight.astype(np.float32), "bias": boundaries.bias.astype(np.float32)}
    metadata = {
        "format": FILE_FORMAT,
        "names": json.dumps(list(boundaries.names)),
        "generator_id": boundaries.generator_id,
        "pattern_set_id": boundaries.pattern_set_id,
        "model_id": boundaries.model_id,
    }
    return write_safetensors(tensors, path, metadata, "np")


def load_boundaries(path) -> AttributeBoundaries:
    metadata, tensors = read_safetensors(path, FILE_FORMAT, BoundariesError, "boundaries", framework="np")
    try:
        names = tuple(json.loads(metadata["names"]))
        weight, bias = tensors["weight"], tensors["bias"]
    except (KeyError, ValueError) as error:
        raise BoundariesError(f"{path}: incomplete boundaries file ({error!r})") from error
    if weight.ndim != 2 or bias.shape != (weight.shape[0],) or len(names) != weight.shape[0]:
        raise BoundariesError(
            f"{path}: {len(names)} names, weight {weight.shape}, bias {bias.shape} disagree"
        )
    return AttributeBoundaries(
        names,
        weight,
        bias,
        metadata.get("generator_id", ""),
        metadata.get("pattern_set_id", ""),
        metadata.get("model_id", ""),
    )


class AttributeReader:
    """Which boundaries read a latent code, as latent_classifier reads it: those fitted on the estimates
    of the model that made the code (its ``model_id``), else the general ones (None: no reading)."""

    def __init__(self, general: AttributeBoundaries | None = None):
        self.general = general
        self.by_model = {}

    def add_estimate_boundaries(self, fitted: AttributeBoundaries) -> None:
        if not fitted.model_id:
            raise BoundariesError(
                "these boundaries name no model: fitted on true latents, or by an lsi that did not record "
                "the model (refit them with lsi attributes --fit-estimates)"
            )
        self.by_model[fitted.model_id] = fitted

    def boundaries_for(self, model_id: str) -> AttributeBoundaries | None:
        return self.by_model.get(model_id, self.general)
