"""Musical statistics of pieces (musgen.eval.midi_stats) and mgeval-style set comparisons
(musgen.eval.distributions), on hand-made scores with known answers and on real chorales."""

from __future__ import annotations

import math

import numpy as np
import pytest
import symusic

from musgen.eval.baselines import random_notes, shuffled_pitches
from musgen.eval.distributions import (
    compare_feature,
    compare_sets,
    feature_frechet,
    format_comparison,
    kl_divergence,
    overlap_area,
)
from musgen.eval.midi_stats import DURATION_CLASSES, FEATURES, SCALARS, piece_features

TPQ = 480


def _score(
    *tracks: list[tuple[float, float, int]], drums: list[tuple[float, float, int]] | None = None
) -> symusic.Score:
    """Tracks of (onset, duration, pitch) in quarter notes, 4/4 at 120 bpm."""
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.tempos.append(symusic.Tempo(0, 120.0))
    for k, notes in enumerate([*tracks, *([drums] if drums else [])]):
        track = symusic.Track(f"t{k}", 0, drums is not None and k == len(tracks))
        for onset, duration, pitch in notes:
            track.notes.append(symusic.Note(round(onset * TPQ), round(duration * TPQ), pitch, 80))
        score.tracks.append(track)
    return score


SCALE = [60, 62, 64, 65, 67, 69, 71, 72]  # C major, one quarter note each: bars 1-2
# bar 3 empty, bar 4 one whole-note G
MELODY = [(float(i), 1.0, p) for i, p in enumerate(SCALE)] + [(12.0, 4.0, 67)]


def test_features_of_a_known_melody():
    f = piece_features(_score(MELODY))
    pcs = np.bincount([p % 12 for _, _, p in MELODY], minlength=12) / len(MELODY)
    nz = pcs[pcs > 0]
    assert f["pitch_class_entropy"] == pytest.approx(float(-(nz * np.log2(nz)).sum()))
    np.testing.assert_allclose(f["pitch_class_histogram"], pcs)
    assert f["pitch_range"] == 12
    assert f["empty_bar_rate"] == pytest.approx(0.25)  # bar 3 of 4
    assert f["used_pitch_classes"] == pytest.approx((4 + 4 + 1) / 3)  # C D E F | G A B C | - | G
    assert f["qualified_note_rate"] == 1.0
    assert f["polyphony"] == 1.0
    # Onset patterns per bar (48 steps): bars 1 and 2 equal, bar 3 empty (4 differences), bar 4 one onset.
    assert f["groove_consistency"] == pytest.approx(1 - (0 + 4 + 1) / (3 * 48))
    assert f["mean_pitch_interval"] == pytest.approx((2 + 2 + 1 + 2 + 2 + 2 + 1 + 5) / 8)
    assert math.isnan(f["tonal_distance"])  # a single line: no other notes to compare it with
    quarter, whole, dotted_whole = (int(np.flatnonzero(DURATION_CLASSES == v)[0]) for v in (1, 4, 6))
    assert f["note_length_histogram"][quarter] == pytest.approx(8 / 9)
    assert f["note_length_histogram"][whole] == pytest.approx(1 / 9)
    assert f["ioi_histogram"][quarter] == pytest.approx(7 / 8)
    assert f["ioi_histogram"][dotted_whole] == pytest.approx(1 / 8)  # 5 quarters: nearest class 6 (log scale)
    assert f["notes"] == 9


def test_tonal_distance_between_tracks_and_polyphony():
    c_major = [(0.0, 4.0, p) for p in (60, 64, 67)]
    same = piece_features(_score(c_major, [(0.0, 4.0, p - 12) for p in (60, 64, 67)]))
    assert same["tonal_distance"] == pytest.approx(0.0, abs=1e-9)  # same chroma in both tracks
    assert same["polyphony"] == 6.0
    far = piece_features(_score(c_major, [(0.0, 4.0, p) for p in (54, 58, 61)]))  # F# major against C major
    assert far["tonal_distance"] > 1.0
    # One track holding both chords: split into its top line and the rest, which are measured instead.
    merged = piece_features(_score(c_major + [(0.0, 4.0, 72)]))
    assert merged["tonal_distance"] >= 0.0 and not math.isnan(merged["tonal_distance"])


def test_drums_are_left_out_and_empty_pieces_are_undefined():
    with_drums = piece_features(_score(MELODY, drums=[(float(i), 0.25, 36) for i in range(16)]))
    without = piece_features(_score(MELODY))
    for key, value in without.items():
        np.testing.assert_array_equal(with_drums[key], value, err_msg=key)
    empty = piece_features(_score(drums=[(0.0, 1.0, 36)]))
    assert empty["notes"] == 0 and all(empty[k] is None or math.isnan(empty[k]) for k in FEATURES)


def test_overlap_area_and_kl_divergence():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    assert overlap_area(a, a) == pytest.approx(1.0, abs=1e-3)
    assert kl_divergence(a, a) == pytest.approx(0.0, abs=1e-9)
    assert overlap_area(a, b) > 0.85 and kl_divergence(a, b) < 0.05
    far = rng.normal(10, 1, 400)
    assert overlap_area(a, far) < 0.01 and kl_divergence(a, far) > 5
    half = rng.normal(1.0, 1, 400)  # two unit Gaussians one std apart overlap by 2 * Phi(-1/2) = 0.617
    assert overlap_area(a, half) == pytest.approx(0.617, abs=0.07)
    # A constant feature (every distance 0) still has a density: the same constant overlaps fully.
    zeros = np.zeros(50)
    assert overlap_area(zeros, zeros) == pytest.approx(1.0, abs=1e-3)


def test_compare_feature_and_table():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (30, 1))
    close, far = (
        compare_feature(ref, rng.normal(0, 1, (30, 1))),
        compare_feature(ref, rng.normal(5, 1, (30, 1))),
    )
    assert close["overlap_area"] > far["overlap_area"] + 0.5
    assert far["kl_divergence"] > close["kl_divergence"]
    assert close["reference_mean"] == pytest.approx(float(ref.mean()))
    assert compare_feature(ref[:1], ref)["overlap_area"] is None  # one reference piece: no intra-set distance
    pieces = [piece_features(_score([(0.0, 1.0, 60 + k), (1.0, 1.0, 64 + k)])) for k in range(4)]
    table = format_comparison(compare_sets(pieces, pieces))
    for name in (*FEATURES, "feature Frechet distance"):
        assert name in table


def test_statistics_separate_real_chorales_from_corrupted_ones(bach_midi_24):
    """Two halves of real chorales are close in every sense; the same pieces with shuffled pitches
    (across or within voices) or random notes are far from the other half."""
    files = sorted(bach_midi_24.rglob("*.mid"))
    scores = [symusic.Score(str(f)) for f in files]
    real = [piece_features(s) for s in scores]
    a, b = real[0::2], real[1::2]
    halves = compare_sets(a, b)
    corrupted = {
        "shuffled": [piece_features(shuffled_pitches(s, i)) for i, s in enumerate(scores[1::2])],
        "shuffled within tracks": [
            piece_features(shuffled_pitches(s, i, within_tracks=True)) for i, s in enumerate(scores[1::2])
        ],
        "random": [piece_features(random_notes(s, i)) for i, s in enumerate(scores[1::2])],
    }
    for name, pieces in corrupted.items():
        other = compare_sets(a, pieces)
        factor = 1.5 if name == "shuffled within tracks" else 5  # voices keep their registers: subtler
        assert halves["feature_frechet"] * factor < other["feature_frechet"], name
        assert halves["mean_overlap_area"] > other["mean_overlap_area"] + 0.1, name
        assert halves["mean_kl_divergence"] < other["mean_kl_divergence"], name
    assert feature_frechet(a, a) == pytest.approx(0.0, abs=1e-6)
    for name in SCALARS:  # every statistic is defined for real four-voice chorales
        assert all(not math.isnan(p[name]) for p in real), name
