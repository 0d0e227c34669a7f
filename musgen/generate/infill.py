"""Infilling with a token model trained on the tracks layout (``musgen.data.track_layout``, data.infill):
regenerate bars A-B of a piece, or one track within them, and keep everything else exactly.

The piece is tokenized; the prompt is what the model's order puts before the selection (suffix_first:
the bars from the selection on with the selected cells (track x bar) as ``Fill`` placeholders,
``FillStart``, then the bars before the selection; hinted: the bars before it); the model then
writes the selected bars as a continuation: unselected cells copied, each selected cell's density
(written for it when asked) and notes drawn (only note tokens, until it moves on to the next cell),
in the hinted order every id of a selected cell carrying the cell's right-side hint.
The notes it wrote replace the selection's notes in a copy of the original score: notes that start
outside the selected bars, and every unselected track, are left untouched.
"""

from __future__ import annotations

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
    bar_positions,
    cell_hints,
    encode_tracks,
    find_cells,
    infill_sequence,
    nearby_sequence,
    next_pitches,
    voice_tracks,
)
from musgen.errors import MusgenError
from musgen.generate.sampling import (
    SamplingControls,
    _processors,
    apply_processors,
    draw,
    make_decoder,
    make_generator,
)

MAX_CELL_TOKENS = 96  # a cell's notes stop here (a bar of 32nd notes)


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


def parse_pitch_range(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"55-67"`` -> (55, 67): the lowest and highest MIDI pitch the regenerated notes may have."""
    if not isinstance(text, str):
        lo, hi = text
    else:
        a, sep, b = text.partition("-")
        try:
            lo, hi = int(a), int(b)
        except ValueError:
            raise MusgenError(f"--pitch-range takes two MIDI pitches such as 55-67, not {text!r}") from None
    if not 0 <= lo <= hi <= 127:
        raise MusgenError(f"--pitch-range {lo}-{hi}: MIDI pitches from 0 to 127, the lowest first")
    return int(lo), int(hi)


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


def _bar_quarters(ids: Sequence[int], layout: Layout) -> list[float]:
    """Each bar's start in quarter notes, then the end of the last bar (from the TimeSig tokens)."""
    quarters, beats, bars = [0.0], 4.0, 0
    for token in ids:
        if token == layout.bar:
            bars += 1
            if bars > 1:
                quarters.append(quarters[-1] + beats)
        elif token in layout.header:
            beats = _beats(layout.tokens[token])
    return quarters + [quarters[-1] + beats]


def _fit_bars(
    before: list[int], after: list[int], min_after: int, extra: int, budget: int, layout: Layout
) -> tuple[int, int]:
    """How many ids of ``before`` (its last bars; all of it, BOS included, once every bar fits) and of
    ``after`` (its first bars, at least ``min_after``; all of it, EOS included, once every bar fits)
    fit ``budget`` with ``extra`` separator ids, grown a bar at a time, before first."""
    before_bars = [p for p, t in enumerate(before) if t == layout.bar]
    after_bars = bar_positions(after, layout)  # Bar positions, then the end

    def before_len(k: int) -> int:  # all of it (BOS) when it holds no bar: a selection from bar 1
        return len(before) if k >= len(before_bars) else 0 if k == 0 else len(before) - before_bars[-k]

    def after_len(k: int) -> int:
        return len(after) if k >= len(after_bars) - 1 else after_bars[k]

    kb, ka = 0, min_after
    if after_len(ka) + extra > budget:
        raise MusgenError(
            f"the selected bars take {after_len(ka)} tokens, more than the model's context leaves "
            f"for them ({budget - extra}): select fewer bars"
        )
    grew = True
    while grew:
        grew = False
        if kb < len(before_bars) and before_len(kb + 1) + after_len(ka) + extra <= budget:
            kb, grew = kb + 1, True
        if ka < len(after_bars) - 1 and before_len(kb) + after_len(ka + 1) + extra <= budget:
            ka, grew = ka + 1, True
    return before_len(kb), after_len(ka)


class Infiller:
    """Fills selections of pieces with a tracks-layout token model (one sample at a time)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        layout: Layout,
        bos: int,
        order: str = "suffix_first",
        lookahead: int = 4,
        hint_bars: int = 1,
    ):
        self.model, self.tokenizer, self.layout, self.bos = model, tokenizer, layout, bos
        # as the model was trained (data.infill_order, infill_lookahead, infill_hint_bars)
        self.order, self.lookahead, self.hint_bars = order, lookahead, hint_bars
        self.vocab = len(layout.tokens)  # hinted ids are id + vocab x hint class
        self.context = int(getattr(model, "context", 0) or 0) or None

    def frame(self, score: symusic.Score) -> tuple[list[int], int]:
        """The piece's ids between BOS and EOS, and its number of bars."""
        framed = [self.bos, *encode_tracks(self.tokenizer, score), self.layout.eos]
        return framed, len(bar_positions(framed, self.layout)) - 1

    def selected(self, framed: list[int], sel: Selection) -> list[Cell]:
        cells, _ = find_cells(framed, self.layout)
        return [c for c in cells if sel.first - 1 <= c.bar < sel.last and sel.track in (None, c.track)]

    def prompt(self, framed: list[int], sel: Selection, reserve: int = 0) -> tuple[list[int], list[Cell]]:
        """The infilling prompt in the model's order (``musgen.data.track_layout``), cut to whole bars
        so that ``reserve`` more tokens fit the model's context; and the selected cells.
        suffix_first: the bars from the selection on with its cells as ``Fill``, ``FillStart``, the
        bars before it. nearby: the bars before it, ``Fill``, the next bars, ``FillStart``. anticipate
        next_pitch and hinted: the bars before it (their lookahead and hints are in ``plan``)."""
        masked = self.selected(framed, sel)
        budget = (self.context - reserve) if self.context is not None else 10**9
        layout = self.layout
        if self.order in ("next_pitch", "anticipate", "hinted"):  # the bars before; the plan does the rest
            prefix = framed[: bar_positions(framed, layout)[sel.first - 1]]
            extra = len(self.ahead(framed, sel)) + 2 if self.order == "anticipate" else 0
            kept, _ = _fit_bars(prefix, [], 0, extra, budget, layout)
            return prefix[len(prefix) - kept :], masked
        if self.order == "nearby":
            prefix, after, _ = nearby_sequence(framed, masked, layout, self.lookahead)
            kept, n_after = _fit_bars(prefix, after, 0, 2, budget, layout)
            prompt = prefix[len(prefix) - kept :] + [layout.fill] + after[:n_after] + [layout.fill_start]
            return prompt, masked
        view, prefix, _ = infill_sequence(framed, masked, layout)
        kept, n_view = _fit_bars(prefix, view, sel.last - sel.first + 1, 1, budget, layout)
        return view[:n_view] + [layout.fill_start] + prefix[len(prefix) - kept :], masked

    def ahead(self, framed: list[int], sel: Selection) -> list[int]:
        """The anticipate order's bars after the selection (the model's lookahead; none at the end)."""
        bars = bar_positions(framed, self.layout)
        complete = len(bars) - 1
        return (
            framed[bars[sel.last] : bars[min(sel.last + self.lookahead, complete)]]
            if sel.last < complete
            else []
        )

    def offsets(self, framed: list[int], sel: Selection) -> dict[Cell, int]:
        """Each selected cell -> what its input ids carry on top of the ids (hinted order: vocab x its
        hint class; 0 in the other orders)."""
        masked = self.selected(framed, sel)
        if self.order != "hinted":
            return dict.fromkeys(masked, 0)
        complete = len(bar_positions(framed, self.layout)) - 1
        hints = cell_hints(framed, masked, complete, self.layout, self.hint_bars)
        return {c: self.vocab * hints.get(c, 0) for c in masked}

    def plan(self, framed: list[int], sel: Selection) -> list[int | Cell]:
        """What follows the prompt: ids to copy and, where a selected cell's density and notes go,
        the cell (after its copied Track token): the selected bars as they are (suffix_first), or
        each bar's unselected cells first (nearby, anticipate; the latter with ``Fill``, the bars
        after the selection and ``FillStart`` before its last bar; hinted: a selected cell's Track
        token carries its hint, as its notes will)."""
        bars = bar_positions(framed, self.layout)
        masked = self.selected(framed, sel)
        offsets = self.offsets(framed, sel)
        complete = len(bars) - 1
        hints = (
            next_pitches(framed, sel.last, self.layout)
            if self.order == "next_pitch" and sel.last < complete
            else {}
        )
        steps: list[int | Cell] = []
        for b in range(sel.first - 1, sel.last):
            if b == sel.last - 1 and self.order == "anticipate" and (ahead := self.ahead(framed, sel)):
                steps += [self.layout.fill, *ahead, self.layout.fill_start]
            cells = sorted((c for c in masked if c.bar == b), key=lambda c: c.start)
            starts = {c.start: c for c in cells}
            pos = bars[b]
            late: list[int | Cell] = []
            while pos < bars[b + 1]:
                cell = starts.get(pos)
                if cell is None:
                    steps.append(framed[pos])
                    pos += 1
                    continue
                hint = (
                    [self.layout.fill, hints[cell.track]] if b == sel.last - 1 and cell.track in hints else []
                )
                (late if self.order in ("nearby", "anticipate") else steps).extend(
                    [framed[cell.start] + offsets[cell], *hint, cell]
                )
                pos = cell.end
            steps += late
        return steps

    @torch.no_grad()
    def fill(
        self,
        framed: list[int],
        sel: Selection,
        ctl: SamplingControls,
        density: str | None = None,
        pitch_range: tuple[int, int] | None = None,
    ) -> dict[Cell, list[int]]:
        """Each selected cell of ``framed`` -> the ids the model wrote for it (density first). The
        selection's bars are written after the prompt as a continuation: the tokens of unselected
        cells and the bar and track tokens copied, the selected cells' density (unless given) and
        notes drawn, a cell ending when the model writes what comes after a cell; with ``pitch_range``
        (lowest, highest MIDI pitch) only those pitches are drawn (a constraint on sampling, not a
        learned control like the density)."""
        layout = self.layout
        bars = bar_positions(framed, layout)
        lo, hi = bars[sel.first - 1], bars[sel.last]
        drawn = sum(c.end - c.start for c in self.selected(framed, sel))
        reserve = (hi - lo) + drawn // 4 + 8  # the selection's bars, with room for busier cells
        prompt, _ = self.prompt(framed, sel, reserve)  # (anticipate: it leaves room for the lookahead)
        if self.order == "anticipate":
            reserve += len(self.ahead(framed, sel)) + 2
        gen = make_generator(ctl.seed)
        procs = _processors(ctl, len(prompt), None)
        total = len(prompt) + reserve
        if self.context is not None:
            total = min(total, self.context)
        decoder = make_decoder(self.model, True, ctl.compile, total)
        device = next(self.model.parameters()).device
        seq = torch.tensor([prompt], dtype=torch.long, device=device)
        logits = decoder.start(seq)  # (1, V)
        enders = [*layout.tracks, layout.bar, layout.eos]  # what may follow a cell
        note_or_end = torch.from_numpy(layout.content).to(device).clone()
        note_or_end[enders] = True
        if pitch_range is not None:
            pitches = {i: int(t[6:]) for i, t in enumerate(layout.tokens) if t.startswith("Pitch_")}
            outside = [i for i, p in pitches.items() if not pitch_range[0] <= p <= pitch_range[1]]
            if len(outside) == len(pitches):
                raise MusgenError(
                    f"--pitch-range {pitch_range[0]}-{pitch_range[1]}: the model knows no pitch there"
                )
            note_or_end[outside] = False
        only_density = torch.zeros_like(note_or_end)
        only_density[list(layout.densities)] = True
        forced_density = None if density is None else layout.densities[DENSITIES.index(density)]
        offsets = self.offsets(framed, sel)
        out: dict[Cell, list[int]] = {}

        def step(token: int) -> torch.Tensor:
            nonlocal seq
            seq = torch.cat([seq, torch.tensor([[token]], device=device)], dim=1)
            return decoder.advance(seq)

        def sample(allowed: torch.Tensor) -> int:
            scores = logits.masked_fill(~allowed, float("-inf"))
            scores = apply_processors(procs, seq % self.vocab, scores)
            return int(draw(scores, gen)[0])

        for item in self.plan(framed, sel):
            if not isinstance(item, Cell):
                logits = step(item)  # a copied token (a selected cell's Track token too)
                continue
            offset = offsets[item]
            written = [forced_density if forced_density is not None else sample(only_density)]
            logits = step(written[0] + offset)
            while len(written) <= MAX_CELL_TOKENS:
                token = sample(note_or_end)
                if not layout.content[token]:  # the model ends the cell
                    break
                written.append(token)
                logits = step(token + offset)
            out[item] = written
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
    quarters = _bar_quarters(framed, layout)
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
