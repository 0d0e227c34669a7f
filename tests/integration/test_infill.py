"""Infilling end to end on real chorales: a tiny model trained on the voices with half of its windows
rewritten, `musgen infill` and the API; what lies outside the selection is kept exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import symusic
import torch

import musgen
from musgen.data.dataset import source_files
from musgen.errors import MusgenError

ROOT = Path(__file__).resolve().parents[2]


def _notes(track: symusic.Track) -> list[tuple[int, int, int, int]]:
    return sorted((n.time, n.duration, n.pitch, n.velocity) for n in track.notes)


@pytest.fixture(scope="module")
def piece(bach_tracks_data) -> Path:
    return source_files(bach_tracks_data, "valid")[0]


@pytest.fixture(scope="module")
def infiller(tiny_infill_run):
    return musgen.load(tiny_infill_run.checkpoint)


def test_infilled_bars_replace_only_the_selection(infiller, piece):
    original = symusic.Score(str(piece))
    tpq = original.ticks_per_quarter
    out = infiller.infill(piece, "2-3", seed=1)[0]
    sig = original.time_signatures[0]
    bar = round(sig.numerator * 4 / sig.denominator * tpq)
    lo, hi = bar, 3 * bar  # bars 2-3
    assert [t.name for t in out.tracks] == [t.name for t in original.tracks]
    assert out.time_signatures == original.time_signatures and out.tempos == original.tempos
    changed = 0
    for before, after in zip(original.tracks, out.tracks, strict=True):
        outside = [n for n in _notes(before) if not lo <= n[0] < hi]
        assert [n for n in _notes(after) if not lo <= n[0] < hi] == outside  # bit-identical
        new = [n for n in _notes(after) if lo <= n[0] < hi]
        assert all(n[0] + n[1] <= hi for n in new)  # clipped to the selection
        changed += new != [n for n in _notes(before) if lo <= n[0] < hi]
    assert changed  # the model wrote something else than the original there
    again = infiller.infill(piece, (2, 3), seed=1)[0]
    assert [_notes(t) for t in again.tracks] == [_notes(t) for t in out.tracks]  # seeded


def test_regenerating_one_voice_keeps_the_others(infiller, piece):
    original = symusic.Score(str(piece))
    out = infiller.infill(piece, "1-4", track="alto", seed=2)[0]
    for before, after in zip(original.tracks, out.tracks, strict=True):
        if before.name != "Alto":
            assert _notes(after) == _notes(before)


def test_density_is_written_for_the_model(infiller, piece):
    from musgen.data.dataset import special_ids
    from musgen.generate.infill import Infiller, Selection
    from musgen.generate.sampling import SamplingControls

    layout = infiller.layout()
    engine = Infiller(
        infiller.models["model"], infiller.tokenizer, layout, special_ids(infiller.tokenizer).bos
    )
    framed, bars = engine.frame(symusic.Score(str(piece)))
    filled = engine.fill(framed, Selection(2, 3, 1), SamplingControls(seed=0), density="high")
    assert len(filled) == 2 and all(ids[0] == layout.densities[3] for ids in filled.values())
    assert all(layout.content[t] for ids in filled.values() for t in ids[1:])  # only note tokens


def test_continuation_never_writes_the_infilling_tokens(infiller):
    layout = infiller.layout()
    ids = infiller.sample_ids(2, length=200, seed=0, temperature=1.5)
    assert not {layout.fill, layout.fill_start} & {t for seq in ids for t in seq}


def test_selections_it_cannot_do_are_refused(infiller, piece, quick_transformer_run):
    with pytest.raises(MusgenError, match="reaches past the piece"):
        infiller.infill(piece, "2-400")
    with pytest.raises(MusgenError, match="no such track"):
        infiller.infill(piece, "2-3", track="violin")
    with pytest.raises(MusgenError, match="counted from 1|count from 1"):
        infiller.infill(piece, "0-2")
    with pytest.raises(MusgenError, match="not trained to infill"):
        musgen.load(quick_transformer_run.checkpoint).infill(piece, "2-3")


def test_musgen_infill_command(tiny_infill_run, piece, tmp_path, tiny_gan_run):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "musgen.cli", *args], capture_output=True, text=True)

    out = tmp_path / "filled"
    ckpt = str(tiny_infill_run.checkpoint)
    proc = cli(
        "infill",
        str(piece),
        "--bars",
        "2-3",
        "--track",
        "tenor",
        "--checkpoint",
        ckpt,
        "--out",
        str(out),
        "--num-samples",
        "2",
        "--seed",
        "5",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["infill_000.mid", "infill_001.mid", "samples.json"]
    run = json.loads((out / "samples.json").read_text())[0]
    assert run["command"] == "infill" and run["seed"] == 5 and run["settings"]["track"] == "tenor"
    for args, message in (
        (["--bars", "3-2"], "must not run backwards"),
        (["--bars", "2-3", "--track", "violin"], "no such track"),
        (["--bars", "2-3", "--checkpoint", str(tiny_gan_run.checkpoint)], "needs a lstm checkpoint or"),
    ):
        base = ["infill", str(piece), "--checkpoint", ckpt, "--out", str(tmp_path / "x")]
        proc = cli(*base, *args)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_continuation_takes_a_density(infiller, quick_transformer_run):
    layout = infiller.layout()
    for seq in infiller.sample_ids(2, length=200, seed=0, density="low"):
        after_track = [b for a, b in zip(seq, seq[1:], strict=False) if a in layout.tracks]
        assert after_track and set(after_track) == {layout.densities[1]}
    with pytest.raises(MusgenError, match="named tracks"):
        musgen.load(quick_transformer_run.checkpoint).generate(1, length=8, density="low")


def _train_tiny_infill(data, out: Path, order: str, *extra: str):
    """The tiny transformer trained on the voices with half of its windows in ``order``."""
    overrides = ["data.seq_len=384", "model.max_relative_position=384", "data.infill=0.5"]
    overrides += [f"data.infill_order={order}", *extra]
    return musgen.train(
        "transformer", data, out, config="tiny/transformer", progress=False, overrides=overrides
    )


def test_the_nearby_order_trains_and_infills(bach_tracks_data, piece, tmp_path):
    run = _train_tiny_infill(bach_tracks_data, tmp_path / "nearby", "nearby", "train.steps=10")
    model = musgen.load(run.checkpoint)
    original = symusic.Score(str(piece))
    out = model.infill(piece, "2-3", track="tenor", density="high", seed=0)[0]
    for before, after in zip(original.tracks, out.tracks, strict=True):
        if before.name != "Tenor":
            assert _notes(after) == _notes(before)


def test_the_hinted_order_fine_tunes_a_checkpoint_and_infills(
    tiny_infill_run, bach_tracks_data, piece, tmp_path
):
    """train.init_from starts a hinted run from a suffix-first checkpoint: every shared weight as
    it was (lr 0 here), the hint embeddings new and zero; the run infills, keeping the rest."""
    from safetensors.torch import load_file

    init = f"train.init_from={tiny_infill_run.run_dir}"
    run = _train_tiny_infill(
        bach_tracks_data, tmp_path / "hinted", "hinted", init, "train.lr=0", "train.steps=2"
    )
    source = load_file(str(tiny_infill_run.checkpoint / "model.safetensors"))
    tuned = load_file(str(run.checkpoint / "model.safetensors"))
    new = set(tuned) - set(source)
    assert new and all(k.startswith("hint_embed.") for k in new)
    assert all((tuned[k] == 1).all() if k.endswith("gate.weight") else not tuned[k].any() for k in new)
    assert all(torch.equal(source[k], tuned[k]) for k in source)
    # the hint strength chosen on the validation split is stored in the checkpoint and used on load
    tune = [sys.executable, "scripts/tune_hints.py", str(run.checkpoint), "--data", str(bach_tracks_data)]
    subprocess.run(
        [*tune, "--grid", "0,1", "--sizes", "2", "--write"], check=True, capture_output=True, cwd=ROOT
    )
    meta = json.loads((run.checkpoint / "musgen.json").read_text())
    table = meta["hint_scale_chosen_by"]["table"]
    assert [row["hint_scale"] for row in table] == [0.0, 1.0] and meta["hint_scale"] in (0.0, 1.0)
    assert table[0]["both_sides_nll_per_token"] == table[0]["left_only_nll_per_token"]  # scale 0: no hint
    model = musgen.load(run.checkpoint)
    assert model.models["model"].hint_embed.scale == meta["hint_scale"]
    original = symusic.Score(str(piece))
    for track, bars in ((None, "2-3"), ("alto", "2-3"), ("alto", "1-2")):  # from bar 1: the prompt is BOS
        out = model.infill(piece, bars, track=track, seed=0)[0]
        for before, after in zip(original.tracks, out.tracks, strict=True):
            if track is not None and before.name != "Alto":
                assert _notes(after) == _notes(before)
    with pytest.raises(MusgenError, match="is a transformer checkpoint, not lstm"):
        musgen.train(
            "lstm",
            bach_tracks_data,
            tmp_path / "other",
            config="tiny/lstm",
            progress=False,
            overrides=[f"train.init_from={tiny_infill_run.checkpoint}", "train.steps=1"],
        )


@pytest.mark.parametrize("order", ["suffix_first", "nearby", "anticipate", "next_pitch", "hinted"])
def test_the_infiller_reads_a_selection_as_training_wrote_it(infiller, piece, order):
    """For every order, the prompt + plan with the true notes in the selected cells is the order's
    training sequence of the same mask (what the model learned is what it is asked), and fill runs
    (hinted: with a hinted model, test_the_hinted_order_fine_tunes_a_checkpoint_and_infills)."""
    from musgen.data.dataset import special_ids
    from musgen.data.track_layout import (
        anticipate_sequence,
        anticipated,
        cell_hints,
        find_cells,
        hinted_ids,
        infill_sequence,
        nearby_sequence,
        next_pitch_sequence,
    )
    from musgen.generate.infill import Infiller, Selection
    from musgen.generate.sampling import SamplingControls

    layout = infiller.layout()
    model, tok = infiller.models["model"], infiller.tokenizer
    engine = Infiller(model, tok, layout, special_ids(tok).bos, order=order, lookahead=1)
    engine.context = None  # the whole piece: no cut to compare around
    framed, bars = engine.frame(symusic.Score(str(piece)))
    _, complete = find_cells(framed, layout)
    for sel in (Selection(2, 3, None), Selection(3, 3, 1), Selection(bars - 1, bars, 2)):
        prompt, masked = engine.prompt(framed, sel)
        read, offsets = list(prompt), engine.offsets(framed, sel)
        for item in engine.plan(framed, sel):
            notes = [] if isinstance(item, int) else framed[item.start + 1 : item.end]
            read += [item] if isinstance(item, int) else [t + offsets[item] for t in notes]
        if order == "suffix_first":
            view, prefix, middle = infill_sequence(framed, masked, layout)
            trained = view + [layout.fill_start] + prefix + middle
        elif order == "nearby":
            prefix, after, middle = nearby_sequence(framed, masked, layout, 1)
            trained = prefix + [layout.fill] + after + [layout.fill_start] + middle
        elif order == "anticipate":
            prefix, middle, ahead, _ = anticipate_sequence(framed, masked, complete, layout, 1)
            trained = prefix + anticipated(middle, ahead, layout)
        elif order == "next_pitch":
            trained = next_pitch_sequence(framed, masked, complete, layout)[: len(read)]
        else:
            hints = cell_hints(framed, masked, complete, layout)
            trained = hinted_ids(framed, hints, len(layout.tokens))[: len(read)].tolist()
            assert max(read) >= len(layout.tokens)
        assert read == trained, (order, sel)
    if order == "hinted":
        return
    filled = engine.fill(framed, Selection(2, 3, 1), SamplingControls(seed=0))
    assert len(filled) == 2 and all(ids[0] in layout.densities for ids in filled.values())


def test_a_pitch_range_keeps_the_new_notes_inside_it(infiller, piece):
    original = symusic.Score(str(piece))
    tpq = original.ticks_per_quarter
    out = infiller.infill(piece, "2-3", track="tenor", pitch_range="55-60", seed=0)[0]
    for before, after in zip(original.tracks, out.tracks, strict=True):
        if before.name != "Tenor":
            assert _notes(after) == _notes(before)
            continue
        new = [n.pitch for n in after.notes if 4 * tpq <= n.time < 12 * tpq]  # bars 2-3 of 4/4
        assert new and all(55 <= p <= 60 for p in new)
    for bad in ("60-55", "55", "0-200"):
        with pytest.raises(MusgenError, match="--pitch-range"):
            infiller.infill(piece, "2-3", pitch_range=bad, seed=0)
