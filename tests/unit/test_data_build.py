"""`musgen data build` on real MIDI plus broken files; caching; splits; BPE."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest

from musgen.data import DataConfig, NoUsableDataError, build
from musgen.data.build import split_of
from musgen.data.tokenizers import ids_to_score, load_tokenizer

CFG = {"workers": 2, "valid_fraction": 0.25, "test_fraction": 0.15}


@pytest.fixture(scope="module")
def messy_dir(bach_midi_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("messy")
    shutil.copytree(bach_midi_dir, d / "good")
    good = sorted((d / "good").glob("*.mid"))[0].read_bytes()
    (d / "corrupt.mid").write_bytes(good[: len(good) // 3])
    (d / "empty.mid").write_bytes(b"")
    (d / "random.mid").write_bytes(np.random.default_rng(0).bytes(3000))
    (d / "notes.midi").write_text("not a midi file\n")
    (d / "bad.mid").mkdir()
    (d / "loop").symlink_to(d)  # a symlink loop must not be followed
    return d


def test_build_skips_bad_files_and_is_idempotent(messy_dir, tmp_path, caplog):
    out = tmp_path / "data"
    m = build(out, midi_dir=messy_dir, config=DataConfig(**CFG))
    n_good = len(list((messy_dir / "good").glob("*.mid")))
    assert sum(s["pieces"] for s in m["splits"].values()) == n_good
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"corrupt.mid", "empty.mid", "random.mid", "notes.midi", "bad.mid"}
    assert all(r and "\n" not in r for r in reasons.values())
    assert m["files_found"] == n_good + 5 and m["tokenizer"] == "REMI"

    for split, info in m["splits"].items():
        tokens = np.load(out / f"{split}.tokens.npy")
        offsets = np.load(out / f"{split}.offsets.npy")
        pieces = json.loads((out / f"{split}.pieces.json").read_text())
        assert tokens.dtype == np.int32 and offsets.dtype == np.int64
        assert (
            len(offsets) == len(pieces) + 1 == info["pieces"] + 1
            and offsets[-1] == tokens.size == info["tokens"]
        )
        assert all(split_of(p, CFG["valid_fraction"], CFG["test_fraction"]) == split for p in pieces)
        assert tokens.size == 0 or tokens.max() < m["vocab_size"]

    mtime = (out / "train.tokens.npy").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="musgen.data.build"):
        again = build(out, midi_dir=messy_dir, config=DataConfig(**CFG))
    assert "cached build reused" in caplog.text
    assert again == m and (out / "train.tokens.npy").stat().st_mtime_ns == mtime

    changed = build(out, midi_dir=messy_dir, config=DataConfig(**CFG, num_velocities=8))
    assert changed["fingerprint"] != m["fingerprint"] and changed["vocab_size"] < m["vocab_size"]
    forced = build(out, midi_dir=messy_dir, config=DataConfig(**CFG, num_velocities=8), force=True)
    assert forced["fingerprint"] == changed["fingerprint"]


def test_changed_source_rebuilds(bach_midi_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(bach_midi_dir, src)
    out = tmp_path / "data"
    m1 = build(out, midi_dir=src, config=DataConfig(**CFG))
    victim = sorted(src.glob("*.mid"))[0]
    victim.unlink()
    m2 = build(out, midi_dir=src, config=DataConfig(**CFG))
    assert m2["fingerprint"] != m1["fingerprint"]
    assert (
        sum(s["pieces"] for s in m2["splits"].values()) == sum(s["pieces"] for s in m1["splits"].values()) - 1
    )


def test_min_notes_in_serial_mode(bach_midi_dir, tmp_path):
    with pytest.raises(NoUsableDataError, match="too few notes"):
        build(tmp_path / "d", midi_dir=bach_midi_dir, config=DataConfig(workers=1, min_notes=10**6))


def test_no_usable_data(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.mid").write_bytes(b"junk")
    with pytest.raises(NoUsableDataError, match="no usable MIDI"):
        build(tmp_path / "out", midi_dir=tmp_path / "src")
    with pytest.raises(ValueError):
        build(tmp_path / "out")


def test_split_is_deterministic_and_by_piece():
    names = [f"dir/piece_{i}.mid" for i in range(2000)]
    a = [split_of(n, 0.1, 0.1) for n in names]
    assert a == [split_of(n, 0.1, 0.1) for n in names]
    frac = {s: a.count(s) / len(a) for s in ("train", "valid", "test")}
    assert 0.07 < frac["valid"] < 0.13 and 0.07 < frac["test"] < 0.13
    assert split_of("a/b.mid", 0.0, 0.0) == "train"


def test_bpe_build_and_round_trip(bach_midi_dir, tmp_path):
    out = tmp_path / "bpe"
    m = build(out, midi_dir=bach_midi_dir, config=DataConfig(**CFG, bpe_vocab_size=500))
    assert m["bpe"] and m["vocab_size"] == 500 > m["base_vocab_size"]
    tok = load_tokenizer(out / "tokenizer.json")
    assert tok.is_trained
    tokens = np.load(out / "train.tokens.npy")
    offsets = np.load(out / "train.offsets.npy")
    assert tokens.max() >= m["base_vocab_size"]  # merges are used
    ids = tokens[offsets[0] : offsets[1]].tolist()
    score = ids_to_score(tok, ids)
    base = build(tmp_path / "base", midi_dir=bach_midi_dir, config=DataConfig(**CFG))
    assert base["splits"]["train"]["tokens"] > m["splits"]["train"]["tokens"]  # BPE compresses
    btok = load_tokenizer(tmp_path / "base" / "tokenizer.json")
    bt = np.load(tmp_path / "base" / "train.tokens.npy")
    bo = np.load(tmp_path / "base" / "train.offsets.npy")
    ref = ids_to_score(btok, bt[bo[0] : bo[1]].tolist())
    assert score.note_num() == ref.note_num() > 0
    notes = sorted((n.pitch, n.time, n.duration) for t in score.tracks for n in t.notes)
    assert notes == sorted((n.pitch, n.time, n.duration) for t in ref.tracks for n in t.notes)


def test_corpus_source(bach_midi_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSGEN_CACHE", str(tmp_path / "cache"))
    m = build(
        tmp_path / "c",
        corpus="bach",
        limit=3,
        config=DataConfig(workers=2, valid_fraction=0, test_fraction=0),
    )
    assert m["source"] == {"corpus": "bach"} and m["splits"]["train"]["pieces"] == 3
    assert os.listdir(tmp_path / "cache" / "corpus" / "bach")
