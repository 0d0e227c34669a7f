"""Fair comparison sets (musgen.eval.fair_sets) on real chorales: equal-length excerpts, disjoint
real halves of equal size, and a real-vs-real reference reported next to the samples' comparison."""

from __future__ import annotations

import symusic

from musgen.eval.fair_sets import excerpt, excerpts, fair_statistics, last_onset_quarters, real_halves


def _chorales(folder, n=None):
    return [symusic.Score(str(p)) for p in sorted(folder.rglob("*.mid"))[:n]]


def test_excerpts_are_complete_equal_windows_from_time_zero(bach_midi_dir):
    for score in _chorales(bach_midi_dir, 4):
        cuts = excerpts(score, 8)
        assert len(cuts) == int(last_onset_quarters(score) // 8) and cuts
        for cut in cuts:
            assert cut.start() >= 0 and cut.end() <= 8 * cut.ticks_per_quarter
        # The second excerpt holds the notes starting in quarters [8, 16) of the piece, moved to 0.
        tpq = score.ticks_per_quarter
        starts = sorted(n.time for t in score.tracks for n in t.notes if 8 * tpq <= n.time < 16 * tpq)
        assert sorted(n.time + 8 * tpq for t in cuts[1].tracks for n in t.notes) == starts
    assert excerpts(_chorales(bach_midi_dir, 1)[0], None)[0].note_num() > 0
    assert excerpt(_chorales(bach_midi_dir, 1)[0], 1000, 8).note_num() == 0


def test_real_halves_are_disjoint_by_piece_and_equal_in_size(bach_midi_dir):
    pieces = _chorales(bach_midi_dir)
    for piece in pieces:  # tag every note with its piece so that a shared piece would show
        for track in piece.tracks:
            for note in track.notes:
                note.velocity = 10 + pieces.index(piece)
    a, b, used = real_halves(pieces, 8, 6, seed=1)
    assert len(a) == len(b) == 6 and 2 <= used <= len(pieces)
    tags = [{n.velocity for t in s.tracks for n in t.notes} for s in (*a, *b)]
    assert all(len(t) == 1 for t in tags)
    assert not {t.pop() for t in tags[:6]} & {t.pop() for t in tags[6:]}
    # Too few excerpts in the pieces: the extra pieces are used, and only then.
    a2, b2, _ = real_halves(pieces[:2], 8, 20, extra=lambda: pieces[2:])
    assert len(a2) + len(b2) > sum(len(excerpts(p, 8)) for p in pieces[:2])

    def never() -> list:
        raise AssertionError("the extra pieces are not needed here")

    assert len(real_halves(pieces, 8, 3, extra=never)[0]) == 3


def test_fair_statistics_compares_equal_sets_next_to_real_vs_real(bach_midi_24):
    pieces = _chorales(bach_midi_24)
    silent = excerpt(pieces[0], 10_000, 4)
    stats = fair_statistics(pieces[4:], pieces[:4] + [silent], 16.0)
    assert stats["generated_pieces"] == stats["reference_pieces"] == 4
    assert stats["samples_without_notes"] == 1 and stats["excerpt_quarters"] == 16.0
    real = stats["real_vs_real"]
    assert real["feature_frechet"] > 0 and 0 <= real["mean_overlap_area"] <= 1
    assert set(real["features"]) == set(stats["features"])
    assert stats["frechet_ratio"] == stats["feature_frechet"] / real["feature_frechet"]
    # A sample shorter than the asked excerpt shortens every excerpt to its whole quarters.
    short = fair_statistics(pieces[4:], pieces[:4] + [excerpt(pieces[0], 0, 6.5)], 16.0)
    assert (
        short["excerpt_quarters"] == 6.0
        and short["asked_quarters"] == 16.0
        and short["generated_pieces"] == 5
    )
