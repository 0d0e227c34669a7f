"""Which torch device a loaded model runs on (``--device`` / ``musgen.load(..., device=...)``)."""

from __future__ import annotations

import torch

from musgen.errors import MusgenError

DEVICES = "cpu, cuda, cuda:N, mps or auto"


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """The torch device named ``name``: cpu, cuda, cuda:N, mps, or auto (cuda when available, else
    mps when available, else cpu). A device this machine does not have is a MusgenError, not a crash
    deep inside the first forward pass."""
    if name is None:
        return torch.device("cpu")
    if isinstance(name, str) and name.strip().lower() == "auto":
        return _best_available()
    try:
        device = torch.device(name.strip().lower() if isinstance(name, str) else name)
    except (RuntimeError, ValueError):
        raise MusgenError(f"--device must be {DEVICES}, not {name!r}") from None
    if device.type == "cuda":
        _require_cuda(device)
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise MusgenError("--device mps: Apple's MPS backend is not available on this machine")
    elif device.type != "cpu":
        raise MusgenError(f"--device must be {DEVICES}, not {name!r}")
    return device


def _best_available() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _require_cuda(device: torch.device) -> None:
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise MusgenError(f"--device {device}: CUDA is not available ({why}); use --device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise MusgenError(f"--device {device}: this machine has {count} CUDA device(s), numbered from 0")
