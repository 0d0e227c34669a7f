"""Shared fixtures: small folders of real MIDI converted from music21's bundled corpus.

Conversion is cached under ``$MUSGEN_CACHE`` when set (fast reruns), else in a per-session temp
dir. Each fixture copies its files into a private folder, so a bigger persistent cache never
leaks extra pieces into a test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from musgen.data.corpus import corpus_midi_files


def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("MUSGEN_CACHE")
    return Path(env) if env else tmp_path_factory.getbasetemp() / "musgen-cache"


def _copy_corpus(tmp_path_factory: pytest.TempPathFactory, name: str, limit: int) -> Path:
    root, files, _ = corpus_midi_files(name, cache_dir=_cache_dir(tmp_path_factory), limit=limit)
    dest = tmp_path_factory.mktemp(f"{name}_midi")
    for f in files:
        target = dest / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return dest


@pytest.fixture(scope="session")
def bach_midi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~12 real Bach chorales as MIDI (4+ tracks each)."""
    return _copy_corpus(tmp_path_factory, "bach", 12)


@pytest.fixture(scope="session")
def bach_midi_24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real Bach chorales (the 12 of ``bach_midi_dir`` and 12 more): enough pieces to compare two
    halves of a set (evaluation sanity tests)."""
    return _copy_corpus(tmp_path_factory, "bach", 24)


@pytest.fixture(scope="session")
def folk_midi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~20 real folk tunes (ABC -> MIDI), in nested folders."""
    return _copy_corpus(tmp_path_factory, "folk", 20)


@pytest.fixture(scope="session")
def bach_data(tmp_path_factory: pytest.TempPathFactory, bach_midi_dir: Path) -> Path:
    """A REMI data set built from the real chorales (a quarter held out for validation)."""
    from musgen.data import DataConfig, build

    out = tmp_path_factory.mktemp("bach_data")
    build(out, midi_dir=bach_midi_dir, config=DataConfig(valid_fraction=0.25, test_fraction=0.1))
    return out


LANGUAGE_MODELS = ("lstm", "transformer")


@pytest.fixture(scope="session", params=LANGUAGE_MODELS)
def tiny_lm_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bach_data: Path):
    """The tiny preset of each token language model trained on ``bach_data`` (a real, short run
    shared by several tests)."""
    import musgen

    family = request.param
    run = tmp_path_factory.mktemp("runs") / family
    return musgen.train(family, bach_data, run, config=f"tiny/{family}", progress=False)


@pytest.fixture(scope="session")
def quick_transformer_run(tmp_path_factory: pytest.TempPathFactory, bach_data: Path):
    """The tiny Music Transformer trained for 2 steps on ``bach_data``: a real run directory (resumable
    state and portable checkpoint) for tests of loading, hostile inputs and misuse, where the model's
    quality does not matter."""
    import musgen

    run = tmp_path_factory.mktemp("runs") / "quick_transformer"
    config = "tiny/transformer"
    return musgen.train(
        "transformer",
        bach_data,
        run,
        config=config,
        progress=False,
        overrides=["train.steps=2", "train.save_every=2", "train.eval_every=2"],
    )


@pytest.fixture(scope="session")
def folk_data(tmp_path_factory: pytest.TempPathFactory, folk_midi_dir: Path) -> Path:
    """A REMI data set built from the ~20 real folk tunes (monophonic melodies for MusicVAE)."""
    from musgen.data import DataConfig, build

    out = tmp_path_factory.mktemp("folk_data")
    build(out, midi_dir=folk_midi_dir, config=DataConfig(valid_fraction=0.2, test_fraction=0.1))
    return out


@pytest.fixture(scope="session")
def tiny_vae_run(tmp_path_factory: pytest.TempPathFactory, folk_data: Path):
    """The tiny MusicVAE preset trained on ``folk_data`` (a real, short run shared by several tests)."""
    import musgen

    run = tmp_path_factory.mktemp("runs") / "musicvae"
    return musgen.train("musicvae", folk_data, run, config="tiny/musicvae", progress=False)


@pytest.fixture(scope="session")
def tiny_gan_run(tmp_path_factory: pytest.TempPathFactory, bach_data: Path):
    """The tiny MuseGAN preset trained on the real chorales of ``bach_data`` (shared by several tests)."""
    import musgen

    run = tmp_path_factory.mktemp("runs") / "musegan"
    return musgen.train("musegan", bach_data, run, config="tiny/musegan", progress=False)


@pytest.fixture(scope="session")
def bach_audio_data(tmp_path_factory: pytest.TempPathFactory, bach_midi_dir: Path) -> Path:
    """The real chorales of ``bach_midi_dir`` rendered to 16 kHz audio (first 8 s of each), a third
    of them held out for validation."""
    from musgen.data import AudioDataConfig, build_audio

    out = tmp_path_factory.mktemp("data") / "bach_audio"
    build_audio(
        out,
        midi_dir=bach_midi_dir,
        render=True,
        config=AudioDataConfig(max_seconds_per_piece=8, valid_fraction=0.3, test_fraction=0.0),
    )
    return out


@pytest.fixture(scope="session")
def tiny_codec_run(tmp_path_factory: pytest.TempPathFactory, bach_audio_data: Path):
    """The tiny VQ-VAE preset trained on ``bach_audio_data``."""
    import musgen

    run = tmp_path_factory.mktemp("runs") / "vqvae"
    return musgen.train("vqvae", bach_audio_data, run, config="tiny/vqvae", progress=False)


@pytest.fixture(scope="session")
def tiny_prior_run(tmp_path_factory: pytest.TempPathFactory, bach_audio_data: Path, tiny_codec_run):
    """The tiny audio prior trained on the codes of ``tiny_codec_run``."""
    import musgen

    run = tmp_path_factory.mktemp("runs") / "prior"
    return musgen.train(
        "prior",
        bach_audio_data,
        run,
        config="tiny/prior",
        overrides=[f"vqvae={tiny_codec_run.run_dir}"],
        progress=False,
    )


@pytest.fixture(scope="session")
def bach_tracks_data(tmp_path_factory: pytest.TempPathFactory, bach_midi_dir: Path) -> Path:
    """The real chorales with the voices kept apart (the tracks layout of musgen.data.track_layout)."""
    from musgen.data import DataConfig, build

    out = tmp_path_factory.mktemp("bach_tracks")
    config = DataConfig(
        valid_fraction=0.25,
        test_fraction=0.1,
        tracks=["soprano", "alto", "tenor", "bass"],
        tokenizer_params={"use_velocities": False},
    )
    build(out, midi_dir=bach_midi_dir, config=config)
    return out


@pytest.fixture(scope="session")
def tiny_infill_run(tmp_path_factory: pytest.TempPathFactory, bach_tracks_data: Path):
    """The tiny Music Transformer trained briefly for infilling (half of its windows) on the voices."""
    import musgen

    run = tmp_path_factory.mktemp("runs") / "tiny_infill"
    overrides = ["data.seq_len=384", "model.max_relative_position=384", "data.infill=0.5", "train.steps=30"]
    return musgen.train(
        "transformer", bach_tracks_data, run, config="tiny/transformer", progress=False, overrides=overrides
    )
