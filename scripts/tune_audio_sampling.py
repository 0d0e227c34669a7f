"""Chooses an audio prior's recommended sampling settings by measurement and stores them in the
checkpoint (as scripts/tune_sampling.py does for the symbolic models): for each temperature / top-p
setting of a grid (one value for every codebook level, or one per level; a third field, when given,
is ``max_silence`` in seconds, inf for no limit), ``--prompts`` VALID-split
prompts are continued (4 s prompt, 6 s new) and the new audio is compared with as many 6-s clips
of TRAIN-split pieces by the audio Frechet distance (``musgen.eval.audio.evaluate_continuations``;
the test split stays for scripts/eval_audio.py), once per seed in ``--seeds`` (one draw of 16
prompts is noisy: the same setting can read 450 or 620). The setting with the lowest mean distance
wins; ``--write`` puts it in the checkpoint's musgen.json (``"sampling"``, the table under
``"sampling_chosen_by"``, an earlier choice's table under its ``"earlier"``).

    python scripts/tune_audio_sampling.py checkpoints/prior --data data/bach_audio \\
        [--grid 1.1:1.0,1.2/1.0/0.3/0.1:1.0,1.3/1.0/0.1/0.05:1.0:0] [--seeds 0,100] [--prompts 16] [--write] \\
        [--out scripts/results/tune_audio_sampling.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import musgen  # noqa: E402
from musgen.checkpoint import set_sampling_defaults  # noqa: E402
from musgen.eval.audio import evaluate_continuations  # noqa: E402
from musgen.generate.sampling import one_or_per_level  # noqa: E402

DEFAULT_GRID = "0.9:1.0,1.0:1.0,1.1:1.0,1.2:1.0"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="an audio prior checkpoint or RUN_DIR")
    parser.add_argument("--data", type=Path, required=True, help="the audio DATA_DIR it trained on")
    parser.add_argument(
        "--grid",
        default=DEFAULT_GRID,
        help="temperature:top_p[:max_silence] settings, comma-separated; temperature and top_p may "
        "give one number per codebook level, joined by / (e.g. 1.2/1.0/0.3/0.1:1.0); max_silence is "
        "in seconds (inf: no limit; left out: the checkpoint's)",
    )
    parser.add_argument("--seeds", default="0,100", help="comma-separated: one draw of the prompts each")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--prompt-seconds", type=float, default=4.0)
    parser.add_argument("--new-seconds", type=float, default=6.0)
    parser.add_argument("--write", action="store_true", help="store the winner in the checkpoint")
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results" / "tune_audio_sampling.json")
    args = parser.parse_args()
    prior = musgen.load(args.checkpoint)
    seeds = [int(v) for v in args.seeds.split(",")]
    rows = []
    setting = one_or_per_level(float, sep="/")  # "," already separates the grid's pairs
    for pair in args.grid.split(","):
        temperature, top_p, *rest = (setting(v) for v in pair.split(":"))
        max_silence = rest[0] if rest else None  # None: the checkpoint's recommendation
        start = time.time()
        reports = [
            evaluate_continuations(
                prior,
                args.data,
                "valid",
                "train",
                count=args.prompts,
                prompt_seconds=args.prompt_seconds,
                new_seconds=args.new_seconds,
                seed=seed,
                temperature=temperature,
                top_p=top_p,
                max_silence=max_silence,
            )
            for seed in seeds
        ]
        per_seed = [report["model"]["frechet_distance"] for report in reports]
        # the cap the draws used (given, else the checkpoint's), so that --write stores what was measured
        used = reports[0]["sampling"].get("max_silence")
        rows.append(
            {
                "temperature": temperature,
                "top_p": top_p,
                "max_silence": None if used is None or math.isinf(used) else used,  # JSON null: no limit
                "frechet": sum(per_seed) / len(per_seed),
                "frechet_per_seed": dict(zip(seeds, per_seed, strict=True)),
                "silent_fraction": sum(r["silent_fraction"]["model"] for r in reports) / len(reports),
                "spectral_flatness": sum(r["spectral_flatness"]["model"] for r in reports) / len(reports),
                "real_vs_real": reports[0]["real_vs_real"]["frechet_distance"],
                "codec_only": reports[0]["codec_only"]["frechet_distance"],
                "seconds": round(time.time() - start, 1),
            }
        )
        print(json.dumps(rows[-1]))
    best = min(rows, key=lambda row: row["frechet"])
    result = {
        "checkpoint": str(prior.checkpoint.path),
        "split": "valid (prompts) / train (comparison clips)",
        "prompts": args.prompts,
        "seeds": seeds,
        "table": rows,
        # max_silence None (no limit) is stored as no recommendation
        "chosen": {
            key: best[key] for key in ("temperature", "top_p", "max_silence") if best.get(key) is not None
        },
    }
    if args.write:  # the evidence of an earlier choice stays, under "earlier"
        earlier = prior.checkpoint.meta.get("sampling_chosen_by")
        evidence = {"script": "scripts/tune_audio_sampling.py", **result}
        set_sampling_defaults(
            prior.checkpoint.path, result["chosen"], evidence | ({"earlier": earlier} if earlier else {})
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"chosen {result['chosen']}; wrote {args.out}")


if __name__ == "__main__":
    main()
