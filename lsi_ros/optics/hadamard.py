"""Walsh–Hadamard transform in sequency order, for Hadamard pattern sets and their inversion.

The 2-D Walsh function with sequency indices ``(u, v)`` is the outer product of the 1-D Walsh rows
``u`` and ``v`` (entries ±1); rows are sorted by their number of sign changes. Low spatial
frequencies come first in the zig-zag order over ``(u, v)``, the order single-pixel imaging peers
use to pick a subset of coefficients.

Coefficients are orthonormal (``C = W X Wᵀ / n`` for an ``n × n`` image), so the zero-filled
inverse of a coefficient subset is the least-squares (pseudo-inverse) reconstruction.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _check_power_of_two(n: int) -> None:
    if n < 1 or n & (n - 1):
        raise ValueError(f"Walsh–Hadamard size must be a power of two, got {n}")


def fwht(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unnormalised fast Walsh–Hadamard transform in natural (Sylvester) order, O(n log n).

    Applying it twice multiplies by ``n``.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    _check_power_of_two(n)
    lead = x.shape[:-1]
    y = x.reshape(-1, n).copy()
    h = 1
    while h < n:
        pairs = y.reshape(-1, n // (2 * h), 2, h)
        a = pairs[:, :, 0, :].copy()
        pairs[:, :, 0, :] += pairs[:, :, 1, :]
        pairs[:, :, 1, :] = a - pairs[:, :, 1, :]
        h *= 2
    return np.moveaxis(y.reshape(*lead, n), -1, axis)


@lru_cache(maxsize=16)
def sequency_permutation(n: int) -> np.ndarray:
    """Natural-order row index of the Walsh function with sequency ``k``, for ``k = 0 .. n-1``.

    The natural row with ``k`` sign changes is ``bit_reverse(gray(k))``.
    """
    _check_power_of_two(n)
    bits = n.bit_length() - 1
    k = np.arange(n)
    gray = k ^ (k >> 1)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((gray >> b) & 1) << (bits - 1 - b)
    rev.setflags(write=False)
    return rev


@lru_cache(maxsize=8)
def walsh_matrix(n: int) -> np.ndarray:
    """``n × n`` matrix of ±1 Walsh functions, row ``k`` has ``k`` sign changes (int8)."""
    rows = fwht(np.eye(n))[sequency_permutation(n)].astype(np.int8)
    rows.setflags(write=False)
    return rows


@lru_cache(maxsize=16)
def zigzag_order(n: int) -> np.ndarray:
    """All ``n²`` sequency index pairs ``(u, v)`` in zig-zag order (JPEG convention), shape (n², 2).

    Anti-diagonals ``u + v = s`` come in increasing ``s``; the walk direction alternates, starting
    along ``v`` for ``s = 1``, so ``(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), ...``.
    """
    order = []
    for s in range(2 * n - 1):
        us = range(max(0, s - n + 1), min(s, n - 1) + 1)
        diag = [(u, s - u) for u in us]
        order.extend(diag if s % 2 else diag[::-1])
    out = np.array(order, dtype=np.int64)
    out.setflags(write=False)
    return out


def walsh2d(images: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D Walsh coefficients of ``(..., n, n)`` images, indexed ``[..., u, v]``."""
    n = images.shape[-1]
    perm = sequency_permutation(n)
    c = fwht(fwht(images, axis=-1), axis=-2) / n
    return c[..., perm, :][..., :, perm]


def iwalsh2d(coefficients: np.ndarray) -> np.ndarray:
    """Inverse of :func:`walsh2d` (the transform is orthonormal and symmetric)."""
    n = coefficients.shape[-1]
    inv = np.argsort(sequency_permutation(n))
    natural = coefficients[..., inv, :][..., :, inv]
    return fwht(fwht(natural, axis=-1), axis=-2) / n


def walsh_pattern(n: int, u: int, v: int) -> np.ndarray:
    """The ±1 2-D Walsh function ``(u, v)`` as an ``n × n`` int8 image."""
    w = walsh_matrix(n)
    return np.outer(w[u], w[v]).astype(np.int8)


def zero_filled_inverse(values: np.ndarray, indices: np.ndarray, n: int) -> np.ndarray:
    """Pseudo-inverse reconstruction from a subset of orthonormal coefficients.

    ``values`` has shape ``(..., K)`` for the ``K`` sequency pairs ``indices`` (K, 2); all other
    coefficients are set to zero before the inverse transform.
    """
    values = np.asarray(values, dtype=np.float64)
    full = np.zeros((*values.shape[:-1], n, n))
    full[..., indices[:, 0], indices[:, 1]] = values
    return iwalsh2d(full)
