"""Writes the README's three audio spectrograms (docs/images/audio_*.png): 4 s of a held-out rendered
chorale (test split, from second 1), its reconstruction by the codec, and the prior continuing it
for 6 s. Rerun when checkpoints/vqvae or checkpoints/prior change:

    python scripts/audio_pictures.py --data data/bach_audio
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import musgen
from musgen.data.audio_io import write_audio
from musgen.eval.audio import held_out_clips
from musgen.viz.media import plot_spectrogram

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the rendered bach DATA_DIR")
    parser.add_argument("--codec", type=Path, default=ROOT / "checkpoints/vqvae")
    parser.add_argument("--prior", type=Path, default=ROOT / "checkpoints/prior")
    parser.add_argument("--piece", type=int, default=0, help="which test piece")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images")
    args = parser.parse_args()
    codec, prior = musgen.load(args.codec), musgen.load(args.prior)
    rate = codec.sample_rate
    prompt = held_out_clips(args.data, "test", args.piece + 1, 1.0, 4.0, rate)[args.piece]
    args.out.mkdir(parents=True, exist_ok=True)
    plot_spectrogram(prompt, rate, args.out / "audio_prompt.png", "held-out prompt (4 s)")
    recon = codec.reconstruct_audio(prompt)
    plot_spectrogram(recon, rate, args.out / "audio_reconstruction.png", "codec reconstruction")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompt.wav"
        write_audio(path, prompt, rate)
        (continued,) = prior.generate(1, prime=path, seconds=6.0, seed=args.seed)
    plot_spectrogram(
        continued, rate, args.out / "audio_continuation.png", "prompt + prior continuation (6 s)"
    )
    print(f"wrote 3 spectrograms to {args.out}")


if __name__ == "__main__":
    main()
