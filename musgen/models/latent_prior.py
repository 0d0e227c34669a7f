"""A learned prior over a bar-latent MusicVAE's z, fitted after the VAE (a "two-stage" VAE).

With ``model.bar_latents`` every bar has its own slice of z, and the encoder's slices of one tune are
strongly dependent (one key, one register, one rhythm), which N(0, I) does not know: bars drawn
from it independently wander between keys and octaves (16-bar folk, decoder temperature 0.5:
pitch range 35.8 semitones against the data's 15.2). ``LatentPrior`` models the slices in order,
p(z) = p(z_1) p(z_2 | z_1) ... p(z_U | z_<U), each factor a mixture of diagonal Gaussians whose
parameters an LSTM reads off the slices before it. It is fitted to the encoder's posteriors of the
training windows (z drawn from q(z | x) afresh each batch, transposed copies included) and stored in
the checkpoint next to the VAE (``latent_prior.safetensors``, its settings in ``musgen.json``), where
``MusicVAEGenerator.generate`` draws from it instead of N(0, I).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

LATENT_PRIOR = "latent_prior"  # its weights file's stem and its musgen.json entry


@dataclass
class LatentPriorConfig:
    slices: int  # bars of the window: z is (slices * slice_dim,), bar by bar
    slice_dim: int
    hidden: int = 128
    layers: int = 1
    components: int = 16  # mixture components per slice


class LatentPrior(nn.Module):
    """z (B, U * D) -> negative log density (B,); ``sample`` draws z slice by slice."""

    def __init__(self, cfg: LatentPriorConfig):
        super().__init__()
        self.cfg = cfg
        self.start = nn.Parameter(torch.zeros(cfg.slice_dim))  # the input before the first slice
        self.lstm = nn.LSTM(cfg.slice_dim, cfg.hidden, cfg.layers, batch_first=True)
        k, d = cfg.components, cfg.slice_dim
        self.head = nn.Linear(cfg.hidden, k + 2 * k * d)  # mixture logits, means, log scales

    def _mixture(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LSTM outputs (B, S, H) -> logits (B, S, K), means and log scales (B, S, K, D)."""
        k, d = self.cfg.components, self.cfg.slice_dim
        params = self.head(out)
        logits, rest = params[..., :k], params[..., k:].unflatten(-1, (2, k, d))
        return logits, rest[..., 0, :, :], rest[..., 1, :, :].clamp(-7.0, 3.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        slices = z.view(b, self.cfg.slices, self.cfg.slice_dim)  # (B, U, D)
        inputs = torch.cat([self.start.expand(b, 1, -1), slices[:, :-1]], dim=1)  # (B, U, D): shifted
        out, _ = self.lstm(inputs)
        logits, means, log_scales = self._mixture(out)
        x = slices[:, :, None, :]  # (B, U, 1, D)
        per_dim = -0.5 * ((x - means) / log_scales.exp()) ** 2 - log_scales - 0.5 * math.log(2 * math.pi)
        log_p = torch.logsumexp(F.log_softmax(logits, -1) + per_dim.sum(-1), dim=-1)  # (B, U)
        return -log_p.sum(-1)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n draws of z (n, U * D), on the module's device, from a CPU generator's random numbers;
        ``temperature`` < 1 narrows every component (its scales times it): draws nearer the modes."""
        device = self.start.device
        rows = torch.arange(n, device=device)
        x = self.start.expand(n, 1, -1)  # (n, 1, D): the input before slice u
        state = None
        slices = []
        for _ in range(self.cfg.slices):
            out, state = self.lstm(x, state)
            logits, means, log_scales = self._mixture(out[:, 0])  # (n, K), (n, K, D) x 2
            probs = F.softmax(logits.float().cpu(), -1)
            pick = torch.multinomial(probs, 1, generator=generator)[:, 0].to(device)  # a component per row
            noise = torch.randn(n, self.cfg.slice_dim, generator=generator).to(device)
            x = (means[rows, pick] + temperature * log_scales[rows, pick].exp() * noise)[:, None, :]
            slices.append(x[:, 0])
        return torch.cat(slices, dim=1)


def fit_latent_prior(
    mu: np.ndarray,
    sigma: np.ndarray,
    cfg: LatentPriorConfig,
    *,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[LatentPrior, dict[str, Any]]:
    """Fits a LatentPrior to posteriors N(mu, sigma^2) (N, Z) by maximum likelihood on z drawn from
    them each batch (Adam, cosine schedule). Returns the prior (eval mode, CPU) and a record with the
    final train and held-out NLL (nats per window, on z drawn with a fixed seed)."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    prior = LatentPrior(cfg)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    mu_t, sigma_t = torch.as_tensor(mu, dtype=torch.float32), torch.as_tensor(sigma, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    prior.train()
    for _ in tqdm(range(steps), desc="fitting the latent prior", unit="step", disable=not progress):
        rows = torch.randint(0, len(mu_t), (batch_size,), generator=gen)
        z = mu_t[rows] + sigma_t[rows] * torch.randn(batch_size, mu_t.shape[1], generator=gen)
        loss = prior(z).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        sched.step()
    prior.eval()
    record: dict[str, Any] = {"config": asdict(cfg), "steps": steps, "batch_size": batch_size, "lr": lr}
    record["train_nll"] = round(mean_nll(prior, _draws(mu, sigma, seed)), 3)
    if valid is not None:
        z = _draws(*valid, seed)
        record["valid_nll"] = round(mean_nll(prior, z), 3)
        # the reference a learned prior must beat: N(0, I), the VAE's own prior
        record["valid_nll_standard_normal"] = round(
            float(0.5 * (z**2 + math.log(2 * math.pi)).sum(1).mean()), 3
        )
    log.info("latent prior: %s", {k: v for k, v in record.items() if "nll" in k})
    return prior, record


def _draws(mu: np.ndarray, sigma: np.ndarray, seed: int) -> torch.Tensor:
    """One z (N, Z) from each posterior N(mu, sigma^2), from a fixed seed."""
    gen = torch.Generator().manual_seed(seed + 1)
    mu_t, sigma_t = torch.as_tensor(mu, dtype=torch.float32), torch.as_tensor(sigma, dtype=torch.float32)
    return mu_t + sigma_t * torch.randn(mu_t.shape, generator=gen)


@torch.no_grad()
def mean_nll(prior: LatentPrior, z: torch.Tensor) -> float:
    """Mean negative log density of z (N, Z) under the prior (nats per window)."""
    return float(torch.cat([prior(z[i : i + 1024]) for i in range(0, len(z), 1024)]).mean())
