"""Files written whole or not at all: into a temporary file beside the target, then renamed over it
(a rename is atomic on one file system), so a killed process never leaves a half-written file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def temporary_path(path: Path) -> Path:
    """A hidden file beside ``path``, private to this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes_atomic(path: Path, writer: Callable[[BinaryIO], Any]) -> None:
    """``writer(f)`` into a temporary file, then renamed to ``path``."""
    tmp = temporary_path(path)
    with tmp.open("wb") as f:
        writer(f)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = temporary_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)
