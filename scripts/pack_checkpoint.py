"""Packs a run's checkpoint for shipping in checkpoints/ (float16 weights, the run's curves): the latest
one, or with ``--pick best`` the kept one with the lowest validation NLL (model selection on the
valid split; the test split stays for ``musgen eval``).

    python scripts/pack_checkpoint.py RUN_DIR checkpoints/FAMILY [--pick best|last]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from musgen.checkpoint import load_portable, pack_checkpoint, step_dirs


def best_checkpoint(run_dir: Path) -> Path:
    """The kept checkpoint of RUN_DIR with the lowest validation NLL (the latest when none has one)."""
    kept = [path for _, path in step_dirs(run_dir / "checkpoints")]
    if not kept:
        return run_dir
    scored = [
        (load_portable(p).meta.get("metrics", {}).get("valid_nll", float("inf")), -i, p)
        for i, p in enumerate(kept)
    ]
    return min(scored)[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "run_dir", type=Path, help="a RUN_DIR (its latest checkpoint) or a checkpoint directory"
    )
    parser.add_argument("out", type=Path, help="the packed checkpoint directory to write")
    parser.add_argument(
        "--pick",
        choices=["last", "best"],
        default="last",
        help="the latest checkpoint (default) or the kept one with the lowest valid NLL",
    )
    args = parser.parse_args()
    source = best_checkpoint(args.run_dir) if args.pick == "best" else args.run_dir
    out = pack_checkpoint(source, args.out, metrics_file=args.run_dir / "metrics.jsonl")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {source} -> {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
