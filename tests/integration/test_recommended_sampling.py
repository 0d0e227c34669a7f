"""A checkpoint's recommended sampling settings round-trip through musgen.json and are what
`musgen sample` and the API use unless told otherwise (issue 17)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import musgen
from musgen.checkpoint import resolve_checkpoint, set_sampling_defaults
from musgen.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]


def test_recommended_sampling_is_stored_used_and_overridable(quick_transformer_run, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint(quick_transformer_run.run_dir), ckpt)
    plain = musgen.load(ckpt)
    assert plain.recommended_sampling == {}
    assert plain.sampling_settings() == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}

    set_sampling_defaults(ckpt, {"temperature": 0.5, "top_p": 0.9}, {"criterion": "test"})
    meta = json.loads((ckpt / "musgen.json").read_text())
    assert (
        meta["sampling"] == {"temperature": 0.5, "top_p": 0.9}
        and meta["sampling_chosen_by"]["criterion"] == "test"
    )
    tuned = musgen.load(ckpt)
    assert tuned.recommended_sampling == {"temperature": 0.5, "top_p": 0.9}
    assert tuned.sampling_settings(top_p=1.0) == {"temperature": 0.5, "top_k": 0, "top_p": 1.0}

    def ids(generator, **kw):
        return [
            s.tracks[0].notes.numpy()["pitch"].tolist() if s.tracks else []
            for s in generator.generate(3, length=48, seed=3, **kw)
        ]

    recommended = ids(tuned)
    assert recommended == ids(plain, temperature=0.5, top_p=0.9)  # the recommendation is what is used
    assert ids(tuned, temperature=1.0, top_p=1.0) == ids(plain) != recommended  # flags override it

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "musgen.cli",
            "sample",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "s"),
            "--length",
            "32",
            "--seed",
            "0",
            "--top-p",
            "0.95",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "temperature 0.5 (recommended by the checkpoint)" in proc.stderr
    assert "top-p 0.95 (given)" in proc.stderr and "top-k 0 (default)" in proc.stderr

    with pytest.raises(CheckpointError, match="unknown sampling settings"):
        set_sampling_defaults(ckpt, {"temprature": 0.5})
