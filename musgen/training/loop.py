"""The public training function: ``fit`` runs the one ``Trainer`` (musgen.training.trainer).

The names other modules import from here (``FitResult``, ``latest_state``, ``read_metrics``, ...)
stay importable from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musgen.training.run_files import LOOP_FILE, latest_state, read_metrics
from musgen.training.trainer import EpochShuffleSampler, FitResult, Trainer, weights_digest

__all__ = [
    "LOOP_FILE",
    "EpochShuffleSampler",
    "FitResult",
    "Trainer",
    "fit",
    "latest_state",
    "read_metrics",
    "weights_digest",
]


def fit(
    family: str,
    cfg: Any,
    data_dir: Path,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Trains ``family`` with config ``cfg`` on DATA_DIR, writing RUN_DIR; returns the final state."""
    return Trainer(family, cfg, data_dir, run_dir, resume=resume, progress=progress).fit()
