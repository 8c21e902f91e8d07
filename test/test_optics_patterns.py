"""Pattern sets: families, bit packing, the safetensors file and its validation."""

import json
import struct

import numpy as np
import pytest

from lsi_ros.optics import (
    PatternSet,
    PatternSetError,
    bernoulli_patterns,
    hadamard_reference_patterns,
    hadamard_split_patterns,
    learned_patterns,
    load_pattern_set,
    save_pattern_set,
)
from lsi_ros.optics.hadamard import walsh_pattern, zigzag_order


def test_bits_round_trip_through_file(tmp_path):
    dense = np.random.default_rng(1).random((7, 12, 10)) < 0.3  # 120 pixels, 15 bytes per pattern
    ps = PatternSet.from_dense(dense, kind="learned", model_id="lsi-m7", meta={"note": "x"})
    loaded = load_pattern_set(save_pattern_set(ps, tmp_path / "set.safetensors"))
    assert np.array_equal(loaded.dense(), dense.astype(np.uint8))
    assert np.array_equal(loaded.bits, ps.bits)
    assert loaded.pattern_set_id == ps.pattern_set_id
    assert (loaded.resolution, loaded.num_patterns, loaded.kind) == ((12, 10), 7, "learned")
    assert (loaded.model_id, loaded.meta) == ("lsi-m7", {"note": "x"})


def test_odd_pixel_count_packs_with_zero_padding():
    dense = np.ones((3, 5, 5), dtype=bool)  # 25 pixels -> 4 bytes, 7 padding bits
    ps = PatternSet.from_dense(dense, kind="bernoulli")
    assert ps.bits.shape == (3, 4)
    assert np.array_equal(ps.matrix(), np.ones((3, 25), dtype=np.float32))
    bad = ps.bits.copy()
    bad[0, -1] |= 1
    with pytest.raises(PatternSetError, match="padding"):
        PatternSet(bits=bad, resolution=(5, 5), kind="bernoulli")


def test_id_depends_on_content_and_resolution():
    a = bernoulli_patterns(4, 16, seed=0)
    assert a.pattern_set_id.startswith("sha256:") and len(a.pattern_set_id) == 7 + 16
    assert bernoulli_patterns(4, 16, seed=0).pattern_set_id == a.pattern_set_id
    assert bernoulli_patterns(4, 16, seed=1).pattern_set_id != a.pattern_set_id
    same_bits = PatternSet(bits=a.bits, resolution=(8, 32), kind="bernoulli")
    assert same_bits.pattern_set_id != a.pattern_set_id


def test_missing_file_raises(tmp_path):
    with pytest.raises(PatternSetError, match="not found"):
        load_pattern_set(tmp_path / "nope.safetensors")


def test_corrupted_file_raises(tmp_path):
    path = save_pattern_set(bernoulli_patterns(3, 16), tmp_path / "s.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PatternSetError):
        load_pattern_set(path)
    path.write_bytes(b"\xff" * 40)
    with pytest.raises(PatternSetError):
        load_pattern_set(path)


def test_flipped_bit_fails_hash(tmp_path):
    path = save_pattern_set(bernoulli_patterns(3, 16), tmp_path / "s.safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # last byte belongs to the bits tensor
    path.write_bytes(bytes(data))
    with pytest.raises(PatternSetError, match="content hash"):
        load_pattern_set(path)


def _rewrite_metadata(path, **changes):
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pattern_set_id": "sha256:0000000000000000"}, "content hash"),
        ({"num_patterns": "4"}, "metadata says 4"),
        ({"resolution": "[16, 17]"}, "does not fit"),
        ({"kind": "random"}, "unknown pattern set kind"),
        ({"format": "other"}, "format"),
    ],
)
def test_inconsistent_metadata_raises(tmp_path, changes, message):
    path = save_pattern_set(bernoulli_patterns(3, 16), tmp_path / "s.safetensors")
    _rewrite_metadata(path, **changes)
    with pytest.raises(PatternSetError, match=message):
        load_pattern_set(path)


def test_pattern_set_error_is_value_error():
    assert issubclass(PatternSetError, ValueError)


def test_learned_binarisation_matches_torch_round():
    import torch

    weights = np.array([[[-0.2, 0.2], [0.5, 0.51]], [[1.3, 0.49], [0.999, 0.0]]], dtype=np.float32)
    ps = learned_patterns(weights, model_id="m")
    expected = torch.round(torch.clamp(torch.from_numpy(weights), 0, 1)).numpy()
    assert np.array_equal(ps.dense(), expected.astype(np.uint8))
    assert ps.kind == "learned" and ps.model_id == "m"


def test_hadamard_split_pairs_are_complementary_walsh_functions():
    ps = hadamard_split_patterns(10, 16)
    dense = ps.dense().astype(int)
    assert ps.kind == "hadamard-split" and ps.num_patterns == 10
    assert np.all(dense[0::2] + dense[1::2] == 1)
    for k, (u, v) in enumerate(ps.meta["coefficients"]):
        assert np.array_equal(dense[2 * k] - dense[2 * k + 1], walsh_pattern(16, u, v))
    assert ps.meta["coefficients"] == zigzag_order(16)[:5].tolist()


def test_hadamard_reference_starts_with_all_on():
    ps = hadamard_reference_patterns(6, 8)
    dense = ps.dense()
    assert dense[0].all()
    for k, (u, v) in enumerate(ps.meta["coefficients"]):
        assert np.array_equal(dense[k], (1 + walsh_pattern(8, u, v)) // 2)


def test_bernoulli_fill_fraction():
    ps = bernoulli_patterns(8, 64, fill=0.25, seed=3)
    n = ps.dense().size
    # binomial: 5 standard errors
    assert abs(ps.dense().mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)
    with pytest.raises(PatternSetError):
        bernoulli_patterns(2, 8, fill=1.5)


def test_non_binary_dense_rejected():
    with pytest.raises(PatternSetError, match="binary"):
        PatternSet.from_dense(np.full((1, 4, 4), 0.7), kind="learned")
