"""The tracks layout: one token stream, bar by bar, each bar's tracks (voices) one after another.

A data set built with ``--set tracks=[soprano,alto,tenor,bass]`` keeps the voices apart (MMM's idea,
bar-major so that a left-to-right model still continues music in time order)::

    Bar_None TimeSig_4/4
      Track_soprano Density_mid  Position_0 Pitch_69 Duration_1.0.8  Position_8 Pitch_71 ...
      Track_alto    Density_low  Position_0 Pitch_64 Duration_2.0.8  ...
      Track_tenor ... Track_bass ...
    Bar_None TimeSig_4/4 ...

The cell contents are miditok REMI tokens of that track alone (``Position``/``Pitch``/``Duration``,
``Velocity`` when the tokenizer keeps velocities); ``Density_*`` is an attribute control: the cell's
note onsets per beat in four classes (``density_class``), so a user can ask for busier or calmer bars.

Infilling form (``infill_sequence``; training share ``data.infill``, ``musgen infill``), suffix first
(the "SPM" order of fill-in-the-middle, which lets the gap be written as a plain continuation of
what comes before it): the bars from the gap on, with the masked cells' contents replaced by
``Fill``; ``FillStart``; the bars before the gap; then the gap's bars in full (masked cells written
by the model, the others copied)::

    Bar TimeSig Track_soprano Density_mid ... Track_alto Fill_None Track_tenor ... (to the end)
    FillStart_None  BOS Bar ... (the bars before the gap)  Bar TimeSig Track_soprano ... Track_alto Density_low ...

A first version put the masked contents after the whole piece (PSM order, each cell closed by an end
token): after 2,000 steps its gap NLL given both sides was worse than given the left side alone
(0.95 vs 0.73 nats per token for one cell). In this order the left context is adjacent again, and
the gap is as good as a continuation; the model did not learn to use the right side either in the
4,000 steps measured (docs/measured.md, "Infilling"); nor in the nearby, anticipate and next_pitch
orders, which move or insert tokens near the gap.

The hinted order (``cell_hints``, ``hinted_ids``) moves nothing: the sequence is the continuation
order, and each masked cell's input ids carry a hint class (id + V x class) that the transformer
adds as an embedding (zero-initialised): the bars left to the gap's end and the voice's first pitch
after the gap. The labels are the plain ids, so every window still trains continuation, and a
model fine-tuned from a continuation checkpoint starts exactly where it was.

The tokenizer alone describes the layout (its ``Track_<name>`` tokens, in id order), so every reader of
a tokenizer (data build, primers, decoding, ``musgen eval``) finds it without other metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import symusic

TRACK_PREFIX = "Track_"
DENSITIES = ("rest", "low", "mid", "high")
# Onsets per beat (quarter note of the bar's metre): below 1 is "low" (held notes), from 1 below
# 1.5 "mid" (a note a beat), from 1.5 "high" (running eighths). 4/4: low <= 3, mid 4-5, high >= 6.
DENSITY_EDGES = (1.0, 1.5)
FILL, FILL_START = "Fill_None", "FillStart_None"
_HEADER_PREFIXES = ("TimeSig_",)  # bar-level tokens every track's bar shares


def layout_special_tokens(tracks: Sequence[str]) -> list[str]:
    """The special tokens a tracks-layout tokenizer adds to PAD/BOS/EOS/MASK (names lower-cased)."""
    return [
        *(TRACK_PREFIX + name.lower() for name in tracks),
        *(f"Density_{d}" for d in DENSITIES),
        FILL,
        FILL_START,
    ]


def density_class(onsets: int, beats: float) -> int:
    """Index into ``DENSITIES`` of a cell with ``onsets`` note onsets in a bar of ``beats`` beats."""
    if onsets == 0:
        return 0
    rate = onsets / max(beats, 1e-9)
    return 1 if rate < DENSITY_EDGES[0] else 2 if rate < DENSITY_EDGES[1] else 3


def _beats(time_sig: str) -> float:
    """Quarter-note beats of a ``TimeSig_3/4`` token."""
    num, den = time_sig.partition("_")[2].split("/")
    return int(num) * 4 / int(den)


@dataclass(frozen=True)
class Layout:
    """The token ids of a tracks-layout tokenizer."""

    names: tuple[str, ...]  # track names, in layout order
    bar: int
    tracks: tuple[int, ...]  # Track_<name> ids, in layout order
    densities: tuple[int, ...]  # Density_<rest|low|mid|high> ids
    fill: int
    fill_start: int
    eos: int
    pad: int
    header: frozenset[int]  # bar-level tokens (TimeSig)
    content: np.ndarray  # (V,) bool: ids that may stand inside a cell after its density token
    tokens: tuple[str, ...]  # id -> token


_LAYOUTS: dict[int, tuple[Any, Layout | None]] = {}


def layout_of(tokenizer: Any) -> Layout | None:
    """The tokenizer's tracks layout, or None for a one-stream tokenizer (cached per tokenizer)."""
    cached = _LAYOUTS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    vocab: dict[str, int] = tokenizer.vocab
    track_tokens = sorted((i, t) for t, i in vocab.items() if t.startswith(TRACK_PREFIX))
    layout = None
    if track_tokens:
        tokens = [""] * len(vocab)
        for t, i in vocab.items():
            tokens[i] = t
        structural = {"Bar", "TimeSig", "Track", "Density", "Fill", "FillStart"}
        structural |= {"PAD", "BOS", "EOS", "MASK"}
        content = np.array([t.partition("_")[0] not in structural for t in tokens])
        layout = Layout(
            names=tuple(t[len(TRACK_PREFIX) :] for _, t in track_tokens),
            bar=vocab["Bar_None"],
            tracks=tuple(i for i, _ in track_tokens),
            densities=tuple(vocab[f"Density_{d}"] for d in DENSITIES),
            fill=vocab[FILL],
            fill_start=vocab[FILL_START],
            eos=vocab["EOS_None"],
            pad=vocab["PAD_None"],
            header=frozenset(i for t, i in vocab.items() if t.startswith(_HEADER_PREFIXES)),
            content=content,
            tokens=tuple(tokens),
        )
    _LAYOUTS[id(tokenizer)] = (tokenizer, layout)
    return layout


# ----------------------------------------------------------------------------- MIDI <-> ids


def voice_tracks(score: symusic.Score, names: Sequence[str]) -> list[list[int]]:
    """Indices into ``score.tracks`` of the MIDI tracks that make up each named track: tracks named
    after it (``Soprano`` ...), else the busiest pitched tracks by mean pitch, highest first (the
    rule MuseGAN's voices use, ``musgen.data.pianoroll.assign_track_indices``)."""
    from musgen.data.pianoroll import PianorollConfig, assign_track_indices

    return assign_track_indices(score, PianorollConfig(track_names=list(names)))


def _track_bars(tokenizer: Any, score: symusic.Score, tracks: list[symusic.Track]) -> list[list[str]]:
    """The REMI tokens of ``tracks`` merged into one, split at Bar tokens: one list per bar."""
    if not tracks or sum(t.note_num() for t in tracks) == 0:
        return []
    from miditok.utils import merge_tracks

    single = score.copy()
    merged = merge_tracks(list(tracks)) if len(tracks) > 1 else tracks[0].copy()
    merged.program, merged.is_drum = 0, False
    single.tracks = [merged]
    seq = tokenizer.encode(single, encode_ids=False)
    seq = seq[0] if isinstance(seq, list) else seq
    bars: list[list[str]] = []
    for token in seq.tokens:
        if token == "Bar_None":
            bars.append([])
        elif bars:
            bars[-1].append(token)
    return bars


def encode_tracks(tokenizer: Any, score: symusic.Score) -> list[int]:
    """A score as ids of the tokenizer's tracks layout (no BOS/EOS)."""
    layout = layout_of(tokenizer)
    assert layout is not None, "not a tracks-layout tokenizer"
    groups = voice_tracks(score, layout.names)
    per_track = [_track_bars(tokenizer, score, [score.tracks[i] for i in group]) for group in groups]
    n_bars = max((len(b) for b in per_track), default=0)
    longest = max(per_track, key=len) if per_track else []
    vocab = tokenizer.vocab
    out: list[str] = []
    beats = 4.0
    for b in range(n_bars):
        header = [t for t in longest[b] if t.startswith(_HEADER_PREFIXES)]
        if header:
            beats = _beats(header[0])
        out += ["Bar_None", *header]
        for name, bars in zip(layout.names, per_track, strict=True):
            cell = [t for t in bars[b] if not t.startswith(_HEADER_PREFIXES)] if b < len(bars) else []
            onsets = sum(t.startswith("Pitch_") for t in cell)
            out += [TRACK_PREFIX + name, f"Density_{DENSITIES[density_class(onsets, beats)]}", *cell]
    return [vocab[t] for t in out]


def decode_tracks(tokenizer: Any, ids: Sequence[int]) -> symusic.Score:
    """Ids of the tracks layout (fill-in-the-middle tokens ignored) -> a Score with one track per
    named track (named ``Soprano`` ...); raises where miditok cannot decode."""
    layout = layout_of(tokenizer)
    assert layout is not None, "not a tracks-layout tokenizer"
    per_track: list[list[int]] = [[] for _ in layout.names]
    current: int | None = None
    for token in ids:
        token = int(token)
        if token == layout.bar or token in layout.header:
            current = None if token == layout.bar else current
            for seq in per_track:
                seq.append(token)
        elif token in layout.tracks:
            current = layout.tracks.index(token)
        elif current is not None and per_track[current] and layout.content[token]:
            per_track[current].append(token)
    score = tokenizer.decode([seq or [layout.bar] for seq in per_track])
    for track, name in zip(score.tracks, layout.names, strict=False):
        track.name = name.title()
    return score


# ----------------------------------------------------------------------------- cells and infilling


@dataclass(frozen=True)
class Cell:
    """One track's part of one bar: ids[start] is its Track token, ids[start + 1] its density,
    ids[start + 2 : end] its notes."""

    bar: int  # 0-based, counted from the first Bar token of the ids
    track: int
    start: int
    end: int


def find_cells(ids: Sequence[int], layout: Layout) -> tuple[list[Cell], int]:
    """The cells of ``ids`` and the number of complete bars (bars whose end is inside ``ids``: the next
    Bar token or EOS follows them). Cells before the first Bar token (a window that starts inside a
    bar) are not counted."""
    cells: list[Cell] = []
    bar, start, track = -1, -1, -1
    complete = 0
    for pos, token in enumerate(ids):
        token = int(token)
        ends_bar = token == layout.bar or token == layout.eos or token == layout.pad
        if (token in layout.tracks or ends_bar) and start >= 0:
            cells.append(Cell(bar, track, start, pos))
            start = -1
        if ends_bar:
            if bar >= 0:
                complete = bar + 1
            if token != layout.bar:
                break
            bar += 1
        elif token in layout.tracks and bar >= 0:
            start, track = pos, layout.tracks.index(token)
    if start >= 0:  # the last cell runs to the end of the ids: incomplete
        cells.append(Cell(bar, track, start, len(ids)))
    return cells, complete


def bar_positions(ids: Sequence[int], layout: Layout) -> list[int]:
    """Positions of the Bar tokens in ``ids``, then the end of the last bar (EOS or the end)."""
    positions = [pos for pos, token in enumerate(ids) if int(token) == layout.bar]
    ends = [pos for pos, token in enumerate(ids) if int(token) in (layout.eos, layout.pad)]
    return positions + [ends[0] if ends else len(ids)]


def infill_sequence(
    ids: Sequence[int], masked: Sequence[Cell], layout: Layout
) -> tuple[list[int], list[int], list[int]]:
    """(view, prefix, middle) of ``ids`` for the ``masked`` cells (all in complete bars). ``view``:
    the ids from the first masked bar on, each masked cell's density and notes replaced by one
    ``Fill``; ``prefix``: the ids before that bar; ``middle``: the ids of the bars from the first to
    the last masked one, as they are. The sequence is view + [FillStart] + prefix + middle."""
    bars = bar_positions(ids, layout)
    first = min(c.bar for c in masked)
    last = max(c.bar for c in masked)
    start, stop = bars[first], bars[last + 1]
    view: list[int] = []
    pos = start
    for cell in sorted(masked, key=lambda c: c.start):
        view += [int(t) for t in ids[pos : cell.start + 1]]  # up to and with its Track token
        view.append(layout.fill)
        pos = cell.end
    view += [int(t) for t in ids[pos:]]
    return view, [int(t) for t in ids[:start]], [int(t) for t in ids[start:stop]]


def fit_infill_sequence(
    view: list[int], prefix: list[int], middle: list[int], stop_in_view: int, length: int, layout: Layout
) -> list[int]:
    """view + [FillStart] + prefix + middle in at most ``length`` ids: what is cut first is the view's
    tail after ``stop_in_view`` (the bars after the gap, from the end), then the prefix's head (the
    bars furthest before the gap), then the middle's end."""
    excess = len(view) + 1 + len(prefix) + len(middle) - length
    if excess > 0:
        cut = min(excess, len(view) - stop_in_view)
        view = view[: len(view) - cut]
        excess -= cut
    if excess > 0:
        cut = min(excess, len(prefix))
        prefix = prefix[cut:]
    return (view + [layout.fill_start] + prefix + middle)[:length]


def masked_last(ids: Sequence[int], masked: Sequence[Cell], bars: Sequence[int]) -> list[int]:
    """The masked bars of ``ids`` (``bars``: ``bar_positions``) with, in each bar, the unmasked cells
    first and the masked ones last (the nearby and anticipate orders)."""
    out: list[int] = []
    for b in range(min(c.bar for c in masked), max(c.bar for c in masked) + 1):
        cells = sorted((c for c in masked if c.bar == b), key=lambda c: c.start)
        skip = {p for c in cells for p in range(c.start, c.end)}
        out += [int(ids[p]) for p in range(bars[b], bars[b + 1]) if p not in skip]
        for c in cells:
            out += [int(t) for t in ids[c.start : c.end]]
    return out


def nearby_sequence(
    ids: Sequence[int], masked: Sequence[Cell], layout: Layout, lookahead: int
) -> tuple[list[int], list[int], list[int]]:
    """(prefix, after, middle) of ``ids`` for the ``masked`` cells in the ``nearby`` order: the ids
    before the first masked bar, the (at most ``lookahead``) bars after the last one, and the masked
    bars with, in each bar, the unmasked cells first and the masked ones last. The sequence is
    prefix + [Fill] + after + [FillStart] + middle: what follows the gap and the bar's other tracks
    are a few hundred tokens back at most when the masked cells are written."""
    bars = bar_positions(ids, layout)
    first = min(c.bar for c in masked)
    last = max(c.bar for c in masked)
    start, stop = bars[first], bars[last + 1]
    after = [int(t) for t in ids[stop : bars[min(last + 1 + lookahead, len(bars) - 1)]]]
    return [int(t) for t in ids[:start]], after, masked_last(ids, masked, bars)


def fit_nearby_sequence(
    prefix: list[int], after: list[int], middle: list[int], length: int, layout: Layout
) -> list[int]:
    """prefix + [Fill] + after + [FillStart] + middle in at most ``length`` ids: the prefix's head is
    cut first, then the tail of ``after``, then the middle's end."""
    excess = len(prefix) + len(after) + 2 + len(middle) - length
    if excess > 0:
        cut = min(excess, len(prefix))
        prefix = prefix[cut:]
        excess -= cut
    if excess > 0:
        after = after[: max(len(after) - excess, 0)]
    return (prefix + [layout.fill] + after + [layout.fill_start] + middle)[:length]


def anticipate_sequence(
    ids: Sequence[int], masked: Sequence[Cell], complete: int, layout: Layout, lookahead: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    """(prefix, middle, ahead, rest) of ``ids`` for the ``masked`` cells in the ``anticipate`` order,
    where what the gap needs from the right is a bar or two back, not a whole piece away (the
    shipped width did not learn to read it there either within 1,750 steps: docs/measured.md):
    ``prefix``: the ids before the first masked bar; ``middle``: the masked bars with, in each bar,
    the unmasked cells first and the masked ones last (a regenerated voice hears the bar's others);
    ``ahead``: up to ``lookahead`` complete bars after the last masked one; ``rest``: the ids after
    those. The sequence is prefix + middle-but-its-last-bar + [Fill] + ahead + [FillStart] +
    last-bar + rest (``anticipated``), the anticipated bars placed just before the gap's last bar
    as the Anticipatory Music Transformer places future events just before they are needed."""
    bars = bar_positions(ids, layout)
    first = min(c.bar for c in masked)
    last = max(c.bar for c in masked)
    end_ahead = min(last + 1 + lookahead, complete)
    ahead = [int(t) for t in ids[bars[last + 1] : bars[end_ahead]]] if end_ahead > last + 1 else []
    rest = [int(t) for t in ids[bars[max(end_ahead, last + 1)] :]]
    return [int(t) for t in ids[: bars[first]]], masked_last(ids, masked, bars), ahead, rest


def anticipated(middle: list[int], ahead: list[int], layout: Layout) -> list[int]:
    """``middle`` with ``[Fill] + ahead + [FillStart]`` before its last bar (nothing when ``ahead`` is
    empty: the gap ends the piece)."""
    if not ahead:
        return list(middle)
    cut = max(p for p, t in enumerate(middle) if t == layout.bar)
    return middle[:cut] + [layout.fill, *ahead, layout.fill_start] + middle[cut:]


def fit_anticipate_sequence(
    prefix: list[int], middle: list[int], ahead: list[int], rest: list[int], length: int, layout: Layout
) -> list[int]:
    """The ``anticipate`` sequence in at most ``length`` ids: the tail after the gap is cut first,
    then the prefix's head."""
    core = anticipated(middle, ahead, layout)
    excess = len(prefix) + len(core) + len(rest) - length
    if excess > 0:
        cut = min(excess, len(rest))
        rest = rest[: len(rest) - cut]
        excess -= cut
    if excess > 0:
        prefix = prefix[min(excess, len(prefix)) :]
    return (prefix + core + rest)[:length]


def next_pitches(ids: Sequence[int], bar: int, layout: Layout) -> dict[int, int]:
    """Track index -> the id of that track's first pitch in bar ``bar`` (0-based) of ``ids`` (tracks
    that sound no note there are left out)."""
    cells, _ = find_cells(ids, layout)
    out: dict[int, int] = {}
    for c in cells:
        if c.bar == bar and c.track not in out:
            pitch = next(
                (int(t) for t in ids[c.start + 2 : c.end] if layout.tokens[int(t)].startswith("Pitch_")), None
            )
            if pitch is not None:
                out[c.track] = pitch
    return out


def next_pitch_sequence(
    ids: Sequence[int], masked: Sequence[Cell], complete: int, layout: Layout
) -> list[int]:
    """``ids`` in the ``next_pitch`` order: as they are, but each masked cell of the gap's last bar
    says where its voice goes next: ``Fill`` + the track's first pitch in the bar after the gap, after
    the cell's Track token (when that bar is complete and the track sounds in it). What follows the
    gap stays a few tokens from the notes that lead to it, the order of everything else is the
    continuation order (measured: the 2-token shift cost the shipped width more than the hint gave
    within 1,250 fine-tuning steps: docs/measured.md)."""
    last = max(c.bar for c in masked)
    hints = next_pitches(ids, last + 1, layout) if last + 1 < complete else {}
    out: list[int] = []
    pos = 0
    for c in sorted((c for c in masked if c.bar == last and c.track in hints), key=lambda c: c.start):
        out += [int(t) for t in ids[pos : c.start + 1]] + [layout.fill, hints[c.track]]
        pos = c.start + 1
    return out + [int(t) for t in ids[pos:]]


# The hinted order's right-side hints: each masked cell's input ids carry one hint class (id + V x
# class; the model adds that class's embedding, zero at first, to the token's): how many bars are
# left to the gap's end (0 = its last bar; 3 or more) and where the cell's voice goes next (its first
# pitch in the bar after the gap, or "none": silent there, or the gap ends the known music).
HINT_BARS = 4
HINT_PITCHES = 129  # MIDI pitches 0-127, then "none"
HINT_CLASSES = 1 + HINT_BARS * HINT_PITCHES  # class 0: no hint


def hint_class(bars_to_end: int, next_pitch: int | None) -> int:
    """The hint class of a masked cell ``bars_to_end`` bars before its gap's last bar whose voice
    next sounds ``next_pitch`` (a MIDI number; None when unknown or silent)."""
    pitch = HINT_PITCHES - 1 if next_pitch is None else next_pitch
    return 1 + min(bars_to_end, HINT_BARS - 1) * HINT_PITCHES + pitch


def cell_hints(
    ids: Sequence[int], masked: Sequence[Cell], complete: int, layout: Layout, bars: int = 1
) -> dict[Cell, int]:
    """The ``masked`` cells (one gap: contiguous bars) of its last ``bars`` bars -> their hint
    classes, read from the bar after the gap when that bar is complete in ``ids``. With ``bars`` 1
    (data.infill_hint_bars) the gap reads exactly as a continuation up to its last bar: hints on
    every bar made the bars far from the end worse than without (docs/measured.md)."""
    last = max(c.bar for c in masked)
    after = next_pitches(ids, last + 1, layout) if last + 1 < complete else {}
    pitch = {t: int(layout.tokens[i].partition("_")[2]) for t, i in after.items()}
    return {c: hint_class(last - c.bar, pitch.get(c.track)) for c in masked if last - c.bar < bars}


def hinted_ids(ids: Sequence[int] | np.ndarray, hints: dict[Cell, int], vocab: int) -> np.ndarray:
    """``ids`` with every hinted cell's ids (its Track token, density and notes) moved to
    id + ``vocab`` x its hint class: the input of the hinted order, whose labels stay ``ids``."""
    out = np.asarray(ids, dtype=np.int64).copy()
    for cell, hint in hints.items():
        out[cell.start : cell.end] += vocab * hint
    return out


def choose_mask(cells: list[Cell], complete: int, n_tracks: int, rng: np.random.Generator) -> list[Cell]:
    """A random training mask among the complete bars: half the time 1-8 whole bars (every track),
    half the time one track over 1 bar to all of them. Empty when no bar is complete."""
    if complete < 1:
        return []
    if rng.random() < 0.5:
        length = int(rng.integers(1, min(8, complete) + 1))
        first = int(rng.integers(0, complete - length + 1))
        return [c for c in cells if first <= c.bar < first + length]
    track = int(rng.integers(0, n_tracks))
    length = int(rng.integers(1, complete + 1))
    first = int(rng.integers(0, complete - length + 1))
    return [c for c in cells if c.track == track and first <= c.bar < first + length]
