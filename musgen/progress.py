"""Progress bars for inference work (sampling, rendering, report pages): tqdm on stderr, shown only
when stderr is a terminal and the ``musgen`` logger shows INFO (``-q/--quiet`` turns them off)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars on: stderr is a terminal and musgen logs at INFO (not ``--quiet``)."""
    stream_is_tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return stream_is_tty and logging.getLogger("musgen").isEnabledFor(logging.INFO)


def progress(iterable: Iterable[T] | None = None, **options: Any) -> Any:
    """``tqdm(iterable, **options)`` on stderr, disabled unless ``progress_enabled()``; a bar of
    ``total=N`` steps (``.update()``) when ``iterable`` is None."""
    options.setdefault("file", sys.stderr)
    options.setdefault("dynamic_ncols", True)
    options.setdefault("leave", False)
    return tqdm(iterable, disable=not progress_enabled(), **options)
