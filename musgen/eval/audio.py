"""Held-out evaluation of an audio codec's reconstructions.

Every piece of a split (its first ``max_seconds``) is encoded and decoded; reported are the
multi-resolution STFT distance, log-mel L1 and SI-SDR averaged over pieces, codebook usage and
perplexity over all the split's codes, and the bitrate.
"""

from __future__ import annotations

import math
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
    precision: str = "auto",
) -> dict[str, Any]:
    """``generator``: ``musgen.load`` of a vqvae checkpoint. ``reconstructions``, when given, receives
    an (original, reconstruction) pair of waveforms per piece. ``levels``: decode from the first
    ``levels`` residual codebooks only (a codec trained with quantizer.quantize_dropout): the codec at
    a lower bitrate. ``precision``: the encoder's (``VQVAEGenerator.encode_audio``)."""
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
        codes = generator.encode_audio(wave, precision)[:, :kept]  # (F, Q')
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
        "encoder_bf16": generator.encoder_bf16(precision),
    }


def held_out_clips(
    data_dir: Path, split: str, count: int, start_seconds: float, seconds: float, rate: int
) -> list[np.ndarray]:
    """[start_seconds, start_seconds + seconds) of the first ``count`` pieces of ``split`` that are
    long enough to hold it."""
    from musgen.data.audio_data import audio_pieces

    start, length = round(start_seconds * rate), round(seconds * rate)
    clips = [wave[start : start + length] for wave in audio_pieces(data_dir, split)]
    return [clip for clip in clips if len(clip) == length][:count]


SILENCE_DB = -45.0  # RMS level of a 0.1-s stretch counted as silence (the rendered chorales: 0 %)


def silent_fraction(waves: list[np.ndarray], rate: int) -> float:
    """The fraction of 0.1-s stretches of ``waves`` quieter than ``SILENCE_DB`` (RMS, dBFS): what a
    continuation that stalls into silence shows first."""
    width, quiet, total = rate // 10, 0, 0
    for wave in waves:
        frames = np.asarray(wave[: len(wave) // width * width], np.float64).reshape(-1, width)
        quiet += int((np.sqrt((frames**2).mean(axis=1)) < 10 ** (SILENCE_DB / 20)).sum())
        total += len(frames)
    return quiet / max(total, 1)


def spectral_flatness(waves: list[np.ndarray], n_fft: int = 1024) -> float:
    """Mean spectral flatness (geometric over arithmetic mean of the power spectrum) of the
    ``n_fft``-sample Hann-windowed frames of ``waves``, non-overlapping: near 0 for harmonic tones,
    about 0.56 for white noise. Noise drawn between a chord's partials raises it."""
    window = np.hanning(n_fft)
    values = []
    for wave in waves:
        frames = np.asarray(wave[: len(wave) // n_fft * n_fft], np.float64).reshape(-1, n_fft)
        power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 + 1e-12  # (frames, bins)
        values.append(np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1))
    return float(np.concatenate(values).mean()) if values else 0.0


def by_third(
    others: list[np.ndarray], generated: list[np.ndarray], truth: list[np.ndarray], rate: int
) -> dict[str, list[float]]:
    """The Frechet distances of each third of the new audio (its first, middle and last third, the
    comparison clips cut alike): a continuation that drifts away from its prompt grows worse third by
    third, one that is off from the start does not. Fewer windows than the whole clips: read these
    against the real-vs-real thirds, not against the whole-clip distances."""
    from musgen.eval.frechet import embed_clips, frechet_distance

    def third(waves: list[np.ndarray], k: int) -> np.ndarray:  # (windows, D) embeddings of third k
        return embed_clips([w[len(w) * k // 3 : len(w) * (k + 1) // 3] for w in waves], rate)

    reference = [third(others, k) for k in range(3)]  # embedded once for both rows
    return {
        name: [frechet_distance(reference[k], third(waves, k)) for k in range(3)]
        for name, waves in (("model", generated), ("real_vs_real", truth))
    }


def evaluate_continuations(
    prior: Any,
    data_dir: Path,
    split: str = "test",
    reference_split: str = "valid",
    count: int = 16,
    prompt_seconds: float = 4.0,
    new_seconds: float = 6.0,
    offset_seconds: float = 1.0,
    seed: int = 0,
    **sampling: Any,
) -> dict[str, Any]:
    """Continuations of ``count`` held-out prompts (``prompt_seconds`` of a ``split`` piece from
    ``offset_seconds`` on), each ``new_seconds`` long, against real audio of the same count and
    length. The comparison set is the same stretch of ``count`` ``reference_split`` pieces (disjoint
    from the prompts' pieces); the real-vs-real reference is the prompts' true continuations
    against it, so the model's Frechet distance and the reference's are read on one scale. Also
    reported: the codec alone (the true continuations encoded and decoded) against the same set."""
    import tempfile

    from musgen.data.audio_io import write_audio
    from musgen.eval.frechet import audio_frechet

    rate = prior.sample_rate
    after = offset_seconds + prompt_seconds
    prompts = held_out_clips(data_dir, split, count, offset_seconds, prompt_seconds + new_seconds, rate)
    others = held_out_clips(data_dir, reference_split, count, after, new_seconds, rate)
    if len(prompts) < 2 or len(others) < len(prompts):
        raise MusgenError(
            f"need at least 2 {split} pieces and as many {reference_split} pieces of "
            f"{after + new_seconds:g} s or more"
        )
    others = others[: len(prompts)]
    cut = round(prompt_seconds * rate)
    truth, generated, decoded = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k, clip in enumerate(tqdm(prompts, desc=f"continue {split}", unit="prompt")):
            path = Path(tmp) / f"prompt{k}.wav"
            write_audio(path, clip[:cut], rate)
            (out,) = prior.generate(1, prime=path, seconds=new_seconds, seed=seed + k, **sampling)
            kept = len(out) - math.ceil(new_seconds * prior.code_rate) * prior.hop  # whole prompt frames
            truth.append(clip[cut:])
            generated.append(out[kept : kept + len(clip) - cut])
            decoded.append(prior.codec.reconstruct_audio(clip[cut:]))
    return {
        "split": split,
        "reference_split": reference_split,
        "prompts": len(prompts),
        "prompt_seconds": prompt_seconds,
        "new_seconds": new_seconds,
        "sampling": {  # as given, else the checkpoint's recommendation
            **prior.sampling_settings(**{k: sampling.get(k) for k in ("temperature", "top_k", "top_p")}),
            **prior.option_sampling(sampling),
        },
        "model": audio_frechet(others, generated, rate),
        "real_vs_real": audio_frechet(others, truth, rate),
        "codec_only": audio_frechet(others, decoded, rate),
        "model_vs_truth": audio_frechet(truth, generated, rate),
        "silent_fraction": {"model": silent_fraction(generated, rate), "real": silent_fraction(truth, rate)},
        "by_third": by_third(others, generated, truth, rate),
        "spectral_flatness": {
            "model": spectral_flatness(generated),
            "real": spectral_flatness(truth),
            "codec_only": spectral_flatness(decoded),
        },
    }
