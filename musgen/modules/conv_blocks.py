"""1-D convolutional encoder/decoder for waveforms (Jukebox / SEANet style): dilated residual units
at each resolution and strided convolutions between them. Shapes are channels-first (B, C, T).

A stride-s down-sampling conv has kernel 2s and padding ceil(s/2), so T samples -> T / s frames
exactly when T is a multiple of s (the codec pads its input to a multiple of the total hop); the
transposed conv inverts it, T / s -> T, for odd strides too (output_padding).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ResidualUnit(nn.Module):
    """x + conv1x1(elu(conv_k3_dilated(elu(x)))): receptive field grows as 1, 3, 9 ... per level."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(),
            nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation),
            nn.ELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x):  # (B, C, T) -> (B, C, T)
        return x + self.block(x)


def residual_stack(channels: int, dilations: list[int]) -> nn.Sequential:
    return nn.Sequential(*(ResidualUnit(channels, d) for d in dilations))


def downsample(c_in: int, c_out: int, stride: int) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2))


def upsample(c_in: int, c_out: int, stride: int) -> nn.ConvTranspose1d:
    pad = math.ceil(stride / 2)
    return nn.ConvTranspose1d(
        c_in, c_out, 2 * stride, stride=stride, padding=pad, output_padding=2 * pad - stride
    )


def level_channels(base: int, maximum: int, levels: int) -> list[int]:
    """Channels before each down-sampling and after the last: doubling from ``base``, capped."""
    return [min(base * 2**i, maximum) for i in range(levels + 1)]


class SpectralSideInput(nn.Module):
    """(B, 1, T) waveform -> (B, D, T / hop): a long-window log-magnitude STFT, one frame centred on
    each latent frame, through a zero-initialized convolution. Added to the convolutional encoder's
    latents it hands the encoder the fine frequency structure (bins 7.8 Hz apart at 2,048 points
    and 16 kHz) that its small strided stack has to work out from samples; zero at first, so a trained
    encoder that gets one starts out encoding exactly as before."""

    window: torch.Tensor

    def __init__(self, latent_dim: int, hop: int, n_fft: int):
        super().__init__()
        self.hop, self.n_fft = hop, n_fft
        self.proj = nn.Conv1d(n_fft // 2 + 1, latent_dim, 3, padding=1)
        # Adam moves every weight by about lr a step, so unscaled features (3 x bins inputs per
        # latent) would shift the latents by ~lr x 3,000 a step from the first one (measured: the
        # commitment loss doubled at once); 1 / sqrt(fan-in) keeps a loaded encoder's codes steady
        self.scale = (3 * (n_fft // 2 + 1)) ** -0.5
        nn.init.zeros_(self.proj.weight)
        assert self.proj.bias is not None  # a Conv1d's, made above
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wave = x.float().reshape(x.shape[0], x.shape[-1])  # (B, T), T a multiple of hop
        side = (self.n_fft - self.hop) // 2  # frame f centred on sample (f + 1/2) * hop
        padded = nn.functional.pad(wave[:, None], (side, self.n_fft - self.hop - side))[:, 0]
        spec = torch.stft(padded, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        features = (spec.abs() + 1e-4).log().add(5.0).div(3.0)  # (B, bins, T / hop), roughly in [-1.5, 3]
        return self.proj(features * self.scale)


class WaveEncoder(nn.Module):
    """(B, 1, T) waveform -> (B, D, T / prod(strides)) latents; with ``spectral_n_fft`` the
    ``SpectralSideInput`` of that many points is added to them."""

    def __init__(
        self,
        latent_dim: int,
        strides: list[int],
        base: int,
        maximum: int,
        dilations: list[int],
        spectral_n_fft: int = 0,
    ):
        super().__init__()
        ch = level_channels(base, maximum, len(strides))
        layers: list[nn.Module] = [nn.Conv1d(1, ch[0], 7, padding=3)]
        for i, stride in enumerate(strides):
            layers += [residual_stack(ch[i], dilations), nn.ELU(), downsample(ch[i], ch[i + 1], stride)]
        layers += [nn.ELU(), nn.Conv1d(ch[-1], latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.spectral = (
            SpectralSideInput(latent_dim, math.prod(strides), spectral_n_fft) if spectral_n_fft else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)  # (B, D, F)
        return z if self.spectral is None else z + self.spectral(x).to(z.dtype)


class WaveDecoder(nn.Module):
    """(B, D, F) latents -> (B, 1, F * prod(strides)) waveform (the encoder mirrored)."""

    def __init__(self, latent_dim: int, strides: list[int], base: int, maximum: int, dilations: list[int]):
        super().__init__()
        ch = level_channels(base, maximum, len(strides))
        layers: list[nn.Module] = [nn.Conv1d(latent_dim, ch[-1], 7, padding=3)]
        for i in reversed(range(len(strides))):
            layers += [nn.ELU(), upsample(ch[i + 1], ch[i], strides[i]), residual_stack(ch[i], dilations)]
        layers += [nn.ELU(), nn.Conv1d(ch[0], 1, 7, padding=3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)
