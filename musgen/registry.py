"""The one list of model families: name -> the module that defines it.

Each family module (musgen/models/<family>.py) ends with ``FAMILY = FamilySpec(...)``: its config
dataclass, its training Task, its inference Generator and its evaluation hook. The CLI, ``musgen.load``,
``musgen.train`` and ``musgen eval`` reach a family only through ``get_family``; modules are imported on
first use, so ``import musgen`` and ``musgen --help`` import no model code. Adding a family is one
module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from musgen.errors import MusgenError

FAMILIES: dict[str, str] = {
    "lstm": "musgen.models.lstm",
    "transformer": "musgen.models.transformer",
    "musicvae": "musgen.models.musicvae",
    "musegan": "musgen.models.musegan",
    "vqvae": "musgen.models.vqvae",
    "prior": "musgen.models.prior",
}


@dataclass(frozen=True)
class FamilySpec:
    """What a family gives the rest of musgen."""

    name: str
    config_cls: type  # the dataclass tree of its config (musgen.config)
    task_cls: type  # its training Task (musgen.training.task.Task)
    generator_cls: type  # its inference class (musgen.generator.Generator)
    # (generator, data_dir, split, musgen.eval.evaluate.EvalOptions) -> (report sections, samples)
    evaluate: Callable[..., tuple[dict[str, Any], list[Any]]]
    data_kind: str = "midi"  # the kind of data set it trains and is evaluated on: midi | audio
    description: str = ""  # one phrase for model cards ("a Music Transformer (Huang et al. 2018) ...")


def get_family(name: str) -> FamilySpec:
    if name not in FAMILIES:
        raise MusgenError(f"unknown family {name!r} (available: {', '.join(sorted(FAMILIES))})")
    spec = importlib.import_module(FAMILIES[name]).FAMILY
    if spec.name != name:
        raise MusgenError(f"module {FAMILIES[name]} defines family {spec.name!r}, not {name!r}")
    return spec


def families_with(method: str) -> list[str]:
    """Names of the families whose Generator has ``method`` (for error messages that say which
    checkpoints a command needs); imports every family module."""
    return [name for name in FAMILIES if hasattr(get_family(name).generator_cls, method)]
