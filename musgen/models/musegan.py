"""MuseGAN (Dong et al., AAAI 2018): multi-track piano-roll phrases from noise, trained as a WGAN-GP.

Noise comes in four kinds: shared by all tracks or private to one ("inter" / "intra"), and constant
over the phrase or one vector per bar from a temporal generator ("_t"). The three modes differ in
which they use and how many generators and critics there are:

* ``jamming``:  one bar generator and one critic per track, private noise only;
* ``composer``: one bar generator for all tracks, shared noise only, one critic;
* ``hybrid``:   one bar generator per track, shared + private noise, one critic.

A bar generator turns one vector per bar into the bar's roll with transposed convolutions that
grow time (beats -> 16ths -> steps) and pitch (octaves -> semitones) separately, in both orders
(the paper code's pitch-time / time-pitch streams). The critic mirrors it and adds a chroma stream
(per-beat pitch classes) and an onset stream, then looks across bars.

Output (``model.output``): ``multihot``, the paper's, gives each (track, step, pitch) cell its own
probability, so a track may sound any set of pitches (drums, piano, guitar); ``voice`` gives each
track one choice per step among its pitches and a rest (a softmax over P + 1), for voices that sing
one note at a time (SATB). The critic gets one-hot rolls either way: in training the choice is the
argmax (``voice_relax: straight_through``) or a Gumbel-softmax draw (``gumbel``), with the softmax's
gradient passed straight through; at inference the argmax, so a sample depends on its noise only
(``voice_inference: argmax``), or a draw from the softmax (``draw``: with ``voice_leading_init:
data`` the 16ths then follow the data's transition statistics rather than its likeliest one).
A learned per-track bias over the pitches lets each voice settle in its own register.

Track-conditional generation (the paper's accompaniment setting): with ``model.condition_tracks``
an encoder reads a given track's bars into feature maps that every bar generator takes in; in
training each phrase is conditioned on one of those tracks with probability ``condition_prob``
(else unconditioned), the generated version of that track is replaced by the real one, and the
critic judges the whole. One model thus both composes from scratch and accompanies a given track.
With ``model.harmony`` each 16th's lead voice (the given track) is chosen first and the others are
biased by the data's interval statistics to it, so they fit the melody they accompany.

Calibration (``MuseGANGenerator.calibrate_*``, run by scripts/calibrate_musegan.py): knobs of a
trained voice model set by bisection until its samples match the training data's per-voice
statistics - the voice-leading tables' interval shares, each voice's temperature (pitch classes per
bar), restrike probabilities (repeated notes) and rest logits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset

from musgen.config import TrainConfig
from musgen.data.pianoroll import PianorollConfig
from musgen.errors import ConfigError, MusgenError
from musgen.eval.musegan import roll_layout
from musgen.eval.pianoroll_metrics import pianoroll_metrics
from musgen.generate.sampling import make_generator
from musgen.generator import Generator, flag
from musgen.registry import FamilySpec
from musgen.training.task import StepContext, Task

log = logging.getLogger(__name__)

MODES = ("jamming", "composer", "hybrid")
OUTPUTS = ("multihot", "voice")
VOICE_RELAX = ("straight_through", "gumbel")
VOICE_INFERENCE = ("argmax", "draw")
TIME_GRIDS = ("full", "sixteenth")
VOICE_RANGES = ("full", "data")
VOICE_LEADING_INITS = ("zeros", "data", "data_fixed")


@dataclass
class MuseGANModelConfig:
    mode: str = "hybrid"  # jamming | composer | hybrid
    z_dim: int = 32  # size of each noise vector (inter, intra, inter_t, intra_t)
    gen_channels: int = 64  # width of the bar generators
    critic_channels: int = 64
    binary: str = "none"  # none | deterministic | stochastic: BinaryMuseGAN's straight-through binary output
    output: str = "multihot"  # multihot: any pitches per track and step | voice: one pitch or a rest
    voice_relax: str = "straight_through"  # voice training: argmax (straight_through) or gumbel draws
    gumbel_tau: float = 1.0  # temperature of the Gumbel-softmax whose gradient the gumbel draw passes
    voice_inference: str = "argmax"  # voice sampling: the likeliest pitch per step, or a draw (draw)
    # full: a value per step | sixteenth: one per 16th note, held for its steps (no note shorter than
    # a 16th, the chorales' shortest; triplet steps are then out of reach)
    time_grid: str = "full"
    # full: every track may use every pitch | data: each track only the pitches between the lowest and
    # highest it has in the training phrases, widened by data.transpose (stored with the model)
    voice_range: str = "full"
    # the critic also reads each track's melodic motion from one 16th note to the next (the interval,
    # its size, which steps sound: musgen.models.musegan.melodic_motion), so leaps are visible to it
    critic_intervals: bool = False
    # voice output on the 16th grid: each 16th's choice also gets a learned bias from the one before
    # (a transition table per voice over pitch + rest, chosen 16th by 16th in order), so how a voice
    # moves on is learned, not left to independent per-step choices
    voice_leading: bool = False
    # zeros: the transition table starts at zero | data: at the log transition probabilities of each
    # voice in the training data (so small steps start likely and leaps unlikely), then learned |
    # data_fixed: the data's table, kept fixed (the generator's logits move against it)
    voice_leading_init: str = "zeros"
    voice_leading_scale: float = 1.0  # voice_leading_init data*: the data's log probabilities times this
    # one transition table per metrical position (the 16th's place in a cycle of this many 16ths:
    # 4 = its place in the beat, 16 = in the bar), so notes can change on beats and hold between them
    voice_leading_positions: int = 1
    # voice_leading: a voice that keeps its pitch into the next 16th strikes it again with the training
    # data's probability for that voice and place (per voice_leading_positions), the step before left
    # silent as data.separate_repeats writes repeated notes; without it a voice cannot repeat a note
    # (16-20% of the chorale voices' melodic intervals) and its rolls lack the data's gaps
    restrikes: bool = False
    # voice_leading: each 16th, a lead voice (the given track when accompanying, else the first of
    # condition_tracks, else the first track) is chosen first, and every other voice's pitch gets a
    # bias of harmony_scale x the training data's pointwise mutual information of its interval to the
    # lead's pitch (log P(interval) - log P(interval | the two voices independent)), so voices sound
    # the intervals chorale voices sound against each other (thirds, sixths) and not the rare ones
    harmony: bool = False
    harmony_scale: float = 1.0
    # harmony: the other voices chosen one at a time (in track order), each biased by its intervals
    # to every voice chosen before it, not to the lead alone (so alto, tenor and bass fit each other)
    harmony_chain: bool = False
    # voice_inference draw: each voice's draws at this multiple of the sampling temperature ([]: all
    # 1), so a melody can range as the data's does while the inner voices stay near their likeliest
    # choices (set by scripts/calibrate_musegan.py)
    voice_temperatures: list[float] = field(default_factory=list)
    condition_tracks: list[str] = field(default_factory=list)  # tracks the model can accompany ([] = none)
    condition_prob: float = 0.5  # training: share of phrases conditioned on one of condition_tracks

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"model.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.binary not in ("none", "deterministic", "stochastic"):
            raise ConfigError(f"model.binary must be none, deterministic or stochastic, got {self.binary!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"model.output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.voice_relax not in VOICE_RELAX:
            raise ConfigError(
                f"model.voice_relax must be one of {', '.join(VOICE_RELAX)}, got {self.voice_relax!r}"
            )
        if self.time_grid not in TIME_GRIDS:
            raise ConfigError(
                f"model.time_grid must be one of {', '.join(TIME_GRIDS)}, got {self.time_grid!r}"
            )
        if self.voice_range not in VOICE_RANGES:
            raise ConfigError(
                f"model.voice_range must be one of {', '.join(VOICE_RANGES)}, got {self.voice_range!r}"
            )
        if self.voice_leading and (self.output != "voice" or self.time_grid != "sixteenth"):
            raise ConfigError("model.voice_leading needs model.output=voice and model.time_grid=sixteenth")
        if self.voice_leading_init not in VOICE_LEADING_INITS:
            raise ConfigError(
                f"model.voice_leading_init must be one of {', '.join(VOICE_LEADING_INITS)}, "
                f"got {self.voice_leading_init!r}"
            )
        if self.voice_leading_positions not in (1, 2, 4, 8, 16):
            raise ConfigError(
                f"model.voice_leading_positions must be 1, 2, 4, 8 or 16, got {self.voice_leading_positions}"
            )
        if self.restrikes and not self.voice_leading:
            raise ConfigError("model.restrikes needs model.voice_leading=true")
        if self.voice_leading_positions != 1 and not self.voice_leading:
            raise ConfigError("model.voice_leading_positions needs model.voice_leading=true")
        if self.harmony and not self.voice_leading:
            raise ConfigError("model.harmony needs model.voice_leading=true")
        if self.harmony_chain and not self.harmony:
            raise ConfigError("model.harmony_chain needs model.harmony=true")
        if self.harmony_scale < 0:
            raise ConfigError(f"model.harmony_scale must be >= 0, got {self.harmony_scale}")
        if any(not 0 < t < math.inf for t in self.voice_temperatures):
            raise ConfigError(f"model.voice_temperatures must be positive, got {self.voice_temperatures}")
        if self.voice_leading_scale <= 0:
            raise ConfigError(f"model.voice_leading_scale must be positive, got {self.voice_leading_scale}")
        if self.voice_leading_init != "zeros" and not self.voice_leading:
            raise ConfigError("model.voice_leading_init needs model.voice_leading=true")
        if self.output == "voice" and self.binary != "none":
            raise ConfigError("model.binary is for multihot output; voice output is one-hot already")
        if self.voice_inference not in VOICE_INFERENCE:
            raise ConfigError(
                f"model.voice_inference must be one of {', '.join(VOICE_INFERENCE)}, "
                f"got {self.voice_inference!r}"
            )
        if self.voice_inference != "argmax" and self.output != "voice":
            raise ConfigError("model.voice_inference needs model.output=voice")
        if self.gumbel_tau <= 0:
            raise ConfigError(f"model.gumbel_tau must be positive, got {self.gumbel_tau}")
        if not 0 <= self.condition_prob <= 1:
            raise ConfigError(f"model.condition_prob must be in [0, 1], got {self.condition_prob}")


@dataclass
class GANLossConfig:
    n_critic: int = 5  # critic updates per generator update (each on a fresh real batch)
    gp_weight: float = 10.0  # gradient penalty weight (Gulrajani et al. 2017)
    # Accompaniment: a conditioned phrase's generated tracks are also scored against the phrase's
    # real ones (cross-entropy per voice and step, binary cross-entropy for multihot), as pix2pix
    # adds L1 to its GAN loss, so the harmony is learned from the pairs and not the critic alone.
    paired_weight: float = 0.0
    # voice leading: score each 16th with the transition bias from the real previous 16th (teacher
    # forcing) rather than from the generated one, so a wrong earlier pick does not blur the target
    paired_teacher_forced: bool = False

    def validate(self) -> None:
        if self.n_critic < 1:
            raise ConfigError(f"loss.n_critic must be at least 1, got {self.n_critic}")
        if self.paired_weight < 0:
            raise ConfigError(f"loss.paired_weight must be >= 0, got {self.paired_weight}")


@dataclass
class MuseGANConfig:
    model: MuseGANModelConfig = field(default_factory=MuseGANModelConfig)
    data: PianorollConfig = field(default_factory=PianorollConfig)
    loss: GANLossConfig = field(default_factory=GANLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        names = [n.lower() for n in self.data.track_names]
        unknown = [t for t in self.model.condition_tracks if t.lower() not in names]
        if unknown:
            raise ConfigError(
                f"model.condition_tracks: {unknown[0]!r} is not one of data.track_names {self.data.track_names}"
            )
        voices = self.model.voice_temperatures
        if voices and len(voices) != len(names):
            raise ConfigError(f"model.voice_temperatures needs one value per track {names}, got {voices}")
        if voices and self.model.voice_inference != "draw":
            raise ConfigError("model.voice_temperatures needs model.voice_inference=draw")
        if self.train.grad_accum != 1:
            raise ConfigError("musegan takes one real batch per critic update: leave train.grad_accum at 1")
        if self.model.restrikes and not self.data.separate_repeats:
            raise ConfigError(
                "model.restrikes writes repeated notes as data.separate_repeats does: set it true"
            )
        if self.loss.paired_teacher_forced and not (self.model.voice_leading and self.loss.paired_weight > 0):
            raise ConfigError(
                "loss.paired_teacher_forced needs model.voice_leading=true and loss.paired_weight > 0"
            )


@dataclass(frozen=True)
class _Grid:
    """The time factoring of a bar: beats x f1 x f2 = steps_per_bar (f1 * beats is the 16th grid in 4/4)."""

    beats: int
    f1: int
    f2: int
    octaves: int

    @classmethod
    def of(cls, data: PianorollConfig) -> _Grid:
        per_beat = data.steps_per_bar // data.quarters_per_bar
        f1 = math.gcd(per_beat, 4)
        return cls(data.quarters_per_bar, f1, per_beat // f1, data.num_pitches // 12)


class PatchExpand(nn.Module):
    """A transposed convolution whose stride equals its kernel, as one matmul: every input cell grows
    into a (kh, kw) block. Channels last: (N, H, W, Cin) -> (N, H*kh, W*kw, Cout), batch norm, ReLU.
    (Same function as ConvTranspose2d; faster on a CPU: scripts/bench_musegan.py.)"""

    def __init__(self, cin: int, cout: int, kh: int, kw: int):
        super().__init__()
        self.kh, self.kw = kh, kw
        self.linear = nn.Linear(cin, kh * kw * cout)
        self.norm = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = rearrange(self.linear(x), "n h w (kh kw c) -> n (h kh) (w kw) c", kh=self.kh, kw=self.kw)
        return F.relu(self.norm(y.reshape(-1, y.shape[-1])).view_as(y))


class PatchMerge(nn.Module):
    """A convolution whose stride equals its kernel, as one matmul over non-overlapping (kh, kw) patches.
    Channels last: (N, H, W, Cin) -> (N, H/kh, W/kw, Cout), leaky ReLU. No normalisation: WGAN-GP's
    penalty is per example."""

    def __init__(self, cin: int, cout: int, kh: int, kw: int):
        super().__init__()
        self.kh, self.kw = kh, kw
        self.linear = nn.Linear(kh * kw * cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(x, "n (h kh) (w kw) c -> n h w (kh kw c)", kh=self.kh, kw=self.kw)
        return F.leaky_relu(self.linear(x), 0.2)


class TemporalGenerator(nn.Module):
    """One noise vector -> one vector per bar: z (N, Z) -> (N, bars, Z)."""

    def __init__(self, z_dim: int, bars: int):
        super().__init__()
        self.bars = bars
        self.net = nn.Sequential(
            nn.Linear(z_dim, 4 * z_dim),
            nn.BatchNorm1d(4 * z_dim),
            nn.ReLU(),
            nn.Linear(4 * z_dim, bars * z_dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], self.bars, -1)


class BarGenerator(nn.Module):
    """One vector per bar -> the bar's roll logits: (N, in_dim) [+ condition (N, 16ths, O, Cc)]
    -> (N, out_tracks, steps_per_bar, pitches). Time grows beats -> 16ths -> steps, pitch octaves ->
    semitones, in both orders (the paper code's pitch-time and time-pitch streams)."""

    def __init__(
        self,
        in_dim: int,
        out_tracks: int,
        grid: _Grid,
        width: int,
        cond_channels: int = 0,
        rest: bool = False,
        sixteenths_only: bool = False,
    ):
        super().__init__()
        self.grid = grid
        # sub-steps written per 16th: all of them, or one held for the 16th (time_grid: sixteenth)
        self.sub = 1 if sixteenths_only else grid.f2
        w = width
        self.project = nn.Sequential(
            nn.Linear(in_dim, 4 * w * grid.beats), nn.BatchNorm1d(4 * w * grid.beats), nn.ReLU()
        )
        self.octaves = PatchExpand(4 * w, 2 * w, 1, grid.octaves)  # (N, beats, O, 2w)
        self.sixteenths = PatchExpand(2 * w, w, grid.f1, 1)  # (N, beats*f1, O, w)
        c = w + cond_channels
        # Each stream's last step writes logits straight away (the paper code ends both in 16-channel
        # full-resolution maps merged by a 1x1 conv): no hidden layer at full resolution, where most
        # of the generator's time and memory went.
        self.pitch_time = nn.Sequential(
            PatchExpand(c, w // 2, 1, 12), nn.Linear(w // 2, self.sub * out_tracks)
        )
        self.time_pitch = nn.Sequential(
            PatchExpand(c, w // 2, self.sub, 1), nn.Linear(w // 2, 12 * out_tracks)
        )
        # voice output: one more logit per (track, step), "rest", from the 16th-note features
        self.rest = nn.Linear(c, self.sub * out_tracks) if rest else None

    def forward(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        g = self.grid
        h = self.project(v).view(v.shape[0], g.beats, 1, -1)  # (N, beats, 1, 4w)
        h = self.sixteenths(self.octaves(h))  # (N, 16ths, O, w)
        if cond is not None:
            h = torch.cat([h, cond], dim=-1)
        a = rearrange(self.pitch_time(h), "n t p (f k) -> n k (t f) p", f=self.sub)  # (N, K, S', P)
        b = rearrange(self.time_pitch(h), "n t o (pc k) -> n k t (o pc)", pc=12)  # (N, K, S', P)
        out = a + b
        if self.rest is not None:
            rest = rearrange(self.rest(h.mean(2)), "n t (f k) -> n k (t f) 1", f=self.sub)  # (N, K, S', 1)
            out = torch.cat([out, rest], dim=-1)  # (N, K, S', P + 1)
        # S' = S, or the 16ths (S / f2) each held for f2 steps
        return out if self.sub == g.f2 else out.repeat_interleave(g.f2 // self.sub, dim=2)


class ConditionEncoder(nn.Module):
    """A given track's bars -> features at the bar generators' 16th-note stage, plus an embedding of
    which track is given: roll (N, S, P), track (N,) in [0, K] (K = none) -> (N, 16ths, O, C)."""

    def __init__(self, grid: _Grid, num_tracks: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            PatchMerge(1, channels // 2, 1, 12),  # (N, S, O, C/2)
            PatchMerge(channels // 2, channels, grid.f2, 1),
        )  # (N, 16ths, O, C)
        self.which = nn.Embedding(num_tracks + 1, channels)

    def forward(self, roll: torch.Tensor, track: torch.Tensor) -> torch.Tensor:
        given = (track < self.which.num_embeddings - 1).to(roll.dtype)[:, None, None, None]
        features = self.net(roll[..., None]) * given  # no condition: the features of silence are zeroed
        return features + self.which(track)[:, None, None, :]


class RollGenerator(nn.Module):
    """noise -> rolls (B, K, bars*steps, P) in [0, 1] (binary with binary neurons; one-hot per track and
    step, or all zero for a rest, with voice output)."""

    def __init__(self, cfg: MuseGANModelConfig, data: PianorollConfig):
        super().__init__()
        self.mode, self.binary = cfg.mode, cfg.binary
        self.voice = cfg.output == "voice"
        self.voice_relax, self.gumbel_tau = cfg.voice_relax, cfg.gumbel_tau
        self.voice_draws = cfg.voice_inference == "draw"
        self.num_tracks, self.bars, self.z_dim = data.num_tracks, data.num_bars, cfg.z_dim
        self.steps, self.pitches = data.steps_per_bar, data.num_pitches
        grid = _Grid.of(data)
        shared, private = cfg.mode in ("composer", "hybrid"), cfg.mode in ("jamming", "hybrid")
        self.shared, self.private = shared, private
        self.inter_temporal = TemporalGenerator(cfg.z_dim, self.bars) if shared else None
        self.intra_temporal = (
            nn.ModuleList([TemporalGenerator(cfg.z_dim, self.bars) for _ in range(self.num_tracks)])
            if private
            else None
        )
        in_dim = cfg.z_dim * (2 * shared + 2 * private)
        cond_ch = cfg.gen_channels // 2 if cfg.condition_tracks else 0
        self.encoder = ConditionEncoder(grid, self.num_tracks, cond_ch) if cond_ch else None
        width, sixteenths = cfg.gen_channels, cfg.time_grid == "sixteenth"
        if cfg.mode == "composer":
            self.bar_generators = nn.ModuleList(
                [BarGenerator(in_dim, self.num_tracks, grid, width, cond_ch, self.voice, sixteenths)]
            )
        else:
            self.bar_generators = nn.ModuleList(
                [
                    BarGenerator(in_dim, 1, grid, width, cond_ch, self.voice, sixteenths)
                    for _ in range(self.num_tracks)
                ]
            )
        # voice output: each track's learned preference over its pitches and the rest (its register)
        self.voice_bias = nn.Parameter(torch.zeros(self.num_tracks, self.pitches + 1)) if self.voice else None
        # voice_leading: (S, K, P + 1, P + 1) bias on the next 16th's pitch or rest given this one's,
        # one table per metrical position of the next 16th (S = voice_leading_positions)
        self.transition = (
            nn.Parameter(
                torch.zeros(cfg.voice_leading_positions, self.num_tracks, self.pitches + 1, self.pitches + 1),
                requires_grad=cfg.voice_leading_init != "data_fixed",
            )
            if cfg.voice_leading
            else None
        )
        self.sub_steps = grid.f2  # steps per 16th note
        # restrikes: (S, K) probability that a voice keeping its pitch into a 16th (at place s) strikes
        # it again, set from the training data
        self.restrike: torch.Tensor | None
        if cfg.restrikes:
            self.register_buffer("restrike", torch.zeros(cfg.voice_leading_positions, self.num_tracks))
        else:
            self.restrike = None
        # harmony: (K, K, 2P - 1) bias on track k's pitch given lead track j's, by their interval
        # (k's pitch - j's + P - 1), set from the training data; the lead when nothing is given
        self.harmony: torch.Tensor | None
        if cfg.harmony:
            self.register_buffer(
                "harmony", torch.zeros(self.num_tracks, self.num_tracks, 2 * self.pitches - 1)
            )
        else:
            self.harmony = None
        names = [t.lower() for t in data.track_names]
        self.harmony_lead = names.index(cfg.condition_tracks[0].lower()) if cfg.condition_tracks else 0
        self.harmony_scale, self.harmony_chain = cfg.harmony_scale, cfg.harmony_chain
        self.voice_temperatures = torch.tensor(cfg.voice_temperatures or [1.0] * self.num_tracks)  # (K,)
        # voice_range data: (K, P) the pitches each track may write, set from the training data
        self.pitch_allowed: torch.Tensor | None
        if cfg.voice_range == "data":
            self.register_buffer("pitch_allowed", torch.ones(self.num_tracks, self.pitches, dtype=torch.bool))
        else:
            self.pitch_allowed = None

    def set_pitch_ranges(self, lowest: Sequence[int], highest: Sequence[int]) -> None:
        """Each track k may write pitch indices lowest[k]..highest[k] only (voice_range: data)."""
        assert self.pitch_allowed is not None, "model.voice_range is not data"
        index = torch.arange(self.pitches)
        lo, hi = torch.as_tensor(list(lowest))[:, None], torch.as_tensor(list(highest))[:, None]
        self.pitch_allowed.copy_((index >= lo) & (index <= hi))

    @torch.no_grad()
    def set_transitions(self, counts: np.ndarray, scale: float = 1.0, smoothing: float = 0.1) -> None:
        """voice_leading_init data: the transition tables become ``scale`` x log P(next | this) per
        position and track from ``counts`` (S, K, P + 1, P + 1), add-``smoothing`` per cell, each row
        centred on its mean."""
        assert self.transition is not None, "model.voice_leading is off"
        table = torch.as_tensor(counts, dtype=torch.float32) + smoothing
        table = (table / table.sum(-1, keepdim=True)).log()
        self.transition.copy_(scale * (table - table.mean(-1, keepdim=True)))

    def one_voice(self, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Voice output: logits (B, K, T, P + 1), register bias added -> one-hot rolls (B, K, T, P), a
        rest all zero. The forward pass is exactly one-hot; the gradient is the softmax's
        (straight-through)."""
        return self.one_voice_full(logits, temperature)[..., :-1]

    def one_voice_full(self, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``one_voice`` with the rest kept as the last entry: (..., P + 1) -> one-hot (..., P + 1).
        ``temperature``: of the draws at sampling time (voice_inference draw; < 1 nearer the likeliest)."""
        # a draw (global RNG: resume restores it; generate_rolls seeds it from its generator)
        if self.training and self.voice_relax == "gumbel":
            return F.gumbel_softmax(logits, tau=self.gumbel_tau, hard=True)
        if not self.training and self.voice_draws:
            if self.voice_temperatures.ne(1).any():  # logits (B, K, ..., P + 1): each voice its own
                per_voice = self.voice_temperatures.to(logits.device).view(-1, *[1] * (logits.dim() - 2))
                logits = logits / per_voice
            return F.gumbel_softmax(logits / temperature, tau=self.gumbel_tau, hard=True)
        soft = logits.softmax(-1)
        return F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype) + (soft - soft.detach())

    def lead_voices(
        self,
        logits: torch.Tensor,
        leading_from: torch.Tensor | None = None,
        temperature: float = 1.0,
        cond_roll: torch.Tensor | None = None,
        cond_track: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """voice_leading: the 16ths chosen in order, each 16th's logits plus the transition bias from
        the previous choice. logits (B, K, T, P + 1), each 16th's value repeated over its steps ->
        (the biased logits, the one-hot rolls (B, K, T, P)), both at every step. ``leading_from``
        (B, K, T, P): the returned logits take their bias from this roll's previous 16th instead
        (teacher forcing); the rolls still follow the generated 16ths. harmony: each 16th the lead
        voice is chosen first (or read from ``cond_roll`` (B, T, P) where ``cond_track`` (B,) gives a
        track), then the others with ``harmony_bias`` from its pitch (harmony_chain: one at a time,
        each also biased by the voices chosen before it)."""
        assert self.transition is not None
        b, k = logits.shape[:2]
        per_16th = logits[:, :, :: self.sub_steps]  # (B, K, T16, P + 1)
        given = None
        if leading_from is not None:  # one-hot with the rest as the last entry: (B, K, T16, P + 1)
            given = leading_from[:, :, :: self.sub_steps].to(per_16th.dtype)
            given = torch.cat([given, 1 - given.amax(-1, keepdim=True)], dim=-1)
        lead = torch.full((b,), self.harmony_lead, dtype=torch.long, device=logits.device)
        lead_given = torch.zeros(b, dtype=torch.bool, device=logits.device)
        given_value = torch.zeros(b, per_16th.shape[2], dtype=torch.long, device=logits.device)
        if self.harmony is not None and cond_roll is not None and cond_track is not None:
            lead_given = cond_track < k
            lead = torch.where(lead_given, cond_track.clamp(max=k - 1), lead)
            sixteenths = cond_roll[:, :: self.sub_steps]  # (B, T16, P)
            given_value = torch.where(sixteenths.amax(-1) > 0, sixteenths.argmax(-1), self.pitches)
        is_lead = F.one_hot(lead, k).bool()[:, :, None]  # (B, K, 1)
        rows = torch.arange(b, device=logits.device)
        # harmony_chain: (B, K) the tracks in the order they are chosen, the lead first
        order = torch.where(is_lead[..., 0], -1, torch.arange(k, device=logits.device)).argsort(-1)
        biased, chosen, prev = [], [], None
        for t in range(per_16th.shape[2]):
            raw = step = scored = per_16th[:, :, t]  # (B, K, P + 1)
            if prev is not None:
                table = self.transition[t % self.transition.shape[0]]  # (K, P + 1, P + 1)
                step = raw + torch.einsum("bkp,kpq->bkq", prev, table)
                scored = (
                    step if given is None else raw + torch.einsum("bkp,kpq->bkq", given[:, :, t - 1], table)
                )
            pick = self.one_voice_full(step, temperature)  # (B, K, P + 1) one-hot, rest included
            if self.harmony is not None:  # the lead's pick stays; the others are chosen around it
                drawn = pick[rows, lead].argmax(-1)  # (B,)
                bias = self.harmony_bias(lead, torch.where(lead_given, given_value[:, t], drawn))
                if not self.harmony_chain:
                    step, scored = step + bias, scored + bias
                    pick = torch.where(is_lead, pick, self.one_voice_full(step, temperature))
                else:
                    for track in order[:, 1:].T:  # (B,) each, in turn
                        now = F.one_hot(track, k).bool()[:, :, None]  # (B, K, 1)
                        pick = torch.where(now, self.one_voice_full(step + bias, temperature), pick)
                        scored = torch.where(now, scored + bias, scored)
                        bias = bias + self.harmony_bias(track, pick[rows, track].argmax(-1))
            biased.append(scored)
            chosen.append(pick)
            prev = pick
        out = torch.stack(biased, 2).repeat_interleave(self.sub_steps, dim=2)
        picks = torch.stack(chosen, 2)  # (B, K, T16, P + 1)
        rolls = picks[..., :-1].repeat_interleave(self.sub_steps, dim=2)  # (B, K, T, P)
        if self.restrike is not None:
            rolls = rolls * self.restrike_gaps(picks.detach())[..., None]
        return out, rolls

    def restrike_gaps(self, picks: torch.Tensor) -> torch.Tensor:
        """restrikes: one-hot 16ths (B, K, T16, P + 1) -> (B, K, T) 1, or 0 on the last step before a
        16th that strikes its voice's held pitch again (drawn with ``restrike``'s probability for the
        voice and place, global RNG as the voice draws)."""
        assert self.restrike is not None
        b, k, t16, _ = picks.shape
        value = picks.argmax(-1)  # (B, K, T16), the rest = P
        kept = (value[:, :, 1:] == value[:, :, :-1]) & (value[:, :, 1:] < self.pitches)  # (B, K, T16 - 1)
        place = torch.arange(1, t16, device=picks.device) % self.restrike.shape[0]  # (T16 - 1,)
        prob = self.restrike[place].T  # (K, T16 - 1)
        strike = kept & (torch.rand(b, k, t16 - 1).to(picks.device) < prob)
        keep = torch.ones(b, k, t16, self.sub_steps, device=picks.device, dtype=picks.dtype)
        keep[:, :, :-1, -1] = (~strike).to(picks.dtype)  # silence the last step of the 16th before
        return keep.reshape(b, k, t16 * self.sub_steps)

    @torch.no_grad()
    def set_restrikes(self, counts: np.ndarray) -> None:
        """restrikes: ``restrike`` from (S, K, 2) counts of held and struck-again 16ths."""
        assert self.restrike is not None, "model.restrikes is off"
        table = torch.as_tensor(counts, dtype=torch.float32)
        self.restrike.copy_(table[..., 1] / table[..., 0].clamp_min(1.0))

    @torch.no_grad()
    def set_harmony(self, joint: np.ndarray, independent: np.ndarray, smoothing: float = 0.5) -> None:
        """harmony: the table from (K, K, 2P - 1) interval counts and the counts independent voices
        would give (``RollPhrases.voice_intervals``): log P(interval) - log P_independent(interval),
        each add-``smoothing`` per cell (intervals neither side has stay near 0)."""
        assert self.harmony is not None, "model.harmony is off"
        real = torch.as_tensor(joint, dtype=torch.float32) + smoothing
        alone = torch.as_tensor(independent, dtype=torch.float32) + smoothing
        real, alone = real / real.sum(-1, keepdim=True), alone / alone.sum(-1, keepdim=True)
        self.harmony.copy_(real.log() - alone.log())

    def harmony_bias(self, lead: torch.Tensor, lead_value: torch.Tensor) -> torch.Tensor:
        """harmony: lead track (B,) and its pitch index (B,) (P: a rest) -> (B, K, P + 1) bias on
        every track's pitch by its interval to the lead's; zero for the lead itself, for the rest,
        and where the lead rests."""
        assert self.harmony is not None
        b, p = lead.shape[0], self.pitches
        table = self.harmony[lead]  # (B, K, 2P - 1)
        where = torch.arange(p, device=lead.device)[None, :] - lead_value.clamp(max=p - 1)[:, None] + p - 1
        bias = table.gather(2, where[:, None, :].expand(b, self.num_tracks, p))  # (B, K, P)
        silent = (lead_value >= p)[:, None, None] | F.one_hot(lead, self.num_tracks).bool()[:, :, None]
        bias = bias.masked_fill(silent, 0.0) * self.harmony_scale
        return F.pad(bias, (0, 1))  # the rest: no bias

    @property
    def draws_at_sampling(self) -> bool:
        """Whether sampling draws from the global RNG (the voices, or their restrikes)."""
        return self.voice_draws or self.restrike is not None

    def noise(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The four noise vectors (those the mode uses), from ``generator`` or the global RNG."""
        device = next(self.parameters()).device
        k, z = self.num_tracks, self.z_dim

        def draw(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator).to(device)

        out = {}
        if self.shared:
            out["inter"], out["inter_t"] = draw(n, z), draw(n, z)
        if self.private:
            out["intra"], out["intra_t"] = draw(n, k, z), draw(n, k, z)
        return out

    def forward(
        self,
        noise: Mapping[str, torch.Tensor],
        cond_roll: torch.Tensor | None = None,
        cond_track: torch.Tensor | None = None,
        with_logits: bool = False,
        leading_from: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """noise from ``noise(B)``; cond_roll (B, T, P) the given track, cond_track (B,) its index
        (K = none). Returns probabilities (B, K, T, P); a given track is copied into the output.
        ``with_logits``: also the logits (B, K, T, P (+ 1: the rest, voice output)), register bias
        included; with voice leading, biased from ``leading_from``'s previous 16th when given (see
        ``lead_voices``). ``temperature``: of the voices' draws at sampling time (voice_inference draw)."""
        b, k, u = next(iter(noise.values())).shape[0], self.num_tracks, self.bars
        parts = []  # per-bar inputs, each (B, U, ·) or (B, K, U, ·)
        if self.shared:
            parts.append(noise["inter"][:, None, None, :].expand(b, k, u, -1))
            assert self.inter_temporal is not None
            parts.append(self.inter_temporal(noise["inter_t"])[:, None].expand(b, k, u, -1))
        if self.private:
            parts.append(noise["intra"][:, :, None, :].expand(b, k, u, -1))
            assert self.intra_temporal is not None
            per_track = [self.intra_temporal[i](noise["intra_t"][:, i]) for i in range(k)]
            parts.append(torch.stack(per_track, dim=1))  # (B, K, U, Z)
        v = torch.cat(parts, dim=-1)  # (B, K, U, in_dim)
        cond = None
        if self.encoder is not None:
            if cond_track is None:
                cond_track = torch.full((b,), k, dtype=torch.long, device=v.device)
            if cond_roll is None:
                cond_roll = v.new_zeros(b, u * self.steps, self.pitches)
            bars = cond_roll.reshape(b * u, self.steps, self.pitches)
            cond = self.encoder(bars, cond_track.repeat_interleave(u))  # (B*U, C, 16ths, O)
        p = self.pitches + self.voice  # voice output: the pitches and a rest
        if self.mode == "composer":
            logits = self.bar_generators[0](v[:, 0].reshape(b * u, -1), cond)  # (B*U, K, S, p)
            logits = logits.view(b, u, k, self.steps, p).transpose(1, 2)
        else:
            per_track = [
                g(v[:, i].reshape(b * u, -1), cond).view(b, u, self.steps, p)
                for i, g in enumerate(self.bar_generators)
            ]
            logits = torch.stack(per_track, dim=1)  # (B, K, U, S, p)
        logits = logits.reshape(b, k, u * self.steps, p)
        if self.pitch_allowed is not None:  # out-of-range pitches never sound (the rest stays allowed)
            outside = ~self.pitch_allowed[:, None, :]  # (K, 1, P)
            if self.voice:
                outside = F.pad(outside, (0, 1), value=False)
            logits = logits.masked_fill(outside, float("-inf"))
        if self.voice:
            assert self.voice_bias is not None
            logits = logits.float() + self.voice_bias[:, None, :]
            if self.transition is not None:
                logits, probs = self.lead_voices(logits, leading_from, temperature, cond_roll, cond_track)
            else:
                probs = self.one_voice(logits, temperature)
        else:
            probs = torch.sigmoid(logits)
        if self.binary != "none":  # straight-through: binary forward, sigmoid gradient backward
            hard = (
                (probs > 0.5).to(probs.dtype)
                if self.binary == "deterministic"
                else torch.bernoulli(probs.detach())
            )
            probs = hard + (probs - probs.detach())  # exactly hard in the forward pass
        if cond_roll is not None and cond_track is not None:
            given = F.one_hot(cond_track, k + 1)[:, :k].to(probs.dtype)[:, :, None, None]  # (B, K, 1, 1)
            probs = probs * (1 - given) + cond_roll[:, None] * given
        return (probs, logits) if with_logits else probs


MOTION_FEATURES = 4  # melodic_motion's features per track and step


def melodic_motion(x: torch.Tensor) -> torch.Tensor:
    """How each track moves from one step to the next: x (B, K, T, P) -> (B, K, T, 4): the interval
    in octaves (where both steps sound), its size, whether step t sounds, whether both do. The pitch
    of a step is its mean sounding pitch index (a voice's one pitch), so the features are
    differentiable in x: the critic's gradient tells the generator which way a leap should shrink."""
    sounding = x.sum(-1)  # (B, K, T)
    pitch = (x * torch.arange(x.shape[-1], device=x.device, dtype=x.dtype)).sum(-1) / sounding.clamp(min=1)
    next_sounding, next_pitch = F.pad(sounding[..., 1:], (0, 1)), F.pad(pitch[..., 1:], (0, 1))
    both = sounding * next_sounding
    step = (next_pitch - pitch) * both / 12  # (B, K, T)
    return torch.stack([step, step.abs(), sounding, both], dim=-1)


class Critic(nn.Module):
    """rolls (B, C, bars*steps, P) -> scores (B,): the paper code's critic, per bar (pitch-time and
    time-pitch streams, a per-beat chroma stream, an onset stream), then across bars. No normalisation."""

    def __init__(self, in_tracks: int, data: PianorollConfig, width: int, intervals: bool = False):
        super().__init__()
        g = _Grid.of(data)
        self.grid, self.bars, self.steps = g, data.num_bars, data.steps_per_bar
        c = width
        self.pitch_time = nn.Sequential(
            PatchMerge(in_tracks, c // 4, 1, 12), PatchMerge(c // 4, c // 2, g.f2, 1)
        )
        self.time_pitch = nn.Sequential(
            PatchMerge(in_tracks, c // 4, g.f2, 1), PatchMerge(c // 4, c // 2, 1, 12)
        )
        self.merge_streams = PatchMerge(c, c, 1, 1)  # (N, 16ths, O, c)
        self.beats = PatchMerge(c, 2 * c, g.f1, 1)  # (N, beats, O, 2c)
        self.bar = nn.Sequential(nn.Linear(g.beats * g.octaves * 2 * c, 4 * c), nn.LeakyReLU(0.2))
        self.chroma = PatchMerge(
            in_tracks, c // 2, 1, 12
        )  # per-beat chroma (N, beats, 12, K) -> (N, beats, 1, c/2)
        self.chroma_bar = nn.Sequential(nn.Linear(g.beats * (c // 2), c), nn.LeakyReLU(0.2))
        self.onsets = nn.Sequential(
            PatchMerge(in_tracks, c // 4, g.f2, 1), PatchMerge(c // 4, c // 2, g.f1, 1)
        )
        self.onsets_bar = nn.Sequential(nn.Linear(g.beats * (c // 2), c), nn.LeakyReLU(0.2))
        self.intervals = None
        if intervals:  # (N, 16ths, 1, K * MOTION_FEATURES) -> per beat (N, beats, 1, c/2) -> (N, c)
            self.intervals = nn.Sequential(
                PatchMerge(in_tracks * MOTION_FEATURES, c // 4, 1, 1),
                PatchMerge(c // 4, c // 2, g.f1, 1),
            )
            self.intervals_bar = nn.Sequential(nn.Linear(g.beats * (c // 2), c), nn.LeakyReLU(0.2))
        streams = 7 if intervals else 6  # widths: 4c (bar) + c (chroma) + c (onsets) [+ c (intervals)]
        self.across_bars = nn.Sequential(
            nn.Linear(self.bars * streams * c, 8 * c), nn.LeakyReLU(0.2), nn.Linear(8 * c, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k, _, p = x.shape
        g, n = self.grid, b * self.bars
        bars = rearrange(x, "b k (u s) p -> (b u) s p k", u=self.bars)  # (N, S, P, K) channels last
        h = torch.cat([self.pitch_time(bars), self.time_pitch(bars)], dim=-1)  # (N, 16ths, O, c)
        h = self.bar(self.beats(self.merge_streams(h)).reshape(n, -1))  # (N, 4c)
        chroma = rearrange(bars, "n (t q) (o pc) k -> n t o pc q k", t=g.beats, pc=12).sum(
            dim=(2, 4)
        )  # (N, beats, 12, K)
        c = self.chroma_bar(self.chroma(chroma).reshape(n, -1))  # (N, c)
        level = bars.sum(2, keepdim=True)  # notes sounding per step (N, S, 1, K)
        flux = level - F.pad(level, (0, 0, 0, 0, 1, 0))[:, :-1]  # onsets - offsets (N, S, 1, K)
        o = self.onsets_bar(self.onsets(flux).reshape(n, -1))  # (N, c)
        streams = [h, c, o]
        if self.intervals is not None:
            motion = melodic_motion(x[:, :, :: g.f2])  # (B, K, 16ths, D) at the first step of each 16th
            motion = rearrange(motion, "b k (u t) d -> (b u) t 1 (k d)", u=self.bars)  # (N, 16ths, 1, K*D)
            streams.append(self.intervals_bar(self.intervals(motion).reshape(n, -1)))  # (N, c)
        return self.across_bars(torch.cat(streams, dim=-1).view(b, -1)).squeeze(-1)  # (B,)


class Critics(nn.Module):
    """One critic over all tracks, or (jamming) one per track: rolls (B, K, T, P) -> scores (B, H)."""

    def __init__(self, cfg: MuseGANModelConfig, data: PianorollConfig):
        super().__init__()
        self.per_track = cfg.mode == "jamming"
        heads = data.num_tracks if self.per_track else 1
        in_tracks = 1 if self.per_track else data.num_tracks
        self.critics = nn.ModuleList(
            [Critic(in_tracks, data, cfg.critic_channels, cfg.critic_intervals) for _ in range(heads)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_track:
            return torch.stack([c(x[:, i : i + 1]) for i, c in enumerate(self.critics)], dim=1)
        return self.critics[0](x)[:, None]


def gradient_penalty(grad: torch.Tensor, heads: int) -> torch.Tensor:
    """WGAN-GP term sum_h E[(||grad_h||_2 - 1)^2] for critic scores' gradients w.r.t. their inputs
    (B, K, T, P): one norm per example over all tracks (heads = 1) or per track (heads = K)."""
    norms = grad.flatten(1).norm(dim=1)[:, None] if heads == 1 else grad.flatten(2).norm(dim=2)  # (B, H)
    return (norms - 1.0).pow(2).mean(0).sum()


def critic_objective(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_weight: float,
    heads: int,
    alpha: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """WGAN-GP critic loss -W + gp_weight * GP for real and fake rolls (B, K, T, P); GP on
    alpha * real + (1 - alpha) * fake with alpha (B, 1, 1, 1) ~ U(0, 1). Returns (loss, W, GP)."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1).to(real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    # One critic pass over real, fake and mixed: a single forward per backward keeps DDP simple.
    scores = critic(torch.cat([real, fake, mixed]))  # (3B, H)
    s_real, s_fake, s_mixed = scores.float().chunk(3)
    (grad,) = torch.autograd.grad(s_mixed.sum(), mixed, create_graph=True)
    gp = gradient_penalty(grad, heads)
    wdist = (s_real.mean(0) - s_fake.mean(0)).sum()
    return -wdist + gp_weight * gp, wdist, gp


class MuseGANTask(Task):
    """WGAN-GP: ``loss.n_critic`` critic updates (each on a fresh real batch), then one generator update."""

    def __init__(
        self,
        cfg: MuseGANConfig,
        data_dir: Path | None = None,
        data_meta: Mapping[str, Any] | None = None,
        models: dict[str, nn.Module] | None = None,
    ):
        self.cond_ids = condition_ids(cfg)
        super().__init__(cfg, data_dir, data_meta, models)

    def build_models(self) -> dict[str, nn.Module]:
        return build_models(self.cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.cfg.train
        return {
            name: torch.optim.Adam(model.parameters(), lr=train.lr, betas=tuple(train.betas))
            for name, model in self.models.items()
        }

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.pianoroll_data import RollPhrases, require_phrases

        data = self.cfg.data
        train = RollPhrases(self.data_path, "train", data, transpose=data.transpose, seed=self.cfg.train.seed)
        require_phrases(train, self.data_path, "train")
        if self.cfg.model.voice_range == "data":
            lowest, highest = train.pitch_ranges()
            t = data.transpose
            lowest = [max(0, lo - t) for lo in lowest]
            highest = [min(data.num_pitches - 1, hi + t) for hi in highest]
            self._gen().set_pitch_ranges(lowest, highest)
            names = data.track_names
            log.info(
                "pitch ranges from the training data: %s",
                ", ".join(
                    f"{n} {lo + data.lowest_pitch}-{hi + data.lowest_pitch}"
                    for n, lo, hi in zip(names, lowest, highest, strict=True)
                ),
            )
        model = self.cfg.model
        if model.voice_leading_init != "zeros":  # a resumed or init_from run's weights are loaded after
            self._gen().set_transitions(
                train.voice_transitions(self._gen().sub_steps, model.voice_leading_positions),
                model.voice_leading_scale,
            )
            log.info("voice-leading transitions from the training data (%s)", model.voice_leading_init)
        if model.harmony:
            self._gen().set_harmony(*train.voice_intervals(self._gen().sub_steps))
            log.info("harmony: interval statistics between the voices from the training data")
        if model.restrikes:
            counts = train.voice_restrikes(self._gen().sub_steps, model.voice_leading_positions)
            self._gen().set_restrikes(counts)
            log.info(
                "restrikes from the training data: %.1f%% of held 16ths struck again",
                100 * counts[..., 1].sum() / max(1.0, counts[..., 0].sum()),
            )
        return train, RollPhrases(self.data_path, "valid", data)

    def batches_per_step(self) -> int:
        return self.cfg.loss.n_critic

    def tokens_in(self, batch: Mapping[str, torch.Tensor]) -> int:
        return int(batch["roll"].shape[0])  # phrases

    def _gen(self) -> RollGenerator:
        return unwrap(self.models["generator"])

    def _condition(self, real: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Training conditions for a real batch (B, K, T, P): each phrase gets one of the condition
        tracks with probability ``condition_prob`` (global RNG: restored on resume)."""
        if not self.cond_ids:
            return None, None
        b, k = real.shape[:2]
        choice = torch.tensor(self.cond_ids, device=real.device)[
            torch.randint(len(self.cond_ids), (b,)).to(real.device)
        ]
        use = torch.rand(b).to(real.device) < self.cfg.model.condition_prob
        track = torch.where(use, choice, torch.full_like(choice, k))
        roll = real[torch.arange(b, device=real.device), track.clamp(max=k - 1)] * use[:, None, None].to(
            real.dtype
        )
        return roll, track

    def _fake(self, real: torch.Tensor) -> torch.Tensor:
        cond_roll, cond_track = self._condition(real)
        return self.models["generator"](self._gen().noise(real.shape[0]), cond_roll, cond_track)

    def _generator_loss(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's WGAN loss on fresh fakes and, for conditioned phrases, the paired loss of
        the tracks it wrote against the phrase's real ones (``loss.paired_weight``)."""
        cond_roll, cond_track = self._condition(real)
        teacher = self.cfg.loss.paired_teacher_forced and self.cfg.loss.paired_weight > 0
        fake, logits = self.models["generator"](
            self._gen().noise(real.shape[0]),
            cond_roll,
            cond_track,
            with_logits=True,
            leading_from=real if teacher else None,
        )
        g_loss = -self.models["critic"](fake).float().mean(0).sum()
        paired = torch.zeros((), device=real.device)
        if self.cfg.loss.paired_weight > 0 and cond_track is not None:
            b, k = real.shape[:2]
            written = F.one_hot(cond_track, k + 1)[:, :k] == 0  # (B, K): tracks the generator wrote
            written &= (cond_track < k)[:, None]  # of conditioned phrases only
            if written.any():
                # pitches outside a track's range (voice_range: data) have -inf logits: not scored
                allowed = self._gen().pitch_allowed  # (K, P) or None
                if self._gen().voice:  # the real pitch per voice and step, or the rest (index P)
                    target = torch.where(real.amax(-1) > 0, real.argmax(-1), real.shape[-1])  # (B, K, T)
                    if allowed is not None:
                        ok = F.pad(allowed, (0, 1), value=True)  # (K, P + 1): the rest is always allowed
                        inside = ok[torch.arange(k, device=real.device)[None, :, None], target]  # (B, K, T)
                        target = target.masked_fill(~inside, -100)  # cross_entropy's ignore_index
                    per_cell = F.cross_entropy(
                        logits.transpose(1, -1), target.transpose(1, -1), reduction="none"
                    )
                    per_track = per_cell.transpose(1, -1).mean(-1)  # (B, K)
                else:
                    per_cell = F.binary_cross_entropy_with_logits(
                        logits.float(), real.float(), reduction="none"
                    )
                    if allowed is not None:  # (B, K, T, P)
                        per_cell = torch.where(allowed[None, :, None, :], per_cell, 0.0)
                    per_track = per_cell.mean(dim=(2, 3))
                paired = per_track[written].mean()
        return g_loss + self.cfg.loss.paired_weight * paired, paired

    def train_step(
        self, micro_batches: Sequence[Mapping[str, torch.Tensor]], ctx: StepContext
    ) -> dict[str, float]:
        gen, critic = self.models["generator"], self.models["critic"]
        heads = len(cast(Critics, getattr(critic, "module", critic)).critics)
        gp_weight = self.cfg.loss.gp_weight
        sums = {"wdist": 0.0, "gp": 0.0, "d_loss": 0.0}
        for batch in micro_batches:
            real = batch["roll"]
            with torch.no_grad():
                fake = self._fake(real)
            d_loss, wdist, gp = critic_objective(critic, real, fake, gp_weight, heads)
            ctx.optimizers["critic"].zero_grad(set_to_none=True)  # the generator step left grads here
            ctx.backward(d_loss)
            ctx.clip_and_step("critic", critic.parameters())
            sums["wdist"] += float(wdist.detach())
            sums["gp"] += float(gp.detach())
            sums["d_loss"] += float(d_loss.detach())
        n = len(micro_batches)
        metrics = {key: value / n for key, value in sums.items()}
        # Generator update, on fresh noise (and conditions from the last real batch).
        ctx.optimizers["generator"].zero_grad(set_to_none=True)
        with ctx.accelerator.no_sync(critic):  # the critic's gradients here are discarded: no all-reduce
            g_loss, paired = self._generator_loss(real)
            ctx.backward(g_loss)
        ctx.clip_and_step("generator", gen.parameters())
        metrics["g_loss"] = float(g_loss.detach())
        if self.cfg.loss.paired_weight > 0:
            metrics["paired"] = float(paired.detach())
        metrics["loss"] = metrics["d_loss"]
        return metrics

    def eval_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The critic's Wasserstein estimate on held-out phrases vs unconditioned samples, and how
        full both are (on-cells; empty track-bars)."""
        real = batch["roll"]
        b = real.shape[0]
        fake = self.models["generator"](self._gen().noise(b))
        critic = self.models["critic"]
        wdist = (critic(real).float() - critic(fake).float()).sum(-1)  # (B,)
        sums = {"wdist_sum": wdist.sum(), "phrases": torch.tensor(float(b))}
        data = self.cfg.data
        for name, roll in (("real", real), ("fake", (fake > 0.5).to(real.dtype))):
            bars = roll.view(b, roll.shape[1], data.num_bars, -1).amax(-1)  # (B, K, U)
            sums[f"{name}_on"] = roll.mean(dim=(1, 2, 3)).sum()
            sums[f"{name}_empty"] = (1 - bars).mean(dim=(1, 2)).sum()
        return sums

    def eval_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        n = max(sums.get("phrases", 0.0), 1.0)
        return {
            "wdist": sums["wdist_sum"] / n,
            "density_real": sums["real_on"] / n,
            "density_fake": sums["fake_on"] / n,
            "empty_bars_real": sums["real_empty"] / n,
            "empty_bars_fake": sums["fake_empty"] / n,
        }


TOKEN_SAMPLING = ("prime", "temperature", "top_k", "top_p", "length", "min_length")


def condition_ids(cfg: MuseGANConfig) -> list[int]:
    """Track indices of ``model.condition_tracks`` (validated against the data's tracks)."""
    names = [n.lower() for n in cfg.data.track_names]
    return [names.index(t.lower()) for t in cfg.model.condition_tracks]


def build_models(cfg: MuseGANConfig) -> dict[str, nn.Module]:
    return {"generator": RollGenerator(cfg.model, cfg.data), "critic": Critics(cfg.model, cfg.data)}


def unwrap(model: nn.Module) -> RollGenerator:
    """The RollGenerator inside a DDP wrapper (noise() lives on the module)."""
    return cast(RollGenerator, getattr(model, "module", model))


class MuseGANGenerator(Generator):
    """Multi-track piano-roll phrases from noise, or around a given track (accompaniment)."""

    options = ("bars", "seed", "binarize", "threshold", "condition", "track", *TOKEN_SAMPLING)
    draws_tokens = False  # --binarize / --threshold are its controls (--temperature: voices drawn)

    @property
    def controls(self) -> tuple[str, ...]:
        own = ("bars", "seed", "condition", "track")
        if self.draws_tokens:
            return (*own, "temperature")
        return (*own, "binarize", "threshold") if self.cfg.model.output == "multihot" else own

    def build_models(self) -> dict[str, nn.Module]:
        self.cond_ids = condition_ids(self.cfg)
        # voice_inference draw: each voice's 16ths are drawn, at --temperature (or the checkpoint's)
        self.draws_tokens = self.cfg.model.voice_inference == "draw"
        return build_models(self.cfg)

    def generate(
        self,
        num_samples: int = 1,
        *,
        bars: int | None = None,
        seed: int | None = None,
        binarize: str | None = None,
        threshold: float | None = None,
        condition: str | Path | None = None,
        track: str | None = None,
        temperature: float | None = None,
    ) -> list[Any]:
        """``num_samples`` Scores of ``bars`` bars (default one phrase) from noise, or accompanying
        track ``track`` of the MIDI file ``condition``; ``binarize`` (threshold | bernoulli) and
        ``threshold`` turn the generator's probabilities into notes; ``temperature`` is the voice
        draws' (voice_inference draw; default the checkpoint's recommendation, else 1)."""
        rolls = self.sample_rolls(
            num_samples,
            bars=bars,
            seed=seed,
            binarize=binarize,
            threshold=threshold,
            condition=condition,
            track=track,
            temperature=temperature,
        )
        return [self.roll_to_score(roll) for roll in rolls]

    def accompany(
        self, condition: str | Path, track: str | None = None, num_samples: int = 1, **options: Any
    ) -> list[Any]:
        """``generate`` around track ``track`` of the MIDI file ``condition`` (kept as given)."""
        return self.generate(num_samples, condition=condition, track=track, **options)

    def check_options(self, options: Mapping[str, Any]) -> None:
        if options.get("prime") is not None:
            raise MusgenError(
                "musegan generates from noise: --prime is for language models "
                "(use --condition-track FILE --track NAME to accompany a track)"
            )
        neutral_options = [("top_k", 0), ("top_p", 1.0), ("length", None), ("min_length", None)]
        if not self.draws_tokens:
            neutral_options.insert(0, ("temperature", 1.0))
        elif options.get("temperature") is not None and not 0 < options["temperature"] < math.inf:
            raise MusgenError(f"--temperature must be a finite number > 0, got {options['temperature']}")
        for key, neutral in neutral_options:
            if options.get(key, neutral) not in (neutral, None):
                hint = "--temperature" if self.draws_tokens else "--binarize bernoulli or --threshold"
                raise MusgenError(f"{flag(key)} does not apply to musegan (try {hint})")
        if self.cfg.model.output == "voice":
            for key in ("binarize", "threshold"):
                if options.get(key) is not None:
                    raise MusgenError(
                        f"{flag(key)} does not apply to this musegan: it writes one note (or a rest) "
                        "per voice and step; samples differ by --seed"
                    )
        super().check_options(options)

    def sample_rolls(
        self,
        n: int,
        *,
        bars: int | None = None,
        seed: int | None = None,
        binarize: str | None = None,
        threshold: float | None = None,
        condition: str | Path | None = None,
        track: str | None = None,
        temperature: float | None = None,
    ) -> list[np.ndarray]:
        """``n`` bool rolls (K, T, P): from scratch, or accompanying ``condition`` (a MIDI file)."""
        if n < 1:
            raise MusgenError(f"--num-samples must be at least 1, got {n}")
        data = self.cfg.data
        if bars is not None and bars < 1:
            raise MusgenError(f"--bars must be at least 1, got {bars}")
        cond_roll, cond_track = None, None
        if condition is not None:
            cond_roll, cond_track = self.condition_roll(condition, track)
            phrases = cond_roll.shape[0] // data.phrase_steps
            if bars is not None:
                phrases = min(phrases, math.ceil(bars / data.num_bars))
        else:
            if track is not None:
                raise MusgenError("--track names the track of --condition-track; give both")
            phrases = math.ceil((bars or data.num_bars) / data.num_bars)
        rolls = self.generate_rolls(
            n,
            phrases=phrases,
            seed=seed,
            binarize=binarize or "threshold",
            threshold=threshold or 0.5,
            cond_roll=cond_roll,
            cond_track=cond_track,
            temperature=self.sampling_settings(temperature=temperature)["temperature"],
        )
        steps = (bars * data.steps_per_bar) if bars is not None else rolls.shape[2]
        return list(rolls[:, :, :steps])

    @torch.no_grad()
    def generate_rolls(
        self,
        n: int,
        *,
        phrases: int = 1,
        seed: int | None = None,
        binarize: str = "threshold",
        threshold: float = 0.5,
        cond_roll: np.ndarray | None = None,
        cond_track: int | None = None,
        temperature: float = 1.0,
    ) -> np.ndarray:
        """``n`` samples of ``phrases`` phrases each -> bool rolls (n, K, phrases*T, P). The phrases of
        a sample share its phrase-level noise (inter, intra) and draw fresh per-bar noise. With
        ``cond_roll`` (the given track ``cond_track``: (phrases*T, P) for all samples, or (n, phrases*T, P))
        the samples accompany it. ``temperature``: of the voices' draws (voice_inference draw)."""
        if binarize not in ("threshold", "bernoulli"):
            raise MusgenError(f"--binarize must be threshold or bernoulli, got {binarize!r}")
        if not 0 < threshold < 1:
            raise MusgenError(f"--threshold must be in (0, 1), got {threshold}")
        gen = unwrap(self.models["generator"])
        rng = make_generator(seed)
        base = gen.noise(n, rng)
        t = self.cfg.data.phrase_steps
        out = []
        for j in range(phrases):
            fresh = gen.noise(n, rng)
            noise = {key: fresh[key] if key.endswith("_t") else base[key] for key in base}
            roll = track = None
            if cond_roll is not None:  # (steps, P) for every sample, or (n, steps, P) one per sample
                phrase = np.asarray(cond_roll[..., j * t : (j + 1) * t, :], dtype=np.float32)
                roll = torch.as_tensor(phrase, device=self.device).expand(n, -1, -1)
                assert cond_track is not None, "a given roll comes with its track"
                track = torch.full((n,), int(cond_track), dtype=torch.long, device=self.device)
            with torch.random.fork_rng(devices=[], enabled=gen.draws_at_sampling):
                if gen.draws_at_sampling:  # drawn voices or restrikes: from ``rng`` too
                    torch.manual_seed(int(torch.randint(2**62, (1,), generator=rng)))
                # notes are drawn on the CPU with ``rng``
                probs = gen(noise, roll, track, temperature=temperature).float().cpu()
            if binarize == "bernoulli":
                probs = torch.bernoulli(probs, generator=rng)
            out.append((probs > threshold).numpy())
        return np.concatenate(out, axis=2)

    def _calibrate(
        self,
        what: str,
        apply: Callable[[torch.Tensor], None],
        measure: Callable[[np.ndarray], np.ndarray],
        target: Sequence[float],
        bounds: tuple[float, float],
        *,
        temperature: float,
        num_samples: int,
        iterations: int,
        seed: int,
    ) -> torch.Tensor:
        """Per-voice bisection: ``apply(x)`` sets a knob (K,) that raises ``measure`` (of generated
        rolls -> (K,)), searched over ``bounds`` until each voice's measure meets ``target`` (K,);
        returns the last x applied. Every step draws its phrases from the same ``seed`` (common
        random numbers: fresh phrases per step once sent an alto's bisection far off its target)."""
        k = unwrap(self.models["generator"]).num_tracks
        if len(target) != k:
            raise MusgenError(f"{what} calibration needs {k} targets, got {len(target)}")
        goal = torch.as_tensor(list(target), dtype=torch.float32)
        low, high = torch.full((k,), bounds[0]), torch.full((k,), bounds[1])
        x = torch.zeros(k)
        for i in range(iterations):
            x = (low + high) / 2
            apply(x)
            rolls = self.generate_rolls(num_samples, seed=seed, temperature=temperature)
            got = torch.as_tensor(measure(rolls), dtype=torch.float32).nan_to_num(0.0)
            high, low = torch.where(got > goal, x, high), torch.where(got > goal, low, x)
            log.debug("%s calibration %d: %s -> %s", what, i, x.tolist(), got.tolist())
        return x

    @torch.no_grad()
    def calibrate_rests(
        self,
        target: Sequence[float],
        *,
        temperature: float = 1.0,
        num_samples: int = 256,
        iterations: int = 12,
        seed: int = 0,
    ) -> list[float]:
        """Voice output: shifts each voice's rest logit (its ``voice_bias`` entry) until the share of
        steps the voice rests in ``num_samples`` generated phrases (at ``temperature``) matches
        ``target`` (K,), by bisection over [-8, +8] nats; returns the offsets added. The GAN lets
        inner voices rest far more often than chorale voices do (the shipped model's alto and
        tenor: 28% and 33% of steps, the data's 4%), and a voice that rests cannot sing."""
        gen = unwrap(self.models["generator"])
        if gen.voice_bias is None:
            raise MusgenError(
                "rest calibration needs a musegan with one voice per track (model.output=voice)"
            )
        bias = gen.voice_bias
        base = bias[:, -1].clone()  # (K,) the rest's bias per voice

        def apply(offset: torch.Tensor) -> None:
            bias[:, -1] = base + offset.to(base.device)

        offset = self._calibrate(
            "rest",
            apply,
            rest_share,
            target,
            (-8.0, 8.0),
            temperature=temperature,
            num_samples=num_samples,
            iterations=iterations,
            seed=seed,
        )
        return [float(x) for x in offset]

    @torch.no_grad()
    def calibrate_restrikes(
        self,
        target: Sequence[float],
        *,
        temperature: float = 1.0,
        num_samples: int = 256,
        iterations: int = 10,
        seed: int = 0,
    ) -> list[float]:
        """restrikes: scales each voice's restrike probabilities (``restrike``, capped at 1) until the
        share of its melodic intervals that repeat a pitch (``repeat_share``) in ``num_samples``
        generated phrases matches ``target`` (K,), by bisection on the log factor over [-4, 2];
        returns the factors. The data's probabilities are per held 16th, and a generator that holds
        more often than the data strikes again more often too (the shipped soprano repeated 31% of
        its notes, the data's 15%)."""
        gen = unwrap(self.models["generator"])
        if gen.restrike is None:
            raise MusgenError("restrike calibration needs a musegan with model.restrikes=true")
        restrike = gen.restrike
        base = restrike.clone()  # (S, K)

        def apply(log_factor: torch.Tensor) -> None:
            restrike.copy_((base * log_factor.exp().to(base.device)).clamp(max=1.0))

        log_factor = self._calibrate(
            "restrike",
            apply,
            repeat_share,
            target,
            (-4.0, 2.0),
            temperature=temperature,
            num_samples=num_samples,
            iterations=iterations,
            seed=seed,
        )
        return [float(x) for x in log_factor.exp()]

    @torch.no_grad()
    def calibrate_intervals(
        self,
        counts: np.ndarray,
        *,
        temperature: float = 1.0,
        num_samples: int = 256,
        iterations: int = 4,
        seed: int = 0,
    ) -> np.ndarray:
        """voice_leading: tilts the transition tables until each voice moves from one 16th to the
        next by each interval (a hold included; per metrical position) as often as ``counts``
        (S, K, P + 1, P + 1) says (``RollPhrases.voice_transitions`` of the training phrases): each
        iteration adds log(data share / generated share) of every interval to every pitch-to-pitch
        transition by it (clipped to +-3 nats; rests untouched); returns the total (S, K, 2P - 1).
        A GAN's voices leap more and move by semitones less than chorale voices (the shipped model:
        9-14% semitone steps against the data's 22-29%)."""
        from musgen.data.pianoroll_data import grid_transitions

        gen = unwrap(self.models["generator"])
        if gen.transition is None:
            raise MusgenError("interval calibration needs a musegan with model.voice_leading=true")
        table = gen.transition  # (S, K, P + 1, P + 1)
        positions, p = table.shape[0], gen.pitches
        if counts.shape != tuple(table.shape):
            raise MusgenError(f"interval counts of shape {counts.shape} for tables of {tuple(table.shape)}")
        index = interval_index(p)  # (P, P) this -> next
        want = interval_counts(counts, p)  # (S, K, 2P - 1)
        total = np.zeros_like(want)
        for i in range(iterations):
            rolls = self.generate_rolls(num_samples, seed=seed + i, temperature=temperature)
            got = interval_counts(grid_transitions(rolls, gen.sub_steps, positions, p), p)
            tilt = np.log((want + 1) / (want + 1).sum(-1, keepdims=True))
            tilt -= np.log((got + 1) / (got + 1).sum(-1, keepdims=True))
            tilt = np.clip(tilt, -3.0, 3.0)
            total += tilt
            table[:, :, :p, :p] += torch.as_tensor(tilt[:, :, index], dtype=table.dtype, device=table.device)
            log.debug("interval calibration %d: largest tilt %.2f nats", i, float(np.abs(tilt).max()))
        return total

    @torch.no_grad()
    def calibrate_voice_temperatures(
        self,
        target: Sequence[float],
        *,
        temperature: float = 1.0,
        num_samples: int = 256,
        iterations: int = 10,
        seed: int = 0,
    ) -> list[float]:
        """voice_inference draw: sets each voice's temperature multiplier (``voice_temperatures``)
        until the pitch classes it uses per bar (MuseGAN's UPC) in ``num_samples`` generated phrases
        match ``target`` (K,), by bisection on the log multiplier over [-1.5, 1.5]; returns the
        multipliers. One temperature for all voices leaves the melody narrower than the data's when
        the inner voices are right, or the inner voices chromatic when the melody is."""
        gen = unwrap(self.models["generator"])
        if not gen.voice_draws:
            raise MusgenError(
                "voice temperatures need a musegan that draws its voices (voice_inference=draw)"
            )
        data = self.cfg.data

        def apply(log_multiplier: torch.Tensor) -> None:
            gen.voice_temperatures = log_multiplier.exp()

        log_multiplier = self._calibrate(
            "voice temperature",
            apply,
            lambda rolls: voice_upc(rolls, data),
            target,
            (-1.5, 1.5),
            temperature=temperature,
            num_samples=num_samples,
            iterations=iterations,
            seed=seed,
        )
        return [float(x) for x in log_multiplier.exp()]

    def condition_roll(self, midi: str | Path, track: str | None) -> tuple[np.ndarray, int]:
        """The track of a MIDI file to accompany: (steps, P) padded to whole phrases, and its index."""
        from musgen.data.pianoroll import midi_to_roll
        from musgen.data.tokenizers import MidiReadError

        data = self.cfg.data
        allowed = list(self.cfg.model.condition_tracks)
        if not allowed:
            raise MusgenError(
                "this musegan was trained without conditioning: train one with "
                "--set model.condition_tracks=[NAME] to accompany a track"
            )
        if track is None:
            if len(allowed) > 1:
                raise MusgenError(f"--track is needed: this model accompanies any of {', '.join(allowed)}")
            track = allowed[0]
        if track.lower() not in [t.lower() for t in allowed]:
            raise MusgenError(f"--track {track!r}: this model accompanies {', '.join(allowed)}")
        k = [t.lower() for t in data.track_names].index(track.lower())
        name = Path(midi).name
        try:
            roll = midi_to_roll(midi, data)
        except MidiReadError as err:
            raise MusgenError(f"{name}: {err.reason}") from None
        given = roll[k]
        if not given.any():
            pitched = [r for r in roll if r.any()]
            if len(pitched) != 1:
                raise MusgenError(
                    f"{name} has no track that reads as {track!r} (of {', '.join(data.track_names)})"
                )
            given = pitched[0]  # a one-track file (a melody): that track is the given one
        t = data.phrase_steps
        phrases = max(1, math.ceil(given.shape[0] / t))
        return np.pad(given, ((0, phrases * t - given.shape[0]), (0, 0))), k

    def roll_to_score(self, roll: np.ndarray) -> Any:
        from musgen.data.pianoroll import roll_to_score

        return roll_to_score(roll, self.cfg.data)


def rest_share(rolls: np.ndarray) -> np.ndarray:
    """(N, K, T, P) rolls -> (K,) the share of steps where each track sounds nothing."""
    return (rolls.sum(-1) == 0).mean(axis=(0, 2))


def interval_index(pitches: int) -> np.ndarray:
    """(P, P): the interval of a move from pitch index i to j, as j - i + P - 1 (in [0, 2P - 2])."""
    return np.arange(pitches)[None, :] - np.arange(pitches)[:, None] + pitches - 1


def interval_counts(counts: np.ndarray, pitches: int) -> np.ndarray:
    """(S, K, P + 1, P + 1) transition counts -> (S, K, 2P - 1) counts of the pitch-to-pitch moves
    by each interval (``interval_index``; moves from or to a rest left out)."""
    # (2P - 1, P * P) one-hot: which interval each (this, next) pair is
    which = np.eye(2 * pitches - 1)[:, interval_index(pitches).ravel()]
    moves = counts[..., :pitches, :pitches].reshape(*counts.shape[:2], -1)  # (S, K, P * P)
    return moves @ which.T


def voice_upc(rolls: np.ndarray, data: PianorollConfig) -> np.ndarray:
    """(N, K, T, P) rolls -> (K,) MuseGAN's used pitch classes per non-empty bar, per track."""
    tracks = pianoroll_metrics(rolls, roll_layout(data))["tracks"]
    return np.asarray([tracks[name]["UPC"] for name in data.track_names], dtype=np.float64)


def repeat_share(rolls: np.ndarray) -> np.ndarray:
    """(N, K, T, P) one-voice rolls -> (K,) the share of each track's melodic intervals (from one
    note to the next, a note starting where the pitch changes or follows silence) that repeat the
    pitch (0 semitones; nan for a track with fewer than two notes)."""
    value = np.where(rolls.any(-1), rolls.argmax(-1), -1)  # (N, K, T), -1 = silent
    before = np.concatenate([np.full_like(value[..., :1], -1), value[..., :-1]], axis=-1)
    onset = (value >= 0) & (value != before)  # (N, K, T)
    out = []
    for k in range(value.shape[1]):
        same = total = 0
        for line, starts in zip(value[:, k], onset[:, k], strict=True):
            pitches = line[starts]
            same += int((pitches[1:] == pitches[:-1]).sum())
            total += max(0, len(pitches) - 1)
        out.append(same / total if total else math.nan)
    return np.asarray(out)


def evaluate(
    generator: MuseGANGenerator, data_dir: Path, split: str, opts: Any
) -> tuple[dict[str, Any], list[Any]]:
    """The critic's held-out evaluation (the Task's eval_step) and statistics of generated phrases
    next to held-out phrases'."""
    from musgen.data.pianoroll_data import RollPhrases, require_phrases
    from musgen.eval.evaluate import evenly, symbolic_statistics, task_metrics
    from musgen.eval.musegan import data_phrases

    phrases = RollPhrases(data_dir, split, generator.cfg.data, progress=False)
    require_phrases(phrases, data_dir, split)
    with torch.random.fork_rng(devices=[]):  # the critic's evaluation draws generator noise
        torch.manual_seed(opts.seed)
        task = generator.evaluation_task(data_dir)
        report: dict[str, Any] = {
            "critic": {**task_metrics(task, phrases, opts.batch_size), "phrases": len(phrases)}
        }
    held_out = data_phrases(data_dir, (split,), generator.cfg.data)  # non-overlapping phrases
    reference = [generator.roll_to_score(roll) for roll in evenly(list(held_out))]
    temperature = None
    if generator.draws_tokens:  # the voices' draws: --temperature, else the checkpoint's recommendation
        temperature = generator.sampling_settings(temperature=opts.temperature)["temperature"]
        report["sampling"] = {"temperature": temperature}
    elif opts.temperature is not None:
        raise MusgenError("--temperature applies to musegan checkpoints that draw their voices only")
    samples = (
        generator.generate(opts.num_samples, seed=opts.seed, temperature=temperature)
        if opts.num_samples
        else []
    )
    report["statistics"] = symbolic_statistics(reference, samples, None, opts.seed)
    return report, samples


FAMILY = FamilySpec(
    "musegan",
    MuseGANConfig,
    MuseGANTask,
    MuseGANGenerator,
    evaluate,
    description="a MuseGAN (Dong et al. 2018): a GAN of multi-track piano-roll phrases, from noise or "
    "around a given track",
)
