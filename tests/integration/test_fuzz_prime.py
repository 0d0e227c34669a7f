"""Fuzz `musgen sample --prime` with hostile MIDI files (tests/fuzz_midi.py, seeded): a usable primer
gives a sample that symusic reads back, anything else one line on stderr and exit status 2, never a
traceback or a hang. Runs in-process through the same `main()` as the console script."""

from __future__ import annotations

import pytest
import symusic
from fuzz_midi import ENTRY_KINDS, INVALID, KINDS, VALID, fuzz_folder

from musgen.cli import main

SEED = 7031
# A primer has no minimum of notes; everything else in INVALID holds no usable note.
UNUSABLE = set(INVALID) - {"too_few_notes"}
NOT_FILES = ("directory_named_mid", "symlink_loop", "broken_link", "fifo")


def _prime_fuzz(run_dir, tmp_path, capsys, n: int, seed: int) -> tuple[int, int]:
    entries = fuzz_folder(tmp_path / "primes", n, seed, entries=True)
    assert {e.kind for e in entries} == set(KINDS) | set(ENTRY_KINDS)  # every kind at least once
    ok = refused = 0
    for i, entry in enumerate(entries):
        out = tmp_path / f"out{i}"
        capsys.readouterr()
        code = main(
            [
                "sample",
                "--checkpoint",
                str(run_dir),
                "--prime",
                str(tmp_path / "primes" / entry.rel),
                "--out",
                str(out),
                "--length",
                "4",
                "--seed",
                "0",
                "-q",
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        where = f"{entry.kind} {entry.rel} [seed {seed}]"
        if code == 0:
            ok += 1
            assert symusic.Score(str(out / "sample_000.mid")).note_num() >= 0, where
        else:
            refused += 1
            assert code == 2 and len(err) == 1 and err[0].startswith("musgen: error:"), (where, err)
            assert "prime" in err[0], (where, err)  # says that the primer is the problem
            assert not out.exists(), where  # nothing half-written
        if entry.kind in VALID or entry.kind in ("non_utf8_name", "unreadable"):  # root reads chmod 000
            assert code == 0 or entry.kind == "unreadable", (where, err)
        if entry.kind in UNUSABLE or entry.kind in NOT_FILES:
            assert code == 2, where
    print(f"\nprime fuzz (seed {seed}): {len(entries)} primers, {ok} sampled, {refused} refused")
    return ok, refused


def test_fuzzed_primers(quick_transformer_run, tmp_path, capsys):
    ok, refused = _prime_fuzz(quick_transformer_run.run_dir, tmp_path, capsys, 60, SEED)
    assert ok and refused


@pytest.mark.slow
def test_fuzzed_primers_400(quick_transformer_run, tmp_path, capsys):
    _prime_fuzz(quick_transformer_run.run_dir, tmp_path, capsys, 400, SEED + 1)
