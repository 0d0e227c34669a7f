"""Decoding speed of the shipped token models, eager KV cache vs the compiled step (issue 23).

    python scripts/bench_decoding.py [--out scripts/results/bench_decoding.json] [--tokens 256]

For each shipped checkpoint that draws tokens (lstm, transformer, transformer-folk, prior): new
tokens per second at batch 1 and batch 8 through the model's own ``generate`` (decoding to MIDI or
audio included), eagerly and with ``compile=True`` (the static cache and torch.compile'd one-token
step, musgen.generate.static_decode), each the median of --repeats runs in this one process after
an untimed warm-up that also compiles. Both paths draw the same samples (tests/unit/test_static_decode.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_audio import timed  # noqa: E402  (scripts/ is on sys.path when a script runs)

import musgen  # noqa: E402

NAMES = ("lstm", "transformer", "transformer-folk", "prior")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results" / "bench_decoding.json")
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per sample (default 256)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name in NAMES:
        generator = musgen.load(REPO / "checkpoints" / name)
        model = generator.models["model"]
        length = {"length": args.tokens}
        if name == "prior":  # frames of the prior's levels: as many tokens as the others
            length = {"length": max(1, args.tokens // generator.levels)}
        for batch in (1, 8):
            row = {
                "checkpoint": f"checkpoints/{name}",
                "params": sum(p.numel() for p in model.parameters()),
                "batch": batch,
                "new_tokens": args.tokens,
            }
            for compile in (False, True):
                run = partial(generator.generate, batch, seed=0, compile=compile, **length)
                start = time.perf_counter()
                run()  # warm-up (compiles the step for this batch size)
                key = "compiled" if compile else "eager"
                row[f"{key}_warmup_s"] = round(time.perf_counter() - start, 1)
                row[f"{key}_tokens_per_s"] = round(batch * args.tokens / timed(run, args.repeats), 1)
            row["speedup"] = round(row["compiled_tokens_per_s"] / row["eager_tokens_per_s"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "machine": {
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "command": "python scripts/bench_decoding.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
