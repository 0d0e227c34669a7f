"""Caches of derived views of a built data set (melody lines, piano rolls, audio codes): one .npz per
split, named by a hash of the data set's fingerprint and the settings that shape the view, written
atomically; a read-only data set works without them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from musgen.errors import first_line

from .dataset import read_manifest

log = logging.getLogger(__name__)


def cache_path(data_dir: Path, folder: str, split: str, settings: dict[str, Any]) -> Path:
    """DATA_DIR/folder/{split}-{key}.npz, ``key`` hashing the data fingerprint and ``settings``."""
    blob = json.dumps({"data": read_manifest(data_dir).get("fingerprint"), **settings}, sort_keys=True)
    return Path(data_dir) / folder / f"{split}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"


def read_cache(path: Path, *names: str) -> tuple[np.ndarray, ...] | None:
    """The arrays ``names`` of the cache at ``path``, or None when there is none or it is unusable:
    damaged, of another layout, or holding Python objects, which are never unpickled (a warning says
    so, and the caller builds the view again and overwrites the file)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            arrays = tuple(cached[name] for name in names)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("ignoring the cache %s (%s); building it again", path, first_line(err))
        return None
    return arrays


def write_cache(path: Path, what: str, **arrays: np.ndarray) -> None:
    """Saves ``arrays`` to ``path`` through a temporary file and a rename; logs (and goes on) when
    the directory cannot be written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # numpy's stub types every **kwds of savez against its allow_pickle: bool keyword too
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)  # several processes may build it at once: the last rename wins, all equal
    except OSError as err:  # e.g. a read-only shared data set: work without the cache
        log.warning(
            "cannot cache %s in %s (%s); they will be built again next time",
            what,
            path.parent,
            err.strerror or err,
        )
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
