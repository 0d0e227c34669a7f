"""Fits the learned latent prior of a bar-latent MusicVAE checkpoint (musgen.models.latent_prior).

The encoder's posteriors of the TRAINING windows are the data: in their own keys by default (the VAE
trained on transposed copies, but a prior fitted to those wrote in keys the tunes rarely use), every
transposition within +-N semitones with ``--transpose N``; at most --max-windows of them, drawn at
random. The valid split's windows give the held-out NLL, next to that of N(0, I), the VAE's own prior::

    python scripts/fit_latent_prior.py checkpoints/musicvae --data data/folk-all --write
    musgen sample --checkpoint checkpoints/musicvae --out samples   # now draws z from it

Without --write the fit is only reported; with it ``latent_prior.safetensors`` is written into the
checkpoint and its settings and numbers into musgen.json under "latent_prior" (each file replaced
atomically; the prior's file first, so a checkpoint never names weights it lacks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import musgen
from musgen.atomic import write_bytes_atomic
from musgen.checkpoint import resolve_checkpoint, update_meta
from musgen.data.melody_data import MelodyWindows, require_windows
from musgen.errors import MusgenError
from musgen.models.latent_prior import LATENT_PRIOR, LatentPriorConfig, fit_latent_prior


def training_windows(dataset: MelodyWindows, transpose: int, limit: int, seed: int) -> list[np.ndarray]:
    """Every window in every transposition within +-transpose that stays in range; a random
    ``limit`` of them if there are more."""
    out = []
    for i in range(len(dataset)):
        window = dataset.window(i)
        for semitones in range(-transpose, transpose + 1):
            shifted = dataset.shift(window, semitones)  # the window itself at 0
            if shifted is not None:
                out.append(shifted)
    if len(out) > limit:
        keep = np.random.default_rng(seed).choice(len(out), limit, replace=False)
        out = [out[i] for i in sorted(keep)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the data set the model trained on")
    parser.add_argument("--max-windows", type=int, default=60000)
    parser.add_argument(
        "--transpose",
        type=int,
        default=0,
        help="also fit to every transposition within +-N semitones (default 0: the keys the tunes are "
        "in; transposed copies teach the prior keys the tunes rarely use, measured in docs/measured.md)",
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="stored with it: sampling narrows every component by this factor (choose it on the valid split)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="store the prior in the checkpoint")
    args = parser.parse_args(argv)
    try:
        generator = musgen.load(args.checkpoint)
        if generator.family != "musicvae" or not generator.cfg.model.bar_latents:
            raise MusgenError("a latent prior is for musicvae checkpoints with model.bar_latents")
        data_cfg = generator.cfg.data
        train = MelodyWindows(args.data, "train", data_cfg)
        require_windows(train, args.data, "train")
        valid = MelodyWindows(args.data, "valid", data_cfg)
        require_windows(valid, args.data, "valid")
    except MusgenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    chosen = training_windows(train, args.transpose, args.max_windows, args.seed)
    print(
        f"encoding {len(chosen)} training windows (+-{args.transpose} semitones) and {len(valid)} valid ones"
    )
    mu, sigma = generator.posteriors(np.stack(chosen), batch_size=512, progress=True)
    held_out = generator.posteriors(np.stack([valid.window(i) for i in range(len(valid))]), batch_size=512)
    bars = data_cfg.num_bars
    cfg = LatentPriorConfig(bars, mu.shape[1] // bars, args.hidden, components=args.components)
    prior, record = fit_latent_prior(
        mu, sigma, cfg, valid=held_out, steps=args.steps, seed=args.seed, progress=True
    )
    record["temperature"] = args.temperature
    record["fitted_from"] = {
        "data": str(args.data),
        "split": "train",
        "windows": len(chosen),
        "transpose": args.transpose,
        "checkpoint_step": generator.checkpoint.meta.get("step"),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=1))
    if args.write:
        from safetensors.torch import save

        ckpt_dir = resolve_checkpoint(args.checkpoint)
        weights = ckpt_dir / f"{LATENT_PRIOR}.safetensors"
        write_bytes_atomic(weights, lambda f: f.write(save(prior.state_dict())))
        update_meta(ckpt_dir, {LATENT_PRIOR: record})
        print(f"written {weights} and musgen.json's {LATENT_PRIOR!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
