"""Fast Walsh–Hadamard transform against the dense definition."""

import numpy as np
import pytest

from lsi_ros.optics.hadamard import fwht, iwalsh2d, walsh2d, walsh_matrix, zero_filled_inverse, zigzag_order


def test_walsh_rows_are_sorted_by_sign_changes_and_orthogonal():
    w = walsh_matrix(32).astype(int)
    assert np.array_equal((np.diff(w, axis=1) != 0).sum(axis=1), np.arange(32))
    assert np.array_equal(w @ w.T, 32 * np.eye(32, dtype=int))


def test_fwht_matches_dense_and_transforms_2d():
    x = np.random.default_rng(0).random((3, 64))
    sylvester = np.array([[1]])
    while sylvester.shape[0] < 64:
        sylvester = np.block([[sylvester, sylvester], [sylvester, -sylvester]])
    np.testing.assert_allclose(fwht(x), x @ sylvester.T, atol=1e-12)
    image = np.random.default_rng(1).random((32, 32))
    w = walsh_matrix(32).astype(float)
    np.testing.assert_allclose(walsh2d(image), w @ image @ w.T / 32, atol=1e-12)
    np.testing.assert_allclose(iwalsh2d(walsh2d(image)), image, atol=1e-12)


def test_zero_filled_inverse_is_projection():
    image = np.random.default_rng(2).random((16, 16))
    idx = zigzag_order(16)[:40]
    c = walsh2d(image)[idx[:, 0], idx[:, 1]]
    rec = zero_filled_inverse(c, idx, 16)
    np.testing.assert_allclose(walsh2d(rec)[idx[:, 0], idx[:, 1]], c, atol=1e-12)
    assert np.linalg.norm(rec) < np.linalg.norm(image)


def test_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        fwht(np.ones(12))
