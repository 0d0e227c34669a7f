"""Corrupted copies of real pieces: the reference points that tell whether a distance between sets of
music means anything. A metric worth reporting puts two halves of the held-out data much closer to
each other than either is to the same pieces with their pitches shuffled, or to random notes
(``scripts/eval_frechet_sanity.py``, tests/unit/test_eval_frechet.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import symusic

LOW, HIGH = 36, 84  # random notes: pitches C2 .. C6


def shuffled_pitches(score: symusic.Score, seed: int = 0, *, within_tracks: bool = False) -> symusic.Score:
    """The piece with its pitches permuted among its (non-drum) notes: rhythm and the piece's pitch
    distribution are kept; melody, harmony and voice leading are destroyed. ``within_tracks``
    permutes each track's pitches among its own notes, so that each voice keeps its register too
    (a subtler corruption)."""
    rng = np.random.default_rng(seed)
    out = score.copy()
    pitched = [t for t in out.tracks if not t.is_drum]
    groups = [list(t.notes) for t in pitched] if within_tracks else [[n for t in pitched for n in t.notes]]
    for notes in groups:
        for note, pitch in zip(notes, rng.permutation([n.pitch for n in notes]), strict=True):
            note.pitch = int(pitch)
    return out


def random_notes(score: symusic.Score, seed: int = 0) -> symusic.Score:
    """As many notes as the piece over the same time span, with uniform random onsets, durations
    (a 16th to a half note) and pitches (C2 to C6), in one track."""
    rng = np.random.default_rng(seed)
    tpq = score.ticks_per_quarter
    n = max(1, score.note_num())
    end = max(int(score.end()), tpq)
    out = symusic.Score(tpq)
    out.tempos = [t for t in score.tempos] or [symusic.Tempo(0, 120.0)]
    out.time_signatures = [t for t in score.time_signatures]
    track = symusic.Track("random", 0, False)
    onsets = np.sort(rng.integers(0, end, n))
    durations = rng.integers(tpq // 4, 2 * tpq + 1, n)
    pitches = rng.integers(LOW, HIGH + 1, n)
    for t, d, p in zip(onsets.tolist(), durations.tolist(), pitches.tolist(), strict=True):
        track.notes.append(symusic.Note(int(t), int(d), int(p), 80))
    out.tracks.append(track)
    return out


CORRUPTIONS = {
    "shuffled pitch": lambda score, seed: shuffled_pitches(score, seed),
    "shuffled pitch within tracks": lambda score, seed: shuffled_pitches(score, seed, within_tracks=True),
    "random notes": random_notes,
}


def frechet_sanity(
    midi_files: list[Path], *, seconds: float = 8.0, engine: str = "synth", sample_rate: int = 16000
) -> dict[str, Any]:
    """Splits the pieces into two halves (even and odd positions) and measures the distance of each
    half to the other half, and to the other half's pieces corrupted (``CORRUPTIONS``); both
    directions, and their mean. Audio: the Frechet distance on random-CNN embeddings of the first
    ``seconds`` of each piece rendered with ``engine``; symbolic: the feature Frechet distance and
    mgeval's mean overlap area / KL divergence of the musical statistics of the whole pieces."""
    from musgen.data.render import render_midi
    from musgen.data.tokenizers import load_score
    from musgen.eval.distributions import compare_sets
    from musgen.eval.frechet import embed_clips, frechet_distance
    from musgen.eval.midi_stats import piece_features

    if len(midi_files) < 4:
        raise ValueError(f"need at least 4 pieces, got {len(midi_files)}")
    scores = [load_score(f) for f in midi_files]
    versions = {"held-out half": scores}
    versions.update(
        {name: [corrupt(s, i) for i, s in enumerate(scores)] for name, corrupt in CORRUPTIONS.items()}
    )
    halves = (slice(0, None, 2), slice(1, None, 2))

    with tempfile.TemporaryDirectory() as tmp:

        def render(score: symusic.Score, name: str) -> np.ndarray:
            path = Path(tmp) / f"{name}.mid"
            score.dump_midi(str(path))
            return render_midi(path, sample_rate, engine=engine, max_seconds=seconds)

        embeddings = {
            name: [embed_clips([render(s, f"{k}_{i}")], sample_rate) for i, s in enumerate(pieces)]
            for k, (name, pieces) in enumerate(versions.items())
        }
    features = {name: [piece_features(s) for s in pieces] for name, pieces in versions.items()}

    audio, symbolic = {}, {}
    for name in versions:
        fd, stats = [], []
        for ref, other in (halves, halves[::-1]):
            a = np.concatenate(embeddings["held-out half"][ref])
            b = np.concatenate(embeddings[name][other])
            fd.append(frechet_distance(a, b))
            stats.append(compare_sets(features["held-out half"][ref], features[name][other]))
        audio[name] = {"frechet_distance": float(np.mean(fd)), "directions": fd}
        symbolic[name] = {
            key: float(np.mean([s[key] for s in stats]))
            for key in ("feature_frechet", "mean_overlap_area", "mean_kl_divergence")
        }
    return {
        "pieces": len(scores),
        "seconds": seconds,
        "engine": engine,
        "sample_rate": sample_rate,
        "windows_per_half": len(np.concatenate(embeddings["held-out half"][halves[0]])),
        "audio": audio,
        "symbolic": symbolic,
    }
