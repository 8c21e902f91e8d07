"""Int8 weight kernels for the encoder: an int8 file's own matrices, latents that agree with the fp32
encoder to bf16 rounding (and int8 rounding for an fp16 file), the same call, and fp32 when asked."""

import numpy as np
import pytest
import torch

from lsi_ros.models import files
from lsi_ros.models.checkpoint import FILE_FORMAT, LsiModel, ModelFileError, load_model, save_model
from lsi_ros.models.encoder import build_encoder
from lsi_ros.models.int8_encoder import Int8Encoder, inference_encoder, int8_kernels_available
from lsi_ros.models.registry import find_model
from lsi_ros.optics import bernoulli_patterns
from lsi_ros.optics.patterns import learned_patterns

pytestmark = pytest.mark.skipif(not int8_kernels_available(), reason="this torch has no int8 weight kernel")


M, WIDTH, LATENT = 64, 64, 8  # sizes the kernel takes (multiples of INNER_MULTIPLE), as the shipped ones


def ensemble_model(num_ws: int, offset_rank: int = 0) -> LsiModel:
    """A 3-member ensemble; W+ offset heads get random weights (they start at zero)."""
    torch.manual_seed(3)
    encoder = build_encoder(M, LATENT, WIDTH, 1, members=3, num_ws=num_ws, offset_rank=offset_rank).eval()
    for member in encoder.members:
        member.latent_mean.copy_(torch.linspace(-1, 1, LATENT))
        member.latent_std.copy_(torch.linspace(0.5, 2, LATENT))
        if num_ws > 1:
            with torch.no_grad():
                for parameter in member.layer_offsets.parameters():
                    parameter.normal_(0, 0.3)
    dense = bernoulli_patterns(M, 32, seed=0).dense().astype(bool)
    return LsiModel("test-m64", learned_patterns(dense, model_id="test-m64"), encoder, {"generator_id": "x"})


def rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def frames(count: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(100, 5000, (count, M)).astype(np.float32))


@pytest.mark.parametrize(("num_ws", "offset_rank"), [(1, 0), (3, 0), (3, 4)])
def test_int8_kernels_agree_with_the_fp32_encoder_of_the_same_file(tmp_path, num_ws, offset_rank):
    model = ensemble_model(num_ws, offset_rank)
    model = load_model(save_model(model, tmp_path / "int8.safetensors", weight_format="int8"))
    int8 = inference_encoder(model)
    assert isinstance(int8, Int8Encoder)
    y = frames(64)
    with torch.inference_mode():
        exact, fast = model.encoder(y), int8(y)
        single = int8(y[5])
    assert fast.shape == exact.shape == ((64, LATENT) if num_ws == 1 else (64, num_ws, LATENT))
    encoder = model.encoder
    error = (fast - exact) / encoder.latent_std
    offset = (exact - encoder.latent_mean) / encoder.latent_std
    # bf16 rounding of each product's input and output, nothing more: a few 1e-3 of the latent
    assert 0 < rms(error) < 5e-3 * rms(offset) and error.abs().max() < 0.02 * offset.abs().max()
    torch.testing.assert_close(single, fast[5], rtol=0, atol=1e-5)  # one frame as in a batch
    assert fast.dtype == torch.float32 and int8.latent_space == model.encoder.latent_space


def test_the_kernels_multiply_the_int8_matrices_the_file_stores(tmp_path):
    path = save_model(ensemble_model(3, 4), tmp_path / "int8.safetensors", weight_format="int8")
    _, tensors = files.read_safetensors(path, FILE_FORMAT, ModelFileError, "model")
    int8 = Int8Encoder(load_model(path).encoder)
    trunk, last, offsets = int8._members[1]
    stored = tensors["encoder.members.1.net.1.weight"]
    assert stored.dtype == torch.int8 and torch.equal(trunk[1][1].q, stored)
    torch.testing.assert_close(trunk[1][1].scale, tensors["encoder.members.1.net.1.weight.row_scale"])
    assert torch.equal(last.q, tensors["encoder.members.1.net.5.weight"])
    assert torch.equal(offsets[0].q, tensors["encoder.members.1.layer_offsets.0.weight"])
    # the rank-4 product's rows are too short for the kernel: it runs in fp32, as loaded
    assert offsets[1].q is None and offsets[1].weight.dtype == torch.float32
    assert int8.int8_matrices == 3 * 5  # per member: first, two residual, last, the offsets' first factor


def test_an_fp16_file_is_rounded_to_int8_rows_and_fp32_runs_when_asked(tmp_path):
    int8 = load_model(save_model(ensemble_model(3, 0), tmp_path / "int8.safetensors", weight_format="int8"))
    assert inference_encoder(int8, int8_kernels=False) is int8.encoder
    fp16 = load_model(save_model(ensemble_model(3, 0), tmp_path / "fp16.safetensors"))
    kernels = inference_encoder(fp16)
    assert isinstance(kernels, Int8Encoder)
    y = frames(32)
    with torch.inference_mode():
        exact, fast = fp16.encoder(y), kernels(y)
    encoder = fp16.encoder
    error = (fast - exact) / encoder.latent_std
    # rounding to int8 rows adds to bf16 rounding: still about a hundredth of the latent's offset
    assert 0 < rms(error) < 1e-2 * rms((exact - encoder.latent_mean) / encoder.latent_std)


def test_an_encoder_with_no_matrix_the_kernel_takes_runs_in_fp32(tmp_path):
    from test_models import make_model  # 16 measurements, 32 wide: no row is a multiple of 64

    model = load_model(save_model(make_model(), tmp_path / "small.safetensors", weight_format="int8"))
    assert Int8Encoder(model.encoder).int8_matrices == 0 and inference_encoder(model) is model.encoder


@pytest.mark.parametrize("name", ["m32", "m128", "m128-real"])
def test_shipped_models_run_through_the_kernels_within_int8_rounding(name):
    model = load_model(find_model(name))
    int8 = inference_encoder(model)
    assert isinstance(int8, Int8Encoder)
    y = torch.rand(8, model.num_measurements, generator=torch.Generator().manual_seed(0)) * 20000
    with torch.inference_mode():
        difference = (int8(y) - model.encoder(y)) / model.encoder.latent_std
    assert rms(difference) < 1e-2  # the models' own latent error is ~0.64 in these units
