"""Every shipped checkpoint loads and samples exactly what it sampled when the reference files were
written (scripts/reference_samples.py): refactors may move code, never change what a model writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "tests" / "data" / "reference_samples"


def _script():
    spec = importlib.util.spec_from_file_location(
        "reference_samples", ROOT / "scripts" / "reference_samples.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = json.loads((STORED / "samples.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_checkpoint_samples_what_it_sampled_before(name: str) -> None:
    check_reference_sample(name, "cpu")


def check_reference_sample(name: str, device: str) -> None:
    """Loads shipped checkpoint ``name`` on ``device`` and compares its samples with the stored ones."""
    script = _script()
    assert REFERENCE[name]["request"] == script.REQUESTS[name]
    import musgen

    generator = musgen.load(ROOT / "checkpoints" / name, device=device)
    if name == "vqvae":
        got = generator.reconstruct_audio(script.test_tone(generator.sample_rate))
        np.testing.assert_array_equal(got.astype(np.float32), np.load(STORED / REFERENCE[name]["file"]))
        return
    kwargs = dict(REFERENCE[name]["request"])
    outputs = generator.generate(kwargs.pop("num_samples"), **kwargs)
    if "file" in REFERENCE[name]:
        np.testing.assert_array_equal(
            np.stack(outputs).astype(np.float32), np.load(STORED / REFERENCE[name]["file"])
        )
    else:
        assert [script.notes(score) for score in outputs] == REFERENCE[name]["notes"]
        assert all(REFERENCE[name]["notes"]), "every reference sample has notes"
