"""Forward model: linearity, channel summing, Hadamard inversion, numpy/torch agreement."""

import numpy as np
import torch

from lsi_ros.optics import (
    ForwardModel,
    PhotodiodeModel,
    bernoulli_patterns,
    hadamard_reference_patterns,
    hadamard_split_patterns,
    measure_torch,
)
from lsi_ros.optics.hadamard import walsh2d, zigzag_order

RNG = np.random.default_rng(7)


def test_linear_and_additive():
    fm = ForwardModel(bernoulli_patterns(20, 32, seed=2))
    a, b = RNG.random((32, 32, 3)), RNG.random((32, 32, 3))
    ya, yb = fm.measure(a), fm.measure(b)
    np.testing.assert_allclose(fm.measure(a + b), ya + yb, rtol=1e-12)
    np.testing.assert_allclose(fm.measure(2.5 * a), 2.5 * ya, rtol=1e-12)


def test_photodiode_sums_channels_and_matches_definition():
    ps = bernoulli_patterns(5, 8, seed=4)
    fm = ForwardModel(ps)
    rgb = RNG.random((8, 8, 3))
    expected = np.einsum("phw,hwc->p", ps.dense().astype(float), rgb)
    np.testing.assert_allclose(fm.measure(rgb), expected, rtol=1e-12)
    np.testing.assert_allclose(fm.measure(rgb.sum(axis=-1)), expected, rtol=1e-12)  # grayscale = 1 channel


def test_float32_model_agrees_with_float64_to_well_below_shot_noise():
    ps = bernoulli_patterns(64, 256, seed=3)
    rgb = RNG.random((256, 256, 3)).astype(np.float32)
    exact, fast = ForwardModel(ps).measure(rgb), ForwardModel(ps, dtype=np.float32).measure(rgb)
    assert exact.dtype == np.float64 and fast.dtype == np.float32
    np.testing.assert_allclose(fast, exact, rtol=1e-5)


def test_batched_shapes_and_uint8():
    fm = ForwardModel(bernoulli_patterns(6, 16, seed=0))
    batch = RNG.random((4, 16, 16, 3))
    y = fm.measure(batch)
    assert y.shape == (4, 6)
    np.testing.assert_allclose(y[2], fm.measure(batch[2]))
    white = np.full((16, 16, 3), 255, dtype=np.uint8)
    np.testing.assert_allclose(fm.measure(white), 3 * fm.pattern_set.dense().sum(axis=(1, 2)))


def test_complete_hadamard_split_set_inverts_exactly():
    n = 16
    ps = hadamard_split_patterns(2 * n * n, n)
    image = RNG.random((n, n))
    y = ForwardModel(ps).measure(image)
    coefficients = (y[0::2] - y[1::2]) / n
    full = np.zeros((n, n))
    idx = np.asarray(ps.meta["coefficients"])
    full[idx[:, 0], idx[:, 1]] = coefficients
    np.testing.assert_allclose(full, walsh2d(image), atol=1e-12)
    # the full set is a basis: the dense ±1 matrix has full rank and inverts exactly
    h = ps.matrix()[0::2].astype(float) - ps.matrix()[1::2]
    np.testing.assert_allclose(np.linalg.solve(h, coefficients * n), image.ravel(), atol=1e-10)


def test_split_difference_cancels_ambient_and_dark_level():
    n = 16
    ps = hadamard_split_patterns(64, n)
    image = RNG.random((n, n, 3))
    y = ForwardModel(ps).measure(image)
    dark = PhotodiodeModel(ambient=0.0, dark_level=0.0, adc_bits=None, shot_noise=False, read_noise=0.0)
    bright = PhotodiodeModel(ambient=5e5, dark_level=300.0, adc_bits=None, shot_noise=False, read_noise=0.0)
    rng = np.random.default_rng(0)
    c_dark, c_bright = dark.sample(y, rng).counts, bright.sample(y, rng).counts
    assert np.all(c_bright - c_dark > 100)  # the offset is really there ...
    np.testing.assert_allclose(c_bright[0::2] - c_bright[1::2], c_dark[0::2] - c_dark[1::2], atol=1e-6)
    # ... while the reference set keeps a bias of one offset per coefficient
    ref = hadamard_reference_patterns(32, n)
    y_ref = ForwardModel(ref).measure(image)
    c_ref_bright, c_ref_dark = bright.sample(y_ref, rng).counts, dark.sample(y_ref, rng).counts
    bias = (2 * c_ref_bright[1:] - c_ref_bright[0]) - (2 * c_ref_dark[1:] - c_ref_dark[0])
    np.testing.assert_allclose(bias, bright.conversion_gain * bright.ambient + bright.dark_level)


def test_torch_and_numpy_agree():
    ps = bernoulli_patterns(40, 64, seed=5)
    fm = ForwardModel(ps)
    batch = RNG.random((3, 64, 64, 3)).astype(np.float32)
    y_np = fm.measure(batch)
    y_t = fm.measure_torch(torch.from_numpy(batch).permute(0, 3, 1, 2))
    assert y_t.dtype == torch.float32 and y_t.shape == (3, 40)
    np.testing.assert_allclose(y_t.numpy(), y_np, rtol=2e-6, atol=1e-6 * np.abs(y_np).max())
    gray = torch.from_numpy(batch[0].sum(-1))
    np.testing.assert_allclose(fm.measure_torch(gray).numpy(), y_np[0], rtol=2e-6)


def test_torch_forward_is_differentiable_in_patterns():
    weights = torch.rand(4, 8, 8, requires_grad=True)
    binary = weights + (torch.round(weights.clamp(0, 1)) - weights).detach()  # straight-through
    image = torch.rand(2, 3, 8, 8)
    measure_torch(binary, image).sum().backward()
    np.testing.assert_allclose(
        weights.grad.numpy(), np.broadcast_to(image.sum((0, 1)).numpy(), (4, 8, 8)), rtol=1e-5
    )


def test_low_frequency_order_is_zigzag():
    order = zigzag_order(4).tolist()
    assert order[:6] == [[0, 0], [0, 1], [1, 0], [2, 0], [1, 1], [0, 2]]
    assert sorted(map(tuple, order)) == [(u, v) for u in range(4) for v in range(4)]
    sums = [u + v for u, v in order]
    assert sums == sorted(sums)
