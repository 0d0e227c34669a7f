"""The files of a training run directory, and the readable cause of a failed write.

RUN_DIR layout::

    config.yaml               the resolved config
    metrics.jsonl             one JSON line per log / eval event
    state/step_000500/        Accelerate save_state (models, optimizers, RNG) + loop.json, for --resume
    checkpoints/step_000500/  portable checkpoints (see musgen.checkpoint)
    tensorboard/RUN_NAME/     the local files of the train.log_with trackers (TensorBoard's event files)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from musgen import checkpoint
from musgen.atomic import write_text_atomic
from musgen.errors import MusgenError, first_line

LOOP_FILE = "loop.json"
TRACKER_DIR = (
    "tensorboard"  # Accelerate's logging_dir: local trackers write under RUN_DIR/tensorboard/RUN_NAME
)


def step_name(step: int) -> str:
    return f"step_{step:07d}"


def state_complete(path: Path) -> bool:
    return (path / LOOP_FILE).is_file()  # written last, inside the temporary directory


def checkpoint_complete(path: Path) -> bool:
    return (path / checkpoint.META_FILE).is_file()


def latest_state(run_dir: Path) -> Path | None:
    complete = [p for _, p in checkpoint.step_dirs(run_dir / "state") if state_complete(p)]
    return complete[-1] if complete else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file that have a step (a line cut short by a killed process
    is skipped); [] when there is no file."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int | float):
            records.append(record)
    return records


def trim_metrics(path: Path, step: int) -> None:
    """Keeps the metrics.jsonl records up to ``step`` (a resumed run logs the later ones again) and
    drops a line cut short by a killed process."""
    if not path.is_file():
        return
    kept = [json.dumps(record) + "\n" for record in read_metrics(path) if record["step"] <= step]
    write_text_atomic(path, "".join(kept))


_KNOWN_CAUSES = (
    "No space left on device",
    "File too large",
    "Read-only file system",
    "Permission denied",
    "Disk quota exceeded",
)


def failure_reason(err: BaseException | None, where: Path | None = None) -> str:
    """The cause of a failed write in a few words: an OS error's strerror ("No space left on device");
    torch and safetensors wrap those in their own messages, so then the disk's free space and the
    process's file size limit (at ``where``) are checked."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err) if err is not None else ""
    for known in _KNOWN_CAUSES:
        if known in text:
            return known
    if where is not None:
        cause = _disk_full(where) or _file_size_limit()
        if cause:
            return cause
    return first_line(err) if err is not None else "unknown error"


def _disk_full(where: Path) -> str | None:
    try:
        free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    except OSError:
        return None
    if free < 64 * 2**20:
        return f"No space left on device ({free / 2**20:.1f} MiB free)"
    return None


def _file_size_limit() -> str | None:
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit != resource.RLIM_INFINITY:
        return f"File too large (the file size limit, ulimit -f, is {limit} bytes)"
    return None


class MetricsLog:
    """metrics.jsonl, written by the main process only (the experiment trackers of train.log_with get
    the same records through Accelerate, see ``Trainer.record``)."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as err:
            raise MusgenError(f"cannot write {self.path}: {failure_reason(err)}") from None
