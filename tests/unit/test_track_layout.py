"""The tracks layout: voices kept apart bar by bar, density controls, fill-in-the-middle windows."""

import numpy as np
import pytest
import symusic
import torch

from musgen.data.dataset import InfillWindows, load_split
from musgen.data.tokenizers import load_score, load_tokenizer, midi_to_ids
from musgen.data.track_layout import (
    DENSITIES,
    choose_mask,
    decode_tracks,
    density_class,
    find_cells,
    fit_infill_sequence,
    infill_sequence,
    layout_of,
)


def _notes(track: symusic.Track, tpq: int) -> list[tuple[float, int]]:
    return sorted((round(n.time / tpq * 8) / 8, n.pitch) for n in track.notes)


def _first_piece(data_dir):
    """The layout and the framed ids (BOS ... EOS) of the first training piece."""
    layout = layout_of(load_tokenizer(data_dir / "tokenizer.json"))
    tokens, offsets = load_split(data_dir, "train")
    return layout, [1, *np.asarray(tokens[offsets[0] : offsets[1]]).tolist(), layout.eos]


def test_density_classes():
    assert [density_class(n, 4.0) for n in (0, 2, 3, 4, 5, 6, 8)] == [0, 1, 1, 2, 2, 3, 3]
    assert [density_class(n, 3.0) for n in (2, 3, 4, 5)] == [1, 2, 2, 3]  # 3/4: by onsets per beat


def test_round_trip_keeps_each_voice(bach_tracks_data, bach_midi_dir):
    tok = load_tokenizer(bach_tracks_data / "tokenizer.json")
    layout = layout_of(tok)
    assert layout is not None and layout.names == ("soprano", "alto", "tenor", "bass")
    for path in sorted(bach_midi_dir.rglob("*.mid"))[:4]:
        score = load_score(path)
        decoded = decode_tracks(tok, midi_to_ids(tok, score))
        assert [t.name for t in decoded.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        by_name = {t.name.lower(): t for t in score.tracks if t.note_num()}
        for track in decoded.tracks:  # every voice's notes back, on the tokenizer's grid
            assert _notes(track, decoded.ticks_per_quarter) == _notes(
                by_name[track.name.lower()], score.ticks_per_quarter
            )


def test_cells_and_infill_sequences(bach_tracks_data):
    layout, ids = _first_piece(bach_tracks_data)
    cells, complete = find_cells(ids, layout)
    bars = ids.count(layout.bar)
    assert complete == bars and len(cells) == 4 * bars
    assert all(ids[c.start] == layout.tracks[c.track] and ids[c.start + 1] in layout.densities for c in cells)
    rng = np.random.default_rng(0)
    for _ in range(20):
        masked = choose_mask(cells, complete, 4, rng)
        assert masked and (len({c.track for c in masked}) == 1 or len({c.bar for c in masked}) <= 8)
        view, prefix, middle = infill_sequence(ids, masked, layout)
        assert view.count(layout.fill) == len(masked) and layout.fill not in prefix + middle
        # the prefix and middle are the piece up to the end of the gap; the view is the piece from the
        # gap on with each masked cell's contents (density and notes) as one Fill
        assert ids[: len(prefix) + len(middle)] == prefix + middle
        rebuilt, starts = [], {c.start - len(prefix): c for c in masked}
        rest = ids[len(prefix) :]
        pos = 0
        while pos < len(rest):
            cell = starts.get(pos)
            rebuilt.append(rest[pos])
            if cell is not None:
                rebuilt.append(layout.fill)
                pos = cell.end - len(prefix)
            else:
                pos += 1
        assert rebuilt == view
        gap = len(middle) - sum(c.end - c.start - 2 for c in masked)  # the gap's part of the view
        whole = view + [layout.fill_start] + prefix + middle
        assert fit_infill_sequence(view, prefix, middle, gap, 10**6, layout) == whole
        tight = gap + 1 + len(middle) + 10  # cut: the bars after the gap, then most of the prefix
        fitted = fit_infill_sequence(view, prefix, middle, gap, tight, layout)
        assert len(fitted) == min(tight, len(whole)) and fitted[:gap] == view[:gap]
        assert fitted[-len(middle) :] == middle


def test_infill_windows_never_teach_the_fill_tokens(bach_tracks_data):
    windows = InfillWindows(bach_tracks_data, "train", 256, infill=0.5, transpose=2, seed=3)
    layout = windows.layout
    rewritten = 0
    for i in range(len(windows)):
        item = windows[i]
        assert item["input_ids"].shape == item["labels"].shape == (256,)
        labels = item["labels"]
        assert not torch.isin(labels, torch.tensor([layout.fill, layout.fill_start])).any()
        rewritten += bool((item["input_ids"] == layout.fill_start).any())
        assert windows[i]["input_ids"].equal(item["input_ids"])  # reproducible (exact resume)
    assert 0.25 < rewritten / len(windows) < 0.75


def test_infill_needs_named_tracks(bach_data):
    with pytest.raises(Exception, match="named tracks"):
        InfillWindows(bach_data, "train", 64, infill=0.5)


def test_every_density_has_a_token(bach_tracks_data):
    tok = load_tokenizer(bach_tracks_data / "tokenizer.json")
    assert all(f"Density_{d}" in tok.vocab for d in DENSITIES)


def test_nearby_order_puts_each_bars_masked_tracks_last(bach_tracks_data):
    from musgen.data.track_layout import fit_nearby_sequence, nearby_sequence

    layout, ids = _first_piece(bach_tracks_data)
    cells, complete = find_cells(ids, layout)
    alto = [c for c in cells if c.track == 1 and c.bar in (2, 3)]
    prefix, after, middle = nearby_sequence(ids, alto, layout, lookahead=2)
    assert ids[: len(prefix)] == prefix and after.count(layout.bar) == 2 and after[0] == layout.bar
    # each of the two bars: soprano, tenor, bass, then the alto
    order = [layout.tracks.index(t) for t in middle if t in layout.tracks]
    assert order == [0, 2, 3, 1, 0, 2, 3, 1] and sorted(middle) == sorted(
        ids[len(prefix) : len(prefix) + len(middle)]
    )
    seq = fit_nearby_sequence(prefix, after, middle, 10**6, layout)
    assert seq == prefix + [layout.fill] + after + [layout.fill_start] + middle
    short = fit_nearby_sequence(prefix, after, middle, len(middle) + 40, layout)
    assert len(short) == len(middle) + 40 and short[-len(middle) :] == middle  # the prefix is cut first


def test_anticipate_order_places_the_next_bars_before_the_gaps_last_bar(bach_tracks_data):
    from musgen.data.track_layout import anticipate_sequence, anticipated, fit_anticipate_sequence

    layout, ids = _first_piece(bach_tracks_data)
    cells, complete = find_cells(ids, layout)
    alto = [c for c in cells if c.track == 1 and c.bar in (2, 3)]
    prefix, middle, ahead, rest = anticipate_sequence(ids, alto, complete, layout, lookahead=1)
    bars = [p for p, t in enumerate(ids) if t == layout.bar] + [len(ids) - 1]
    assert prefix == ids[: bars[2]] and ahead == ids[bars[4] : bars[5]] and rest == ids[bars[5] :]
    seq = anticipated(middle, ahead, layout)
    order = [layout.tracks.index(t) for t in seq if t in layout.tracks]
    # bar 2 (soprano, tenor, bass, alto), Fill, bar 4 as it is, FillStart, bar 3 with the alto last
    assert order == [0, 2, 3, 1, 0, 1, 2, 3, 0, 2, 3, 1]
    assert seq.count(layout.fill) == seq.count(layout.fill_start) == 1
    assert seq[seq.index(layout.fill) + 1 : seq.index(layout.fill_start)] == ahead
    whole = prefix + seq + rest
    assert fit_anticipate_sequence(prefix, middle, ahead, rest, 10**6, layout) == whole
    short = fit_anticipate_sequence(prefix, middle, ahead, rest, len(seq) + 30, layout)
    assert short == prefix[-30:] + seq  # the tail after the gap goes first, then the prefix's head
    # a gap that ends the piece has nothing to anticipate
    last = [c for c in cells if c.bar == complete - 1]
    p, m, a, r = anticipate_sequence(ids, last, complete, layout, lookahead=2)
    assert a == [] and anticipated(m, a, layout) == m and layout.fill not in m


@pytest.mark.parametrize("order", ["suffix_first", "nearby", "anticipate"])
def test_training_windows_follow_the_configured_order(bach_tracks_data, order):
    """data.infill_order reaches the training windows (it once did not: every order trained as
    suffix_first). suffix_first opens with the view, so its first Fill comes before FillStart and the
    window starts at a Bar; the other two start with the bars before the gap."""
    from musgen.config import resolve
    from musgen.registry import get_family
    from musgen.training.trainer import read_data_meta

    spec = get_family("transformer")
    overrides = [
        "data.infill=1.0",
        f"data.infill_order={order}",
        "data.infill_lookahead=1",
        "data.seq_len=512",
    ]
    cfg = resolve(spec.config_cls, "transformer", "tiny/transformer", overrides)
    train, _ = spec.task_cls(cfg, bach_tracks_data, read_data_meta(bach_tracks_data)).datasets()
    assert (train.order, train.lookahead) == (order, 1)
    layout = train.layout
    opens_with_view = []
    for i in range(len(train)):
        ids = train[i]["input_ids"].tolist()
        if layout.fill in ids and layout.fill_start in ids:
            opens_with_view.append(
                ids.index(layout.fill) < ids.index(layout.fill_start) and ids[0] == layout.bar
            )
    assert opens_with_view and all(opens_with_view) == (order == "suffix_first")


def test_next_pitch_order_tells_the_gaps_last_bar_where_each_voice_goes(bach_tracks_data):
    from musgen.data.track_layout import next_pitch_sequence, next_pitches

    layout, ids = _first_piece(bach_tracks_data)
    cells, complete = find_cells(ids, layout)
    gap = [c for c in cells if c.bar in (2, 3)]
    seq = next_pitch_sequence(ids, gap, complete, layout)
    hints = next_pitches(ids, 4, layout)
    assert len(hints) == 4 and all(layout.tokens[p].startswith("Pitch_") for p in hints.values())
    # each voice's first pitch of bar 4 (0-based), after the Track token of its bar-3 cell
    fills = [p for p, t in enumerate(seq) if t == layout.fill]
    assert [seq[p - 1] for p in fills] == list(layout.tracks) and [seq[p + 1] for p in fills] == [
        hints[k] for k in range(4)
    ]
    assert [t for p, t in enumerate(seq) if p not in fills and p - 1 not in fills] == ids
    # a gap that ends the piece has no hint; the windows never teach the hint
    assert next_pitch_sequence(ids, [c for c in cells if c.bar == complete - 1], complete, layout) == ids
    windows = InfillWindows(bach_tracks_data, "train", 512, infill=1.0, order="next_pitch", seed=1)
    hinted = 0
    for i in range(len(windows)):
        item = windows[i]
        at = item["input_ids"] == layout.fill
        hinted += int(at.sum())
        assert (item["labels"][at] == -100).all()  # the hinted pitch is given, not predicted
    assert hinted > 0


def test_hinted_cells_say_how_far_the_gap_runs_and_where_each_voice_goes(bach_tracks_data):
    from musgen.data.track_layout import HINT_CLASSES, cell_hints, hint_class, hinted_ids, next_pitches

    layout, ids = _first_piece(bach_tracks_data)
    cells, complete = find_cells(ids, layout)
    gap = [c for c in cells if c.bar in (2, 3)]
    hints = cell_hints(ids, gap, complete, layout, bars=2)
    after = {t: int(layout.tokens[p].split("_")[1]) for t, p in next_pitches(ids, 4, layout).items()}
    assert len(after) == 4
    assert [hints[c] for c in gap if c.bar == 3] == [hint_class(0, after[t]) for t in range(4)]
    assert [hints[c] for c in gap if c.bar == 2] == [hint_class(1, after[t]) for t in range(4)]
    assert cell_hints(ids, gap, complete, layout) == {c: h for c, h in hints.items() if c.bar == 3}
    assert hint_class(9, None) == HINT_CLASSES - 1 and hint_class(0, 0) == 1  # far bars share a class
    # a gap that ends the piece knows nothing of what follows
    last = [c for c in cells if c.bar == complete - 1]
    assert set(cell_hints(ids, last, complete, layout).values()) == {hint_class(0, None)}
    # the input ids: id + V x class inside each hinted cell (Track token to its last note), else the id
    v = len(layout.tokens)
    marked = hinted_ids(ids, hints, v)
    assert (marked % v).tolist() == ids
    inside = {p for c in gap for p in range(c.start, c.end)}
    assert [p for p, m in enumerate(marked) if m >= v] == sorted(inside)


def test_hinted_windows_keep_the_continuation_and_mark_whole_cells(bach_tracks_data):
    """The hinted order's windows are the plain windows (same inputs modulo V, same labels) with one
    or two gaps' cells marked; every mark starts at a Track token and covers its cell."""
    from musgen.config import resolve
    from musgen.data.dataset import TokenWindows
    from musgen.registry import get_family
    from musgen.training.trainer import read_data_meta

    spec = get_family("transformer")
    overrides = ["data.infill=1.0", "data.infill_order=hinted", "data.seq_len=512"]
    cfg = resolve(spec.config_cls, "transformer", "tiny/transformer", overrides)
    task = spec.task_cls(cfg, bach_tracks_data, read_data_meta(bach_tracks_data))
    assert task.models["model"].hint_embed is not None
    train, _ = task.datasets()
    layout, v = train.layout, len(train.layout.tokens)
    marked_windows = 0
    for i in range(len(train)):
        item, plain = train[i], TokenWindows.__getitem__(train, i)
        x = item["input_ids"]
        assert torch.equal(item["labels"], plain["labels"]) and torch.equal(x % v, plain["input_ids"])
        runs = np.flatnonzero(np.diff(np.r_[0, (x >= v).numpy().astype(int)]) == 1)  # first marked ids
        marked_windows += len(runs) > 0
        for start in runs:
            assert int(x[start]) % v in layout.tracks
    assert marked_windows > len(train) // 2
