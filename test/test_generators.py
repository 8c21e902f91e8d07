"""Frozen generators with their real weights: contract, determinism, truncation, early exit, torch twin."""

import sys

import cv2
import numpy as np
import openvino as ov
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lsi_ros.evaluation.latent_imaging import decode_faces
from lsi_ros.models import mobilestylegan_ir
from lsi_ros.models.generators import DCGAN, MobileStyleGAN, get_generator

# Measured on 16 latents (docs/generator.md): fast exit vs area-downsampled 1024^2, PSNR 31.6 dB mean,
# 28.3 min; SSIM 0.92 mean, 0.89 min. Assert with a margin.
FAST_EXIT_MIN_PSNR = 28.5
FAST_EXIT_MIN_SSIM = 0.87


@pytest.fixture(scope="module")
def msg():
    return get_generator("mobilestylegan", batch_size=4)


@pytest.fixture(scope="module")
def msg_fast():
    return get_generator("mobilestylegan", early_exit="fast", batch_size=4)


@pytest.fixture(scope="module")
def dcgan():
    return get_generator("dcgan")


@pytest.fixture(params=["dcgan", "msg"])
def generator(request):
    return request.getfixturevalue(request.param)


def reference_256(w: np.ndarray) -> np.ndarray:
    """The untouched 1024^2 IR, area-downsampled to 256^2 with OpenCV: what the early exits approximate."""
    core = ov.Core()
    full = core.compile_model(
        mobilestylegan_ir.build_synthesis_1024(core), "CPU", mobilestylegan_ir.f32_config()
    )
    images = []
    for latent in w:
        image = full(latent[None])[0][0].transpose(1, 2, 0)
        images.append(cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA))
    return np.clip((np.stack(images) + 1) / 2, 0, 1)


def to_nhwc(images: torch.Tensor) -> np.ndarray:
    return images.detach().permute(0, 2, 3, 1).numpy()


def latent_grad_ok(grad: torch.Tensor) -> bool:
    return bool(torch.isfinite(grad).all() and grad.abs().sum() > 0)


def test_factory_builds_each_backend_and_rejects_unknown_names(msg, dcgan):
    assert isinstance(msg, MobileStyleGAN) and isinstance(dcgan, DCGAN)
    assert (msg.latent_dim, msg.resolution, msg.num_ws) == (512, 256, 23)
    assert (dcgan.latent_dim, dcgan.resolution, dcgan.num_ws) == (100, 64, 1)
    assert msg.generator_id == "mobilestylegan-ffhq@random-face==2021.7.21.1"
    assert dcgan.generator_id == "dcgan-digiface@gan-face-generate==1.1.1"
    with pytest.raises(ValueError, match="unknown generator"):
        get_generator("stylegan-xl")


def test_images_are_finite_rgb_in_unit_range(generator):
    images = generator.synthesize(generator.sample_latents([11, 12], truncation_psi=0.7))
    r = generator.resolution
    assert images.shape == (2, r, r, 3) and images.dtype == np.float32
    assert np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.1, "a face, not a flat image"


def test_latents_depend_on_the_seed_alone(generator):
    w = generator.sample_latents([3, 4, 3], truncation_psi=0.7)
    assert w.shape == (3, generator.latent_dim) and w.dtype == np.float32
    np.testing.assert_array_equal(w[0], generator.sample_latents([3], truncation_psi=0.7)[0])
    images = generator.synthesize(w)
    np.testing.assert_array_equal(images[0], images[2])
    assert np.abs(images[0] - images[1]).mean() > 0.03


def test_count_draws_from_the_given_rng(generator):
    a = generator.sample_latents(2, rng=np.random.default_rng(7))
    b = generator.sample_latents(2, rng=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, generator.latent_dim) and not np.allclose(a[0], a[1])


def test_truncation_zero_gives_the_mean_latent_image(generator):
    w_avg = generator.mean_latent()
    w = generator.sample_latents([1, 2, 3], truncation_psi=0.0)
    np.testing.assert_allclose(w, np.broadcast_to(w_avg, w.shape), atol=1e-6)
    images = generator.synthesize(w)
    mean_image = generator.synthesize(w_avg[None])[0]
    for image in images:
        np.testing.assert_allclose(image, mean_image, atol=1e-5)
    assert not np.allclose(generator.sample_latents([1], truncation_psi=0.5), w_avg[None], atol=1e-3)


def test_mean_latent_is_fixed_across_instances(msg):
    np.testing.assert_array_equal(msg.mean_latent(), MobileStyleGAN().mean_latent())


def test_batch_equals_single_calls(generator):
    w = generator.sample_latents(range(20, 25), truncation_psi=0.7)  # one chunk of 4 + a single one
    batched = generator.synthesize(w)
    singles = np.concatenate([generator.synthesize(w[i : i + 1]) for i in range(len(w))])
    np.testing.assert_allclose(batched, singles, atol=1e-4)


def test_decoded_faces_are_the_synthesized_faces_as_the_labeller_reads_them(generator):
    """decode_faces batches (with a short last batch) and rounds to uint8 without losing a face."""
    w = generator.sample_latents([11, 12, 13], truncation_psi=0.7)
    decoded = decode_faces(generator, w, batch=2, progress=False)
    side = generator.resolution
    assert decoded.dtype == np.uint8 and decoded.shape == (3, side, side, 3)
    expected = np.floor(generator.synthesize(w) * 255.0 + 0.5)
    assert np.abs(decoded.astype(np.int16) - expected).max() <= 1
    assert len({face.tobytes() for face in decoded}) == 3


def test_w_plus_with_equal_layers_equals_w_and_mixing_changes_the_image(msg):
    w = msg.sample_latents([30, 31], truncation_psi=0.7)
    w_plus = np.repeat(w[:1, None], msg.num_ws, axis=1)
    np.testing.assert_allclose(msg.synthesize(w_plus), msg.synthesize(w[:1]), atol=1e-5)
    mixed = w_plus.copy()
    mixed[:, 8:] = w[1]  # fine styles from another face
    assert np.abs(msg.synthesize(mixed) - msg.synthesize(w[:1])).mean() > 0.01
    with pytest.raises(ValueError, match="latents must be"):
        msg.synthesize(np.zeros((1, 4, 512), np.float32))


def test_exact_exit_equals_area_downsampled_1024(msg):
    w = msg.sample_latents([40, 41], truncation_psi=0.7)
    np.testing.assert_allclose(msg.synthesize(w), reference_256(w), atol=1e-5)


def test_fast_exit_is_close_to_area_downsampled_1024(msg_fast):
    w = msg_fast.sample_latents([40, 41, 42, 43], truncation_psi=0.7)
    reference = reference_256(w)
    for fast, ref in zip(msg_fast.synthesize(w), reference, strict=True):
        assert peak_signal_noise_ratio(ref, fast, data_range=1.0) > FAST_EXIT_MIN_PSNR
        assert structural_similarity(ref, fast, data_range=1.0, channel_axis=2) > FAST_EXIT_MIN_SSIM
        assert not np.allclose(ref, fast, atol=1e-3), "the fast exit is an approximation"


@pytest.mark.parametrize("which", ["msg", "msg_fast"])
def test_torch_twin_matches_openvino_and_has_gradients(which, request):
    generator = request.getfixturevalue(which)
    w = generator.sample_latents([50], truncation_psi=0.7)
    latent = torch.from_numpy(w).requires_grad_(True)
    images = generator.torch_synthesis()(latent)
    assert images.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(
        images.detach().permute(0, 2, 3, 1).numpy(), generator.synthesize(w), atol=1e-4
    )
    images.mean().backward()
    assert latent_grad_ok(latent.grad)
    assert not any(p.requires_grad for p in generator.torch_synthesis().buffers())


def test_dcgan_torch_module_is_differentiable(dcgan):
    z = torch.from_numpy(dcgan.sample_latents([5])).requires_grad_(True)
    images = dcgan.torch_synthesis()(z)
    np.testing.assert_allclose(
        images.detach().permute(0, 2, 3, 1).numpy(), dcgan.synthesize(z.detach().numpy())
    )
    images.mean().backward()
    assert latent_grad_ok(z.grad)
    assert not any(p.requires_grad for p in dcgan.torch_synthesis().parameters())


def test_exported_generator_renders_the_same_faces_without_openvino(msg, tmp_path):
    """The export a GPU machine with torch alone renders from: same w and, to one grey level, the
    same stored faces for the same seeds; the graph files hold tensors and JSON, no pickle."""
    from safetensors import safe_open

    from lsi_ros.models.torch_generator import ExportedMobileStyleGAN

    folder = msg.export_torch(tmp_path / "export")
    exported = ExportedMobileStyleGAN(folder)
    assert exported.generator_id == msg.generator_id
    seeds = [3, 1_000_000]
    w = msg.sample_latents(seeds, truncation_psi=0.7)
    w_torch = exported.sample_latents(seeds, truncation_psi=0.7)
    np.testing.assert_allclose(w_torch.numpy(), w, atol=1e-4)
    faces = exported.render(w_torch)
    assert faces.dtype == torch.uint8 and faces.shape == (2, 256, 256, 3)
    stored = np.rint(msg.synthesize(w) * 255).astype(np.int16)
    assert np.abs(faces.numpy().astype(np.int16) - stored).max() <= 1
    with safe_open(str(folder / "synthesis.safetensors"), "pt") as f:
        assert "graph" in f.metadata()


def test_a_float16_export_is_half_the_size_and_draws_nearly_the_same_faces(msg, tmp_path):
    """Weights stored in float16 (for carrying the generator) run in float32: a seed's latent moves a
    little and a latent's face stays within a few grey levels of the float32 export's."""
    import json

    from safetensors import safe_open

    from lsi_ros.models.torch_generator import ExportedMobileStyleGAN

    full = ExportedMobileStyleGAN(msg.export_torch(tmp_path / "float32"))
    folder = msg.export_torch(tmp_path / "float16", "float16")
    half = ExportedMobileStyleGAN(folder)
    assert json.loads((folder / "generator.json").read_text())["stored_as"] == "float16"
    for name in ("mapping.safetensors", "synthesis.safetensors"):
        assert (folder / name).stat().st_size < 0.55 * (tmp_path / "float32" / name).stat().st_size
        with safe_open(str(folder / name), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F16", "I64"}
    seeds = [3, 1_000_000]
    w = full.sample_latents(seeds, truncation_psi=0.7)
    assert 0 < (half.sample_latents(seeds, truncation_psi=0.7) - w).abs().max() < 0.02
    difference = (half.render(w).int() - full.render(w).int()).abs()
    assert difference.max() <= 4 and difference.float().mean() < 0.2
    with pytest.raises(ValueError, match="float16"):
        msg.export_torch(tmp_path / "bf16", "bfloat16")


def test_the_gpu_generator_benchmark_runs_where_torch_alone_is_installed(msg, tmp_path, bare_gpu_python):
    """scripts/gpu_generator.py's self-check on a CPU, in an interpreter without OpenVINO: the reference
    faces made here beforehand, a float16 export (what travels beside a checkpoint), and rows that tell
    the export's own error (against OpenVINO) from each variant's (against its fp32 faces)."""
    import json
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_generator.py"
    reference = tmp_path / "reference.safetensors"
    made = subprocess.run(
        [sys.executable, str(script), "--make-reference", "--reference", str(reference)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    assert reference.stat().st_size < 7_000_000  # 16 faces in uint16 steps
    export = msg.export_torch(tmp_path / "export", "float16")
    bare, env = bare_gpu_python
    args = ["--device", "cpu", "--batches", "2", "--faces", "2", "--compile-batches", "--check-faces", "2"]
    args += ["--export", str(export), "--reference", str(reference), "--out", str(tmp_path / "out")]
    ran = subprocess.run([*bare, str(script), *args], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "generator_gpu.json").read_text())
    checks = results["checks"]
    assert checks["export_stored_as"] == "float16" and checks["native_vs_graph_max_abs"] < 1e-4
    assert 1 / 255 < checks["native_fp32_max_abs_error_vs_openvino"] < 4 / 255  # the float16 weights
    rows = {(r["variant"], r["dtype"]): r for r in results["rows"]}
    fp32, bf16 = rows[("eager", "float32")], rows[("eager", "bfloat16")]
    assert fp32["max_abs_error_vs_fp32"] < 1e-4 and fp32["faces_per_s"] > 0
    assert bf16["max_abs_error_vs_fp32"] > 100 * fp32["max_abs_error_vs_fp32"]
