"""The portable checkpoint format: atomic writes, exact weights, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from musgen import checkpoint
from musgen.errors import CheckpointError


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied weights must survive safetensors
    return model


def test_save_load_round_trip_and_run_dir_resolution(tmp_path):
    model = _model()
    for step in (10, 20):
        checkpoint.save_portable(
            tmp_path / "run" / "checkpoints" / f"step_{step:07d}",
            family="lstm",
            config_yaml="family: lstm\n",
            models={"model": model},
            step=step,
            metrics={"valid_nll": 1.5},
        )
    ckpt = checkpoint.load_portable(tmp_path / "run")  # a RUN_DIR resolves to its latest checkpoint
    assert ckpt.meta["step"] == 20 and ckpt.family == "lstm" and ckpt.config == {"family": "lstm"}
    fresh = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    fresh[1].weight = fresh[0].weight
    ckpt.load_weights("model", fresh)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_weights_of_another_shape_keep_their_initialization_only_when_asked(tmp_path):
    """skip_reshaped (train.init_from): a resized layer starts fresh, the rest loads; without it a
    shape mismatch is a clear error."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 6))
    checkpoint.save_portable(
        tmp_path / "ckpt", family="vqvae", config_yaml="family: vqvae\n", models={"model": model}, step=1
    )
    ckpt = checkpoint.load_portable(tmp_path / "ckpt")
    resized = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 8))  # a new head
    fresh_head = resized[1].weight.clone()
    with pytest.raises(CheckpointError, match="do not fit"):
        ckpt.load_weights("model", resized, allow_missing=True)
    missing = ckpt.load_weights("model", resized, allow_missing=True, skip_reshaped=True)
    assert sorted(missing) == ["1.bias", "1.weight"]
    assert torch.equal(resized[0].weight, model[0].weight) and torch.equal(resized[1].weight, fresh_head)
    checkpoint.save_portable(
        tmp_path / "tied", family="lstm", config_yaml="family: lstm\n", models={"model": _model()}, step=1
    )
    fresh = _model()  # tied weights, stored once: nothing reported missing
    assert checkpoint.load_portable(tmp_path / "tied").load_weights("model", fresh, skip_reshaped=True) == []


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "ckpt"
    checkpoint.save_portable(
        target, family="lstm", config_yaml="family: lstm\n", models={"model": _model()}, step=1
    )

    def broken(tmp):
        (tmp / "musgen.json").write_text("{}")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_directory(target, broken)
    assert checkpoint.load_portable(target).meta["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load_portable(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither"):
        checkpoint.load_portable(tmp_path / "empty")
    target = checkpoint.save_portable(
        tmp_path / "c", family="lstm", config_yaml="{}", models={"model": _model()}, step=1
    )
    meta = json.loads((target / "musgen.json").read_text())
    (target / "musgen.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        checkpoint.load_portable(target)
    with pytest.raises(CheckpointError, match="do not fit"):
        checkpoint.PortableCheckpoint(target, meta, {}).load_weights("model", torch.nn.Linear(3, 3))


def test_pack_stores_float16_that_loads_back_close_and_keeps_what_float16_cannot_hold(tmp_path):
    model = _model()
    tiny = torch.nn.Linear(3, 3)
    with torch.no_grad():
        tiny.weight.fill_(1e-9)  # underflows to zero in float16: must stay float32
    src = checkpoint.save_portable(
        tmp_path / "run" / "checkpoints" / "step_0000005",
        family="lstm",
        config_yaml="family: lstm\n",
        models={"model": model, "tiny": tiny},
        step=5,
    )
    checkpoint.save_portable(
        src / "inner", family="vqvae", config_yaml="{}", models={"model": _model()}, step=1
    )
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    packed = checkpoint.pack_checkpoint(
        tmp_path / "run", tmp_path / "packed", metrics_file=tmp_path / "run" / "metrics.jsonl"
    )
    from safetensors import safe_open

    with safe_open(str(packed / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}  # noqa: SIM118
    with safe_open(str(packed / "tiny.safetensors"), framework="pt") as handle:
        assert handle.get_tensor("weight").dtype == torch.float32
    with safe_open(str(packed / "inner" / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}  # noqa: SIM118
    size = sum(p.stat().st_size for p in (packed).glob("*.safetensors"))
    assert size < sum(p.stat().st_size for p in src.glob("*.safetensors"))

    ckpt = checkpoint.load_portable(packed)
    assert ckpt.meta["step"] == 5 and "packed_from" in ckpt.meta
    assert (packed / "metrics.jsonl").read_text().startswith('{"step": 5')
    fresh = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    fresh[1].weight = fresh[0].weight
    ckpt.load_weights("model", fresh)  # float16 on disk, float32 in the model
    assert fresh[0].weight.dtype == torch.float32 and fresh[1].weight is fresh[0].weight
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
        assert not torch.equal(a, b) or a.abs().max() == 0  # really rounded, not copied
