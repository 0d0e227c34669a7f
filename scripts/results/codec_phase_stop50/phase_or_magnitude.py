"""Stop 50: which half of the shipped codec's 2,048-point STFT is off, its magnitude or its phase?

For the first 8 test pieces (first 10 s each): the multi-resolution STFT distance of the decoded
audio, and of audio rebuilt (one inverse STFT, 2,048 points, hop 128) from the decoded audio's
magnitude with the original's phase, from the original's magnitude with the decoded audio's phase,
and from the original's magnitude with random phase. Each distance split by FFT size too.

    python scripts/results/codec_phase_stop50/phase_or_magnitude.py > scripts/results/codec_phase_stop50/phase_or_magnitude.json
"""

import json
import math
from pathlib import Path

import numpy as np
import torch

import musgen
from musgen.data.audio_data import audio_pieces
from musgen.eval.audio_metrics import EPS, MultiResolutionSTFTLoss, stft_magnitude

N_FFT, HOP, PIECES = 2048, 128, 8
SIZES = (2048, 1024, 512, 256, 128)


def split(est: torch.Tensor, ref: torch.Tensor) -> list[float]:
    """(linear, log) L1 terms per FFT size."""
    out = []
    for n in SIZES:
        e, r = stft_magnitude(est, n), stft_magnitude(ref, n)
        out += [float((e - r).abs().mean()), float(((e + EPS).log() - (r + EPS).log()).abs().mean())]
    return out


def main() -> None:
    torch.manual_seed(0)
    codec = musgen.load("checkpoints/vqvae")
    loss = MultiResolutionSTFTLoss()
    window = torch.hann_window(N_FFT)

    def stft(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, N_FFT, hop_length=HOP, window=window, return_complex=True)

    def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, N_FFT, hop_length=HOP, window=window, length=length)

    rows: dict[str, list] = {
        k: []
        for k in (
            "decoded",
            "decoded_magnitude_true_phase",
            "true_magnitude_decoded_phase",
            "true_magnitude_random_phase",
        )
    }
    for i, wave in enumerate(audio_pieces(Path("data/bach_audio"), "test")):
        if i == PIECES:
            break
        wave = wave[: 10 * codec.sample_rate]
        ref = torch.from_numpy(wave)[None].float()
        dec = torch.from_numpy(codec.decode_codes(codec.encode_audio(wave, "auto"))[: len(wave)])[
            None
        ].float()
        d, r = stft(dec), stft(ref)
        random = torch.rand_like(r.abs()) * 2 * math.pi
        for key, audio in (
            ("decoded", dec),
            ("decoded_magnitude_true_phase", istft(torch.polar(d.abs(), r.angle()), len(wave))),
            ("true_magnitude_decoded_phase", istft(torch.polar(r.abs(), d.angle()), len(wave))),
            ("true_magnitude_random_phase", istft(torch.polar(r.abs(), random), len(wave))),
        ):
            rows[key].append([float(loss(audio, ref)), *split(audio, ref)])
    result = {}
    for key, values in rows.items():
        mean = np.mean(values, axis=0)
        result[key] = {
            "stft_distance": round(float(mean[0]), 4),
            "by_fft_size": {
                n: {"linear": round(float(mean[1 + 2 * j]), 4), "log": round(float(mean[2 + 2 * j]), 4)}
                for j, n in enumerate(SIZES)
            },
        }
    print(json.dumps({"pieces": PIECES, "seconds_each": 10, "n_fft": N_FFT, "hop": HOP, **result}, indent=1))


if __name__ == "__main__":
    main()
