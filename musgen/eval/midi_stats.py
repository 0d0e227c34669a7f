"""Musical statistics of single pieces (MIDI files or symusic Scores), for comparing generated music
with held-out data (``musgen eval``; ``musgen.eval.distributions`` compares the two sets).

Each piece gives scalars and histograms (nan / None where a feature is undefined for it):

* ``pitch_class_entropy``   entropy (bits, at most log2 12 = 3.58) of the piece's pitch-class
  histogram over notes (MusPy's pitch_class_entropy).
* ``used_pitch_classes``    MuseGAN's UPC: distinct pitch classes per non-empty bar, averaged.
* ``pitch_range``           highest minus lowest pitch, in semitones.
* ``polyphony``             mean number of pitches sounding, over the time steps where any sounds.
* ``empty_bar_rate``        MuseGAN's EB: fraction of bars (up to the last note) without a note.
* ``qualified_note_rate``   MuseGAN's QN: fraction of notes at least a 32nd note long.
* ``tonal_distance``        MuseGAN's TD (Harte et al. 2006): mean over track pairs of the distance
  between the tracks' per-beat tonal centroids; a piece with one pitched track (what a token model
  without programs writes) is split into its top line and the other notes, so that data and samples
  in the same representation are measured the same way.
* ``mean_pitch_interval``   mean absolute interval (semitones) between successive notes of a line (mgeval's
  avg_pitch_shift), over the same lines as the tonal distance (the highest note of each onset).
* ``groove_consistency``    1 - mean Hamming distance between the onset patterns of consecutive bars,
  divided by the steps per bar (Wu & Yang 2020; MusPy's groove_consistency).
* ``pitch_class_histogram`` (12,); ``pitch_interval_histogram`` (13,): those melodic intervals, 0 to
  12 semitones (an octave or more counts as 12); ``note_length_histogram`` and ``ioi_histogram`` (13,): note
  durations and inter-onset intervals (between successive distinct onsets) counted in the nearest of
  ``DURATION_CLASSES`` quarter notes (mgeval's note-length classes: 16th to dotted whole, dotted
  and triplet values), each normalised to sum 1.

EB, UPC, QN and TD come from ``musgen.eval.pianoroll_metrics`` on the piece's piano roll
(``musgen.data.pianoroll``: 12 steps per quarter note, all 128 pitches, bars from the first time
signature). Drum tracks are left out of every feature.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import symusic

from musgen.data.pianoroll import PianorollConfig, tracks_roll
from musgen.data.tokenizers import load_score
from musgen.eval.pianoroll_metrics import RollLayout, pianoroll_metrics, tonal_distance

STEPS_PER_QUARTER = 12
# Note-value classes in quarter notes: 16th, 8th triplet, dotted 16th, 8th, quarter triplet, dotted 8th,
# quarter, half triplet, dotted quarter, half, dotted half, whole, dotted whole.
DURATION_CLASSES = np.array([1 / 4, 1 / 3, 3 / 8, 1 / 2, 2 / 3, 3 / 4, 1, 4 / 3, 3 / 2, 2, 3, 4, 6])
SCALARS = (
    "pitch_class_entropy",
    "used_pitch_classes",
    "pitch_range",
    "polyphony",
    "empty_bar_rate",
    "qualified_note_rate",
    "tonal_distance",
    "mean_pitch_interval",
    "groove_consistency",
)
HISTOGRAMS = {
    "pitch_class_histogram": 12,
    "pitch_interval_histogram": 13,
    "note_length_histogram": len(DURATION_CLASSES),
    "ioi_histogram": len(DURATION_CLASSES),
}
FEATURES = (*SCALARS, *HISTOGRAMS)


def empty_features() -> dict[str, Any]:
    """The features of a piece without pitched notes: every value undefined."""
    return {**{name: math.nan for name in SCALARS}, **{name: None for name in HISTOGRAMS}, "notes": 0}


def duration_histogram(quarters: np.ndarray) -> np.ndarray | None:
    """Durations in quarter notes -> normalised counts of the nearest ``DURATION_CLASSES`` (log scale)."""
    quarters = np.asarray(quarters, dtype=np.float64)
    quarters = quarters[quarters > 0]
    if len(quarters) == 0:
        return None
    nearest = np.abs(np.log(quarters)[:, None] - np.log(DURATION_CLASSES)[None, :]).argmin(axis=1)
    counts = np.bincount(nearest, minlength=len(DURATION_CLASSES)).astype(np.float64)
    return counts / counts.sum()


def _bar_quarters(score: symusic.Score) -> int:
    """Quarter notes per bar from the first time signature (4 without one)."""
    if len(score.time_signatures) == 0:
        return 4
    ts = min(score.time_signatures, key=lambda t: t.time)
    return max(1, round(4 * ts.numerator / ts.denominator))


def _top_line_split(roll: np.ndarray) -> np.ndarray:
    """(T, P) roll -> (2, T, P): the highest sounding pitch at each step, and every other one."""
    top = np.zeros_like(roll)
    sounding = np.flatnonzero(roll.any(axis=1))
    highest = roll.shape[1] - 1 - roll[sounding, ::-1].argmax(axis=1)
    top[sounding, highest] = True
    return np.stack([top, roll & ~top])


def _line_intervals(line_roll: np.ndarray) -> np.ndarray:
    """(T, P) roll of one line -> absolute intervals between the highest pitches of successive onsets."""
    padded = np.pad(line_roll, ((1, 0), (0, 0)))
    onsets = padded[1:] & ~padded[:-1]  # (T, P) steps where a pitch starts
    steps = np.flatnonzero(onsets.any(axis=1))
    if len(steps) < 2:
        return np.zeros(0, dtype=np.int64)
    highest = line_roll.shape[1] - 1 - onsets[steps, ::-1].argmax(axis=1)
    return np.abs(np.diff(highest))


def piece_features(piece: Path | str | symusic.Score) -> dict[str, Any]:
    """All features of one piece (a MIDI path or a Score). An unreadable file raises ``MidiReadError``;
    a piece without pitched notes gives ``empty_features()``."""
    score = load_score(piece)
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes) > 0]
    if not tracks:
        return empty_features()
    tpq = score.ticks_per_quarter
    arrays = [t.notes.numpy() for t in tracks]  # dicts of columns
    notes = {key: np.concatenate([a[key] for a in arrays]) for key in ("time", "duration", "pitch")}
    pitch = notes["pitch"].astype(np.int64)
    onset = notes["time"].astype(np.int64)
    quarters = _bar_quarters(score)
    spb = STEPS_PER_QUARTER * quarters
    cfg = PianorollConfig(
        steps_per_bar=spb,
        quarters_per_bar=quarters,
        lowest_pitch=0,
        num_pitches=128,
        track_names=["all"],
        separate_repeats=True,
    )
    layout = RollLayout(steps_per_bar=spb, steps_per_beat=STEPS_PER_QUARTER, lowest_pitch=0)
    end_step = math.ceil(int((notes["time"] + notes["duration"]).max()) * STEPS_PER_QUARTER / tpq)
    steps = max(1, math.ceil(end_step / spb)) * spb
    merged = tracks_roll(tracks, tpq, steps, cfg)  # (T, 128)
    per_track = (
        np.stack([tracks_roll([t], tpq, steps, cfg) for t in tracks])
        if len(tracks) > 1
        else _top_line_split(merged)
    )  # (K, T, 128)

    metrics = pianoroll_metrics(merged[None, None], layout)["tracks"]["track0"]
    td = [v for v in tonal_distance(per_track[None], layout).values() if not math.isnan(v)]
    sounding = merged.sum(axis=1)
    intervals = np.concatenate([_line_intervals(line) for line in per_track])
    pc_hist = np.bincount(pitch % 12, minlength=12).astype(np.float64) / len(pitch)
    nz = pc_hist[pc_hist > 0]

    grid = np.rint(onset * STEPS_PER_QUARTER / tpq).astype(np.int64)
    bars = steps // spb
    pattern = np.zeros((bars, spb), dtype=bool)
    pattern[np.minimum(grid // spb, bars - 1), grid % spb] = True
    groove = (1.0 - float(np.mean(pattern[1:] != pattern[:-1]))) if bars > 1 else math.nan
    onsets = np.unique(onset)

    return {
        "pitch_class_entropy": float(-(nz * np.log2(nz)).sum()),
        "used_pitch_classes": _float(metrics["UPC"]),
        "pitch_range": float(pitch.max() - pitch.min()),
        "polyphony": float(sounding[sounding > 0].mean()) if (sounding > 0).any() else math.nan,
        "empty_bar_rate": _float(metrics["EB"]),
        "qualified_note_rate": _float(metrics["QN"]),
        "tonal_distance": float(np.mean(td)) if td else math.nan,
        "mean_pitch_interval": float(intervals.mean()) if len(intervals) else math.nan,
        "groove_consistency": groove,
        "pitch_class_histogram": pc_hist,
        "pitch_interval_histogram": (
            np.bincount(np.minimum(intervals, 12), minlength=13) / len(intervals) if len(intervals) else None
        ),
        "note_length_histogram": duration_histogram(notes["duration"] / tpq),
        "ioi_histogram": duration_histogram(np.diff(onsets) / tpq),
        "notes": int(len(pitch)),
    }


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)
