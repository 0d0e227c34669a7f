"""Chooses a hinted infilling checkpoint's hint strength by measurement, and stores it in the
checkpoint: for each scale of a grid, the gap NLL given both sides (hints scaled) of every 2-, 4- and
8-bar gap (``--sizes``; every voice) of the VALID split's pieces (the test split stays for scripts/eval_infill.py);
the scale with the lowest mean of the three per-token NLLs wins (0 turns the hints off: the model
reads the gap as a continuation). Written into the checkpoint's musgen.json (``"hint_scale"``, the
table under ``"hint_scale_chosen_by"``), where loading the checkpoint finds it.

    python scripts/tune_hints.py checkpoints/transformer-infill --data data/bach-tracks \\
        [--grid 0,0.25,0.5,0.75,1] [--sizes 2,4,8] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import symusic  # noqa: E402
import torch  # noqa: E402
from eval_infill import nll_both, nll_left  # noqa: E402

import musgen  # noqa: E402
from musgen.checkpoint import update_meta  # noqa: E402
from musgen.data.dataset import source_files  # noqa: E402
from musgen.errors import MusgenError  # noqa: E402
from musgen.generate.infill import Selection  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--data", type=Path, required=True, help="the tracks-layout data set it was trained on"
    )
    parser.add_argument("--split", default="valid")
    parser.add_argument("--grid", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--sizes", default="2,4,8", help="gap lengths in bars")
    parser.add_argument("--write", action="store_true", help="store the chosen scale in the checkpoint")
    args = parser.parse_args()
    t0 = time.time()
    gen = musgen.load(args.checkpoint)
    hints = getattr(gen.models["model"], "hint_embed", None)
    if hints is None or gen.cfg.data.infill_order != "hinted":
        raise SystemExit(f"{args.checkpoint} was not trained in the hinted infilling order")
    infiller = gen.infiller()
    sizes = [int(s) for s in args.sizes.split(",")]
    pieces = [infiller.frame(symusic.Score(str(f))) for f in source_files(args.data, args.split)]
    gaps = [
        (size, ids, Selection(first, first + size - 1, None))
        for size in sizes
        for ids, n_bars in pieces
        for first in range(2, n_bars - size, size)
    ]
    table = []
    with torch.no_grad():
        left = [nll_left(infiller, ids, sel) for _, ids, sel in gaps]  # (NLL, tokens): no hint read
        for scale in (float(s) for s in args.grid.split(",")):
            hints.scale = scale
            sums = {size: [0.0, 0.0, 0] for size in sizes}
            for (size, ids, sel), (left_nll, n) in zip(gaps, left, strict=True):
                row = sums[size]
                row[0], row[1], row[2] = row[0] + nll_both(infiller, ids, sel), row[1] + left_nll, row[2] + n
            nll = {f"{size}_bars": (b / n, lt / n) for size, (b, lt, n) in sums.items()}
            table.append(
                {
                    "hint_scale": scale,
                    "both_sides_nll_per_token": {k: round(v[0], 5) for k, v in nll.items()},
                    "left_only_nll_per_token": {k: round(v[1], 5) for k, v in nll.items()},
                    "mean_both_sides": round(sum(v[0] for v in nll.values()) / len(nll), 5),
                }
            )
            print(json.dumps(table[-1]), flush=True)
    best = min(table, key=lambda row: row["mean_both_sides"])
    evidence = {"split": args.split, "data": str(args.data), "gaps": len(gaps), "table": table}
    print(f"chosen hint_scale {best['hint_scale']} ({time.time() - t0:.0f} s)")
    if args.write:
        try:
            update_meta(args.checkpoint, {"hint_scale": best["hint_scale"], "hint_scale_chosen_by": evidence})
        except MusgenError as err:
            raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main()
