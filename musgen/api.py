"""The Python API: ``musgen.load(CKPT).generate(...)``, ``musgen.train(...)``, ``musgen.data.build(...)``.

``load`` returns the checkpoint family's Generator (musgen.generator and each family's module);
``train`` runs the one Trainer (musgen.training.loop) on the family's Task.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from musgen.config import resolve
from musgen.generator import Generator, load
from musgen.registry import get_family

MusicGenerator = Generator  # the name of the class before each family had its own

__all__ = ["Generator", "MusicGenerator", "load", "train"]


def train(
    family: str,
    data: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """Trains ``family`` on a built data set; returns ``musgen.training.loop.FitResult``.

    With ``resume`` the run's own saved config.yaml is the base (``overrides`` still apply on top,
    e.g. ``train.steps=...`` to train longer)."""
    from musgen.training.loop import fit

    spec = get_family(family)
    run_config = Path(out) / "config.yaml"
    if resume and config is None and run_config.exists():
        config = run_config
    cfg: Any = resolve(spec.config_cls, family, config or None, overrides)
    return fit(family, cfg, Path(data), Path(out), resume=resume, progress=progress)
