"""Classical single-pixel reconstructions from Walsh–Hadamard pattern sets: the floor to beat.

Measurements come in ADC counts through :class:`~lsi_ros.optics.PhotodiodeModel.to_ideal`, are
combined into orthonormal Walsh coefficients of the *grayscale* image (channel mean: the photodiode
sums R, G and B, so the coefficient of the channel sum is divided by the channel count), and are
inverted by

- ``pinv``: zero-filled inverse fast Walsh–Hadamard transform (the least-squares solution);
- ``tv``: anisotropic total variation with pylops' split-Bregman solver, data term on the measured
  coefficients: ``J = μ/2·‖c − S·W·x‖² + ε·(‖∂_r x‖₁ + ‖∂_c x‖₁)`` in pylops' parametrisation
  (``ε`` = ``weight``, μ = 1), a fixed iteration budget (about a second per 256² image).
"""

from __future__ import annotations

import numpy as np
import pylops
from pylops.optimization.sparsity import splitbregman

from lsi_ros.optics import PatternSet, PatternSetError, hadamard

TV_OUTER_ITERATIONS = 20
TV_LSQR_ITERATIONS = 5


def walsh_coefficients(
    pattern_set: PatternSet, y: np.ndarray, channels: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Sequency indices ``(K, 2)`` and orthonormal Walsh coefficients ``(..., K)`` of the grayscale
    (channel-mean) image from ideal-unit measurements ``y`` (..., P) of a Hadamard pattern set."""
    if "coefficients" not in pattern_set.meta:
        raise PatternSetError(f"pattern set kind {pattern_set.kind!r} carries no Walsh coefficient order")
    indices = np.asarray(pattern_set.meta["coefficients"], dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    if pattern_set.kind == "hadamard-split":
        sums = y[..., 0::2] - y[..., 1::2]
    elif pattern_set.kind == "hadamard-reference":
        sums = 2.0 * y - y[..., :1]
        sums[..., 0] = y[..., 0]
    else:
        raise PatternSetError(f"not a Hadamard pattern set: {pattern_set.kind!r}")
    return indices, sums / (channels * pattern_set.resolution[0])


def reconstruct_pinv(indices: np.ndarray, coefficients: np.ndarray, size: int) -> np.ndarray:
    """Zero-filled inverse Walsh–Hadamard transform, O(N log N)."""
    return hadamard.zero_filled_inverse(coefficients, indices, size)


class SubsampledWalsh(pylops.LinearOperator):
    """The measured rows of the orthonormal 2-D Walsh transform, applied with the FWHT."""

    def __init__(self, indices: np.ndarray, size: int):
        self.indices = np.asarray(indices)
        self.size = size
        super().__init__(dtype=np.dtype(np.float64), shape=(len(self.indices), size * size))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        c = hadamard.walsh2d(x.reshape(self.size, self.size))
        return c[self.indices[:, 0], self.indices[:, 1]]

    def _rmatvec(self, c: np.ndarray) -> np.ndarray:
        return hadamard.zero_filled_inverse(c, self.indices, self.size).ravel()


def reconstruct_tv(
    indices: np.ndarray,
    coefficients: np.ndarray,
    size: int,
    weight: float,
    outer_iterations: int = TV_OUTER_ITERATIONS,
) -> np.ndarray:
    """Anisotropic-TV reconstruction (pylops split Bregman), started from the pinv image."""
    op = SubsampledWalsh(indices, size)
    derivatives = [
        pylops.FirstDerivative(dims=(size, size), axis=axis, edge=False, kind="forward", dtype="float64")
        for axis in (0, 1)
    ]
    start = op.rmatvec(coefficients)
    x = splitbregman(
        op,
        np.asarray(coefficients, dtype=np.float64),
        derivatives,
        x0=start,
        niter_outer=outer_iterations,
        niter_inner=1,
        mu=1.0,
        epsRL1s=[weight, weight],
        tol=1e-10,
        tau=1.0,
        iter_lim=TV_LSQR_ITERATIONS,
        damp=0.0,
    )[0]
    return x.reshape(size, size)
