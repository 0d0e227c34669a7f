"""bf16 autocast vs fp32 training-step time on this CPU, for the pretrained language models' sizes
(issue 17: which precision the presets use). One forward + backward + AdamW step on random tokens,
fp32 and bf16 alternated twice, the best of the last ``--steps - 1`` steps each, in one process.

    python scripts/bench_precision.py [--threads 1] [--out scripts/results/bench_precision.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from musgen.models.lstm import LSTMLanguageModel, LSTMModelConfig  # noqa: E402
from musgen.models.transformer import MusicTransformer, TransformerModelConfig  # noqa: E402

VOCAB = 357


def step_seconds(model: torch.nn.Module, batch: int, length: int, bf16: bool, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randint(0, VOCAB, (batch, length))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), x.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "scripts/results/bench_precision.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "transformer 4x192 (8 x 512 tokens)": (
            MusicTransformer(
                VOCAB, TransformerModelConfig(d_model=192, num_layers=4, num_heads=6, d_ff=768), 512
            ),
            8,
            512,
        ),
        "transformer 6x256 (8 x 512 tokens)": (
            MusicTransformer(VOCAB, TransformerModelConfig(), 512),
            8,
            512,
        ),
        "lstm 2x384 (32 x 256 tokens)": (
            LSTMLanguageModel(
                VOCAB, LSTMModelConfig(embed_dim=256, hidden_size=384, num_layers=2, dropout=0.3)
            ),
            32,
            256,
        ),
    }
    rows = []
    for name, (model, batch, length) in models.items():
        fp32 = min(step_seconds(model, batch, length, False, args.steps) for _ in range(2))
        bf16 = min(step_seconds(model, batch, length, True, args.steps) for _ in range(2))
        rows.append({"model": name, "fp32_step_s": fp32, "bf16_step_s": bf16, "bf16_speedup": fp32 / bf16})
        print(
            f"{name:36s} fp32 {fp32:.3f} s  bf16 {bf16:.3f} s  bf16 speed-up {fp32 / bf16:.2f}x", flush=True
        )
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in flags]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "native_bf16": native,
                "threads": args.threads,
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
