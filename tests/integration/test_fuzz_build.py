"""Fuzz `musgen data build` with folders of hostile MIDI and audio files (tests/fuzz_midi.py,
tests/fuzz_audio.py; seeded, so a failure reproduces): every valid file is used, every bad one is
listed in the manifest with a one-line reason, nothing crashes or hangs, the build exits 0, and 2
only when nothing is usable. The default tier fuzzes a few hundred files; `pytest -m slow` over 1,000.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from fuzz_audio import fuzz_audio_folder
from fuzz_midi import INVALID, VALID, Entry, fuzz_folder, make_entry

from musgen.cli import main

SEED = 20240611
BROKEN_ENTRIES = ("directory_named_mid", "symlink_loop", "broken_link", "fifo")
# Reasons that mean the build's own safety net caught something the readers should have refused.
CRASH_REASONS = ("worker process crashed", "processing exceeded")


def _build(args: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["data", "build", *args, "-q"])
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.strip() and "file/s]" not in line and "piece/s]" not in line and "it/s]" not in line
    ]  # progress bars
    return code, err


def _outcome(out: Path) -> tuple[dict, set[str], dict[str, str]]:
    manifest = json.loads((out / "manifest.json").read_text())
    used = {p for s in ("train", "valid", "test") for p in json.loads((out / f"{s}.pieces.json").read_text())}
    return manifest, used, {s["path"]: s["reason"] for s in manifest["skipped"]}


def check_outcome(entries: list[Entry], out: Path, valid: set[str], invalid: set[str]) -> Counter:
    """The manifest accounts for every entry exactly once; returns a count of outcomes per kind."""
    manifest, used, skipped = _outcome(out)
    kinds = {e.rel: e.kind for e in entries}
    assert manifest["files_found"] == len(entries)
    assert not used & set(skipped) and used | set(skipped) == set(kinds)
    for rel, reason in skipped.items():
        assert reason.strip() and "\n" not in reason and "Traceback" not in reason, (rel, reason)
        assert not reason.startswith(CRASH_REASONS), f"{rel} ({kinds[rel]}): {reason} [seed {SEED}]"
    for rel, kind in kinds.items():
        if kind in valid:
            assert rel in used, f"valid {kind} file {rel} skipped: {skipped.get(rel)} [seed {SEED}]"
        if kind in invalid:
            assert rel in skipped, f"unusable {kind} file {rel} was used [seed {SEED}]"
    return Counter((kinds[rel], "used" if rel in used else "skipped") for rel in kinds)


def _midi_fuzz(tmp_path: Path, capsys, n: int, seed: int) -> Counter:
    entries = fuzz_folder(tmp_path / "midi", n, seed, entries=True)
    if os.geteuid() == 0:  # root reads a chmod 000 file: not "unreadable" here (see the test below)
        entries = [e for e in entries if e.kind != "unreadable"]
        for path in (tmp_path / "midi").glob("*_unreadable.mid*"):
            path.unlink()
    t0 = time.perf_counter()
    code, err = _build(
        ["--midi-dir", str(tmp_path / "midi"), "--out", str(tmp_path / "data"), "--set", "workers=2"], capsys
    )
    assert code == 0, err
    outcome = check_outcome(
        entries,
        tmp_path / "data",
        valid=set(VALID) | {"non_utf8_name"},
        invalid=set(INVALID) | set(BROKEN_ENTRIES) | {"unreadable"},
    )
    used = sum(v for (_, o), v in outcome.items() if o == "used")
    print(
        f"\nMIDI fuzz (seed {seed}): {len(entries)} entries, {used} used, {len(entries) - used} skipped, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return outcome


def test_fuzzed_midi_folder(tmp_path, capsys):
    _midi_fuzz(tmp_path, capsys, 250, SEED)


@pytest.mark.slow
def test_fuzzed_midi_folder_1200(tmp_path, capsys):
    outcome = _midi_fuzz(tmp_path, capsys, 1200, SEED + 1)
    with capsys.disabled():
        for kind in sorted({k for k, _ in outcome}):
            print(f"  {kind}: {outcome[(kind, 'used')]} used, {outcome[(kind, 'skipped')]} skipped")


def test_nothing_usable_exits_2_with_one_line(tmp_path, capsys):
    import random

    rng = random.Random(SEED)
    (tmp_path / "junk").mkdir()
    for i, kind in enumerate(sorted(INVALID) + list(BROKEN_ENTRIES)):
        make_entry(tmp_path / "junk", f"j{i}_{kind}.mid", kind, rng)
    code, err = _build(["--midi-dir", str(tmp_path / "junk"), "--out", str(tmp_path / "data")], capsys)
    assert code == 2 and len(err) == 1 and "no usable MIDI file" in err[0], err
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_unreadable_file_is_skipped_by_a_user_who_cannot_read_it(tmp_path):
    """chmod 000 stops anyone but root. As root, the build runs in a forked child that has dropped to
    the `nobody` user, so the permission is real; as another user it runs as that user."""
    import random

    from musgen.data import DataConfig, build

    base = Path(tempfile.mkdtemp(prefix="musgen-perm-", dir="/tmp"))  # pytest's tmp is root-only (0700)
    try:
        os.chmod(base, 0o777)
        rng = random.Random(SEED)
        (base / "midi").mkdir()
        for i in range(3):
            make_entry(base / "midi", f"good{i}.mid", "valid", rng)
        make_entry(base / "midi", "locked.mid", "unreadable", rng)
        os.chmod(base / "midi", 0o755)
        out = base / "data"
        if os.geteuid() != 0:
            manifest = build(out, midi_dir=base / "midi", config=DataConfig(workers=1))
        else:
            pid = os.fork()
            if pid == 0:  # child: drop root for good, build, report through the exit status
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                except OSError:
                    os._exit(1)
                try:
                    build(out, midi_dir=base / "midi", config=DataConfig(workers=1))
                except BaseException:  # noqa: BLE001 - reported as the exit status
                    os._exit(3)
                os._exit(0)
            deadline = time.monotonic() + 600  # a child forked from a threaded process could deadlock
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            if done[0] == 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the unprivileged build did not finish in 600 s")
            status = done[1]
            if os.waitstatus_to_exitcode(status) == 1:
                pytest.skip("cannot drop root privileges here (setuid to nobody failed)")
            assert os.waitstatus_to_exitcode(status) == 0
            manifest = json.loads((out / "manifest.json").read_text())
        reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
        assert reasons == {"locked.mid": "permission denied"}
        assert sum(s["pieces"] for s in manifest["splits"].values()) == 3
    finally:
        os.chmod(base / "midi" / "locked.mid", 0o644)
        shutil.rmtree(base, ignore_errors=True)


def _audio_fuzz(tmp_path: Path, capsys, n: int, seed: int) -> None:
    import fuzz_audio

    entries = fuzz_audio_folder(tmp_path / "audio", n, seed)
    code, err = _build(
        ["--audio-dir", str(tmp_path / "audio"), "--out", str(tmp_path / "data"), "--set", "workers=2"],
        capsys,
    )
    assert code == 0, err
    outcome = check_outcome(
        entries,
        tmp_path / "data",
        valid=set(fuzz_audio.VALID) | {"non_utf8_name"},
        invalid=set(fuzz_audio.INVALID) | {"directory_named_wav", "fifo"},
    )
    used = sum(v for (_, o), v in outcome.items() if o == "used")
    print(f"\naudio fuzz (seed {seed}): {len(entries)} entries, {used} used, {len(entries) - used} skipped")
    manifest, _, skipped = _outcome(tmp_path / "data")
    assert "NaN" in " ".join(r for p, r in skipped.items() if "_nan" in p)


def test_fuzzed_audio_folder(tmp_path, capsys):
    _audio_fuzz(tmp_path, capsys, 40, SEED)


@pytest.mark.slow
def test_fuzzed_audio_folder_300(tmp_path, capsys):
    _audio_fuzz(tmp_path, capsys, 300, SEED + 1)
