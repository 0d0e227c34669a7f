"""Speed of the audio generation path on this machine, as multiples of real time (issue 6).

    python scripts/bench_audio.py [--codec runs/vqvae] [--prior runs/prior] [--data data/bach_audio]

Codec: encode and decode 30 s of audio (a held-out piece of --data, else noise), one call each;
encode in float32 and with ``precision="auto"`` (bf16 where this CPU runs it faster, probed).
Prior: sample 5 s of new audio codes with the KV cache (batch 1, and 4 at once), eagerly and with
the static cache and compiled step (``compile=True``, compiled in an untimed warm-up), then the
whole path (codes sampled and decoded to a waveform), unprimed and with a 2-s prompt. --codec and --prior
default to the shipped checkpoints (checkpoints/vqvae, checkpoints/prior).
Times are medians of --repeats runs in this one process; x real time = audio seconds / wall seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import musgen  # noqa: E402
from musgen.data.audio_io import write_audio  # noqa: E402

RATE = 16000


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_models(args) -> tuple[Any, Any]:
    """The codec and prior to time: the given checkpoints, else the shipped ones."""
    return musgen.load(args.codec), musgen.load(args.prior)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codec", type=Path, default=REPO / "checkpoints" / "vqvae")
    parser.add_argument("--prior", type=Path, default=REPO / "checkpoints" / "prior")
    parser.add_argument("--data", type=Path, help="an audio DATA_DIR (a held-out piece to encode)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results" / "bench_audio.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    codec, prior = load_models(args)
    if args.data:
        from musgen.data.audio_data import audio_pieces

        wave = np.concatenate(audio_pieces(args.data, "test"))[: 30 * RATE]
    else:
        wave = (0.1 * np.random.default_rng(0).standard_normal(30 * RATE)).astype(np.float32)
    seconds = len(wave) / RATE
    codes = codec.encode_audio(wave, "fp32")
    t_enc = timed(lambda: codec.encode_audio(wave, "fp32"), args.repeats)
    # auto: the encoder under bf16 autocast where the precision probe found bf16 faster (once per process)
    encode_bf16 = codec.encoder_bf16("auto")
    codec.encode_audio(wave[:RATE], "auto")
    t_enc_auto = timed(lambda: codec.encode_audio(wave, "auto"), args.repeats)
    t_dec = timed(lambda: codec.decode_codes(codes), args.repeats)

    new_seconds = 5.0
    frames = int(np.ceil(new_seconds * prior.code_rate))

    def sample_codes(n: int, compile: bool = False) -> None:  # the prior's own sampler (flat or delay)
        prior.sample_codes(n, frames, seed=0, compile=compile)

    t_prior1 = timed(lambda: sample_codes(1), args.repeats)
    t_prior4 = timed(lambda: sample_codes(4), args.repeats)
    t_path = timed(lambda: prior.generate(1, seconds=new_seconds, seed=0), args.repeats)
    # The static cache and compiled step: compiled once per batch size in an untimed warm-up.
    warm = time.perf_counter()
    sample_codes(1, compile=True)
    sample_codes(4, compile=True)
    t_warm = time.perf_counter() - warm
    t_prior1_c = timed(lambda: sample_codes(1, compile=True), args.repeats)
    t_prior4_c = timed(lambda: sample_codes(4, compile=True), args.repeats)
    t_path_c = timed(lambda: prior.generate(1, seconds=new_seconds, seed=0, compile=True), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        prompt = Path(tmp) / "prompt.wav"
        write_audio(prompt, wave[: 2 * RATE], RATE)
        t_primed = timed(lambda: prior.generate(1, prime=prompt, seconds=new_seconds, seed=0), args.repeats)

    result = {
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "codec": {
            "checkpoint": str(args.codec),
            "params": sum(p.numel() for p in codec.models["model"].parameters()),
            "audio_seconds": seconds,
            "encode_s": t_enc,
            "decode_s": t_dec,
            "encode_x_realtime": seconds / t_enc,
            "encode_auto_bf16": encode_bf16,
            "encode_auto_s": t_enc_auto,
            "encode_auto_x_realtime": seconds / t_enc_auto,
            "decode_x_realtime": seconds / t_dec,
            "code_rate_hz": codec.code_rate,
            "bitrate_bps": codec.bitrate,
        },
        "prior": {
            "checkpoint": str(args.prior),
            "params": sum(p.numel() for p in prior.models["model"].parameters()),
            "new_seconds": new_seconds,
            "pattern": prior.cfg.pattern,
            "model_steps": frames * (prior.levels if prior.cfg.pattern == "flat" else 1),
            "tokens": frames * prior.levels,
            "sample_s_batch1": t_prior1,
            "sample_x_realtime_batch1": new_seconds / t_prior1,
            "sample_s_batch4": t_prior4,
            "sample_x_realtime_batch4": 4 * new_seconds / t_prior4,
            "tokens_per_s_batch1": frames * prior.levels / t_prior1,
            "compile_warmup_s": t_warm,
            "compiled_sample_s_batch1": t_prior1_c,
            "compiled_sample_x_realtime_batch1": new_seconds / t_prior1_c,
            "compiled_sample_s_batch4": t_prior4_c,
            "compiled_sample_x_realtime_batch4": 4 * new_seconds / t_prior4_c,
        },
        "generation_path": {
            "unprimed_s": t_path,
            "unprimed_x_realtime": new_seconds / t_path,
            "compiled_unprimed_s": t_path_c,
            "compiled_unprimed_x_realtime": new_seconds / t_path_c,
            "primed_2s_s": t_primed,
            "primed_x_realtime": new_seconds / t_primed,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
