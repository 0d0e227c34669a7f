"""Data pipeline: corpora, tokenizers, the on-disk data set and the datasets the loop consumes."""

from .audio_build import AudioDataConfig, build_audio
from .build import DataConfig, NoUsableDataError, build

__all__ = ["AudioDataConfig", "DataConfig", "NoUsableDataError", "build", "build_audio"]
