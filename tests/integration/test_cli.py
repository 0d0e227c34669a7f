"""The command line as a user types it: --help everywhere, one line and exit 2 for mistakes,
and data build -> train -> sample end to end on real chorales plus broken files."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pretty_midi
import pytest

REPO = Path(__file__).resolve().parents[2]


def musgen(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "musgen.cli", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    "command",
    [[], ["data"], ["data", "build"], ["train"], ["sample"], ["infill"], ["eval"], ["plot"], ["report"]],
)
def test_every_command_has_help_with_an_example(command):
    proc = musgen(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: musgen" in proc.stdout
    if command not in ([], ["data"]):
        assert "example:" in proc.stdout and "musgen " + " ".join(command) in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "nosuchfamily", "--data", "x", "--out", "y"], "unknown family 'nosuchfamily'"),
        (["train", "lstm", "--data", "/nonexistent", "--out", "y"], "no manifest.json"),
        (["sample", "--checkpoint", "/nonexistent", "--out", "y"], "does not exist"),
        (["sample", "--checkpoint", "x", "--out", "y", "--bars", "-2", "--length", "4"], "not allowed with"),
        (["data", "build", "--corpus", "bach", "--midi-dir", "x", "--out", "y"], "not allowed with"),
        (["data", "build", "--corpus", "bach", "--out", "y", "--set", "tokeniser=remi"], "unknown key"),
        (["train", "lstm", "--data", "x", "--out", "y", "--set", "train.lr"], "key=value"),
        (["sample", "--checkpoint", "x"], "required: --out"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(args, message, tmp_path):
    proc = musgen(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_build_train_sample_end_to_end(bach_midi_dir, tmp_path):
    src = tmp_path / "midi"
    shutil.copytree(bach_midi_dir, src)
    good = sorted(src.glob("*.mid"))
    (src / "truncated.mid").write_bytes(good[0].read_bytes()[:200])
    (src / "empty.mid").write_bytes(b"")
    (src / "notes.midi").write_text("not a MIDI file")
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "samples"

    proc = musgen("data", "build", "--midi-dir", str(src), "--out", str(data), "--set", "valid_fraction=0.25")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((data / "manifest.json").read_text())
    assert {s["path"] for s in manifest["skipped"]} == {"truncated.mid", "empty.mid", "notes.midi"}
    assert all(s["reason"] for s in manifest["skipped"])
    assert sum(s["pieces"] for s in manifest["splits"].values()) == len(good)

    proc = musgen(
        "train",
        "lstm",
        "--data",
        str(data),
        "--out",
        str(run),
        "--config",
        "tiny/lstm",
        "--set",
        "train.steps=20",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid_nll" in proc.stdout and (run / "config.yaml").exists()
    proc = musgen("train", "lstm", "--data", str(data), "--out", str(run))
    assert proc.returncode == 2 and "--resume" in proc.stderr  # never overwrites a run silently

    proc = musgen(
        "sample",
        "--checkpoint",
        str(run),
        "--out",
        str(out),
        "--num-samples",
        "2",
        "--length",
        "64",
        "--seed",
        "0",
        "--prime",
        str(good[1]),
        "--top-p",
        "0.9",
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("sample_000.mid", "sample_001.mid"):
        assert pretty_midi.PrettyMIDI(str(out / name)).instruments


def test_samples_json_records_the_run_and_a_rerun_never_overwrites(
    quick_transformer_run, tmp_path, capsys, caplog
):
    """Without --seed a seed is drawn and recorded; sampling again into the same folder with that seed
    continues the numbering and repeats the first run's files byte for byte. Magenta's flag names work."""
    from musgen import __version__
    from musgen.cli import main

    caplog.set_level(logging.INFO, logger="musgen")
    out = tmp_path / "samples"
    first = ["sample", "--checkpoint", str(quick_transformer_run.run_dir), "--output_dir", str(out)]
    assert main([*first, "--num_outputs", "3", "--length", "24"]) == 0
    runs = json.loads((out / "samples.json").read_text())
    assert len(runs) == 1
    run = runs[0]
    assert run["command"] == "sample" and run["family"] == "transformer" and run["musgen"] == __version__
    assert Path(run["checkpoint"]).is_dir() and run["step"] == 2 and isinstance(run["seed"], int)
    assert run["seed_given"] is False and f"--seed {run['seed']} repeats this run" in caplog.text
    assert run["settings"] == {"length": 24, "num_samples": 3, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert [f["file"] for f in run["files"]] == ["sample_000.mid", "sample_001.mid", "sample_002.mid"]
    assert {f["seed"] for f in run["files"]} == {run["seed"]} and [f["index"] for f in run["files"]] == [
        0,
        1,
        2,
    ]
    before = {p.name: p.read_bytes() for p in out.glob("*.mid")}

    again = [*first, "--num-samples", "3", "--length", "24", "--seed", str(run["seed"])]
    assert main(again) == 0
    runs = json.loads((out / "samples.json").read_text())
    assert len(runs) == 2 and runs[1]["seed"] == run["seed"] and runs[1]["seed_given"] is True
    assert [f["file"] for f in runs[1]["files"]] == ["sample_003.mid", "sample_004.mid", "sample_005.mid"]
    assert {p.name: p.read_bytes() for p in out.glob("sample_00[012].mid")} == before  # untouched
    for i in range(3):
        assert (out / f"sample_{i + 3:03d}.mid").read_bytes() == before[f"sample_{i:03d}.mid"]
    printed = capsys.readouterr().out.split()
    assert printed[-3:] == [str(out / f"sample_{i:03d}.mid") for i in (3, 4, 5)]

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "samples.json").write_text('{"mine": 1}')
    assert main([*first[:-1], str(tmp_path / "notes"), "--length", "8"]) == 2
    assert "not a musgen record of runs" in capsys.readouterr().err
    assert not list((tmp_path / "notes").glob("*.mid"))


def test_compile_flag_writes_the_same_samples_and_is_refused_where_it_does_not_apply(
    quick_transformer_run, tiny_gan_run, tmp_path, capsys
):
    from musgen.cli import main

    base = ["sample", "--checkpoint", str(quick_transformer_run.run_dir), "--length", "24", "--seed", "3"]
    assert main([*base, "--out", str(tmp_path / "eager")]) == 0
    assert main([*base, "--out", str(tmp_path / "compiled"), "--compile"]) == 0
    eager = sorted((tmp_path / "eager").glob("*.mid"))
    assert eager and [p.read_bytes() for p in eager] == [
        (tmp_path / "compiled" / p.name).read_bytes() for p in eager
    ]
    settings = json.loads((tmp_path / "compiled" / "samples.json").read_text())[0]["settings"]
    assert settings["compile"] is True
    gan = ["sample", "--checkpoint", str(tiny_gan_run.run_dir), "--out", str(tmp_path / "gan"), "--compile"]
    assert main(gan) == 2
    assert "--compile does not apply to a musegan checkpoint" in capsys.readouterr().err


def test_magenta_flag_names_are_listed_in_help(capsys):
    from musgen.cli import main

    for command, aliases in (
        ("sample", ("--primer_midi", "--num_outputs", "--output_dir")),
        ("interpolate", ("--num_outputs", "--output_dir")),
        ("reconstruct", ("--output_dir",)),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(alias in text for alias in aliases), (command, text)
