"""Where a residual codec's reconstruction error comes from: its decoder fed the first 1..Q levels of
the codes, and the encoder's latents unquantized (issue 21).

    python scripts/codec_latent_ceiling.py [--codec checkpoints/vqvae] [--data data/bach_audio]

For each held-out piece (the first --max-seconds), the encoder's latents z go to the decoder as they
are and as the sum of the first k codebook levels' vectors, k = 1..Q. If the unquantized latents
decode little better than all Q levels, more levels (a higher bitrate) cannot bring the distances
down much: the encoder/decoder pair is the limit. A decoder trained only on all Q levels (no
quantizer dropout) has never seen fewer, so its rows below Q are not the codec's quality at that
bitrate. Writes scripts/results/codec_latent_ceiling.json.
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
    args = parser.parse_args()
    codec = musgen.load(args.codec)
    model = codec.models["model"].eval()
    levels = codec.cfg.model.quantizer.levels
    # vector_quantize_pytorch decodes fewer levels than it has only with its dropout flag set; the
    # flag changes nothing else at inference
    model.quantizer.vq.quantize_dropout = True
    stft, rate, rows = MultiResolutionSTFTLoss(), codec.sample_rate, {}
    for wave in audio_pieces(args.data, args.split):
        x = torch.from_numpy(wave[: round(args.max_seconds * rate)]).float()[None, None]  # (1, 1, T)
        z = model.encoder(model._pad(x))  # (1, D, F)
        codes = model.quantizer(z)[1]  # (1, F, Q)
        latents = {
            f"{k} level(s)": model.quantizer.decode_codes(codes[..., :k]) for k in range(1, levels + 1)
        }
        latents["unquantized"] = z
        for name, latent in latents.items():
            recon = model.decoder(latent)[..., : x.shape[-1]]
            rows.setdefault(name, []).append(
                (
                    float(stft(recon[0], x[0])),
                    float(log_mel_l1(recon[0], x[0], rate)[0]),
                    float(si_sdr(recon[0], x[0])[0]),
                    float((latent - z).norm() / z.norm()),
                )
            )
    result = {"codec": str(args.codec), "data": str(args.data), "split": args.split, "rows": []}
    for name, values in rows.items():
        mean = np.array(values).mean(0)
        keys = ("stft_distance", "log_mel_l1", "si_sdr_db", "latent_relative_error")
        result["rows"].append(
            {"latents": name, "pieces": len(values), **dict(zip(keys, mean.round(4).tolist(), strict=True))}
        )
        print(json.dumps(result["rows"][-1]))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
