"""A Vocos-style codec decoder (Siuzdak 2023): latents -> ConvNeXt blocks at the code frame rate ->
an STFT (log magnitude and phase per bin) -> inverse STFT. All the work happens at the frame rate,
none at the sample rate, so it decodes many times faster than the transposed-convolution stack of
``musgen.modules.conv_blocks.WaveDecoder``, and it writes the spectrum (harmonics, noise floor)
directly, which is what the codec's spectral losses measure.

Frames: for F latent frames the head writes F + 1 STFT frames (the last latent repeated) centred on
sample f * hop, so ``torch.istft`` returns exactly F * hop samples.
"""

from __future__ import annotations

import torch
from torch import nn

LOG_MAGNITUDE_MAX = 10.0  # exp(10) ~ 2e4: far above any real bin; keeps an untrained head finite


class ConvNeXtBlock(nn.Module):
    """x + gamma * pointwise(gelu(pointwise(norm(depthwise_conv7(x))))), channels-first (B, C, F)."""

    def __init__(self, channels: int, expansion: int = 3):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, expansion * channels)
        self.down = nn.Linear(expansion * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), 1.0 / 8))  # layer scale
        self._register_load_state_dict_pre_hook(self._identity_when_absent)

    def _identity_when_absent(self, state: dict[str, torch.Tensor], prefix: str, *args: object) -> None:
        """A block the loaded weights lack entirely (a decoder grown by ``model.decoder_blocks``, loaded
        with ``train.init_from``) starts as the identity: its layer scale at zero, so the grown
        decoder begins exactly where the checkpoint's left off and training grows the new block."""
        if not any(key.startswith(prefix) for key in state):
            with torch.no_grad():
                self.gamma.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(x).transpose(1, 2)  # (B, F, C)
        h = self.down(nn.functional.gelu(self.up(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ISTFTDecoder(nn.Module):
    """(B, D, F) latents -> (B, 1, F * hop) waveform through an inverse STFT (n_fft: 4 * hop when 0)."""

    window: torch.Tensor

    def __init__(self, latent_dim: int, hop: int, channels: int = 256, blocks: int = 6, n_fft: int = 0):
        super().__init__()
        self.hop, self.n_fft = hop, n_fft or 4 * hop
        self.stem = nn.Conv1d(latent_dim, channels, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(channels) for _ in range(blocks)))
        self.norm = nn.LayerNorm(channels)
        bins = self.n_fft // 2 + 1
        self.head = nn.Linear(channels, 2 * bins)  # log magnitude and phase per bin
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        frames = z.shape[-1]
        h = self.blocks(self.stem(z.float()))  # (B, C, F)
        h = torch.cat([h, h[..., -1:]], dim=-1)  # (B, C, F + 1): one STFT frame per hop boundary
        out = self.head(self.norm(h.transpose(1, 2))).float().transpose(1, 2)  # fp32 under autocast too
        log_mag, phase = out.chunk(2, dim=1)  # (B, bins, F + 1) each
        spec = torch.polar(log_mag.clamp(max=LOG_MAGNITUDE_MAX).exp(), phase)  # (B, bins, F + 1)
        wave = torch.istft(
            spec, self.n_fft, hop_length=self.hop, window=self.window, center=True, length=frames * self.hop
        )
        return wave[:, None]  # (B, 1, F * hop)
