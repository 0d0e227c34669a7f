"""Melody windows from a data set built by ``musgen data build`` (any miditok tokenizer).

The pieces' tokens are decoded back to scores once, their melody lines extracted and cached as
``DATA_DIR/melodies/{split}-{key}.npz`` (``key`` hashes the data fingerprint and the melody
settings), so the same data directory serves the language models and MusicVAE. The data set's
train/valid/test split by piece carries over unchanged.

Each line keeps its piece's time signatures, read from the piece's source MIDI file (the tokens keep
only those in the tokenizer's range: 2/2 and 9/8 come back as 4/4, and no pickup marker), or from the
decoded tokens when the source is gone. A pickup the source file marks (``melody.pickup_steps``: the
built-in corpora mark theirs) is not a bar: the lines' bars start after it. ``MelodyWindows`` cuts windows of the model's meter on those bar lines and counts
the windows every meter would give (``windows_per_meter``, logged).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import symusic
import torch
from tqdm.auto import tqdm

from musgen.errors import MusgenError

from .dataset import TransposedItems, load_split, source_files
from .melody import (
    MelodyConfig,
    cut_window,
    extract_melodies,
    time_signature_steps,
    transpose_window,
    window_starts,
    windows_by_meter,
)
from .tokenizers import MidiReadError, decode_ids, load_tokenizer
from .view_cache import cache_path, read_cache, write_cache

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: the lines' time signatures (ts, ts_offsets); 3: marked pickups end a stretch
# Settings that change the extracted lines (window settings only change the index over them).
_EXTRACTION_KEYS = ("steps_per_quarter", "pitch_range", "track")


def _cache_path(data_dir: Path, split: str, cfg: MelodyConfig) -> Path:
    settings = {k: asdict(cfg)[k] for k in _EXTRACTION_KEYS}
    return cache_path(data_dir, "melodies", split, {"v": CACHE_VERSION, **settings})


def load_melodies(
    data_dir: Path, split: str, cfg: MelodyConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(events int16, offsets int64) of every melody line of a split (``load_melody_lines`` without
    the time signatures)."""
    events, offsets, _, _ = load_melody_lines(data_dir, split, cfg, progress)
    return events, offsets


def load_melody_lines(
    data_dir: Path, split: str, cfg: MelodyConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(events int16, offsets int64, ts, ts_offsets) of every melody line of a split; built once, then
    cached. Line k is ``events[offsets[k]:offsets[k+1]]``, its time signatures (rows of step,
    numerator, denominator as ``time_signature_steps`` gives them) ``ts[ts_offsets[k]:ts_offsets[k+1]]``."""
    data_dir = Path(data_dir)
    path = _cache_path(data_dir, split, cfg)
    cached = read_cache(path, "events", "offsets", "ts", "ts_offsets")
    if cached is not None:
        events, offsets, ts, ts_offsets = cached
        return events, offsets, ts, ts_offsets
    tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    tokens, offsets = load_split(data_dir, split)
    sources = _source_files(data_dir, split, len(offsets) - 1)
    lines, meters, failed, unsourced = [], [], 0, 0
    for k in tqdm(
        range(len(offsets) - 1),
        desc=f"melodies ({split})",
        unit="piece",
        disable=not progress,
        mininterval=1.0,
    ):
        try:
            score = decode_ids(tokenizer, np.asarray(tokens[offsets[k] : offsets[k + 1]]).tolist())
            piece_lines = extract_melodies(score, cfg)[0]
        except MidiReadError:
            failed += 1  # e.g. a drums-only piece
            continue
        except Exception as err:  # a piece miditok cannot decode must not stop the others
            log.debug("piece %d of %s: %s", k, split, err)
            failed += 1
            continue
        source_ts = _source_time_signatures(sources[k], cfg) if sources else None
        unsourced += source_ts is None
        ts = time_signature_steps(score, cfg.steps_per_quarter) if source_ts is None else source_ts
        lines += piece_lines
        meters += [ts] * len(piece_lines)
    if failed:
        log.info("%s: %d of %d pieces gave no melody", split, failed, len(offsets) - 1)
    if unsourced:
        log.warning(
            "%s: %d pieces' source MIDI files could not be read; their time signatures come from the "
            "tokens (those outside the tokenizer's range read as 4/4)",
            split,
            unsourced,
        )
    events = np.concatenate(lines).astype(np.int16) if lines else np.zeros(0, np.int16)
    line_offsets = _offsets_of(lines)
    ts_all = np.concatenate(meters) if meters else np.zeros((0, 3), np.int64)
    ts_offsets = _offsets_of(meters)
    write_cache(path, "melodies", events=events, offsets=line_offsets, ts=ts_all, ts_offsets=ts_offsets)
    return events, line_offsets, ts_all, ts_offsets


def _offsets_of(parts: list[np.ndarray]) -> np.ndarray:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in parts], out=offsets[1:])
    return offsets


def _source_files(data_dir: Path, split: str, pieces: int) -> list[Path] | None:
    """The split's source MIDI files, or None when the data set does not list them (all of them)."""
    try:
        files = source_files(data_dir, split)
    except (OSError, ValueError, KeyError, TypeError, MusgenError) as err:
        log.debug("no source files for %s of %s: %s", split, data_dir, err)
        return None
    return files if len(files) == pieces else None


def _source_time_signatures(path: Path, cfg: MelodyConfig) -> np.ndarray | None:
    """The time signatures of a source MIDI file (as ``time_signature_steps``: with its pickup marker),
    None if unreadable."""
    try:
        return time_signature_steps(symusic.Score(str(path)), cfg.steps_per_quarter)
    except Exception as err:  # symusic raises several types on a missing or damaged file
        log.debug("%s: %s", path, err)
        return None


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
        self.events, self.offsets, ts, ts_offsets = load_melody_lines(data_dir, split, cfg, progress)
        starts, per_meter = [], Counter[str]()
        for k in range(len(self.offsets) - 1):
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            line, line_ts = self.events[lo:hi], ts[ts_offsets[k] : ts_offsets[k + 1]]
            by_meter = windows_by_meter(line, cfg, line_ts)  # each meter's own bars: the report
            per_meter.update({meter: len(found) for meter, found in by_meter.items()})
            starts.append(lo + window_starts(line, cfg, line_ts))  # + bars that split exactly
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)  # absolute
        self.line_of = np.searchsorted(self.offsets, self.starts, side="right") - 1
        # windows of num_bars bars each meter of the split would give (0-window meters left out)
        self.windows_per_meter = {m: n for m, n in per_meter.most_common() if n > 0}
        others = ", ".join(f"{m}: {n}" for m, n in self.windows_per_meter.items() if m != cfg.family)
        log.info(
            "%s: %d windows of %d bars in %s%s",
            split,
            len(self.starts),
            cfg.num_bars,
            cfg.meter,
            f" (other meters would give {others})" if others else "",
        )

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
            f"the {split} split of {data_dir} has no melody window of {cfg.num_bars} bars in "
            f"{cfg.meter} (with at most {cfg.max_silence:.0%} silence); use shorter windows, another "
            f"meter or more data"
        )
