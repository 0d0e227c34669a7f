"""Melody extraction and the MelodyRNN event encoding on hand-made and real MIDI."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from musgen.data.melody import (
    FIRST_PITCH_ID,
    HOLD,
    NOTE_OFF,
    MelodyConfig,
    clip_from_midi,
    cut_window,
    extract_melodies,
    join_windows,
    melody_to_score,
    transpose_window,
    window_starts,
)
from musgen.errors import MusgenError

CFG = MelodyConfig(num_bars=2)
LO = CFG.pitch_range[0]


def on(pitch: int) -> int:
    return FIRST_PITCH_ID + pitch - LO


def score_of(*tracks: list[tuple[int, int, int]], tpq: int = 480) -> symusic.Score:
    """Tracks of (onset step, duration steps, pitch) on a 16th grid."""
    score = symusic.Score(tpq)
    step = tpq // 4
    for i, notes in enumerate(tracks):
        track = symusic.Track(f"t{i}", 0, False)
        for onset, duration, pitch in notes:
            track.notes.append(symusic.Note(onset * step, duration * step, pitch, 80))
        score.tracks.append(track)
    return score


def test_a_monophonic_line_encodes_holds_rests_and_onsets():
    (events,), poly = extract_melodies(score_of([(0, 2, 60), (2, 1, 62), (5, 3, 64)]), CFG)
    assert not poly
    assert events.tolist() == [on(60), HOLD, on(62), NOTE_OFF, HOLD, on(64), HOLD, HOLD, NOTE_OFF]


def test_highest_note_wins_when_notes_overlap():
    # A chord at 0 (highest kept), a lower note under the held top note (dropped), a higher note
    # that cuts the held one short, and a lower note after the top ends (kept).
    score = score_of([(0, 4, 60), (0, 4, 67), (1, 2, 55), (2, 2, 72), (4, 2, 50)])
    (events,), poly = extract_melodies(score, CFG)
    assert poly
    assert events.tolist() == [on(67), HOLD, on(72), HOLD, on(50), HOLD, NOTE_OFF]


def test_tracks_merge_or_stay_apart_and_pitches_fold_into_range():
    score = score_of([(0, 2, 60)], [(0, 2, 64), (2, 2, 120)])
    (merged,), _ = extract_melodies(score, CFG)
    assert merged.tolist() == [on(64), HOLD, on(108), HOLD, NOTE_OFF]  # 120 folds to 108
    each, _ = extract_melodies(score, MelodyConfig(num_bars=2, track="each"))
    assert [m.tolist() for m in each] == [[on(60), HOLD, NOTE_OFF], [on(64), HOLD, on(108), HOLD, NOTE_OFF]]
    (first,), _ = extract_melodies(score, MelodyConfig(num_bars=2, track="0"))
    assert first.tolist() == each[0].tolist()


def test_events_to_midi_and_back_is_exact():
    rng = np.random.default_rng(0)
    events = rng.choice([HOLD, HOLD, HOLD, NOTE_OFF, on(60), on(67), on(72)], size=64)
    events[0] = on(62)
    back = extract_melodies(melody_to_score(events, CFG), CFG)[0][0]
    expected = _normalise(events)
    # The line ends at its last NOTE_OFF: whatever followed it in ``events`` was silence.
    assert back.tolist() == expected[: len(back)] + ([NOTE_OFF] if len(back) > len(expected) else [])
    assert set(expected[len(back) :]) <= {HOLD}


def _normalise(events: np.ndarray) -> list[int]:
    """Canonical form: NOTE_OFF during silence is redundant (a rest after a rest) -> HOLD."""
    out, sounding = [], False
    for e in events.tolist():
        if e == NOTE_OFF:
            out.append(NOTE_OFF if sounding else HOLD)
            sounding = False
        else:
            out.append(e)
            sounding = sounding or e >= FIRST_PITCH_ID
    return out


def test_windows_skip_silence_and_start_self_contained():
    line = np.array([on(60)] + [HOLD] * 40 + [NOTE_OFF] + [HOLD] * 60 + [on(62)] + [HOLD] * 40 + [NOTE_OFF])
    starts = window_starts(line, CFG)  # 32-step windows every 16 steps, at most half silent
    assert starts.tolist() == [0, 16, 96, 112]  # 32, 48, 64 and 80 are mostly rest; 128 runs past the end
    window = cut_window(line, 16, 32)  # starts inside the held first note
    assert window[0] == on(60) and len(window) == 32


def test_transpose_and_join():
    window = np.array([on(60), HOLD, NOTE_OFF, on(107)])
    assert transpose_window(window, 1, CFG.vocab_size - 2).tolist() == [on(61), HOLD, NOTE_OFF, on(108)]
    assert transpose_window(window, 2, CFG.vocab_size - 2) is None  # 109 is out of range
    joined = join_windows([np.array([on(60), HOLD]), np.array([HOLD, on(62)])])
    assert joined.tolist() == [on(60), HOLD, NOTE_OFF, on(62)]


def test_clips_from_real_and_bad_midi(bach_midi_dir, tmp_path):
    chorale = sorted(bach_midi_dir.glob("*.mid"))[0]
    clip = clip_from_midi(chorale, CFG, bar_offset=1)  # 4 voices reduced to the top line
    assert clip.shape == (32,) and (clip >= FIRST_PITCH_ID).any()
    with pytest.raises(MusgenError, match="too short"):
        clip_from_midi(chorale, CFG, bar_offset=1000)
    empty = tmp_path / "empty.mid"
    symusic.Score(480).dump_midi(str(empty))
    with pytest.raises(MusgenError, match="empty.mid: no notes"):
        clip_from_midi(empty, CFG)
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"MThd not really")
    with pytest.raises(MusgenError, match="junk.mid: unreadable MIDI"):
        clip_from_midi(junk, CFG)
    late = tmp_path / "late.mid"
    score_of([(200, 4, 60)]).dump_midi(str(late))
    with pytest.raises(MusgenError, match="hold no notes"):
        clip_from_midi(late, CFG)
