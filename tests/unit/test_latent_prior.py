"""The learned latent prior of bar-latent MusicVAEs: a normalised density, fitted by maximum
likelihood it finds the dependence between slices that N(0, I) misses, and sampling follows it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musgen.models.latent_prior import LatentPrior, LatentPriorConfig, fit_latent_prior


def test_density_integrates_to_one_over_two_one_dimensional_slices():
    torch.manual_seed(0)
    prior = LatentPrior(LatentPriorConfig(slices=2, slice_dim=1, hidden=8, components=3)).double()
    with torch.no_grad():
        prior.head.weight.mul_(5.0)  # far from a standard normal, so the check means something
    grid = torch.linspace(-12, 12, 601, dtype=torch.float64)
    z = torch.cartesian_prod(grid, grid)  # (601^2, 2): z_1, z_2
    with torch.no_grad():
        density = torch.exp(-prior(z)).view(601, 601)
    step = float(grid[1] - grid[0])
    assert float(density.sum()) * step**2 == pytest.approx(1.0, rel=1e-3)


def bimodal_pairs(n: int, seed: int) -> np.ndarray:
    """Slice 2 copies slice 1 (+ small noise); slice 1 is +-2 with a little noise: (n, 2)."""
    rng = np.random.default_rng(seed)
    first = rng.choice([-2.0, 2.0], n) + 0.1 * rng.standard_normal(n)
    return np.stack([first, first + 0.1 * rng.standard_normal(n)], 1)


def test_a_fitted_prior_learns_what_one_slice_says_about_the_next():
    train, valid = bimodal_pairs(4000, 0), bimodal_pairs(500, 1)
    sigma = np.full_like(train, 1e-3)
    cfg = LatentPriorConfig(slices=2, slice_dim=1, hidden=32, components=2)
    prior, record = fit_latent_prior(
        train, sigma, cfg, valid=(valid, np.full_like(valid, 1e-3)), steps=1200, lr=5e-3
    )
    # far better than the standard normal, and close to the truth (entropy of the generating density)
    truth = math.log(2) + 2 * 0.5 * math.log(2 * math.pi * math.e * 0.01)  # mode choice + two 0.1-sd terms
    assert record["valid_nll"] < record["valid_nll_standard_normal"] - 2
    assert record["valid_nll"] < truth + 0.2
    z = prior.sample(2000, torch.Generator().manual_seed(0)).numpy()
    assert np.corrcoef(z[:, 0], z[:, 1])[0, 1] > 0.95  # N(0, I) draws would give 0
    assert 0.4 < (z[:, 0] > 0).mean() < 0.6 and np.abs(np.abs(z[:, 0]) - 2).mean() < 0.3
    again = prior.sample(5, torch.Generator().manual_seed(7))
    assert torch.equal(again, prior.sample(5, torch.Generator().manual_seed(7)))
