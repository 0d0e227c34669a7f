"""Held-out evaluation of an audio codec's reconstructions.

Every piece of a split (its first ``max_seconds``) is encoded and decoded; reported are the
multi-resolution STFT distance, log-mel L1 and SI-SDR averaged over pieces, codebook usage and
perplexity over all the split's codes, and the bitrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from musgen.errors import MusgenError
from musgen.eval.audio_metrics import MultiResolutionSTFTLoss, log_mel_l1, si_sdr
from musgen.modules.quantizer import code_counts, code_statistics


@torch.no_grad()
def evaluate_codec(
    generator: Any,
    data_dir: Path,
    split: str = "test",
    max_seconds: float = 10.0,
    reconstructions: list | None = None,
    levels: int | None = None,
) -> dict[str, Any]:
    """``generator``: ``musgen.load`` of a vqvae checkpoint. ``reconstructions``, when given, receives
    an (original, reconstruction) pair of waveforms per piece. ``levels``: decode from the first
    ``levels`` residual codebooks only (a codec trained with quantizer.quantize_dropout): the codec at
    a lower bitrate."""
    from musgen.data.audio_data import audio_pieces

    rate = generator.sample_rate
    stft_loss = MultiResolutionSTFTLoss()
    q = generator.cfg.model.quantizer
    kept = q.levels if levels is None else levels
    if not 1 <= kept <= q.levels or (kept < q.levels and not q.quantize_dropout):
        raise MusgenError(
            f"levels={kept}: this codec decodes {q.levels} codebook level(s)"
            + ("" if q.quantize_dropout else " (fewer need a codec trained with quantizer.quantize_dropout)")
        )
    counts = torch.zeros(kept, q.codes, dtype=torch.float64)
    rows = []
    for wave in tqdm(audio_pieces(data_dir, split), desc=f"codec {split}", unit="piece"):
        wave = wave[: round(max_seconds * rate)]
        codes = generator.encode_audio(wave)[:, :kept]  # (F, Q')
        recon = torch.from_numpy(generator.decode_codes(codes)[: len(wave)])[None]
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
        "codebooks": kept,
        "code_rate_hz": generator.code_rate,
        "bitrate_bps": generator.bitrate * kept / q.levels,
    }
