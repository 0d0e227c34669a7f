"""The portable checkpoint: the one format that sample, interpolate, reconstruct, eval and the Python
API read back. A checkpoint is a directory::

    musgen.json          format_version, musgen version, family, step, metrics, model file names
    config.yaml          the resolved config of the run
    <name>.safetensors   weights of each model of the task ("model" for single-model families)
    tokenizer.json       miditok's own save format (symbolic families)

It is written into a temporary sibling directory and renamed into place, so a crash never leaves
a half-written checkpoint under the final name. Weights are safetensors, settings JSON/YAML:
loading a checkpoint never executes code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_model

from musgen import __version__
from musgen.atomic import write_text_atomic
from musgen.errors import CheckpointError, first_line

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "musgen.json"
CONFIG_FILE = "config.yaml"
STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class PortableCheckpoint:
    path: Path
    meta: dict[str, Any]
    config: dict[str, Any]

    @property
    def family(self) -> str:
        return self.meta["family"]

    def load_weights(
        self,
        name: str,
        module: torch.nn.Module,
        *,
        allow_missing: bool = False,
        skip_unexpected: bool = False,
        skip_reshaped: bool = False,
    ) -> list[str]:
        """Loads ``<name>.safetensors`` into ``module`` (strict: names and shapes must agree; with
        ``allow_missing``, weights the checkpoint lacks keep their initialization: fine-tuning a model
        that grew a module; with ``skip_unexpected``, weights the model lacks are ignored: a module
        replaced by another kind; with ``skip_reshaped`` (and ``allow_missing``), weights of another
        shape in the model keep their initialization: a resized head). Returns the names of the
        weights it did not load."""
        file = self.path / f"{name}.safetensors"
        if not file.exists():
            raise CheckpointError(f"checkpoint {self.path} has no weights file {file.name}")
        try:
            if skip_reshaped:
                state, own = load_file(str(file), device="cpu"), module.state_dict()
                reshaped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
                if reshaped:
                    log.info(
                        "%s: skipped %d weights of another shape (%s ...)", file, len(reshaped), reshaped[0]
                    )
                missing, unexpected = module.load_state_dict(
                    {k: v for k, v in state.items() if k not in reshaped}, strict=False
                )
                # a tied weight is stored once (save_model): its other name loaded with it
                loaded = {own[k].data_ptr() for k in state if k in own and k not in reshaped}
                missing = [k for k in missing if own[k].data_ptr() not in loaded]
            else:
                missing, unexpected = load_model(module, str(file), strict=False, device="cpu")
        except SafetensorError as err:  # not safetensors at all (a pickle, say): never unpickled
            raise CheckpointError(f"{file} is not a safetensors weights file ({first_line(err)})") from None
        except (RuntimeError, ValueError, OSError) as err:
            raise CheckpointError(f"weights in {file} do not fit the model: {first_line(err)}") from None
        if unexpected and skip_unexpected:
            log.info("%s: skipped %d weights the model lacks (%s ...)", file, len(unexpected), unexpected[0])
            unexpected = []
        if (missing and not allow_missing) or unexpected:
            raise CheckpointError(
                f"weights in {file} do not fit the model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
        return list(missing)


def atomic_directory(final: Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp_dir)`` then renames tmp_dir to ``final`` (replacing an older one)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        write(tmp)
        commit_directory(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def commit_directory(tmp: Path, final: Path) -> None:
    """Makes the complete directory ``tmp`` appear as ``final`` by renames only.

    The files are fsynced first. An older ``final`` is first renamed to ``.old-NAME-PID``; a process
    killed between the two renames leaves it there, and ``recover`` puts it back. So at every moment
    ``final`` is absent, the old complete directory or the new complete one, never a mix."""
    tmp, final = Path(tmp), Path(final)
    _fsync_tree(tmp)
    if final.exists():
        trash = final.parent / f".old-{final.name}-{os.getpid()}"
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def remove_directory(path: Path) -> None:
    """Deletes a directory so that no half-deleted copy is ever seen under its name: it is renamed
    to ``.del-NAME-PID`` first (which ``recover`` deletes if a kill interrupts the removal)."""
    path = Path(path)
    trash = path.parent / f".del-{path.name}-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def recover(parent: Path, complete: Callable[[Path], bool]) -> list[str]:
    """Cleans what a killed writer left in ``parent`` (a checkpoints/ or state/ directory): its
    temporary ``.tmp-*`` and half-deleted ``.del-*`` directories are removed; an ``.old-NAME-*``
    directory (a replaced one, killed between the two renames of ``commit_directory``) goes back to
    NAME when NAME is missing and it is ``complete``, else it is removed. Returns what it did."""
    parent = Path(parent)
    done: list[str] = []
    if not parent.is_dir():
        return done
    for child in sorted(parent.iterdir()):
        if not child.is_dir() or not child.name.startswith((".tmp-", ".old-", ".del-")):
            continue
        if child.name.startswith(".old-"):
            name = child.name[len(".old-") :].rsplit("-", 1)[0]
            if STEP_DIR.match(name) and not (parent / name).exists() and complete(child):
                os.replace(child, parent / name)
                done.append(f"restored {name}")
                continue
        shutil.rmtree(child, ignore_errors=True)
        done.append(f"removed {child.name}")
    return done


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Makes renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_portable(
    out: Path,
    *,
    family: str,
    config_yaml: str,
    models: Mapping[str, torch.nn.Module],
    step: int,
    metrics: Mapping[str, float] | None = None,
    extra_files: Mapping[str, Path] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a portable checkpoint directory atomically and returns its path."""

    def write(tmp: Path) -> None:
        for name, module in models.items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        (tmp / CONFIG_FILE).write_text(config_yaml)
        for name, src in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / name)
        meta = {
            "format_version": FORMAT_VERSION,
            "musgen_version": __version__,
            "family": family,
            "step": int(step),
            "models": sorted(models),
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            **(extra_meta or {}),
        }
        # Written last: a directory without musgen.json is never taken for a checkpoint.
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))

    return atomic_directory(out, write)


def step_dirs(parent: Path) -> list[tuple[int, Path]]:
    """``parent/step_000500`` style directories, oldest first."""
    if not parent.is_dir():
        return []
    found = []
    for child in parent.iterdir():
        match = STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_checkpoint(path: Path) -> Path:
    """A portable checkpoint dir, or a RUN_DIR whose latest complete checkpoint is taken."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / META_FILE).is_file():
        return path
    candidates = [p for _, p in step_dirs(path / "checkpoints") if (p / META_FILE).is_file()]
    if candidates:
        return candidates[-1]
    raise CheckpointError(f"{path} is neither a musgen checkpoint nor a run directory with checkpoints")


def load_portable(path: Path) -> PortableCheckpoint:
    ckpt_dir = resolve_checkpoint(path)
    try:
        meta = json.loads((ckpt_dir / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {ckpt_dir / META_FILE}: {err}") from None
    if not isinstance(meta, dict) or "family" not in meta:
        raise CheckpointError(f"{ckpt_dir / META_FILE} is not a musgen checkpoint description")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {ckpt_dir} has format_version {version}; this musgen reads {FORMAT_VERSION}"
        )
    try:
        config = yaml.safe_load((ckpt_dir / CONFIG_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())  # YAML errors span several lines
        raise CheckpointError(f"cannot read {ckpt_dir / CONFIG_FILE}: {detail}") from None
    return PortableCheckpoint(path=ckpt_dir, meta=meta, config=config)


# max_silence: the audio prior's cap on runs of digital silence, in seconds (PriorGenerator.generate)
SAMPLING_KEYS = {"temperature": float, "top_k": int, "top_p": float, "max_silence": float}


def _sampling_value(key: str, value: Any) -> Any:
    """One stored sampling setting, typed: a number, or a list of numbers (one per codebook level of
    an audio prior with the delay pattern)."""
    cast = SAMPLING_KEYS[key]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{key}: an empty list")
        return [cast(v) for v in value]
    return cast(value)


def sampling_defaults(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The recommended sampling settings in a checkpoint's metadata (``"sampling"``), typed; {} if none."""
    stored = meta.get("sampling") or {}
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"the sampling settings in {META_FILE} should be a mapping, not {stored!r}")
    try:
        return {
            key: _sampling_value(key, stored[key]) for key in SAMPLING_KEYS if stored.get(key) is not None
        }
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"bad sampling settings in {META_FILE}: {first_line(err)}") from None


def set_sampling_defaults(
    path: Path, settings: Mapping[str, Any], evidence: Mapping[str, Any] | None = None
) -> Path:
    """Stores recommended sampling settings (``SAMPLING_KEYS``) in the checkpoint at ``path``,
    with the measurement that chose them (``evidence``), by rewriting its ``musgen.json`` atomically."""
    ckpt_dir = resolve_checkpoint(path)
    unknown = set(settings) - set(SAMPLING_KEYS)
    if unknown:
        raise CheckpointError(
            f"unknown sampling settings {sorted(unknown)} (known: {', '.join(SAMPLING_KEYS)})"
        )
    entries: dict[str, Any] = {
        "sampling": {key: _sampling_value(key, value) for key, value in settings.items()}
    }
    if evidence is not None:
        entries["sampling_chosen_by"] = dict(evidence)
    return update_meta(ckpt_dir, entries)


def update_meta(path: Path, entries: Mapping[str, Any]) -> Path:
    """Sets top-level ``entries`` (JSON values) in the ``musgen.json`` of the checkpoint at ``path``,
    rewriting it atomically (a temporary file renamed over it); returns the checkpoint directory."""
    ckpt_dir = resolve_checkpoint(path)
    meta = json.loads((ckpt_dir / META_FILE).read_text())
    meta.update(entries)
    write_text_atomic(ckpt_dir / META_FILE, json.dumps(meta, indent=2))
    return ckpt_dir


def prune(parent: Path, keep: int) -> None:
    """Deletes all but the newest ``keep`` step directories under ``parent`` (oldest first, each
    renamed away before it is deleted, so no half-deleted one keeps a step name)."""
    dirs = step_dirs(parent)
    for _, old in dirs[: max(0, len(dirs) - keep)]:
        remove_directory(old)


def pack_checkpoint(src: Path, dst: Path, *, metrics_file: Path | None = None) -> Path:
    """Copies the checkpoint ``src`` (or a RUN_DIR's latest) to ``dst`` with its float32 weights
    stored as float16, for shipping (``checkpoints/``): half the size, and loading casts them back
    to the model's float32. A tensor that float16 cannot hold (a value out of its range, or a
    relative error above 1e-3 in norm, e.g. a tensor of tiny values) stays float32; a codebook's EMA
    sums (training state, rebuilt on load) are left out. Nested checkpoints (the codec inside a
    prior) are packed the same way. ``metrics_file`` (the run's metrics.jsonl) is copied along so
    ``musgen report`` can draw the training curves."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from musgen.modules.quantizer import is_training_only

    src = resolve_checkpoint(src)

    def half(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype != torch.float32:
            return tensor
        packed = tensor.to(torch.float16)
        if not torch.isfinite(packed).all():
            return tensor
        error = torch.linalg.vector_norm(packed.float() - tensor) / torch.linalg.vector_norm(
            tensor
        ).clamp_min(1e-30)
        if error > 1e-3:
            return tensor
        return packed

    def write(tmp: Path) -> None:
        for file in sorted(src.rglob("*")):
            target = tmp / file.relative_to(src)
            if file.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if file.suffix != ".safetensors":
                shutil.copyfile(file, target)
                continue
            with safe_open(str(file), framework="pt") as handle:
                tensors = {
                    key: half(handle.get_tensor(key)).contiguous()
                    for key in handle.keys()  # noqa: SIM118
                    if not is_training_only(key)
                }
                metadata = handle.metadata()
            save_file(tensors, str(target), metadata=metadata)
        if metrics_file is not None and Path(metrics_file).is_file():
            shutil.copyfile(metrics_file, tmp / "metrics.jsonl")
        meta = json.loads((tmp / META_FILE).read_text())
        meta["packed_from"] = {"checkpoint": str(src), "weights": "float16 where exact enough, else float32"}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))

    return atomic_directory(Path(dst), write)
