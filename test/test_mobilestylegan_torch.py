"""The native torch MobileStyleGAN against OpenVINO on the shipped IR: same faces, W+ rows in the same
order, a true gradient, the same weights from the IR and from the torch export."""

import numpy as np
import pytest
import torch

ov = pytest.importorskip("openvino")

from lsi_ros.models import mobilestylegan_ir  # noqa: E402
from lsi_ros.models.generators import MobileStyleGAN  # noqa: E402
from lsi_ros.models.mobilestylegan_torch import MappingNetwork, SynthesisNetwork  # noqa: E402
from lsi_ros.models.ov_torch import OpenVINOModule  # noqa: E402
from lsi_ros.models.torch_generator import MAPPING_FILE, SYNTHESIS_FILE, load_graph  # noqa: E402

# Native vs OpenVINO on [0, 1] RGB: measured max abs 2e-5 (docs/generator.md); one grey level is 1/255.
MAX_ERROR = 1e-4


@pytest.fixture(scope="module", params=["exact", "fast"])
def pair(request):
    """The same exit through OpenVINO and through the native network, on the CPU."""
    openvino = MobileStyleGAN(request.param, batch_size=4)
    native = MobileStyleGAN(request.param, batch_size=4, backend="torch")
    return openvino, native


def test_native_faces_equal_openvino_for_w_and_for_mixed_w_plus(pair):
    openvino, native = pair
    assert (openvino.backend, native.backend) == ("openvino", "torch")
    w = np.concatenate(
        [
            openvino.sample_latents([7, 8], truncation_psi=0.7),
            openvino.sample_latents([9], truncation_psi=1.0),
        ]
    )
    np.testing.assert_array_equal(native.sample_latents([7, 8], truncation_psi=0.7), w[:2])
    assert np.abs(native.synthesize(w) - openvino.synthesize(w)).max() < MAX_ERROR
    # Every layer a different face's w: a style read from the wrong W+ row would show.
    rows = openvino.sample_latents(list(range(100, 100 + openvino.num_ws)), truncation_psi=0.8)
    w_plus = np.stack([rows, np.roll(rows, 5, axis=0)])
    reference = openvino.synthesize(w_plus)
    assert np.abs(native.synthesize(w_plus) - reference).max() < MAX_ERROR
    assert np.abs(reference[0] - reference[1]).mean() > 0.01


def test_native_synthesis_has_the_true_gradient():
    """Directional derivative of a fixed linear read-out of the image against a central difference,
    in float64 (the fast exit, to keep it quick)."""
    core = ov.Core()
    graph = OpenVINOModule.from_openvino(mobilestylegan_ir.build_synthesis_256(core, "exact")).graph()
    net = SynthesisNetwork(graph, "fast").double()
    assert not any(b.requires_grad for b in net.buffers())
    generator = torch.Generator().manual_seed(0)
    w_plus = (0.5 * torch.randn(1, 23, 512, generator=generator, dtype=torch.float64)).requires_grad_(True)
    readout = torch.randn(1, 3, 256, 256, generator=generator, dtype=torch.float64)
    direction = torch.randn(1, 23, 512, generator=generator, dtype=torch.float64)
    (net(w_plus) * readout).sum().backward()
    analytic = float((w_plus.grad * direction).sum())
    eps = 1e-6  # small: a larger step crosses leaky-ReLU kinks
    with torch.no_grad():
        ahead = (net(w_plus + eps * direction) * readout).sum()
        behind = (net(w_plus - eps * direction) * readout).sum()
    numeric = float((ahead - behind) / (2 * eps))
    assert torch.isfinite(w_plus.grad).all() and abs(analytic) > 1e-3
    assert abs(analytic - numeric) < 1e-3 * abs(numeric)


def test_native_weights_are_the_same_from_the_ir_and_from_the_torch_export(tmp_path):
    generator = MobileStyleGAN()
    folder = generator.export_torch(tmp_path / "export")
    from_ir = generator.torch_synthesis().net.state_dict()
    from_export = SynthesisNetwork(load_graph(folder, SYNTHESIS_FILE)).state_dict()
    assert from_ir.keys() == from_export.keys()
    for key, value in from_ir.items():
        assert torch.equal(value, from_export[key]), key
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 512)).astype(np.float32))
    with torch.no_grad():
        w = MappingNetwork(load_graph(folder, MAPPING_FILE))(z).numpy()
    np.testing.assert_allclose(w, generator._map(z.numpy()), atol=1e-4)


def test_backend_choice_per_device():
    with pytest.raises(ValueError, match="backend"):
        MobileStyleGAN(device="cuda", backend="openvino")
    with pytest.raises(ValueError, match="backend"):
        MobileStyleGAN(backend="tensorrt")
