"""Held-out numbers of the audio path: the codec's reconstructions (multi-resolution STFT distance,
log-mel L1, SI-SDR, codebook usage and perplexity, bitrate) and the prior's NLL on the test split.

Reproduce the README / issue numbers (rendered Bach chorales, default presets, about 1 h on a
2-core CPU)::

    musgen data build --corpus bach --render --out data/bach_audio
    musgen train vqvae --data data/bach_audio --out runs/vqvae
    musgen train prior --data data/bach_audio --out runs/prior --set vqvae=runs/vqvae
    python scripts/eval_audio.py --data data/bach_audio --codec runs/vqvae --prior runs/prior
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import musgen
from musgen.eval.audio import evaluate_codec, evaluate_continuations
from musgen.generate.sampling import one_or_per_level
from musgen.models.prior import evaluate_prior
from musgen.models.vqvae import ENCODE_PRECISIONS

RESULTS = Path(__file__).resolve().parent / "results" / "eval_audio.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="an audio DATA_DIR")
    parser.add_argument("--codec", type=Path, help="a vqvae RUN_DIR or checkpoint")
    parser.add_argument("--prior", type=Path, help="a prior RUN_DIR or checkpoint")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="per piece, for the codec")
    parser.add_argument(
        "--levels",
        type=int,
        nargs="*",
        help="also evaluate the codec from its first N residual levels alone, for each N given "
        "(a codec trained with quantizer.quantize_dropout): quality against bitrate",
    )
    parser.add_argument(
        "--encode-precision",
        choices=ENCODE_PRECISIONS,
        default="auto",
        help="the codec encoder's: auto = bf16 on a CPU with native bf16, float32 elsewhere",
    )
    parser.add_argument(
        "--continuations",
        type=int,
        default=16,
        help="with --prior: continue this many held-out prompts (4 s prompt, 6 s new) and compare the "
        "new audio with real audio by Frechet distance (0: skip)",
    )
    per_level = " (one value, or one per codebook level, comma-separated; default: the checkpoint's)"
    parser.add_argument("--temperature", type=one_or_per_level(float), help="sampling" + per_level)
    parser.add_argument("--top-k", type=one_or_per_level(int), help="sampling" + per_level)
    parser.add_argument("--top-p", type=one_or_per_level(float), help="sampling" + per_level)
    parser.add_argument(
        "--max-silence",
        type=float,
        help="sampling: seconds of digital silence in a row at most (inf: no limit)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the first continuation (then +1 each)")
    parser.add_argument(
        "--no-likelihood", action="store_true", help="skip the prior's held-out NLL (encodes the train split)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result: dict = {"data": str(args.data)}
    if args.codec:
        start = time.time()
        codec = musgen.load(args.codec)
        result["codec"] = {
            "checkpoint": str(codec.checkpoint.path),
            "step": codec.checkpoint.meta["step"],
            **evaluate_codec(codec, args.data, args.split, args.max_seconds, precision=args.encode_precision),
            "eval_seconds": round(time.time() - start, 1),
        }
        print(json.dumps(result["codec"], indent=1))
        for n in args.levels or []:
            start = time.time()
            result[f"codec_{n}_levels"] = {
                **evaluate_codec(
                    codec, args.data, args.split, args.max_seconds, levels=n, precision=args.encode_precision
                ),
                "eval_seconds": round(time.time() - start, 1),
            }
            print(json.dumps(result[f"codec_{n}_levels"], indent=1))
    if args.prior:
        start = time.time()
        prior = musgen.load(args.prior)
        result["prior"] = {
            "checkpoint": str(prior.checkpoint.path),
            "step": prior.checkpoint.meta["step"],
            **({} if args.no_likelihood else evaluate_prior(prior, args.data, args.split)),
            "eval_seconds": round(time.time() - start, 1),
        }
        print(json.dumps(result["prior"], indent=1))
        if args.continuations:
            start = time.time()
            result["continuations"] = {
                **evaluate_continuations(
                    prior,
                    args.data,
                    args.split,
                    count=args.continuations,
                    seed=args.seed,
                    temperature=args.temperature,
                    top_k=args.top_k,
                    top_p=args.top_p,
                    max_silence=args.max_silence,
                ),
                "eval_seconds": round(time.time() - start, 1),
            }
            print(json.dumps(result["continuations"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
