"""Every token language model (LSTM, Music Transformer) end to end on real chorales: training
lowers the loss, resume is exact, sampling with and without a primer writes MIDI that pretty_midi
and symusic read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pretty_midi
import pytest
import symusic
import torch
from safetensors.torch import load_file

import musgen
from musgen.data.dataset import unigram_nll

REPO = Path(__file__).resolve().parents[2]
LANGUAGE_MODELS = ("lstm", "transformer")


def test_tiny_training_lowers_the_loss_below_the_unigram_baseline(tiny_lm_run, bach_data):
    history = tiny_lm_run.history
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    baseline = unigram_nll(bach_data)["nll"]
    assert tiny_lm_run.metrics["valid_nll"] < baseline, (tiny_lm_run.metrics, baseline)
    ckpt = tiny_lm_run.checkpoint
    assert {p.name for p in ckpt.iterdir()} >= {
        "musgen.json",
        "config.yaml",
        "model.safetensors",
        "tokenizer.json",
    }
    family = Path(tiny_lm_run.run_dir).name
    assert json.loads((ckpt / "musgen.json").read_text())["family"] == family


def _train_cli(family: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "musgen.cli", "-q", "train", family, "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("family", LANGUAGE_MODELS)
def test_resume_in_a_fresh_process_gives_the_same_weights(family, bach_data, tmp_path):
    # Dropout, transposition and several epochs (small batches) exercise every RNG stream.
    common = [
        "--data",
        str(bach_data),
        "--config",
        f"tiny/{family}",
        "--set",
        "train.steps=10",
        "--set",
        "train.batch_size=8",
        "--set",
        "model.dropout=0.3",
        "--set",
        "model.num_layers=2",
        "--set",
        "train.eval_every=3",
        "--set",
        "train.save_every=100",
    ]
    if family == "transformer":  # attention dropout draws from the RNG inside SDPA
        common += ["--set", "model.attention_dropout=0.1"]
    _train_cli(family, *common, "--out", str(tmp_path / "straight"))
    _train_cli(family, *common, "--out", str(tmp_path / "split"), "--set", "train.stop_at=5")
    assert json.loads((tmp_path / "split" / "state" / "step_0000005" / "loop.json").read_text())["step"] == 5
    _train_cli(
        family,
        "--data",
        str(bach_data),
        "--out",
        str(tmp_path / "split"),
        "--resume",
        "--set",
        "train.stop_at=0",
    )
    straight = load_file(str(tmp_path / "straight" / "checkpoints" / "step_0000010" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "split" / "checkpoints" / "step_0000010" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    # The resumed run is not a copy of the straight one's files: it wrote its own metrics.
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert any(json.loads(line)["step"] == 10 for line in lines)


def _notes(path: Path) -> list[pretty_midi.Note]:
    pm = pretty_midi.PrettyMIDI(str(path))
    assert symusic.Score(str(path)).note_num() == sum(len(i.notes) for i in pm.instruments)
    return [n for inst in pm.instruments for n in inst.notes]


def test_sample_without_and_with_a_primer(tiny_lm_run, bach_midi_dir, tmp_path):
    generator = musgen.load(tiny_lm_run.run_dir)
    free = generator.generate_to(tmp_path / "free", 2, length=200, seed=0, top_k=20)
    assert [p.name for p in free] == ["sample_000.mid", "sample_001.mid"]
    assert all(len(_notes(p)) > 0 for p in free)
    again = generator.generate_to(tmp_path / "again", 2, length=200, seed=0, top_k=20)
    assert [p.read_bytes() for p in free] == [p.read_bytes() for p in again]  # the seed fixes the samples

    primer = sorted(bach_midi_dir.glob("*.mid"))[0]
    primed = generator.generate_to(tmp_path / "primed", 1, prime=primer, length=150, seed=1, temperature=0.9)
    _notes(primed[0])  # readable by both libraries
    # Compare in quarter notes: the decoded file has the tokenizer's default tempo, not the primer's.
    score = symusic.Score(str(primer)).to("quarter")
    primer_end = max(n.time + n.duration for t in score.tracks for n in t.notes)
    out = symusic.Score(str(primed[0])).to("quarter")
    out_onsets = [n.time for t in out.tracks for n in t.notes]
    assert len(out_onsets) > score.note_num() * 0.9  # the primer is at the start of the output...
    assert any(t >= primer_end - 1e-6 for t in out_onsets)  # ...and the model continued it


def test_generated_garbage_never_breaks_the_output(tiny_lm_run, tmp_path):
    generator = musgen.load(tiny_lm_run.checkpoint)
    # A very hot sampler emits ill-formed token sequences; they must still decode to a valid file.
    paths = generator.generate_to(tmp_path, 3, length=120, temperature=5.0, seed=3)
    for path in paths:
        pretty_midi.PrettyMIDI(str(path))


def test_length_in_bars(tiny_lm_run):
    generator = musgen.load(tiny_lm_run.checkpoint)
    tokenizer = generator.tokenizer
    bar_ids = {i for tok, i in tokenizer.vocab.items() if tok.startswith("Bar_")}
    for seq in generator.sample_ids(3, length=2000, bars=2, seed=5):
        # BOS is stripped; the Bar token that would open a third bar ends the sample.
        assert sum(t in bar_ids for t in seq) == 2, seq[:40]


def test_tiny_transformer_memorises_one_real_piece_and_samples_it_back(bach_midi_dir, tmp_path):
    import numpy as np

    from musgen.data import DataConfig, build
    from musgen.data.dataset import special_ids
    from musgen.generate.sampling import SamplingControls, sample_sequences

    piece = tmp_path / "one"
    piece.mkdir()
    (piece / "chorale.mid").write_bytes(sorted(bach_midi_dir.glob("*.mid"))[1].read_bytes())
    data = tmp_path / "data"
    build(data, midi_dir=piece, config=DataConfig(valid_fraction=0.0, test_fraction=0.0))
    tokens = np.load(data / "train.tokens.npy")
    window = 128
    result = musgen.train(
        "transformer",
        data,
        tmp_path / "run",
        config="tiny/transformer",
        progress=False,
        overrides=[
            f"data.seq_len={window}",
            "data.transpose=0",
            "train.steps=250",
            "train.batch_size=4",
            "train.lr=0.01",
            "train.warmup_steps=10",
            "train.eval_every=1000",
            "train.save_every=1000",
        ],
    )
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses[-1] < 0.1, losses[-5:]

    # Greedy decoding from the first 8 tokens of the piece gives the rest of its first window back.
    model = musgen.load(result.run_dir).models["model"]
    special = special_ids(data)
    truth = [special.bos, *tokens[: window - 1].tolist()]  # BOS + the piece, as in the training windows
    ctl = SamplingControls(length=window - 8, min_length=0, top_k=1, seed=0)
    (sampled,) = sample_sequences(model, truth[:8], 1, ctl, eos_id=special.eos, pad_id=special.pad)
    matches = sum(a == b for a, b in zip(sampled[8:], truth[8:], strict=False))
    assert matches / (window - 8) > 0.95, (sampled[:40], truth[:40])


def test_max_new_tokens_is_length(quick_transformer_run):
    """Hugging Face's name for the number of new tokens works in the Python API."""
    from musgen.errors import MusgenError

    generator = musgen.load(quick_transformer_run.run_dir)
    by_length = generator.generate(2, length=20, seed=3)
    by_hf_name = generator.generate(2, max_new_tokens=20, seed=3)
    assert [s.dumps_midi() for s in by_hf_name] == [s.dumps_midi() for s in by_length]
    with pytest.raises(MusgenError, match="disagree"):
        generator.generate(1, length=20, max_new_tokens=30)


def test_compiled_training_matches_eager_and_saves_the_same_weights(bach_data, tmp_path):
    """train.compile: the same steps (no dropout, so no RNG stream differs) give the same losses and
    a checkpoint with the same weight names as the eager run's."""
    runs = {}
    for compiled in (False, True):
        runs[compiled] = musgen.train(
            "transformer",
            bach_data,
            tmp_path / f"compile_{compiled}",
            config="tiny/transformer",
            overrides=[
                "train.steps=3",
                "train.batch_size=4",
                "model.num_layers=1",
                "model.dropout=0",
                "train.eval_every=3",
                "train.eval_batches=1",
                "train.log_every=1",
                f"train.compile={str(compiled).lower()}",
            ],
            progress=False,
        )
    eager, compiled = ([r["loss"] for r in runs[c].history if "loss" in r] for c in (False, True))
    assert len(eager) == len(compiled) == 3
    assert eager == pytest.approx(compiled, rel=1e-3)
    assert runs[True].metrics["valid_nll"] == pytest.approx(runs[False].metrics["valid_nll"], rel=1e-3)
    weights = [load_file(str(runs[c].checkpoint / "model.safetensors")) for c in (False, True)]
    assert weights[0].keys() == weights[1].keys()


def test_one_process_trains_again_with_another_mixed_precision(bach_data, tmp_path):
    """Accelerate refuses a second Accelerator with another precision in one process; musgen.train
    (a sweep, a notebook) must not care which precision the previous run used."""
    for i, precision in enumerate(("no", "bf16", "no")):
        result = musgen.train(
            "transformer",
            bach_data,
            tmp_path / f"run_{i}",
            config="tiny/transformer",
            overrides=["train.steps=1", "model.num_layers=1", f"train.mixed_precision={precision}"],
            progress=False,
        )
        assert result.checkpoint.exists()
