"""Run from the repository root: python scripts/results/continuations_stop49/combine_max_silence_table.py

Joins the valid-split draws of the shipped prior at its temperatures [1.3, 1.0, 0.1, 0.05] with no
silence limit, --max-silence 0.1 and --max-silence 0 (seeds 0-500, run in parts across stops 46-49)
into one tune_audio_sampling.py table (tune_valid_max_silence.json), the evidence stored with the
checkpoint's max_silence recommendation."""

import json
from pathlib import Path

R = Path("scripts/results")
T = [1.3, 1.0, 0.1, 0.05]
PARTS = {
    float("inf"): [
        "continuations_stop46/tune_valid_decoder_8000.json",
        "continuations_stop48/tune_valid_shipped_seeds200_300.json",
        "continuations_stop49/tune_valid_shipped_seeds400_500.json",
    ],
    0.1: [
        "continuations_stop49/tune_valid_max_silence0.1_seeds0_200.json",
        "continuations_stop49/tune_valid_max_silence0.1_seeds300_500.json",
    ],
    0.0: [
        "continuations_stop49/tune_valid_suppress_silence_seeds0_100.json",
        "continuations_stop49/tune_valid_suppress_silence_seeds200_500.json",
    ],
}
table = []
for silence, files in PARTS.items():
    per_seed, silent, flat, real, codec = {}, [], [], None, None
    for name in files:
        row = next(r for r in json.loads((R / name).read_text())["table"] if r["temperature"] == T)
        seeds = len(row["frechet_per_seed"])
        per_seed |= row["frechet_per_seed"]
        silent += [row["silent_fraction"]] * seeds
        flat += [row["spectral_flatness"]] * seeds
        real, codec = row["real_vs_real"], row["codec_only"]
    table.append(
        {
            "temperature": T,
            "top_p": 1.0,
            "max_silence": None if silence == float("inf") else silence,  # None: no limit
            "frechet": sum(per_seed.values()) / len(per_seed),
            "frechet_per_seed": dict(sorted(per_seed.items(), key=lambda kv: int(kv[0]))),
            "silent_fraction": sum(silent) / len(silent),
            "spectral_flatness": sum(flat) / len(flat),
            "real_vs_real": real,
            "codec_only": codec,
            "parts": files,
        }
    )
best = min(table, key=lambda row: row["frechet"])
result = {
    "script": "scripts/results/continuations_stop49/combine_max_silence_table.py",
    "checkpoint": "checkpoints/prior",
    "split": "valid (prompts) / train (comparison clips)",
    "prompts": 16,
    "seeds": [0, 100, 200, 300, 400, 500],
    "table": table,
    "chosen": {"temperature": T, "top_p": 1.0, "max_silence": best["max_silence"]},
}
out = R / "continuations_stop49" / "tune_valid_max_silence.json"
out.write_text(json.dumps(result, indent=1))
for row in table:
    print(
        row["max_silence"], round(row["frechet"], 1), [round(v, 1) for v in row["frechet_per_seed"].values()]
    )
print("chosen", result["chosen"], "wrote", out)
