"""MuseGAN objective metrics on hand-built piano rolls with known answers, plus a loop reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from musgen.errors import MusgenError
from musgen.eval.pianoroll_metrics import (
    RollLayout,
    drum_pattern_rate,
    empty_bar_rate,
    format_table,
    pianoroll_metrics,
    polyphonic_rate,
    qualified_note_rate,
    tonal_distance,
    used_pitch_classes,
)

LAYOUT = RollLayout(steps_per_bar=48, steps_per_beat=12)
P = 84
C4, D4, E4, F4, FS4, G4, C5 = 60, 62, 64, 65, 66, 67, 72


def empty(n: int = 1, k: int = 2, bars: int = 2, spb: int = 48, p: int = P) -> np.ndarray:
    return np.zeros((n, k, bars * spb, p), dtype=bool)


def put(roll: np.ndarray, n: int, k: int, pitch: int, start: int, length: int, lowest: int = 24) -> None:
    roll[n, k, start : start + length, pitch - lowest] = True


def harte_centroid(chroma: np.ndarray) -> np.ndarray:
    """Written out independently of the module: Harte et al. 2006, r1 = r2 = 1, r3 = 0.5."""
    k = np.arange(12)
    phi = np.array(
        [
            np.sin(k * 7 * np.pi / 6),
            np.cos(k * 7 * np.pi / 6),
            np.sin(k * 3 * np.pi / 2),
            np.cos(k * 3 * np.pi / 2),
            0.5 * np.sin(k * 2 * np.pi / 3),
            0.5 * np.cos(k * 2 * np.pi / 3),
        ]
    )
    chroma = np.asarray(chroma, dtype=float)
    return phi @ (chroma / chroma.sum())


# ---------------------------------------------------------------------------------------------- EB / UPC


def test_empty_track_has_eb_one_and_upc_nan() -> None:
    roll = empty()
    put(roll, 0, 0, C4, 0, 4)
    put(roll, 0, 0, E4, 0, 4)
    put(roll, 0, 0, C5, 10, 2)  # bar 0: C, E, C an octave higher -> 2 pitch classes; bar 1 empty
    np.testing.assert_allclose(empty_bar_rate(roll, LAYOUT), [0.5, 1.0])
    upc = used_pitch_classes(roll, LAYOUT)
    assert upc[0] == 2.0
    assert math.isnan(upc[1])


def test_upc_averages_over_non_empty_bars_only() -> None:
    roll = empty(n=2, k=1)
    for pitch in (C4, E4, C5):
        put(roll, 0, 0, pitch, 0, 3)  # phrase 0 bar 0: 2 classes; phrase 0 bar 1 empty
    for pitch in (C4, D4, G4):
        put(roll, 1, 0, pitch, 5, 1)  # phrase 1 bar 0: 3 classes
    put(roll, 1, 0, FS4, 60, 1)  # phrase 1 bar 1: 1 class
    assert empty_bar_rate(roll, LAYOUT)[0] == pytest.approx(0.25)
    assert used_pitch_classes(roll, LAYOUT)[0] == pytest.approx((2 + 3 + 1) / 3)


def test_note_crossing_bar_line_makes_both_bars_non_empty() -> None:
    roll = empty(k=1)
    put(roll, 0, 0, G4, 40, 16)
    assert empty_bar_rate(roll, LAYOUT)[0] == 0.0
    assert used_pitch_classes(roll, LAYOUT)[0] == 1.0


def test_pitch_class_follows_lowest_pitch() -> None:
    layout = RollLayout(steps_per_bar=48, steps_per_beat=12, lowest_pitch=21)  # A0, 88 keys
    roll = empty(k=1, p=88)
    put(roll, 0, 0, 24, 0, 2, lowest=21)  # C1
    put(roll, 0, 0, 36, 0, 2, lowest=21)  # C2: same class
    put(roll, 0, 0, 25, 0, 2, lowest=21)  # C#1
    assert used_pitch_classes(roll, layout)[0] == 2.0


# ---------------------------------------------------------------------------------------------- QN


def test_qn_default_is_a_32nd_note() -> None:
    roll = empty(k=2)
    put(roll, 0, 0, C4, 0, 1)
    put(roll, 0, 0, C4, 4, 2)  # same pitch after a gap: a separate note
    put(roll, 0, 0, C4, 10, 3)
    qn = qualified_note_rate(roll, LAYOUT)  # 48 steps per bar -> min 2 steps
    assert qn[0] == pytest.approx(2 / 3)
    assert math.isnan(qn[1])
    assert qualified_note_rate(roll, LAYOUT, min_steps=3)[0] == pytest.approx(1 / 3)
    # 96 steps per bar (as in the paper): a 32nd note is 3 steps.
    layout96 = RollLayout(steps_per_bar=96, steps_per_beat=24)
    assert qualified_note_rate(roll, layout96)[0] == pytest.approx(1 / 3)


def test_note_crossing_bar_line_counts_once() -> None:
    roll = empty(k=1)
    put(roll, 0, 0, C4, 40, 16)  # bars 0 and 1
    put(roll, 0, 0, E4, 0, 1)
    assert qualified_note_rate(roll, LAYOUT)[0] == pytest.approx(1 / 2)


def test_notes_do_not_continue_across_phrases_or_pitches() -> None:
    roll = empty(n=2, k=1)
    put(roll, 0, 0, C4, 95, 1)  # last step of phrase 0 ...
    put(roll, 1, 0, C4, 0, 1)  # ... and first step of phrase 1: two 1-step notes
    put(roll, 1, 0, D4, 20, 1)  # neighbouring pitches at consecutive steps: two notes
    put(roll, 1, 0, D4 + 1, 21, 1)
    assert qualified_note_rate(roll, LAYOUT)[0] == 0.0
    assert qualified_note_rate(roll, LAYOUT, min_steps=1)[0] == 1.0


# ---------------------------------------------------------------------------------------------- DP


def test_drum_pattern_weights_onsets_on_and_near_the_16th_grid() -> None:
    layout = RollLayout(steps_per_bar=96, steps_per_beat=24, drum_tracks=(1,))  # grid: 6 steps
    roll = empty(k=2, spb=96)
    for i, step in enumerate((0, 6, 7, 11, 9, 50)):  # weights 1, 1, tol, tol, 0, 0
        put(roll, 0, 1, 36 + i, step, 1)  # distinct pitches: 6 and 7 would merge into one note
    put(roll, 0, 1, 48, 12, 8)  # a held drum note counts its onset only (on the grid)
    put(roll, 0, 1, 49, 96 + 0, 1)  # bar 2 on the grid, another pitch
    put(roll, 0, 0, C4, 3, 5)  # melodic track: nan
    dp = drum_pattern_rate(roll, layout)
    assert dp[1] == pytest.approx((1 + 1 + 0.1 + 0.1 + 0 + 0 + 1 + 1) / 8)
    assert math.isnan(dp[0])
    assert drum_pattern_rate(roll, layout, tolerance=0.5)[1] == pytest.approx(5.0 / 8)


def test_drum_pattern_nan_without_onsets_or_16th_grid() -> None:
    roll = empty(k=2, spb=36)
    put(roll, 0, 1, 36, 0, 1)
    assert np.isnan(drum_pattern_rate(roll, RollLayout(36, 12, drum_tracks=(1,)))).all()
    assert np.isnan(drum_pattern_rate(empty(k=2), RollLayout(48, 12, drum_tracks=(1,)))).all()


# ---------------------------------------------------------------------------------------------- TD


def test_tonal_distance_zero_for_same_chroma() -> None:
    roll = empty(k=2)
    for pitch in (C4, E4, G4):
        put(roll, 0, 0, pitch, 0, 12)
        put(roll, 0, 1, pitch - 24, 0, 12)  # the same triad two octaves lower
    put(roll, 0, 0, D4, 24, 6)
    put(roll, 0, 1, D4, 24, 6)  # identical chroma
    td = tonal_distance(roll, LAYOUT)
    assert list(td) == [(0, 1)]
    assert td[(0, 1)] == pytest.approx(0.0, abs=1e-12)


def test_tonal_distance_tritone_matches_harte_formula_and_is_symmetric() -> None:
    roll = empty(k=2)
    put(roll, 0, 0, C4, 0, 12)
    put(roll, 0, 1, FS4, 0, 12)
    # By hand: C -> (0, 1, 0, 1, 0, .5), F# -> (0, -1, 0, -1, 0, .5): distance sqrt(2^2 + 2^2).
    expected = np.linalg.norm(harte_centroid(np.eye(12)[0]) - harte_centroid(np.eye(12)[6]))
    assert expected == pytest.approx(math.sqrt(8))
    td = tonal_distance(roll, LAYOUT, pairs=[(0, 1), (1, 0)])
    assert td[(0, 1)] == pytest.approx(expected)
    assert td[(1, 0)] == pytest.approx(td[(0, 1)])


def test_tonal_distance_weights_chroma_by_on_steps_and_skips_half_silent_beats() -> None:
    roll = empty(k=2)
    # Beat 0: track 0 holds C for 3 steps and E for 1 step, track 1 plays G.
    put(roll, 0, 0, C4, 0, 3)
    put(roll, 0, 0, E4, 3, 1)
    put(roll, 0, 1, G4, 0, 12)
    # Beat 1: C vs F#.
    put(roll, 0, 0, C4, 12, 12)
    put(roll, 0, 1, FS4, 12, 12)
    # Beats 2 and 5: only one track sounds; beats 3, 4, 6, 7: silence. All skipped.
    put(roll, 0, 0, D4, 24, 12)
    put(roll, 0, 1, F4, 60, 12)
    d0 = np.linalg.norm(harte_centroid([3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]) - harte_centroid(np.eye(12)[7]))
    d1 = math.sqrt(8)
    assert tonal_distance(roll, LAYOUT)[(0, 1)] == pytest.approx((d0 + d1) / 2)


def test_tonal_distance_nan_when_never_both_sounding_and_default_pairs_skip_drums() -> None:
    layout = RollLayout(48, 12, drum_tracks=(2,))
    roll = empty(k=4)
    put(roll, 0, 0, C4, 0, 12)
    put(roll, 0, 1, E4, 12, 12)
    put(roll, 0, 2, 36, 0, 12)
    put(roll, 0, 3, G4, 0, 12)
    td = tonal_distance(roll, layout)
    assert list(td) == [(0, 1), (0, 3), (1, 3)]
    assert math.isnan(td[(0, 1)])
    assert not math.isnan(td[(0, 3)])


# ---------------------------------------------------------------------------------------------- report


def test_pianoroll_metrics_is_json_ready_and_format_table_shows_it() -> None:
    layout = RollLayout(48, 12, track_names=("piano", "bass", "drums"), drum_tracks=(2,))
    roll = empty(n=2, k=3)
    put(roll, 0, 0, C4, 0, 12)
    put(roll, 0, 1, C4 - 24, 0, 12)
    put(roll, 1, 2, 36, 0, 1)
    report = pianoroll_metrics(roll, layout)
    json.dumps(report, allow_nan=False)
    assert report["num_phrases"] == 2
    assert set(report["tracks"]) == {"piano", "bass", "drums"}
    assert "DP" in report["tracks"]["drums"] and "DP" not in report["tracks"]["piano"]
    assert report["tracks"]["piano"]["EB"] == pytest.approx(0.75)
    assert report["tracks"]["drums"]["DP"] == pytest.approx(1.0)
    assert report["TD"] == {"piano-bass": pytest.approx(0.0, abs=1e-12)}
    # Matches the single-metric functions.
    np.testing.assert_allclose(
        [report["tracks"][t]["QN"] for t in ("piano", "bass", "drums")],
        qualified_note_rate(roll, layout),
        equal_nan=True,
    )

    silent = pianoroll_metrics(empty(k=3), layout)
    assert silent["tracks"]["bass"]["UPC"] is None
    assert silent["TD"]["piano-bass"] is None
    assert pianoroll_metrics(empty(k=2), LAYOUT)["TD"].keys() == {"track0-track1"}

    table = format_table({"data": report, "generated": silent})
    for text in ("data", "generated", "piano", "bass", "drums", "piano-bass", "75.0%", "100.0%", "EB", "UPC"):
        assert text in table
    assert "1.000" in table and "-" in table
    lines = table.splitlines()
    assert len({len(line) for line in lines if line.startswith("EB")}) == 1  # fixed width


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("shape", "layout", "match"),
    [
        ((2, 96, P), LAYOUT, "dimension"),
        ((1, 2, 100, P), LAYOUT, "steps_per_bar"),
        ((1, 2, 96, P), RollLayout(48, 36), "steps_per_beat"),
        ((1, 2, 96, 128), LAYOUT, "exceed MIDI 127"),
        ((1, 2, 96, P), RollLayout(48, 12, track_names=("a",)), "tracks"),
        ((1, 2, 96, P), RollLayout(48, 12, drum_tracks=(2,)), "out of range"),
        ((0, 2, 96, P), LAYOUT, "empty axis"),
    ],
)
def test_bad_input_raises_musgen_error(shape: tuple[int, ...], layout: RollLayout, match: str) -> None:
    with pytest.raises(MusgenError, match=match):
        pianoroll_metrics(np.zeros(shape, dtype=bool), layout)


def test_bad_arguments_raise_musgen_error() -> None:
    roll = empty()
    with pytest.raises(MusgenError, match="min_steps"):
        qualified_note_rate(roll, LAYOUT, min_steps=0)
    with pytest.raises(MusgenError, match="pair"):
        tonal_distance(roll, LAYOUT, pairs=[(0, 2)])
    with pytest.raises(MusgenError, match="pair"):
        tonal_distance(roll, LAYOUT, pairs=[(1, 1)])
    with pytest.raises(MusgenError):
        RollLayout(0, 12)
    with pytest.raises(MusgenError, match="dtype"):
        empty_bar_rate(np.zeros((1, 1, 48, 2), dtype=object), LAYOUT)


# ---------------------------------------------------------------------------------------------- random


def random_rolls(rng: np.random.Generator, n: int, k: int, bars: int = 2, top: int = P - 12) -> np.ndarray:
    """Sparse random notes below pitch index ``top`` (so +12 semitones stays in range)."""
    roll = empty(n=n, k=k, bars=bars)
    t = roll.shape[2]
    for _ in range(n * k * 12):
        start = int(rng.integers(0, t))
        roll[
            rng.integers(n), rng.integers(k), start : start + int(rng.integers(1, 20)), rng.integers(top)
        ] = True
    return roll


def reference_metrics(roll: np.ndarray, layout: RollLayout) -> dict[str, list]:
    """Plain-loop versions of the definitions, for comparison."""
    n, k, t, p = roll.shape
    spb, spq, lo = layout.steps_per_bar, layout.steps_per_beat, layout.lowest_pitch
    grid = spb // 16
    min_steps = math.ceil(spb / 32)
    out: dict[str, list] = {"EB": [], "UPC": [], "QN": [], "DP": []}
    for kk in range(k):
        empty_bars, classes = 0, []
        lengths, weights = [], []
        for nn in range(n):
            for b in range(t // spb):
                bar = roll[nn, kk, b * spb : (b + 1) * spb]
                if not bar.any():
                    empty_bars += 1
                else:
                    classes.append(len({(lo + i) % 12 for i in range(p) if bar[:, i].any()}))
            for i in range(p):
                s = 0
                while s < t:
                    if roll[nn, kk, s, i]:
                        e = s
                        while e < t and roll[nn, kk, e, i]:
                            e += 1
                        lengths.append(e - s)
                        r = s % grid
                        weights.append(1.0 if r == 0 else 0.1 if r in (1, grid - 1) else 0.0)
                        s = e
                    else:
                        s += 1
        out["EB"].append(empty_bars / (n * t // spb))
        out["UPC"].append(np.mean(classes) if classes else math.nan)
        out["QN"].append(np.mean([x >= min_steps for x in lengths]) if lengths else math.nan)
        drum = kk in layout.drum_tracks and weights
        out["DP"].append(np.mean(weights) if drum else math.nan)
    td = []
    for a, b in [(0, 1)]:
        dists = []
        for nn in range(n):
            for q in range(t // spq):
                ca, cb = np.zeros(12), np.zeros(12)
                for i in range(p):
                    ca[(lo + i) % 12] += roll[nn, a, q * spq : (q + 1) * spq, i].sum()
                    cb[(lo + i) % 12] += roll[nn, b, q * spq : (q + 1) * spq, i].sum()
                if ca.sum() and cb.sum():
                    dists.append(np.linalg.norm(harte_centroid(ca) - harte_centroid(cb)))
        td.append(np.mean(dists) if dists else math.nan)
    out["TD"] = td
    return out


def test_vectorised_metrics_match_plain_loops() -> None:
    rng = np.random.default_rng(1)
    layout = RollLayout(48, 12, lowest_pitch=21, drum_tracks=(2,))
    roll = random_rolls(rng, n=3, k=3)
    ref = reference_metrics(roll, layout)
    np.testing.assert_allclose(empty_bar_rate(roll, layout), ref["EB"])
    np.testing.assert_allclose(used_pitch_classes(roll, layout), ref["UPC"])
    np.testing.assert_allclose(qualified_note_rate(roll, layout), ref["QN"])
    np.testing.assert_allclose(drum_pattern_rate(roll, layout), ref["DP"], equal_nan=True)
    assert tonal_distance(roll, layout, pairs=[(0, 1)])[(0, 1)] == pytest.approx(ref["TD"][0])


def _flat(report: dict) -> dict[str, float]:
    flat = {f"{t}/{m}": v for t, ms in report["tracks"].items() for m, v in ms.items()}
    flat.update({f"TD/{pair}": v for pair, v in report["TD"].items()})
    return {key: (math.nan if v is None else v) for key, v in flat.items()}


def test_metrics_invariant_to_phrase_order_and_octave_transposition() -> None:
    rng = np.random.default_rng(0)
    layout = RollLayout(48, 12, track_names=("a", "b", "c", "drums"), drum_tracks=(3,))
    roll = random_rolls(rng, n=8, k=4)
    base = _flat(pianoroll_metrics(roll, layout))
    assert not any(math.isnan(v) for v in base.values())

    permuted = _flat(pianoroll_metrics(roll[rng.permutation(8)], layout))
    assert permuted == pytest.approx(base)

    up = np.roll(roll, 12, axis=3)  # the top 12 pitches are empty, so nothing wraps around
    assert not roll[..., -12:].any()
    assert used_pitch_classes(up, layout) == pytest.approx(used_pitch_classes(roll, layout))
    td_up, td = tonal_distance(up, layout), tonal_distance(roll, layout)
    assert td_up.keys() == td.keys()
    assert list(td_up.values()) == pytest.approx(list(td.values()))
    assert _flat(pianoroll_metrics(up, layout)) == pytest.approx(base)

    as_float = _flat(pianoroll_metrics(roll.astype(np.float32) * 0.9, layout))  # > 0.5 means on
    assert as_float == pytest.approx(base)


def test_polyphonic_rate_counts_steps_with_two_or_more_pitches():
    roll = empty(n=2, k=2, bars=1)
    put(roll, 0, 0, C4, 0, 10)  # a melody: never two pitches at once
    put(roll, 0, 1, C4, 0, 12)
    put(roll, 0, 1, E4, 6, 12)  # overlaps C4 on steps 6..11: 6 steps
    put(roll, 1, 1, G4, 40, 8)
    put(roll, 1, 1, C5, 40, 8)  # a two-note chord: 8 steps
    np.testing.assert_allclose(polyphonic_rate(roll, LAYOUT), [0.0, (6 + 8) / (2 * 48)])
    assert pianoroll_metrics(roll, LAYOUT)["tracks"]["track1"]["PR"] == pytest.approx((6 + 8) / 96)
