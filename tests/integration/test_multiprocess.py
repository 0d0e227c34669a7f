"""Multi-process training: ``accelerate launch --multi_gpu --num_processes 2`` on a machine without
GPUs (two CPU processes talking over gloo, as DDP) trains each family; both processes end with
identical weights, and the loss follows that of one process with the same global batch (two
processes of batch B/2 against one of batch B).

Default tier: the LSTM and MuseGAN (two models, two optimizers, no_sync in its own train_step).
Slow tier (``pytest -m slow``): every family, and a two-process run stopped and resumed.
The losses are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import musgen

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("lstm", "transformer", "musicvae", "musegan", "vqvae", "prior")
STEPS = 4
# Families whose step draws no random numbers at these settings: one process of batch B and two of
# B/2 compute the same loss up to float rounding. The others draw noise (MusicVAE's posterior
# sample, MuseGAN's latent noise and interpolation weights, the codec's k-means initialisation),
# and two processes draw other numbers than one: the same expectation, not the same values.
DETERMINISTIC = {"lstm": 1e-5, "transformer": 1e-5, "prior": 1e-5}  # relative, every step (seen: 2e-7)
STOCHASTIC_TOLERANCE = 0.05  # relative, the first step's loss: same weights and data, other noise (seen: 1%)


def _family_args(family: str, request: pytest.FixtureRequest) -> tuple[list[str], int]:
    """(arguments, the tiny preset's batch size = the global batch)."""
    tiny = ["--config", f"tiny/{family}"]
    if family in ("lstm", "transformer"):
        return ["--data", str(request.getfixturevalue("bach_data")), *tiny], 16
    if family == "musicvae":
        return [
            "--data",
            str(request.getfixturevalue("folk_data")),
            *tiny,
            "--set",
            "train.batch_size=16",
        ], 16
    if family == "musegan":
        return ["--data", str(request.getfixturevalue("bach_data")), *tiny], 8
    args = ["--data", str(request.getfixturevalue("bach_audio_data")), *tiny]
    if family == "prior":
        args += ["--set", f"vqvae={request.getfixturevalue('tiny_codec_run').run_dir}"]
    return args, 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(family: str, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N -m musgen.cli train FAMILY ...``: torchrun's
    N processes, which Accelerate runs on the CPU over gloo where there is no GPU. (``--cpu`` would
    start one process: Accelerate's CPU launcher needs mpirun for more.)"""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "musgen.cli",
        "-q",
        "train",
        family,
        "--no-progress",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800)


def _losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def _two_processes_match_one(family: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    args, batch = _family_args(family, request)
    common = [
        *args,
        "--set",
        f"train.steps={STEPS}",
        "--set",
        "train.log_every=1",
        "--set",
        f"train.eval_every={STEPS}",
        "--set",
        f"train.save_every={STEPS}",
    ]
    proc = launch(family, *common, "--set", f"train.batch_size={batch // 2}", "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = musgen.train(
        family,
        args[1],
        tmp_path / "one",
        config=args[3],
        progress=False,
        overrides=[a for a in common[4:] if a != "--set"] + [f"train.batch_size={batch}"],
    )

    loop = json.loads((tmp_path / "two" / "state" / f"step_{STEPS:07d}" / "loop.json").read_text())
    assert loop["processes"] == 2
    digests = loop["weights_sha256"]  # each process hashed its own weights at the save
    assert len(digests) == 2 and digests[0] == digests[1], digests
    assert "different weights" not in proc.stderr
    musgen.load(tmp_path / "two")  # the checkpoint (written by the main process only) loads

    two, single = _losses(tmp_path / "two"), [r["loss"] for r in one.history if "loss" in r]
    assert len(two) == len(single) == STEPS and all(math.isfinite(x) for x in two)
    rel = [abs(a - b) / max(abs(b), 1e-8) for a, b in zip(two, single, strict=True)]
    print(
        f"\n[multi-process] {family}: loss 2 x {batch // 2} = {[round(x, 5) for x in two]}; "
        f"1 x {batch} = {[round(x, 5) for x in single]}; relative difference {max(rel):.2g} (all steps), "
        f"{rel[0]:.2g} (step 1); ranks' weights identical ({digests[0][:12]})"
    )
    if family in DETERMINISTIC:
        assert max(rel) <= DETERMINISTIC[family], rel
    else:
        assert rel[0] <= STOCHASTIC_TOLERANCE, rel


@pytest.mark.parametrize("family", ["lstm", "musegan"])
def test_two_processes_train_like_one_with_the_same_global_batch(family, request, tmp_path):
    _two_processes_match_one(family, request, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ("lstm", "musegan")])
def test_two_processes_train_every_family(family, request, tmp_path):
    _two_processes_match_one(family, request, tmp_path)


@pytest.mark.slow
def test_two_process_resume_is_exact(bach_data, tmp_path):
    """Each process keeps its own RNG state in the saved state: 2 processes for 6 steps straight
    equal 2 processes for 3 steps + 2 fresh processes resuming for 3 (dropout on)."""
    from safetensors.torch import load_file

    common = [
        "--data",
        str(bach_data),
        "--config",
        "tiny/transformer",
        "--set",
        "train.steps=6",
        "--set",
        "train.batch_size=8",
        "--set",
        "model.dropout=0.2",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.save_every=6",
    ]
    assert launch("transformer", *common, "--out", str(tmp_path / "straight")).returncode == 0
    proc = launch("transformer", *common, "--out", str(tmp_path / "split"), "--set", "train.stop_at=3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "split" / "state" / "step_0000003" / "random_states_1.pkl").is_file()
    proc = launch(
        "transformer",
        "--data",
        str(bach_data),
        "--out",
        str(tmp_path / "split"),
        "--resume",
        "--set",
        "train.stop_at=0",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step_0000006" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoints" / "step_0000006" / "model.safetensors"))
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"\n[multi-process] transformer, 2 processes, stop + resume: largest weight difference {worst:.3g}")
    assert worst == 0.0


def test_gradient_accumulation_weights_tokens_like_one_big_batch(bach_data, tmp_path):
    """The same rule in one process: 2 micro-batches of 8 windows give the loss and the weights of
    one batch of 16 (the windows at a piece's end are padded, so their token counts differ)."""
    from safetensors.torch import load_file

    runs = {}
    for name, batch, accum in (("big", 16, 1), ("accum", 8, 2)):
        runs[name] = musgen.train(
            "lstm",
            bach_data,
            tmp_path / name,
            config="tiny/lstm",
            progress=False,
            overrides=[
                "train.steps=3",
                "train.log_every=1",
                "train.eval_every=3",
                f"train.batch_size={batch}",
                f"train.grad_accum={accum}",
            ],
        )
    big, accum = ([r["loss"] for r in runs[n].history if "loss" in r] for n in ("big", "accum"))
    assert max(abs(a - b) / b for a, b in zip(accum, big, strict=True)) < 1e-5, (accum, big)
    wa, wb = (
        load_file(str(tmp_path / n / "checkpoints" / "step_0000003" / "model.safetensors")) for n in runs
    )
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
