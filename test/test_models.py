"""Model files: round trip, refusal of corrupt or inconsistent files, lookup by name."""

import json
import os

import numpy as np
import pytest
import torch

from lsi_ros.models.checkpoint import LsiModel, ModelFileError, load_model, save_model
from lsi_ros.models.encoder import MeasurementEncoder
from lsi_ros.models.registry import find_model
from lsi_ros.optics.patterns import bernoulli_patterns, learned_patterns


def make_model(num_patterns=16, resolution=32, seed=0):
    torch.manual_seed(seed)
    encoder = MeasurementEncoder(num_patterns, latent_dim=8, width=32, depth=1).eval()
    encoder.latent_mean.copy_(torch.linspace(-1, 1, 8))
    encoder.latent_std.copy_(torch.linspace(0.5, 2, 8))
    dense = bernoulli_patterns(num_patterns, resolution, seed=seed).dense().astype(bool)
    return LsiModel("test-m16", learned_patterns(dense, model_id="test-m16"), encoder, {"generator_id": "x"})


def test_round_trip_keeps_patterns_and_encoder(tmp_path):
    model = make_model()
    path = save_model(model, tmp_path / "m16.safetensors")
    loaded = load_model(path)
    assert loaded.pattern_set.pattern_set_id == model.pattern_set.pattern_set_id
    assert loaded.info["M"] == 16 and loaded.info["generator_id"] == "x"
    y = torch.randn(4, 16)
    with torch.no_grad():
        # Weights are stored in fp16: the loaded encoder agrees to fp16 precision.
        np.testing.assert_allclose(loaded.encoder(y), model.encoder(y), rtol=2e-2, atol=2e-2)
    assert (tmp_path / "m16.json").is_file()


def test_saving_what_a_file_already_holds_leaves_it_untouched(tmp_path):
    """A rerun that produces the same model or boundaries does not rewrite the file (safetensors'
    metadata order is not stable, so a rewrite would change its bytes); a change is written."""
    from dataclasses import replace

    from lsi_ros.models.attributes import AttributeBoundaries, load_boundaries, save_boundaries

    model = make_model()
    boundaries = AttributeBoundaries(
        names=("male",), weight=np.ones((1, 8), np.float32), bias=np.zeros(1, np.float32), generator_id="x"
    )
    paths = [save_model(model, tmp_path / "m16.safetensors")]
    paths.append(save_boundaries(boundaries, tmp_path / "a.safetensors"))
    before = [path.read_bytes() for path in paths]
    for path in paths:
        os.utime(path, ns=(0, 0))  # a rewrite would set the mtime to now
    assert save_model(model, paths[0]) == paths[0] and save_boundaries(boundaries, paths[1]) == paths[1]
    assert [path.stat().st_mtime_ns for path in paths] == [0, 0]
    assert [path.read_bytes() for path in paths] == before
    save_boundaries(replace(boundaries, bias=np.ones(1, np.float32)), paths[1])
    assert load_boundaries(paths[1]).bias.tolist() == [1.0]
    with torch.no_grad():
        model.encoder.latent_mean.add_(1.0)
    save_model(model, paths[0])
    assert paths[0].read_bytes() != before[0]
    np.testing.assert_allclose(load_model(paths[0]).encoder.latent_mean, model.encoder.latent_mean)


def test_attribute_reader_reads_a_models_codes_by_its_own_boundaries_only(tmp_path):
    """Estimate boundaries read the codes of the model whose estimates fitted them (by model id, which
    the file keeps); a fine-tune with the same pattern set is read by the general ones; a W+ code is read
    by its layers' mean; boundaries that name no model cannot be estimate boundaries."""
    from dataclasses import replace

    from lsi_ros.models.attributes import (
        AttributeBoundaries,
        AttributeReader,
        BoundariesError,
        load_boundaries,
        save_boundaries,
    )

    general = AttributeBoundaries(("male",), np.ones((1, 4), np.float32), np.zeros(1, np.float32), "g")
    fitted = replace(general, bias=np.ones(1, np.float32), pattern_set_id="sha256:ab", model_id="m128")
    fitted = load_boundaries(save_boundaries(fitted, tmp_path / "fitted.safetensors"))
    assert (fitted.model_id, fitted.pattern_set_id) == ("m128", "sha256:ab")
    reader = AttributeReader(general)
    reader.add_estimate_boundaries(fitted)
    assert reader.boundaries_for("m128") is fitted
    assert reader.boundaries_for("m128-real") is general and reader.boundaries_for("m64") is general
    with pytest.raises(BoundariesError, match="name no model"):
        reader.add_estimate_boundaries(general)
    codes = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 24  # two W+ codes of 3 layers
    np.testing.assert_allclose(fitted.read(codes), fitted.probabilities(codes.mean(axis=1)))
    np.testing.assert_allclose(fitted.read(codes[:, :1]), fitted.probabilities(codes[:, 0]))
    assert AttributeReader().boundaries_for("m128") is None


def test_encoder_ignores_global_gain_and_offset():
    encoder = make_model().encoder
    y = torch.rand(3, 16) * 1000
    with torch.no_grad():
        np.testing.assert_allclose(encoder(3.7 * y + 250.0), encoder(y), rtol=1e-3, atol=1e-3)


def test_corrupt_truncated_missing_and_tampered_files_are_refused(tmp_path):
    path = save_model(make_model(), tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "none.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "garbage.safetensors")
    data = path.read_bytes()
    (tmp_path / "short.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "short.safetensors")
    # Flip one pattern bit inside the tensor data: the content hash no longer matches the metadata.
    header_size = int.from_bytes(data[:8], "little")
    begin, _ = json.loads(data[8 : 8 + header_size])["patterns.bits"]["data_offsets"]
    tampered = bytearray(data)
    tampered[8 + header_size + begin + 3] ^= 0xFF
    (tmp_path / "tampered.safetensors").write_bytes(bytes(tampered))
    with pytest.raises(ModelFileError, match="hash"):
        load_model(tmp_path / "tampered.safetensors")


def test_each_loader_refuses_the_other_kinds_of_file(tmp_path):
    from lsi_ros.models.attributes import BoundariesError, load_boundaries
    from lsi_ros.models.task import load_task_model

    path = save_model(make_model(), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="format is 'lsi_ros.model', not lsi_ros.task_model"):
        load_task_model(path)
    with pytest.raises(BoundariesError, match="not lsi_ros.attribute_boundaries"):
        load_boundaries(path)
    with pytest.raises(FileNotFoundError, match="task model file not found"):
        load_task_model(tmp_path / "none.safetensors")


def test_find_model_by_name_and_path(tmp_path, monkeypatch):
    path = save_model(make_model(), tmp_path / "mine.safetensors")
    monkeypatch.setenv("LSI_ROS_MODELS", str(tmp_path))
    assert find_model("mine") == path
    assert find_model(str(path)) == path
    with pytest.raises(FileNotFoundError, match="no model named 'absent'"):
        find_model("absent")


def test_patterns_are_binary_forward_and_straight_through_backward():
    from lsi_ros.models.encoder import BinaryPatterns

    patterns = BinaryPatterns(4, 8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        patterns.weight[0, :3] = torch.tensor([-0.2, 0.49, 1.7])
    shown = patterns()
    assert set(shown.unique().tolist()) <= {0.0, 1.0}
    assert shown[0, :3].tolist() == [0.0, 0.0, 1.0]
    upstream = torch.randn_like(shown)
    (shown * upstream).sum().backward()
    inside = (patterns.weight > 0) & (patterns.weight < 1)
    # Identity gradient where the weight is inside [0, 1]; the clamp stops it outside.
    torch.testing.assert_close(patterns.weight.grad[inside], upstream[inside])
    assert torch.all(patterns.weight.grad[~inside] == 0)
    assert torch.equal(patterns.binary(), shown.bool())


def test_an_encoder_of_no_members_is_refused():
    """A model file whose architecture names no members is refused (as ModelFileError by load_model)."""
    from lsi_ros.models.encoder import EncoderEnsemble, build_encoder

    assert isinstance(build_encoder(16, 8, 32, 1, members=3), EncoderEnsemble)
    for members in (0, -1, "2"):
        with pytest.raises(ValueError, match="at least one member"):
            build_encoder(16, 8, 32, 1, members=members)


def test_int8_weights_halve_the_file_and_keep_the_estimates(tmp_path):
    """int8 matrices with one scale per row: about half the bytes of fp16 for a wide encoder, and the
    loaded encoder gives what the in-memory copy of the stored weights (``as_stored``) gives."""
    from lsi_ros.models.checkpoint import as_stored
    from lsi_ros.models.encoder import EncoderEnsemble

    torch.manual_seed(1)
    members = [MeasurementEncoder(16, latent_dim=8, width=256, depth=1).eval() for _ in range(2)]
    model = make_model()
    model.encoder = EncoderEnsemble(members)
    half = save_model(model, tmp_path / "fp16.safetensors")
    small = save_model(model, tmp_path / "int8.safetensors", weight_format="int8")
    assert small.stat().st_size < 0.6 * half.stat().st_size
    loaded = load_model(small)
    assert loaded.info["architecture"]["weights"] == "int8"
    y = torch.randn(32, 16) * 10
    with torch.no_grad():
        exact = model.encoder(y)
        torch.testing.assert_close(loaded.encoder(y), as_stored(model.encoder, "int8")(y))
        error = (loaded.encoder(y) - exact).abs().max() / exact.abs().max()
        assert 0 < error < 0.02
    with pytest.raises(ValueError, match="weight format"):
        save_model(model, tmp_path / "x.safetensors", weight_format="int4")


def test_int8_files_with_missing_or_misfit_row_scales_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = save_model(make_model(), tmp_path / "m.safetensors", weight_format="int8")
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    key = "encoder.net.1.weight"
    assert tensors[key].dtype == torch.int8
    for change, message in (
        (lambda t: t.pop(key + ".row_scale"), "without row scales"),
        (lambda t: t.__setitem__(key + ".row_scale", torch.ones(3)), "does not fit"),
        (lambda t: t.__setitem__(key + ".row_scale", torch.full((32,), float("nan"))), "does not fit"),
        (lambda t: t.__setitem__(key, t[key].float()), "with row scales"),
    ):
        broken = dict(tensors)
        change(broken)
        save_file(broken, str(tmp_path / "bad.safetensors"), metadata=header)
        with pytest.raises(ModelFileError, match=message):
            load_model(tmp_path / "bad.safetensors")


def test_ensemble_members_that_normalise_the_latent_differently_are_refused_on_loading(tmp_path):
    """The constructor sees the default buffers; the file's are checked after they are loaded."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lsi_ros.models.encoder import EncoderEnsemble

    model = make_model()
    second = MeasurementEncoder(16, latent_dim=8, width=32, depth=1)
    second.load_state_dict(model.encoder.state_dict())
    model.encoder = EncoderEnsemble([model.encoder, second])
    path = save_model(model, tmp_path / "pair.safetensors")
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    tensors["encoder.members.1.latent_mean"] = tensors["encoder.members.1.latent_mean"] + 1
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=header)
    with pytest.raises(ModelFileError, match="normalise the latent differently"):
        load_model(tmp_path / "bad.safetensors")


def test_ensemble_without_gradients_runs_members_at_once_and_follows_their_weights():
    """The stacked (inference) path gives the members' mean, and new weights (loaded or trained)
    are used at the next call, not the stack built before."""
    from lsi_ros.models.encoder import EncoderEnsemble

    torch.manual_seed(2)
    ensemble = EncoderEnsemble([MeasurementEncoder(16, latent_dim=8, width=32, depth=2) for _ in range(3)])
    y = torch.randn(5, 16)
    for _ in range(2):
        with torch.inference_mode():
            stacked = ensemble(y)
        with torch.enable_grad():
            looped = torch.stack([m(y) for m in ensemble.members]).mean(0).detach()
        torch.testing.assert_close(stacked, looped, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            ensemble.members[1].net[1].weight.mul_(3.0)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(y[0]), ensemble(y)[0])
        before = ensemble(y)
        ensemble.members[0].load_state_dict(
            MeasurementEncoder(16, latent_dim=8, width=32, depth=2).state_dict()
        )
        assert not torch.allclose(ensemble(y), before)
