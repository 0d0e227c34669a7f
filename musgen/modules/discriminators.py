"""EnCodec's multi-scale STFT discriminator (Défossez et al. 2022) and its losses, for the codec's
optional adversarial training (``loss.adversarial_weight``).

Each scale takes the complex STFT of a waveform (real and imaginary parts as two channels, time x
frequency) through 2-D convolutions dilated in time and strided in frequency, to a map of logits.
Losses as EnCodec: hinge for the discriminator and the generator, and feature matching (the L1 distance
of every layer's activations on the real and the reconstructed audio, relative to the real ones').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

DiscriminatorOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]  # per scale: logits, features


class STFTDiscriminator(nn.Module):
    """One scale: waveform (B, 1, T) -> logits (B, 1, frames, bins') and the feature maps."""

    window: torch.Tensor

    def __init__(self, n_fft: int, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [nn.Conv2d(2, channels, (3, 9), padding=(1, 4))]
        for d in dilations:  # time dilated, frequency halved
            convs.append(
                nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))
            )
        convs.append(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]).float(), self.n_fft, self.hop, window=self.window, return_complex=True
        )  # (B, F, frames)
        h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, frames, F)
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.out(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """One ``STFTDiscriminator`` per FFT size: waveform (B, 1, T) -> [(logits, features)] per scale."""

    def __init__(self, fft_sizes: tuple[int, ...] = (1024, 512, 256), channels: int = 32):
        super().__init__()
        self.scales = nn.ModuleList(STFTDiscriminator(n, channels) for n in fft_sizes)

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        return [scale(x) for scale in self.scales]


def discriminator_hinge_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """Mean over scales of E[relu(1 - D(real))] + E[relu(1 + D(fake))]."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


def generator_hinge_loss(fake: DiscriminatorOutput) -> torch.Tensor:
    """Mean over scales of E[relu(1 - D(reconstruction))]."""
    return torch.stack([F.relu(1 - f).mean() for f, _ in fake]).mean()


def feature_matching_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """Mean over scales and layers of |features(real) - features(fake)|, each relative to the mean
    |features(real)| of its layer (EnCodec's normalised feature matching)."""
    terms = [
        (r - f).abs().mean() / (r.abs().mean() + 1e-5)
        for (_, real_feats), (_, fake_feats) in zip(real, fake, strict=True)
        for r, f in zip(real_feats, fake_feats, strict=True)
    ]
    return torch.stack(terms).mean()
