"""Writes tests/data/reference_samples/: what each shipped checkpoint samples with fixed seeds.

tests/integration/test_reference_samples.py loads every shipped checkpoint and compares its samples
with these files exactly, so a refactor that changes what a checkpoint writes is caught. Rerun this
script (and commit its output) only when a checkpoint is retrained on purpose:

    python scripts/reference_samples.py            # all shipped checkpoints
    python scripts/reference_samples.py musegan    # one
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "reference_samples"
# checkpoint name -> generate() keyword arguments (small: the test runs them all in seconds)
REQUESTS: dict[str, dict] = {
    "transformer": {"num_samples": 2, "length": 48, "seed": 0},
    "transformer-folk": {"num_samples": 2, "length": 48, "seed": 1},
    "transformer-infill": {"num_samples": 2, "length": 48, "seed": 6},
    "lstm": {"num_samples": 2, "length": 48, "seed": 2},
    "musicvae": {"num_samples": 2, "seed": 3, "temperature": 0.5},
    "musicvae-2bar": {"num_samples": 2, "seed": 3, "temperature": 0.5},
    "musegan": {"num_samples": 2, "seed": 4, "bars": 4},
    "prior": {"num_samples": 1, "seed": 5, "seconds": 0.25},
    "vqvae": {"reconstruct": "two sines, 0.25 s, encoded in float32"},
}


def test_tone(rate: int) -> np.ndarray:
    """0.25 s of A3 + E5 (float32): the vqvae's reference input."""
    t = np.arange(rate // 4) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 659.26 * t)).astype(np.float32)


def reconstruct_test_tone(codec) -> np.ndarray:
    """The vqvae's reference output: the test tone's round trip, encoded in float32 (``auto`` would
    encode in bf16 on a CPU with native bf16 only, whose codes differ)."""
    return codec.reconstruct_audio(test_tone(codec.sample_rate), precision="fp32")


def notes(score) -> list[list[int]]:
    """Every note of a symusic Score as [track, time, duration, pitch, velocity], in order."""
    return [
        [k, int(n.time), int(n.duration), int(n.pitch), int(n.velocity)]
        for k, track in enumerate(score.tracks)
        for n in track.notes
    ]


def record(name: str) -> dict:
    import musgen

    generator = musgen.load(ROOT / "checkpoints" / name)
    if name == "vqvae":
        wave = reconstruct_test_tone(generator)
        np.save(OUT / f"{name}.npy", wave.astype(np.float32))
        return {"request": REQUESTS[name], "file": f"{name}.npy"}
    kwargs = dict(REQUESTS[name])
    outputs = generator.generate(kwargs.pop("num_samples"), **kwargs)
    if isinstance(outputs[0], np.ndarray):  # audio: the waveforms themselves
        np.save(OUT / f"{name}.npy", np.stack(outputs).astype(np.float32))
        return {"request": REQUESTS[name], "file": f"{name}.npy"}
    return {"request": REQUESTS[name], "notes": [notes(score) for score in outputs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(REQUESTS))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    index = OUT / "samples.json"
    stored = json.loads(index.read_text()) if index.exists() else {}
    for name in args.names:
        stored[name] = record(name)
        print(name, file=sys.stderr)
    lines = [f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in stored.items()]
    index.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one line per checkpoint


if __name__ == "__main__":
    main()
