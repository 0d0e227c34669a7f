"""Habits of the field (issue 22): --device, hub ids (offline from the hub cache), progress bars
that stay out of pipes and --quiet, and `musgen card`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import musgen
from musgen.cli import main
from musgen.device import resolve_device
from musgen.errors import MusgenError
from musgen.hub import looks_like_hub_id

REPO = Path(__file__).resolve().parents[2]
CHECKPOINTS = REPO / "checkpoints"
STORED = REPO / "tests" / "data" / "reference_samples"
REFERENCE = json.loads((STORED / "samples.json").read_text())
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without CUDA and MPS, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def musgen_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "musgen.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


# -- --device -----------------------------------------------------------------------------------


def test_device_names(no_accelerator: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # nothing better here
    for name, message in [
        ("cuda", "CUDA is not available"),
        ("cuda:0", "CUDA is not available"),
        ("mps", "MPS backend is not available"),
        ("tpu", "--device must be cpu, cuda, cuda:N, mps or auto"),
        ("gpu please", "--device must be"),
    ]:
        with pytest.raises(MusgenError, match=message):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(MusgenError, match="has 1 CUDA device"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("command", ["sample", "eval", "interpolate", "reconstruct"])
def test_an_unavailable_device_is_one_line(
    command: str, no_accelerator: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clip = tmp_path / "a.mid"
    clip.write_bytes(b"MThd")  # any file: the device is refused before a clip is read
    args = {
        "sample": ["sample", "--checkpoint", str(CHECKPOINTS / "transformer"), "--out", str(tmp_path)],
        "eval": ["eval", "--checkpoint", str(CHECKPOINTS / "transformer"), "--data", str(tmp_path)],
        "interpolate": [
            "interpolate",
            str(clip),
            str(clip),
            "--checkpoint",
            str(CHECKPOINTS / "musicvae-2bar"),
        ],
        "reconstruct": ["reconstruct", str(clip), "--checkpoint", str(CHECKPOINTS / "musicvae-2bar")],
    }[command]
    if command == "eval":
        (tmp_path / "manifest.json").write_text("{}")
        args += ["--out", str(tmp_path / "eval.json")]
    elif command != "sample":
        args += ["--out", str(tmp_path / "out")]
    assert main([*args, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "musgen: error: --device cuda: CUDA is not available "
        f"({'this torch is built without CUDA' if torch.version.cuda is None else 'no GPU is visible'}); "
        "use --device cpu or auto"
    ]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_auto_samples_exactly_the_reference(name: str, no_accelerator: None) -> None:
    """Without an accelerator, --device auto changes nothing a model writes (cpu, the default, is
    test_reference_samples itself)."""
    from test_reference_samples import check_reference_sample

    assert musgen.load(CHECKPOINTS / "lstm", device="auto").device == torch.device("cpu")
    check_reference_sample(name, "auto")


def test_to_moves_every_model_and_the_prior_codec() -> None:
    """Generator.to reaches every module, the codec inside a prior included (``meta``: a device that
    holds no data, so the test runs anywhere)."""
    generator = musgen.load(CHECKPOINTS / "prior")
    generator.to("meta")
    modules = [*generator.models.values(), *generator.codec.models.values()]
    assert {p.device.type for m in modules for p in m.parameters()} == {"meta"}
    assert generator.device == generator.codec.device == torch.device("meta")
    assert generator.level_mask().device == torch.device("meta")


# -- hub ids ------------------------------------------------------------------------------------


def test_what_counts_as_a_hub_id() -> None:
    assert looks_like_hub_id("org/name") and looks_like_hub_id("my-org/bach_transformer.v2")
    for text in ("name", "/abs/path", "./x", "../x", "a/b/c", "org/..", "org/name.", "org/", "~/x"):
        assert not looks_like_hub_id(text), text


def test_only_an_explicit_missing_org_name_reaches_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub

    asked: list[tuple[str, str | None]] = []

    def fake_snapshot_download(repo_id: str, *, revision: str | None = None, **kwargs) -> str:
        asked.append((repo_id, revision))
        assert set(kwargs["allow_patterns"]) == {"*.json", "*.yaml", "*.safetensors"}  # no pickle, no code
        snapshot = tmp_path / "snapshots" / COMMIT
        if not snapshot.exists():
            shutil.copytree(CHECKPOINTS / "musicvae-2bar", snapshot)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    local = musgen.load(CHECKPOINTS / "musicvae-2bar")  # a local path: never looked up
    assert asked == [] and local.source == {"path": str(CHECKPOINTS / "musicvae-2bar")}
    with pytest.raises(MusgenError, match="does not exist"):
        musgen.load(tmp_path / "missing" / "ckpt")  # an absolute path is never an id
    assert asked == []
    generator = musgen.load("someone/musicvae", revision="v1")
    assert asked == [("someone/musicvae", "v1")]
    assert generator.source["hub_id"] == "someone/musicvae" and generator.source["revision"] == COMMIT
    with pytest.raises(MusgenError, match="--revision applies to a hub id"):
        musgen.load(CHECKPOINTS / "musicvae-2bar", revision="v1")


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    """HF_HOME with ``musgen-test/tiny-transformer`` in the hub's cache layout (refs/main -> a
    snapshot folder named by its commit), as ``snapshot_download`` leaves it."""
    home = tmp_path / "hf"
    repo = home / "hub" / "models--musgen-test--tiny-transformer"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in ("musgen.json", "config.yaml", "model.safetensors", "tokenizer.json"):
        shutil.copy2(CHECKPOINTS / "transformer" / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return home


def test_a_hub_id_loads_offline_from_the_cache(hub_cache: Path, tmp_path: Path) -> None:
    env = {"HF_HOME": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    code = (
        "import json, musgen\n"
        "g = musgen.load('musgen-test/tiny-transformer')\n"
        "print(json.dumps(g.source)); print(g.family)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    source, family = proc.stdout.strip().splitlines()
    assert json.loads(source)["hub_id"] == "musgen-test/tiny-transformer"
    assert json.loads(source)["revision"] == COMMIT and family == "transformer"

    hub = tmp_path / "hub_samples"
    local = tmp_path / "local_samples"
    sample = ["sample", "--length", "24", "--seed", "3", "-q"]
    proc = musgen_cli(*sample, "--checkpoint", "musgen-test/tiny-transformer", "--out", str(hub), env=env)
    assert proc.returncode == 0, proc.stderr
    assert main([*sample, "--checkpoint", str(CHECKPOINTS / "transformer"), "--out", str(local)]) == 0
    assert (hub / "sample_000.mid").read_bytes() == (local / "sample_000.mid").read_bytes()

    proc = musgen_cli(
        *sample,
        "--checkpoint",
        "musgen-test/tiny-transformer",
        "--revision",
        COMMIT,
        "--out",
        str(hub),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for missing in (
        ["--checkpoint", "musgen-test/other"],
        ["--checkpoint", "musgen-test/tiny-transformer", "--revision", "v9"],
    ):
        proc = musgen_cli(*sample, *missing, "--out", str(hub), env=env)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1].startswith("musgen: error: checkpoint musgen-test/")
        assert "neither reachable nor in the local hub cache" in proc.stderr


# -- progress bars ------------------------------------------------------------------------------


class _Terminal:
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_bars_only_on_a_terminal_and_not_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    from musgen.progress import progress_enabled

    logger = logging.getLogger("musgen")
    level = logger.level
    try:
        logger.setLevel(logging.INFO)
        monkeypatch.setattr(sys, "stderr", _Terminal())
        assert progress_enabled()
        logger.setLevel(logging.WARNING)  # -q / --quiet
        assert not progress_enabled()
        logger.setLevel(logging.INFO)
        monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # a pipe or a file: no bar
        assert not progress_enabled()
    finally:
        logger.setLevel(level)


def test_sampling_shows_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm.auto

    shown: list[dict] = []
    real = tqdm.auto.tqdm

    def spy(*args, **kwargs):
        shown.append(kwargs)
        return real(*args, **{**kwargs, "file": open(os.devnull, "w")})

    monkeypatch.setattr("musgen.progress.tqdm", spy)
    monkeypatch.setattr("musgen.progress.progress_enabled", lambda: True)
    musgen.load(CHECKPOINTS / "lstm").generate(2, length=8, seed=0)
    assert [(kw["desc"], kw["unit"], kw["total"], kw["disable"]) for kw in shown] == [
        ("sample 2", "token", 8, False)
    ]


# -- musgen card --------------------------------------------------------------------------------


def _front_matter(readme: str) -> list[str]:
    lines = readme.splitlines()
    assert lines[0] == "---"
    return lines[1 : lines.index("---", 1)]


def test_card_of_a_symbolic_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "card"
    args = [
        "card",
        str(CHECKPOINTS / "transformer"),
        "--out",
        str(out),
        "--hub-id",
        "me/bach",
        "--length",
        "48",
    ]
    assert main(args) == 0
    readme = (out / "README.md").read_text()
    header = _front_matter(readme)
    assert "library_name: musgen" in header and "- music-generation" in header and "- transformer" in header
    assert "## Evaluation" in readme and "held-out likelihood" in readme  # the eval.json table
    assert 'musgen.load("me/bach")' in readme and "musgen sample --checkpoint me/bach" in readme
    for media in ("sample.mid", "sample.png", "sample.wav"):
        assert (out / "media" / media).stat().st_size > 0 and f"media/{media}" in readme
    # The folder is the checkpoint too: it loads and samples as the original does.
    copy, original = musgen.load(out), musgen.load(CHECKPOINTS / "transformer")
    a, b = (g.sample_ids(1, length=16, seed=1) for g in (copy, original))
    assert a == b


@pytest.mark.parametrize("name", ["vqvae", "prior"])
def test_card_of_an_audio_checkpoint(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    assert main(["card", str(CHECKPOINTS / name), "--out", str(out), "--seconds", "0.5", "--card-only"]) == 0
    readme = (out / "README.md").read_text()
    assert "- audio" in _front_matter(readme) and f"- {name}" in _front_matter(readme)
    assert "## Evaluation" in readme and "ORG/NAME" in readme
    wavs = ["original.wav", "reconstruction.wav"] if name == "vqvae" else ["sample.wav"]
    for wav in wavs:
        assert (out / "media" / wav).stat().st_size > 44 and f"media/{wav}" in readme
        assert (out / "media" / wav).with_suffix(".png").is_file()  # its spectrogram
    assert not (out / "musgen.json").exists()  # --card-only


def test_card_refuses_a_folder_inside_the_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINTS / "musicvae-2bar", ckpt)
    assert main(["card", str(ckpt), "--out", str(ckpt / "card")]) == 2
    assert "inside the checkpoint" in capsys.readouterr().err
    assert main(["card", str(ckpt), "--out", str(ckpt)]) == 0  # the checkpoint folder itself: fine
    assert (ckpt / "README.md").is_file() and (ckpt / "media" / "sample.png").is_file()
