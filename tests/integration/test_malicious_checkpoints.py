"""Planted pickles where a real run keeps its files: a portable checkpoint's weights, the resumable
state under RUN_DIR/state/ (optimizer, RNG), a data set's arrays and its derived caches. Each is
refused with a clear one-line error (or, for a cache, ignored and rebuilt) and the marker file that
its unpickling would create never appears. The plants are shown live in tests/unit/test_safe_loading.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from plants import plant_pickle

import musgen
from musgen.checkpoint import resolve_checkpoint
from musgen.cli import main
from musgen.data.view_cache import read_cache
from musgen.errors import CheckpointError


def _one_line_exit_2(args: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("musgen: error:"), (code, err)
    return err[0]


@pytest.mark.parametrize("how", ["pickle", "torch"])
def test_portable_weights_that_are_a_pickle_are_refused(quick_transformer_run, tmp_path, capsys, how):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint(quick_transformer_run.run_dir), ckpt)
    marker = tmp_path / "ran"
    plant_pickle(ckpt / "model.safetensors", marker, how)
    with pytest.raises(CheckpointError, match="model.safetensors is not a safetensors weights file"):
        musgen.load(ckpt)
    line = _one_line_exit_2(["sample", "--checkpoint", str(ckpt), "--out", str(tmp_path / "out")], capsys)
    assert "not a safetensors weights file" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def _run_copy(run, tmp_path: Path) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    shutil.copytree(run.run_dir, run_dir)
    (state,) = sorted((run_dir / "state").glob("step_*"))
    return run_dir, state


def _resume(run_dir: Path, data: Path, steps: int = 3):
    return musgen.train(
        "transformer",
        data,
        run_dir,
        resume=True,
        progress=False,
        overrides=[f"train.steps={steps}", f"train.save_every={steps}"],
    )


@pytest.mark.parametrize("how", ["pickle", "torch"])
@pytest.mark.parametrize("name", ["optimizer.bin", "random_states_0.pkl"])
def test_resume_refuses_a_planted_state_file(quick_transformer_run, bach_data, tmp_path, capsys, name, how):
    run_dir, state = _run_copy(quick_transformer_run, tmp_path)
    assert (state / name).is_file()  # the file Accelerate wrote there is the one replaced
    marker = tmp_path / "ran"
    plant_pickle(state / name, marker, how)
    with pytest.raises(
        CheckpointError, match=f"cannot resume from .*{name} is not a plain tensor state file"
    ):
        _resume(run_dir, bach_data)
    line = _one_line_exit_2(
        [
            "train",
            "transformer",
            "--data",
            str(bach_data),
            "--out",
            str(run_dir),
            "--resume",
            "--set",
            "train.steps=3",
            "--no-progress",
        ],
        capsys,
    )
    assert name in line and (
        "it would run code" in line or how == "pickle" and "weights-only unpickler" in line
    )
    assert not marker.exists()


def test_an_untouched_state_still_resumes(quick_transformer_run, bach_data, tmp_path):
    """The weights-only guard refuses plants, not Accelerate's own files (RNG states included)."""
    run_dir, _ = _run_copy(quick_transformer_run, tmp_path)
    assert _resume(run_dir, bach_data).step == 3


def test_a_damaged_state_file_is_one_line(quick_transformer_run, bach_data, tmp_path, capsys):
    run_dir, state = _run_copy(quick_transformer_run, tmp_path)
    data = (state / "optimizer.bin").read_bytes()
    (state / "optimizer.bin").write_bytes(data[: len(data) // 2])
    line = _one_line_exit_2(
        [
            "train",
            "transformer",
            "--data",
            str(bach_data),
            "--out",
            str(run_dir),
            "--resume",
            "--no-progress",
        ],
        capsys,
    )
    assert "optimizer.bin is not a plain tensor state file" in line


@pytest.mark.parametrize("file", ["train.tokens.npy", "train.offsets.npy"])
def test_data_arrays_that_are_pickles_are_refused(bach_data, tmp_path, capsys, file):
    data = tmp_path / "data"
    shutil.copytree(bach_data, data)
    marker = tmp_path / "ran"
    plant_pickle(data / file, marker, "npy")
    line = _one_line_exit_2(
        [
            "train",
            "transformer",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--config",
            "tiny/transformer",
            "--no-progress",
        ],
        capsys,
    )
    assert f"{file} is not a plain array file" in line and "rebuild the data set" in line
    assert not marker.exists()


def test_a_planted_melody_cache_is_ignored_and_rebuilt(bach_data, tmp_path, caplog):
    from musgen.data.melody import MelodyConfig
    from musgen.data.melody_data import _cache_path, load_melodies

    data = tmp_path / "data"
    shutil.copytree(bach_data, data)
    cfg = MelodyConfig()
    events, offsets = load_melodies(data, "train", cfg, progress=False)  # builds the cache
    path = _cache_path(data, "train", cfg)
    marker = tmp_path / "ran"
    plant_pickle(path, marker, "npz")
    again, again_offsets = load_melodies(data, "train", cfg, progress=False)
    assert "ignoring the cache" in caplog.text and not marker.exists()
    assert (again == events).all() and (again_offsets == offsets).all()
    clean = read_cache(path, "events", "offsets")  # the plant was overwritten with plain arrays
    assert clean is not None and (clean[0] == events).all()
