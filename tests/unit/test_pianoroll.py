"""Piano rolls: MIDI -> roll -> MIDI on real chorales, the track rules, repeats, phrases, transposition."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import symusic

from musgen.data.pianoroll import (
    PianorollConfig,
    assign_tracks,
    midi_to_roll,
    phrase_starts,
    roll_to_score,
    score_to_roll,
    transpose_roll,
)
from musgen.data.tokenizers import MidiReadError
from musgen.errors import MusgenError

CFG = PianorollConfig()


def _chorales(bach_midi_dir):
    files = sorted(bach_midi_dir.rglob("*.mid"))
    assert files
    return files


def test_roll_to_midi_to_roll_is_the_identity_on_real_phrases(bach_midi_dir, tmp_path):
    checked = 0
    for path in _chorales(bach_midi_dir):
        try:
            roll = midi_to_roll(path, CFG)
        except MidiReadError:
            continue  # a chorale in 3/4
        for start in phrase_starts(roll, CFG):
            phrase = roll[:, start : start + CFG.phrase_steps]
            midi = tmp_path / "phrase.mid"
            roll_to_score(phrase, CFG).dump_midi(str(midi))  # through a real file
            back = midi_to_roll(midi, CFG)[:, : CFG.phrase_steps]
            back = np.pad(back, ((0, 0), (0, CFG.phrase_steps - back.shape[1]), (0, 0)))
            assert np.array_equal(back, phrase), (path.name, start)
            checked += 1
    assert checked > 50
    # The MIDI file is an ordinary multi-track file: one named instrument per voice.
    pm = pretty_midi.PrettyMIDI(str(midi))
    assert [i.name for i in pm.instruments] == CFG.track_names
    assert sum(len(i.notes) for i in pm.instruments) == symusic.Score(str(midi)).note_num()


def test_voices_are_found_by_name_in_the_chorales(bach_midi_dir):
    path = _chorales(bach_midi_dir)[0]
    score = symusic.Score(str(path))
    groups = assign_tracks(score, CFG)
    assert [g[0].name.lower() for g in groups] == ["soprano", "alto", "tenor", "bass"]
    roll = midi_to_roll(path, CFG)
    mean_pitch = [np.nonzero(roll[k])[1].mean() for k in range(4)]
    assert mean_pitch == sorted(mean_pitch, reverse=True)  # soprano highest, bass lowest


def _score(tracks: list[tuple[str, int, bool, list[tuple[int, int, int]]]], tpq: int = 480) -> symusic.Score:
    """tracks: (name, program, is_drum, [(start_quarter16ths, length16ths, pitch), ...])."""
    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for name, program, drum, notes in tracks:
        track = symusic.Track(name, program, drum)
        for start, length, pitch in notes:
            track.notes.append(symusic.Note(start * tpq // 4, length * tpq // 4, pitch, 90))
        score.tracks.append(track)
    return score


def test_unnamed_tracks_go_to_voices_by_pitch_and_empty_tracks_are_ignored():
    score = _score(
        [
            ("", 0, False, [(0, 4, 48)]),
            ("", 0, False, []),
            ("", 0, False, [(0, 4, 72), (4, 4, 74)]),
            ("", 0, False, [(0, 4, 60)]),
        ]
    )
    roll = score_to_roll(score, CFG)
    assert [int(np.nonzero(roll[k])[1][0]) + CFG.lowest_pitch for k in range(3)] == [72, 60, 48]
    assert not roll[3].any()  # three sounding tracks for four voices: the bass stays empty


def test_programs_rule_groups_by_instrument_family_and_writes_drums_on_the_drum_channel(tmp_path):
    cfg = PianorollConfig(
        tracks="programs", track_names=["drums", "bass", "guitar", "piano", "strings"], other_track="strings"
    )
    cfg.validate()
    score = _score(
        [
            ("kit", 0, True, [(0, 1, 36), (4, 1, 38)]),
            ("fretless", 35, False, [(0, 8, 40)]),
            ("nylon", 24, False, [(0, 4, 64)]),
            ("rhodes", 4, False, [(0, 4, 67)]),
            ("violin", 40, False, [(0, 4, 76)]),
            ("flute", 73, False, [(8, 4, 79)]),
        ]
    )
    roll = score_to_roll(score, cfg)
    on = {
        cfg.track_names[k]: sorted({int(p) + cfg.lowest_pitch for p in np.nonzero(roll[k])[1]})
        for k in range(5)
    }
    assert on == {"drums": [36, 38], "bass": [40], "guitar": [64], "piano": [67], "strings": [76, 79]}
    out = tmp_path / "band.mid"
    roll_to_score(roll, cfg).dump_midi(str(out))
    pm = pretty_midi.PrettyMIDI(str(out))
    assert [(i.name, i.is_drum) for i in pm.instruments] == [(n, n == "drums") for n in cfg.track_names]
    assert [i.program for i in pm.instruments][1:] == [33, 25, 0, 48]
    assert np.array_equal(score_to_roll(symusic.Score(str(out)), cfg, roll.shape[1]), roll)


def test_repeated_notes_stay_separate_notes():
    # Two quarter notes on one pitch, then a 16th followed by the same pitch.
    score = _score([("Soprano", 0, False, [(0, 4, 72), (4, 4, 72), (8, 1, 72), (9, 3, 72)])])
    cfg = PianorollConfig(track_names=["soprano"])
    roll = score_to_roll(score, cfg)
    back = roll_to_score(roll, cfg).tracks[0].notes
    assert len(back) == 4  # re-struck notes are re-struck after the round trip
    merged = roll_to_score(
        score_to_roll(score, PianorollConfig(track_names=["soprano"], separate_repeats=False)), cfg
    )
    assert len(merged.tracks[0].notes) == 1  # a plain binary roll merges them into one long note


def test_other_metres_are_reported_not_misread(tmp_path):
    score = _score([("Soprano", 0, False, [(0, 4, 72)])])
    score.time_signatures[0] = symusic.TimeSignature(0, 3, 4)
    with pytest.raises(MidiReadError, match="3/4"):
        midi_to_roll(score, CFG)
    assert midi_to_roll(score, PianorollConfig(quarters_per_bar=3, steps_per_bar=36)).shape[1] == 36


def test_phrases_skip_mostly_empty_stretches_and_transposition_keeps_notes_in_range():
    cfg = PianorollConfig(num_bars=2, max_empty=0.5)
    roll = np.zeros((4, 5 * cfg.steps_per_bar, cfg.num_pitches), dtype=bool)
    roll[:, : 2 * cfg.steps_per_bar, 40] = True  # bars 0-1 full, bar 2 half (two tracks), bars 3-4 empty
    roll[:2, 2 * cfg.steps_per_bar : 3 * cfg.steps_per_bar, 41] = True
    assert list(phrase_starts(roll, cfg) // cfg.steps_per_bar) == [
        0,
        1,
    ]  # (1,2): 2 of 8 cells empty; (2,3): 6 of 8
    moved = transpose_roll(roll, 5)
    assert moved is not None and moved[..., 45].sum() == roll[..., 40].sum()
    assert transpose_roll(roll, cfg.num_pitches - 40) is None
    assert np.array_equal(transpose_roll(roll, 3, drums=[0])[0], roll[0])  # drum tracks are not transposed


@pytest.mark.parametrize(
    "change",
    [
        {"num_pitches": 80},
        {"steps_per_bar": 50},
        {"tracks": "family"},
        {"track_names": ["a", "a"]},
        {"tracks": "programs", "track_names": ["lute"]},
        {"programs": [1, 2]},
        {"lowest_pitch": 60},
    ],
)
def test_bad_settings_are_one_line_errors(change):
    with pytest.raises(MusgenError):
        PianorollConfig(**change).validate()
