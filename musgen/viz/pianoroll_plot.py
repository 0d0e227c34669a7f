"""A piano roll of a MIDI file as a PNG: one colour per track, bar lines, pitch names on the left.

Drawn with matplotlib's Agg canvas (``Figure`` + ``FigureCanvasAgg``): no display and no change of the
global matplotlib backend, so it works on a headless server and inside other programs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from musgen.data.tokenizers import load_score

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def bar_lines(score: symusic.Score, end_quarters: float) -> list[float]:
    """Bar starts in quarter notes up to ``end_quarters``, following the time signatures (4/4 without one)."""
    tpq = score.ticks_per_quarter
    changes = sorted((ts.time / tpq, 4 * ts.numerator / ts.denominator) for ts in score.time_signatures)
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0.0, 4.0))
    lines: list[float] = []
    for i, (start, length) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else end_quarters
        if length <= 0:
            continue
        t = start
        while t < stop - 1e-9 and t <= end_quarters:
            lines.append(t)
            t += length
    return lines


def _label(track: symusic.Track, index: int) -> str:
    name = track.name.strip()
    if track.is_drum:
        return name or "drums"
    return name or f"track {index + 1} (program {track.program})"


def plot_pianoroll(
    piece: Path | str | symusic.Score, out: Path | str, *, title: str | None = None, dpi: int = 100
) -> Path:
    """Writes a PNG piano roll of ``piece`` (a MIDI path or a Score; an empty Score gives an empty
    roll) to ``out`` and returns its path. x: quarter notes with bar lines and bar numbers; y: pitch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    score = piece if isinstance(piece, symusic.Score) else load_score(piece)
    tpq = score.ticks_per_quarter
    tracks = [(i, t) for i, t in enumerate(score.tracks) if len(t.notes) > 0]
    end = max(float(score.end()) / tpq, 4.0)
    fig = Figure(figsize=(float(np.clip(2.5 + 0.18 * end, 6.0, 40.0)), 4.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{k % 10}" for k in range(len(tracks))]
    low, high = 127, 0
    for (i, track), colour in zip(tracks, colours, strict=True):
        notes = track.notes.numpy()
        start, length, pitch = notes["time"] / tpq, notes["duration"] / tpq, notes["pitch"]
        ax.barh(
            pitch,
            np.maximum(length, 0.05),
            left=start,
            height=0.85,
            color=colour,
            edgecolor="none",
            label=_label(track, i),
            alpha=0.85,
        )
        low, high = min(low, int(pitch.min())), max(high, int(pitch.max()))
    if not tracks:
        low, high = 60, 72
        ax.text(end / 2, 66, "(no notes)", ha="center", va="center", color="0.4")
    bars = bar_lines(score, end)
    for b in bars:
        ax.axvline(b, color="0.75", linewidth=0.6, zorder=0)
    step = max(1, len(bars) // 24)
    ax.set_xticks(bars[::step], [str(k + 1) for k in range(0, len(bars), step)])
    ax.set_xlabel("bar")
    ax.set_xlim(0, end)
    ax.set_ylim(low - 2, high + 2)
    cs = [p for p in range(low - 2, high + 3) if p % 12 == 0]
    ax.set_yticks(cs, [f"C{p // 12 - 1}" for p in cs])
    ax.grid(axis="y", color="0.9", linewidth=0.5)
    ax.set_axisbelow(True)
    if tracks:
        ax.legend(
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            fontsize="small",
            ncol=min(len(tracks), 6),
            frameon=False,
            borderaxespad=0.2,
        )
    if title:
        ax.set_title(title, loc="left", fontsize="medium")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
