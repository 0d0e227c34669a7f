"""MuseGAN end to end on real Bach chorales: WGAN-GP training, exact resume, multi-track samples,
accompaniment of a given voice, and misuse of the sample command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import symusic
import torch
from safetensors.torch import load_file

import musgen
from musgen.data.pianoroll import midi_to_roll
from musgen.data.tokenizers import MidiReadError
from musgen.errors import MusgenError

REPO = Path(__file__).resolve().parents[2]
TINY = "tiny/musegan"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "musgen.cli", *args], capture_output=True, text=True, cwd=REPO
    )


def test_tiny_wgan_gp_training_runs_on_real_chorales(tiny_gan_run):
    steps = [r for r in tiny_gan_run.history if "wdist" in r]
    assert steps and all(np.isfinite([r["d_loss"], r["g_loss"], r["gp"]]).all() for r in steps)
    assert {"valid_wdist", "valid_density_real", "valid_density_fake"} <= tiny_gan_run.metrics.keys()
    ckpt = tiny_gan_run.checkpoint
    assert json.loads((ckpt / "musgen.json").read_text())["family"] == "musegan"
    assert (ckpt / "generator.safetensors").is_file() and (ckpt / "critic.safetensors").is_file()
    # The generator moves towards the data: far fewer notes than its first, half-on guesses.
    evals = [r for r in tiny_gan_run.history if "valid_density_fake" in r]
    assert evals[-1]["valid_density_fake"] < 0.6 * 0.5, evals


def test_resume_in_a_fresh_process_gives_the_same_generator_and_critic(bach_data, tmp_path):
    # Transposition and conditioning exercise every RNG stream (data, noise, mixing, conditions).
    common = [
        "-q",
        "train",
        "musegan",
        "--no-progress",
        "--data",
        str(bach_data),
        "--config",
        TINY,
        "--set",
        "train.steps=6",
        "--set",
        "data.transpose=2",
        "--set",
        "train.eval_every=2",
    ]
    assert cli(*common, "--out", str(tmp_path / "straight")).returncode == 0
    proc = cli(*common, "--out", str(tmp_path / "split"), "--set", "train.stop_at=3")
    assert proc.returncode == 0, proc.stderr
    proc = cli(
        "-q",
        "train",
        "musegan",
        "--no-progress",
        "--data",
        str(bach_data),
        "--out",
        str(tmp_path / "split"),
        "--resume",
        "--set",
        "train.stop_at=0",
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("generator", "critic"):
        straight = load_file(
            str(tmp_path / "straight" / "checkpoints" / "step_0000006" / f"{name}.safetensors")
        )
        resumed = load_file(str(tmp_path / "split" / "checkpoints" / "step_0000006" / f"{name}.safetensors"))
        assert straight.keys() == resumed.keys()
        for key in straight:
            assert torch.equal(straight[key], resumed[key]), (name, key)


def _chorale_in_four_four(bach_midi_dir: Path, cfg) -> Path:
    for path in sorted(bach_midi_dir.glob("*.mid")):
        try:
            midi_to_roll(path, cfg)
            return path
        except MidiReadError:
            continue
    raise AssertionError("no 4/4 chorale")


def test_sample_writes_multitrack_midi_and_accompanies_a_given_voice(tiny_gan_run, bach_midi_dir, tmp_path):
    run = str(tiny_gan_run.run_dir)
    proc = cli(
        "sample",
        "--checkpoint",
        run,
        "--out",
        str(tmp_path / "free"),
        "--num-samples",
        "2",
        "--bars",
        "5",
        "--seed",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    for path in sorted((tmp_path / "free").glob("sample_*.mid")):
        pm = pretty_midi.PrettyMIDI(str(path))
        assert [i.name for i in pm.instruments] == ["soprano", "alto", "tenor", "bass"]
        assert sum(len(i.notes) for i in pm.instruments) == symusic.Score(str(path)).note_num() > 0
        assert pm.get_end_time() <= 5 * 4 * 60 / 100 + 1e-6  # 5 bars of 4/4 at 100 bpm

    generator = musgen.load(run)
    cfg = generator.cfg.data
    chorale = _chorale_in_four_four(bach_midi_dir, cfg)
    proc = cli(
        "sample",
        "--checkpoint",
        run,
        "--out",
        str(tmp_path / "harm"),
        "--num-samples",
        "2",
        "--condition-track",
        str(chorale),
        "--track",
        "soprano",
        "--seed",
        "1",
        "--binarize",
        "bernoulli",
    )
    assert proc.returncode == 0, proc.stderr
    given = midi_to_roll(chorale, cfg)[0]
    outs = [midi_to_roll(p, cfg) for p in sorted((tmp_path / "harm").glob("sample_*.mid"))]
    assert len(outs) == 2
    for out in outs:
        assert np.array_equal(
            out[0, : given.shape[0]], given
        )  # the soprano is the given one, whole piece long
        assert out[1:].any()
    assert not np.array_equal(outs[0][1:], outs[1][1:])  # two different harmonisations

    # A one-track melody (no voice names) is taken as the soprano.
    melody = tmp_path / "melody.mid"
    score = symusic.Score(str(chorale))
    score.tracks = [t for t in score.tracks if t.name.lower().startswith("soprano")]
    score.tracks[0].name = "flute"
    score.dump_midi(str(melody))
    rolls = generator.sample_rolls(1, condition=melody, track=None, seed=0)
    assert np.array_equal(rolls[0][0, : given.shape[0]], given)


def test_piano_roll_report_accompanies_every_held_out_phrase_and_pairs_the_baselines(tiny_gan_run, bach_data):
    """scripts/eval_musegan.py's report: each held-out phrase accompanied until at least num_samples
    phrases are written; the baselines give each real phrase the soprano of the phrase before and of
    one half the held-out set away."""
    from musgen.eval.musegan import data_phrases, evaluate

    cfg = musgen.load(tiny_gan_run.run_dir).cfg.data
    held_out = data_phrases(bach_data, ("valid", "test"), cfg)
    n = len(held_out)
    assert n >= 4
    report = evaluate(tiny_gan_run.run_dir, bach_data, num_samples=2 * n + 1, batch=n)["reports"]
    assert report["soprano given"]["num_phrases"] == 3 * n  # three passes over the held-out phrases
    assert report["generated (threshold)"]["num_phrases"] == 2 * n + 1
    for name in ("data, soprano of another phrase", "data, soprano of another chorale"):
        assert (
            report[name]["num_phrases"] == n
            and report[name]["tracks"]["alto"] == report["data (held out)"]["tracks"]["alto"]
        )
    assert report["data, soprano of another phrase"]["TD"] != report["data, soprano of another chorale"]["TD"]


def test_sample_misuse_is_one_line(tiny_gan_run, tiny_vae_run, bach_midi_dir, tmp_path, capsys):
    from musgen.cli import main

    run = str(tiny_gan_run.run_dir)
    chorale = str(sorted(bach_midi_dir.glob("*.mid"))[0])
    out = str(tmp_path / "out")
    cases = [
        (["--checkpoint", run, "--prime", chorale], "--prime is for language models"),
        (["--checkpoint", run, "--top-k", "5"], "--top-k does not apply to musegan"),
        (["--checkpoint", run, "--condition-track", chorale, "--track", "alto"], "accompanies soprano"),
        (["--checkpoint", run, "--condition-track", "missing.mid"], "is not a file"),
        (["--checkpoint", run, "--track", "soprano"], "give both"),
        (["--checkpoint", run, "--threshold", "1.5"], "--threshold must be in (0, 1)"),
        (["--checkpoint", run, "--bars", "0"], "--bars must be at least 1"),
        (
            ["--checkpoint", str(tiny_vae_run.run_dir), "--condition-track", chorale],
            "does not apply to a musicvae",
        ),
    ]
    for (
        args,
        message,
    ) in cases:  # in-process: the same main() as the console script, without a new interpreter
        code = main(["sample", "--out", out, *args])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, lines)
    assert not Path(out).exists()  # nothing half-written


def test_paired_loss_is_finite_for_multihot_tracks_with_data_ranges(bach_data, tmp_path):
    """Real notes outside a track's range (logits -inf there) are left out of the paired loss."""
    run = tmp_path / "multihot"
    overrides = [
        "model.voice_range=data",
        "loss.paired_weight=1.0",
        "model.condition_prob=1.0",
        "train.steps=3",
    ]
    musgen.train("musegan", bach_data, run, config=TINY, overrides=overrides, progress=False)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    paired = [row["paired"] for row in logged if "paired" in row]
    assert paired and all(np.isfinite(paired)) and min(paired) > 0


def test_voice_output_trains_and_writes_one_note_per_voice(bach_data, bach_midi_dir, tmp_path, capsys):
    """model.output=voice end to end: every generated and accompanied voice sounds at most one pitch
    per step, and the multi-hot binarisation flags are refused with one line."""
    from musgen.cli import main

    run = tmp_path / "voice"
    musgen.train(
        "musegan",
        bach_data,
        run,
        config=TINY,
        # the 16th-note grid, data ranges and the paired accompaniment loss (issue 20's recipe) on the way
        overrides=[
            "model.output=voice",
            "model.time_grid=sixteenth",
            "model.voice_range=data",
            "model.voice_leading=true",
            "model.critic_intervals=true",
            "loss.paired_weight=1.0",
            "train.steps=4",
        ],
        progress=False,
    )
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    paired = [row["paired"] for row in logged if "paired" in row]
    assert paired and all(np.isfinite(paired)) and min(paired) > 0
    generator = musgen.load(run)
    chorale = _chorale_in_four_four(bach_midi_dir, generator.cfg.data)
    free = generator.sample_rolls(4, bars=4, seed=0)
    harmonised = generator.sample_rolls(2, condition=chorale, track="soprano", seed=1)
    for roll in [*free, *harmonised]:
        assert roll.sum(-1).max() <= 1  # (K, T, P): at most one pitch per voice and step
    held = free[0].reshape(4, -1, 3, free[0].shape[-1])  # (K, 16ths, 3 steps, P) at 48 steps a bar
    assert (held == held[:, :, :1]).all()  # one value per 16th note
    allowed = generator.models["generator"].pitch_allowed.numpy()  # (K, P) from the training data
    assert 10 < allowed.sum(-1).min() and allowed.sum(-1).max() < 45  # a voice's range, not 84 pitches
    for roll in free:
        assert not (roll.any(axis=1) & ~allowed).any()
    given = midi_to_roll(chorale, generator.cfg.data)[0]
    assert np.array_equal(harmonised[0][0, : given.shape[0]], given)
    out = tmp_path / "samples"
    assert (
        main(["sample", "--checkpoint", str(run), "--out", str(out), "--num-samples", "2", "--seed", "0"])
        == 0
    )
    for path in sorted(out.glob("sample_*.mid")):
        assert midi_to_roll(path, generator.cfg.data).sum(-1).max() <= 1
    code = main(["sample", "--checkpoint", str(run), "--out", str(out), "--binarize", "bernoulli"])
    assert code == 2 and "one note (or a rest) per voice" in capsys.readouterr().err


def test_voice_leading_can_start_from_the_datas_transitions(bach_data, tmp_path):
    """model.voice_leading_init: data_fixed keeps each voice's log transition probabilities of the
    training data (16th to 16th, times voice_leading_scale) through training; on them a voice mostly
    holds its pitch."""
    from musgen.data.pianoroll_data import RollPhrases

    run = tmp_path / "leading"
    overrides = ["model.output=voice", "model.time_grid=sixteenth", "model.voice_leading=true"]
    musgen.train(
        "musegan",
        bach_data,
        run,
        config=TINY,
        overrides=[
            *overrides,
            "model.voice_leading_init=data_fixed",
            "model.voice_leading_scale=0.5",
            "train.steps=2",
        ],
        progress=False,
    )
    generator = musgen.load(run)
    table = generator.models["generator"].transition.detach()  # (1, K, P + 1, P + 1): one position
    phrases = RollPhrases(bach_data, "train", generator.cfg.data)
    counts = phrases.voice_transitions(3)
    by_beat = phrases.voice_transitions(3, positions=4)  # (4, K, P + 1, P + 1): per place in the beat
    assert np.array_equal(by_beat.sum(0), counts[0])
    # chorale voices change pitch on the beat far more often than between its 16ths
    moves = [1 - np.trace(by_beat[s], axis1=1, axis2=2).sum() / by_beat[s].sum() for s in range(4)]
    assert moves[0] > 2 * max(moves[1:]), moves
    # ... and strike a held pitch again mostly on the beat (the step before left silent)
    held, struck = np.moveaxis(phrases.voice_restrikes(3, positions=4), -1, 0)  # (4, K) each
    assert np.array_equal(held.sum(0), np.trace(counts[0][:, :-1, :-1], axis1=1, axis2=2))
    share = struck.sum(1) / held.sum(1)  # (4,) per place in the beat
    assert share[0] > 0.2 and share[1:].max() < 0.05, share
    musgen.train(
        "musegan",
        bach_data,
        tmp_path / "restrikes",
        config=TINY,
        overrides=[
            *overrides,
            "model.voice_leading_positions=4",
            "model.restrikes=true",
            "model.harmony=true",
            "model.voice_leading_init=data_fixed",
            "model.voice_inference=draw",
            "train.steps=1",
        ],
        progress=False,
    )
    striking = musgen.load(tmp_path / "restrikes")
    restrike = striking.models["generator"].restrike  # (4, K) from the data
    np.testing.assert_allclose(restrike.numpy(), struck / held, rtol=1e-6)
    # harmony: the data's interval PMI to the lead; chorale altos sit a third or a fourth under the soprano
    joint, alone = phrases.voice_intervals(3)  # (K, K, 2P - 1)
    assert np.array_equal(joint.sum(-1), alone.sum(-1).round()) and joint[1, 1, 83] == joint[1, 1].sum()
    harmony = striking.models["generator"].harmony
    pmi = np.log((joint + 0.5) / (joint + 0.5).sum(-1, keepdims=True))
    pmi -= np.log((alone + 0.5) / (alone + 0.5).sum(-1, keepdims=True))
    np.testing.assert_allclose(harmony.numpy(), pmi, rtol=1e-4, atol=1e-4)
    assert harmony[0, 1, 83 - 3] > 0.5 and harmony[0, 1, 83 - 1] < 0  # a minor third likely, a semitone not
    # restrike calibration: each voice repeats notes as often as asked
    from musgen.models.musegan import repeat_share

    with torch.no_grad():
        restrike.fill_(1.0)
    most = repeat_share(striking.generate_rolls(64, seed=5))
    target = (most / 2).tolist()
    factors = striking.calibrate_restrikes(target, num_samples=64, iterations=10)
    share = repeat_share(striking.generate_rolls(64, seed=99))
    assert min(most) > 0.2 and max(factors) < 1, (most, factors)
    assert np.abs(share - np.array(target)).max() < 0.06, (share, target)
    # voice temperatures: each voice drawn hot or cold until it uses as many pitch classes per bar as asked
    from musgen.models.musegan import voice_upc

    def upc(rolls: np.ndarray) -> np.ndarray:
        return voice_upc(rolls, striking.cfg.data)

    gen = striking.models["generator"]
    gen.voice_temperatures = torch.full((4,), 0.5)
    cold = upc(striking.generate_rolls(64, seed=7))
    gen.voice_temperatures = torch.full((4,), 2.0)
    hot = upc(striking.generate_rolls(64, seed=7))
    assert np.all(hot > cold + 0.2), (cold, hot)  # hotter voices wander more
    target = ((cold + hot) / 2).tolist()
    multipliers = striking.calibrate_voice_temperatures(target, num_samples=64, iterations=10)
    assert torch.allclose(gen.voice_temperatures, torch.tensor(multipliers))
    assert np.abs(upc(striking.generate_rolls(64, seed=99)) - np.array(target)).max() < 0.5, (cold, hot)
    # interval calibration: the voices move by each interval (per place in the beat) nearer the data's shares
    from musgen.data.pianoroll_data import grid_transitions
    from musgen.models.musegan import interval_counts

    moves = phrases.voice_transitions(3, positions=4)
    want = interval_counts(moves, 84)  # (4, K, 2P - 1)
    sounding = phrases.item(0)[:, ::3].any(-1)  # (K, T16) one phrase's 16ths with a pitch
    one = interval_counts(grid_transitions(phrases.item(0)[None], 3, 4, 84), 84)  # its moves between pitches
    assert one.sum() == np.count_nonzero(sounding[:, 1:] & sounding[:, :-1])

    def distance() -> float:  # total variation between the generated and the data's interval shares
        got = interval_counts(grid_transitions(striking.generate_rolls(128, seed=11), 3, 4, 84), 84)
        return float(
            np.abs(got / got.sum(-1, keepdims=True) - want / want.sum(-1, keepdims=True)).sum(-1).mean() / 2
        )

    gen.voice_temperatures = torch.ones(4)
    before = distance()
    tilt = striking.calibrate_intervals(moves, num_samples=128, iterations=4)
    assert tilt.shape == (4, 4, 167) and distance() < before / 2, (before, distance())
    expected = torch.as_tensor(counts, dtype=torch.float32) + 0.1
    expected = (expected / expected.sum(-1, keepdim=True)).log()
    assert torch.allclose(table, 0.5 * (expected - expected.mean(-1, keepdim=True)), atol=1e-5)
    sung = counts.sum(-1) > 50  # (K, P + 1): pitches (or the rest) each voice has often
    assert sung.sum() > 20
    stays = table.argmax(-1) == torch.arange(table.shape[-1])  # (K, P + 1)
    assert stays[torch.from_numpy(sung)].float().mean() > 0.9
    # voice_inference draw: the 16ths are drawn, from the seed's generator only (reproducible)
    generator.models["generator"].voice_draws = True
    first, again = generator.generate_rolls(4, seed=3), generator.generate_rolls(4, seed=3)
    assert np.array_equal(first, again) and not np.array_equal(first, generator.generate_rolls(4, seed=4))
    assert first.sum(-1).max() <= 1  # still one pitch (or a rest) per voice and step
    # a cold draw is the likeliest 16th after the likeliest: the argmax path (same noise)
    cold = generator.generate_rolls(4, seed=3, temperature=1e-4)
    assert not np.array_equal(cold, first)
    generator.models["generator"].voice_draws = False
    assert np.array_equal(cold, generator.generate_rolls(4, seed=3))
    # rest calibration: each voice's rest logit shifted until it rests as often as asked
    from musgen.models.musegan import rest_share

    generator.models["generator"].voice_draws = True
    target = [0.3, 0.1, 0.05, 0.2]
    offsets = generator.calibrate_rests(target, num_samples=32, iterations=10)
    assert len(offsets) == 4 and len(set(offsets)) > 1
    share = rest_share(generator.generate_rolls(64, seed=99))
    assert np.abs(share - np.array(target)).max() < 0.06, share
    with pytest.raises(MusgenError, match="voice_leading_init"):
        musgen.train(
            "musegan", bach_data, tmp_path / "bad", config=TINY, overrides=["model.voice_leading_init=data"]
        )
