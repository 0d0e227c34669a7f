"""CLI misuse beyond tests/integration/test_cli.py: wrong checkpoints (another family, a tokenizer that
does not match the model, damaged files), out-of-range and non-finite sampling controls, negative
lengths, bad data settings and an --out that is a file. Each gives one line on stderr and exit
status 2, never a traceback; `--debug` shows the traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musgen.checkpoint import resolve_checkpoint
from musgen.cli import main
from musgen.data import DataConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_checkpoints(quick_transformer_run, tmp_path_factory) -> dict[str, Path]:
    """Copies of a real transformer checkpoint, each damaged in one way."""
    base = tmp_path_factory.mktemp("bad_ckpts")
    good = resolve_checkpoint(quick_transformer_run.run_dir)

    def copy(name: str) -> Path:
        shutil.copytree(good, base / name)
        return base / name

    other_tok = copy("other_tokenizer")  # REMI with 8 velocities: another vocabulary
    DataConfig(num_velocities=8).make_tokenizer().save(other_tok / "tokenizer.json")
    (copy("junk_tokenizer") / "tokenizer.json").write_text("{not json")
    (copy("alien_tokenizer") / "tokenizer.json").write_text(json.dumps({"tokenization": "os.system"}))
    (copy("no_weights") / "model.safetensors").unlink()
    cut = copy("cut_weights") / "model.safetensors"
    cut.write_bytes(cut.read_bytes()[:300])
    for name, family in (("lstm_label", "lstm"), ("unknown_family", "nosuch")):
        meta = copy(name) / "musgen.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "family": family}))
    (copy("bad_config") / "config.yaml").write_text("model: [unclosed\n")
    return {p.name: p for p in base.iterdir()}


def test_misuse_is_one_line_and_exit_2(
    quick_transformer_run, bad_checkpoints, bach_data, bach_midi_dir, tmp_path, capsys
):
    run = str(quick_transformer_run.run_dir)
    mid = str(sorted(bach_midi_dir.glob("*.mid"))[0])
    out = str(tmp_path / "out")
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    sample = ["sample", "--checkpoint", run, "--out", out]
    train = [
        "train",
        "transformer",
        "--data",
        str(bach_data),
        "--out",
        str(tmp_path / "run"),
        "--config",
        "tiny/transformer",
        "--no-progress",
    ]
    build = ["data", "build", "--midi-dir", str(bach_midi_dir), "--out", str(tmp_path / "data")]
    cases = [
        # sampling controls out of range, non-finite, negative lengths
        ([*sample, "--top-p", "2"], "--top-p must be in (0, 1]"),
        ([*sample, "--top-p", "0"], "--top-p must be in (0, 1]"),
        ([*sample, "--top-p", "nan"], "--top-p must be in (0, 1]"),
        ([*sample, "--top-k", "-1"], "--top-k must be >= 0"),
        ([*sample, "--temperature", "0"], "--temperature must be a finite number > 0"),
        ([*sample, "--temperature", "inf"], "--temperature must be a finite number > 0"),
        ([*sample, "--temperature", "nan"], "--temperature must be a finite number > 0"),
        ([*sample, "--temperature", "1,0.5"], "--temperature takes one value here"),
        ([*sample, "--top-k", "4,2"], "--top-k takes one value here"),
        ([*sample, "--temperature", "1,x"], "invalid float value: '1,x'"),
        ([*sample, "--length", "-5"], "--length must be at least 1"),
        ([*sample, "--length", "0"], "--length must be at least 1"),
        ([*sample, "--min-length", "-1"], "--min-length must be >= 0"),
        ([*sample, "--num-samples", "0"], "--num-samples must be at least 1"),
        ([*sample, "--bars", "-2"], "--bars must be at least 1"),
        ([*sample, "--length", "abc"], "invalid int value"),
        ([*sample, "--seconds", "5"], "--seconds does not apply to a transformer checkpoint"),
        # a checkpoint of another family, or no checkpoint at all
        (["interpolate", mid, mid, "--checkpoint", run, "--out", out], "needs a musicvae checkpoint"),
        (["reconstruct", mid, "--checkpoint", run, "--out", out], "needs a musicvae checkpoint"),
        (["sample", "--checkpoint", str(bach_data), "--out", out], "neither a musgen checkpoint nor a run"),
        (["sample", "--checkpoint", mid, "--out", out], "neither a musgen checkpoint nor a run"),
        (["sample", "--checkpoint", str(tmp_path / "missing"), "--out", out], "does not exist"),
        # damaged checkpoints
        (
            ["sample", "--checkpoint", str(bad_checkpoints["other_tokenizer"]), "--out", out],
            "the tokenizer does not match the model",
        ),
        (
            ["sample", "--checkpoint", str(bad_checkpoints["junk_tokenizer"]), "--out", out],
            "is not a miditok tokenizer file",
        ),
        (
            ["sample", "--checkpoint", str(bad_checkpoints["alien_tokenizer"]), "--out", out],
            "unknown miditok tokenization 'os.system'",
        ),
        (["sample", "--checkpoint", str(bad_checkpoints["no_weights"]), "--out", out], "has no weights file"),
        (
            ["sample", "--checkpoint", str(bad_checkpoints["cut_weights"]), "--out", out],
            "is not a safetensors weights file",
        ),
        (["sample", "--checkpoint", str(bad_checkpoints["lstm_label"]), "--out", out], "does not fit"),
        (
            ["sample", "--checkpoint", str(bad_checkpoints["unknown_family"]), "--out", out],
            "unknown family 'nosuch'",
        ),
        (["sample", "--checkpoint", str(bad_checkpoints["bad_config"]), "--out", out], "cannot read"),
        # the primer and the output
        ([*sample, "--prime", str(tmp_path)], "is not a file"),
        ([*sample, "--prime", str(a_file)], f"--prime {a_file}: unreadable MIDI"),
        (["sample", "--checkpoint", run, "--out", str(a_file), "--length", "2"], f"File exists: {a_file}"),
        # training and data settings
        ([*train, "--set", "data.seq_len=-4"], "data.seq_len must be at least 1"),
        ([*train, "--set", "train.steps=-1"], "must be at least 1"),
        ([*train, "--set", "train.lr=abc"], "expected a number"),
        ([*train, "--set", "model.num_heads=3"], "must be divisible by model.num_heads"),
        (["train", "transformer", "--data", str(a_file), "--out", str(tmp_path / "run")], "no manifest.json"),
        ([*build, "--set", "valid_fraction=2"], "valid_fraction and test_fraction"),
        ([*build, "--set", "max_seconds_per_file=-1"], "max_seconds_per_file"),
        ([*build, "--limit", "-1"], "--limit must be at least 1"),
        (
            ["data", "build", "--midi-dir", str(bach_midi_dir), "--out", str(a_file), "--limit", "2"],
            f"{a_file}",
        ),
        (
            ["render", mid, "--out", str(tmp_path / "x.wav"), "--max-seconds", "-1"],
            "--max-seconds must be >= 0",
        ),
        (["render", mid, "--out", str(tmp_path / "x.wav"), "--sample-rate", "-5"], "sample rate -5 Hz"),
    ]
    for args, message in cases:
        capsys.readouterr()
        try:
            code = main([*args, "-q"])
        except SystemExit as exc:  # argparse's own usage errors exit from parse_args
            code = exc.code
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, code, lines)
    assert not Path(out).exists() and not (tmp_path / "x.wav").exists()  # nothing half-written


def test_debug_shows_the_traceback(quick_transformer_run, tmp_path):
    """One interpreter for both: the same mistake with and without --debug."""
    code = (
        "import sys\nfrom musgen.cli import main\n"
        f"args = ['sample', '--checkpoint', {str(quick_transformer_run.run_dir)!r}, '--out', {str(tmp_path / 'o')!r},"
        " '--top-p', '2']\n"
        "print('exit', main(args), file=sys.stderr, flush=True)\n"
        "main(args + ['--debug'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    first, _, rest = proc.stderr.partition("exit 2\n")
    assert first.strip() == "musgen: error: --top-p must be in (0, 1], got 2.0", proc.stderr
    assert "Traceback (most recent call last)" in rest and "MusgenError: --top-p" in rest
    assert proc.returncode == 1
