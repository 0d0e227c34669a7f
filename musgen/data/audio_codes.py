"""The audio prior's view of an audio data set: every piece encoded once by a frozen codec, cached
as code files, and cut into training windows.

Codes of a piece are frames (F, Q) (Q codebooks per frame). The prior reads them flattened frame by
frame, level by level, with level l's codes shifted into their own id range: token = l * K + code
(the "flattening" pattern of MusicGen; exact, at Q times the sequence length). A BOS token (id Q * K)
opens every piece. Cache: DATA_DIR/codes/{split}-{key}.npz with ``key`` hashing the data fingerprint
and the codec's weights, so a retrained codec never reuses stale codes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .view_cache import cache_path, read_cache, write_cache

log = logging.getLogger(__name__)
IGNORE_INDEX = -100


def flatten_codes(codes: np.ndarray | torch.Tensor, codebook_size: int) -> np.ndarray:
    """codes (F, Q) -> tokens (F * Q,): frame by frame, level l shifted by l * K."""
    codes = np.asarray(codes, dtype=np.int64)
    return (codes + np.arange(codes.shape[1]) * codebook_size).reshape(-1)


def unflatten_tokens(tokens: np.ndarray | list[int], codebook_size: int, levels: int) -> np.ndarray:
    """tokens (F * Q,) -> codes (F, Q); a trailing partial frame is dropped."""
    tokens = np.asarray(tokens, dtype=np.int64)
    frames = len(tokens) // levels
    return tokens[: frames * levels].reshape(frames, levels) - np.arange(levels) * codebook_size


def weights_key(checkpoint_dir: Path) -> str:
    """A short hash of a codec checkpoint's weights."""
    digest = hashlib.sha256()
    with open(Path(checkpoint_dir) / "model.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def encoded_split(data_dir: Path, split: str, codec: Any, codec_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32 (N,), offsets int64 (pieces + 1,)): the split's pieces encoded by ``codec`` (a
    VQVAETask) and flattened, from the cache or encoded now (then cached)."""
    from .audio_data import audio_pieces

    path = cache_path(data_dir, "codes", split, {"codec": codec_key})
    cached = read_cache(path, "tokens", "offsets")
    if cached is not None:
        tokens, offsets = cached
        return tokens, offsets
    pieces = audio_pieces(data_dir, split)
    seqs = []
    for wave in tqdm(pieces, desc=f"encode {split}", unit="piece", disable=not pieces):
        codes = codec.encode_audio(wave)  # (F, Q)
        seqs.append(flatten_codes(codes.numpy(), codec.cfg.model.quantizer.codes))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    tokens = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
    write_cache(path, "audio codes", tokens=tokens, offsets=offsets)
    log.info("encoded %d %s pieces into %d code tokens", len(seqs), split, len(tokens))
    return tokens, offsets


class CodeWindows(Dataset):
    """Windows of ``seq_len + 1`` tokens over ``[BOS] + tokens of a piece``, one every ``seq_len``
    tokens; with ``jitter`` each window after the first moves by a random offset in
    [-seq_len / 2, seq_len / 2) drawn from
    ``default_rng((seed, epoch, index))`` (reproducible on resume). Short windows are padded with
    labels -100."""

    def __init__(
        self,
        tokens: np.ndarray,
        offsets: np.ndarray,
        seq_len: int,
        bos: int,
        *,
        jitter: bool = False,
        seed: int = 0,
    ):
        self.tokens, self.offsets = tokens, offsets
        self.seq_len, self.bos, self.jitter, self.seed = seq_len, bos, jitter, seed
        self.epoch = 0
        index = [
            (p, start)
            for p in range(len(offsets) - 1)
            for start in range(0, int(offsets[p + 1] - offsets[p]) + 1 - 1, seq_len)
        ]
        self.index = np.array(index, dtype=np.int64).reshape(-1, 2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p, start = (int(v) for v in self.index[i])
        lo, hi = int(self.offsets[p]), int(self.offsets[p + 1])
        framed_len = hi - lo + 1  # with BOS
        if self.jitter and start > 0:  # the first window keeps its BOS: unprimed sampling starts there
            shift = (
                int(np.random.default_rng((self.seed, self.epoch, i)).integers(self.seq_len))
                - self.seq_len // 2
            )
            start = int(np.clip(start + shift, 1, max(framed_len - self.seq_len - 1, 1)))
        framed = np.concatenate([[self.bos], self.tokens[lo:hi]]).astype(np.int64)
        chunk = framed[start : start + self.seq_len + 1]
        window = np.zeros(self.seq_len + 1, dtype=np.int64)
        window[: len(chunk)] = chunk
        labels = window[1:].copy()
        labels[max(len(chunk) - 1, 0) :] = IGNORE_INDEX
        return {"input_ids": torch.from_numpy(window[:-1].copy()), "labels": torch.from_numpy(labels)}
