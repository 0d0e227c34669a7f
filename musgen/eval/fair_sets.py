"""Sets of pieces that can be compared fairly: every piece cut to the same duration, and a
real-vs-real reference of the same size as the generated set.

mgeval's overlap areas and the feature Frechet distance depend on how many pieces each set holds
and how long they are: a longer excerpt has a wider pitch range and more pitch classes, and a small
set has a noisy covariance, so the Frechet distance between two sets of 32 real pieces is far
from 0. A distance is read against a reference measured the same way, in the same run: held-out
pieces are cut into non-overlapping excerpts of ``quarters`` quarter notes, the pieces (not the
excerpts) are dealt into two disjoint halves A and B, and both comparisons use the same number n
of pieces of the same length:

    generated vs A    (the model)
    B vs A            (real vs real: what "as close as real music" means at this n and length)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import symusic


def excerpt(score: symusic.Score, start_quarter: float, quarters: float) -> symusic.Score:
    """The notes of ``score`` that start in [start, start + quarters) quarter notes, moved to time 0
    and cut off at the end of the excerpt (a held note ends at the excerpt's end)."""
    tpq = score.ticks_per_quarter
    start, end = round(start_quarter * tpq), round((start_quarter + quarters) * tpq)
    clipped = score.clip(start, end, clip_end=True)
    return clipped.shift_time(-start) if start else clipped


def last_onset_quarters(score: symusic.Score) -> float:
    """Quarter notes from time 0 to the end of the piece's last note."""
    return score.end() / score.ticks_per_quarter


def excerpts(score: symusic.Score, quarters: float | None) -> list[symusic.Score]:
    """Non-overlapping excerpts of ``quarters`` quarter notes from the start of ``score``, each one
    complete (the piece lasts to its end); ``quarters`` None keeps the piece whole."""
    if quarters is None:
        return [score] if score.note_num() else []
    length = last_onset_quarters(score)
    out = []
    start = 0.0
    while start + quarters <= length + 1e-9:
        cut = excerpt(score, start, quarters)
        if cut.note_num():
            out.append(cut)
        start += quarters
    return out


def real_halves(
    pieces: Sequence[symusic.Score],
    quarters: float | None,
    n: int,
    seed: int = 0,
    extra: Callable[[], Sequence[symusic.Score]] | None = None,
) -> tuple[list[symusic.Score], list[symusic.Score], int]:
    """Two disjoint sets of at most ``n`` excerpts each, no piece contributing to both: the pieces
    are shuffled (seeded) and each one's excerpts go to the smaller half. ``extra()`` gives more pieces
    (another held-out split); it is called only when ``pieces`` give fewer than 2n excerpts. Returns (A, B, the
    number of pieces used)."""
    rng = random.Random(seed)
    groups = [excerpts(p, quarters) for p in pieces]
    if extra is not None and sum(map(len, groups)) < 2 * n:
        groups += [excerpts(p, quarters) for p in extra()]
    groups = [g for g in groups if g]
    rng.shuffle(groups)
    halves: tuple[list, list] = ([], [])
    used = 0
    for group in groups:
        if min(len(halves[0]), len(halves[1])) >= n:
            break
        target = halves[0] if len(halves[0]) <= len(halves[1]) else halves[1]
        target.extend(group)
        used += 1
    return halves[0][:n], halves[1][:n], used


def fair_statistics(
    held_out: Sequence[symusic.Score],
    samples: Sequence[symusic.Score],
    quarters: float | None,
    seed: int = 0,
    extra: Callable[[], Sequence[symusic.Score]] | None = None,
) -> dict[str, Any]:
    """Samples vs held-out pieces and real vs real, equal counts and lengths (see the module text).

    Each sample is cut to its first ``quarters`` quarter notes, or to the whole quarters of the
    shortest sample with notes when that is shorter (samples without notes are left out and counted);
    the held-out pieces give halves A and B of excerpts that long; all three sets are cut to the same
    size n. Returns ``compare_sets(A, samples)`` with the counts, and ``real_vs_real``:
    ``compare_sets(A, B)``."""
    from musgen.eval.distributions import compare_sets
    from musgen.eval.midi_stats import piece_features

    with_notes = [s for s in samples if s.note_num()]
    asked = quarters
    if quarters is not None and with_notes:
        shortest = min(last_onset_quarters(s) for s in with_notes)
        quarters = float(max(1, min(quarters, int(shortest))))
    generated = [c[0] for c in (excerpts(s, quarters)[:1] for s in with_notes) if c]
    a, b, used = real_halves(held_out, quarters, len(generated), seed, extra)
    n = min(len(generated), len(a), len(b))
    ref = [piece_features(s) for s in a[:n]]
    gen = [piece_features(s) for s in generated[:n]]
    real = [piece_features(s) for s in b[:n]]
    comparison = compare_sets(ref, gen)
    reference = compare_sets(ref, real)
    fd, fd_real = comparison["feature_frechet"], reference["feature_frechet"]
    return {
        "reference_pieces": len(ref),
        "generated_pieces": len(gen),
        "excerpt_quarters": quarters,
        "asked_quarters": asked,
        "held_out_source_pieces": used,
        "samples_without_notes": len(samples) - len(with_notes),
        "generated_without_notes": sum(1 for g in gen if g["notes"] == 0),
        **comparison,
        "frechet_ratio": fd / fd_real if fd is not None and fd_real else None,
        "real_vs_real": {
            "feature_frechet": fd_real,
            "mean_overlap_area": reference["mean_overlap_area"],
            "mean_kl_divergence": reference["mean_kl_divergence"],
            "features": {
                name: {
                    k: f[k]
                    for k in ("overlap_area", "kl_divergence", "generated_mean", "generated_std")
                    if k in f
                }
                for name, f in reference["features"].items()
            },
        },
    }
