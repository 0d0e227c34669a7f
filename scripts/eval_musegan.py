"""MuseGAN's objective metrics (Dong et al. 2018) for trained runs next to the data's.

Per track: EB (empty-bar rate), UPC (used pitch classes per non-empty bar), QN (qualified-note
rate: notes of at least a 32nd), DP (drum-pattern rate, drum tracks only); per track pair: TD (tonal
distance). For the training phrases, the held-out (valid + test) phrases, and ``--num-samples``
generated phrases binarised by threshold (0.5) and by Bernoulli sampling.

Reproduce the README / issue numbers (Bach chorales, the default preset, ~50 min on a 2-core CPU)::

    musgen data build --corpus bach --out data/bach
    musgen train musegan --data data/bach --out runs/musegan
    python scripts/eval_musegan.py --data data/bach --runs runs/musegan
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from musgen.eval.musegan import evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "eval_musegan.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--runs", type=Path, nargs="+", required=True, help="RUN_DIRs or checkpoint directories"
    )
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--temperature",
        type=float,
        help="of the voice draws (default: the checkpoint's recommendation, else 1)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = []
    for run in args.runs:
        start = time.time()
        result = evaluate(run, args.data, args.num_samples, args.seed, temperature=args.temperature)
        result["seconds"] = round(time.time() - start, 1)
        print(f"== {run} (step {result['step']})\n{result['table']}\n")
        results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "runs": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
