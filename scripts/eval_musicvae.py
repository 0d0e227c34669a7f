"""Held-out evaluation of MusicVAE runs: reconstruction, interpolation and attribute vectors.

For every run, on the windows of a held-out split (default: test; ``valid+test`` joins splits) of
the data set, evenly spaced up to ``--max-windows``:

* teacher-forced accuracy: argmax of each step given z = mu and the true previous events;
* free-running accuracy: greedy decoding from z = mu, feeding back its own outputs;
  both over all steps and over "event" steps (target is a note-on / note-off, not a HOLD); and,
  for each, the recall and precision of event steps and the share right where both have an event
  (wrong onsets and wrong pitches apart);
* interpolation: for ``--pairs`` random pairs (A, B) of distinct held-out windows, decode ``--steps``
  points of the slerp between their latent means and measure the Hamming distance (fraction of
  differing steps) of each step to A and to B: it should rise strictly from A and fall strictly
  towards B; and whether every intermediate step decodes to a melody with notes;
* attribute vectors (when the checkpoint stores them, see scripts/attribute_vectors.py): the mean
  measured attribute of held-out windows decoded from mu + amount * v, for each ``--amounts``; it
  should rise with the amount.

Reproduce the README / issue numbers (folk corpus, default presets, ~70 min on a 2-core CPU)::

    musgen data build --corpus folk --out data/folk
    musgen train musicvae --data data/folk --out runs/musicvae
    musgen train musicvae --data data/folk --out runs/musicvae_flat --set model.decoder=flat
    musgen train musicvae --data data/folk --out runs/musicvae_2bar --config musicvae_2bar
    python scripts/attribute_vectors.py runs/musicvae --data data/folk --write
    python scripts/eval_musicvae.py --data data/folk --runs runs/musicvae runs/musicvae_flat runs/musicvae_2bar
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import musgen
from musgen.data.melody import FIRST_PITCH_ID, HOLD, MelodyConfig
from musgen.data.melody_data import MelodyWindows
from musgen.generate.interpolation import interpolation_path
from musgen.models.musicvae import MusicVAEGenerator, accuracy_metrics, accuracy_sums, measure_attribute

RESULTS = Path(__file__).resolve().parent / "results" / "eval_musicvae.json"


def accuracies(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The training loop's own accuracy definitions (all steps; note-on/off steps only)."""
    sums = accuracy_sums(torch.from_numpy(predicted), torch.from_numpy(target))
    return accuracy_metrics({k: float(v) for k, v in sums.items()})


def onsets_and_pitches(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Where the errors are: recall and precision of the target's event steps (note-on or note-off,
    any pitch), and the share of right events among the steps where both have one."""
    want, got = target != HOLD, predicted != HOLD
    both = want & got
    return {
        "event_recall": round(float(both.sum() / max(want.sum(), 1)), 4),
        "event_precision": round(float(both.sum() / max(got.sum(), 1)), 4),
        "right_where_both_have_events": round(
            float((predicted == target)[both].mean()) if both.any() else 0.0, 4
        ),
    }


def held_out_windows(data: Path, splits: str, cfg: MelodyConfig, limit: int) -> tuple[np.ndarray, int]:
    """At most ``limit`` windows of the ``+``-joined splits, evenly spaced; and how many there are."""
    windows = [w for split in splits.split("+") for w in _split_windows(data, split, cfg)]
    if not windows:
        raise SystemExit(f"no {cfg.num_bars}-bar windows in {splits} of {data}")
    chosen = np.unique(np.linspace(0, len(windows) - 1, min(limit, len(windows))).round().astype(int))
    return np.stack([windows[i] for i in chosen]), len(windows)


def _split_windows(data: Path, split: str, cfg: MelodyConfig) -> list[np.ndarray]:
    windows = MelodyWindows(data, split, cfg, progress=False)
    return [windows.window(i) for i in range(len(windows))]


def in_batches(fn, items: np.ndarray | torch.Tensor, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(items[lo : lo + batch])) for lo in range(0, len(items), batch)])


@torch.no_grad()
def reconstruction(generator: MusicVAEGenerator, target: np.ndarray, batch: int) -> dict[str, Any]:
    """Teacher-forced and free-running (z = mu, greedy) accuracies; also the means mu."""
    mu = torch.from_numpy(in_batches(lambda w: generator.encode_windows(w)[0].numpy(), target, batch))
    teacher = in_batches(
        lambda lo: generator.model.teacher_forced(mu[lo], torch.from_numpy(target[lo])).argmax(-1).numpy(),
        np.arange(len(target)),
        batch,
    )
    free = in_batches(generator.decode_events, mu, batch)
    return {
        "mu": mu,
        "teacher_forced": {**accuracies(teacher, target), **onsets_and_pitches(teacher, target)},
        "free_running": {**accuracies(free, target), **onsets_and_pitches(free, target)},
    }


def strictly_increasing(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) > 0))


@torch.no_grad()
def interpolation(
    generator: MusicVAEGenerator,
    target: np.ndarray,
    mu: torch.Tensor,
    pairs: int,
    steps: int,
    batch: int,
    seed: int,
) -> dict[str, Any]:
    """Distances of each slerp step to A and to B over random pairs of distinct windows."""
    rng = np.random.default_rng(seed)
    chosen = np.stack([rng.choice(len(target), size=2, replace=False) for _ in range(pairs)])  # (P, 2)
    z = torch.cat([interpolation_path(mu[i], mu[j], steps) for i, j in chosen])  # (P * steps, Z)
    paths = in_batches(generator.decode_events, z, batch).reshape(pairs, steps, -1)
    to_a = (paths != target[chosen[:, 0]][:, None]).mean(2).mean(0)
    to_b = (paths != target[chosen[:, 1]][:, None]).mean(2).mean(0)
    with_notes = (paths[:, 1:-1] >= FIRST_PITCH_ID).any(2)  # (P, steps - 2)
    return {
        "pairs": pairs,
        "steps": steps,
        "hamming_to_a": [round(float(x), 4) for x in to_a],
        "hamming_to_b": [round(float(x), 4) for x in to_b],
        "a_to_b_distance": round(float((target[chosen[:, 0]] != target[chosen[:, 1]]).mean()), 4),
        "to_a_rises_strictly": strictly_increasing(to_a),
        "to_b_falls_strictly": strictly_increasing(-to_b),
        "monotonic": strictly_increasing(to_a) and strictly_increasing(-to_b),
        "intermediate_steps_with_notes": round(float(with_notes.mean()), 4),
        "every_intermediate_step_has_notes": bool(with_notes.all()),
    }


@torch.no_grad()
def attribute_response(
    generator: MusicVAEGenerator, mu: torch.Tensor, amounts: list[float], count: int, batch: int
) -> dict[str, Any]:
    """Per stored attribute: its mean measured value in windows decoded from mu + amount * v."""
    chosen = np.unique(np.linspace(0, len(mu) - 1, min(count, len(mu))).round().astype(int))
    report: dict[str, Any] = {}
    for name in sorted(generator.attributes):
        vector = generator.attribute_vector(name)
        means = []
        for amount in amounts:
            decoded = in_batches(generator.decode_events, mu[chosen] + amount * vector, batch)
            means.append(float(np.nanmean(measure_attribute(decoded, name, generator.cfg.data))))
        report[name] = {
            "windows": len(chosen),
            "amounts": amounts,
            "mean_measured": [round(m, 4) for m in means],
            "rises_strictly": strictly_increasing(np.array(means)),
            "computed_from": generator.attributes[name].get("computed_from", {}),
        }
    return report


def evaluate_run(run: Path, data: Path, args: argparse.Namespace) -> dict:
    generator = musgen.load(run)
    assert isinstance(generator, MusicVAEGenerator), f"{run} is not a musicvae checkpoint"
    target, available = held_out_windows(data, args.split, generator.cfg.data, args.max_windows)
    recon = reconstruction(generator, target, args.batch)
    ckpt = generator.checkpoint
    result = {
        "run": str(run),
        "step": ckpt.meta.get("step"),
        "num_bars": generator.cfg.data.num_bars,
        "decoder": generator.cfg.model.decoder,
        "parameters": sum(p.numel() for p in generator.model.parameters()),
        "split": args.split,
        "windows": int(len(target)),
        "windows_available": available,
        "teacher_forced": recon["teacher_forced"],
        "free_running": recon["free_running"],
        "valid_metrics": ckpt.meta.get("metrics", {}),
        "interpolation": interpolation(
            generator, target, recon["mu"], args.pairs, args.steps, args.batch, args.seed
        ),
    }
    if generator.attributes:
        result["attributes"] = attribute_response(
            generator, recon["mu"], args.amounts, args.attribute_windows, args.batch
        )
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| model | params | windows | teacher-forced acc (events) | free-running acc (events) "
        "| Hamming to A, first -> last step | monotonic | notes in every step | attributes rise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        tf, fr, it = r["teacher_forced"], r["free_running"], r["interpolation"]
        ham = ", ".join(f"{x:.2f}" for x in it["hamming_to_a"])
        rise = ", ".join(f"{name}: {a['rises_strictly']}" for name, a in r.get("attributes", {}).items())
        lines.append(
            f"| {r['num_bars']}-bar {r['decoder']} (step {r['step']}) | {r['parameters'] / 1e6:.2f}M | {r['windows']} "
            f"| {tf['accuracy']:.3f} ({tf['event_accuracy']:.3f}) | {fr['accuracy']:.3f} ({fr['event_accuracy']:.3f}) "
            f"| {ham} | {it['monotonic']} | {it['every_intermediate_step_has_notes']} | {rise or 'not stored'} |"
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
    parser.add_argument(
        "--split", default="test", help="held-out split; join several with +, e.g. valid+test"
    )
    parser.add_argument(
        "--max-windows", type=int, default=2000, help="held-out windows per run (evenly spaced)"
    )
    parser.add_argument("--pairs", type=int, default=32, help="interpolation pairs")
    parser.add_argument("--steps", type=int, default=9, help="interpolation steps, endpoints included")
    parser.add_argument(
        "--amounts",
        type=float,
        nargs="+",
        default=[-2.0, -1.0, 0.0, 1.0, 2.0],
        help="attribute vector amounts to decode (when the checkpoint stores attribute vectors)",
    )
    parser.add_argument("--attribute-windows", type=int, default=256, help="held-out windows per amount")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    results = []
    for run in args.runs:
        t0 = time.time()
        result = evaluate_run(run, args.data, args)
        result["seconds"] = round(time.time() - t0, 1)
        results.append(result)
        print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
