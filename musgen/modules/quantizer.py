"""Vector quantizers for the audio codec, built on lucidrains' ``vector-quantize-pytorch``.

``vq``: one EMA codebook (k-means init on the first batch, dead codes restarted from current encoder
outputs, commitment loss, straight-through gradients: Jukebox/SoundStream). ``rvq``: residual VQ,
``num_quantizers`` such codebooks, each quantizing what the previous ones left. ``fsq``: finite scalar
quantization (Mentzer et al. 2023), no codebook to collapse and no auxiliary loss.

All take and return channels-first latents (B, D, T); codes are (B, T, Q) with Q = num_quantizers
(1 for vq and fsq), each in [0, codebook_size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from musgen.errors import ConfigError

KINDS = ("vq", "rvq", "fsq")

try:  # the library logs through loguru (e.g. k-means on fewer vectors than codes): keep our logs clean
    from loguru import logger as _loguru

    _loguru.disable("vector_quantize_pytorch")
except ImportError:  # pragma: no cover
    pass


@dataclass
class QuantizerConfig:
    kind: str = "vq"  # vq | rvq | fsq
    codebook_size: int = 1024  # vq / rvq (fsq: the product of fsq_levels)
    num_quantizers: int = 1  # rvq only
    decay: float = 0.9  # EMA decay of the codebook (0.99 collapsed small codecs in our runs)
    commitment_weight: float = 1.0
    kmeans_init: bool = True  # codebook from k-means on the first batch
    kmeans_iters: int = 10
    # Restart codes whose EMA count of assignments per batch falls below this (0 = never).
    dead_code_threshold: float = 0.25
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    # rvq: train with a random number of levels per batch (SoundStream's quantizer dropout), so that
    # the first n levels alone decode to usable audio: one codec, several bitrates.
    quantize_dropout: bool = False

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"quantizer.kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.codebook_size < 2 or self.num_quantizers < 1:
            raise ConfigError("quantizer.codebook_size must be >= 2 and quantizer.num_quantizers >= 1")
        if self.quantize_dropout and self.kind != "rvq":
            raise ConfigError("quantizer.quantize_dropout needs quantizer.kind: rvq")
        if self.kind == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise ConfigError("quantizer.fsq_levels must be a list of integers >= 2")

    @property
    def levels(self) -> int:
        """Codes per latent frame."""
        return self.num_quantizers if self.kind == "rvq" else 1

    @property
    def codes(self) -> int:
        """Size of each codebook."""
        return math.prod(self.fsq_levels) if self.kind == "fsq" else self.codebook_size


# EMA sums of the codebook vectors assigned to each code: training state only (the codebook itself
# is ``embed``). Shipped checkpoints leave them out (musgen.checkpoint.pack_checkpoint: 0.5 MB of a
# 4 x 1,024 x 64 codec); loading rebuilds them from ``embed`` and ``cluster_size``.
TRAINING_ONLY_SUFFIX = ".embed_avg"


def is_training_only(name: str) -> bool:
    """Whether the weight ``name`` is a codebook's EMA sum (nothing but training reads it)."""
    return name.endswith(TRAINING_ONLY_SUFFIX)


class Quantizer(nn.Module):
    """(B, D, T) latents -> quantized latents (B, D, T), codes (B, T, Q), auxiliary loss (scalar)."""

    def __init__(self, dim: int, cfg: QuantizerConfig):
        super().__init__()
        from vector_quantize_pytorch import FSQ, ResidualVQ, VectorQuantize

        self.cfg = cfg
        common = dict(
            dim=dim,
            codebook_size=cfg.codebook_size,
            decay=cfg.decay,
            commitment_weight=cfg.commitment_weight,
            kmeans_init=cfg.kmeans_init,
            kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=cfg.dead_code_threshold,
            rotation_trick=False,  # plain straight-through
        )
        if cfg.kind == "vq":
            self.vq = VectorQuantize(**common, channel_last=False)
        elif cfg.kind == "rvq":
            self.vq = ResidualVQ(  # channels-last only
                **common, num_quantizers=cfg.num_quantizers, quantize_dropout=cfg.quantize_dropout
            )
        else:
            self.vq = FSQ(levels=list(cfg.fsq_levels), dim=dim, channel_first=True)
        self._register_load_state_dict_pre_hook(self._rebuild_ema_sums)

    def _rebuild_ema_sums(self, state: dict[str, torch.Tensor], prefix: str, *args: Any) -> None:
        """A checkpoint without the EMA sums (packed): embed_avg (1, K, D) = embed (1, K, D) x
        cluster_size (1, K), the sums the EMA divides by the counts to get the codebook."""
        for name, _ in self.named_buffers():
            key = prefix + name
            if is_training_only(key) and key not in state:
                stem = key[: -len(TRAINING_ONLY_SUFFIX)]
                if stem + ".embed" in state and stem + ".cluster_size" in state:
                    state[key] = (
                        state[stem + ".embed"].float() * state[stem + ".cluster_size"].float()[..., None]
                    )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = z.float()  # codebook distances and EMA statistics in fp32 under autocast too
        if self.cfg.kind == "fsq":
            quantized, codes = self.vq(z)
            return quantized, codes[..., None], z.new_zeros(())
        if self.cfg.kind == "rvq":
            quantized, codes, aux = self.vq(z.transpose(1, 2))  # (B, T, D), (B, T, Q), (1, Q)
            return quantized.transpose(1, 2), codes, aux.sum()
        quantized, codes, aux = self.vq(z)  # (B, D, T), (B, T), scalar
        return quantized, codes[..., None], aux.sum()

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, Q) -> quantized latents (B, D, T). A codec trained with quantize_dropout also
        decodes its first n < Q levels alone (codes (B, T, n))."""
        if self.cfg.kind == "fsq":
            return self.vq.indices_to_codes(codes[..., 0])
        if self.cfg.kind == "vq":
            return self.vq.get_output_from_indices(codes[..., 0])  # already channels-first
        return self.vq.get_output_from_indices(codes).transpose(1, 2)


def code_statistics(counts: torch.Tensor) -> dict[str, float]:
    """Usage (share of codes used at least once) and perplexity (exp of the code entropy) from
    assignment counts (Q, K), averaged over the Q codebooks; with several codebooks (residual VQ)
    also each level's, as ``code_usage_l0``, ``code_perplexity_l0``, ... (a dead residual level
    hides in the mean)."""
    counts = counts.double().reshape(-1, counts.shape[-1])
    probs = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    usage = (counts > 0).double().mean(-1)  # (Q,)
    perplexity = (-(probs * probs.clamp(min=1e-12).log()).sum(-1)).exp()  # (Q,)
    stats = {"code_usage": float(usage.mean()), "code_perplexity": float(perplexity.mean())}
    if len(counts) > 1:
        for level in range(len(counts)):
            stats[f"code_usage_l{level}"] = float(usage[level])
            stats[f"code_perplexity_l{level}"] = float(perplexity[level])
    return stats


def code_counts(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes (B, T, Q) -> assignment counts (Q, K)."""
    flat = codes.reshape(-1, codes.shape[-1]).long()
    offsets = torch.arange(flat.shape[1], device=flat.device) * codebook_size
    return torch.bincount((flat + offsets).flatten(), minlength=flat.shape[1] * codebook_size).view(
        -1, codebook_size
    )
