"""Held-out evaluation of MusicVAE runs: reconstruction accuracy and interpolation behaviour.

For every run, on the windows of a held-out split (default: valid) of the data set:

* teacher-forced accuracy: argmax of each step given z = mu and the true previous events;
* sampled (free-running) accuracy: greedy decoding from z = mu, feeding back its own outputs;
  both over all steps and over "event" steps (target is a note-on / note-off, not a HOLD);
* interpolation: for random pairs (A, B) of held-out windows, decode ``--steps`` points of the slerp
  between their latent means and measure the Hamming distance (fraction of differing steps) of each
  step to A and to B; ideally it rises monotonically from A and falls towards B.

Reproduce the README / issue numbers (folk corpus, default presets, ~70 min on a 2-core CPU)::

    musgen data build --corpus folk --out data/folk
    musgen train musicvae --data data/folk --out runs/musicvae
    musgen train musicvae --data data/folk --out runs/musicvae_flat --set model.decoder=flat
    musgen train musicvae --data data/folk --out runs/musicvae_2bar --config musicvae_2bar
    python scripts/eval_musicvae.py --data data/folk --runs runs/musicvae runs/musicvae_flat runs/musicvae_2bar
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import musgen
from musgen.data.melody_data import MelodyWindows
from musgen.models.musicvae import accuracy_metrics, accuracy_sums

RESULTS = Path(__file__).resolve().parent / "results" / "eval_musicvae.json"


def accuracies(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The training loop's own accuracy definitions (all steps; note-on/off steps only)."""
    sums = accuracy_sums(torch.from_numpy(predicted), torch.from_numpy(target))
    return accuracy_metrics({k: float(v) for k, v in sums.items()})


@torch.no_grad()
def evaluate_run(
    run: Path, data: Path, split: str, max_windows: int, pairs: int, steps: int, batch: int, seed: int
) -> dict:
    generator = musgen.load(run)
    model = generator.model
    windows = MelodyWindows(data, split, generator.cfg.data, progress=False)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(windows), size=min(max_windows, len(windows)), replace=False))
    target = np.stack([windows.window(int(i)) for i in chosen])  # (N, T)

    teacher, free = [], []
    for lo in range(0, len(target), batch):
        events = torch.from_numpy(target[lo : lo + batch])
        mu, _ = generator.encode_windows(events)
        teacher.append(model.teacher_forced(mu, events).argmax(-1).numpy())
        free.append(generator.decode_events(mu))
    teacher_acc = accuracies(np.concatenate(teacher), target)
    free_acc = accuracies(np.concatenate(free), target)

    # Interpolation between random held-out pairs: Hamming distance of each step to A and to B.
    a_idx = rng.choice(len(target), size=pairs)
    b_idx = rng.choice(len(target), size=pairs)
    to_a, to_b = np.zeros((pairs, steps)), np.zeros((pairs, steps))
    for p, (i, j) in enumerate(zip(a_idx, b_idx, strict=True)):
        path = generator.interpolate(target[i], target[j], steps)  # (steps, T)
        to_a[p] = (path != target[i]).mean(1)
        to_b[p] = (path != target[j]).mean(1)
    mean_a, mean_b = to_a.mean(0), to_b.mean(0)
    ckpt = generator.checkpoint
    return {
        "run": str(run),
        "step": ckpt.meta.get("step"),
        "num_bars": generator.cfg.data.num_bars,
        "decoder": generator.cfg.model.decoder,
        "parameters": sum(p.numel() for p in model.parameters()),
        "split": split,
        "windows": int(len(target)),
        "windows_available": len(windows),
        "teacher_forced": teacher_acc,
        "sampled": free_acc,
        "valid_metrics": ckpt.meta.get("metrics", {}),
        "interpolation": {
            "pairs": pairs,
            "steps": steps,
            "hamming_to_a": [round(float(x), 4) for x in mean_a],
            "hamming_to_b": [round(float(x), 4) for x in mean_b],
            "a_to_b_distance": float((target[a_idx] != target[b_idx]).mean()),
            "monotonic": bool(np.all(np.diff(mean_a) >= 0) and np.all(np.diff(mean_b) <= 0)),
        },
    }


def table(results: list[dict]) -> str:
    lines = [
        "| model | params | windows | teacher-forced acc (events) | sampled acc (events) | Hamming to A, first -> last step |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        tf, sa, it = r["teacher_forced"], r["sampled"], r["interpolation"]
        ham = ", ".join(f"{x:.2f}" for x in it["hamming_to_a"])
        lines.append(
            f"| {r['num_bars']}-bar {r['decoder']} (step {r['step']}) | {r['parameters'] / 1e6:.2f}M | {r['windows']} "
            f"| {tf['accuracy']:.3f} ({tf['event_accuracy']:.3f}) | {sa['accuracy']:.3f} ({sa['event_accuracy']:.3f}) "
            f"| {ham} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/folk"))
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("runs/musicvae"), Path("runs/musicvae_flat"), Path("runs/musicvae_2bar")],
    )
    parser.add_argument("--split", default="valid")
    parser.add_argument(
        "--max-windows", type=int, default=2000, help="held-out windows per run (random subset)"
    )
    parser.add_argument("--pairs", type=int, default=32, help="interpolation pairs")
    parser.add_argument("--steps", type=int, default=9, help="interpolation steps, endpoints included")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    results = []
    for run in args.runs:
        t0 = time.time()
        result = evaluate_run(
            run, args.data, args.split, args.max_windows, args.pairs, args.steps, args.batch, args.seed
        )
        result["seconds"] = round(time.time() - t0, 1)
        results.append(result)
        print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
