"""Infilling with a token model trained on the tracks layout (``musgen.data.track_layout``, data.infill):
regenerate bars A-B of a piece, or one track within them, and keep everything else exactly.

The piece is tokenized, the selected cells (track x bar) become ``Fill`` placeholders, the rest of the
piece follows, then ``FillStart``; the model writes each selected cell's density and notes up to
``FillEnd``, cell by cell (only note tokens and ``FillEnd`` are allowed there; a density asked for
is written for the model). The notes it wrote replace the selection's notes in a copy of the original
score: notes that start outside the selected bars, and every unselected track, are left untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import symusic
import torch

from musgen.data.track_layout import (
    DENSITIES,
    Cell,
    Layout,
    _beats,
    encode_tracks,
    fill_in_the_middle,
    find_cells,
    voice_tracks,
)
from musgen.errors import MusgenError
from musgen.generate.sampling import SamplingControls, _processors, draw, make_decoder, make_generator

log = logging.getLogger(__name__)

MAX_CELL_TOKENS = 96  # a cell's notes stop here (a bar of 32nd notes); FillEnd is then written for it


@dataclass
class Selection:
    """What to regenerate: bars ``first``..``last`` (1-based, inclusive), of one track or all."""

    first: int
    last: int
    track: int | None  # index into the layout's tracks; None = every track


def parse_bars(text: str) -> tuple[int, int]:
    """``"9-12"`` -> (9, 12); ``"5"`` -> (5, 5)."""
    lo, sep, hi = str(text).partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise MusgenError(f"--bars takes a bar or a range of bars such as 9-12, not {text!r}") from None
    if first < 1 or last < first:
        raise MusgenError(f"--bars {text}: bars count from 1 and the range must not run backwards")
    return first, last


def select(layout: Layout, bars: str | tuple[int, int], track: str | None, n_bars: int) -> Selection:
    """The selection, or a one-line error for bars outside the piece or a track the model lacks."""
    first, last = parse_bars(bars) if isinstance(bars, str) else bars
    if last > n_bars:
        raise MusgenError(f"--bars {first}-{last} reaches past the piece, which has {n_bars} bars")
    index = None
    if track is not None:
        name = track.lower()
        if name not in layout.names:
            raise MusgenError(
                f"--track {track}: the model has no such track (it knows {', '.join(layout.names)})"
            )
        index = layout.names.index(name)
    return Selection(first, last, index)


def _bar_starts(ids: Sequence[int], layout: Layout) -> tuple[list[int], list[float]]:
    """Positions of the Bar tokens in ``ids`` and each bar's start in quarter notes (+ the end)."""
    positions, quarters = [], [0.0]
    beats = 4.0
    for pos, token in enumerate(ids):
        if token == layout.bar:
            positions.append(pos)
            if len(positions) > 1:
                quarters.append(quarters[-1] + beats)
        elif token in layout.header:
            beats = _beats(layout.tokens[token])
    quarters.append(quarters[-1] + beats)
    return positions, quarters


def _window(framed: list[int], layout: Layout, sel: Selection, budget: int) -> tuple[int, int]:
    """The bars [lo, hi) around the selection whose tokens fit ``budget`` (the whole piece if it fits),
    growing a bar at a time on the left, then on the right."""
    positions, _ = _bar_starts(framed, layout)
    n = len(positions)

    def size(lo: int, hi: int) -> int:  # BOS is kept with the first bar, EOS with the last
        return (positions[hi] if hi < n else len(framed)) - (0 if lo == 0 else positions[lo])

    lo, hi = sel.first - 1, sel.last
    if size(lo, hi) > budget:
        raise MusgenError(
            f"bars {sel.first}-{sel.last} take {size(lo, hi)} tokens, more than the model's context "
            f"leaves for them ({budget}): select fewer bars"
        )
    grew = True
    while grew:
        grew = False
        for lo2, hi2 in ((lo - 1, hi), (lo, hi + 1)):
            if 0 <= lo2 and hi2 <= n and size(lo2, hi2) <= budget:
                lo, hi, grew = lo2, hi2, True
    return lo, hi


class Infiller:
    """Fills selections of pieces with a tracks-layout token model (one sample at a time)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, layout: Layout, bos: int):
        self.model, self.tokenizer, self.layout, self.bos = model, tokenizer, layout, bos
        self.context = int(getattr(model, "context", 0) or 0) or None

    def frame(self, score: symusic.Score) -> tuple[list[int], int]:
        """The piece's ids between BOS and EOS, and its number of bars."""
        framed = [self.bos, *encode_tracks(self.tokenizer, score), self.layout.eos]
        return framed, len(_bar_starts(framed, self.layout)[0])

    def selected(self, framed: list[int], sel: Selection) -> list[Cell]:
        cells, _ = find_cells(framed, self.layout)
        return [c for c in cells if sel.first - 1 <= c.bar < sel.last and sel.track in (None, c.track)]

    def prompt(self, framed: list[int], sel: Selection, reserve: int = 0) -> tuple[list[int], list[Cell]]:
        """The fill-in-the-middle prompt (up to and with FillStart) for the selection, cropped to whole
        bars around it so that ``reserve`` more tokens fit the model's context; the selected cells."""
        layout = self.layout
        masked = self.selected(framed, sel)
        positions, _ = _bar_starts(framed, layout)
        lo, hi = 0, len(positions)
        if self.context is not None:  # the selection's notes leave the prompt: Fill stands for them
            selected = sum(c.end - c.start - 1 for c in masked)
            lo, hi = _window(framed, layout, sel, self.context - reserve - 2 * len(masked) - 1 + selected)
        start = 0 if lo == 0 else positions[lo]
        stop = len(framed) if hi >= len(positions) else positions[hi]
        local = [Cell(c.bar, c.track, c.start - start, c.end - start) for c in masked]
        context, suffix, _ = fill_in_the_middle(framed[start:stop], local, layout)
        return context + suffix + [layout.fill_start], masked

    @torch.no_grad()
    def fill(
        self,
        framed: list[int],
        sel: Selection,
        ctl: SamplingControls,
        density: str | None = None,
    ) -> dict[Cell, list[int]]:
        """Each selected cell of ``framed`` -> the ids the model wrote for it (density first)."""
        layout = self.layout
        # room for the answer: the selection's own length and a quarter more
        reserve = sum(c.end - c.start + 1 for c in self.selected(framed, sel)) * 5 // 4 + 8
        prompt, masked = self.prompt(framed, sel, reserve)
        gen = make_generator(ctl.seed)
        procs = _processors(ctl, len(prompt), None)
        total = len(prompt) + len(masked) * (MAX_CELL_TOKENS + 2)
        if self.context is not None:
            total = min(total, self.context)
        decoder = make_decoder(self.model, True, ctl.compile, total)
        device = next(self.model.parameters()).device
        seq = torch.tensor([prompt], dtype=torch.long, device=device)
        logits = decoder.start(seq)  # (1, V)
        density_ids = torch.tensor(layout.densities, device=device)
        note_ok = torch.from_numpy(layout.content).to(device).clone()
        note_ok[layout.fill_end] = True
        only_density = torch.zeros_like(note_ok)
        only_density[density_ids] = True
        forced_density = None if density is None else layout.densities[DENSITIES.index(density)]
        out: dict[Cell, list[int]] = {}

        def step(token: int) -> torch.Tensor:
            nonlocal seq
            seq = torch.cat([seq, torch.tensor([[token]], device=device)], dim=1)
            return decoder.advance(seq)

        def sample(allowed: torch.Tensor) -> int:
            scores = logits.masked_fill(~allowed, float("-inf"))
            scores = procs(seq, scores) if len(procs) else scores
            return int(draw(scores, gen)[0])

        for cell in masked:
            written = [forced_density if forced_density is not None else sample(only_density)]
            logits = step(written[0])
            while True:
                token = layout.fill_end if len(written) > MAX_CELL_TOKENS else sample(note_ok)
                logits = step(token)
                if token == layout.fill_end:
                    break
                written.append(token)
            out[cell] = written
        return out


def merge_into(
    score: symusic.Score,
    framed: list[int],
    filled: dict[Cell, list[int]],
    sel: Selection,
    tokenizer: Any,
    layout: Layout,
) -> symusic.Score:
    """A copy of ``score`` whose selected tracks lose the notes that start in the selected bars and
    gain the model's notes there (clipped to the selection's end). Everything else is kept as it was."""
    from musgen.data.track_layout import decode_tracks

    ids = list(framed)
    for cell in sorted(filled, key=lambda c: c.start, reverse=True):  # from the end: starts stay valid
        ids[cell.start + 1 : cell.end] = filled[cell]
    decoded = decode_tracks(tokenizer, [t for t in ids if t not in (framed[0], layout.eos)])
    _, quarters = _bar_starts(framed, layout)
    lo_q, hi_q = quarters[sel.first - 1], quarters[sel.last]
    tpq, tpq_d = score.ticks_per_quarter, decoded.ticks_per_quarter
    lo_t, hi_t = round(lo_q * tpq), round(hi_q * tpq)
    out = score.copy()
    groups = voice_tracks(out, layout.names)
    tracks = range(len(layout.names)) if sel.track is None else [sel.track]
    for k in tracks:
        new = (
            [n for n in decoded.tracks[k].notes if lo_q <= n.time / tpq_d < hi_q]
            if k < len(decoded.tracks)
            else []
        )
        group = groups[k]
        velocity = 90
        for i in group:
            notes = out.tracks[i].notes
            if len(notes):
                velocity = int(np.median(notes.numpy()["velocity"]))
            out.tracks[i].notes = [n for n in notes if not lo_t <= n.time < hi_t]
        if not group:  # the piece has no such track: a new one, named after it
            out.tracks.append(symusic.Track(layout.names[k].title(), 0, False))
            group = [len(out.tracks) - 1]
        target = out.tracks[group[0]]
        for n in new:
            time = round(n.time / tpq_d * tpq)
            end = min(round((n.time + n.duration) / tpq_d * tpq), hi_t)
            if end > time:
                target.notes.append(symusic.Note(time, end - time, n.pitch, velocity))
        target.notes.sort(key=lambda n: (n.time, n.pitch))
    return out
