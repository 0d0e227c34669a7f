"""Reading an audio data directory (format in ``musgen.data.audio_build``): fixed-length chunks for
training, whole pieces for encoding and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from musgen.errors import MusgenError

PCM_SCALE = 32767.0


def read_audio_manifest(data_dir: Path | str) -> dict:
    """The manifest of an audio data set; a ``MusgenError`` for anything else."""
    path = Path(data_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise MusgenError(
            f"no manifest.json in {data_dir}: build it with `musgen data build --audio-dir DIR` "
            "or `--corpus NAME --render`"
        ) from None
    except (OSError, ValueError) as e:
        raise MusgenError(f"cannot read {path}: {e}") from None
    if manifest.get("kind") != "audio":
        raise MusgenError(
            f"{data_dir} is not an audio data set (it holds {manifest.get('kind', 'MIDI tokens')}); "
            "build one with `musgen data build --audio-dir DIR` or `--corpus NAME --render`"
        )
    return manifest


def load_audio_split(data_dir: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(int16 samples, memory-mapped; int64 offsets) of a split."""
    data_dir = Path(data_dir)
    read_audio_manifest(data_dir)
    from .dataset import load_array

    return load_array(data_dir / f"{split}.audio.npy", mmap=True), load_array(
        data_dir / f"{split}.offsets.npy"
    )


def audio_pieces(data_dir: Path | str, split: str) -> list[np.ndarray]:
    """Every piece of a split as float32 in [-1, 1] (in the order of ``{split}.pieces.json``)."""
    audio, offsets = load_audio_split(data_dir, split)
    return [
        np.asarray(audio[offsets[k] : offsets[k + 1]], dtype=np.float32) / PCM_SCALE
        for k in range(len(offsets) - 1)
    ]


class AudioChunks(Dataset):
    """Chunks of ``segment`` samples covering every piece of a split.

    Item i is a fixed (piece, chunk) pair: piece p of n samples has ceil(n / segment) chunks (at least
    one; a short piece's chunk is zero-padded, ``length`` says how much is real). With
    ``random_offset`` the chunk start moves by up to half a segment either way, kept inside the piece,
    drawn from ``default_rng((seed, epoch, i))`` only: an item is reproducible for exact resume.
    """

    def __init__(
        self, data_dir: Path | str, split: str, segment: int, *, seed: int = 0, random_offset: bool = True
    ) -> None:
        if segment < 1:
            raise ValueError("segment must be >= 1 sample")
        self.data_dir = Path(data_dir)
        self.sample_rate = int(read_audio_manifest(self.data_dir)["sample_rate"])
        self.audio, self.offsets = load_audio_split(self.data_dir, split)
        self.split, self.segment, self.seed, self.random_offset = (
            split,
            int(segment),
            int(seed),
            random_offset,
        )
        self.epoch = 0
        chunks = np.maximum(1, -(-np.diff(self.offsets) // self.segment))  # per piece, ceil division
        piece = np.repeat(np.arange(len(chunks)), chunks)
        first = np.repeat(np.cumsum(chunks) - chunks, chunks)  # item index of each piece's first chunk
        self.index = np.stack([piece, np.arange(len(piece)) - first], axis=1).astype(
            np.int64
        )  # (piece, chunk)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def seconds(self) -> float:
        return float(self.offsets[-1]) / self.sample_rate if len(self.offsets) else 0.0

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self)
        p, c = (int(x) for x in self.index[i])
        lo, hi = int(self.offsets[p]), int(self.offsets[p + 1])
        start = c * self.segment
        if self.random_offset:
            half = self.segment // 2
            start += int(np.random.default_rng((self.seed, self.epoch, i)).integers(-half, half + 1))
        start = min(max(start, 0), max(0, hi - lo - self.segment))
        chunk = self.audio[lo + start : min(hi, lo + start + self.segment)]
        out = np.zeros((1, self.segment), dtype=np.float32)
        out[0, : len(chunk)] = chunk / np.float32(PCM_SCALE)
        return {"audio": torch.from_numpy(out), "length": len(chunk)}

    def __repr__(self) -> str:
        return (
            f"AudioChunks({self.data_dir}, {self.split!r}, segment={self.segment}: {len(self)} chunks, "
            f"{self.seconds() / 60:.1f} min at {self.sample_rate} Hz)"
        )
