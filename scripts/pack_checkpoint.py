"""Packs a run's latest checkpoint for shipping in checkpoints/ (float16 weights, the run's curves).

    python scripts/pack_checkpoint.py RUN_DIR checkpoints/FAMILY
"""

from __future__ import annotations

import argparse
from pathlib import Path

from musgen.checkpoint import pack_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a RUN_DIR (its latest checkpoint) or a checkpoint directory")
    parser.add_argument("out", type=Path, help="the packed checkpoint directory to write")
    args = parser.parse_args()
    out = pack_checkpoint(args.run_dir, args.out, metrics_file=args.run_dir / "metrics.jsonl")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {args.run_dir} -> {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
