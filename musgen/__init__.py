"""musgen: train and sample music generators from one command line."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "train"]


def __getattr__(name: str) -> Any:
    # Lazy: `import musgen` (and `musgen --help`) stays fast; torch loads on first use.
    if name in ("load", "train", "MusicGenerator", "Generator"):
        from musgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'musgen' has no attribute {name!r}")
