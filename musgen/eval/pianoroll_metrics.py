"""Objective metrics of MuseGAN (Dong et al., AAAI 2018) for multi-track binary piano rolls.

``rolls`` has shape (N, K, T, P): N phrases, K tracks, T time steps (a whole number of bars and of
beats), P consecutive MIDI pitches starting at ``RollLayout.lowest_pitch``. A step is on where the
value is > 0.5. A note is a maximal run of on-steps at one pitch in one track of one phrase: runs
cross bar lines but never phrase boundaries.

Metrics (each an array with one value per track; nan where undefined):

* EB  empty-bar rate: fraction of (phrase, bar) pairs where the track has no on-step.
* UPC used pitch classes: mean, over non-empty bars, of the number of distinct pitch classes.
* QN  qualified-note rate: fraction of notes lasting at least a 32nd note.
* PR  polyphonic rate: fraction of time steps where the track sounds two or more pitches (0 for
  a monophonic voice; the paper code's polyphonic_rate with threshold 2).
* DP  drum-pattern rate (drum tracks only): weighted fraction of onsets on the 16th-note grid.
* TD  tonal distance (per track pair): mean distance between the tonal centroids (Harte et al.
  2006) of the two tracks' per-beat chroma, over beats where both tracks sound.

Numpy only; every metric is vectorised over phrases, so thousands of phrases take well under a
second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from musgen.errors import MusgenError

__all__ = [
    "RollLayout",
    "drum_pattern_rate",
    "empty_bar_rate",
    "format_table",
    "pianoroll_metrics",
    "polyphonic_rate",
    "qualified_note_rate",
    "tonal_distance",
    "tonal_matrix",
    "used_pitch_classes",
]


@dataclass(frozen=True)
class RollLayout:
    """How the axes of a (N, K, T, P) piano-roll batch map to music."""

    steps_per_bar: int  # e.g. 48
    steps_per_beat: int  # e.g. 12 (a quarter note)
    lowest_pitch: int = 24  # MIDI pitch of index 0 on the pitch axis
    track_names: tuple[str, ...] = ()  # one per track, or () for "track0", "track1", ...
    drum_tracks: tuple[int, ...] = ()  # indices of drum tracks

    def __post_init__(self) -> None:
        if self.steps_per_bar < 1 or self.steps_per_beat < 1:
            raise MusgenError(
                f"steps_per_bar and steps_per_beat must be >= 1, got {self.steps_per_bar} and {self.steps_per_beat}"
            )
        if not 0 <= self.lowest_pitch <= 127:
            raise MusgenError(f"lowest_pitch must be a MIDI pitch 0..127, got {self.lowest_pitch}")


# ----------------------------------------------------------------------------------------------
# Validation and shared intermediate arrays
# ----------------------------------------------------------------------------------------------


def _as_on(rolls: Any, layout: RollLayout) -> np.ndarray:
    """Validate ``rolls`` against ``layout``; return the (N, K, T, P) bool on-step array."""
    arr = np.asarray(rolls)
    if arr.ndim != 4:
        raise MusgenError(f"rolls must have shape (N, K, T, P), got {arr.ndim} dimension(s) {arr.shape}")
    n, k, t, p = arr.shape
    if min(n, k, t, p) == 0:
        raise MusgenError(f"rolls has an empty axis: shape {arr.shape}")
    if arr.dtype != np.bool_ and not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise MusgenError(f"rolls must be bool or numeric, got dtype {arr.dtype}")
    if t % layout.steps_per_bar:
        raise MusgenError(f"T = {t} time steps is not a multiple of steps_per_bar = {layout.steps_per_bar}")
    if t % layout.steps_per_beat:
        raise MusgenError(f"T = {t} time steps is not a multiple of steps_per_beat = {layout.steps_per_beat}")
    if layout.lowest_pitch + p > 128:
        raise MusgenError(
            f"P = {p} pitches from MIDI {layout.lowest_pitch} exceed MIDI 127; check lowest_pitch or the pitch axis"
        )
    if layout.track_names and len(layout.track_names) != k:
        raise MusgenError(f"layout names {len(layout.track_names)} tracks but rolls have K = {k}")
    bad = [d for d in layout.drum_tracks if not 0 <= d < k]
    if bad:
        raise MusgenError(f"drum track indices {bad} out of range for K = {k} tracks")
    return arr if arr.dtype == np.bool_ else arr > 0.5


def _step_counts(on: np.ndarray, seg: int) -> np.ndarray:
    """(N, K, T, P) bool -> (N, K, T // seg, P) count of on-steps per segment of ``seg`` steps."""
    n, k, t, p = on.shape
    dtype = np.uint8 if seg <= 255 else np.uint32
    return on.view(np.uint8).reshape(n, k, t // seg, seg, p).sum(axis=3, dtype=dtype)


def _regroup(counts: np.ndarray, factor: int) -> np.ndarray:
    """(N, K, S, P) segment counts -> (N, K, S // factor, P) counts of segments ``factor`` times longer."""
    if factor == 1:
        return counts
    n, k, s, p = counts.shape
    return counts.reshape(n, k, s // factor, factor, p).sum(axis=3, dtype=np.int64)


def _fold_octaves(x: np.ndarray, lowest_pitch: int) -> np.ndarray:
    """(..., P) per-pitch values -> (..., 12) sums per pitch class (C = 0)."""
    p = x.shape[-1]
    front = lowest_pitch % 12
    back = (-(front + p)) % 12
    padded = np.pad(x.astype(np.int64), [(0, 0)] * (x.ndim - 1) + [(front, back)])
    return padded.reshape(*x.shape[:-1], -1, 12).sum(axis=-2)  # (..., octaves, 12) -> (..., 12)


@dataclass(frozen=True)
class _Notes:
    track: np.ndarray  # (M,) track index of each note
    onset: np.ndarray  # (M,) time step of the onset inside its phrase, 0..T-1
    length: np.ndarray  # (M,) duration in steps


def _notes(on: np.ndarray) -> _Notes:
    """All notes (maximal runs of on-steps along time) of a (N, K, T, P) bool roll."""
    n, k, t, p = on.shape
    padded = np.zeros((n, k, p, t + 2), dtype=bool)  # time last, one off-step at each phrase end
    padded[..., 1:-1] = on.transpose(0, 1, 3, 2)
    changes = np.flatnonzero(np.diff(padded, axis=-1))  # flat index into (N, K, P, T + 1)
    # In each (phrase, track, pitch) row the changes alternate onset, end (exclusive), and rows are
    # in order, so even entries are onsets and odd entries their note ends.
    starts, ends = changes[0::2], changes[1::2]
    row = starts // (t + 1)  # (M,) flat index into (N, K, P)
    return _Notes(track=(row // p) % k, onset=starts % (t + 1), length=ends - starts)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# ----------------------------------------------------------------------------------------------
# Metrics from intermediate arrays
# ----------------------------------------------------------------------------------------------


def _eb_upc(bar_counts: np.ndarray, lowest_pitch: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, B, P) per-bar counts -> (EB (K,), UPC (K,))."""
    n, k, b, _ = bar_counts.shape
    nonempty = bar_counts.any(axis=-1)  # (N, K, B)
    eb = 1.0 - nonempty.sum(axis=(0, 2)) / (n * b)
    pcs = (_fold_octaves(bar_counts > 0, lowest_pitch) > 0).sum(axis=-1)  # (N, K, B) distinct classes
    upc = _ratio(pcs.sum(axis=(0, 2)), nonempty.sum(axis=(0, 2)))  # empty bars add 0 to the sum
    return eb, upc


def _qn(notes: _Notes, num_tracks: int, min_steps: int) -> np.ndarray:
    total = np.bincount(notes.track, minlength=num_tracks)
    good = np.bincount(notes.track[notes.length >= min_steps], minlength=num_tracks)
    return _ratio(good, total)


def _dp(notes: _Notes, num_tracks: int, layout: RollLayout, tolerance: float) -> np.ndarray:
    out = np.full(num_tracks, np.nan)
    if layout.steps_per_bar % 16 or not layout.drum_tracks:
        return out
    grid = layout.steps_per_bar // 16  # steps per 16th note
    off = notes.onset % grid  # (M,)
    weight = np.where(off == 0, 1.0, np.where((off == 1) | (off == grid - 1), tolerance, 0.0))
    num = np.bincount(notes.track, weights=weight, minlength=num_tracks)
    den = np.bincount(notes.track, minlength=num_tracks)
    drums = np.asarray(sorted(set(layout.drum_tracks)), dtype=np.int64)
    out[drums] = _ratio(num[drums], den[drums])
    return out


def tonal_matrix(r1: float = 1.0, r2: float = 1.0, r3: float = 0.5) -> np.ndarray:
    """(6, 12) tonal-centroid matrix of Harte et al. (2006): fifths, minor thirds, major thirds."""
    k = np.arange(12)
    return np.stack(
        [
            r1 * np.sin(k * 7 * np.pi / 6),
            r1 * np.cos(k * 7 * np.pi / 6),
            r2 * np.sin(k * 3 * np.pi / 2),
            r2 * np.cos(k * 3 * np.pi / 2),
            r3 * np.sin(k * 2 * np.pi / 3),
            r3 * np.cos(k * 2 * np.pi / 3),
        ]
    )


def _default_pairs(num_tracks: int, layout: RollLayout) -> list[tuple[int, int]]:
    melodic = [i for i in range(num_tracks) if i not in layout.drum_tracks]
    return [(a, b) for ai, a in enumerate(melodic) for b in melodic[ai + 1 :]]


def _td(
    beat_counts: np.ndarray, lowest_pitch: int, pairs: list[tuple[int, int]]
) -> dict[tuple[int, int], float]:
    """(N, K, beats, P) per-beat counts -> {pair: mean tonal distance over beats where both sound}."""
    chroma = _fold_octaves(beat_counts, lowest_pitch).astype(np.float64)  # (N, K, beats, 12)
    total = chroma.sum(axis=-1)  # (N, K, beats)
    sounding = total > 0
    chroma = chroma / np.where(sounding, total, 1.0)[..., None]
    centroid = chroma @ tonal_matrix().T  # (N, K, beats, 6)
    out: dict[tuple[int, int], float] = {}
    for a, b in pairs:
        both = sounding[:, a] & sounding[:, b]  # (N, beats)
        if not both.any():
            out[(a, b)] = math.nan
            continue
        dist = np.linalg.norm(centroid[:, a][both] - centroid[:, b][both], axis=-1)  # (beats both sound,)
        out[(a, b)] = float(dist.mean())
    return out


def _check_pairs(pairs: list[tuple[int, int]], num_tracks: int) -> list[tuple[int, int]]:
    checked = []
    for pair in pairs:
        a, b = (int(x) for x in pair)
        if not (0 <= a < num_tracks and 0 <= b < num_tracks) or a == b:
            raise MusgenError(f"bad track pair {tuple(pair)} for K = {num_tracks} tracks")
        checked.append((a, b))
    return checked


def _default_min_steps(layout: RollLayout) -> int:
    return math.ceil(layout.steps_per_bar / 32)


# ----------------------------------------------------------------------------------------------
# Public metrics
# ----------------------------------------------------------------------------------------------


def empty_bar_rate(rolls: np.ndarray, layout: RollLayout) -> np.ndarray:
    """(K,) fraction of (phrase, bar) pairs in which the track has no on-step."""
    on = _as_on(rolls, layout)
    nonempty = on.reshape(on.shape[0], on.shape[1], -1, layout.steps_per_bar * on.shape[3]).any(axis=-1)
    return 1.0 - nonempty.mean(axis=(0, 2))  # (N, K, B) -> (K,)


def used_pitch_classes(rolls: np.ndarray, layout: RollLayout) -> np.ndarray:
    """(K,) mean over non-empty bars of the number of distinct pitch classes sounding; nan if none."""
    on = _as_on(rolls, layout)
    return _eb_upc(_step_counts(on, layout.steps_per_bar), layout.lowest_pitch)[1]


def qualified_note_rate(rolls: np.ndarray, layout: RollLayout, min_steps: int | None = None) -> np.ndarray:
    """(K,) fraction of notes lasting >= ``min_steps`` (default: a 32nd note, ceil(steps_per_bar / 32)).

    nan for a track without notes.
    """
    on = _as_on(rolls, layout)
    min_steps = _default_min_steps(layout) if min_steps is None else int(min_steps)
    if min_steps < 1:
        raise MusgenError(f"min_steps must be >= 1, got {min_steps}")
    return _qn(_notes(on), on.shape[1], min_steps)


def polyphonic_rate(rolls: np.ndarray, layout: RollLayout) -> np.ndarray:
    """(K,) fraction of the (phrase, step) pairs where the track sounds two or more pitches."""
    on = _as_on(rolls, layout)
    return (on.sum(axis=-1) >= 2).mean(axis=(0, 2))


def drum_pattern_rate(rolls: np.ndarray, layout: RollLayout, tolerance: float = 0.1) -> np.ndarray:
    """(K,) weighted fraction of note onsets on the 16th-note grid, for drum tracks (nan elsewhere).

    An onset weighs 1 on the grid (step % (steps_per_bar // 16) == 0), ``tolerance`` one step off
    it, else 0. nan if steps_per_bar is not a multiple of 16 or the track has no onset.
    """
    on = _as_on(rolls, layout)
    return _dp(_notes(on), on.shape[1], layout, tolerance)


def tonal_distance(
    rolls: np.ndarray, layout: RollLayout, pairs: list[tuple[int, int]] | None = None
) -> dict[tuple[int, int], float]:
    """Mean tonal distance (Harte et al. 2006) per track pair, as in MuseGAN.

    Per phrase and beat, each track's chroma (on-steps per pitch class) is normalised to sum 1 and
    mapped to 6-D by ``tonal_matrix()``; the distance is the Euclidean norm of the difference. It
    is averaged over beats where both tracks sound (nan if none). Default pairs: all i < j among
    non-drum tracks.
    """
    on = _as_on(rolls, layout)
    k = on.shape[1]
    pairs = _default_pairs(k, layout) if pairs is None else _check_pairs(pairs, k)
    return _td(_step_counts(on, layout.steps_per_beat), layout.lowest_pitch, pairs)


def _json_float(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def pianoroll_metrics(rolls: np.ndarray, layout: RollLayout) -> dict[str, Any]:
    """All metrics as a JSON-ready dict (nan -> None).

    ``{"num_phrases": N, "tracks": {name: {"EB", "UPC", "QN", "PR", "DP" (drum tracks only)}},
    "TD": {"nameA-nameB": value}}``.
    """
    on = _as_on(rolls, layout)
    n, k = on.shape[:2]
    names = list(layout.track_names) if layout.track_names else [f"track{i}" for i in range(k)]
    # One pass over the big array for all per-segment counts: segments of gcd(bar, beat) steps.
    seg = math.gcd(layout.steps_per_bar, layout.steps_per_beat)
    counts = _step_counts(on, seg)  # (N, K, T // seg, P)
    eb, upc = _eb_upc(_regroup(counts, layout.steps_per_bar // seg), layout.lowest_pitch)
    notes = _notes(on)
    qn = _qn(notes, k, _default_min_steps(layout))
    dp = _dp(notes, k, layout, 0.1)
    pr = polyphonic_rate(on, layout)
    td = _td(_regroup(counts, layout.steps_per_beat // seg), layout.lowest_pitch, _default_pairs(k, layout))
    tracks: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(names):
        entry = {
            "EB": _json_float(eb[i]),
            "UPC": _json_float(upc[i]),
            "QN": _json_float(qn[i]),
            "PR": _json_float(pr[i]),
        }
        if i in layout.drum_tracks:
            entry["DP"] = _json_float(dp[i])
        tracks[name] = entry
    return {
        "num_phrases": int(n),
        "tracks": tracks,
        "TD": {f"{names[a]}-{names[b]}": _json_float(v) for (a, b), v in td.items()},
    }


def _cell(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if metric == "EB" else f"{value:.3f}"


def format_table(reports: dict[str, dict]) -> str:
    """Fixed-width text table of several ``pianoroll_metrics()`` results side by side.

    One row per (metric, track) and per TD pair, one column per report; EB as a percentage; "-"
    where a report has no value.
    """
    columns = list(reports)
    track_names: list[str] = []
    pair_names: list[str] = []
    for report in reports.values():
        track_names += [t for t in report.get("tracks", {}) if t not in track_names]
        pair_names += [p for p in report.get("TD", {}) if p not in pair_names]
    rows: list[list[str]] = []
    for metric in ("EB", "UPC", "QN", "PR", "DP"):
        for track in track_names:
            entries = [reports[c].get("tracks", {}).get(track, {}) for c in columns]
            if not any(metric in e for e in entries):
                continue
            rows.append([metric, track] + [_cell(metric, e.get(metric)) for e in entries])
    for pair in pair_names:
        rows.append(["TD", pair] + [_cell("TD", reports[c].get("TD", {}).get(pair)) for c in columns])
    rows.append(["phrases", ""] + [str(reports[c].get("num_phrases", "-")) for c in columns])
    header = ["metric", "track"] + columns
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])
