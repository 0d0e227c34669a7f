"""Malicious files for the safe-loading tests: unpickling any of them creates a marker file, so
"the marker never appears" proves that no loader ran the pickle (tests/unit/test_safe_loading.py
shows the plants are live: the unsafe loaders do create the marker)."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import numpy as np
import torch


class Plant:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears iff code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def plant_pickle(path: Path, marker: Path, how: str = "pickle") -> Path:
    """Write a malicious file at ``path``: a raw pickle, a torch.save zip, or an object-dtype .npy/.npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state": Plant(marker), "weight": [1.0, 2.0]}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload))
    elif how == "torch":
        torch.save(payload, path)
    elif how == "npy":
        with path.open("wb") as f:
            np.save(f, np.array([Plant(marker)], dtype=object), allow_pickle=True)
    elif how == "npz":
        with path.open("wb") as f:
            np.savez(f, **{name: np.array([Plant(marker)], dtype=object) for name in ("events", "offsets")})
    else:
        raise ValueError(how)
    return path
