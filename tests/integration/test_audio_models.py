"""The audio path end to end on rendered real chorales: a tiny codec and a tiny prior train, the
codec reconstructs a recording, the prior samples WAV files that continue a prompt."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file, save_model

import musgen
from musgen.checkpoint import resolve_checkpoint, set_sampling_defaults
from musgen.cli import main
from musgen.data.audio_data import audio_pieces
from musgen.errors import MusgenError
from musgen.models.prior import PROMPT_EDGE_FRAMES

RATE = 16000


def _history(run, key):
    return [r[key] for r in run.history if key in r]


def test_tiny_codec_trains_without_collapse(tiny_codec_run):
    stft = _history(tiny_codec_run, "stft")
    assert all(math.isfinite(v) for v in stft) and stft[-1] < stft[0]
    metrics = tiny_codec_run.metrics
    assert {
        "valid_stft",
        "valid_log_mel_l1",
        "valid_si_sdr",
        "valid_code_usage",
        "valid_code_perplexity",
    } <= set(metrics)
    assert metrics["valid_code_usage"] > 0.3 and metrics["valid_code_perplexity"] > 8  # of 64 codes
    assert (tiny_codec_run.checkpoint / "model.safetensors").is_file()


ADVERSARIAL = [
    "--set",
    "loss.adversarial_weight=1",
    "--set",
    "loss.feature_matching_weight=1",
    "--set",
    "loss.adversarial_start=2",
    "--set",
    "loss.discriminator_fft_sizes=[256,128]",
    "--set",
    "loss.discriminator_channels=8",
    "--set",
    "train.log_every=1",
]


@pytest.mark.parametrize("extra", [[], ADVERSARIAL], ids=["plain", "adversarial"])
def test_codec_resume_is_exact(tmp_path, bach_audio_data, extra):
    """6 steps straight equal 3 steps, a fresh process resuming, 3 more (EMA codebook included; with
    the discriminator, which joins at step 2, its weights and optimizer too)."""
    common = [
        "train",
        "vqvae",
        "--data",
        str(bach_audio_data),
        "--config",
        "tiny/vqvae",
        "--no-progress",
        "--set",
        "train.steps=6",
        "--set",
        "train.save_every=3",
        "--set",
        "train.eval_every=100",
        *extra,
    ]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--out", str(tmp_path / "split"), "--set", "train.stop_at=3"]) == 0
    subprocess.run(
        [sys.executable, "-m", "musgen.cli", *common, "--out", str(tmp_path / "split"), "--resume"],
        check=True,
        capture_output=True,
    )
    a = load_file(str(tmp_path / "straight/checkpoints/step_0000006/model.safetensors"))
    b = load_file(str(tmp_path / "split/checkpoints/step_0000006/model.safetensors"))
    assert a.keys() == b.keys() and any("embed" in k for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    if extra:
        a = load_file(str(tmp_path / "straight/checkpoints/step_0000006/discriminator.safetensors"))
        b = load_file(str(tmp_path / "split/checkpoints/step_0000006/discriminator.safetensors"))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
        history = [
            json.loads(line) for line in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()
        ]
        steps = [r for r in history if "loss" in r and "valid_stft" not in r]
        assert "d_loss" not in steps[0] and "d_loss" in steps[-1]  # the discriminator joins at step 2
        assert all(math.isfinite(r["g_adversarial"] + r["feature_matching"]) for r in steps if "d_loss" in r)
        codec = musgen.load(tmp_path / "straight")  # the codec alone: its discriminator is not loaded
        assert set(codec.models) == {"model"}


def test_a_trained_codec_takes_on_a_discriminator_through_init_from(
    tmp_path, bach_audio_data, tiny_codec_run, caplog
):
    """train.init_from a codec trained without the discriminator: the codec's weights load, the
    discriminator (no weights file in that checkpoint) starts fresh, and both train."""
    adversarial = [o for o in ADVERSARIAL[1::2] if not o.startswith("loss.adversarial_start")]
    with caplog.at_level(logging.INFO, logger="musgen.training.trainer"):
        run = musgen.train(
            "vqvae",
            bach_audio_data,
            tmp_path / "adv",
            config="tiny/vqvae",
            overrides=[f"train.init_from={tiny_codec_run.run_dir}", "train.steps=2", *adversarial],
            progress=False,
        )
    assert "model starts from" in caplog.text and "discriminator is new" in caplog.text
    assert (run.run_dir / "checkpoints/step_0000002/discriminator.safetensors").is_file()
    steps = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("d_loss" in r for r in steps)  # the discriminator trained


def test_reconstruct_a_stereo_44k_recording(tmp_path, bach_audio_data, tiny_codec_run, capsys):
    wave = audio_pieces(bach_audio_data, "valid")[0][: 3 * RATE + 77]  # an odd length
    t44 = np.arange(round(len(wave) * 44100 / RATE)) * RATE / 44100
    at44 = np.interp(t44, np.arange(len(wave)), wave)
    sf.write(tmp_path / "take.wav", np.stack([at44, 0.5 * at44], axis=1), 44100)
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "take.wav"),
                "--checkpoint",
                str(tiny_codec_run.run_dir),
                "--out",
                str(tmp_path / "recon"),
            ]
        )
        == 0
    )
    original, sr1 = sf.read(tmp_path / "recon/original.wav")
    recon, sr2 = sf.read(tmp_path / "recon/reconstruction.wav")
    assert sr1 == sr2 == RATE and len(original) == len(recon) == pytest.approx(len(wave), abs=2)
    assert np.abs(recon).max() > 0.01


def test_tiny_prior_learns_the_codes(tiny_prior_run, tiny_codec_run):
    nll = tiny_prior_run.metrics["valid_nll"]
    assert math.isfinite(nll) and nll < math.log(64) - 0.5  # well below uniform over the 64 codes
    ckpt = tiny_prior_run.checkpoint
    meta = json.loads((ckpt / "musgen.json").read_text())
    assert meta["data"]["codebook_size"] == 64 and meta["data"]["vocab_size"] == 65  # 64 codes + BOS
    assert (ckpt / "vqvae" / "model.safetensors").read_bytes() == (
        tiny_codec_run.checkpoint / "model.safetensors"
    ).read_bytes()


def test_primed_sample_starts_with_the_prompt(tmp_path, bach_audio_data, tiny_prior_run):
    prompt = audio_pieces(bach_audio_data, "valid")[0][: RATE + 1000]
    sf.write(tmp_path / "prompt.wav", prompt, RATE, subtype="FLOAT")
    out = tmp_path / "samples"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(tiny_prior_run.run_dir),
                "--prime",
                str(tmp_path / "prompt.wav"),
                "--seconds",
                "1.5",
                "--num-samples",
                "2",
                "--seed",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    hop = 64
    kept = (len(prompt) // hop - PROMPT_EDGE_FRAMES) * hop  # whole code frames, less the edge drawn again
    new = math.ceil(1.5 * RATE / hop) * hop
    waves = []
    for name in ("sample_000.wav", "sample_001.wav"):
        wave, sr = sf.read(out / name, dtype="float32")
        assert sr == RATE and len(wave) == kept + new
        fade = round(0.01 * RATE)
        np.testing.assert_allclose(wave[: kept - fade], prompt[: kept - fade], atol=1 / 32000)  # 16-bit WAV
        waves.append(wave)
    assert not np.allclose(waves[0][kept:], waves[1][kept:])  # two different continuations


def test_unprimed_sample_api(tiny_prior_run):
    generator = musgen.load(tiny_prior_run.run_dir)
    assert generator.sample_rate == RATE
    waves = generator.generate(2, seconds=0.5, seed=1, top_k=20)
    assert [len(w) for w in waves] == [math.ceil(0.5 * RATE / 64) * 64] * 2
    again = generator.generate(2, seconds=0.5, seed=1, top_k=20)
    assert all(np.array_equal(a, b) for a, b in zip(waves, again, strict=True))  # seeded
    with pytest.raises(MusgenError, match="--max-silence needs a prior trained with pattern=delay"):
        generator.generate(1, seconds=0.1, max_silence=0.0)


def test_prior_refuses_a_codec_with_other_codebooks(tmp_path, tiny_prior_run):
    ckpt = tmp_path / "prior"
    shutil.copytree(tiny_prior_run.checkpoint, ckpt)
    config = yaml.safe_load((ckpt / "vqvae/config.yaml").read_text())
    config["model"]["quantizer"]["codebook_size"] = 32
    (ckpt / "vqvae/config.yaml").write_text(yaml.safe_dump(config))
    from musgen.config import from_dict
    from musgen.models.vqvae import VQVAE, VQVAEConfig

    config.pop("family")
    save_model(VQVAE(from_dict(VQVAEConfig, config).model), str(ckpt / "vqvae/model.safetensors"))
    with pytest.raises(MusgenError, match="32 codes.*trained on 1 x 64"):
        musgen.load(ckpt)


def test_audio_misuse_is_one_line(
    tmp_path, capsys, bach_audio_data, bach_data, tiny_prior_run, tiny_codec_run
):
    cases = [
        (
            [
                "train",
                "prior",
                "--data",
                str(bach_audio_data),
                "--out",
                str(tmp_path / "a"),
                "--config",
                "tiny/prior",
            ],
            "vqvae=PATH",
        ),
        (
            [
                "train",
                "prior",
                "--data",
                str(bach_audio_data),
                "--out",
                str(tmp_path / "b"),
                "--config",
                "tiny/prior",
                "--set",
                f"vqvae={tiny_prior_run.run_dir}",
            ],
            "not a vqvae",
        ),
        (["train", "vqvae", "--data", str(bach_data), "--out", str(tmp_path / "c")], "trains on audio"),
        (
            [
                "sample",
                "--checkpoint",
                str(tiny_prior_run.run_dir),
                "--bars",
                "4",
                "--out",
                str(tmp_path / "d"),
            ],
            "--bars",
        ),
        (
            [
                "sample",
                "--checkpoint",
                str(tiny_prior_run.run_dir),
                "--seconds",
                "-1",
                "--out",
                str(tmp_path / "e"),
            ],
            "--seconds",
        ),
        (
            ["sample", "--checkpoint", str(tiny_codec_run.run_dir), "--out", str(tmp_path / "f")],
            "audio codec",
        ),
        (
            [
                "sample",
                "--checkpoint",
                str(tiny_prior_run.run_dir),
                "--prime",
                __file__,
                "--out",
                str(tmp_path / "g"),
            ],
            "prime",
        ),
    ]
    for args, expected in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (args, err)
        assert not (tmp_path / args[-1]).exists() or args[0] == "train"


def test_delay_pattern_prior_over_a_residual_codec(tmp_path, bach_audio_data):
    """A 2-level residual codec (with the log-mel loss) and a prior in MusicGen's delay pattern: one
    step per code frame, each level its own head; it learns, samples seeded WAVs that keep the
    prompt, and evaluates."""
    codec = musgen.train(
        "vqvae",
        bach_audio_data,
        tmp_path / "rvq",
        config="tiny/vqvae",
        overrides=[
            "model.quantizer.kind=rvq",
            "model.quantizer.num_quantizers=2",
            "model.quantizer.quantize_dropout=true",
            "loss.mel_weight=1.0",
            "train.steps=20",
        ],
        progress=False,
    )
    # The log-mel term trains with the others; each residual level's codebook health is logged.
    assert all(math.isfinite(v) for v in _history(codec, "log_mel_l1"))
    assert {"valid_code_usage_l0", "valid_code_usage_l1", "valid_code_perplexity_l1"} <= set(codec.metrics)
    assert _history(codec, "code_perplexity_l1")  # every training step too
    # Trained with quantizer dropout, the first level alone decodes: the codec at half the bitrate.
    from musgen.eval.audio import evaluate_codec

    both, first = (
        evaluate_codec(musgen.load(codec.run_dir), bach_audio_data, "valid", 0.5, levels=n) for n in (2, 1)
    )
    assert first["bitrate_bps"] * 2 == both["bitrate_bps"] and first["codebooks"] == 1
    assert math.isfinite(first["si_sdr_db"]) and math.isfinite(first["log_mel_l1"])
    with pytest.raises(MusgenError, match="levels=3"):
        evaluate_codec(musgen.load(codec.run_dir), bach_audio_data, "valid", 0.5, levels=3)
    prior = musgen.train(
        "prior",
        bach_audio_data,
        tmp_path / "prior",
        config="tiny/prior",
        overrides=[f"vqvae={codec.run_dir}", "pattern=delay", "model.tie_weights=false", "data.seq_len=64"],
        progress=False,
    )
    assert prior.metrics["valid_nll"] < math.log(64) - 0.3  # per code, below uniform over a book
    generator = musgen.load(prior.run_dir)
    assert generator.levels == 2 and generator.cfg.pattern == "delay"
    waves = generator.generate(2, seconds=0.5, seed=1, temperature=[1.0, 0.7])
    assert [len(w) for w in waves] == [math.ceil(0.5 * RATE / 64) * 64] * 2
    again = generator.generate(2, seconds=0.5, seed=1, temperature=[1.0, 0.7])
    assert all(np.array_equal(a, b) for a, b in zip(waves, again, strict=True))
    with pytest.raises(MusgenError, match="--temperature: give one value or 2"):
        generator.generate(1, seconds=0.1, temperature=[1.0, 0.9, 0.8])
    # a per-level recommendation stored with the checkpoint is what sampling uses unless told otherwise,
    # from the API and from the command line (--temperature takes one value per level too)
    ckpt = tmp_path / "prior_ckpt"
    shutil.copytree(resolve_checkpoint(prior.run_dir), ckpt)
    set_sampling_defaults(ckpt, {"temperature": [1.0, 0.7]})
    tuned = musgen.load(ckpt)
    assert tuned.sampling_settings()["temperature"] == [1.0, 0.7]
    recommended = tuned.generate(2, seconds=0.5, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(waves, recommended, strict=True))
    assert not np.array_equal(tuned.generate(1, seconds=0.5, seed=1, temperature=1.0)[0], waves[0])
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(tmp_path / "cli"),
                "--seconds",
                "0.5",
                "--temperature",
                "1.0,0.7",
                "--seed",
                "1",
                "--num-samples",
                "2",
            ]
        )
        == 0
    )
    written = json.loads((tmp_path / "cli" / "samples.json").read_text())
    assert written[-1]["settings"]["temperature"] == [1.0, 0.7]
    # --max-silence caps runs of the codec's silence code (the sampler's run limit, tested in
    # tests/unit/test_delay_pattern.py); a stored recommendation is used and recorded like the others
    with pytest.raises(MusgenError, match="--max-silence must be a number >= 0"):
        generator.generate(1, seconds=0.1, max_silence=-1.0)
    assert generator.silence_frames(0.1) == round(0.1 * RATE / 64) and generator.silence_frames(None) is None
    assert generator.silence_frames(math.inf) is None
    set_sampling_defaults(ckpt, {"temperature": [1.0, 0.7], "max_silence": 0.0})
    capped = musgen.load(ckpt).generate(1, seconds=0.5, seed=2)[0]
    assert np.array_equal(
        capped, generator.generate(1, seconds=0.5, seed=2, temperature=[1.0, 0.7], max_silence=0.0)[0]
    )
    for extra in ([], ["--max-silence", "0.05"]):
        args = ["sample", "--checkpoint", str(ckpt), "--out", str(tmp_path / "cli"), "--seconds", "0.2"]
        assert main([*args, "--seed", "1", *extra]) == 0
        written = json.loads((tmp_path / "cli" / "samples.json").read_text())
        assert written[-1]["settings"]["max_silence"] == (0.05 if extra else 0.0)
    # a temperature search without a max_silence field draws with the stored cap, and keeps it
    args = ["--data", str(bach_audio_data), "--grid", "1.0:1.0", "--prompts", "2", "--seeds", "0"]
    args += ["--prompt-seconds", "0.5", "--new-seconds", "1", "--write", "--out", str(tmp_path / "t.json")]
    done = subprocess.run(
        [sys.executable, "scripts/tune_audio_sampling.py", str(ckpt), *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "t.json").read_text())["table"][0]["max_silence"] == 0.0
    assert json.loads((ckpt / "musgen.json").read_text())["sampling"]["max_silence"] == 0.0
    prompt = audio_pieces(bach_audio_data, "valid")[0][: RATE // 2]
    sf.write(tmp_path / "prompt.wav", prompt, RATE, subtype="FLOAT")
    (primed,) = generator.generate(1, prime=tmp_path / "prompt.wav", seconds=0.5, seed=0)
    kept = (len(prompt) // 64 - PROMPT_EDGE_FRAMES) * 64  # whole frames, less the edge drawn again
    np.testing.assert_allclose(primed[: kept - 160], prompt[: kept - 160], atol=1e-6)
    from musgen.models.prior import evaluate_prior

    report = evaluate_prior(generator, bach_audio_data, "valid")
    assert report["nll"] < report["uniform_nll"] and report["tokens"] > 0
    # The unigram baseline is per level (a code of a known level): near uniform over one codebook,
    # not log 2 above it as over both levels' ids.
    assert report["unigram_nll"] < report["uniform_nll"] + 0.2


def test_a_new_decoder_on_frozen_codes_serves_a_trained_prior(
    tmp_path, bach_audio_data, tiny_codec_run, tiny_prior_run
):
    """model.freeze_encoder with model.decoder=istft and train.init_from: a Vocos-style decoder trains
    on the codes of a trained codec (its encoder and codebooks loaded, its old decoder's weights
    skipped); the codes do not move, so scripts/swap_prior_codec.py can give the prior the
    new decoder, and a codec with another encoder is refused in one line."""
    run = musgen.train(
        "vqvae",
        bach_audio_data,
        tmp_path / "istft",
        config="tiny/vqvae",
        overrides=[
            f"train.init_from={tiny_codec_run.run_dir}",
            "model.freeze_encoder=true",
            "model.decoder=istft",
            "model.decoder_channels=16",
            "model.decoder_blocks=2",
            "train.log_every=1",
        ],
        progress=False,
    )
    losses = _history(run, "stft")
    assert sum(losses[-3:]) < sum(losses[:3])  # the decoder learns
    old, new = musgen.load(tiny_codec_run.run_dir), musgen.load(run.run_dir)
    wave = audio_pieces(bach_audio_data, "valid")[0][: RATE // 2]
    assert torch.equal(old.encode_audio(wave), new.encode_audio(wave))
    assert len(new.reconstruct_audio(wave)) == len(wave)
    other = musgen.train(
        "vqvae",
        bach_audio_data,
        tmp_path / "other",
        config="tiny/vqvae",
        overrides=["train.seed=5", "train.steps=2"],
        progress=False,
    )
    # The prior's cached codes are reused: their key hashes only what fixes the codes.
    from musgen.data.audio_codes import weights_key

    keys = [weights_key(g.checkpoint.path) for g in (old, new, musgen.load(other.run_dir))]
    assert keys[0] == keys[1] != keys[2]
    script = [sys.executable, "scripts/swap_prior_codec.py", str(tiny_prior_run.run_dir)]
    done = subprocess.run(
        [*script, str(run.run_dir), str(tmp_path / "swapped")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    prior = musgen.load(tmp_path / "swapped")
    assert prior.codec.cfg.model.decoder == "istft"
    (sample,) = prior.generate(1, seconds=0.25, seed=0)
    assert np.isfinite(sample).all() and len(sample) > 0
    with pytest.raises(MusgenError, match="give it with train.init_from"):
        musgen.train(
            "vqvae",
            bach_audio_data,
            tmp_path / "x",
            config="tiny/vqvae",
            overrides=["model.freeze_encoder=true"],
        )
    refused = subprocess.run(
        [*script, str(other.run_dir), str(tmp_path / "bad")], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "codes would differ" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_continuations_are_compared_with_real_audio_of_the_same_count_and_length(
    bach_audio_data, tiny_prior_run
):
    """scripts/eval_audio.py --continuations: each prompt's new audio, its true continuation and the
    comparison clips all have the same length, so the model's and the real-vs-real Frechet
    distances are read on one scale."""
    from musgen.eval.audio import evaluate_continuations

    prior = musgen.load(tiny_prior_run.run_dir)
    report = evaluate_continuations(
        prior,
        bach_audio_data,
        "valid",
        "train",
        count=2,
        prompt_seconds=0.5,
        new_seconds=1.0,
        temperature=0.9,
    )
    assert report["prompts"] == 2 and report["sampling"] == {"temperature": 0.9, "top_k": 0, "top_p": 1.0}
    for key in ("model", "real_vs_real", "codec_only", "model_vs_truth"):
        assert report[key]["reference_windows"] == report[key]["generated_windows"] > 0
        assert math.isfinite(report[key]["frechet_distance"])
        assert 0 <= report[key]["mean_term"] <= report[key]["frechet_distance"] + 1e-6  # + the covariances'
    assert report["model"]["frechet_distance"] != report["real_vs_real"]["frechet_distance"]
    assert report["silent_fraction"]["real"] == 0.0 and 0 <= report["silent_fraction"]["model"] <= 1
    assert all(0 < v < 0.6 for v in report["spectral_flatness"].values())
    assert set(report["spectral_flatness"]) == {"model", "real", "codec_only"}
    assert all(len(v) == 3 and all(map(math.isfinite, v)) for v in report["by_third"].values())
    with pytest.raises(MusgenError, match="at least 2 valid pieces"):
        evaluate_continuations(prior, bach_audio_data, "valid", "train", prompt_seconds=500.0)


def test_tune_audio_sampling_stores_the_setting_with_the_lowest_distance(
    tmp_path, bach_audio_data, tiny_prior_run
):
    ckpt = tmp_path / "prior"
    shutil.copytree(tiny_prior_run.checkpoint, ckpt)
    grid = "1.0:1.0:inf,0.5:0.9"  # a third field: max_silence (inf: no limit; a flat prior takes no other)
    args = ["--data", str(bach_audio_data), "--grid", grid, "--prompts", "2", "--seeds", "0,1"]
    args += ["--prompt-seconds", "0.5", "--new-seconds", "1", "--write", "--out", str(tmp_path / "t.json")]
    done = subprocess.run(
        [sys.executable, "scripts/tune_audio_sampling.py", str(ckpt), *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    table = json.loads((tmp_path / "t.json").read_text())["table"]
    for row in table:  # each setting read as the mean over the seeds' draws
        assert set(row["frechet_per_seed"]) == {"0", "1"}
        assert row["frechet"] == pytest.approx(sum(row["frechet_per_seed"].values()) / 2)
    assert table[0]["max_silence"] is None is table[1]["max_silence"]  # None: no limit (given / none stored)
    best = min(table, key=lambda row: row["frechet"])
    meta = json.loads((ckpt / "musgen.json").read_text())
    assert meta["sampling"] == {"temperature": best["temperature"], "top_p": best["top_p"]}
    assert musgen.load(ckpt).sampling_settings()["temperature"] == best["temperature"]


def test_report_page_shows_a_spectrogram_of_each_audio_sample(tmp_path, tiny_prior_run):
    """musgen report on audio samples: each WAV gets its spectrogram PNG next to its player; a file
    that is not audio keeps its player and gets no picture (logged, nothing raised)."""
    samples = tmp_path / "samples"
    paths = musgen.load(tiny_prior_run.run_dir).generate_to(samples, 2, seconds=0.5, seed=0)
    assert [p.suffix for p in paths] == [".wav", ".wav"]
    (samples / "broken.wav").write_text("not audio")
    assert (
        main(
            [
                "report",
                str(tiny_prior_run.run_dir),
                "--samples",
                str(samples),
                "--out",
                str(tmp_path / "html"),
            ]
        )
        == 0
    )
    text = (tmp_path / "html" / "index.html").read_text()
    assert text.count("alt='spectrogram of") == 2 and text.count("<audio") == 3
    pictures = sorted((tmp_path / "html" / "media").glob("*sample_*.png"))
    assert len(pictures) == 2 and all(p.stat().st_size > 1000 for p in pictures)
