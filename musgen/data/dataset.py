"""Map-style datasets over a built data directory (see ``musgen.data.build`` for the format)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from musgen.errors import MusgenError, first_line

from .tokenizers import load_tokenizer, pitch_shift_table, velocity_ids

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
T = TypeVar("T")


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    bos: int
    eos: int
    mask: int | None = None


def special_ids(data_dir_or_tokenizer) -> SpecialIds:
    """PAD/BOS/EOS/MASK ids from a data directory's tokenizer (or a tokenizer object)."""
    tok = data_dir_or_tokenizer
    if isinstance(tok, (str, Path)):
        tok = load_tokenizer(Path(tok) / "tokenizer.json")
    v = tok.vocab
    return SpecialIds(pad=v["PAD_None"], bos=v["BOS_None"], eos=v["EOS_None"], mask=v.get("MASK_None"))


def read_manifest(data_dir: Path) -> dict:
    return json.loads((Path(data_dir) / "manifest.json").read_text())


def source_files(data_dir: Path, split: str) -> list[Path]:
    """The MIDI files the pieces of a split came from, in the split's order."""
    from musgen.data.corpus import corpus_root

    source = read_manifest(data_dir)["source"]
    root = Path(source["midi_dir"]) if "midi_dir" in source else corpus_root(source["corpus"])
    return [root / rel for rel in json.loads((Path(data_dir) / f"{split}.pieces.json").read_text())]


def source_file(data_dir: Path, split: str = "test", index: int = 0) -> Path:
    """The MIDI file a piece of a built data set came from, e.g. a held-out piece to prime with."""
    files = source_files(data_dir, split)
    if not files:
        raise MusgenError(f"the {split} split of {data_dir} is empty")
    return files[index % len(files)]


def random_fitting_shift(
    item: T, max_shift: int, move: Callable[[T, int], T | None], key: tuple[int, int, int]
) -> T:
    """``move(item, shift)`` for the first shift, in a random order of [-max_shift, max_shift] drawn
    from ``default_rng(key)`` (key = (seed, epoch, index): reproducible on resume), whose result is
    not None (the shifted item still fits); the item unchanged if none fits."""
    rng = np.random.default_rng(key)
    for shift in rng.permutation(np.arange(-max_shift, max_shift + 1)):
        moved = move(item, int(shift))
        if moved is not None:
            return moved
    return item


class TransposedItems(Dataset):
    """Items at fixed positions (``self.starts``, one per item), each transposed when training by a
    shift drawn from ``default_rng((seed, epoch, i))`` among those in [-transpose, transpose] that
    keep it in range, so items are reproducible on resume. Subclasses set ``starts`` and give
    ``item`` (untransposed), ``shift`` (None when the shifted item does not fit) and ``as_batch``."""

    starts: np.ndarray

    def __init__(self, transpose: int = 0, seed: int = 0):
        self.transpose = int(transpose)
        self.seed = seed
        self.epoch = 0

    def item(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def shift(self, item: np.ndarray, semitones: int) -> np.ndarray | None:
        raise NotImplementedError

    def as_batch(self, item: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i < 0:
            i += len(self)
        item = self.item(i)
        if self.transpose:
            item = random_fitting_shift(item, self.transpose, self.shift, (self.seed, self.epoch, i))
        return self.as_batch(item)


def vocab_size(data_dir: Path) -> int:
    return int(read_manifest(data_dir)["vocab_size"])


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """One ``.npy`` array of a built data set. Never unpickled: a file holding Python objects (or a
    pickle under an array's name) is refused with a ``MusgenError``, as is a missing or damaged one."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise MusgenError(
            f"{path} is missing; rebuild the data set (`musgen data build ... --force`)"
        ) from None
    except (OSError, ValueError, EOFError) as err:
        raise MusgenError(
            f"{path} is not a plain array file ({first_line(err)}); rebuild the data set "
            "(`musgen data build ... --force`)"
        ) from None
    if not isinstance(array, np.ndarray):  # a .npz archive under a .npy name
        array.close()
        raise MusgenError(
            f"{path} is not a plain array file (a zip archive); rebuild the data set "
            "(`musgen data build ... --force`)"
        )
    return array


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32, offsets int64) of a split; tokens are memory-mapped."""
    data_dir = Path(data_dir)
    tokens = load_array(data_dir / f"{split}.tokens.npy", mmap=True)
    offsets = load_array(data_dir / f"{split}.offsets.npy")
    return tokens, offsets


class TokenWindows(Dataset):
    """Fixed windows of ``seq_len + 1`` tokens over ``[BOS] + piece + [EOS]``.

    Item i is a fixed (piece, start) pair; the last window of a piece is right-padded with PAD
    (labels -100 there). Augmentation draws from ``default_rng((seed, epoch, i))`` only, so an
    item is reproducible for exact resume. Transposition applies one shift per window, chosen
    uniformly among the shifts in [-transpose, transpose] that keep every pitch of the window in
    the vocabulary. It is disabled for BPE data: a BPE token has no transposed counterpart.
    """

    def __init__(
        self,
        data_dir: Path,
        split: str,
        seq_len: int,
        *,
        transpose: int = 0,
        velocity_jitter: int = 0,
        seed: int = 0,
        stride: int | None = None,
    ) -> None:
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        self.data_dir = Path(data_dir)
        self.split = split
        self.seq_len = seq_len
        self.stride = stride or seq_len
        self.seed = seed
        self.epoch = 0
        self.tokens, self.offsets = load_split(self.data_dir, split)
        tok = load_tokenizer(self.data_dir / "tokenizer.json")
        self.special = special_ids(tok)
        self.vocab_size = len(tok)
        if tok.is_trained and (transpose or velocity_jitter):
            log.warning("BPE data: transposition and velocity jitter are disabled (no BPE token mapping)")
            transpose, velocity_jitter = 0, 0
        self.transpose = int(transpose)
        self.velocity_jitter = int(velocity_jitter)
        # shift tables stacked as (2T+1, vocab): row d + T maps ids for shift d
        self.shift_tables = (
            np.stack([pitch_shift_table(tok, d) for d in range(-self.transpose, self.transpose + 1)])
            if self.transpose
            else None
        )
        self.vel_ids = velocity_ids(tok) if self.velocity_jitter else None
        if self.vel_ids is not None:
            self.vel_index = np.full(self.vocab_size, -1, dtype=np.int64)
            self.vel_index[self.vel_ids] = np.arange(len(self.vel_ids))

        # windows: framed length L = n + 2; a window needs >= 2 tokens (one label)
        index = []
        for p in range(len(self.offsets) - 1):
            framed = int(self.offsets[p + 1] - self.offsets[p]) + 2
            for start in range(0, framed - 1, self.stride):
                index.append((p, start))
        self.index = np.array(index, dtype=np.int64).reshape(-1, 2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def _framed_window(self, i: int) -> tuple[np.ndarray, int]:
        """The window's ids (length seq_len + 1, PAD-padded) and its number of real tokens."""
        p, start = self.index[i]
        lo, hi = int(self.offsets[p]), int(self.offsets[p + 1])
        framed = np.empty(hi - lo + 2, dtype=np.int64)
        framed[0], framed[-1] = self.special.bos, self.special.eos
        framed[1:-1] = self.tokens[lo:hi]
        chunk = framed[start : start + self.seq_len + 1]
        window = np.full(self.seq_len + 1, self.special.pad, dtype=np.int64)
        window[: len(chunk)] = chunk
        return window, len(chunk)

    def _augment(self, window: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        real = window[:n]
        if self.shift_tables is not None:
            ok = np.flatnonzero((self.shift_tables[:, real] >= 0).all(axis=1))  # rows valid for all ids
            row = int(rng.choice(ok))
            window[:n] = self.shift_tables[row, real]
        if self.vel_ids is not None:
            d = int(rng.integers(-self.velocity_jitter, self.velocity_jitter + 1))
            pos = self.vel_index[window[:n]]
            is_vel = pos >= 0
            new = np.clip(pos[is_vel] + d, 0, len(self.vel_ids) - 1)
            window[:n][is_vel] = self.vel_ids[new]
        return window

    def _augmented_window(self, i: int) -> tuple[np.ndarray, int]:
        """``_framed_window`` transposed / velocity-jittered as item ``i`` of this epoch."""
        window, n = self._framed_window(i)
        if self.shift_tables is not None or self.vel_ids is not None:
            window = self._augment(window, n, np.random.default_rng((self.seed, self.epoch, i)))
        return window, n

    def _as_item(self, window: np.ndarray, n: int) -> dict[str, torch.Tensor]:
        """Inputs and next-token labels of a PAD-padded window whose first ``n`` ids are real."""
        labels = window[1:].copy()
        labels[max(n - 1, 0) :] = IGNORE_INDEX
        return {"input_ids": torch.from_numpy(window[:-1].copy()), "labels": torch.from_numpy(labels)}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i < 0:
            i += len(self)
        return self._as_item(*self._augmented_window(i))


GAPS_PER_WINDOW = 4  # the hinted order's most gaps in one window (only their last bars carry hints)


class InfillWindows(TokenWindows):
    """``TokenWindows`` over a tracks-layout data set where a share ``infill`` of the training windows
    is rewritten to infilling form: a random mask of whole bars or of one track over some bars, in
    ``order`` (``musgen.data.track_layout``; suffix_first: the window from the gap on with the masked
    cells replaced by ``Fill``, ``FillStart``, then the window up to the end of the gap in full). All
    is next-token prediction, so the model still continues music; the ``Fill`` and ``FillStart`` tokens
    are never labels (the model must not write them unasked). When the rewritten window is longer than
    the original, the bars after the gap are cut from the end, then the bars before it from the start."""

    def __init__(
        self,
        data_dir: Path,
        split: str,
        seq_len: int,
        *,
        infill: float,
        order: str = "suffix_first",
        lookahead: int = 4,
        hint_bars: int = 1,
        **kwargs,
    ) -> None:
        from musgen.data.track_layout import layout_of

        super().__init__(data_dir, split, seq_len, **kwargs)
        layout = layout_of(load_tokenizer(self.data_dir / "tokenizer.json"))
        if layout is None:
            raise MusgenError(
                f"data.infill needs a data set built with named tracks (musgen data build ... --set "
                f"tracks=[soprano,alto,tenor,bass]); {self.data_dir} has one token stream"
            )
        self.layout = layout
        self.infill = float(infill)
        self.order, self.lookahead, self.hint_bars = order, int(lookahead), int(hint_bars)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from musgen.data.track_layout import (
            anticipate_sequence,
            choose_mask,
            find_cells,
            fit_anticipate_sequence,
            fit_infill_sequence,
            fit_nearby_sequence,
            infill_sequence,
            nearby_sequence,
            next_pitch_sequence,
        )

        if i < 0:
            i += len(self)
        rng = np.random.default_rng((self.seed, self.epoch, i, 1))
        if not rng.random() < self.infill:
            return super().__getitem__(i)
        window, n = self._augmented_window(i)
        ids = window[:n].tolist()
        cells, complete = find_cells(ids, self.layout)
        masked = choose_mask(cells, complete, len(self.layout.names), rng)
        if not masked:
            return super().__getitem__(i)
        if self.order == "hinted":
            return self._hinted(ids, window, n, cells, complete, masked, rng)
        if self.order == "nearby":
            prefix, after, middle = nearby_sequence(ids, masked, self.layout, self.lookahead)
            fitted = fit_nearby_sequence(prefix, after, middle, self.seq_len + 1, self.layout)
        elif self.order == "next_pitch":
            fitted = next_pitch_sequence(ids, masked, complete, self.layout)[: self.seq_len + 1]
        elif self.order == "anticipate":
            parts = anticipate_sequence(ids, masked, complete, self.layout, self.lookahead)
            fitted = fit_anticipate_sequence(*parts, self.seq_len + 1, self.layout)
        else:
            view, prefix, middle = infill_sequence(ids, masked, self.layout)
            gap_in_view = len(middle) - sum(c.end - c.start - 2 for c in masked)  # the gap's bars, Fills in
            fitted = fit_infill_sequence(view, prefix, middle, gap_in_view, self.seq_len + 1, self.layout)
        out = np.full(self.seq_len + 1, self.special.pad, dtype=np.int64)
        out[: len(fitted)] = fitted
        item = self._as_item(out, len(fitted))
        labels = item["labels"]
        labels[(labels == self.layout.fill) | (labels == self.layout.fill_start)] = IGNORE_INDEX
        if self.order == "next_pitch":  # the pitch after a Fill is a given hint, not a label
            labels[item["input_ids"] == self.layout.fill] = IGNORE_INDEX
        return item

    def _hinted(
        self,
        ids: list[int],
        window: np.ndarray,
        n: int,
        cells: list[Any],
        complete: int,
        masked: list[Any],
        rng: np.random.Generator,
    ) -> dict[str, torch.Tensor]:
        """The window in the continuation order, 1 to ``GAPS_PER_WINDOW`` gaps' last cells carrying
        their right-side hints in the input ids (``musgen.data.track_layout.cell_hints``); the labels
        as they are."""
        from musgen.data.track_layout import cell_hints, choose_mask, hinted_ids

        hints = cell_hints(ids, masked, complete, self.layout, self.hint_bars)
        for _ in range(int(rng.integers(0, GAPS_PER_WINDOW))):  # more gaps; the earlier wins overlaps
            more = choose_mask(cells, complete, len(self.layout.names), rng)
            if more:
                hints = cell_hints(ids, more, complete, self.layout, self.hint_bars) | hints
        item = self._as_item(window, n)
        vocab = len(self.layout.tokens)
        item["input_ids"] = torch.from_numpy(hinted_ids(item["input_ids"].numpy(), hints, vocab))
        return item


def _label_counts(tokens: np.ndarray, offsets: np.ndarray, eos: int, vocab: int) -> np.ndarray:
    """Counts of the tokens a model predicts: every piece's ids plus its EOS (BOS is never a label)."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab).astype(np.float64)
    counts[eos] += len(offsets) - 1
    return counts


def unigram_nll(data_dir: Path) -> dict:
    """Unigram baseline: add-one smoothed train label frequencies, NLL (nats/token) on valid labels.

    Falls back to the test split, then train, when valid is empty (``eval_split`` says which).
    """
    data_dir = Path(data_dir)
    v = vocab_size(data_dir)
    eos = special_ids(data_dir).eos
    train_counts = _label_counts(*load_split(data_dir, "train"), eos, v)
    logp = np.log(train_counts + 1.0) - np.log(train_counts.sum() + v)
    for split in ("valid", "test", "train"):
        counts = _label_counts(*load_split(data_dir, split), eos, v)
        if counts.sum() > 0:
            break
    n = float(counts.sum())
    nll = float(-(counts * logp).sum() / n) if n else float("nan")
    return {
        "nll": nll,
        "eval_split": split,
        "eval_tokens": int(n),
        "train_tokens": int(train_counts.sum()),
        "vocab_size": v,
        "uniform_nll": math.log(v),
    }
