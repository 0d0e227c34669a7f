"""Waveform distances: the codec's training loss and the numbers its validation and evaluation
report (``musgen.eval.audio_metrics`` re-exports them for evaluation code).

* Multi-resolution STFT distance (Yamamoto et al. 2020, as in SoundStream/EnCodec): for each FFT size,
  the mean L1 distance of linear magnitudes plus that of log magnitudes.
* Log-mel L1: mean |log mel(x) - log mel(y)| on an 80-band mel spectrogram (a perceptual proxy).
* SI-SDR (Le Roux et al. 2019): scale-invariant signal-to-distortion ratio in dB; higher is better.
All take waveforms (B, T) or (B, 1, T).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

EPS = 1e-5


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).float()  # (B, T)


def stft_magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(B, T) -> (B, n_fft // 2 + 1, frames), hop n_fft / 4, Hann window."""
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(_flat(x), n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    return spec.abs()


class MultiResolutionSTFTLoss(nn.Module):
    def __init__(self, fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros((), dtype=torch.float32)
        for n_fft in self.fft_sizes:
            est, ref = stft_magnitude(estimate, n_fft), stft_magnitude(reference, n_fft)
            total = total + (est - ref).abs().mean() + ((est + EPS).log() - (ref + EPS).log()).abs().mean()
        return total / len(self.fft_sizes)


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )  # (F, M)
    return torch.from_numpy(bank).float()


def log_mel(x: torch.Tensor, sample_rate: int, n_fft: int = 1024, n_mels: int = 80) -> torch.Tensor:
    """(B, T) -> (B, n_mels, frames) natural-log mel power."""
    power = stft_magnitude(x, n_fft) ** 2  # (B, F, frames)
    mel = torch.einsum("bft,fm->bmt", power, _mel_filters(sample_rate, n_fft, n_mels).to(power.device))
    return (mel + EPS).log()


def log_mel_l1(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean |log mel(estimate) - log mel(reference)| per item: (B,)."""
    return (log_mel(estimate, sample_rate) - log_mel(reference, sample_rate)).abs().mean(dim=(1, 2))


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB per item: (B,). Means are removed first."""
    est, ref = _flat(estimate).double(), _flat(reference).double()
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + EPS)
    target = scale * ref
    noise = est - target
    return (10 * torch.log10((target.pow(2).sum(-1) + EPS) / (noise.pow(2).sum(-1) + EPS))).float()
