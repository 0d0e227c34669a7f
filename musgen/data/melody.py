"""Monophonic melodies on a 16th-note grid, in the classic MelodyRNN / MusicVAE event encoding.

One event per grid step:

* ``HOLD`` (0)      nothing happens: the sounding note (or the silence) goes on;
* ``NOTE_OFF`` (1)  the sounding note stops: silence from here;
* ``2 + k``         a note of pitch ``min_pitch + k`` starts (and ends the previous one).

Polyphony is reduced to one line, "highest note wins": of notes starting together the highest is
kept, a note starting under a held higher note is dropped, a higher (or equal) one cuts the held
note short. Pitches outside the range are folded in by octaves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from musgen.errors import ConfigError, MusgenError

from .tokenizers import MidiReadError, load_score

log = logging.getLogger(__name__)

HOLD = 0
NOTE_OFF = 1
FIRST_PITCH_ID = 2


@dataclass
class MelodyConfig:
    """How melodies are cut out of MIDI; shared by the training data and by clips to interpolate."""

    num_bars: int = 16  # bars per window (2 or 16 in MusicVAE)
    steps_per_quarter: int = 4  # 16th-note grid
    quarters_per_bar: int = 4  # windows are cut in 4/4 bars of 16 steps, hopping by ``hop_bars``
    pitch_range: list[int] = field(default_factory=lambda: [21, 108])  # inclusive, as MusicVAE
    track: str = (
        "merge"  # merge: all non-drum tracks as one line; each: every track its own; "N": track N only
    )
    hop_bars: int = 1  # windows start every ``hop_bars`` bars
    max_silence: float = 0.5  # skip windows where more than this fraction of steps is silent
    transpose: int = 0  # training: random transposition in [-transpose, +transpose] semitones

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_quarter * self.quarters_per_bar

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
        if self.num_bars < 1 or self.steps_per_quarter < 1 or self.quarters_per_bar < 1 or self.hop_bars < 1:
            raise ConfigError(
                "data.num_bars, steps_per_quarter, quarters_per_bar and hop_bars must be at least 1"
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


def window_starts(events: np.ndarray, cfg: MelodyConfig) -> np.ndarray:
    """Start steps of the windows of a melody: every ``hop_bars`` bars, whole windows only, some note
    sounding and at most ``max_silence`` of the window silent."""
    size, hop = cfg.window_steps, cfg.hop_bars * cfg.steps_per_bar
    if len(events) < size:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, len(events) - size + 1, hop, dtype=np.int64)
    sounding = np.concatenate([[0], np.cumsum(sounding_pitch_ids(events) >= FIRST_PITCH_ID)])
    notes = sounding[starts + size] - sounding[starts]
    return starts[(notes > 0) & (1.0 - notes / size <= cfg.max_silence)]


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
    score.time_signatures.append(symusic.TimeSignature(0, cfg.quarters_per_bar, 4))
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
    """The window of ``cfg.num_bars`` bars starting at bar ``bar_offset`` of a MIDI file's melody,
    for encoding. Raises ``MusgenError`` with a one-line reason for unusable clips."""
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
    start, size = bar_offset * cfg.steps_per_bar, cfg.window_steps
    have_bars = len(events) / cfg.steps_per_bar
    if start + size > len(events):
        raise MusgenError(
            f"{name} is too short: {have_bars:.1f} bars of melody, the model needs {cfg.num_bars} bars "
            f"from bar {bar_offset}"
        )
    window = cut_window(events, start, size)
    if not np.any(window >= FIRST_PITCH_ID):
        raise MusgenError(
            f"{name}: bars {bar_offset}-{bar_offset + cfg.num_bars} hold no notes (try --bar-offset)"
        )
    return window
