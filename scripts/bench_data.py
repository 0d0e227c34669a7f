"""Data pipeline throughput on the bach corpus: music21 -> MIDI, tokenization, cached rebuild.

python scripts/bench_data.py [--limit N] [--out scripts/results/bench_data.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from miditok.constants import CURRENT_MIDITOK_VERSION

from musgen.data import DataConfig, build
from musgen.data.corpus import corpus_midi_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="only the first N bach pieces")
    ap.add_argument("--tokenizer", default="remi")
    ap.add_argument("--out", type=Path, default=Path("scripts/results/bench_data.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="musgen-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["MUSGEN_CACHE"] = str(tmp / "cache")  # cold cache, used by build() too
        t = time.perf_counter()
        _, files, failed = corpus_midi_files("bach", limit=args.limit)
        convert_s = time.perf_counter() - t

        cfg = DataConfig(tokenizer=args.tokenizer)
        t = time.perf_counter()
        m = build(tmp / "data", corpus="bach", config=cfg, force=True, limit=args.limit)
        tokenize_s = time.perf_counter() - t
        pieces = sum(s["pieces"] for s in m["splits"].values())
        tokens = sum(s["tokens"] for s in m["splits"].values())

        t = time.perf_counter()
        build(tmp / "data", corpus="bach", config=cfg, limit=args.limit)
        cached_s = time.perf_counter() - t

    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "miditok": CURRENT_MIDITOK_VERSION,
            "numpy": np.__version__,
        },
        "corpus": "bach",
        "limit": args.limit,
        "tokenizer": m["tokenizer"],
        "convert": {
            "pieces": len(files),
            "failed": len(failed),
            "seconds": round(convert_s, 2),
            "pieces_per_s": round(len(files) / convert_s, 2),
        },
        "tokenize": {
            "pieces": pieces,
            "tokens": tokens,
            "skipped": len(m["skipped"]),
            "seconds": round(tokenize_s, 2),
            "pieces_per_s": round(pieces / tokenize_s, 1),
            "tokens_per_s": round(tokens / tokenize_s),
        },
        "cached_rebuild_s": round(cached_s, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    rows = [
        (
            "music21 -> MIDI (cold)",
            f"{len(files)} pieces",
            f"{convert_s:.1f} s",
            f"{len(files) / convert_s:.1f} pieces/s",
        ),
        (
            "tokenize (force build)",
            f"{pieces} pieces",
            f"{tokenize_s:.1f} s",
            f"{pieces / tokenize_s:.0f} pieces/s, {tokens / tokenize_s:,.0f} tokens/s",
        ),
        ("cached rebuild", "", f"{cached_s:.3f} s", ""),
    ]
    for r in rows:
        print(f"{r[0]:<24} {r[1]:>12} {r[2]:>9}  {r[3]}")
    print(f"-> {args.out}  (cpus={os.cpu_count()}, miditok {CURRENT_MIDITOK_VERSION})")


if __name__ == "__main__":
    main()
