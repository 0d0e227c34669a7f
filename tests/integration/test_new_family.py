"""Adding a family is one module and one registry line: the test-only "bigram" family
(tests/toy_family.py) trains, samples and evaluates through the command line, and musgen's own
packages never name it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import symusic

from musgen import registry

REPO = Path(__file__).resolve().parents[2]


def test_a_new_family_trains_samples_and_evaluates_through_the_cli(bach_data, tmp_path, monkeypatch):
    from musgen.cli import main

    monkeypatch.syspath_prepend(str(REPO / "tests"))
    monkeypatch.setitem(registry.FAMILIES, "bigram", "toy_family")  # the one registry line
    preset = tmp_path / "bigram.yaml"
    preset.write_text(
        "family: bigram\ndata:\n  seq_len: 64\ntrain:\n  batch_size: 8\n  lr: 0.01\n  warmup_steps: 5\n"
    )
    run, samples, report = tmp_path / "run", tmp_path / "samples", tmp_path / "eval.json"
    train = ["train", "bigram", "--data", str(bach_data), "--out", str(run), "--config", str(preset)]
    assert (
        main(["-q", *train, "--no-progress", "--set", "train.steps=40", "--set", "train.eval_every=20"]) == 0
    )
    sample = [
        "sample",
        "--checkpoint",
        str(run),
        "--out",
        str(samples),
        "--num-samples",
        "2",
        "--length",
        "96",
    ]
    assert main(["-q", *sample, "--seed", "0"]) == 0
    files = sorted(samples.glob("sample_*.mid"))
    assert len(files) == 2 and all(symusic.Score(str(f)).note_num() > 0 for f in files)
    evaluate = ["eval", "--checkpoint", str(run), "--data", str(bach_data), "--out", str(report)]
    assert main(["-q", *evaluate, "--num-samples", "4", "--excerpt-quarters", "8"]) == 0
    result = json.loads(report.read_text())
    assert result["family"] == "bigram"
    vocab = json.loads((bach_data / "manifest.json").read_text())["vocab_size"]
    assert result["likelihood"]["nll"] < 0.8 * math.log(vocab)  # it learned something in 40 steps
    assert result["statistics"]["generated_pieces"] == 4


def test_musgen_code_names_families_only_in_their_modules_and_the_registry():
    """No family name as a string literal (a dispatch on it) outside musgen/models and registry.py."""
    names = [*registry.FAMILIES, "bigram"]
    for path in (REPO / "musgen").rglob("*.py"):
        if path.parent.name == "models" or path.name == "registry.py":
            continue
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path, name)


def test_import_musgen_imports_no_model_code():
    code = "import sys, musgen; print(sorted(m for m in sys.modules if m.startswith(('musgen.', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not any(m.startswith(("musgen.models", "musgen.training", "torch")) for m in eval(out)), out
