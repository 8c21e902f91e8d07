"""Photodiode/ADC model: noise statistics, saturation, inverse, torch path."""

import dataclasses

import numpy as np
import pytest
import torch

from lsi_ros.optics import PhotodiodeModel

N = 200_000


def _assert_mean_var(samples, mean, var, excess_kurtosis=0.0):
    """Sample mean and variance within 5 standard errors of the model's values."""
    n = samples.size
    assert abs(samples.mean() - mean) < 5 * np.sqrt(var / n), (samples.mean(), mean)
    se_var = var * np.sqrt((2 + excess_kurtosis) / (n - 1))
    assert abs(samples.var(ddof=1) - var) < 5 * se_var, (samples.var(ddof=1), var)


def test_default_model_mean_and_variance_match_parameters():
    model = PhotodiodeModel()
    y = np.full(N, 20_000.0)
    counts = model.sample(y, np.random.default_rng(0)).counts
    mean = model.conversion_gain * (model.photon_flux * 20_000 + model.ambient) + model.dark_level
    var = (
        model.conversion_gain**2 * (model.photon_flux * 20_000 + model.ambient + model.read_noise**2) + 1 / 12
    )
    np.testing.assert_allclose(model.expected_counts(20_000.0), mean)
    _assert_mean_var(counts, mean, var)
    assert np.all(counts == np.round(counts))


def test_shot_noise_is_poisson_at_low_light():
    lam = 3.0
    model = dataclasses.replace(PhotodiodeModel.noiseless(), shot_noise=True)
    counts = model.sample(np.full(N, lam), np.random.default_rng(1)).counts
    _assert_mean_var(counts, lam, lam, excess_kurtosis=1 / lam)
    assert np.all(counts == np.round(counts))  # whole electrons


def test_read_noise_is_gaussian_in_electrons():
    model = PhotodiodeModel(
        photon_flux=1.0,
        conversion_gain=0.5,
        read_noise=40.0,
        dark_level=100.0,
        ambient=0.0,
        adc_bits=None,
        shot_noise=False,
    )
    counts = model.sample(np.zeros(N), np.random.default_rng(2)).counts
    _assert_mean_var(counts, 100.0, 0.25 * 1600)


def test_saturation_clamps_and_is_counted():
    model = PhotodiodeModel(adc_bits=12)
    y = np.array([[0.0, 10.0, 1e5, 1e6], [1e6, 1e6, 1e6, 0.0]])
    frame = model.sample(y, np.random.default_rng(3))
    assert frame.counts.max() == 4095
    assert np.array_equal(frame.saturated, [2, 3])
    assert np.array_equal(frame.counts[y >= 1e5], np.full(5, 4095.0))
    low = dataclasses.replace(model, dark_level=-50.0, ambient=0.0, read_noise=0.0)
    frame = low.sample(np.zeros((1, 5)), np.random.default_rng(4))
    assert np.array_equal(frame.counts, np.zeros((1, 5))) and frame.underflow.tolist() == [5]


def test_noiseless_counts_equal_ideal_measurements():
    y = np.random.default_rng(5).random((3, 9)) * 1e4
    frame = PhotodiodeModel.noiseless().sample(y, np.random.default_rng(0))
    assert np.array_equal(frame.counts, y)
    assert PhotodiodeModel.noiseless().label == "none" and PhotodiodeModel().label == "photons=200"


def test_to_ideal_inverts_the_mean():
    model = PhotodiodeModel()
    y = np.array([0.0, 123.0, 4.5e4])
    np.testing.assert_allclose(
        model.to_ideal(model.expected_counts(y)), y + model.ambient / model.photon_flux
    )


def test_with_photon_flux_keeps_full_scale():
    model = PhotodiodeModel()
    dim = model.with_photon_flux(2.0)
    assert dim.photon_flux == 2.0
    y = np.array([1.0, 3 * 65536.0])
    np.testing.assert_allclose(dim.expected_counts(y), model.expected_counts(y))


def test_torch_sampling_statistics_and_gradient():
    model = PhotodiodeModel()
    y = torch.full((N,), 20_000.0, dtype=torch.float64, requires_grad=True)
    frame = model.sample_torch(y, generator=torch.Generator().manual_seed(0))
    counts = frame.counts.detach().numpy()
    mean = float(model.expected_counts(20_000.0))
    var = (
        model.conversion_gain**2 * (model.photon_flux * 20_000 + model.ambient + model.read_noise**2) + 1 / 12
    )
    _assert_mean_var(counts, mean, var)
    frame.counts.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), model.conversion_gain * model.photon_flux)


def test_torch_saturation_has_zero_gradient():
    model = PhotodiodeModel(adc_bits=10)
    y = torch.tensor([[10.0, 1e6]], requires_grad=True)
    frame = model.sample_torch(y, generator=torch.Generator().manual_seed(1))
    assert frame.counts[0, 1].item() == 1023 and frame.saturated.tolist() == [1]
    frame.counts.sum().backward()
    assert y.grad[0, 1].item() == 0 and y.grad[0, 0].item() == pytest.approx(
        model.conversion_gain * model.photon_flux
    )


def test_negative_light_rejected():
    with pytest.raises(ValueError, match="negative"):
        PhotodiodeModel().sample(np.array([-1e6]), np.random.default_rng(0))
