"""MuseGAN's objective evaluation: the paper's metrics (EB, UPC, QN, DP, TD) per track for the data's
phrases and for generated ones, side by side (``scripts/eval_musegan.py``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from musgen.data.pianoroll import PianorollConfig
from musgen.errors import MusgenError
from musgen.eval.pianoroll_metrics import RollLayout, format_table, pianoroll_metrics

log = logging.getLogger(__name__)


def roll_layout(cfg: PianorollConfig) -> RollLayout:
    return RollLayout(
        steps_per_bar=cfg.steps_per_bar,
        steps_per_beat=cfg.steps_per_quarter,
        lowest_pitch=cfg.lowest_pitch,
        track_names=tuple(cfg.track_names),
        drum_tracks=tuple(k for k in range(cfg.num_tracks) if cfg.is_drum(k)),
    )


def data_phrases(data_dir: Path, splits: tuple[str, ...], cfg: PianorollConfig) -> np.ndarray:
    """Every non-overlapping phrase of the given splits: (N, K, T, P) bool."""
    from dataclasses import replace

    from musgen.data.pianoroll_data import RollPhrases

    cut = replace(cfg, hop_bars=cfg.num_bars)
    phrases = []
    for split in splits:
        dataset = RollPhrases(data_dir, split, cut, progress=False)
        phrases += [dataset.phrase(i) for i in range(len(dataset))]
    return (
        np.stack(phrases)
        if phrases
        else np.zeros((0, cfg.num_tracks, cfg.phrase_steps, cfg.num_pitches), bool)
    )


def jaccard_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - |A & B| / |A | B| between the on-cells of every phrase in a (N, ...) and b (M, ...): (N, M)."""
    a, b = a.reshape(len(a), -1).astype(np.float32), b.reshape(len(b), -1).astype(np.float32)
    both = a @ b.T
    either = a.sum(1)[:, None] + b.sum(1)[None, :] - both
    return 1.0 - both / np.maximum(either, 1.0)


def diversity(
    generated: np.ndarray, held_out: np.ndarray, train: np.ndarray, n: int = 64
) -> dict[str, float]:
    """Mode collapse and copying: mean pairwise Jaccard distance of ``n`` generated phrases (and of
    ``n`` held-out ones, for scale), and the distance of each generated phrase to its nearest
    training phrase (mean and minimum)."""

    def pairwise(x: np.ndarray) -> float:
        d = jaccard_distances(x[:n], x[:n])
        return float(d[np.triu_indices(len(d), 1)].mean())

    nearest = jaccard_distances(generated[:n], train).min(axis=1)
    return {
        "pairwise_generated": pairwise(generated),
        "pairwise_held_out": pairwise(held_out),
        "nearest_train_mean": float(nearest.mean()),
        "nearest_train_min": float(nearest.min()),
    }


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path,
    num_samples: int = 1000,
    seed: int = 0,
    batch: int = 250,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Metrics of the training phrases, the held-out phrases, ``num_samples`` generated phrases
    (threshold and Bernoulli binarisation) and, for a conditional model, the held-out phrases with
    their first condition track given and the others generated (each phrase accompanied as often as
    it takes to write at least ``num_samples`` phrases); plus a text table of them all.
    ``temperature``: of the voice draws (voice_inference draw; default the checkpoint's)."""
    from musgen.generator import load
    from musgen.models.musegan import MuseGANGenerator

    generator = load(checkpoint)
    if not isinstance(generator, MuseGANGenerator):
        raise MusgenError(f"the piano-roll metrics need a musegan checkpoint, not a {generator.family} one")
    cfg: PianorollConfig = generator.cfg.data
    temperature = generator.sampling_settings(temperature=temperature)["temperature"]
    layout = roll_layout(cfg)
    held_out = data_phrases(Path(data_dir), ("valid", "test"), cfg)
    train = data_phrases(Path(data_dir), ("train",), cfg)
    reports: dict[str, Any] = {
        "data (train)": pianoroll_metrics(train, layout),
        "data (held out)": pianoroll_metrics(held_out, layout),
    }
    for binarize in ("threshold", "bernoulli"):
        rolls = [
            generator.generate_rolls(
                min(batch, num_samples - i), seed=seed + i, binarize=binarize, temperature=temperature
            )
            for i in range(0, num_samples, batch)
        ]
        reports[f"generated ({binarize})"] = pianoroll_metrics(np.concatenate(rolls), layout)
        if binarize == "threshold":
            spread = diversity(np.concatenate(rolls), held_out, train)
    if generator.cond_ids:  # accompaniment: every held-out phrase's own track given, the others generated
        k = generator.cond_ids[0]
        # each held-out phrase accompanied as often as it takes to write num_samples phrases or more
        repeats = max(1, math.ceil(num_samples / max(1, len(held_out))))
        parts = np.array_split(held_out, max(1, len(held_out) // batch))
        rolls = [
            generator.generate_rolls(
                len(part),
                seed=seed + r * len(parts) + i,
                cond_roll=part[:, k],
                cond_track=k,
                temperature=temperature,
            )
            for r in range(repeats)
            for i, part in enumerate(parts)
        ]
        reports[f"{cfg.track_names[k]} given"] = pianoroll_metrics(np.concatenate(rolls), layout)
        # The baselines for the TD of a given track: real phrases whose track k comes from another
        # phrase, the one before (issue 20's baseline; mostly the same chorale's previous phrase, in
        # its key), and one half the held-out set away (another chorale: "a random other soprano").
        for shift, name in ((1, "another phrase"), (len(held_out) // 2, "another chorale")):
            mismatched = held_out.copy()
            mismatched[:, k] = np.roll(held_out[:, k], shift, axis=0)
            reports[f"data, {cfg.track_names[k]} of {name}"] = pianoroll_metrics(mismatched, layout)
    return {
        "checkpoint": str(checkpoint),
        "step": generator.checkpoint.meta.get("step"),
        "num_samples": num_samples,
        "seed": seed,
        "temperature": temperature,
        "reports": reports,
        "diversity": spread,
        "table": format_table(reports) + "\n" + ", ".join(f"{k} {v:.3f}" for k, v in spread.items()),
    }
