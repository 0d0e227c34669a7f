"""The pretrained checkpoints shipped in checkpoints/ (scripts/train_checkpoints.sh): every family is
there and small, loads with the public API and makes music that beats a simple baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

import musgen
from musgen import checkpoint
from musgen.data.tokenizers import load_tokenizer
from musgen.errors import MusgenError

ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
FAMILIES = ("lstm", "transformer", "musicvae", "musegan", "vqvae", "prior")
CHECKPOINTS = {
    **{family: family for family in FAMILIES},
    "transformer-folk": "transformer",
    "transformer-infill": "transformer",
    "musicvae-2bar": "musicvae",
}  # folder -> family
LANGUAGE_MODELS = ("lstm", "transformer", "transformer-folk")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_every_family_ships_a_small_documented_checkpoint():
    readme = (ROOT / "README.md").read_text()
    for name, family in CHECKPOINTS.items():
        ckpt = checkpoint.load_portable(ROOT / name)
        assert ckpt.family == family and "packed_from" in ckpt.meta
        assert _size(ROOT / name) < 12e6, name  # a few MB each
        assert f"checkpoints/{name}" in readme
    assert _size(ROOT) < 60e6


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_pretrained_language_models_carry_measured_sampling_settings(name):
    """Each language model ships the temperature / top-p chosen by scripts/tune_sampling.py, with the
    table that chose it, and sampling uses them unless told otherwise."""
    model = musgen.load(ROOT / name)
    recommended = model.recommended_sampling
    assert set(recommended) == {"temperature", "top_k", "top_p"}
    chosen_by = model.checkpoint.meta["sampling_chosen_by"]
    best = min(chosen_by["table"], key=lambda row: row["feature_frechet"])
    assert (best["temperature"], best["top_p"]) == (recommended["temperature"], recommended["top_p"])
    assert model.sampling_settings() == recommended
    assert model.sampling_settings(temperature=1.0)["temperature"] == 1.0


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_pretrained_language_models_predict_chorales_and_write_midi(family, bach_data, tmp_path):
    from musgen.data.dataset import TokenWindows
    from musgen.eval.evaluate import task_metrics

    model = musgen.load(ROOT / family)
    assert load_tokenizer(bach_data / "tokenizer.json").vocab == model.tokenizer.vocab
    # Held-out windows of the fixture's chorales: far below a uniform guess over the vocabulary.
    metrics = task_metrics(
        model.evaluation_task(bach_data), TokenWindows(bach_data, "valid", 128), batch_size=8
    )
    assert metrics["nll"] < 0.4 * math.log(len(model.tokenizer))
    path = model.generate_to(tmp_path, 1, length=160, seed=0)[0]
    score = symusic.Score(str(path))
    assert score.note_num() > 10 and score.end() > 0


# The endpoints of an interpolation decode back to their own tunes, closer than to the other one, by
# at least this margin, each endpoint (measured when packed, the fixture's first two usable tunes:
# 2-bar model 0.88 / 0.69 vs 0.47 / 0.50 then; the 16-bar bar-latent model of stop 38 1.00 / 1.00 vs
# 0.59 / 0.59, its 1,005 test windows 0.936 of steps free-running). The older 16-bar model without
# bar latents only met a margin of 0.03 on the mean of the two.
MARGIN = {"musicvae-2bar": 0.1, "musicvae": 0.2}


@pytest.mark.parametrize("name", sorted(MARGIN))
def test_pretrained_musicvae_interpolates_between_folk_tunes(name, folk_midi_dir, tmp_path):
    model = musgen.load(ROOT / name)
    clips = []
    for path in sorted(folk_midi_dir.rglob("*.mid")):
        try:
            clips.append(model.clip(path))
        except MusgenError:  # shorter than the model's window, or in another meter
            continue
        if len(clips) == 2:
            break
    assert len(clips) == 2
    windows = model.interpolate(clips[0], clips[1], steps=3)
    pairs = ((clips[0], clips[1], windows[0]), (clips[1], clips[0], windows[-1]))
    own = np.array([np.mean(a == decoded) for a, _, decoded in pairs])
    other = np.array([np.mean(b == decoded) for _, b, decoded in pairs])
    assert (own > np.maximum(0.6, other + MARGIN[name])).all(), (own, other)
    paths = model.interpolate_to(tmp_path, clips[0], clips[1], steps=3)
    assert all(symusic.Score(str(p)).note_num() > 0 for p in paths)


def test_pretrained_musegan_writes_four_voices(tmp_path):
    model = musgen.load(ROOT / "musegan")
    path = model.generate_to(tmp_path, 1, seed=0)[0]
    score = symusic.Score(str(path))
    assert len([t for t in score.tracks if t.note_num() > 0]) == 4


def test_pretrained_musegan_draws_its_voices_at_a_temperature(tmp_path, capsys, caplog):
    """Its voices are drawn: --temperature applies (recorded in samples.json and the log line, same
    seed -> same notes), top-k / top-p do not."""
    import logging

    from musgen.cli import main

    caplog.set_level(logging.INFO, logger="musgen")
    sample = ["sample", "--checkpoint", str(ROOT / "musegan"), "--seed", "2", "--temperature", "0.5"]
    assert main([*sample, "--out", str(tmp_path / "a")]) == 0
    assert main([*sample, "--out", str(tmp_path / "b")]) == 0
    record = json.loads((tmp_path / "a" / "samples.json").read_text())[-1]
    assert record["settings"]["temperature"] == 0.5
    a, b = (symusic.Score(str(tmp_path / d / "sample_000.mid")) for d in "ab")
    assert (
        a.note_num() > 0
        and a.tracks[0].notes.numpy()["pitch"].tolist() == b.tracks[0].notes.numpy()["pitch"].tolist()
    )
    # the settings it says it sampled with: the temperature, not top-k / top-p
    assert "sampled with temperature 0.5 (given)" in caplog.text and "top-k" not in caplog.text
    capsys.readouterr()
    assert (
        main(["sample", "--checkpoint", str(ROOT / "musegan"), "--top-k", "3", "--out", str(tmp_path)]) == 2
    )
    assert "try --temperature" in capsys.readouterr().err


def test_pretrained_codec_and_prior_make_audio(bach_midi_dir):
    from musgen.data.render import render_midi
    from musgen.eval.audio_metrics import MultiResolutionSTFTLoss

    codec = musgen.load(ROOT / "vqvae")
    wave = render_midi(sorted(bach_midi_dir.rglob("*.mid"))[0], codec.sample_rate, max_seconds=3.0)
    reference = torch.from_numpy(wave)[None]
    distance = MultiResolutionSTFTLoss()
    recon = distance(torch.from_numpy(codec.reconstruct_audio(wave))[None], reference)
    shifted = distance(torch.roll(reference, codec.sample_rate // 4, -1), reference)  # the same music, late
    assert recon < 0.85 * shifted

    prior = musgen.load(ROOT / "prior")
    (audio,) = prior.generate(1, seconds=0.5, seed=0)
    assert abs(len(audio) - prior.sample_rate // 2) < 200
    assert np.isfinite(audio).all() and audio.std() > 1e-3


def test_pretrained_codec_encodes_in_bf16_as_well_as_in_float32(bach_midi_dir):
    """precision="auto" runs the encoder in bf16 on CPUs where that is faster: the codes may differ
    from float32's in a few frames, the reconstruction may not get worse."""
    from musgen.data.render import render_midi
    from musgen.eval.audio_metrics import MultiResolutionSTFTLoss

    codec = musgen.load(ROOT / "vqvae")
    wave = render_midi(sorted(bach_midi_dir.rglob("*.mid"))[1], codec.sample_rate, max_seconds=3.0)
    exact, fast = codec.encode_audio(wave, "fp32"), codec.encode_audio(wave, "bf16")
    assert exact.shape == fast.shape
    assert (exact[:, 0] == fast[:, 0]).float().mean() > 0.9  # the first level carries most of the sound
    reference, distance = torch.from_numpy(wave)[None], MultiResolutionSTFTLoss()
    errors = [
        distance(torch.from_numpy(codec.decode_codes(c)[: len(wave)])[None], reference) for c in (exact, fast)
    ]
    assert errors[1] < 1.03 * errors[0], errors
    assert codec.encoder_bf16("bf16") and not codec.encoder_bf16("fp32")
    with pytest.raises(MusgenError, match="encode precision"):
        codec.encode_audio(wave, "fp16")


def test_pretrained_infilling_transformer_fills_a_chorale(bach_midi_dir):
    """checkpoints/transformer-infill regenerates bars of a chorale (every voice writes notes there),
    keeps the rest, and follows the density asked for one voice (high above low)."""
    model = musgen.load(ROOT / "transformer-infill")
    piece = sorted(bach_midi_dir.rglob("*.mid"))[0]
    original = symusic.Score(str(piece))
    tpq = original.ticks_per_quarter
    sig = original.time_signatures[0]
    bar = round(sig.numerator * 4 / sig.denominator * tpq)
    filled = model.infill(piece, "3-4", seed=0)[0]
    for before, after in zip(original.tracks, filled.tracks, strict=True):
        keep = [(n.time, n.duration, n.pitch) for n in before.notes if not 2 * bar <= n.time < 4 * bar]
        assert [(n.time, n.duration, n.pitch) for n in after.notes if not 2 * bar <= n.time < 4 * bar] == keep
        if before.note_num():
            assert any(2 * bar <= n.time < 4 * bar for n in after.notes), before.name
    onsets = {}
    for density in ("low", "high"):
        out = model.infill(piece, "3-4", track="alto", density=density, seed=1)[0]
        alto = next(t for t in out.tracks if t.name == "Alto")
        onsets[density] = sum(1 for n in alto.notes if 2 * bar <= n.time < 4 * bar)
    assert onsets["high"] > onsets["low"]
