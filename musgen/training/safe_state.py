"""Loading Accelerate's resumable state (``RUN_DIR/state/step_N/``) without ever executing code.

Accelerate writes the models as safetensors, but the optimizer, scheduler, sampler, scaler and RNG
states as torch pickles, so ``--resume`` must unpickle. Every one of those files is read by torch's
weights-only unpickler, which builds tensors, plain containers and a short allow-list (Accelerate's:
numpy arrays and dtypes for the RNG states) and refuses any other global, so a planted pickle can
never run code:

1. every pickle of the state directory is read first, so a refused or damaged file stops the resume
   with an error that names it (Accelerate itself swallows a failing RNG file and resumes with fresh
   RNG states: silently not exact);
2. Accelerate's own load then runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``, which makes every
   ``torch.load`` inside it weights-only whatever Accelerate passes (1.15 passes ``weights_only=True``
   for these files, but ``weights_only=False`` in ``load_custom_state`` and nothing for the FSDP2
   scaler): the guarantee does not rest on one version's defaults.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import load as accelerate_load

from musgen.errors import CheckpointError, first_line

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pkl", ".pt", ".pth")


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Within the block every ``torch.load`` is weights-only, even one that asks for
    ``weights_only=False`` (torch reads the variable at each call)."""
    saved = {
        k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    }
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)  # both set is an error in torch
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:  # torch's refusal: keep the line that names the global, not the advice
        detail = text.split(marker, 1)[1].strip().splitlines()[0].split(" was not an allowed")[0]
        return (
            "it would run code: " if "global" in detail else "refused by the weights-only unpickler: "
        ) + detail
    return first_line(err)


def check_state_files(state_dir: Path) -> None:
    """Reads every pickle in ``state_dir`` with the weights-only unpickler (tensor data memory-mapped,
    not read); a ``CheckpointError`` naming the first file that is refused or damaged."""
    for file in sorted(Path(state_dir).iterdir()):
        if not (file.suffix in PICKLE_SUFFIXES and file.is_file()):
            continue
        try:
            with weights_only_loads():
                accelerate_load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError ...: never more than a refusal
            raise CheckpointError(
                f"cannot resume from {state_dir}: {file.name} is not a plain tensor state file "
                f"({_reason(err)}); delete that state directory to resume from an older one"
            ) from err


def load_state(accelerator: Accelerator, state_dir: Path) -> None:
    """``accelerator.load_state(state_dir)`` after ``check_state_files``, every load weights-only."""
    check_state_files(state_dir)
    try:
        with weights_only_loads():
            accelerator.load_state(str(state_dir), load_kwargs={"weights_only": True})
    except Exception as err:  # e.g. model.safetensors damaged, or of another model (a changed config)
        raise CheckpointError(f"cannot resume from {state_dir}: {_reason(err)}") from err
