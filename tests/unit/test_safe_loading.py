"""Loading never executes code: an audit of every load call in the library, and planted pickles
(whose unpickling would create a marker file) where data arrays and caches are expected.

The checkpoint and resume paths, which need a trained run, are in
tests/integration/test_malicious_checkpoints.py."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from plants import plant_pickle

from musgen.data.dataset import load_array
from musgen.data.view_cache import read_cache
from musgen.errors import MusgenError
from musgen.training.safe_state import check_state_files

PACKAGE = Path(__file__).resolve().parents[2] / "musgen"


def test_the_plant_is_live(tmp_path):
    """The planted files do run code when loaded the unsafe way: the tests below can fail."""
    for how, load in [
        ("pickle", lambda p: pickle.loads(p.read_bytes())),
        ("torch", lambda p: torch.load(p, weights_only=False)),
        ("npy", lambda p: np.load(p, allow_pickle=True)[0]),
        ("npz", lambda p: np.load(p, allow_pickle=True)["events"][0]),
    ]:
        marker = tmp_path / f"ran-{how}"
        load(plant_pickle(tmp_path / f"x.{how}", marker, how))
        assert marker.exists(), how


@pytest.mark.parametrize("how", ["pickle", "torch", "npy", "npz"])
def test_data_arrays_refuse_planted_pickles(tmp_path, how):
    marker = tmp_path / "ran"
    path = plant_pickle(tmp_path / "train.tokens.npy", marker, how)
    for mmap in (False, True):
        with pytest.raises(MusgenError, match="is not a plain array file.*rebuild the data set"):
            load_array(path, mmap=mmap)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["pickle", "torch", "npy", "npz"])
def test_view_caches_ignore_planted_pickles(tmp_path, how, caplog):
    marker = tmp_path / "ran"
    path = plant_pickle(tmp_path / "melodies" / "train-0123.npz", marker, how)
    assert read_cache(path, "events", "offsets") is None  # the caller builds the view again
    assert "ignoring the cache" in caplog.text and not marker.exists()
    good = tmp_path / "good.npz"
    np.savez(good, events=np.arange(3), offsets=np.array([0, 3]))
    events, offsets = read_cache(good, "events", "offsets")
    assert events.tolist() == [0, 1, 2] and offsets.tolist() == [0, 3]


@pytest.mark.parametrize("how", ["pickle", "torch"])
@pytest.mark.parametrize(
    "name", ["optimizer.bin", "random_states_0.pkl", "scheduler.bin", "pytorch_model.bin"]
)
def test_training_state_files_are_checked_weights_only(tmp_path, how, name):
    marker = tmp_path / "ran"
    torch.save({"state": {}, "param_groups": []}, tmp_path / "optimizer.bin")  # a harmless neighbour
    plant_pickle(tmp_path / name, marker, how)
    with pytest.raises(MusgenError, match=f"{name} is not a plain tensor state file"):
        check_state_files(tmp_path)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            yield f"{name}.{node.func.attr}", {k.arg: k.value for k in node.keywords}, node.lineno


def _unsafe_loads(tree: ast.AST, where: str, file_name: str) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("pickle", "dill", "marshal", "shelve", "joblib") for n in names):
                problems.append(f"{where}:{node.lineno} imports an unpickler")
    for call, kw, line in _calls(tree):

        def flag(key: str, want: bool, kw=kw) -> bool:
            return isinstance(kw.get(key), ast.Constant) and kw[key].value is want

        if call == "np.load" and not flag("allow_pickle", False):
            problems.append(f"{where}:{line} np.load without allow_pickle=False")
        elif call == "torch.load" and not flag("weights_only", True):
            problems.append(f"{where}:{line} torch.load without weights_only=True")
        elif call in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
            problems.append(f"{where}:{line} {call} (use yaml.safe_load)")
        elif call.endswith(".load_state") and file_name != "safe_state.py":
            problems.append(f"{where}:{line} {call} outside musgen/training/safe_state.py")
    return problems


def test_the_audit_catches_unsafe_loads():
    bad = "import pickle\nnp.load(p)\nnp.load(p, allow_pickle=True)\ntorch.load(p)\nyaml.load(s)\nacc.load_state(d)\n"
    assert len(_unsafe_loads(ast.parse(bad), "x.py", "x.py")) == 6
    good = "np.load(p, allow_pickle=False)\ntorch.load(p, weights_only=True)\nyaml.safe_load(s)\n"
    assert _unsafe_loads(ast.parse(good), "x.py", "x.py") == []


def test_every_load_call_in_the_library_is_safe():
    """np.load with allow_pickle=False, torch.load with weights_only=True, no pickle/marshal/unsafe
    YAML at all, and Accelerate's load_state only behind the weights-only guard of safe_state."""
    problems = []
    for file in sorted(PACKAGE.rglob("*.py")):
        where = str(file.relative_to(PACKAGE.parent))
        problems += _unsafe_loads(ast.parse(file.read_text(), where), where, file.name)
    assert not problems, "\n".join(problems)
