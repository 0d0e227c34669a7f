"""Audio data sets as a user builds them: rendered chorales, a folder of recordings with broken files
mixed in, the training chunks read back, and `musgen render`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musgen.cli import main
from musgen.data.audio_data import AudioChunks, audio_pieces, read_audio_manifest
from musgen.data.render import render_midi
from musgen.errors import MusgenError

RATE = 16000


def test_render_a_corpus(tmp_path, capsys):
    out = tmp_path / "bach_audio"
    args = [
        "data",
        "build",
        "--corpus",
        "bach",
        "--render",
        "--limit",
        "6",
        "--set",
        "max_seconds_per_piece=8",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "audio data set in" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "audio" and m["source"] == {"corpus": "bach", "render": True}
    assert m["renderer"] in ("fluidsynth", "rustysynth", "synth") and m["sample_rate"] == RATE
    assert m["splits"]["train"]["pieces"] > 0 and m["splits"]["train"]["seconds"] > 0
    assert sum(s["pieces"] for s in m["splits"].values()) + len(m["skipped"]) == m["files_found"] == 6
    audio, offsets = np.load(out / "train.audio.npy"), np.load(out / "train.offsets.npy")
    assert audio.dtype == np.int16 and offsets[-1] == len(audio)
    assert (np.diff(offsets) <= 8 * RATE).all() and np.abs(audio).max() > 1000
    assert len(json.loads((out / "train.pieces.json").read_text())) == len(offsets) - 1

    # other split fractions: every render comes from the cache, none is redone
    cached = {p: p.stat().st_mtime_ns for p in (out / "render-cache").glob("*.flac")}
    assert main([*args, "--set", "valid_fraction=0.5"]) == 0
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2["fingerprint"] != m["fingerprint"] and m2["splits"]["valid"]["pieces"] > 0
    assert {p: p.stat().st_mtime_ns for p in (out / "render-cache").glob("*.flac")} == cached


def test_without_fluidsynth_renders_with_rustysynth_never_reusing_the_synths_renders(tmp_path, monkeypatch):
    """A build without the fluidsynth program renders with RustySynth, and the render cache is keyed
    by the engine that ran: the built-in synthesizer's renders of the same pieces are not reused."""
    out = tmp_path / "bach_audio"
    args = ["data", "build", "--corpus", "bach", "--render", "--limit", "3", "--out", str(out)]
    args += ["--set", "max_seconds_per_piece=4", "--set", "valid_fraction=0", "--set", "test_fraction=0"]
    assert main([*args, "--set", "engine=synth"]) == 0
    sine = set((out / "render-cache").glob("*.flac"))
    sine_audio = np.load(out / "train.audio.npy")
    assert json.loads((out / "manifest.json").read_text())["renderer"] == "synth" and sine

    monkeypatch.setattr(shutil, "which", lambda name: None)  # no fluidsynth program
    assert main(args) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["renderer"] == "rustysynth" and m["soundfont"]
    soundfont_renders = set((out / "render-cache").glob("*.flac"))
    assert len(soundfont_renders) == len(sine) and not soundfont_renders & sine
    audio = np.load(out / "train.audio.npy")
    assert audio.shape == sine_audio.shape and np.abs(audio.astype(np.int32) - sine_audio).max() > 1000


@pytest.fixture(scope="module")
def recordings(bach_midi_dir, tmp_path_factory) -> Path:
    """Three good recordings (one stereo at 44.1 kHz, in a subfolder) and broken files beside them."""
    d = tmp_path_factory.mktemp("recordings")
    chorales = sorted(bach_midi_dir.glob("*.mid"))[:3]
    for i, midi in enumerate(chorales[:2]):
        sf.write(d / f"take{i}.wav", render_midi(midi, RATE, engine="synth", max_seconds=4), RATE)
    wide = render_midi(chorales[2], 44100, engine="synth", max_seconds=3)
    (d / "live").mkdir()
    sf.write(d / "live" / "stereo.flac", np.stack([wide, 0.5 * wide], axis=1), 44100)
    (d / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    sf.write(d / "nan.wav", np.r_[np.full(RATE, 0.1), np.nan], RATE, subtype="FLOAT")
    sf.write(d / "silent.wav", np.zeros(2 * RATE), RATE)
    sf.write(d / "short.wav", 0.3 * np.ones(RATE // 4), RATE)
    (d / "notes.txt").write_text("not audio, and not named like audio: ignored\n")
    return d


@pytest.fixture(scope="module")
def recordings_data(recordings, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec_data")
    assert (
        main(
            [
                "data",
                "build",
                "--audio-dir",
                str(recordings),
                "--out",
                str(out),
                "--set",
                "valid_fraction=0",
                "--set",
                "test_fraction=0",
            ]
        )
        == 0
    )
    return out


def test_audio_dir_skips_exactly_the_bad_files(recordings, recordings_data):
    m = json.loads((recordings_data / "manifest.json").read_text())
    assert m["source"] == {"audio_dir": str(recordings.resolve())} and m["files_found"] == 7
    reasons = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"noise.wav", "nan.wav", "silent.wav", "short.wav"}
    assert "not an audio file" in reasons["noise.wav"] and "NaN" in reasons["nan.wav"]
    assert "silent" in reasons["silent.wav"] and "too short" in reasons["short.wav"]
    assert json.loads((recordings_data / "train.pieces.json").read_text()) == [
        "live/stereo.flac",
        "take0.wav",
        "take1.wav",
    ]
    pieces = audio_pieces(recordings_data, "train")
    assert [len(p) for p in pieces] == [
        3 * RATE,
        4 * RATE,
        4 * RATE,
    ]  # 44.1 kHz stereo resampled to mono 16 kHz
    assert all(p.dtype == np.float32 and 0.01 < np.abs(p).max() <= 1 for p in pieces)


def test_audio_chunks(recordings_data):
    segment = RATE  # pieces of 3, 4, 4 s: 11 chunks
    ds = AudioChunks(recordings_data, "train", segment, seed=3)
    assert len(ds) == 11 and ds.sample_rate == RATE
    item = ds[5]
    assert (
        item["audio"].shape == (1, segment)
        and item["audio"].dtype.is_floating_point
        and item["length"] == segment
    )
    np.testing.assert_array_equal(ds[5]["audio"], item["audio"])  # deterministic per (epoch, index)
    ds.set_epoch(1)
    assert any(
        not np.array_equal(ds[i]["audio"], AudioChunks(recordings_data, "train", segment, seed=3)[i]["audio"])
        for i in range(len(ds))
    )
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[5]["audio"], item["audio"])

    plain = AudioChunks(recordings_data, "train", segment, random_offset=False)
    first = audio_pieces(recordings_data, "train")[0]
    np.testing.assert_allclose(plain[1]["audio"][0].numpy(), first[segment : 2 * segment], atol=1e-6)
    long = AudioChunks(recordings_data, "train", 5 * RATE)  # longer than every piece: one padded chunk each
    assert len(long) == 3 and long[0]["length"] == 3 * RATE
    assert not long[0]["audio"][0, 3 * RATE :].any()


def test_a_token_data_set_is_not_audio(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "tokenizer": "REMI"}))
    with pytest.raises(MusgenError, match="is not an audio data set"):
        read_audio_manifest(tmp_path)
    with pytest.raises(MusgenError, match="no manifest.json"):
        AudioChunks(tmp_path / "missing", "train", 100)


def test_render_command(bach_midi_dir, tmp_path, capsys):
    chorale = sorted(bach_midi_dir.glob("*.mid"))[0]
    assert (
        main(
            [
                "render",
                str(chorale),
                "--out",
                str(tmp_path / "x.wav"),
                "--engine",
                "synth",
                "--sample-rate",
                "22050",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "x.wav")
    info = sf.info(tmp_path / "x.wav")
    assert info.samplerate == 22050 and info.channels == 1 and info.duration > 10

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.wav").write_bytes(b"RIFF but no more")
    for args, message in [
        (["render", str(tmp_path / "missing.mid"), "--out", str(tmp_path / "y.wav")], "does not exist"),
        (["render", str(tmp_path / "x.wav"), "--out", str(tmp_path / "y.wav")], "cannot render"),
        (
            ["data", "build", "--audio-dir", str(tmp_path), "--render", "--out", str(tmp_path / "d")],
            "--render",
        ),
        (
            [
                "data",
                "build",
                "--audio-dir",
                str(tmp_path),
                "--tokenizer",
                "tsd",
                "--out",
                str(tmp_path / "d"),
            ],
            "--tokenizer",
        ),
        (["data", "build", "--audio-dir", str(junk), "--out", str(tmp_path / "d")], "no usable audio file"),
    ]:
        assert main(args) == 2
        stderr = capsys.readouterr().err
        err = [
            line for line in stderr.splitlines() if line.startswith("musgen: error:")
        ]  # progress bars aside
        assert len(err) == 1 and message in err[0] and "Traceback" not in stderr, stderr
    assert not (tmp_path / "y.wav").exists()

    with pytest.raises(SystemExit) as exit_:
        main(["render", "--help"])
    help_text = capsys.readouterr().out
    assert exit_.value.code == 0 and "example:" in help_text
    assert "{auto,fluidsynth,rustysynth,synth}" in help_text  # the engines, in the order auto tries them
