"""Prints held-out MIDI files of a data set that a MusicVAE checkpoint can encode (long enough for
its window), for ``make demo``'s interpolation.

    python scripts/demo_clips.py DATA_DIR CHECKPOINT [N]
"""

from __future__ import annotations

import sys
from pathlib import Path

import musgen
from musgen.data.dataset import source_files
from musgen.errors import MusgenError


def main() -> None:
    data_dir, ckpt = Path(sys.argv[1]), Path(sys.argv[2])
    wanted = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    model = musgen.load(ckpt)
    found = []
    for path in source_files(data_dir, "test") + source_files(data_dir, "valid"):
        try:
            model.clip(path)
        except MusgenError:
            continue
        found.append(str(path))
        if len(found) == wanted:
            break
    if len(found) < wanted:
        sys.exit(f"only {len(found)} held-out pieces of {data_dir} are long enough for {ckpt}")
    print(" ".join(found))


if __name__ == "__main__":
    main()
