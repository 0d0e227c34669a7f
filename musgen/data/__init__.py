"""Data pipeline: corpora, tokenizers, the on-disk data set and the datasets the loop consumes."""

from .build import DataConfig, NoUsableDataError, build

__all__ = ["DataConfig", "NoUsableDataError", "build"]
