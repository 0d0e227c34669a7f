"""Monophonic melodies on a 16th-note grid, in the classic MelodyRNN / MusicVAE event encoding.

One event per grid step:

* ``HOLD`` (0)      nothing happens: the sounding note (or the silence) goes on;
* ``NOTE_OFF`` (1)  the sounding note stops: silence from here;
* ``2 + k``         a note of pitch ``min_pitch + k`` starts (and ends the previous one).

Polyphony is reduced to one line, "highest note wins": of notes starting together the highest is
kept, a note starting under a held higher note is dropped, a higher (or equal) one cuts the held
note short. Pitches outside the range are folded in by octaves.

Meters: windows are whole bars of one meter (``MelodyConfig.meter``) on the bar lines of the file's
time signatures (``bar_runs``). A pickup (anacrusis) is seen when the file marks it: as a first time
signature stretch shorter than a bar, as notes that start after time 0 of a full first bar, or with
a marker ``musgen:pickup=Q`` where it starts (``marked_short_measures``). The built-in corpora's
conversion writes those markers because music21 writes a pickup as notes under the full time
signature, the next bar line later (in a sample of 400 folk tunes, 275 start so, and their repeated
sections again; many Bach chorales too). A pickup written so in a file without the marker is not
seen: the MIDI holds no trace of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import symusic

from musgen.errors import ConfigError, MusgenError

from .corpus import PICKUP_MARK
from .tokenizers import MidiReadError, load_score

log = logging.getLogger(__name__)

HOLD = 0
NOTE_OFF = 1
FIRST_PITCH_ID = 2


# Meters whose bars are the same on the 16th-note grid: material in the key is read as the value's
# (exact: 2/2 and 4/4 both have bars of 16 steps, on the same bar lines).
SAME_BARS = {"2/2": "4/4"}
MIDI_DEFAULT_METER = (4, 4)  # what a MIDI file without a time signature is in


def parse_meter(text: str) -> tuple[int, int]:
    """(numerator, denominator) of a time signature written "N/D", e.g. "6/8"; ConfigError otherwise."""
    num, _, den = str(text).partition("/")
    if not (num.isdigit() and den.isdigit() and int(num) >= 1 and int(den) in (1, 2, 4, 8, 16, 32)):
        raise ConfigError(f"data.meter must be a time signature like 4/4, 6/8 or 3/4, got {text!r}")
    return int(num), int(den)


def meter_family(numerator: int, denominator: int) -> str:
    """The meter a model is trained for that material in this time signature belongs to: "N/D" itself,
    or the meter with the same bars (2/2 -> 4/4). 3/4 and 6/8 are distinct (same bar, other beats)."""
    name = f"{numerator}/{denominator}"
    return SAME_BARS.get(name, name)


def bar_steps(numerator: int, denominator: int, steps_per_quarter: int) -> float:
    """Grid steps in a bar of N/D (a whole note is 4 quarters); not whole for e.g. 5/16 on a 16th grid."""
    return numerator * 4 * steps_per_quarter / denominator


@dataclass
class MelodyConfig:
    """How melodies are cut out of MIDI; shared by the training data and by clips to interpolate.

    A model is trained for one meter (``meter``): its windows are ``num_bars`` whole bars of that
    meter, on the bar lines of the piece's own time signatures (see ``bar_runs``); material in
    other meters is left out. 2/2 counts as 4/4 (``SAME_BARS``).
    """

    num_bars: int = 16  # bars per window (2 or 16 in MusicVAE)
    steps_per_quarter: int = 4  # 16th-note grid
    meter: str = "4/4"  # the time signature of the windows: 4/4 (with 2/2), 3/4, 6/8, 9/8, 2/4, ...
    quarters_per_bar: int | None = None  # old setting, replaced by ``meter``; if set it must agree
    pitch_range: list[int] = field(default_factory=lambda: [21, 108])  # inclusive, as MusicVAE
    track: str = (
        "merge"  # merge: all non-drum tracks as one line; each: every track its own; "N": track N only
    )
    hop_bars: int = 1  # windows start every ``hop_bars`` bars
    max_silence: float = 0.5  # skip windows where more than this fraction of steps is silent
    transpose: int = 0  # training: random transposition in [-transpose, +transpose] semitones

    @property
    def family(self) -> str:
        return meter_family(*parse_meter(self.meter))

    @property
    def steps_per_bar(self) -> int:
        return int(bar_steps(*parse_meter(self.meter), self.steps_per_quarter))

    @property
    def window_steps(self) -> int:
        return self.num_bars * self.steps_per_bar

    @property
    def vocab_size(self) -> int:
        return FIRST_PITCH_ID + self.pitch_range[1] - self.pitch_range[0] + 1

    def validate(self) -> None:
        lo, hi = self.pitch_range if len(self.pitch_range) == 2 else (0, -1)  # (0, -1) fails below
        if not (0 <= lo <= hi <= 127 and hi - lo >= 11):
            raise ConfigError(
                f"data.pitch_range must be [lo, hi] within 0..127 spanning an octave, got {self.pitch_range}"
            )
        if self.num_bars < 1 or self.steps_per_quarter < 1 or self.hop_bars < 1:
            raise ConfigError("data.num_bars, steps_per_quarter and hop_bars must be at least 1")
        num, den = parse_meter(self.meter)
        steps = bar_steps(num, den, self.steps_per_quarter)
        if not steps.is_integer():
            raise ConfigError(
                f"data.meter {self.meter}: a bar is {steps:g} steps of the grid "
                f"({self.steps_per_quarter} per quarter note); it must be whole"
            )
        if self.quarters_per_bar is not None and self.quarters_per_bar * den != 4 * num:
            raise ConfigError(
                f"data.quarters_per_bar ({self.quarters_per_bar}) is replaced by data.meter and disagrees "
                f"with it ({self.meter}); drop quarters_per_bar"
            )
        if not 0 <= self.max_silence <= 1:
            raise ConfigError(f"data.max_silence must be in [0, 1], got {self.max_silence}")
        if self.track not in ("merge", "each") and not self.track.isdigit():
            raise ConfigError(f"data.track must be merge, each or a track number, got {self.track!r}")


def _track_groups(score: symusic.Score, track: str) -> list[list[symusic.Track]]:
    pitched = [t for t in score.tracks if not t.is_drum and t.note_num() > 0]
    if not pitched:
        raise MidiReadError("no pitched (non-drum) notes")
    if track == "merge":
        return [pitched]
    if track == "each":
        return [[t] for t in pitched]
    index = int(track)
    if index >= len(pitched):
        raise MidiReadError(f"track {index} does not exist ({len(pitched)} tracks with pitched notes)")
    return [[pitched[index]]]


def _fold(pitch: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Moves pitches into [lo, hi] by whole octaves (hi - lo >= 11 guarantees a fit)."""
    pitch = pitch.copy()
    below = pitch < lo
    pitch[below] += 12 * np.ceil((lo - pitch[below]) / 12).astype(pitch.dtype)
    above = pitch > hi
    pitch[above] -= 12 * np.ceil((pitch[above] - hi) / 12).astype(pitch.dtype)
    return pitch


def line_from_notes(onsets: np.ndarray, offsets: np.ndarray, pitches: np.ndarray, lo: int) -> np.ndarray:
    """Events (int16, one per step, ending with the last NOTE_OFF) of the highest-note line.

    ``onsets``/``offsets`` are grid steps (offset > onset), ``pitches`` already within range.
    """
    events = np.zeros(int(offsets.max()) + 1, dtype=np.int16)
    order = np.lexsort((-pitches, onsets))  # by onset, highest pitch first
    cur_end, cur_pitch, last_onset = 0, -1, -1
    for i in order:
        s, e, p = int(onsets[i]), int(offsets[i]), int(pitches[i])
        if s == last_onset:
            continue  # a lower note starting together with the kept one
        if s < cur_end and p < cur_pitch:
            continue  # starts under a held higher note
        if cur_pitch >= 0 and cur_end < s:
            events[cur_end] = NOTE_OFF
        events[s] = FIRST_PITCH_ID + p - lo
        cur_end, cur_pitch, last_onset = e, p, s
    events[cur_end] = NOTE_OFF
    return events[: cur_end + 1]


def extract_melodies(score: symusic.Score, cfg: MelodyConfig) -> tuple[list[np.ndarray], bool]:
    """The melody line(s) of a score per ``cfg.track``; also whether polyphony had to be reduced."""
    tpq = score.ticks_per_quarter
    lo, hi = cfg.pitch_range
    melodies, polyphonic = [], False
    for group in _track_groups(score, cfg.track):
        arrays = [t.notes.numpy() for t in group]
        time = np.concatenate([a["time"] for a in arrays]).astype(np.int64)
        end = time + np.concatenate([a["duration"] for a in arrays]).astype(np.int64)
        pitch = _fold(np.concatenate([a["pitch"] for a in arrays]).astype(np.int64), lo, hi)
        onsets = np.rint(time * cfg.steps_per_quarter / tpq).astype(np.int64)
        offsets = np.maximum(np.rint(end * cfg.steps_per_quarter / tpq).astype(np.int64), onsets + 1)
        order = np.argsort(onsets, kind="stable")
        # Polyphonic if a note starts before the previous one (by onset) has ended.
        polyphonic |= bool(np.any(onsets[order][1:] < np.maximum.accumulate(offsets[order])[:-1]))
        melodies.append(line_from_notes(onsets, offsets, pitch, lo))
    return melodies, polyphonic


def sounding_pitch_ids(events: np.ndarray) -> np.ndarray:
    """For each step the id of the note sounding there (NOTE_OFF/HOLD where silent)."""
    positions = np.where(events != HOLD, np.arange(len(events)), 0)
    last = np.maximum.accumulate(positions)
    state = events[last].astype(np.int64)
    state[(last == 0) & (events[0] == HOLD)] = NOTE_OFF  # before the first event: silence
    return state


def time_signature_steps(score: symusic.Score, steps_per_quarter: int) -> np.ndarray:
    """(K, 3) int64 rows (step, numerator, denominator) of a score's time signatures in time order;
    of several at one step the last counts. Before the first one (or without any) a MIDI file is in
    4/4, the MIDI default. A short measure the file marks (``marked_short_measures``: a pickup) ends
    a stretch: the time signature in force is repeated where it ends, a bar line, unless another
    time signature starts in the measure or at its end."""
    tpq = score.ticks_per_quarter
    rows: dict[int, tuple[int, int]] = {0: MIDI_DEFAULT_METER}
    for ts in sorted(score.time_signatures, key=lambda t: t.time):  # stable: equal times keep file order
        rows[int(round(ts.time * steps_per_quarter / tpq))] = (int(ts.numerator), int(ts.denominator))
    for start, length in marked_short_measures(score, steps_per_quarter):
        end = start + length
        if length > 0 and not any(start < step <= end for step in rows):
            rows[end] = rows[max(step for step in rows if step <= start)]
    return np.array([(step, n, d) for step, (n, d) in sorted(rows.items())], dtype=np.int64).reshape(-1, 3)


def marked_short_measures(score: symusic.Score, steps_per_quarter: int) -> list[tuple[int, int]]:
    """(first step, steps) of the measures shorter than a bar that a file marks with a marker
    ``musgen:pickup=Q`` at the measure's start (Q quarter notes), in time order: the pickup
    (anacrusis) of a tune, and the short bars around a repeated one, as the built-in corpora's
    conversion writes them. None in other files."""
    tpq = score.ticks_per_quarter
    found = []
    for marker in sorted(score.markers, key=lambda m: m.time):
        if not marker.text.startswith(PICKUP_MARK):
            continue
        try:
            quarters = Fraction(marker.text.removeprefix(PICKUP_MARK).strip())
        except (ValueError, ZeroDivisionError):
            log.debug("unreadable pickup marker %r", marker.text)
            continue
        start = int(round(marker.time * steps_per_quarter / tpq))
        found.append((start, round(quarters * steps_per_quarter)))
    return found


def bar_runs(
    time_signatures: np.ndarray, length: int, steps_per_quarter: int
) -> dict[str, list[tuple[int, int]]]:
    """Per meter (``meter_family``) of a piece, its runs of consecutive whole bars: (first step, bars).

    Every time signature event starts a bar (MIDI's rule; music21 writes one at each measure whose
    meter differs from the previous one's, and at some section starts), and bars are counted from
    there: a stretch shorter than a bar, such as a pickup written as a short bar of its own (1/8
    before 3/4) or a marked one (``time_signature_steps`` ends a stretch after it), holds no bar,
    so windows start at the first full bar; the incomplete bar at the end of a stretch is dropped.
    Stretches of one meter whose bar lines continue into each other (the same time signature
    repeated on a bar line, 2/2 after 4/4) make one run.

    A pickup that the file does not mark (notes from time 0, the first bar line later) cannot be
    seen here (see the module docstring).
    """
    ends = [*time_signatures[1:, 0].tolist(), length]
    runs: dict[str, list[list[int]]] = {}  # family -> [start, end, bar] per run
    previous: tuple[str, list[int]] | None = None  # the run the next stretch may continue
    for (start, num, den), end in zip(time_signatures.tolist(), ends, strict=True):
        end = min(end, length)
        bar = bar_steps(num, den, steps_per_quarter)
        if end <= start or not bar.is_integer():  # past the melody's end, or off the grid
            previous = None
            continue
        family = meter_family(num, den)
        if previous is not None and previous[0] == family:
            run = previous[1]  # same family: same bar length
            # Joined when this stretch starts on the run's bar grid less than a bar after its end:
            # a closing short bar and the repeated pickup after it (marked stretches, less than a
            # bar each) add up to one bar, and the bars go on across them.
            if 0 <= start - run[1] < run[2] and (start - run[0]) % run[2] == 0:
                run[1] = end
                continue
            if end - start < bar:  # a short stretch (a marked pickup) between two of the run's
                continue
        previous = (family, [start, end, int(bar)])
        runs.setdefault(family, []).append(previous[1])
    return {
        family: [(start, (end - start) // bar) for start, end, bar in spans if end - start >= bar]
        for family, spans in runs.items()
    }


def runs_in_meter(runs: dict[str, list[tuple[int, int]]], family: str) -> list[tuple[int, int]]:
    """The runs of whole bars of meter ``family``, with the bars of a meter that is exactly k of them
    split into k (4/4 and 2/2 into two 2/4 bars, 6/8 into two 3/8): every bar line of the longer
    meter is one of the shorter, so the conversion is exact; the reverse (which 2/4 bars pair
    into a 4/4 bar) is not, and is never made."""
    num, den = parse_meter(family)
    out = list(runs.get(family, []))
    for other, spans in runs.items():
        o_num, o_den = parse_meter(other)
        if other != family and o_den == den and o_num % num == 0:
            out += [(start, bars * (o_num // num)) for start, bars in spans]
    return sorted(out)


def windows_by_meter(
    events: np.ndarray, cfg: MelodyConfig, time_signatures: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """For each meter of a melody line, the start steps of its windows of ``cfg.num_bars`` bars of
    that meter (see ``window_starts``); ``time_signatures`` as ``time_signature_steps`` gives them,
    None for 4/4 throughout. Each meter counts only its own bars (no conversion)."""
    return _starts(events, cfg, time_signatures, converted=False)


def _starts(
    events: np.ndarray, cfg: MelodyConfig, time_signatures: np.ndarray | None, converted: bool
) -> dict[str, np.ndarray]:
    """Window starts per meter; with ``converted`` the model's meter also takes the bars of meters
    that split into it exactly (``runs_in_meter``)."""
    if time_signatures is None:
        time_signatures = np.array([(0, *MIDI_DEFAULT_METER)], dtype=np.int64)
    sounding = np.concatenate([[0], np.cumsum(sounding_pitch_ids(events) >= FIRST_PITCH_ID)])
    all_runs = bar_runs(time_signatures, len(events), cfg.steps_per_quarter)
    if converted:
        all_runs[cfg.family] = runs_in_meter(all_runs, cfg.family)
    out = {}
    for family, runs in all_runs.items():
        bar = int(bar_steps(*parse_meter(family), cfg.steps_per_quarter))
        size = cfg.num_bars * bar
        starts = [
            start + bar * np.arange(0, bars - cfg.num_bars + 1, cfg.hop_bars, dtype=np.int64)
            for start, bars in runs
            if bars >= cfg.num_bars
        ]
        starts_array = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        notes = sounding[starts_array + size] - sounding[starts_array]
        out[family] = starts_array[(notes > 0) & (1.0 - notes / size <= cfg.max_silence)]
    return out


def window_starts(
    events: np.ndarray, cfg: MelodyConfig, time_signatures: np.ndarray | None = None
) -> np.ndarray:
    """Start steps of the windows of a melody in the model's meter: ``cfg.num_bars`` whole bars on the
    piece's bar lines (``bar_runs``), every ``hop_bars`` bars, some note sounding and at most
    ``max_silence`` of the window silent. Without ``time_signatures``, the line is in 4/4 from step 0."""
    return _starts(events, cfg, time_signatures, converted=True).get(cfg.family, np.zeros(0, dtype=np.int64))


def cut_window(events: np.ndarray, start: int, size: int) -> np.ndarray:
    """``events[start:start+size]`` made self-contained: a note held into the window starts at its
    first step (otherwise the window would begin with a silent HOLD)."""
    window = np.array(events[start : start + size], dtype=np.int64)
    if window[0] == HOLD and start > 0:
        window[0] = sounding_pitch_ids(np.asarray(events[: start + 1]))[-1]
    return window


def transpose_window(window: np.ndarray, semitones: int, num_pitches: int) -> np.ndarray | None:
    """Shifts every note-on; None if a pitch would leave the range."""
    if semitones == 0:
        return window
    notes = window >= FIRST_PITCH_ID
    shifted = window[notes] + semitones
    if notes.any() and (shifted.min() < FIRST_PITCH_ID or shifted.max() >= FIRST_PITCH_ID + num_pitches):
        return None
    out = window.copy()
    out[notes] = shifted
    return out


def join_windows(windows: list[np.ndarray]) -> np.ndarray:
    """Windows one after another; a window opening with HOLD gets a NOTE_OFF so that it does not
    prolong the previous window's last note."""
    parts: list[np.ndarray] = []
    for window in windows:
        window = np.array(window, dtype=np.int64)
        if parts and len(window) and window[0] == HOLD:
            window[0] = NOTE_OFF
        parts.append(window)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def melody_to_score(
    events: np.ndarray,
    cfg: MelodyConfig,
    *,
    qpm: float = 120.0,
    program: int = 0,
    velocity: int = 90,
    tpq: int = 480,
) -> symusic.Score:
    """A one-track MIDI score of an event sequence (ids out of range are treated as HOLD)."""
    lo = cfg.pitch_range[0]
    ticks = tpq // cfg.steps_per_quarter
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, *parse_meter(cfg.meter)))
    track = symusic.Track("melody", program, False)
    start, pitch = None, None
    for step, event in enumerate(list(np.asarray(events, dtype=np.int64)) + [NOTE_OFF]):
        if event == HOLD or event >= cfg.vocab_size or event < 0:
            continue
        if start is not None:
            track.notes.append(symusic.Note(start * ticks, (step - start) * ticks, pitch, velocity))
            start = None
        if event >= FIRST_PITCH_ID:
            start, pitch = step, lo + int(event) - FIRST_PITCH_ID
    score.tracks.append(track)
    return score


def clip_from_midi(path: Path | str, cfg: MelodyConfig, *, bar_offset: int = 0) -> np.ndarray:
    """The window of ``cfg.num_bars`` bars of the model's meter starting at bar ``bar_offset`` of a MIDI
    file's melody, for encoding. Bars are the file's own (``bar_runs``: counted from its first full
    bar, across its stretches in the model's meter); a file without a time signature is taken to be
    in 4/4, the MIDI default, and 2/2 counts as 4/4. Raises ``MusgenError`` with a one-line reason for
    unusable clips, e.g. one in another meter."""
    name = Path(path).name
    if bar_offset < 0:
        raise MusgenError(f"--bar-offset must be >= 0, got {bar_offset}")
    try:
        score = load_score(path)
        melodies, polyphonic = extract_melodies(score, cfg)
    except MidiReadError as err:
        raise MusgenError(f"{name}: {err.reason}") from None
    if cfg.track == "each" and len(melodies) > 1:
        log.info("%s: %d tracks; using the first (set track to choose another)", name, len(melodies))
    events = melodies[0]
    if polyphonic:
        log.info("%s is polyphonic: using its melody line (the highest note at each moment)", name)
    runs = bar_runs(time_signature_steps(score, cfg.steps_per_quarter), len(events), cfg.steps_per_quarter)
    runs = {**runs, cfg.family: runs_in_meter(runs, cfg.family)}
    if not runs.get(cfg.family):
        raise MusgenError(
            f"{name} is in {_meters_of(runs, score, cfg)}, not in {cfg.meter}: this model only reads "
            f"{cfg.meter} melodies"
        )
    start = _window_start(runs[cfg.family], cfg.steps_per_bar, bar_offset, cfg.num_bars)
    if start is None:
        have_bars = sum(bars for _, bars in runs[cfg.family])
        raise MusgenError(
            f"{name} is too short: {have_bars} whole {cfg.meter} bars of melody in a row, the model "
            f"needs {cfg.num_bars} bars from bar {bar_offset}"
        )
    window = cut_window(events, start, cfg.window_steps)
    if not np.any(window >= FIRST_PITCH_ID):
        raise MusgenError(
            f"{name}: bars {bar_offset}-{bar_offset + cfg.num_bars} hold no notes (try --bar-offset)"
        )
    return window


def _window_start(runs: list[tuple[int, int]], bar: int, bar_offset: int, num_bars: int) -> int | None:
    """The first step of bars ``bar_offset`` .. ``bar_offset + num_bars - 1`` counted over ``runs``
    (first step, bars), or None when they do not lie in one run."""
    for start, bars in runs:
        if bar_offset < bars:
            return start + bar_offset * bar if bar_offset + num_bars <= bars else None
        bar_offset -= bars
    return None


def _meters_of(runs: dict[str, list[tuple[int, int]]], score: symusic.Score, cfg: MelodyConfig) -> str:
    """The meters of a clip, most bars first, for a message ("6/8" or "3/4 and 2/4")."""
    bars = {family: sum(n for _, n in spans) for family, spans in runs.items()}
    named = sorted((f for f in bars if bars[f] > 0), key=lambda f: -bars[f])
    if not named:  # shorter than a bar everywhere: name its time signatures
        ts = time_signature_steps(score, cfg.steps_per_quarter)
        named = sorted({meter_family(int(n), int(d)) for _, n, d in ts.tolist()})
    return " and ".join(named)
