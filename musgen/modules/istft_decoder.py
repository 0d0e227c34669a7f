"""A Vocos-style codec decoder (Siuzdak 2023): latents -> ConvNeXt blocks at the code frame rate ->
an STFT (log magnitude and phase per bin) -> inverse STFT. All the work happens at the frame rate,
none at the sample rate, so it decodes many times faster than the transposed-convolution stack of
``musgen.modules.conv_blocks.WaveDecoder``, and it writes the spectrum (harmonics, noise floor)
directly, which is what the codec's spectral losses measure.

Phase (``phase``): ``direct`` writes each bin's phase as torch.istft reads it, relative to the
start of each frame. A partial held at bin k's centre frequency then has to advance by
2 pi k hop / n_fft a frame, so a translation-invariant network keeps it steady over the 16 frames of
a 2,048-point window only if the codes carry its phase, and 40 bits a frame cannot for dozens of
partials (where they do, low partials, the direct phase is the true one). ``steady`` gives each bin
a second, steady component: its phase is written as the deviation from that advance (the phase
vocoder's convention), so a constant written phase is a held partial, and a gate per bin and frame
shares the magnitude between the two. ``integrated`` also adds to the steady phase the running sum
over frames of a third head's advance (an instantaneous frequency off the bin's centre). The gate
starts nearly closed (2.5e-3) and the advance at zero, so a direct decoder loaded into either begins
almost exactly where it left off.

Frames: for F latent frames the head writes F + 1 STFT frames (the last latent repeated) centred on
sample f * hop, so ``torch.istft`` returns exactly F * hop samples.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_MAGNITUDE_MAX = 10.0  # exp(10) ~ 2e4: far above any real bin; keeps an untrained head finite


GATE_START = -6.0  # sigmoid: 2.5e-3 of each bin's magnitude in the steady component at first


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

    def __init__(
        self,
        latent_dim: int,
        hop: int,
        channels: int = 256,
        blocks: int = 6,
        n_fft: int = 0,
        phase: str = "direct",
    ):
        super().__init__()
        self.hop, self.n_fft = hop, n_fft or 4 * hop
        self.stem = nn.Conv1d(latent_dim, channels, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(channels) for _ in range(blocks)))
        self.norm = nn.LayerNorm(channels)
        bins = self.n_fft // 2 + 1
        self.head = nn.Linear(channels, 2 * bins)  # log magnitude and phase per bin
        self.steady_head: nn.Linear | None = None  # gate and steady phase per bin (see above)
        self.advance_head: nn.Linear | None = None  # phase advance per bin, summed over frames
        if phase != "direct":
            self.steady_head = nn.Linear(channels, 2 * bins)
            nn.init.zeros_(self.steady_head.weight)
            nn.init.zeros_(self.steady_head.bias)
            nn.init.constant_(self.steady_head.bias[:bins], GATE_START)
        if phase == "integrated":
            self.advance_head = nn.Linear(channels, bins)
            nn.init.zeros_(self.advance_head.weight)
            nn.init.zeros_(self.advance_head.bias)
        # (bins, 1): bin k's centre-frequency advance per frame, 2 pi k hop / n_fft
        advance = 2 * math.pi * torch.arange(bins, dtype=torch.float64)[:, None] * hop / self.n_fft
        self.register_buffer("bin_advance", advance, persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        frames = z.shape[-1]
        h = self.blocks(self.stem(z.float()))  # (B, C, F)
        h = torch.cat([h, h[..., -1:]], dim=-1)  # (B, C, F + 1): one STFT frame per hop boundary
        h = self.norm(h.transpose(1, 2))  # (B, F + 1, C)
        out = self.head(h).float().transpose(1, 2)  # fp32 under autocast too
        log_mag, phase = out.chunk(2, dim=1)  # (B, bins, F + 1) each
        magnitude = log_mag.clamp(max=LOG_MAGNITUDE_MAX).exp()
        spec = torch.polar(magnitude, phase)  # (B, bins, F + 1)
        if self.steady_head is not None:
            gate, steady = self.steady_head(h).float().transpose(1, 2).chunk(2, dim=1)  # (B, bins, F + 1)
            # float64: pieces run to 10^4 frames; the angle only matters modulo 2 pi
            steps = torch.arange(frames + 1, device=z.device, dtype=torch.float64)
            offset = self.bin_advance * steps  # (bins, F + 1)
            if self.advance_head is not None:  # 1/16: small steps for a sum over hundreds of frames
                advance = self.advance_head(h).double().transpose(1, 2) / 16  # (B, bins, F + 1)
                offset = offset + advance.cumsum(-1)
            share = torch.sigmoid(gate)
            steady_phase = steady + offset.remainder(2 * math.pi).float()
            spec = spec * (1 - share) + torch.polar(magnitude * share, steady_phase)
        wave = torch.istft(
            spec, self.n_fft, hop_length=self.hop, window=self.window, center=True, length=frames * self.hop
        )
        return wave[:, None]  # (B, 1, F * hop)
