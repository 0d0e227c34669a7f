"""TokenWindows and the unigram baseline on a real built data set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musgen.data import DataConfig, build
from musgen.data.dataset import TokenWindows, special_ids, unigram_nll, vocab_size
from musgen.data.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def data_dir(bach_midi_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    build(out, midi_dir=bach_midi_dir, config=DataConfig(workers=2, valid_fraction=0.25, test_fraction=0.1))
    return out


def test_windows_shapes_labels_padding(data_dir):
    sp = special_ids(data_dir)
    ds = TokenWindows(data_dir, "train", seq_len=64)
    tokens = np.load(data_dir / "train.tokens.npy")
    offsets = np.load(data_dir / "train.offsets.npy")
    expected = sum(math.ceil((int(offsets[k + 1] - offsets[k]) + 1) / 64) for k in range(len(offsets) - 1))
    assert len(ds) == expected
    first = ds[0]
    assert first["input_ids"].shape == (64,) and first["labels"].shape == (64,)
    assert first["input_ids"].dtype == torch.int64 and first["labels"].dtype == torch.int64
    assert first["input_ids"][0] == sp.bos
    assert torch.equal(first["input_ids"][1:], first["labels"][:-1])
    assert first["input_ids"][1:].tolist() == tokens[:63].tolist()
    # the last window of each piece ends with EOS then padding (-100 in labels)
    last = ds[len(ds) - 1]
    labels = last["labels"]
    real = labels[labels != -100]
    assert real[-1] == sp.eos
    n = len(real)
    if n < 64:  # EOS is also the last real input; its label is ignored
        assert last["input_ids"][n] == sp.eos
        assert (last["input_ids"][n + 1 :] == sp.pad).all() and (labels[n:] == -100).all()
    # strided windows overlap
    assert len(TokenWindows(data_dir, "train", seq_len=64, stride=32)) > len(ds)


def test_no_piece_in_two_splits(data_dir):
    import json

    seen = {}
    for split in ("train", "valid", "test"):
        for p in json.loads((data_dir / f"{split}.pieces.json").read_text()):
            assert p not in seen
            seen[p] = split
    assert "valid" in seen.values()


def test_transposition_in_vocab_and_deterministic(data_dir):
    tok = load_tokenizer(data_dir / "tokenizer.json")
    inv = {i: t for t, i in tok.vocab.items()}
    plain = TokenWindows(data_dir, "train", seq_len=128)
    aug = TokenWindows(data_dir, "train", seq_len=128, transpose=5, velocity_jitter=2, seed=3)
    shifted_any = False
    for i in range(len(aug)):
        a, p = aug[i]["input_ids"].numpy(), plain[i]["input_ids"].numpy()
        assert a.min() >= 0 and a.max() < vocab_size(data_dir)
        pa = [int(inv[x].split("_")[1]) for x in a if inv[int(x)].startswith("Pitch_")]
        pp = [int(inv[x].split("_")[1]) for x in p if inv[int(x)].startswith("Pitch_")]
        diffs = {x - y for x, y in zip(pa, pp, strict=True)}
        assert len(diffs) <= 1 and all(abs(d) <= 5 for d in diffs)  # one shift per window
        shifted_any |= diffs not in (set(), {0})
        assert torch.equal(
            aug[i]["labels"][aug[i]["labels"] == -100], plain[i]["labels"][plain[i]["labels"] == -100]
        )
    assert shifted_any
    again = TokenWindows(data_dir, "train", seq_len=128, transpose=5, velocity_jitter=2, seed=3)
    assert all(torch.equal(again[i]["input_ids"], aug[i]["input_ids"]) for i in range(len(aug)))
    x0 = [aug[i]["input_ids"] for i in range(len(aug))]
    aug.set_epoch(1)
    x1 = [aug[i]["input_ids"] for i in range(len(aug))]
    assert any(not torch.equal(a, b) for a, b in zip(x0, x1, strict=True))
    aug.set_epoch(0)
    assert all(torch.equal(aug[i]["input_ids"], x0[i]) for i in range(len(aug)))


def test_unigram_nll(data_dir):
    r = unigram_nll(data_dir)
    assert r["eval_split"] == "valid" and r["eval_tokens"] > 0
    assert math.isfinite(r["nll"]) and 0 < r["nll"] < math.log(vocab_size(data_dir)) == r["uniform_nll"]


def test_source_file_points_at_the_held_out_midi(bach_data, bach_midi_dir):
    import json

    from musgen.data.dataset import source_file

    piece = json.loads((bach_data / "valid.pieces.json").read_text())[0]
    path = source_file(bach_data, "valid")
    assert path.resolve() == (bach_midi_dir / piece).resolve() and path.is_file()
