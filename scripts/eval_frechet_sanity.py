"""Does the evaluation's distance mean anything? Real Bach chorales split in two halves (even and odd
positions in sorted order) against each other, and against the other half's pieces corrupted:
pitches shuffled among all notes of a piece, pitches shuffled within each voice (registers kept),
and random notes (same count and time span). Both halves take a turn as the reference; the mean of
the two directions is reported.

* audio: the first ``--seconds`` of each piece rendered (built-in synthesizer by default, 16 kHz), the
  Frechet distance on the random musicnn-style CNN embeddings of ``musgen eval`` (musgen.eval.frechet);
* symbolic: the musical statistics of the whole pieces (musgen.eval.midi_stats) compared as ``musgen
  eval`` does: the feature Frechet distance, mgeval's mean overlap area and KL divergence.

    python scripts/eval_frechet_sanity.py                      # 128 chorales x 10 s, ~2 min of CPU
    python scripts/eval_frechet_sanity.py --pieces 24 --seconds 6   # what the unit test runs

Writes scripts/results/eval_frechet_sanity.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from musgen.data.corpus import corpus_midi_files
from musgen.eval.baselines import frechet_sanity

RESULTS = Path(__file__).resolve().parent / "results" / "eval_frechet_sanity.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pieces", type=int, default=128, help="chorales (the first N in sorted order)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio: first seconds of each piece")
    parser.add_argument("--engine", choices=["synth", "fluidsynth", "auto"], default="synth")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    start = time.time()
    _, files, _ = corpus_midi_files("bach", limit=args.pieces)
    result = {"corpus": "bach", **frechet_sanity(files, seconds=args.seconds, engine=args.engine)}
    result["seconds_taken"] = round(time.time() - start, 1)
    halves_audio = result["audio"]["held-out half"]["frechet_distance"]
    halves_sym = result["symbolic"]["held-out half"]["feature_frechet"]
    print(
        f"{result['pieces']} chorales, {result['seconds']:g} s each ({result['engine']}), "
        f"{result['windows_per_half']} windows per half"
    )
    print(
        f"{'':32s} {'audio FD':>10s} {'x halves':>9s} {'feature FD':>11s} {'x halves':>9s} {'overlap':>8s} {'KL':>7s}"
    )
    for name, audio in result["audio"].items():
        sym = result["symbolic"][name]
        print(
            f"{name:32s} {audio['frechet_distance']:10.1f} {audio['frechet_distance'] / halves_audio:8.2f}x "
            f"{sym['feature_frechet']:11.1f} {sym['feature_frechet'] / halves_sym:8.2f}x "
            f"{sym['mean_overlap_area']:8.3f} {sym['mean_kl_divergence']:7.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out} in {result['seconds_taken']:.0f} s")


if __name__ == "__main__":
    main()
