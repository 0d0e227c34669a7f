"""The audio prior's view of an audio data set: every piece encoded once by a frozen codec, cached
as code files, and cut into training windows.

Codes of a piece are frames (F, Q) (Q codebooks per frame). The prior reads them flattened frame by
frame, level by level, with level l's codes shifted into their own id range: token = l * K + code
(the "flattening" pattern of MusicGen; exact, at Q times the sequence length). A BOS token (id Q * K)
opens every piece. With MusicGen's delay pattern (``DelayedCodeWindows``) the prior reads one row of
Q ids per step instead: stream k's code of frame f sits in row 1 + f + k (row 0 is BOS), so a frame's
coarse code comes k steps before its k-th residual and each row is predicted at once. Cache: DATA_DIR/codes/{split}-{key}.npz with ``key`` hashing the data fingerprint
and the codec's encoder and codebooks, so a retrained codec never reuses stale codes (a decoder retrained
on frozen codes does reuse them).
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


def delay_codes(codes: np.ndarray, pad_id: int, bos_id: int) -> np.ndarray:
    """codes (F, Q) -> rows (1 + F + Q - 1, Q) in the delay pattern: row 0 BOS, stream k's frame f in
    row 1 + f + k, ``pad_id`` before a stream starts and after it ends."""
    frames, q = codes.shape
    rows = np.full((frames + q, q), pad_id, dtype=np.int64)
    rows[0] = bos_id
    for k in range(q):
        rows[1 + k : 1 + k + frames, k] = codes[:, k]
    return rows


CODE_WEIGHTS = ("encoder.", "quantizer.")  # what a piece's codes depend on (not the decoder)


def weights_key(checkpoint_dir: Path) -> str:
    """A short hash of the weights of a codec checkpoint that fix its codes (names, dtypes, shapes
    and bytes of the encoder's and the quantizer's tensors): a decoder retrained on frozen codes
    (``model.freeze_encoder``) reuses the cached codes; float16 packing changes the key; a codebook's
    EMA sums (training state, left out of packed checkpoints) do not count."""
    from safetensors import safe_open

    from musgen.modules.quantizer import is_training_only

    digest = hashlib.sha256()
    with safe_open(str(Path(checkpoint_dir) / "model.safetensors"), framework="pt") as handle:
        names = [k for k in handle.keys() if k.startswith(CODE_WEIGHTS) and not is_training_only(k)]  # noqa: SIM118
        for name in sorted(names):
            tensor = handle.get_tensor(name).contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
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
        codes = codec.encode_audio(wave, precision="fp32")  # (F, Q): a prior learns the exact codes
        seqs.append(flatten_codes(codes.numpy(), codec.cfg.model.quantizer.codes))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    tokens = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
    write_cache(path, "audio codes", tokens=tokens, offsets=offsets)
    log.info("encoded %d %s pieces into %d code tokens", len(seqs), split, len(tokens))
    return tokens, offsets


def silence_codes(codec: Any, frames: int = 64) -> np.ndarray:
    """The code row (Q,) the codec writes for digital silence away from any sound: the middle frame
    of ``frames`` frames of zeros (the encoder's padding shapes the frames near either end)."""
    hop = codec.cfg.model.hop
    codes = codec.encode_audio(np.zeros(frames * hop, np.float32), precision="fp32").numpy()
    return codes[frames // 2].astype(np.int64)


def trim_trailing_silence(
    tokens: np.ndarray, offsets: np.ndarray, silence: np.ndarray, codebook_size: int, edge: int = 4
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drops each piece's trailing frames whose first-level code is the one of ``silence`` (Q,) (the
    coarse code of digital silence; the finer levels also code the last quiet tail) from ``tokens``.
    A rendered piece ends in ~0.5 s of digital silence after its last sound, and nothing follows it
    in a training window: a prior learns that silence never ends and, sampling, falls into it after
    a phrase's last chord (stop 41, docs/measured.md). The last ``edge`` frames of a piece that ends
    in silence go too: the encoder's padding codes them differently. Returns (tokens, offsets,
    frames dropped)."""
    q = len(silence)
    row = flatten_codes(silence[None], codebook_size)  # (Q,) the ids of one silent frame
    kept, dropped = [], 0
    for p in range(len(offsets) - 1):
        frames = tokens[int(offsets[p]) : int(offsets[p + 1])].reshape(-1, q)  # (F, Q)
        silent = (frames[:, 0] == row[0])[: max(len(frames) - edge, 0)]  # (F - edge,)
        run = int(np.argmin(silent[::-1])) if not silent.all() else len(silent)  # trailing silent frames
        end = len(silent) - run if run else len(frames)
        dropped += len(frames) - end
        kept.append(frames[:end].reshape(-1))
    new_offsets = np.zeros_like(offsets)
    np.cumsum([len(k) for k in kept], out=new_offsets[1:])
    return (np.concatenate(kept) if kept else tokens[:0]).astype(tokens.dtype), new_offsets, dropped


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
            for start in range(0, self.framed_length(p) - 1, seq_len)
        ]
        self.index = np.array(index, dtype=np.int64).reshape(-1, 2)

    def framed(self, p: int) -> np.ndarray:
        """Piece ``p`` as the model reads it: BOS + its tokens (L,)."""
        lo, hi = int(self.offsets[p]), int(self.offsets[p + 1])
        return np.concatenate([[self.bos], self.tokens[lo:hi]]).astype(np.int64)

    def framed_length(self, p: int) -> int:
        return int(self.offsets[p + 1] - self.offsets[p]) + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p, start = (int(v) for v in self.index[i])
        framed_len = self.framed_length(p)  # with BOS
        if self.jitter and start > 0:  # the first window keeps its BOS: unprimed sampling starts there
            shift = (
                int(np.random.default_rng((self.seed, self.epoch, i)).integers(self.seq_len))
                - self.seq_len // 2
            )
            start = int(np.clip(start + shift, 1, max(framed_len - self.seq_len - 1, 1)))
        chunk = self.framed(p)[start : start + self.seq_len + 1]
        window = np.zeros((self.seq_len + 1, *chunk.shape[1:]), dtype=np.int64)
        window[: len(chunk)] = chunk
        labels = window[1:].copy()
        labels[max(len(chunk) - 1, 0) :] = IGNORE_INDEX
        labels[labels >= self.first_special] = IGNORE_INDEX  # BOS / delay pads are never predicted
        return {
            "input_ids": torch.from_numpy(window[:-1].copy()),
            "labels": torch.from_numpy(labels.reshape(-1)),  # (T,) or (T * Q,): one per logit row
        }

    @property
    def first_special(self) -> int:
        return self.bos


class DelayedCodeWindows(CodeWindows):
    """``CodeWindows`` over the delay pattern: windows of ``seq_len`` rows (T, Q) of ids (codes,
    ``codebook_size`` for a delay pad, ``codebook_size + 1`` for BOS); labels (T * Q,) with BOS and
    pads ignored. ``tokens``/``offsets``: the flattened codes of ``encoded_split``."""

    def __init__(
        self,
        tokens: np.ndarray,
        offsets: np.ndarray,
        seq_len: int,
        codebook_size: int,
        levels: int,
        *,
        jitter: bool = False,
        seed: int = 0,
    ):
        self.codebook_size, self.levels = codebook_size, levels
        super().__init__(tokens, offsets, seq_len, codebook_size + 1, jitter=jitter, seed=seed)

    def framed(self, p: int) -> np.ndarray:
        lo, hi = int(self.offsets[p]), int(self.offsets[p + 1])
        codes = unflatten_tokens(self.tokens[lo:hi], self.codebook_size, self.levels)
        return delay_codes(codes, self.codebook_size, self.bos)

    def framed_length(self, p: int) -> int:
        return int(self.offsets[p + 1] - self.offsets[p]) // self.levels + self.levels

    @property
    def first_special(self) -> int:
        return self.codebook_size
