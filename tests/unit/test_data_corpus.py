"""Corpus conversion cache, ABC splitting and the MIDI folder scan."""

from __future__ import annotations

import os

from musgen.data.corpus import CONVERTER_VERSION, corpus_midi_files, scan_midi_dir, split_abc_tunes


def test_split_abc_tunes():
    text = "%abc preamble\nX:1\nT:a\nK:C\nCDE|\n\nX: 2\nT:b\nK:G\nGAB|\n"
    tunes = list(split_abc_tunes(text))
    assert [n for n, _ in tunes] == ["1", "2"]
    assert tunes[1][1].startswith("X: 2") and "GAB" in tunes[1][1] and "CDE" not in tunes[1][1]


def test_corpus_cache_is_reused(tmp_path):
    root, files, failed = corpus_midi_files("folk", cache_dir=tmp_path, limit=3, workers=1)
    assert len(files) + len(failed) == 3 and files
    assert all(f.is_relative_to(root) and f.suffix == ".mid" for f in files)
    assert files[0].relative_to(root).parts[0] == "airdsAirs"  # <collection>/<file>/X<n>.mid
    mtimes = [f.stat().st_mtime_ns for f in files]
    root2, files2, _ = corpus_midi_files("folk", cache_dir=tmp_path, limit=3)
    assert files2 == files and [f.stat().st_mtime_ns for f in files2] == mtimes
    assert not list(root.rglob("*.tmp"))


def test_scan_midi_dir(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/x.mid", "a/b/y.MIDI", "z.Mid", "notes.txt"):
        (tmp_path / p).write_bytes(b"MThd")
    (tmp_path / "dir.mid").mkdir()
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    (tmp_path / "dangling.mid").symlink_to(tmp_path / "nowhere.mid")
    files, skipped = scan_midi_dir(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/b/y.MIDI", "a/x.mid", "z.Mid"]
    reasons = {s["path"]: s["reason"] for s in skipped}
    assert set(reasons) == {"dir.mid", "dangling.mid"}
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0)
        try:
            _, skipped = scan_midi_dir(tmp_path)
            assert any(s["path"] == "locked" for s in skipped)
        finally:
            locked.chmod(0o755)


def test_conversions_by_an_older_converter_are_redone(tmp_path):
    root, files, _ = corpus_midi_files("folk", cache_dir=tmp_path, limit=2, workers=1)
    current = f"musgen:corpus={CONVERTER_VERSION}".encode()
    old = f"musgen:corpus={CONVERTER_VERSION - 1}".encode()
    assert all(current in f.read_bytes()[:64] for f in files)
    stale = files[0].read_bytes().replace(current, old)  # as an older converter wrote it
    files[0].write_bytes(stale)
    _, files2, _ = corpus_midi_files("folk", cache_dir=tmp_path, limit=2, workers=1)
    assert files2 == files and current in files[0].read_bytes()[:64]
