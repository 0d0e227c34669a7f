"""Paths through a latent space: spherical interpolation (slerp) between two latent vectors."""

from __future__ import annotations

import torch

from musgen.errors import MusgenError


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) between (Z,) vectors, as Magenta's MusicVAE: it keeps
    the norm typical of Gaussian latents where a straight line would pass near the origin. Falls
    back to linear interpolation for (anti)parallel vectors."""
    z0d, z1d = z0.double(), z1.double()
    cos = torch.dot(z0d / z0d.norm(), z1d / z1d.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if float(torch.sin(omega).abs()) < 1e-6:
        out = (1.0 - t) * z0d + t * z1d
    else:
        out = (torch.sin((1.0 - t) * omega) * z0d + torch.sin(t * omega) * z1d) / torch.sin(omega)
    return out.to(z0.dtype)


def interpolation_path(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points from z0 to z1, both endpoints included (Magenta's num_steps): (steps, Z)."""
    if steps < 2:
        raise MusgenError(f"--steps must be at least 2 (the two endpoints), got {steps}")
    return torch.stack([slerp(z0, z1, i / (steps - 1)) for i in range(steps)])
