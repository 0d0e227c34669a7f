"""Chooses a language-model checkpoint's recommended sampling settings by measurement, and stores
them in the checkpoint (issue 17): for each temperature / top-p setting of a grid, ``--num-samples``
unprimed samples are cut to ``--quarters`` quarter notes and compared with as many held-out excerpts
of the same length from the VALID split (the test split stays for ``musgen eval``), by the feature
Frechet distance and mgeval's overlap areas (``musgen.eval.fair_sets``). The setting with the lowest
Frechet distance wins; it is written into the checkpoint's musgen.json (``"sampling"``, with the
whole table under ``"sampling_chosen_by"``), where ``musgen sample`` and ``musgen eval`` find it.

    python scripts/tune_sampling.py checkpoints/transformer --data data/bach \\
        [--grid 1.0:1.0,0.9:1.0,0.9:0.95] [--num-samples 32] [--quarters 32] [--write] \\
        [--out scripts/results/tune_sampling_transformer.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import musgen  # noqa: E402
from musgen.checkpoint import set_sampling_defaults  # noqa: E402
from musgen.eval.distributions import compare_sets  # noqa: E402
from musgen.eval.evaluate import sample_tokens, split_pieces  # noqa: E402
from musgen.eval.fair_sets import excerpts  # noqa: E402
from musgen.eval.midi_stats import piece_features  # noqa: E402

DEFAULT_GRID = "1.0:1.0,0.9:1.0,0.9:0.95,0.8:0.95,0.7:0.95,0.8:0.9"
REPORTED = ("pitch_range", "mean_pitch_interval", "pitch_class_entropy", "polyphony", "used_pitch_classes")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--grid", default=DEFAULT_GRID, help="temperature:top_p pairs, comma-separated")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--quarters", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="store the winner in the checkpoint")
    parser.add_argument("--out", type=Path, help="JSON file for the table")
    args = parser.parse_args()

    generator = musgen.load(args.checkpoint)
    pieces, tokens_per_quarter = split_pieces(generator.tokenizer, args.data, args.split)
    reference = [e for p in pieces for e in excerpts(p, args.quarters)]
    rng = np.random.default_rng(args.seed)
    reference = [reference[i] for i in sorted(rng.permutation(len(reference))[: args.num_samples])]
    ref = [piece_features(s) for s in reference]
    need = sample_tokens(args.quarters, tokens_per_quarter)
    rows = []
    for pair in args.grid.split(","):
        temperature, top_p = (float(x) for x in pair.split(":"))
        start = time.time()
        samples = generator.generate(
            args.num_samples,
            length=need,
            min_length=need,
            seed=args.seed,
            temperature=temperature,
            top_p=top_p,
            top_k=0,
        )
        cut = [c[0] for c in (excerpts(s, args.quarters)[:1] for s in samples) if c]
        n = min(len(cut), len(ref))
        comparison = compare_sets(ref[:n], [piece_features(s) for s in cut[:n]])
        features = comparison["features"]
        row = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": 0,
            "pieces": n,
            "samples_too_short": len(samples) - len(cut),
            "feature_frechet": comparison["feature_frechet"],
            "mean_overlap_area": comparison["mean_overlap_area"],
            "min_overlap_area": min(
                f["overlap_area"] for f in features.values() if f["overlap_area"] is not None
            ),
            **{f"{name}_generated": features[name].get("generated_mean") for name in REPORTED},
            **{f"{name}_held_out": features[name].get("reference_mean") for name in REPORTED},
            "seconds": round(time.time() - start, 1),
        }
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    best = min(rows, key=lambda r: r["feature_frechet"])
    settings = {"temperature": best["temperature"], "top_k": 0, "top_p": best["top_p"]}
    result = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "split": args.split,
        "num_samples": args.num_samples,
        "quarters": args.quarters,
        "seed": args.seed,
        "criterion": "lowest feature Frechet distance to held-out excerpts of the same length",
        "chosen": settings,
        "rows": rows,
    }
    print("chosen:", settings)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.write:
        evidence = {k: v for k, v in result.items() if k not in ("checkpoint", "rows")}
        evidence["table"] = [
            {k: r[k] for k in ("temperature", "top_p", "feature_frechet", "mean_overlap_area")} for r in rows
        ]
        set_sampling_defaults(args.checkpoint, settings, evidence)
        print(f"written into {args.checkpoint}/musgen.json")


if __name__ == "__main__":
    main()
