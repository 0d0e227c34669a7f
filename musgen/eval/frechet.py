"""A Frechet distance between sets of audio clips on the embeddings of a fixed, randomly weighted,
musically motivated CNN: FAD's recipe (Kilgour et al. 2019) without downloaded weights.

The embedding network follows the musicnn front-end (Pons & Serra 2019) over a 96-band log-mel
spectrogram of 16 kHz audio (1024-point FFT, hop 256: 62.5 frames per second):

* timbral branches: vertical filters spanning 40% and 70% of the mel bands and 1, 3 or 7 frames,
  max-pooled over frequency (what a sound's spectral envelope looks like);
* temporal branches: horizontal filters of 16, 32 and 64 frames (0.25 s to 1 s) over the
  band-averaged spectrogram (its loudness envelope: onsets and rhythm).

Weights are drawn once from a fixed seed (He initialisation), there are no biases and no batch
normalisation: random CNN features of this shape work nearly as well as trained ones for music
classification (Pons & Serra, "Randomly weighted CNNs for (music) audio classification", ICASSP
2019). The distance is deterministic: the same clips always give the same number, on any machine
that runs the same torch build.

A clip's frame features are pooled (mean and max over time) in 1-second windows every 0.5 s; a set of
clips is the Gaussian of all its windows, and two sets are compared by the Frechet distance
||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2). Its value depends on the number of windows
(estimates from few windows are biased upwards): compare sets of similar sizes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musgen.eval.audio_metrics import EPS, log_mel

SAMPLE_RATE = 16000
N_FFT = 1024
N_MELS = 96
FRAMES_PER_SECOND = SAMPLE_RATE / (N_FFT // 4)
WINDOW_SECONDS = 1.0
HOP_SECONDS = 0.5
SEED = 0


class RandomMusicCNN(nn.Module):
    """Log-mel (B, M, T) -> frame features (B, C, T); weights from ``seed``, never trained."""

    def __init__(self, n_mels: int = N_MELS, channels: int = 8, seed: int = SEED):
        super().__init__()
        heights = (round(0.4 * n_mels), round(0.7 * n_mels))
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, channels, (h, w), bias=False) for h in heights for w in (1, 3, 7)
        )
        self.temporal = nn.ModuleList(nn.Conv1d(1, channels, w, bias=False) for w in (16, 32, 64))
        gen = torch.Generator().manual_seed(seed)
        for conv in (*self.timbral, *self.temporal):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=gen)
        self.requires_grad_(False)
        self.eval()

    @property
    def dim(self) -> int:
        """Size of a window embedding: mean and max of every channel."""
        return 2 * sum(conv.out_channels for conv in (*self.timbral, *self.temporal))

    @staticmethod
    def _same(x: torch.Tensor, width: int) -> torch.Tensor:
        return F.pad(x, ((width - 1) // 2, width // 2))  # pads the last (time) axis

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel[:, None]  # (B, 1, M, T)
        timbral = cast("list[nn.Conv2d]", list(self.timbral))  # ModuleList items are typed as Module
        temporal = cast("list[nn.Conv1d]", list(self.temporal))
        # each branch: (B, C, T)
        outs = [F.relu(conv(self._same(x, conv.kernel_size[1]))).amax(dim=2) for conv in timbral]
        envelope = x.mean(dim=2)  # (B, 1, T)
        outs += [F.relu(conv(self._same(envelope, conv.kernel_size[0]))) for conv in temporal]
        return torch.cat(outs, dim=1)  # (B, C_total, T)


@functools.lru_cache(maxsize=1)
def embedding_network() -> RandomMusicCNN:
    return RandomMusicCNN()


def _resample(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if sample_rate == SAMPLE_RATE:
        return wave
    import soxr

    return soxr.resample(wave, sample_rate, SAMPLE_RATE).astype(np.float32)


@torch.no_grad()
def embed_clip(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """One mono clip -> (windows, D) embeddings (one window for a clip shorter than a second)."""
    x = torch.from_numpy(_resample(wave, sample_rate))
    if len(x) < N_FFT:
        x = F.pad(x, (0, N_FFT - len(x)))
    mel = log_mel(x[None], SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS) - float(np.log(EPS))  # >= 0: silence is 0
    frames = embedding_network()(mel)[0]  # (C, T)
    size, hop = round(WINDOW_SECONDS * FRAMES_PER_SECOND), round(HOP_SECONDS * FRAMES_PER_SECOND)
    t = frames.shape[1]
    starts = range(0, max(t - size, 0) + 1, hop)
    windows = [frames[:, s : s + size] for s in starts]
    return torch.stack([torch.cat([w.mean(1), w.amax(1)]) for w in windows]).double().numpy()


def embed_clips(waves: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """Clips -> (all windows, D) embeddings."""
    if not waves:
        return np.zeros((0, embedding_network().dim))
    return np.concatenate([embed_clip(w, sample_rate) for w in waves])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``a`` (N, D) and ``b`` (M, D).

    Tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a^1/2 S_b S_a^1/2
    (symmetric, positive semi-definite), so no general matrix square root is needed."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two (N >= 2, D) arrays of the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = _psd_sqrt(s_a)
    middle = root @ s_b @ root
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt)
    return max(value, 0.0)


def audio_frechet(reference: Sequence[np.ndarray], generated: Sequence[np.ndarray], sample_rate: int) -> dict:
    """The Frechet distance of two sets of clips at ``sample_rate``, with how many windows each gave
    and its mean term (||mu_a - mu_b||^2: what the average embedding alone contributes; the rest is
    the covariances')."""
    ref, gen = embed_clips(reference, sample_rate), embed_clips(generated, sample_rate)
    return {
        "frechet_distance": frechet_distance(ref, gen),
        "mean_term": float(((ref.mean(0) - gen.mean(0)) ** 2).sum()),
        "reference_windows": len(ref),
        "generated_windows": len(gen),
        "embedding": "random musicnn-style CNN (seed 0)",
        "dim": ref.shape[1],
    }
