"""Melody windows from a data set built by ``musgen data build`` (any miditok tokenizer).

The pieces' tokens are decoded back to scores once, their melody lines extracted and cached as
``DATA_DIR/melodies/{split}-{key}.npz`` (``key`` hashes the data fingerprint and the melody
settings), so the same data directory serves the language models and MusicVAE. The data set's
train/valid/test split by piece carries over unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from musgen.errors import MusgenError

from .dataset import TransposedItems, load_split
from .melody import MelodyConfig, cut_window, extract_melodies, transpose_window, window_starts
from .tokenizers import MidiReadError, decode_ids, load_tokenizer
from .view_cache import cache_path, read_cache, write_cache

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# Settings that change the extracted lines (window settings only change the index over them).
_EXTRACTION_KEYS = ("steps_per_quarter", "pitch_range", "track")


def _cache_path(data_dir: Path, split: str, cfg: MelodyConfig) -> Path:
    settings = {k: asdict(cfg)[k] for k in _EXTRACTION_KEYS}
    return cache_path(data_dir, "melodies", split, {"v": CACHE_VERSION, **settings})


def load_melodies(
    data_dir: Path, split: str, cfg: MelodyConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(events int16, offsets int64) of every melody line of a split; built once, then cached."""
    data_dir = Path(data_dir)
    path = _cache_path(data_dir, split, cfg)
    cached = read_cache(path, "events", "offsets")
    if cached is not None:
        events, offsets = cached
        return events, offsets
    tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    tokens, offsets = load_split(data_dir, split)
    lines, failed = [], 0
    for k in tqdm(
        range(len(offsets) - 1),
        desc=f"melodies ({split})",
        unit="piece",
        disable=not progress,
        mininterval=1.0,
    ):
        try:
            score = decode_ids(tokenizer, np.asarray(tokens[offsets[k] : offsets[k + 1]]).tolist())
            lines += extract_melodies(score, cfg)[0]
        except MidiReadError:
            failed += 1  # e.g. a drums-only piece
        except Exception as err:  # a piece miditok cannot decode must not stop the others
            log.debug("piece %d of %s: %s", k, split, err)
            failed += 1
    if failed:
        log.info("%s: %d of %d pieces gave no melody", split, failed, len(offsets) - 1)
    events = np.concatenate(lines).astype(np.int16) if lines else np.zeros(0, np.int16)
    line_offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lines], out=line_offsets[1:])
    write_cache(path, "melodies", events=events, offsets=line_offsets)
    return events, line_offsets


class MelodyWindows(TransposedItems):
    """Windows of ``cfg.window_steps`` melody events; item i is a fixed (line, start) pair.

    Transposition (training only): see ``TransposedItems``.
    """

    def __init__(
        self,
        data_dir: Path,
        split: str,
        cfg: MelodyConfig,
        *,
        transpose: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        super().__init__(transpose, seed)
        self.cfg = cfg
        self.events, self.offsets = load_melodies(data_dir, split, cfg, progress)
        starts = []
        for k in range(len(self.offsets) - 1):
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            starts.append(lo + window_starts(self.events[lo:hi], cfg))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)  # absolute
        self.line_of = np.searchsorted(self.offsets, self.starts, side="right") - 1

    def window(self, i: int) -> np.ndarray:
        """The untransposed window i (int64, (window_steps,))."""
        line_start = int(self.offsets[self.line_of[i]])
        start = int(self.starts[i])
        line = self.events[line_start : start + self.cfg.window_steps]
        return cut_window(line, start - line_start, self.cfg.window_steps)

    item = window

    def shift(self, window: np.ndarray, semitones: int) -> np.ndarray | None:
        return transpose_window(window, semitones, self.cfg.vocab_size - 2)

    def as_batch(self, window: np.ndarray) -> dict[str, torch.Tensor]:
        return {"events": torch.from_numpy(window)}


def require_windows(dataset: MelodyWindows, data_dir: Path, split: str) -> None:
    if len(dataset) == 0:
        cfg = dataset.cfg
        raise MusgenError(
            f"the {split} split of {data_dir} has no melody window of {cfg.num_bars} bars "
            f"(with at most {cfg.max_silence:.0%} silence); use shorter windows or more data"
        )
