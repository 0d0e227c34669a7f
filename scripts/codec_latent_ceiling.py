"""Where a residual codec's reconstruction error comes from: its decoder fed the first 1..Q levels of
the codes, and the encoder's latents unquantized (issue 21).

    python scripts/codec_latent_ceiling.py [--codec checkpoints/vqvae] [--data data/bach_audio]

For each held-out piece (the first --max-seconds), the encoder's latents z go to the decoder as they
are and as the sum of the first k codebook levels' vectors, k = 1..Q. If the unquantized latents
decode little better than all Q levels, more levels (a higher bitrate) cannot bring the distances
down much: the encoder/decoder pair is the limit. A decoder trained only on all Q levels (no
quantizer dropout) has never seen fewer, so its rows below Q are not the codec's quality at that
bitrate. For scale, the same distances of the reference plus an error shaped like its own short-time
spectrum (random phase) at --noise-snr dB: what an ideal codec with that waveform error would score.
Writes scripts/results/codec_latent_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import musgen  # noqa: E402
from musgen.data.audio_data import audio_pieces  # noqa: E402
from musgen.eval.audio_metrics import MultiResolutionSTFTLoss, log_mel_l1, si_sdr  # noqa: E402


def shaped_noise(x: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """(1, 1, T) -> an error (1, 1, T) with x's 512-point short-time magnitude and a random phase,
    scaled to snr_db below x's energy: a codec's error that follows the music's spectrum."""
    window = torch.hann_window(512)
    spec = torch.stft(x[0], 512, hop_length=128, window=window, return_complex=True)  # (1, 257, frames)
    phase = torch.rand(spec.shape, generator=generator) * 2 * torch.pi
    error = torch.istft(
        torch.polar(spec.abs(), phase), 512, hop_length=128, window=window, length=x.shape[-1]
    )
    scale = (x.pow(2).sum() / error.pow(2).sum().clamp(min=1e-12) / 10 ** (snr_db / 10)).sqrt()
    return (scale * error)[None]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", type=Path, default=REPO / "checkpoints" / "vqvae")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "bach_audio")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "scripts" / "results" / "codec_latent_ceiling.json"
    )
    parser.add_argument(
        "--noise-snr",
        type=float,
        nargs="*",
        default=[5.0, 8.0, 10.0],
        help="rows of reference + shaped noise",
    )
    args = parser.parse_args()
    codec = musgen.load(args.codec)
    model = codec.models["model"].eval()
    levels = codec.cfg.model.quantizer.levels
    # vector_quantize_pytorch decodes fewer levels than it has only with its dropout flag set; the
    # flag changes nothing else at inference
    model.quantizer.vq.quantize_dropout = True
    stft, rate, rows = MultiResolutionSTFTLoss(), codec.sample_rate, {}
    generator = torch.Generator().manual_seed(0)
    for wave in audio_pieces(args.data, args.split):
        x = torch.from_numpy(wave[: round(args.max_seconds * rate)]).float()[None, None]  # (1, 1, T)
        z = model.encoder(model._pad(x))  # (1, D, F)
        codes = model.quantizer(z)[1]  # (1, F, Q)
        latents = {
            f"{k} level(s)": model.quantizer.decode_codes(codes[..., :k]) for k in range(1, levels + 1)
        }
        latents["unquantized"] = z
        recons = {name: model.decoder(latent)[..., : x.shape[-1]] for name, latent in latents.items()}
        for snr in args.noise_snr:
            recons[f"reference + shaped noise at {snr:g} dB"] = x + shaped_noise(x, snr, generator)
        for name, recon in recons.items():
            row = {
                "stft_distance": float(stft(recon[0], x[0])),
                "log_mel_l1": float(log_mel_l1(recon[0], x[0], rate)[0]),
                "si_sdr_db": float(si_sdr(recon[0], x[0])[0]),
            }
            if name in latents:
                row["latent_relative_error"] = float((latents[name] - z).norm() / z.norm())
            rows.setdefault(name, []).append(row)
    result = {"codec": str(args.codec), "data": str(args.data), "split": args.split, "rows": []}
    for name, values in rows.items():
        means = {key: round(float(np.mean([row[key] for row in values])), 4) for key in values[0]}
        result["rows"].append({"latents": name, "pieces": len(values), **means})
        print(json.dumps(result["rows"][-1]))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
