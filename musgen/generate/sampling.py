"""Autoregressive sampling for every token model: temperature / top-k / top-p (transformers' logits
warpers), priming, a batch of samples, a seed, a length in tokens or bars, incremental decoding."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from musgen.errors import MusgenError
from musgen.progress import progress

if TYPE_CHECKING:
    from musgen.generate.static_decode import CompiledDecoder, CompiledLSTMDecoder

log = logging.getLogger(__name__)


@dataclass
class SamplingControls:
    length: int = 512  # new tokens at most (per sample)
    min_length: int | None = None  # EOS is suppressed before this many new tokens (default: length // 4)
    bars: int | None = None  # stop after this many new Bar tokens (tokenizers that have them)
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int | None = None
    # Decode with a torch.compile'd one-token step (transformers and the audio prior over a static
    # key/value cache, the LSTM's cells; other models decode as without it). Same samples.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.length < 1:
            raise MusgenError(f"--length must be at least 1, got {self.length}")
        if self.min_length is None:
            self.min_length = self.length // 4
        if self.min_length < 0:
            raise MusgenError(f"--min-length must be >= 0, got {self.min_length}")
        if self.bars is not None and self.bars < 1:
            raise MusgenError(f"--bars must be at least 1, got {self.bars}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):  # inf/nan would poison the softmax
            raise MusgenError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if self.top_k < 0:
            raise MusgenError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise MusgenError(f"--top-p must be in (0, 1], got {self.top_p}")


def _processors(
    ctl: SamplingControls, prime_length: int, eos_id: int | None, device: torch.device | str = "cpu"
):  # -> LogitsProcessorList
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinNewTokensLengthLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if ctl.min_length and eos_id is not None:
        # A model trained on whole pieces may end a piece right after a complete primer.
        # Its EOS id tensor lives on ``device``: torch.isin needs it where the scores are.
        procs.append(
            MinNewTokensLengthLogitsProcessor(prime_length, ctl.min_length, eos_id, device=str(device))
        )
    if ctl.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(ctl.temperature))
    if ctl.top_k > 0:
        procs.append(TopKLogitsWarper(ctl.top_k))
    if ctl.top_p < 1.0:
        procs.append(TopPLogitsWarper(ctl.top_p))
    return procs


def apply_processors(procs: Sequence, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The processors of ``_processors`` applied to scores (B, V) after ids (B, T), one by one:
    ``LogitsProcessorList``'s own call inspects every processor's signature each time (0.15 ms a
    token, a tenth of a compiled step at batch 1)."""
    for proc in procs:
        scores = proc(ids, scores)
    return scores


def limit_run(scores: torch.Tensor, ids: torch.Tensor, token: int, max_run: int) -> torch.Tensor:
    """scores (B, V) with ``token`` ruled out in the rows whose ids (B, T) end in ``max_run`` of it
    (``max_run`` 0: in every row): a cap on how long one stream may repeat an id."""
    if max_run == 0:
        blocked = torch.ones(ids.shape[0], dtype=torch.bool, device=scores.device)
    elif ids.shape[1] < max_run:
        return scores
    else:
        blocked = (ids[:, -max_run:] == token).all(dim=1)
    column = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
    column[token] = True
    return scores.masked_fill(blocked[:, None] & column, float("-inf"))


def make_generator(seed: int | None) -> torch.Generator:
    """The CPU generator every sampler draws from: seeded, or from fresh entropy."""
    return torch.Generator(device="cpu").manual_seed(seed if seed is not None else torch.seed())


def draw(scores: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """One id per row of ``scores`` (B, V) from softmax(scores): (B,) on the scores' device. Draws on
    the CPU with ``gen`` (same samples on every device), or from the global RNG when ``gen`` is None
    (training-time sampling that exact resume must replay)."""
    probs = torch.softmax(scores.detach().float(), dim=-1)
    if gen is None:
        return torch.multinomial(probs, 1)[:, 0]
    return torch.multinomial(probs.cpu(), 1, generator=gen)[:, 0].to(scores.device)


def warp_logits(ctl: SamplingControls, logits: torch.Tensor) -> torch.Tensor:
    """Temperature, top-k and top-p applied to logits (B, V) of a model without EOS or primer
    (e.g. MusicVAE's decoder): the same warpers as ``sample_sequences``."""
    procs = _processors(ctl, 0, None)
    no_ids = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)
    return apply_processors(procs, no_ids, logits)


def slid_window(context: int) -> int:
    """Positions kept when a full window slides: the last 3/4 of the context (at least one)."""
    return max(1, context - context // 4)


class IncrementalDecoder:
    """Runs ``model(ids (B, T, ...), state) -> (logits (B, T, ...), state)`` over a growing sequence:
    the primer once, then each new step alone with the state (an LSTM's (h, c), a transformer's KV
    cache). A model with a ``context`` attribute (the length it was trained on) sees at most that many
    steps: when the cache is full the window slides, i.e. the last 3/4 of the context is run again
    without its cache and decoding goes on from there. ``use_cache=False`` reruns the whole window for
    every step (the slow reference that benchmarks and tests compare against)."""

    def __init__(self, model: nn.Module, use_cache: bool = True):
        self.model, self.use_cache = model, use_cache
        self.context: int | None = getattr(model, "context", None) or None  # None: unbounded (recurrent)
        self.state: object = None
        self.cached = 0  # positions in the state

    def start(self, seqs: torch.Tensor) -> torch.Tensor:
        """The logits after the primer ``seqs`` (B, T, ...): (B, ...) in float32."""
        window = seqs if self.context is None else seqs[:, -self.context :]
        out, self.state = self.model(window)
        self.cached = window.shape[1]
        return out[:, -1].float()

    def advance(self, seqs: torch.Tensor) -> torch.Tensor:
        """The logits after ``seqs``, whose last step is new since the previous call."""
        if not self.use_cache:
            return self.start(seqs)
        if self.context is not None and self.cached >= self.context:  # slide
            return self.start(seqs[:, -slid_window(self.context) :])
        out, self.state = self.model(seqs[:, -1:], self.state)
        self.cached += 1
        return out[:, -1].float()


def one_or_per_level(cast: Callable[[str], Any], sep: str = ",") -> Callable[[str], Any]:
    """An argparse type: one number, or numbers joined by ``sep`` (one per codebook level of an audio
    prior with the delay pattern: e.g. ``--temperature 1.2,1.0,0.3,0.1``)."""

    def parse(text: str) -> Any:
        values = [cast(part) for part in text.split(sep)]
        return values[0] if len(values) == 1 else values

    parse.__name__ = cast.__name__  # argparse says "invalid float value: 'x'"
    return parse


def make_decoder(
    model: nn.Module, use_cache: bool, compile: bool, positions: int
) -> IncrementalDecoder | CompiledDecoder | CompiledLSTMDecoder:
    """The decoder for ``positions`` steps at most (primer included): a compiled one
    (``musgen.generate.static_decode``) when asked and the model has one, else ``IncrementalDecoder``."""
    from musgen.generate.static_decode import static_decoder

    if compile and use_cache:
        # a transformer's cache capacity rounded up to 256 positions: few shapes, so few compilations
        decoder = static_decoder(model, capacity=-(-positions // 256) * 256)
        if decoder is not None:
            return decoder
        log.info("no compiled decoding step for %s: decoding without compiling", type(model).__name__)
    return IncrementalDecoder(model, use_cache)


@torch.no_grad()
def sample_sequences(
    model: nn.Module,
    prime_ids: list[int],
    n: int,
    ctl: SamplingControls,
    *,
    eos_id: int | None,
    pad_id: int,
    bar_ids: list[int] | None = None,
    use_cache: bool = True,
    allowed: torch.Tensor | None = None,
    follow: torch.Tensor | None = None,
) -> list[list[int]]:
    """Continues ``prime_ids`` ``n`` times. ``model(ids (B, T), state) -> (logits (B, T, V), state)``,
    decoded incrementally (``IncrementalDecoder``: the KV cache or recurrent state, a sliding window
    past the model's ``context``). A sample ends at EOS, after ``ctl.bars`` new bars, or after
    ``ctl.length`` new tokens. Returns the primer + continuation of each sample.

    ``allowed`` (P, V) bool restricts new token i to the ids of row i % P (e.g. the id range of each
    codebook level of a flattened audio frame); ``eos_id`` None: samples run to their length.
    ``follow`` (V,) long: the token written after token t when ``follow[t] >= 0`` (an attribute
    control asked for, e.g. a density after each track token), else -1.
    """
    if n < 1:
        raise MusgenError(f"--num-samples must be at least 1, got {n}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = make_generator(ctl.seed)
    procs = _processors(ctl, len(prime_ids), eos_id, device)
    bar_set = torch.tensor(bar_ids or [], dtype=torch.long, device=device)
    decoder = make_decoder(model, use_cache, ctl.compile, len(prime_ids) + ctl.length)
    seqs = torch.tensor([prime_ids] * n, dtype=torch.long, device=device)  # (B, T0)
    next_logits = decoder.start(seqs)  # (B, V)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    bars_seen = torch.zeros(n, dtype=torch.long, device=device)
    if allowed is not None:
        allowed = allowed.to(device)
    if follow is not None:
        follow = follow.to(device)
    bar = progress(total=ctl.length, desc=f"sample {n}" if n > 1 else "sample", unit="token")
    for i in range(ctl.length):
        bar.update()
        if allowed is not None:
            next_logits = next_logits.masked_fill(~allowed[i % allowed.shape[0]], float("-inf"))
        scores = apply_processors(procs, seqs, next_logits)
        token = draw(scores, gen)  # (B,)
        if follow is not None:
            forced = follow[seqs[:, -1]]  # (B,)
            token = torch.where(forced >= 0, forced, token)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        seqs = torch.cat([seqs, token[:, None]], dim=1)
        if ctl.bars is not None and len(bar_set):
            bars_seen += torch.isin(token, bar_set).long()
            # The Bar token that opens bar ``bars + 1`` ends the sample (it is dropped with the pad).
            over = bars_seen > ctl.bars
            seqs[over & ~done, -1] = pad_id
            done |= over
        if eos_id is not None:
            done |= token == eos_id
        if bool(done.all()):
            break
        next_logits = decoder.advance(seqs)
    bar.close()
    if was_training:
        model.train()
    return seqs.tolist()


@torch.no_grad()
def sample_delayed(
    model: nn.Module,
    prime: torch.Tensor,
    n: int,
    frames: int,
    controls: list[SamplingControls],
    *,
    pad_id: int,
    bos_id: int,
    use_cache: bool = True,
    run_limits: Sequence[tuple[int, int, int]] = (),
) -> torch.Tensor:
    """Continues the code frames ``prime`` (F0, Q) by ``frames`` new frames, ``n`` times, with a model
    over MusicGen's delay pattern: ``model(ids (B, T, Q), state) -> (logits (B, T, Q, C), state)``,
    where row r holds stream k's code of frame r - 1 - k (row 0 is BOS; cells before a stream starts
    or after it ends are ``pad_id``). One model step per row, all Q streams drawn at once, each with
    its own controls (``controls[k]``; the first one's seed seeds every draw); cells the prompt
    already fixes are kept. ``run_limits``: (level, code, max_run) triples, each keeping that
    level from drawing the code after ``max_run`` frames of it in a row (``limit_run``, before the
    warpers). Returns the frames (B, F0 + frames, Q), prompt included."""
    if n < 1:
        raise MusgenError(f"--num-samples must be at least 1, got {n}")
    q = prime.shape[1]
    if len(controls) != q:
        raise MusgenError(f"sampling controls for {len(controls)} codebook levels, the model has {q}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = make_generator(controls[0].seed)
    procs = [_processors(ctl, 0, None, device) for ctl in controls]
    f0, total = prime.shape[0], prime.shape[0] + frames
    from musgen.data.audio_codes import delay_codes

    frames_grid = np.full((total, q), pad_id, dtype=np.int64)  # the prompt, then cells to draw
    frames_grid[:f0] = prime.cpu().numpy()
    rows = torch.from_numpy(delay_codes(frames_grid, pad_id, bos_id)).to(device)  # (total + Q, Q)
    fixed = torch.ones_like(rows, dtype=torch.bool)  # cells not drawn: BOS, pads, the prompt
    for k in range(q):
        fixed[1 + k + f0 : 1 + k + total, k] = False
    decoder = make_decoder(model, use_cache, controls[0].compile, total + q)
    seqs = rows[: 1 + f0].expand(n, -1, -1)  # (B, 1 + F0, Q): every cell known
    next_logits = decoder.start(seqs)  # (B, Q, C)
    bar = progress(total=total + q - 1 - f0, desc=f"sample {n}" if n > 1 else "sample", unit="frame")
    for r in range(1 + f0, total + q):
        bar.update()
        scores = [next_logits[:, k] for k in range(q)]  # Q x (B, C)
        for level, code, max_run in run_limits:
            scores[level] = limit_run(scores[level], seqs[:, 1:, level], code, max_run)
        drawn = torch.stack(
            [draw(apply_processors(p, seqs[:, :, k], scores[k]), gen) for k, p in enumerate(procs)], dim=1
        )  # (B, Q)
        row = torch.where(fixed[r], rows[r], drawn)
        seqs = torch.cat([seqs, row[:, None]], dim=1)
        if r < total + q - 1:
            next_logits = decoder.advance(seqs)
    bar.close()
    if was_training:
        model.train()
    return torch.stack([seqs[:, 1 + k : 1 + k + total, k] for k in range(q)], dim=-1)  # (B, F, Q)
