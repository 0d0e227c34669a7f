"""Family name -> (config dataclass, Task class). An explicit dict, imported lazily so that
``musgen --help`` does not import torch models it will not use."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from musgen.errors import MusgenError

# name -> (module, config class, task class)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "lstm": ("musgen.models.lstm", "LSTMConfig", "LSTMTask"),
    "transformer": ("musgen.models.transformer", "TransformerConfig", "TransformerTask"),
    "musicvae": ("musgen.models.musicvae", "MusicVAEConfig", "MusicVAETask"),
    "musegan": ("musgen.models.musegan", "MuseGANConfig", "MuseGANTask"),
    "vqvae": ("musgen.models.vqvae", "VQVAEConfig", "VQVAETask"),
    "prior": ("musgen.models.prior", "PriorConfig", "PriorTask"),
}


@dataclass(frozen=True)
class FamilySpec:
    name: str
    config_cls: type
    task_cls: type


def get_family(name: str) -> FamilySpec:
    if name not in FAMILIES:
        raise MusgenError(f"unknown family {name!r} (available: {', '.join(sorted(FAMILIES))})")
    module_name, config_name, task_name = FAMILIES[name]
    module: Any = importlib.import_module(module_name)
    return FamilySpec(name, getattr(module, config_name), getattr(module, task_name))
