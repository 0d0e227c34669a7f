"""Comparing two sets of pieces feature by feature, the way mgeval does (Yang & Lerch 2020, "On the
evaluation of generative models in music"), plus a Frechet distance over all features together.

For each feature (``musgen.eval.midi_stats``; a scalar or a histogram per piece):

* intra-set distances: the Euclidean distances between every two pieces of one set;
* inter-set distances: between every generated piece and every reference (held-out) piece;
* both are smoothed with a Gaussian kernel density estimate (Scott's bandwidth, as scipy's
  ``gaussian_kde``, of the two samples together), and reported are the **overlap area** of the reference's intra-set density and
  the inter-set density (1 = the generated pieces are as far from the data as the data pieces are
  from each other) and the **KL divergence** KL(intra_ref || inter) (0 is best).

Two deliberate differences from mgeval's code: its ``kl_dist`` evaluates the two densities on two
different grids (each set's own range), here both are evaluated on one grid covering both, so the
KL divergence compares the densities at the same points; and both densities share one kernel
width, so that a feature the reference never varies (e.g. no empty bar in any chorale: all
intra-set distances 0) is not a spike that nothing can overlap.

``feature_frechet`` stacks every feature of a piece into one vector (scalars and histogram bins),
standardises each dimension by the reference set (std at least 0.05), and computes the Frechet distance between the
two sets' Gaussians (``musgen.eval.frechet.frechet_distance``), an FID-like single number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from musgen.eval.midi_stats import FEATURES, HISTOGRAMS, SCALARS

GRID_POINTS = 1000
MAX_KDE_SAMPLES = 5000  # distances per density (quantiles of larger sets): bounded time and memory
EPS = 1e-10


def feature_values(pieces: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    """(N, d) values of one feature over the pieces where it is defined (d = 1 for scalars)."""
    rows = []
    for piece in pieces:
        value = piece.get(name)
        if value is None:
            continue
        row = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if np.isfinite(row).all():
            rows.append(row)
    width = HISTOGRAMS.get(name, 1)
    return np.stack(rows) if rows else np.zeros((0, width))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, d), (M, d) -> (N, M) Euclidean distances."""
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def intra_distances(a: np.ndarray) -> np.ndarray:
    """Distances between every two distinct rows of ``a`` (mgeval's leave-one-out intra-set distances,
    each pair once)."""
    d = pairwise_distances(a, a)
    return d[np.triu_indices(len(a), 1)]


def bandwidth(a: np.ndarray, b: np.ndarray) -> float:
    """One kernel width for both samples: Scott's rule (scipy's default) on their union,
    std * n^(-1/5), floored so that identical constant samples still have a density."""
    both = np.concatenate([a, b])
    return max(float(np.std(both)), 1e-6) * len(both) ** (-0.2)


def kde(x: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """Gaussian kernel density (width ``h``) of the samples ``x`` evaluated on ``grid``."""
    z = (grid[:, None] - x[None, :]) / h
    return np.exp(-0.5 * z**2).sum(1) / (len(x) * h * math.sqrt(2 * math.pi))


def _thin(x: np.ndarray, limit: int = MAX_KDE_SAMPLES) -> np.ndarray:
    """At most ``limit`` evenly spaced quantiles of ``x``: the same density, a bounded cost."""
    if len(x) <= limit:
        return x
    return np.sort(x)[np.linspace(0, len(x) - 1, limit).round().astype(int)]


def _densities(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = _thin(a), _thin(b)
    h = bandwidth(a, b)
    grid = np.linspace(min(a.min(), b.min()) - 4 * h, max(a.max(), b.max()) + 4 * h, GRID_POINTS)
    return grid, kde(a, grid, h), kde(b, grid, h)


def overlap_area(a: np.ndarray, b: np.ndarray) -> float:
    """Area under min(pdf_a, pdf_b) of the two samples' kernel densities: 1 for identical
    distributions, 0 for disjoint ones."""
    return _overlap(*_densities(a, b))


def _overlap(grid: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> float:
    return float(min(1.0, _trapezoid(np.minimum(pa, pb), grid)))


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)


def kl_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """KL(pdf_a || pdf_b) in nats of the two samples' kernel densities on a common grid."""
    return _kl(*_densities(a, b))


def _kl(_grid: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> float:
    pa, pb = pa / pa.sum() + EPS, pb / pb.sum() + EPS
    return float(max(0.0, (pa * np.log(pa / pb)).sum()))


def compare_feature(reference: np.ndarray, generated: np.ndarray) -> dict[str, Any]:
    """mgeval's comparison of one feature: (N, d) reference and (M, d) generated values."""
    out: dict[str, Any] = {"reference_pieces": len(reference), "generated_pieces": len(generated)}
    for label, values in (("reference", reference), ("generated", generated)):
        if values.shape[1] == 1 and len(values):
            out[f"{label}_mean"] = float(values.mean())
            out[f"{label}_std"] = float(values.std())
    if len(reference) < 2 or len(generated) < 1:
        return {**out, "overlap_area": None, "kl_divergence": None}
    intra_ref = intra_distances(reference)
    inter = pairwise_distances(generated, reference).ravel()
    out.update(
        {
            "intra_reference_mean": float(intra_ref.mean()),
            "inter_mean": float(inter.mean()),
        }
    )
    densities = _densities(intra_ref, inter)
    out.update({"overlap_area": _overlap(*densities), "kl_divergence": _kl(*densities)})
    if len(generated) > 1:
        out["intra_generated_mean"] = float(intra_distances(generated).mean())
    return out


def feature_vectors(pieces: Sequence[dict[str, Any]]) -> np.ndarray:
    """(N, D) every feature of each piece in one row (scalars, then histogram bins); nan where undefined."""
    rows = []
    for piece in pieces:
        row = [float(piece.get(name, math.nan)) for name in SCALARS]
        for name, width in HISTOGRAMS.items():
            value = piece.get(name)
            row += list(np.asarray(value, dtype=np.float64)) if value is not None else [math.nan] * width
        rows.append(row)
    width = len(SCALARS) + sum(HISTOGRAMS.values())
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)


MIN_STD = 0.05  # feature_frechet: a dimension the reference hardly varies (QN of chorales) is not blown up


def feature_frechet(reference: Sequence[dict[str, Any]], generated: Sequence[dict[str, Any]]) -> float | None:
    """Frechet distance between the Gaussians of the two sets' feature vectors, each dimension
    standardised by the reference set's mean and std (at least ``MIN_STD``); an undefined value
    counts as the reference mean, a dimension undefined in the whole reference is left out."""
    from musgen.eval.frechet import frechet_distance

    ref, gen = feature_vectors(reference), feature_vectors(generated)
    if len(ref) < 2 or len(gen) < 2:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns: "mean of empty slice"
        mean, std = np.nanmean(ref, axis=0), np.nanstd(ref, axis=0)
    keep = np.isfinite(mean)
    scale = np.maximum(std[keep], MIN_STD)
    ref, gen = [np.nan_to_num((x[:, keep] - mean[keep]) / scale, nan=0.0) for x in (ref, gen)]
    return frechet_distance(ref, gen)


def compare_sets(reference: Sequence[dict[str, Any]], generated: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every feature compared (``compare_feature``), the mean overlap area and KL divergence over the
    features, and the feature Frechet distance."""
    features = {
        name: compare_feature(feature_values(reference, name), feature_values(generated, name))
        for name in FEATURES
    }
    overlaps = [f["overlap_area"] for f in features.values() if f["overlap_area"] is not None]
    kls = [f["kl_divergence"] for f in features.values() if f["kl_divergence"] is not None]
    return {
        "features": features,
        "mean_overlap_area": float(np.mean(overlaps)) if overlaps else None,
        "mean_kl_divergence": float(np.mean(kls)) if kls else None,
        "feature_frechet": feature_frechet(reference, generated),
    }


def format_comparison(
    comparison: dict[str, Any], reference: str = "held-out", generated: str = "generated"
) -> str:
    """A fixed-width table: one row per feature (mean +- std of each set for scalars), overlap, KL; with
    a ``real_vs_real`` baseline (``musgen.eval.fair_sets``) its overlap and KL in two more columns."""
    real = comparison.get("real_vs_real")
    header = ["feature", reference, generated, "overlap", "KL"] + (
        ["real overlap", "real KL"] if real else []
    )

    def cell(f: dict, label: str) -> str:
        if f"{label}_mean" not in f:
            return "(histogram)" if f[f"{label}_pieces"] else "-"
        return f"{f[f'{label}_mean']:.3f} +- {f[f'{label}_std']:.3f}"

    def baseline(name: str | None, key: str) -> list[str]:
        if not real:
            return []
        source = real if name is None else real["features"].get(name, {})
        return [_num(source.get(key))]

    rows = [
        [
            name,
            cell(f, "reference"),
            cell(f, "generated"),
            _num(f["overlap_area"]),
            _num(f["kl_divergence"]),
            *baseline(name, "overlap_area"),
            *baseline(name, "kl_divergence"),
        ]
        for name, f in comparison["features"].items()
    ]
    rows.append(
        [
            "mean over features",
            "",
            "",
            _num(comparison["mean_overlap_area"]),
            _num(comparison["mean_kl_divergence"]),
            *baseline(None, "mean_overlap_area"),
            *baseline(None, "mean_kl_divergence"),
        ]
    )
    rows.append(
        [
            "feature Frechet distance",
            "",
            "",
            _num(comparison["feature_frechet"]),
            "",
            *baseline(None, "feature_frechet"),
            *([""] if real else []),
        ]
    )
    return _table(header, rows)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])
