"""Gives a trained prior a codec whose decoder was retrained on the same codes (``model.freeze_encoder``):
the prior checkpoint is copied with its ``vqvae/`` replaced. Refused unless the two codecs' encoders
and codebooks are identical, so every code the prior learned means what it meant.

    python scripts/swap_prior_codec.py PRIOR_CKPT CODEC_CKPT OUT_DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from musgen import checkpoint
from musgen.errors import MusgenError
from musgen.modules.quantizer import is_training_only

FROZEN = ("encoder.", "quantizer.")  # what fixes the codes


def frozen_weights(codec_dir: Path) -> dict[str, torch.Tensor]:
    weights = load_file(str(codec_dir / "model.safetensors"))
    # as packing keeps them (a codebook's EMA sums are training state: a packed codec has none)
    return {k: v.half() for k, v in weights.items() if k.startswith(FROZEN) and not is_training_only(k)}


def swap(prior: Path, codec: Path, out: Path) -> Path:
    prior, codec = checkpoint.resolve_checkpoint(prior), checkpoint.resolve_checkpoint(codec)
    old, new = frozen_weights(prior / "vqvae"), frozen_weights(codec)
    if old.keys() != new.keys() or any(not torch.equal(old[k], new[k]) for k in old):
        raise MusgenError(f"{codec} does not encode like the codec inside {prior}: its codes would differ")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(prior, tmp)
    shutil.rmtree(tmp / "vqvae")
    (tmp / "vqvae").mkdir()
    for name in (checkpoint.META_FILE, checkpoint.CONFIG_FILE, "model.safetensors"):
        shutil.copy2(codec / name, tmp / "vqvae" / name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("prior", type=Path, help="a prior checkpoint or RUN_DIR")
    parser.add_argument("codec", type=Path, help="a vqvae checkpoint or RUN_DIR with the same encoder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    try:
        print(f"wrote {swap(args.prior, args.codec, args.out)}")
    except MusgenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
