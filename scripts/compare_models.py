"""Held-out NLL of the LSTM, the plain-attention transformer and the Music Transformer (relative
attention) on the built-in corpora, at about the same parameter count and the same training tokens.

    python scripts/compare_models.py [--corpora bach,folk] [--steps 300] [--mixed-precision bf16]
        [--out scripts/results/compare_models.json]

Each model trains with the one training loop (``musgen.train``) on the same windows (same seq_len,
batch, steps, seed), then is scored on the whole validation split, which plays no part in training
(no early stopping, no model selection). Runs live in runs/compare/CORPUS/MODEL; an interrupted
comparison resumes them. Bits per note divides the summed NLL by the number of Pitch tokens (one
per note in REMI).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import musgen  # noqa: E402
from musgen.checkpoint import step_dirs  # noqa: E402
from musgen.data import build  # noqa: E402
from musgen.data.tokenizers import load_tokenizer  # noqa: E402

# About 1.7-1.9M parameters each (printed in the results).
MODELS: dict[str, tuple[str, list[str]]] = {
    "lstm": (
        "lstm",
        [
            "model.embed_dim=192",
            "model.hidden_size=352",
            "model.num_layers=2",
            "model.dropout=0.1",
            "train.lr=0.002",
        ],
    ),
    "transformer_plain": ("transformer", ["model.attention=plain"]),
    "transformer_relative": ("transformer", ["model.attention=relative"]),
}
TRANSFORMER = [
    "model.d_model=192",
    "model.num_layers=4",
    "model.num_heads=6",
    "model.d_ff=768",
    "model.dropout=0.1",
    "model.max_relative_position=256",
    "train.lr=0.001",
]


def note_count(data_dir: Path, split: str) -> int:
    tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    pitch_ids = np.array([i for tok, i in tokenizer.vocab.items() if tok.startswith("Pitch_")])
    tokens = np.load(data_dir / f"{split}.tokens.npy")
    return int(np.isin(tokens, pitch_ids).sum())


def run_one(
    corpus: str,
    name: str,
    data_dir: Path,
    runs: Path,
    steps: int,
    seq_len: int,
    batch: int,
    precision: str = "no",
) -> dict:
    family, overrides = MODELS[name]
    overrides = [
        *(TRANSFORMER if family == "transformer" else []),
        *overrides,
        f"data.seq_len={seq_len}",
        f"train.batch_size={batch}",
        f"train.steps={steps}",
        "train.warmup_steps=30",
        "train.min_lr_ratio=0.05",
        f"train.eval_every={steps}",
        "train.eval_batches=0",
        f"train.save_every={steps // 2}",
        "train.seed=0",
        f"train.mixed_precision={precision if family == 'transformer' else 'no'}",
        "data.transpose=5",
    ]
    run_dir = runs / corpus / name
    start = time.perf_counter()
    done = any(step >= steps for step, _ in step_dirs(run_dir / "checkpoints"))
    if not done:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(True)  # one process trains several runs, in different precisions
        resume = (run_dir / "config.yaml").exists()
        musgen.train(family, data_dir, run_dir, overrides=[] if resume else overrides, resume=resume)
    seconds = time.perf_counter() - start
    final = None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "valid_nll" in record and record["step"] >= steps:
            final = record
    model = musgen.load(run_dir).models["model"]
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return {
        "corpus": corpus,
        "model": name,
        "params": params,
        "steps": steps,
        "train_tokens": steps * batch * seq_len,
        "valid_nll": final["valid_nll"],
        "valid_tokens": final["valid_tokens"],
        "train_seconds_this_call": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="bach,folk")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--mixed-precision",
        default="no",
        choices=["no", "bf16"],
        help="the transformers' precision (the LSTM trains in fp32: bf16 does not help it)",
    )
    parser.add_argument("--data-root", default=str(REPO / "data"))
    parser.add_argument("--runs", default=str(REPO / "runs" / "compare"))
    parser.add_argument("--out", default=str(REPO / "scripts" / "results" / "compare_models.json"))
    args = parser.parse_args()

    rows = []
    for corpus in args.corpora.split(","):
        data_dir = Path(args.data_root) / corpus
        build(data_dir, corpus=corpus)  # reused when already built with the same settings
        notes = note_count(data_dir, "valid")
        for name in args.models.split(","):
            row = run_one(
                corpus,
                name,
                data_dir,
                Path(args.runs),
                args.steps,
                args.seq_len,
                args.batch,
                args.mixed_precision,
            )
            nll_sum = row["valid_nll"] * row["valid_tokens"]
            row.update(
                valid_notes=notes,
                bits_per_token=row["valid_nll"] / math.log(2),
                bits_per_note=nll_sum / math.log(2) / notes,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seq_len": args.seq_len,
                "batch": args.batch,
                "mixed_precision": args.mixed_precision,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print("\n| corpus | model | params | NLL nats/token | bits/note |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['corpus']} | {r['model']} | {r['params'] / 1e6:.2f}M | {r['valid_nll']:.3f} | "
            f"{r['bits_per_note']:.2f} |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
