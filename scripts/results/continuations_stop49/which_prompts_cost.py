"""Run from the repository root: python scripts/results/continuations_stop49/which_prompts_cost.py PRIOR SEED

Regenerates one test draw's continuations (as eval_audio does) and finds which prompts cost the most
(leave-one-out Frechet distance, the quietest 0.1 s, spectral flatness, silent fraction per prompt)."""

import math
import sys
import tempfile
from pathlib import Path

import numpy as np

import musgen
from musgen.data.audio_io import write_audio
from musgen.eval.audio import held_out_clips, silent_fraction, spectral_flatness
from musgen.eval.frechet import audio_frechet

prior = musgen.load(sys.argv[1])
seed = int(sys.argv[2])
data = "data/bach_audio"
rate = prior.sample_rate
prompts = held_out_clips(data, "test", 16, 1.0, 10.0, rate)
others = held_out_clips(data, "valid", 16, 5.0, 6.0, rate)[: len(prompts)]
cut = 4 * rate
gen = []
with tempfile.TemporaryDirectory() as tmp:
    for k, clip in enumerate(prompts):
        p = Path(tmp) / f"p{k}.wav"
        write_audio(p, clip[:cut], rate)
        (out,) = prior.generate(1, prime=p, seconds=6.0, seed=seed + k)
        kept = len(out) - math.ceil(6.0 * prior.code_rate) * prior.hop
        gen.append(out[kept : kept + len(clip) - cut])
full = audio_frechet(others, gen, rate)["frechet_distance"]
print("full", round(full, 1))
for k in range(len(gen)):
    rest = gen[:k] + gen[k + 1 :]
    loo = audio_frechet(others[:k] + others[k + 1 :], rest, rate)["frechet_distance"]
    rms = np.sqrt((gen[k][: len(gen[k]) // 1600 * 1600].reshape(-1, 1600) ** 2).mean(1))
    print(
        k,
        "loo",
        round(loo, 1),
        "minrms_db",
        round(20 * np.log10(rms.min() + 1e-9), 1),
        "flat",
        round(spectral_flatness([gen[k]]), 4),
        "silent",
        round(silent_fraction([gen[k]], rate), 3),
    )
