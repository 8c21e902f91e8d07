"""The compact checkpoint a bounded slot carries: small files, the same patterns, a run that goes on."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from test_stream_training import TINY

from lsi_ros.training.compact import (
    SHARD_LIMIT,
    best_tensors,
    checkpoint_sizes,
    compact_tensors,
    expand_compact,
    load_shards,
    moment_ratio_bound,
    one_step_state,
    optimizer_tensors,
    pattern_weights,
    quantise_pattern_weights,
    save_shards,
)
from lsi_ros.training.seeds import STREAM_SEED_START
from lsi_ros.training.stream import StreamTrainer


def test_pattern_codes_show_the_same_bits_and_keep_stuck_pixels_stuck():
    weight = torch.cat([torch.rand(4, 1000) * 1.4 - 0.2, 0.5 + (torch.rand(4, 1000) - 0.5) * 1e-3])
    code = quantise_pattern_weights(weight)
    assert code.dtype == torch.uint8
    restored = pattern_weights(code)
    assert torch.equal(restored.clamp(0, 1).round().bool(), weight.clamp(0, 1).round().bool())
    # beyond [0, 1] the clamp passes no gradient: such pixels come back beyond it, on the same side
    assert torch.equal(restored < 0, weight <= 0) and torch.equal(restored > 1, weight >= 1)
    inside = (weight > 1 / 255) & (weight < 254 / 255)
    assert (restored - weight)[inside].abs().max() <= 1 / 255 + 1e-6
    far = inside & ((weight - 0.5).abs() > 1 / 255)  # away from the threshold: plain rounding
    assert (restored - weight)[far].abs().max() <= 0.5 / 255 + 1e-6


def test_shards_stay_under_their_limit_join_again_and_replace_older_ones(tmp_path):
    limit = 256 * 1024
    tensors = {
        "big": torch.arange(300 * 512, dtype=torch.float32).reshape(300, 512),  # 600 KiB: split by rows
        "small": torch.ones(3, dtype=torch.bfloat16),
        "count": torch.tensor(7),
    }
    (tmp_path / "state-9.safetensors").write_bytes(b"old")
    paths = save_shards(tensors, tmp_path, "state", limit=limit)
    assert len(paths) >= 3 and all(p.stat().st_size <= limit for p in paths)
    assert not (tmp_path / "state-9.safetensors").exists()
    loaded = load_shards(tmp_path, "state", len(paths))
    assert loaded.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value) and loaded[key].dtype == value.dtype, key
    with pytest.raises(FileNotFoundError, match="has 9 files"):
        load_shards(tmp_path, "state", 9)
    paths[0].write_bytes(paths[0].read_bytes()[:1000])  # a copy cut short
    with pytest.raises(ValueError, match="not a readable checkpoint file"):
        load_shards(tmp_path, "state", len(paths))
    with pytest.raises(ValueError, match="rows of"):
        save_shards({"wide": torch.zeros(2, 300_000)}, tmp_path, "wide", limit=limit)


@pytest.mark.parametrize(
    ("num_measurements", "num_ws", "offset_rank"), [(128, 1, 0), (256, 1, 0), (128, 23, 64)]
)
def test_a_full_size_checkpoint_fits_three_files_of_15_mib(num_measurements, num_ws, offset_rank):
    sizes = checkpoint_sizes(num_measurements, num_ws, offset_rank)
    for files in (sizes["best_is_current"], sizes["older_best"]):
        assert max(files) <= SHARD_LIMIT and len(files) <= 3
        assert sum(files) < sizes["full"] / 4
    assert sum(sizes["best_is_current"]) < sum(sizes["older_best"])


def test_an_older_best_checkpoint_comes_back_as_int8_rows_with_its_bits():
    weights, optimizer, pattern_weight = one_step_state(8, resolution=16, width=32)
    best = {k: v.detach().clone() + 0.01 for k, v in weights.items()}  # not the current state
    restored = expand_compact(compact_tensors(weights, optimizer, pattern_weight, best, False), (0.9, 0.999))
    assert torch.equal(restored["best.patterns.bits"], best_tensors(best)["best.patterns.bits"])
    for key, value in best.items():
        if key.startswith("encoder.") and value.dim() == 2:  # int8 rows: half a step of the row's peak
            step = value.abs().amax(1, keepdim=True) / 127
            assert ((restored[f"best.{key}"] - value).abs() <= step / 2 + 1e-7).all(), key
        elif key.startswith("encoder."):
            assert torch.equal(restored[f"best.{key}"], value), key
    current = expand_compact(compact_tensors(weights, optimizer, pattern_weight, weights, True), (0.9, 0.999))
    assert torch.equal(current["best.encoder.net.0.bias"], weights["encoder.net.0.bias"])


def adam_direction(moments: dict, key: str) -> torch.Tensor:
    """AdamW's step per unit learning rate, m / (sqrt(v) + eps), from a parameter's stored moments."""
    return moments[key] / (moments[f"{key}_sq"].sqrt() + 1e-8)


def test_a_run_goes_on_from_a_compact_checkpoint_with_its_patterns_encoder_and_seeds(tmp_path):
    config = replace(TINY, pattern_lr=0.05)  # patterns that move, so their codes are tested
    first = StreamTrainer(config, tmp_path / "first", compact=True)
    first.fit(max_steps=5)
    saved = {k: v.clone() for k, v in first._weights().items()}
    moments = optimizer_tensors(first.optimizer)
    state = json.loads((tmp_path / "first" / "state.json").read_text())
    assert state["checkpoint"] == {"form": "compact", "files": 1}
    assert not (tmp_path / "first" / "model.safetensors").exists()

    second = StreamTrainer(config, tmp_path / "second", resume_from=tmp_path / "first", compact=True)
    assert (second.step, second.faces_seen, second.seed_cursor) == (5, 40, STREAM_SEED_START + 40)
    assert torch.equal(second.rng.get_state(), first.rng.get_state())
    resumed = second._weights()
    for key, value in saved.items():
        if key == "patterns.weight":
            assert torch.equal(second.patterns.binary(), first.patterns.binary())
            assert (resumed[key] - value.clamp(0, 1)).abs().max() <= 1 / 255 + 1e-6
        elif value.dim() == 2:  # weight matrices in float16
            assert torch.equal(resumed[key], value.half().float()), key
        else:
            assert torch.equal(resumed[key], value), key
    resumed_moments = optimizer_tensors(second.optimizer)
    pattern_index = len(list(second.encoder.parameters()))
    assert not any(k.startswith(f"optimizer.{pattern_index}.") for k in resumed_moments)
    assert resumed_moments.keys() == {k for k in moments if not k.startswith(f"optimizer.{pattern_index}.")}
    for key in [k for k in resumed_moments if k.endswith(".exp_avg")]:
        step, resumed_step = adam_direction(moments, key), adam_direction(resumed_moments, key)
        assert resumed_step.abs().max() <= moment_ratio_bound((0.9, 0.999)) + 1e-4, key
        assert (resumed_step - step).norm() <= 0.1 * step.norm(), key
    # the best checkpoint: bit-packed patterns, encoder matrices in float16 as the fp16 export keeps them
    exported, reloaded = first.exported_model(), second.exported_model()
    assert exported.pattern_set.pattern_set_id == reloaded.pattern_set.pattern_set_id

    second.fit()
    assert (second.step, second.faces_seen) == (config.steps, config.steps * config.batch_size)
    full = StreamTrainer(config, tmp_path / "full", resume_from=tmp_path / "first")  # compact -> full form
    full.fit()
    assert {p.name for p in (tmp_path / "full").glob("*.safetensors")} == {
        "model.safetensors",
        "optimizer.safetensors",
    }
    assert load_file(tmp_path / "full" / "model.safetensors")["patterns.weight"].dtype == torch.float32
