"""Meter-aware melody windows on real folk tunes (music21's ABC corpus converted as ``musgen data
build`` does), checked against the bar lines music21 itself reads from the ABC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import symusic

from musgen.data import corpus
from musgen.data.build import DataConfig
from musgen.data.corpus import _convert_one, _music21_corpus_root, _Piece, split_abc_tunes
from musgen.data.melody import (
    MelodyConfig,
    bar_runs,
    clip_from_midi,
    extract_melodies,
    marked_short_measures,
    melody_to_score,
    time_signature_steps,
    window_starts,
    windows_by_meter,
)
from musgen.data.tokenizers import make_tokenizer, midi_to_ids
from musgen.errors import ConfigError, MusgenError

JIG = "oneills1850/0732-0758_mh/X736.mid"  # 6/8, no pickup, the time signature repeated at sections
WALTZ = "essenFolksong/lot/X105.mid"  # 3/4 with a stretch of 4/4 in the middle
PICKUP = "essenFolksong/altdeu10/X241.mid"  # 4/4 with a one-quarter pickup
JIG_PICKUP = "airdsAirs/book1/X0004.mid"  # 6/8 with an eighth-note pickup


def _abc_tune(rel: str) -> _Piece:
    collection, tune = rel.rsplit("/", 1)
    source = _music21_corpus_root() / f"{collection}.abc"
    number = tune.removeprefix("X").removesuffix(".mid")
    text = dict(split_abc_tunes(source.read_text(encoding="utf-8", errors="replace")))[number]
    return _Piece(rel, str(source), text)


def convert(rel: str, out: Path) -> tuple[Path, list[int]]:
    """The tune as MIDI, and its bar lines (grid steps) as music21 reads them from the ABC."""
    from music21 import converter

    piece = _abc_tune(rel)
    path = out / Path(rel).name
    assert _convert_one(piece, path) is None
    score = converter.parse(piece.abc_text, format="abc")
    part = (score.parts[0] if score.parts else score).expandRepeats()  # as the MIDI writer does
    bars = [round(float(m.offset) * 4) for m in part.getElementsByClass("Measure")]
    return path, bars


def lines_of(path: Path, cfg: MelodyConfig) -> tuple[np.ndarray, np.ndarray]:
    score = symusic.Score(str(path))
    (events,), _ = extract_melodies(score, cfg)
    return events, time_signature_steps(score, cfg.steps_per_quarter)


def test_a_jig_gives_6_8_windows_on_its_bar_lines_and_no_4_4_ones(tmp_path):
    path, bars = convert(JIG, tmp_path)
    jig = MelodyConfig(num_bars=2, meter="6/8")
    events, ts = lines_of(path, jig)
    starts = window_starts(events, jig, ts)
    assert jig.steps_per_bar == 12 and len(starts) > 10
    assert set(starts.tolist()) <= set(bars)
    assert window_starts(events, MelodyConfig(num_bars=2), ts).size == 0  # a 4/4 model takes none
    assert window_starts(events, MelodyConfig(num_bars=2, meter="3/4"), ts).size == 0  # nor a 3/4 one


def test_a_waltz_that_changes_meter_gives_3_4_windows_only_in_its_3_4_stretches(tmp_path):
    path, bars = convert(WALTZ, tmp_path)
    waltz = MelodyConfig(num_bars=2, meter="3/4")
    events, ts = lines_of(path, waltz)
    assert {(3, 4), (4, 4)} <= {(int(n), int(d)) for _, n, d in ts}
    starts = window_starts(events, waltz, ts)
    assert len(starts) > 5 and set(starts.tolist()) <= set(bars)
    ends = [*ts[1:, 0].tolist(), len(events)]
    others = [(s, e) for (s, n, d), e in zip(ts.tolist(), ends, strict=True) if (n, d) != (3, 4)]
    for start in starts:  # no 3/4 window overlaps a stretch in another time signature
        assert all(start + waltz.window_steps <= s or start >= e for s, e in others)
    by_meter = windows_by_meter(events, MelodyConfig(num_bars=1, meter="3/4"), ts)
    assert len(by_meter["4/4"]) > 0 and set(by_meter["4/4"].tolist()) <= set(bars)


def test_a_marked_pickup_puts_the_first_window_on_the_first_full_bar(tmp_path):
    path, bars = convert(PICKUP, tmp_path)
    assert bars[1] == 4  # music21: a one-quarter pickup, then full bars
    # The pickup as another file may mark it: a time signature of its own length, the tune's at the
    # first full bar (musgen's conversion writes music21's pickup measure with the full 4/4 from time 0
    # and a pickup marker, dropped here).
    score = symusic.Score(str(path))
    tpq = score.ticks_per_quarter
    score.time_signatures = [symusic.TimeSignature(0, 1, 4), symusic.TimeSignature(tpq, 4, 4)]
    score.markers = [m for m in score.markers if not m.text.startswith(corpus.PICKUP_MARK)]
    marked = tmp_path / "marked.mid"
    score.dump_midi(str(marked))
    cfg = MelodyConfig(num_bars=2)
    events, ts = lines_of(marked, cfg)
    starts = window_starts(events, cfg, ts)
    assert starts[0] == bars[1] and set(starts.tolist()) <= set(bars)
    # A clip's bar 0 is its first full bar too.
    assert clip_from_midi(marked, cfg).tolist() == clip_from_midi(marked, cfg, bar_offset=0).tolist()
    np.testing.assert_array_equal(clip_from_midi(marked, cfg), events[4 : 4 + 32])


def pickup_marks(path: Path) -> list[tuple[float, str]]:
    """(quarter notes, text) of a file's pickup markers."""
    score = symusic.Score(str(path))
    tpq = score.ticks_per_quarter
    return [(m.time / tpq, m.text) for m in score.markers if m.text.startswith(corpus.PICKUP_MARK)]


@pytest.mark.parametrize(
    ("rel", "meter", "mark", "pickup"), [(PICKUP, "4/4", "1.0", 4), (JIG_PICKUP, "6/8", "0.5", 2)]
)
def test_the_conversion_marks_a_pickup_and_windows_start_after_it(tmp_path, rel, meter, mark, pickup):
    path, bars = convert(rel, tmp_path)
    assert bars[1] == pickup  # music21: the pickup, then full bars
    assert pickup_marks(path)[0] == (0, f"musgen:pickup={mark}")  # (and any repeated pickups later)
    first = symusic.Score(str(path)).time_signatures[0]  # the full bar's, from time 0: as before
    assert (first.time, f"{first.numerator}/{first.denominator}") == (0, meter)
    cfg = MelodyConfig(num_bars=2, meter=meter)
    events, ts = lines_of(path, cfg)
    starts = window_starts(events, cfg, ts)
    assert starts[0] == pickup and set(starts.tolist()) <= set(bars)  # all on music21's bar lines
    np.testing.assert_array_equal(clip_from_midi(path, cfg), events[pickup : pickup + cfg.window_steps])


def test_a_repeated_section_with_a_pickup_is_marked_again(tmp_path):
    path, bars = convert(JIG_PICKUP, tmp_path)
    # music21's bar lines: the pickup (2 steps), full 6/8 bars, a short bar ending the section (10),
    # the repeated pickup (2), full bars again.
    assert bars[:11] == [0, 2, 14, 26, 38, 50, 62, 74, 86, 96, 98]
    marks = pickup_marks(path)
    assert (86 / 4, "musgen:pickup=2.5") in marks and (96 / 4, "musgen:pickup=0.5") in marks
    cfg = MelodyConfig(num_bars=2, meter="6/8")
    events, ts = lines_of(path, cfg)
    assert 98 in window_starts(events, cfg, ts).tolist()


def test_a_tune_without_pickup_gets_no_mark_and_its_windows_start_at_0(tmp_path):
    path, bars = convert(JIG, tmp_path)
    assert bars[:2] == [0, 12] and pickup_marks(path) == []
    jig = MelodyConfig(num_bars=2, meter="6/8")
    events, ts = lines_of(path, jig)
    assert window_starts(events, jig, ts)[0] == 0


def test_a_marked_short_measure_ends_its_time_signature_stretch():
    score = symusic.Score(480)
    score.time_signatures = [symusic.TimeSignature(0, 3, 4), symusic.TimeSignature(480 * 12, 2, 4)]
    plain = time_signature_steps(score, 4).tolist()
    assert plain == [[0, 3, 4], [48, 2, 4]] and marked_short_measures(score, 4) == []
    score.markers.append(symusic.TextMeta(0, "musgen:pickup=1.5"))  # a pickup: the first bar at 6
    score.markers.append(symusic.TextMeta(480 * 12, "musgen:pickup=1"))  # the 2/4 stretch's own
    assert marked_short_measures(score, 4) == [(0, 6), (48, 4)]
    assert time_signature_steps(score, 4).tolist() == [[0, 3, 4], [6, 3, 4], [48, 2, 4], [52, 2, 4]]
    # past the next time signature, unreadable, not a pickup marker: nothing changes
    for ignored in ("musgen:pickup=12", "musgen:pickup=x", "other"):
        score.markers = [symusic.TextMeta(0, ignored)]
        assert time_signature_steps(score, 4).tolist() == plain
    score.markers = [symusic.TextMeta(480 * 10, "musgen:pickup=2.5")]  # a short bar before a repeat
    assert time_signature_steps(score, 4).tolist() == plain  # ends on the next time signature


def test_pickup_and_version_markers_leave_the_tokens_unchanged(tmp_path, monkeypatch):
    from music21 import corpus as m21corpus

    chorale = Path(m21corpus.getWork("bach/bwv1.6"))
    pieces = [_abc_tune(PICKUP), _abc_tune(JIG), _Piece("bwv1.6.mid", str(chorale))]
    tokenizers = [DataConfig().make_tokenizer(), make_tokenizer("tsd", use_programs=True)]
    for piece in pieces:
        marked, plain = (tmp_path / kind / Path(piece.rel).name for kind in ("marked", "plain"))
        assert _convert_one(piece, marked) is None
        with monkeypatch.context() as patch:
            patch.setattr(corpus, "_add_markers", lambda mf, texts: None)  # the conversion before markers
            assert _convert_one(piece, plain) is None
        assert marked.read_bytes() != plain.read_bytes()
        for tokenizer in tokenizers:
            assert midi_to_ids(tokenizer, marked) == midi_to_ids(tokenizer, plain)


def test_a_4_4_model_refuses_a_6_8_clip_in_one_line_and_reads_2_2_as_4_4(tmp_path):
    path, _ = convert(JIG, tmp_path)
    with pytest.raises(MusgenError, match=r"X736.mid is in 6/8, not in 4/4") as err:
        clip_from_midi(path, MelodyConfig(num_bars=2))
    assert "\n" not in str(err.value)
    assert clip_from_midi(path, MelodyConfig(num_bars=2, meter="6/8")).shape == (24,)
    cut_time = symusic.Score(str(path))
    cut_time.time_signatures = [symusic.TimeSignature(0, 2, 2)]
    cut_time.dump_midi(str(tmp_path / "cut.mid"))
    assert clip_from_midi(tmp_path / "cut.mid", MelodyConfig(num_bars=2)).shape == (32,)


def test_bar_runs_restart_at_time_signatures_and_join_where_bar_lines_continue():
    ts = np.array([(0, 3, 4), (4, 3, 4), (28, 3, 4), (30, 4, 4), (46, 2, 2), (62, 6, 8)])
    runs = bar_runs(ts, 100, 4)
    # 0-4 is a pickup (no whole bar); 4-28 two bars; 28-30 a short bar; 30-62 4/4 and 2/2 joined;
    # 62-100 three 6/8 bars (the last 2 steps dropped).
    assert runs == {"3/4": [(4, 2)], "4/4": [(30, 2)], "6/8": [(62, 3)]}
    assert bar_runs(np.array([(0, 4, 4), (64, 4, 4)]), 128, 4) == {"4/4": [(0, 8)]}
    assert bar_runs(np.array([(0, 4, 4), (66, 4, 4)]), 128, 4) == {"4/4": [(0, 4), (66, 3)]}


def test_without_time_signatures_4_4_windows_are_as_before():
    line = np.zeros(200, dtype=np.int64)
    line[::3] = 40
    cfg = MelodyConfig(num_bars=2)
    starts = window_starts(line, cfg)
    assert starts.tolist() == list(range(0, 200 - 32 + 1, 16))
    assert window_starts(line, cfg, np.array([(0, 4, 4)])).tolist() == starts.tolist()


def test_meter_settings_are_checked_and_written_into_midi():
    cfg = MelodyConfig(meter="6/8", num_bars=2)
    cfg.validate()
    score = melody_to_score(np.array([40, 0, 0, 1] * 6), cfg)
    assert [(t.numerator, t.denominator) for t in score.time_signatures] == [(6, 8)]
    MelodyConfig(quarters_per_bar=4).validate()  # what older checkpoints' configs hold
    for bad in (dict(meter="4"), dict(meter="7/3"), dict(meter="5/32"), dict(quarters_per_bar=3)):
        with pytest.raises(ConfigError):
            MelodyConfig(**bad).validate()


def test_bars_split_exactly_into_a_shorter_meter_never_the_reverse():
    import numpy as np

    from musgen.data.melody import FIRST_PITCH_ID, MelodyConfig, window_starts

    line = np.full(64, FIRST_PITCH_ID + 40, dtype=np.int64)  # 64 steps of notes: 4 bars of 4/4
    in_4_4 = np.array([(0, 4, 4)], dtype=np.int64)
    in_2_4 = np.array([(0, 2, 4)], dtype=np.int64)
    two_four = MelodyConfig(meter="2/4", num_bars=2)  # 16 steps per window
    four_four = MelodyConfig(meter="4/4", num_bars=1)  # 16 steps per window
    assert window_starts(line, two_four, in_4_4).tolist() == [0, 8, 16, 24, 32, 40, 48]  # every 2/4 bar
    assert window_starts(line, four_four, in_4_4).tolist() == [0, 16, 32, 48]
    assert window_starts(line, four_four, in_2_4).tolist() == []  # which 2/4 bars pair is not known


def test_a_closing_short_bar_and_the_repeated_pickup_after_it_keep_the_bars_going():
    import numpy as np

    from musgen.data.melody import bar_runs

    # 4/4 from 0; a short closing bar ends at step 40 (2.5 bars), the repeated pickup (marked,
    # 8 steps) ends at 48: together one bar, and the bar lines go on from 48 on the same grid.
    ts = np.array([(0, 4, 4), (40, 4, 4), (48, 4, 4)], dtype=np.int64)
    assert bar_runs(ts, 112, 4) == {"4/4": [(0, 7)]}
    off_grid = np.array([(0, 4, 4), (40, 4, 4), (44, 4, 4)], dtype=np.int64)  # 44: not a bar line
    assert bar_runs(off_grid, 108, 4) == {"4/4": [(0, 2), (44, 4)]}
