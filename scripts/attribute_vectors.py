"""Attribute vectors of a MusicVAE checkpoint, as in the MusicVAE paper (section 5.3).

For each attribute (density: note onsets per bar; pitch: mean MIDI pitch of the notes), measured on
the windows of the TRAINING split of the data set the model was trained on: the mean latent (mu) of
the windows in the attribute's top quartile minus the mean of its bottom quartile. Adding a multiple
of it to a clip's latent raises (or, negative, lowers) that attribute of the decoded melody::

    python scripts/attribute_vectors.py runs/musicvae --data data/folk --write
    musgen interpolate a.mid --attribute density --amount 1.5 --steps 5 --checkpoint runs/musicvae --out denser

Without --write the vectors are only summarised; with it they are stored in the checkpoint's
musgen.json under "attributes" (rewritten atomically). At most --max-windows windows are used,
evenly spaced through the split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import musgen
from musgen.checkpoint import update_meta
from musgen.data.melody_data import MelodyWindows, require_windows
from musgen.errors import MusgenError


def evenly_spaced(count: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices out of ``range(count)``, evenly spaced, first and last included."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def data_fingerprint(data: Path) -> str | None:
    """The fingerprint in DATA_DIR/manifest.json (None if unreadable): which build was measured."""
    try:
        return json.loads((data / "manifest.json").read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def compute(ckpt: Path, data: Path, split: str, max_windows: int, batch: int) -> dict[str, Any]:
    """name -> {"vector": [...], "computed_from": {...}} for every attribute."""
    generator = musgen.load(ckpt)
    if generator.family != "musicvae":
        raise MusgenError(f"attribute vectors need a musicvae checkpoint, not a {generator.family} one")
    windows = MelodyWindows(data, split, generator.cfg.data)
    require_windows(windows, data, split)
    chosen = evenly_spaced(len(windows), max_windows)
    events = np.stack([windows.window(int(i)) for i in chosen])
    vectors = generator.compute_attribute_vectors(events, batch_size=batch, progress=True)
    source = {
        "data": str(data),
        "data_fingerprint": data_fingerprint(data),
        "split": split,
        "windows_in_split": len(windows),
        "selection": "evenly spaced" if len(chosen) < len(windows) else "all",
        "checkpoint_step": generator.checkpoint.meta.get("step"),
    }
    for entry in vectors.values():
        entry["computed_from"] = {**source, **entry["computed_from"]}
    return vectors


def summary(vectors: dict[str, Any]) -> str:
    lines = ["attribute  bottom quartile -> top quartile (mean)  |vector|"]
    for name, entry in vectors.items():
        src = entry["computed_from"]
        norm = float(np.linalg.norm(entry["vector"]))
        lines.append(
            f"{name:<10} {src['bottom_quartile_mean']:8.2f} -> {src['top_quartile_mean']:8.2f} "
            f"{src['unit']:<30} {norm:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a musicvae checkpoint or RUN_DIR")
    parser.add_argument("--data", type=Path, required=True, help="the DATA_DIR the model was trained on")
    parser.add_argument("--split", default="train", help="split to measure (default: train)")
    parser.add_argument("--max-windows", type=int, default=4000, help="evenly spaced windows (default 4000)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--write", action="store_true", help="store the vectors in the checkpoint")
    args = parser.parse_args(argv)
    try:
        if args.max_windows < 4:
            raise MusgenError(f"--max-windows must be at least 4 (one per quartile), got {args.max_windows}")
        vectors = compute(args.checkpoint, args.data, args.split, args.max_windows, args.batch)
        print(summary(vectors))
        if args.write:
            print(f"written to {update_meta(args.checkpoint, {'attributes': vectors}) / 'musgen.json'}")
        else:
            print("not written: add --write to store them with the checkpoint")
    except MusgenError as err:
        print(f"attribute_vectors: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
