"""Multi-track binary piano rolls (MuseGAN's data): MIDI <-> (K tracks, T steps, P pitches).

A roll is on (1) wherever a note sounds. Steps are a fixed grid (``steps_per_bar`` per bar of
``quarters_per_bar`` quarter notes, from time 0); the pitch axis holds ``num_pitches`` MIDI pitches
from ``lowest_pitch`` (MuseGAN: 84 pitches from C1). Notes outside it are dropped.

Tracks are assigned by a rule:

* ``voices`` (the default, for the Bach chorales): MIDI tracks named after the voices (``Soprano``,
  ``Alto`` ... as music21 writes them) go to their voice; a file without those names gives its
  tracks with the most notes to the voices by mean pitch, highest first.
* ``programs`` (band music, as the paper's Lakh rolls): each track name is a General MIDI family
  (``drums``, ``bass``, ``guitar``, ``piano``, ``strings``, ...); MIDI tracks go to the track of their
  program's family, drum tracks to ``drums``; other programs go to ``other_track`` (or are dropped).

A binary roll cannot tell two repeated notes from one long note. With ``separate_repeats`` the step
before a re-struck note is left silent (when the earlier note lasts more than one step), so the
roll -> MIDI direction plays repeated notes again: roll -> MIDI -> roll is then the identity.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from musgen.errors import ConfigError, MusgenError

from .tokenizers import MidiReadError, load_score

log = logging.getLogger(__name__)

# General MIDI program families (first program, last program), 0-based programs.
GM_FAMILIES: dict[str, tuple[int, int]] = {
    "piano": (0, 7),
    "chromatic_percussion": (8, 15),
    "organ": (16, 23),
    "guitar": (24, 31),
    "bass": (32, 39),
    "strings": (40, 55),  # strings + ensemble, as the paper's five-track rolls
    "brass": (56, 63),
    "reed": (64, 71),
    "pipe": (72, 79),
    "synth_lead": (80, 87),
    "synth_pad": (88, 95),
    "synth_effects": (96, 103),
    "ethnic": (104, 111),
    "percussive": (112, 119),
    "sound_effects": (120, 127),
}
# A program to write each family's track with (drums are written on the drum channel).
FAMILY_PROGRAMS = {
    "piano": 0,
    "guitar": 25,
    "bass": 33,
    "strings": 48,
    "organ": 19,
    "brass": 61,
    "reed": 65,
    "pipe": 73,
    "synth_lead": 80,
    "synth_pad": 88,
    "chromatic_percussion": 11,
    "drums": 0,
}
DRUMS = "drums"


@dataclass
class PianorollConfig:
    """How piano-roll phrases are cut out of MIDI; shared by the data, the model and conditioning clips."""

    num_bars: int = 4  # bars per phrase
    steps_per_bar: int = 48  # 12 per quarter in 4/4: 16ths, triplets, and QN's 32nd-note threshold
    quarters_per_bar: int = 4  # bars of this many quarter notes; pieces in another metre are skipped
    lowest_pitch: int = 24  # C1
    num_pitches: int = 84  # 7 octaves, as MuseGAN
    tracks: str = "voices"  # voices | programs (see the module docstring)
    track_names: list[str] = field(default_factory=lambda: ["soprano", "alto", "tenor", "bass"])
    programs: list[int] = field(default_factory=list)  # GM program per track for MIDI output ([] = defaults)
    other_track: str = ""  # programs rule: the track for instruments of no listed family ("" = drop them)
    separate_repeats: bool = True
    hop_bars: int = 1  # phrases start every hop_bars bars
    max_empty: float = 0.5  # skip phrases where more than this fraction of (track, bar) cells is empty
    transpose: int = 0  # training: random transposition in [-transpose, +transpose] semitones
    qpm: float = 100.0  # tempo of the MIDI files written

    @property
    def num_tracks(self) -> int:
        return len(self.track_names)

    @property
    def phrase_steps(self) -> int:
        return self.num_bars * self.steps_per_bar

    @property
    def steps_per_quarter(self) -> int:
        return self.steps_per_bar // self.quarters_per_bar

    def validate(self) -> None:
        if self.num_bars < 1 or self.hop_bars < 1 or self.quarters_per_bar < 1:
            raise ConfigError("data.num_bars, data.hop_bars and data.quarters_per_bar must be at least 1")
        if self.steps_per_bar < 1 or self.steps_per_bar % self.quarters_per_bar:
            raise ConfigError(
                f"data.steps_per_bar ({self.steps_per_bar}) must be a multiple of "
                f"data.quarters_per_bar ({self.quarters_per_bar})"
            )
        if self.num_pitches < 12 or self.num_pitches % 12:
            raise ConfigError(f"data.num_pitches must be a positive multiple of 12, got {self.num_pitches}")
        if not 0 <= self.lowest_pitch <= 128 - self.num_pitches:
            raise ConfigError(
                f"data.lowest_pitch {self.lowest_pitch} + {self.num_pitches} pitches leave MIDI's 0..127"
            )
        if self.tracks not in ("voices", "programs"):
            raise ConfigError(f"data.tracks must be voices or programs, got {self.tracks!r}")
        names = [n.lower() for n in self.track_names]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"data.track_names must be distinct and not empty, got {self.track_names}")
        if self.tracks == "programs":
            unknown = [n for n in names if n != DRUMS and n not in GM_FAMILIES]
            if unknown:
                raise ConfigError(
                    f"data.track_names: {unknown[0]!r} is not a General MIDI family "
                    f"({', '.join([DRUMS, *GM_FAMILIES])})"
                )
            if self.other_track and self.other_track.lower() not in names:
                raise ConfigError(f"data.other_track {self.other_track!r} is not one of data.track_names")
        if self.programs and (
            len(self.programs) != len(names) or not all(0 <= p <= 127 for p in self.programs)
        ):
            raise ConfigError(f"data.programs needs one program in 0..127 per track, got {self.programs}")
        if not 0 <= self.max_empty <= 1:
            raise ConfigError(f"data.max_empty must be in [0, 1], got {self.max_empty}")

    def is_drum(self, k: int) -> bool:
        return self.tracks == "programs" and self.track_names[k].lower() == DRUMS

    def program(self, k: int) -> int:
        if self.programs:
            return int(self.programs[k])
        if self.tracks == "voices":
            return 52  # choir aahs
        return FAMILY_PROGRAMS.get(self.track_names[k].lower(), 0)


# ----------------------------------------------------------------------------- MIDI -> roll


def _meter_ok(score: symusic.Score, cfg: PianorollConfig) -> bool:
    return all(ts.numerator * 4 == cfg.quarters_per_bar * ts.denominator for ts in score.time_signatures)


def assign_tracks(score: symusic.Score, cfg: PianorollConfig) -> list[list[symusic.Track]]:
    """The MIDI tracks that make up each of the ``cfg.num_tracks`` roll tracks (lists may be empty)."""
    return [[score.tracks[i] for i in group] for group in assign_track_indices(score, cfg)]


def assign_track_indices(score: symusic.Score, cfg: PianorollConfig) -> list[list[int]]:
    """``assign_tracks`` as indices into ``score.tracks`` (symusic hands out a new Track object on
    every access, so the tracks themselves cannot be looked up again)."""
    names = [n.lower() for n in cfg.track_names]
    groups: list[list[int]] = [[] for _ in names]
    tracks = list(score.tracks)
    sounding = [k for k, t in enumerate(tracks) if t.note_num() > 0]
    if cfg.tracks == "programs":
        other = names.index(cfg.other_track.lower()) if cfg.other_track else None
        for k in sounding:
            track = tracks[k]
            if track.is_drum:
                g = names.index(DRUMS) if DRUMS in names else None
            else:
                family = next((f for f, (lo, hi) in GM_FAMILIES.items() if lo <= track.program <= hi), "")
                g = names.index(family) if family in names else other
            if g is not None:
                groups[g].append(k)
        return groups
    pitched = [k for k in sounding if not tracks[k].is_drum]
    unused = list(pitched)
    for g, name in enumerate(names):
        match = next((k for k in unused if tracks[k].name.strip().lower().startswith(name)), None)
        if match is not None:
            groups[g].append(match)
            unused.remove(match)
    if all(groups):
        return groups
    # No (complete) voice names: the busiest tracks, highest mean pitch first.
    busiest = sorted(pitched, key=lambda k: -tracks[k].note_num())[: len(names)]
    busiest.sort(key=lambda k: -float(np.mean(tracks[k].notes.numpy()["pitch"])))
    return [[busiest[g]] if g < len(busiest) else [] for g in range(len(names))]


def tracks_roll(tracks: list[symusic.Track], tpq: int, total: int, cfg: PianorollConfig) -> np.ndarray:
    """(total, P) bool roll of the notes of all ``tracks`` merged, on the grid of ``cfg``."""
    roll = np.zeros((total + 1, cfg.num_pitches), dtype=np.int32)
    onset = np.zeros((total + 1, cfg.num_pitches), dtype=bool)
    for track in tracks:
        notes = track.notes.numpy()
        pitch = notes["pitch"].astype(np.int64) - cfg.lowest_pitch
        start = np.rint(notes["time"].astype(np.int64) * cfg.steps_per_quarter / tpq).astype(np.int64)
        end = np.rint((notes["time"] + notes["duration"]).astype(np.int64) * cfg.steps_per_quarter / tpq)
        end = np.maximum(end.astype(np.int64), start + 1)
        keep = (pitch >= 0) & (pitch < cfg.num_pitches) & (start < total)
        pitch, start, end = pitch[keep], start[keep], np.minimum(end[keep], total)
        np.add.at(roll, (start, pitch), 1)  # difference array: +1 at the onset, -1 after the end
        np.add.at(roll, (end, pitch), -1)
        onset[start, pitch] = True
    frame = np.cumsum(roll, axis=0)[:total] > 0
    if cfg.separate_repeats:
        onset = onset[:total]
        # Silence the step before a re-struck note, unless that step is a one-step note itself.
        restruck = onset[1:] & frame[:-1] & ~onset[:-1]
        frame[:-1] &= ~restruck
    return frame


def score_to_roll(score: symusic.Score, cfg: PianorollConfig, steps: int | None = None) -> np.ndarray:
    """A score as a (K, T, P) bool roll: T = ``steps``, or the score's length rounded up to whole bars."""
    tpq = score.ticks_per_quarter
    if steps is None:
        end_steps = math.ceil(score.end() * cfg.steps_per_quarter / tpq)
        steps = max(1, math.ceil(end_steps / cfg.steps_per_bar)) * cfg.steps_per_bar
    return np.stack([tracks_roll(group, tpq, steps, cfg) for group in assign_tracks(score, cfg)])


def midi_to_roll(path: Path | str | symusic.Score, cfg: PianorollConfig) -> np.ndarray:
    """Reads a MIDI file into a (K, T, P) roll; one-line ``MidiReadError`` for unusable files."""
    score = load_score(path)
    if not _meter_ok(score, cfg):
        metres = sorted({f"{ts.numerator}/{ts.denominator}" for ts in score.time_signatures})
        raise MidiReadError(f"metre {', '.join(metres)} is not bars of {cfg.quarters_per_bar} quarter notes")
    return score_to_roll(score, cfg)


def phrase_starts(roll: np.ndarray, cfg: PianorollConfig) -> np.ndarray:
    """Start steps of the phrases of a (K, T, P) roll with at most ``max_empty`` empty (track, bar) cells."""
    k, t, _ = roll.shape
    bars = t // cfg.steps_per_bar
    if bars < cfg.num_bars:
        return np.zeros(0, dtype=np.int64)
    full = np.asarray(
        roll[:, : bars * cfg.steps_per_bar].reshape(k, bars, cfg.steps_per_bar, -1).any(axis=(2, 3))
    )  # (K, bars)
    starts = np.arange(0, bars - cfg.num_bars + 1, cfg.hop_bars)
    empty = np.array([1.0 - full[:, b : b + cfg.num_bars].mean() for b in starts])
    return (starts[empty <= cfg.max_empty] * cfg.steps_per_bar).astype(np.int64)


def transpose_roll(roll: np.ndarray, semitones: int, drums: list[int] | None = None) -> np.ndarray | None:
    """The roll shifted along the pitch axis (drum tracks kept), or None if a note would leave it."""
    if semitones == 0:
        return roll
    pitched = [k for k in range(roll.shape[0]) if k not in (drums or [])]
    used = np.flatnonzero(roll[pitched].any(axis=(0, 1)))
    if len(used) and (used[0] + semitones < 0 or used[-1] + semitones >= roll.shape[-1]):
        return None
    out = roll.copy()
    out[pitched] = np.roll(roll[pitched], semitones, axis=-1)
    return out


# ----------------------------------------------------------------------------- roll -> MIDI


def roll_to_score(
    roll: np.ndarray, cfg: PianorollConfig, *, velocity: int = 80, tpq: int = 480
) -> symusic.Score:
    """A (K, T, P) binary roll as a MIDI score: one track per roll track (named, with its program;
    drums on the drum channel), each run of on-steps one note."""
    roll = np.asarray(roll) > 0.5
    if roll.ndim != 3 or roll.shape[0] != cfg.num_tracks or roll.shape[2] != cfg.num_pitches:
        raise MusgenError(f"roll must be ({cfg.num_tracks}, T, {cfg.num_pitches}), got {roll.shape}")
    if tpq % cfg.steps_per_quarter:
        tpq = cfg.steps_per_quarter * math.ceil(tpq / cfg.steps_per_quarter)
    ticks = tpq // cfg.steps_per_quarter
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, cfg.qpm))
    score.time_signatures.append(symusic.TimeSignature(0, cfg.quarters_per_bar, 4))
    for k in range(cfg.num_tracks):
        track = symusic.Track(cfg.track_names[k], cfg.program(k), cfg.is_drum(k))
        padded = np.pad(roll[k].astype(np.int8), ((1, 1), (0, 0)))
        change = np.diff(padded, axis=0)  # (T + 1, P): +1 at onsets, -1 after the last step
        on_p, on_t = np.nonzero(change.T > 0)  # row-major: by pitch, then time, so onsets and
        _, off_t = np.nonzero(change.T < 0)  # offsets pair up in order
        for s, p, e in sorted(zip(on_t.tolist(), on_p.tolist(), off_t.tolist(), strict=True)):
            track.notes.append(symusic.Note(s * ticks, (e - s) * ticks, cfg.lowest_pitch + p, velocity))
        score.tracks.append(track)
    return score


def join_phrases(phrases: list[np.ndarray]) -> np.ndarray:
    """Phrases (K, T, P) one after another along time."""
    return np.concatenate([np.asarray(p) for p in phrases], axis=1)
