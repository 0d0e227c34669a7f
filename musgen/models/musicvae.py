"""MusicVAE (Roberts et al. 2018): a bidirectional LSTM encoder to a Gaussian latent z, and an LSTM
decoder, flat (one LSTM over the whole window, z at every step) or hierarchical (a conductor LSTM
turns z into one embedding per segment, by default a bar; a bottom LSTM, restarted from each
embedding, writes the segment).

Both decoders run through one code path: z becomes ``U`` conditioning vectors (U = 1 for the flat
decoder, U = num_bars / segment_bars for the hierarchical one) and the bottom LSTM decodes U segments of
``T / U`` steps each, in parallel under teacher forcing, one step at a time when free-running.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from musgen.config import TrainConfig
from musgen.data.melody import FIRST_PITCH_ID, HOLD, NOTE_OFF, MelodyConfig
from musgen.errors import CheckpointError, ConfigError, MusgenError
from musgen.generate.sampling import SamplingControls, draw, make_generator, warp_logits
from musgen.generator import Generator
from musgen.models.latent_prior import LATENT_PRIOR, LatentPrior, LatentPriorConfig
from musgen.registry import FamilySpec
from musgen.training.task import StepContext, Task

ENCODERS = ("flat", "hierarchical", "concat")


@dataclass
class MusicVAEModelConfig:
    latent_dim: int = 256
    embed_dim: int = 64  # input token embedding (MusicVAE feeds one-hot vectors; same thing, smaller)
    encoder_hidden: int = 512  # per direction
    encoder_layers: int = 1
    # flat: one BiLSTM over all steps (the paper's); hierarchical: a BiLSTM over each bar, then one
    # over the bars' final states (16 + 16 steps instead of 256 for 16 bars: shorter gradient paths);
    # concat: a BiLSTM over each bar, each bar's final states projected to 2 Z / bars numbers and
    # concatenated, then projected to z (every bar reaches z through one linear path: on 16-bar folk
    # windows it reached the flat encoder's held-out accuracy in a third of the steps)
    encoder: str = "flat"
    decoder: str = "hierarchical"  # flat | hierarchical
    decoder_hidden: int = 512
    decoder_layers: int = 2
    conductor_hidden: int = 512
    conductor_layers: int = 2
    segment_bars: int = 1  # hierarchical decoder: bars per conductor step (the paper's: 1)
    dropout: float = 0.0  # between stacked LSTM layers
    # on the encoder's and the bottom decoder's inputs and on the decoder's outputs: a regulariser for
    # small data, where the latent + decoder memorise training windows (16 bars on 17k folk windows:
    # train recon 144 vs held-out 250 nats at 12,000 steps without it)
    io_dropout: float = 0.0
    # z laid out bar by bar: with the concat encoder each bar's summary gives its own Z / bars slice
    # of mu and sigma (no mixing), and the hierarchical conductor reads segment u's slice as its input
    # at step u (its state still starts from all of z), so a bar's notes reach its decoder through
    # one short path instead of being unmixed from one vector by the conductor's state
    bar_latents: bool = False

    def validate(self) -> None:
        if self.bar_latents and self.encoder != "concat":
            raise ConfigError("model.bar_latents needs model.encoder: concat (one slice of z per bar)")
        if self.decoder not in ("flat", "hierarchical"):
            raise ConfigError(f"model.decoder must be flat or hierarchical, got {self.decoder!r}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"model.encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if not 0 <= self.io_dropout < 1:
            raise ConfigError(f"model.io_dropout must be in [0, 1), got {self.io_dropout}")
        if self.segment_bars < 1:
            raise ConfigError(f"model.segment_bars must be at least 1, got {self.segment_bars}")


@dataclass
class VAELossConfig:
    free_bits: float = 256.0  # KL below this many bits per window is free (MusicVAE's 16-bar value)
    max_beta: float = 0.2  # weight of the KL term once annealed
    beta_anneal_steps: int = 1000  # beta rises linearly from 0 to max_beta over these steps
    scheduled_sampling: float = 0.0  # probability of feeding the decoder its own sample in training


@dataclass
class MusicVAEConfig:
    model: MusicVAEModelConfig = field(default_factory=MusicVAEModelConfig)
    data: MelodyConfig = field(default_factory=MelodyConfig)
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        bars, per = self.data.num_bars, self.model.segment_bars
        if self.model.decoder == "hierarchical" and bars % per:
            raise ConfigError(f"model.segment_bars ({per}) must divide data.num_bars ({bars})")
        if self.model.bar_latents and self.model.latent_dim % bars:
            raise ConfigError(
                f"model.bar_latents needs model.latent_dim ({self.model.latent_dim}) divisible by "
                f"data.num_bars ({bars})"
            )


LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, N, hidden)


def _initial_state(proj: nn.Linear, cond: torch.Tensor, layers: int, hidden: int) -> LSTMState:
    """tanh(W cond) split into the (h, c) of every layer: cond (N, C) -> 2 x (layers, N, hidden)."""
    hc = torch.tanh(proj(cond)).view(cond.shape[0], 2, layers, hidden).permute(1, 2, 0, 3)
    return hc[0].contiguous(), hc[1].contiguous()


def _final_states(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The last layer's final forward and backward states of a bidirectional LSTM: (N, L, ·) -> (N, 2H)."""
    _, (h, _) = lstm(x)  # h: (layers * 2, N, H)
    return torch.cat([h[-2], h[-1]], dim=-1)


class LatentEncoder(nn.Module):
    """events (B, T) -> mu (B, Z), sigma (B, Z) from the last states of a bidirectional LSTM; with
    ``segments`` > 1 bars and a hierarchical encoder, of one over the per-bar BiLSTMs' last states;
    with a concat encoder, from the per-bar BiLSTMs' last states, each projected, side by side."""

    def __init__(self, vocab_size: int, cfg: MusicVAEModelConfig, segments: int = 1):
        super().__init__()
        self.segments = segments if cfg.encoder != "flat" else 1
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.encoder_hidden,
            cfg.encoder_layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.bars_lstm = (
            nn.LSTM(2 * cfg.encoder_hidden, cfg.encoder_hidden, batch_first=True, bidirectional=True)
            if cfg.encoder == "hierarchical" and self.segments > 1
            else None
        )
        summary = 2 * cfg.encoder_hidden
        self.bar_proj: nn.Linear | None = None
        bar_latents = cfg.bar_latents and self.segments > 1
        if cfg.encoder == "concat" and self.segments > 1:
            bar_dim = max(1, 2 * cfg.latent_dim // self.segments)
            self.bar_proj = nn.Linear(summary, bar_dim)
            summary = bar_dim * self.segments
        self.to_mu = None if bar_latents else nn.Linear(summary, cfg.latent_dim)
        self.to_sigma = None if bar_latents else nn.Linear(summary, cfg.latent_dim)
        self.drop = nn.Dropout(cfg.io_dropout)

    def forward(self, events: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = events.shape
        x = self.drop(self.embed(events.reshape(b * self.segments, t // self.segments)))  # (B*U, T/U, E)
        final = _final_states(self.lstm, x)  # (B*U, 2H)
        if self.bars_lstm is not None:
            final = _final_states(self.bars_lstm, final.view(b, self.segments, -1))  # (B, 2H)
        elif self.bar_proj is not None:
            final = self.bar_proj(final).view(b, self.segments, -1)  # (B, U, bar_dim)
            if self.to_mu is None:  # bar latents: each bar's slice is its own (mu, sigma)
                mu, pre_sigma = final.chunk(2, dim=-1)  # (B, U, Z / U) each
                return mu.reshape(b, -1), F.softplus(pre_sigma.reshape(b, -1)) + 1e-5
            final = final.reshape(b, -1)  # (B, U * bar_dim)
        assert self.to_mu is not None and self.to_sigma is not None  # only bar latents have none
        return self.to_mu(final), F.softplus(self.to_sigma(final)) + 1e-5


class Conductor(nn.Module):
    """z (B, Z) -> one embedding per segment (B, U, Hc); its state starts from z, its inputs are zeros,
    or with bar latents segment u's slice of z (B, U, Z / U)."""

    def __init__(self, cfg: MusicVAEModelConfig, num_segments: int):
        super().__init__()
        self.num_segments = num_segments
        self.bar_latents = cfg.bar_latents
        self.layers, self.hidden = cfg.conductor_layers, cfg.conductor_hidden
        self.init = nn.Linear(cfg.latent_dim, 2 * self.layers * self.hidden)
        inputs = cfg.latent_dim // num_segments if self.bar_latents else 1
        self.lstm = nn.LSTM(
            inputs,
            self.hidden,
            self.layers,
            batch_first=True,
            dropout=cfg.dropout if self.layers > 1 else 0.0,
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        state = _initial_state(self.init, z, self.layers, self.hidden)
        if self.bar_latents:
            inputs = z.view(z.shape[0], self.num_segments, -1)  # segment u's bars' slices, in order
        else:
            inputs = z.new_zeros(z.shape[0], self.num_segments, 1)
        out, _ = self.lstm(inputs, state)
        return out  # (B, U, Hc)


class SegmentDecoder(nn.Module):
    """The autoregressive LSTM: input [embed(previous event), cond], state started from cond."""

    def __init__(self, vocab_size: int, cond_dim: int, cfg: MusicVAEModelConfig):
        super().__init__()
        self.start_id = vocab_size  # an extra embedding row: "no previous event"
        self.layers, self.hidden = cfg.decoder_layers, cfg.decoder_hidden
        self.embed = nn.Embedding(vocab_size + 1, cfg.embed_dim)
        self.init = nn.Linear(cond_dim, 2 * self.layers * self.hidden)
        self.lstm = nn.LSTM(
            cfg.embed_dim + cond_dim,
            self.hidden,
            self.layers,
            batch_first=True,
            dropout=cfg.dropout if self.layers > 1 else 0.0,
        )
        self.head = nn.Linear(self.hidden, vocab_size)
        self.drop = nn.Dropout(cfg.io_dropout)

    def initial_state(self, cond: torch.Tensor) -> LSTMState:
        return _initial_state(self.init, cond, self.layers, self.hidden)

    def forward(
        self, prev: torch.Tensor, cond: torch.Tensor, state: LSTMState
    ) -> tuple[torch.Tensor, LSTMState]:
        """prev (N, S) previous events, cond (N, C) -> logits (N, S, V) and the new state."""
        x = torch.cat([self.embed(prev), cond[:, None, :].expand(-1, prev.shape[1], -1)], dim=-1)
        out, state = self.lstm(self.drop(x), state)
        return self.head(self.drop(out)), state


class MusicVAE(nn.Module):
    def __init__(self, cfg: MusicVAEModelConfig, melody: MelodyConfig):
        super().__init__()
        self.vocab_size = melody.vocab_size
        self.length = melody.window_steps
        self.segments = melody.num_bars // cfg.segment_bars if cfg.decoder == "hierarchical" else 1
        self.latent_dim = cfg.latent_dim
        self.encoder = LatentEncoder(self.vocab_size, cfg, melody.num_bars)
        self.conductor = Conductor(cfg, self.segments) if cfg.decoder == "hierarchical" else None
        cond_dim = cfg.conductor_hidden if self.conductor is not None else cfg.latent_dim
        self.decoder = SegmentDecoder(self.vocab_size, cond_dim, cfg)

    def forward(self, events: torch.Tensor, scheduled_sampling: float = 0.0) -> tuple[torch.Tensor, ...]:
        """Training pass: events (B, T) -> logits (B, T, V), mu (B, Z), sigma (B, Z); z is drawn with the
        reparameterisation trick. (Training goes through forward so that DDP syncs the gradients.)"""
        mu, sigma = self.encoder(events)
        z = mu + sigma * torch.randn_like(sigma)
        if scheduled_sampling > 0:  # own samples from the global RNG, which resume restores
            _, logits = self.free_running(
                z, lambda lg: draw(lg, None), teacher=events, teacher_rate=1.0 - scheduled_sampling
            )
        else:
            logits = self.teacher_forced(z, events)
        return logits, mu, sigma

    def encode(self, events: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """events (B, T) -> mu, sigma (B, Z)."""
        return self.encoder(events)

    def conditions(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Z) -> one conditioning vector per segment (B, U, C)."""
        return self.conductor(z) if self.conductor is not None else z[:, None, :]

    def teacher_forced(self, z: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of each event given z and the true previous events (one parallel pass)."""
        b, t = events.shape
        u = self.segments
        prev = torch.cat([events.new_full((b, 1), self.decoder.start_id), events[:, :-1]], dim=1)
        cond = self.conditions(z).reshape(b * u, -1)  # (B*U, C)
        logits, _ = self.decoder(prev.reshape(b * u, t // u), cond, self.decoder.initial_state(cond))
        return logits.reshape(b, t, -1)

    def free_running(
        self,
        z: torch.Tensor,
        pick: Callable[[torch.Tensor], torch.Tensor],
        teacher: torch.Tensor | None = None,
        teacher_rate: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decodes step by step, feeding back ``pick(logits (B, V)) -> events (B,)``; with ``teacher``
        (B, T) the true event is fed instead with probability ``teacher_rate`` (scheduled sampling).
        Returns (events (B, T), logits (B, T, V))."""
        b, u, s = z.shape[0], self.segments, self.length // self.segments
        cond = self.conditions(z)  # (B, U, C)
        prev = z.new_full((b,), self.decoder.start_id, dtype=torch.long)
        events: list[torch.Tensor] = []
        logits: list[torch.Tensor] = []
        for seg in range(u):
            state = self.decoder.initial_state(cond[:, seg])
            for _ in range(s):
                step_logits, state = self.decoder(prev[:, None], cond[:, seg], state)
                step_logits = step_logits[:, 0]  # (B, V)
                token = pick(step_logits)
                if teacher is not None:
                    true = teacher[:, len(events)]
                    token = torch.where(torch.rand(b, device=z.device) < teacher_rate, true, token)
                events.append(token)
                logits.append(step_logits)
                prev = token
        return torch.stack(events, 1), torch.stack(logits, 1)


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per example, in nats: (B, Z) -> (B,)."""
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * torch.log(sigma)).sum(-1)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1)


class MusicVAETask(Task):
    """Reconstruction + beta * max(KL - free_bits, 0), beta annealed linearly (config ``loss``)."""

    def __init__(
        self,
        cfg: MusicVAEConfig,
        data_dir: Path | None = None,
        data_meta: Mapping[str, Any] | None = None,
        models: dict[str, nn.Module] | None = None,
    ):
        self.step = 0  # the optimizer step being taken (beta annealing)
        super().__init__(cfg, data_dir, data_meta, models)

    def build_models(self) -> dict[str, nn.Module]:
        return build_models(self.cfg)

    # -- training -------------------------------------------------------------------------------
    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.melody_data import MelodyWindows, require_windows

        data, seed = self.cfg.data, self.cfg.train.seed
        train = MelodyWindows(self.data_path, "train", data, transpose=data.transpose, seed=seed)
        require_windows(train, self.data_path, "train")
        valid = MelodyWindows(self.data_path, "valid", data)
        return train, valid

    def beta(self, step: int) -> float:
        loss = self.cfg.loss
        ramp = min(1.0, step / loss.beta_anneal_steps) if loss.beta_anneal_steps > 0 else 1.0
        return loss.max_beta * ramp

    def train_step(
        self, micro_batches: Sequence[Mapping[str, torch.Tensor]], ctx: StepContext
    ) -> dict[str, float]:
        self.step = ctx.step
        return super().train_step(micro_batches, ctx)

    def _model(self) -> MusicVAE:
        return unwrap(self.models["model"])

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        events = batch["events"]  # (B, T)
        # Through the (possibly DDP-wrapped) module's forward, so that gradients are synced.
        logits, mu, sigma = self.models["model"](events, self.cfg.loss.scheduled_sampling)
        logits = logits.float()
        nll = F.cross_entropy(logits.flatten(0, 1), events.flatten(), reduction="none").view_as(events)
        recon = nll.sum(1)  # (B,) nats per window, as MusicVAE
        kl = kl_divergence(mu.float(), sigma.float())
        free_nats = self.cfg.loss.free_bits * math.log(2.0)
        beta = self.beta(self.step)
        loss = recon.mean() + beta * torch.clamp(kl - free_nats, min=0.0).mean()
        accuracy = (logits.argmax(-1) == events).float().mean()
        return loss, {
            "recon": float(recon.mean().detach()),
            "kl_bits": float(kl.mean().detach()) / math.log(2.0),
            "beta": beta,
            "accuracy": float(accuracy),
        }

    def eval_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher-forced reconstruction from z = mu (the deterministic encoding)."""
        events = batch["events"]
        mu, sigma = self._model().encode(events)
        logits = self._model().teacher_forced(mu, events).float()
        nll = F.cross_entropy(logits.flatten(0, 1), events.flatten(), reduction="sum")
        return {
            "nll_sum": nll,
            "kl_sum": kl_divergence(mu.float(), sigma.float()).sum(),
            **accuracy_sums(logits.argmax(-1), events),
        }

    def eval_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        windows = max(sums.get("windows", 0.0), 1.0)
        out = {
            "nll": sums.get("nll_sum", float("nan")) / max(sums.get("steps", 0.0), 1.0),
            "recon": sums.get("nll_sum", float("nan")) / windows,
            "kl_bits": sums.get("kl_sum", float("nan")) / windows / math.log(2.0),
        }
        out["elbo"] = -(out["recon"] + sums.get("kl_sum", float("nan")) / windows)
        return {**out, **accuracy_metrics(sums)}

    def tokens_in(self, batch: Mapping[str, torch.Tensor]) -> int:
        return int(batch["events"].numel())


def build_models(cfg: MusicVAEConfig) -> dict[str, nn.Module]:
    return {"model": MusicVAE(cfg.model, cfg.data)}


def unwrap(model: nn.Module) -> MusicVAE:
    """The MusicVAE inside a DDP wrapper (the latent methods live on the module)."""
    return cast(MusicVAE, getattr(model, "module", model))


class MusicVAEGenerator(Generator):
    """Encodes melody windows to latent means and decodes latents to windows: samples from the prior,
    interpolation between clips, reconstruction."""

    options = ("prime", "length", "bars", "temperature", "top_k", "top_p", "seed")

    def build_models(self) -> dict[str, nn.Module]:
        models = build_models(self.cfg)
        fitted = self.checkpoint.meta.get(LATENT_PRIOR)
        if fitted is not None:  # a learned p(z), fitted after training (musgen.models.latent_prior)
            models[LATENT_PRIOR] = LatentPrior(LatentPriorConfig(**fitted["config"]))
        return models

    @property
    def model(self) -> MusicVAE:
        return unwrap(self.models["model"])

    def generate(
        self,
        num_samples: int = 1,
        *,
        prime: Any = None,
        length: int | None = None,
        bars: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> list[Any]:
        """``num_samples`` Scores decoded from z ~ N(0, I), windows of the model's own length.
        ``temperature``, ``top_k`` and ``top_p`` left at None take the checkpoint's recommended settings."""
        if prime is not None:
            raise MusgenError(
                "musicvae samples from its latent prior: --prime is for language models "
                "(use `musgen reconstruct` or `musgen interpolate` to start from a clip)"
            )
        if bars is not None and bars != self.cfg.data.num_bars:
            raise MusgenError(
                f"this musicvae writes windows of {self.cfg.data.num_bars} bars; --bars {bars} is not possible"
            )
        if length is not None:
            raise MusgenError("musicvae samples have the model's fixed length: drop --length")
        if num_samples < 1:
            raise MusgenError(f"--num-samples must be at least 1, got {num_samples}")
        controls = self.sampling_settings(temperature=temperature, top_k=top_k, top_p=top_p)
        # Drawn on the CPU from the seed (same z on every device), then moved to the model's device:
        # from the checkpoint's fitted latent prior where it has one, else from N(0, I)
        if LATENT_PRIOR in self.models:
            prior = cast(LatentPrior, self.models[LATENT_PRIOR])
            # its own temperature, stored with it (--temperature is the decoder's)
            latent_temperature = float(self.checkpoint.meta[LATENT_PRIOR].get("temperature", 1.0))
            z = prior.sample(num_samples, make_generator(seed), latent_temperature)
        else:
            z = torch.randn(num_samples, self.model.latent_dim, generator=make_generator(seed)).to(
                self.device
            )
        return [self.events_to_score(w) for w in self.decode_events(z, **controls, seed=seed)]

    # -- the latent space -------------------------------------------------------------------------
    def clip(self, midi: str | Path, bar_offset: int = 0) -> np.ndarray:
        """The event window the model encodes for a MIDI file: its melody line (the highest note at
        each moment) from bar ``bar_offset``, as long as the model's windows."""
        from musgen.data.melody import clip_from_midi

        return clip_from_midi(midi, self.cfg.data, bar_offset=bar_offset)

    @torch.no_grad()
    def encode_windows(self, windows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """windows (N, T) event ids -> mu, sigma (N, Z)."""
        events = torch.as_tensor(np.asarray(windows), dtype=torch.long, device=self.device)
        if events.ndim != 2 or events.shape[1] != self.model.length:
            raise MusgenError(f"windows must be (N, {self.model.length}) events, got {tuple(events.shape)}")
        return self.model.encode(events)

    @torch.no_grad()
    def posteriors(
        self, windows: np.ndarray, *, batch_size: int = 256, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """windows (N, T) -> the encoder's mu, sigma (N, Z) as float32 arrays, batch by batch."""
        from tqdm.auto import tqdm

        starts = range(0, len(windows), batch_size)
        parts = [
            self.encode_windows(windows[lo : lo + batch_size])
            for lo in tqdm(starts, desc="encoding windows", unit="batch", disable=not progress)
        ]
        mu, sigma = (torch.cat(side).float().cpu().numpy() for side in zip(*parts, strict=True))
        return mu, sigma

    def encode(self, clips: Sequence[str | Path | np.ndarray], bar_offset: int = 0) -> torch.Tensor:
        """Latent means (N, Z) of MIDI files (or event windows)."""
        windows = [c if isinstance(c, np.ndarray) else self.clip(c, bar_offset) for c in clips]
        mu, _ = self.encode_windows(np.stack(windows))
        return mu

    @torch.no_grad()
    def decode_events(
        self,
        z: torch.Tensor,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> np.ndarray:
        """z (N, Z) -> event windows (N, T): greedy when ``temperature`` is 0, else sampled."""
        if temperature < 0:
            raise MusgenError(f"--temperature must be >= 0, got {temperature}")
        # Checks --top-k / --top-p even when decoding greedily.
        ctl = SamplingControls(temperature=temperature or 1.0, top_k=top_k, top_p=top_p, seed=seed)
        if temperature == 0:
            pick = greedy
        else:
            gen = make_generator(seed)

            def pick(logits: torch.Tensor) -> torch.Tensor:
                return draw(warp_logits(ctl, logits.float()), gen)

        latents = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        events, _ = self.model.free_running(latents, pick)
        return events.cpu().numpy()

    def decode(self, z: torch.Tensor, **controls: Any) -> list[Any]:
        """z (N, Z) -> symusic Scores (see ``decode_events`` for the controls)."""
        return [self.events_to_score(events) for events in self.decode_events(z, **controls)]

    def interpolate(
        self,
        a: str | Path | np.ndarray,
        b: str | Path | np.ndarray,
        steps: int = 8,
        *,
        bar_offset: int = 0,
        **controls: Any,
    ) -> np.ndarray:
        """Event windows (steps, T) decoded along the slerp between the latent means of clips a and b,
        both endpoints included."""
        from musgen.generate.interpolation import interpolation_path

        mu = self.encode([a, b], bar_offset)
        return self.decode_events(interpolation_path(mu[0], mu[1], steps), **controls)

    def interpolate_to(
        self, out_dir: str | Path, a: str | Path, b: str | Path, steps: int = 8, **kwargs: Any
    ) -> list[Path]:
        """Writes ``interp_000.mid`` ... (``steps`` files) and ``interpolation.mid`` (all steps in
        order, a bar of rest between them, a marker naming each step), recorded in ``samples.json``;
        a rerun in the same folder adds files (``write_all``)."""
        run = self.run_record("interpolate", {"clip_a": a, "clip_b": b, "steps": steps, **kwargs})
        windows = self.interpolate(a, b, steps, **(kwargs | {"seed": run["seed"]}))
        labels = [f"step {i + 1}/{steps}: {i / (steps - 1):.0%} of the way to B" for i in range(steps)]
        return self.write_steps(out_dir, windows, labels, run)

    # -- attribute vectors (MusicVAE section 5.3) ---------------------------------------------------
    @property
    def attributes(self) -> dict[str, dict[str, Any]]:
        """The attribute vectors stored with the checkpoint (``musgen.json`` ``"attributes"``): name ->
        {"vector": [...], "computed_from": {...}}; {} if none."""
        return stored_attributes(self.checkpoint.meta, self.model.latent_dim)

    def attribute_vector(self, name: str) -> torch.Tensor:
        """The stored latent direction (Z,) that raises attribute ``name`` (see ``ATTRIBUTES``)."""
        stored = self.attributes
        if not stored:
            raise MusgenError(f"checkpoint {self.checkpoint.path} has no attribute vectors: {HOW_TO_COMPUTE}")
        if name not in stored:
            raise MusgenError(
                f"no attribute vector {name!r} in checkpoint {self.checkpoint.path} "
                f"(it has {', '.join(sorted(stored))}): {HOW_TO_COMPUTE}"
            )
        return torch.tensor(stored[name]["vector"], dtype=torch.float32)

    def shift(
        self,
        clip: str | Path | np.ndarray,
        name: str,
        amount: float = 1.0,
        steps: int = 5,
        *,
        bar_offset: int = 0,
        **controls: Any,
    ) -> np.ndarray:
        """Event windows (steps, T) decoded from ``z + t * amount * v`` for t from 0 to 1 (both ends
        included): z the clip's latent mean, v the attribute vector ``name``."""
        if steps < 2:
            raise MusgenError(f"--steps must be at least 2 (the clip and the full shift), got {steps}")
        vector = self.attribute_vector(name)
        z = self.encode([clip], bar_offset)[0]
        amounts = torch.linspace(0.0, float(amount), steps)
        return self.decode_events(z[None, :] + amounts[:, None] * vector[None, :], **controls)

    def shift_to(
        self,
        out_dir: str | Path,
        clip: str | Path,
        name: str,
        amount: float = 1.0,
        steps: int = 5,
        **kwargs: Any,
    ) -> list[Path]:
        """``shift`` written as ``interpolate_to`` writes an interpolation."""
        options = {"clip_a": clip, "attribute": name, "amount": amount, "steps": steps, **kwargs}
        run = self.run_record("interpolate --attribute", options)
        windows = self.shift(clip, name, amount, steps, **(kwargs | {"seed": run["seed"]}))
        labels = [f"step {i + 1}/{steps}: {name} {amount * i / (steps - 1):+.2f}" for i in range(steps)]
        return self.write_steps(out_dir, windows, labels, run)

    def compute_attribute_vectors(
        self, windows: np.ndarray, *, batch_size: int = 256, progress: bool = False
    ) -> dict[str, dict[str, Any]]:
        """For each attribute of ``ATTRIBUTES``: the mean latent (mu) of the windows (N, T) in the
        attribute's top quartile minus that of its bottom quartile, with what it was computed from."""
        mu = self.posteriors(windows, batch_size=batch_size, progress=progress)[0].astype(np.float64)
        return {
            name: quartile_difference(mu, measure_attribute(windows, name, self.cfg.data), attribute.unit)
            for name, attribute in ATTRIBUTES.items()
        }

    # -- writing ------------------------------------------------------------------------------------
    def write_steps(
        self, out_dir: str | Path, windows: np.ndarray, labels: Sequence[str], run: dict[str, Any]
    ) -> list[Path]:
        """Writes ``interp_000.mid`` ... (one per window) and ``interpolation.mid``: the windows in
        order, one bar of rest between them, each starting at a marker with its label; ``run`` goes
        to samples.json."""
        scores = [self.events_to_score(w) for w in windows]
        joined = self.joined_score(windows, labels)
        return self.write_all(out_dir, "interp", scores, run=run, named={"interpolation": joined})

    def joined_score(self, windows: np.ndarray, labels: Sequence[str]) -> Any:
        """One score of the windows in a row with a bar of rest after each (see ``join_with_rests``)."""
        import symusic

        rest = self.cfg.data.steps_per_bar
        score = self.events_to_score(join_with_rests(list(windows), rest))
        ticks = score.ticks_per_quarter // self.cfg.data.steps_per_quarter
        for i, label in enumerate(labels):
            score.markers.append(symusic.TextMeta(i * (self.model.length + rest) * ticks, label))
        return score

    def reconstruct_to(
        self, out_dir: str | Path, midi: str | Path, *, bar_offset: int = 0, **controls: Any
    ) -> list[Path]:
        """Writes ``original.mid`` (the clip the model sees) and ``reconstruction.mid`` (encode, decode),
        recorded in ``samples.json``; a rerun in the same folder writes ``original_001.mid`` ..."""
        run = self.run_record("reconstruct", {"clip": midi, "bar_offset": bar_offset, **controls})
        window = self.clip(midi, bar_offset)
        recon = self.decode_events(self.encode([window]), **(controls | {"seed": run["seed"]}))[0]
        named = {"original": self.events_to_score(window), "reconstruction": self.events_to_score(recon)}
        return self.write_all(out_dir, "", [], run=run, named=named)

    def events_to_score(self, events: np.ndarray) -> Any:
        from musgen.data.melody import melody_to_score

        return melody_to_score(events, self.cfg.data)


def evaluate(
    generator: MusicVAEGenerator, data_dir: Path, split: str, opts: Any
) -> tuple[dict[str, Any], list[Any]]:
    """Teacher-forced reconstruction of held-out melody windows from z = mu (accuracy over all steps
    and over note events, NLL, KL: the Task's own evaluation), and statistics of samples from the prior
    next to the held-out windows'."""
    from musgen.data.melody_data import MelodyWindows, require_windows
    from musgen.eval.evaluate import evenly, symbolic_statistics, task_metrics

    windows = MelodyWindows(data_dir, split, generator.cfg.data, progress=False)
    require_windows(windows, data_dir, split)
    task = generator.evaluation_task(data_dir)
    report: dict[str, Any] = {
        "reconstruction": {**task_metrics(task, windows, opts.batch_size), "windows": len(windows)}
    }
    reference = [generator.events_to_score(windows.window(i)) for i in evenly(list(range(len(windows))))]
    samples: list[Any] = []
    if opts.num_samples:
        report["sampling"] = generator.sampling_settings(**opts.sampling)
        samples = generator.generate(opts.num_samples, seed=opts.seed, **report["sampling"])
    report["statistics"] = symbolic_statistics(reference, samples, None, opts.seed)
    return report, samples


def accuracy_sums(predicted: torch.Tensor, events: torch.Tensor) -> dict[str, torch.Tensor]:
    """Counts for reconstruction accuracy over all steps and over the steps where the target is an
    event (a note-on or note-off, not a HOLD): (B, T) each."""
    correct = predicted == events
    is_event = events != HOLD
    return {
        "correct": correct.sum(),
        "steps": torch.tensor(events.numel()),
        "event_correct": (correct & is_event).sum(),
        "event_steps": is_event.sum(),
        "windows": torch.tensor(events.shape[0]),
    }


def accuracy_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    return {
        "accuracy": sums.get("correct", 0.0) / max(sums.get("steps", 0.0), 1.0),
        "event_accuracy": sums.get("event_correct", 0.0) / max(sums.get("event_steps", 0.0), 1.0),
    }


def join_with_rests(windows: Sequence[np.ndarray], rest_steps: int) -> np.ndarray:
    """Windows one after another with ``rest_steps`` of silence between them (a NOTE_OFF and HOLDs):
    window i starts at step ``i * (T + rest_steps)``, each sounding exactly as in its own file."""
    rest = np.full(rest_steps, HOLD, dtype=np.int64)
    rest[:1] = NOTE_OFF
    parts: list[np.ndarray] = []
    for i, window in enumerate(windows):
        if i:
            parts.append(rest)
        parts.append(np.asarray(window, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# -- attributes of melody windows, and latent directions that change them ------------------------
@dataclass(frozen=True)
class Attribute:
    unit: str
    measure: Callable[[np.ndarray, MelodyConfig], float]  # one window (T,) -> its value


def note_density(window: np.ndarray, cfg: MelodyConfig) -> float:
    """Note onsets per bar."""
    return float(np.count_nonzero(window >= FIRST_PITCH_ID)) * cfg.steps_per_bar / len(window)


def mean_pitch(window: np.ndarray, cfg: MelodyConfig) -> float:
    """Mean MIDI pitch of the notes (by onset); NaN for a window without notes."""
    ids = window[window >= FIRST_PITCH_ID]
    return float(ids.mean()) - FIRST_PITCH_ID + cfg.pitch_range[0] if len(ids) else math.nan


ATTRIBUTES = {
    "density": Attribute("note onsets per bar", note_density),
    "pitch": Attribute("mean MIDI pitch of the notes", mean_pitch),
}
HOW_TO_COMPUTE = (
    "`python scripts/attribute_vectors.py CKPT --data DATA_DIR --write` computes them "
    f"({', '.join(ATTRIBUTES)})"
)


def measure_attribute(windows: np.ndarray, name: str, cfg: MelodyConfig) -> np.ndarray:
    """Attribute ``name`` of each window (N, T) -> (N,)."""
    if name not in ATTRIBUTES:
        raise MusgenError(f"unknown attribute {name!r} (known: {', '.join(ATTRIBUTES)})")
    return np.array([ATTRIBUTES[name].measure(np.asarray(w), cfg) for w in windows], dtype=np.float64)


def quartile_difference(mu: np.ndarray, values: np.ndarray, unit: str) -> dict[str, Any]:
    """Mean of ``mu`` (N, Z) over the quarter of the rows with the highest ``values`` minus that over
    the quarter with the lowest (by rank, ties in data order; NaN values left out)."""
    known = np.flatnonzero(~np.isnan(values))
    quarter = len(known) // 4
    if quarter < 1:
        raise MusgenError(f"too few windows ({len(known)}) for attribute quartiles: at least 4 are needed")
    order = known[np.argsort(values[known], kind="stable")]
    bottom, top = order[:quarter], order[-quarter:]
    return {
        "vector": [round(float(x), 6) for x in mu[top].mean(0) - mu[bottom].mean(0)],
        "computed_from": {
            "windows": int(len(values)),
            "quartile_windows": int(quarter),
            "unit": unit,
            "bottom_quartile_mean": round(float(values[bottom].mean()), 4),
            "top_quartile_mean": round(float(values[top].mean()), 4),
        },
    }


def stored_attributes(meta: Mapping[str, Any], latent_dim: int) -> dict[str, dict[str, Any]]:
    """The ``"attributes"`` of a checkpoint's metadata, checked: name -> {"vector": Z floats, ...}."""
    stored = meta.get("attributes") or {}
    if not isinstance(stored, Mapping):
        raise CheckpointError(
            f"the attributes in musgen.json should be a mapping, not {type(stored).__name__}"
        )
    for name, entry in stored.items():
        vector = entry.get("vector") if isinstance(entry, Mapping) else None
        if not isinstance(vector, list) or len(vector) != latent_dim:
            raise CheckpointError(
                f"attribute {name!r} in musgen.json has no vector of {latent_dim} numbers: {HOW_TO_COMPUTE}"
            )
    return {str(name): dict(entry) for name, entry in stored.items()}


FAMILY = FamilySpec(
    "musicvae",
    MusicVAEConfig,
    MusicVAETask,
    MusicVAEGenerator,
    evaluate,
    description="a MusicVAE (Roberts et al. 2018): a recurrent variational autoencoder of melodies, for "
    "sampling, interpolation and reconstruction",
)
