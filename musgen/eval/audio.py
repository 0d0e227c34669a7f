"""Held-out evaluation of the audio path: the codec's reconstructions and the prior's NLL.

Codec: every piece of a split (its first ``max_seconds``) is encoded and decoded; reported are the
multi-resolution STFT distance, log-mel L1 and SI-SDR averaged over pieces, codebook usage and
perplexity over all the split's codes, and the bitrate. Prior: NLL of the split's code tokens (nats
and bits per token, bits per second of audio) next to a unigram baseline (train code frequencies).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from musgen.eval.audio_metrics import MultiResolutionSTFTLoss, log_mel_l1, si_sdr
from musgen.modules.quantizer import code_counts, code_statistics


@torch.no_grad()
def evaluate_codec(
    generator: Any,
    data_dir: Path,
    split: str = "test",
    max_seconds: float = 10.0,
    reconstructions: list | None = None,
) -> dict[str, Any]:
    """``generator``: ``musgen.load`` of a vqvae checkpoint. ``reconstructions``, when given, receives
    an (original, reconstruction) pair of waveforms per piece."""
    from musgen.data.audio_data import audio_pieces

    task = generator.task
    rate = task.sample_rate
    stft_loss = MultiResolutionSTFTLoss()
    q = task.cfg.model.quantizer
    counts = torch.zeros(q.levels, q.codes, dtype=torch.float64)
    rows = []
    for wave in tqdm(audio_pieces(data_dir, split), desc=f"codec {split}", unit="piece"):
        wave = wave[: round(max_seconds * rate)]
        codes = task.encode_audio(wave)  # (F, Q)
        recon = torch.from_numpy(task.decode_codes(codes)[: len(wave)])[None]
        ref = torch.from_numpy(wave)[None]
        counts += code_counts(codes[None], q.codes).double()
        if reconstructions is not None:
            reconstructions.append((wave, recon[0].numpy()))
        rows.append(
            (
                float(stft_loss(recon, ref)),
                float(log_mel_l1(recon, ref, rate)[0]),
                float(si_sdr(recon, ref)[0]),
                len(wave) / rate,
            )
        )
    stft, mel, sdr, seconds = (np.array(col) for col in zip(*rows, strict=True))
    return {
        "split": split,
        "pieces": len(rows),
        "seconds": round(float(seconds.sum()), 1),
        "stft_distance": float(stft.mean()),
        "log_mel_l1": float(mel.mean()),
        "si_sdr_db": float(sdr.mean()),
        "si_sdr_db_median": float(np.median(sdr)),
        **code_statistics(counts),
        "codebook_size": q.codes,
        "codebooks": q.levels,
        "code_rate_hz": task.code_rate,
        "bitrate_bps": task.bitrate,
    }


@torch.no_grad()
def evaluate_prior(
    generator: Any, data_dir: Path, split: str = "test", batch_size: int = 8
) -> dict[str, Any]:
    """``generator``: ``musgen.load`` of a prior checkpoint."""
    from musgen.data.audio_codes import CodeWindows, encoded_split, weights_key

    task = generator.task
    key = weights_key(generator.checkpoint.path / "vqvae")
    tokens, offsets = encoded_split(data_dir, split, task.codec, key)
    train_tokens, _ = encoded_split(data_dir, "train", task.codec, key)
    windows = CodeWindows(tokens, offsets, task.cfg.data.seq_len, task.bos)
    model = task.models["model"]
    nll_sum, count = 0.0, 0
    for start in tqdm(range(0, len(windows), batch_size), desc=f"prior {split}", unit="batch"):
        items = [windows[i] for i in range(start, min(start + batch_size, len(windows)))]
        ids = torch.stack([it["input_ids"] for it in items])
        labels = torch.stack([it["labels"] for it in items])
        logits, _ = model(ids)
        nll_sum += float(
            F.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
            )
        )
        count += int((labels != -100).sum())
    # Unigram baseline: add-one smoothed code frequencies of the training split.
    freq = np.bincount(train_tokens, minlength=task.vocab_size).astype(np.float64) + 1
    logp = np.log(freq / freq.sum())
    unigram = float(-logp[tokens].mean()) if len(tokens) else float("nan")
    nll = nll_sum / max(count, 1)
    tokens_per_second = task.code_rate * task.levels
    return {
        "split": split,
        "tokens": count,
        "nll": nll,
        "bits_per_token": nll / math.log(2),
        "bits_per_second": nll / math.log(2) * tokens_per_second,
        "unigram_nll": unigram,
        "uniform_nll": math.log(task.codebook_size),
        "context_seconds": task.cfg.data.seq_len / tokens_per_second,
    }
