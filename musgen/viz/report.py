"""``musgen report RUN_DIR --out HTML_DIR``: one static HTML page about a run.

The page shows the training curves (``RUN_DIR/metrics.jsonl``), the evaluation (``RUN_DIR/eval.json``
as written by ``musgen eval --out RUN_DIR/eval.json``, or ``--eval FILE``) and every sample (the MIDI
files, and audio files without a MIDI file of the same name, under ``RUN_DIR/samples/`` or the
folders given with ``--samples``): a MIDI sample's piano roll, and an audio player. A sample's WAV and PNG are taken from beside its MIDI file (``musgen sample --render
--plot``) or made now. Everything the page shows is copied into HTML_DIR/media/, so the folder can
be moved, served or zipped as it is; the page loads no script and nothing from the network.
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from musgen.errors import MusgenError
from musgen.eval.report_format import SECTIONS, format_value
from musgen.progress import progress

log = logging.getLogger(__name__)

MAX_SAMPLES = 48
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_SKIP_DIRS = {"state", "checkpoints", "tensorboard"}  # tensorboard: train.log_with's local tracker files
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
figure { margin: 1em 0 2em; } figcaption { font-family: monospace; margin-bottom: 0.3em; }
img { max-width: 100%; border: 1px solid #eee; } audio { display: block; margin-top: 0.3em; width: 100%; }
pre { background: #f8f8f8; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #666; }
"""


# ---------------------------------------------------------------------------------------------- inputs


def find_samples(dirs: list[Path], exclude: Path | None = None) -> list[Path]:
    """MIDI files (and audio files without a MIDI file of the same name: audio samples) under ``dirs``,
    sorted, leaving out a run's state/checkpoint folders and ``exclude`` (the report's own folder)."""
    found: list[Path] = []
    skip = exclude.resolve() if exclude is not None else None
    for root in dirs:
        files = sorted(
            p
            for p in Path(root).rglob("*")
            if p.is_file()
            and not _SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
            and not (skip is not None and p.resolve().is_relative_to(skip))
        )
        midi = [p for p in files if p.suffix.lower() in (".mid", ".midi")]
        stems = {p.with_suffix("") for p in midi}
        audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES and p.with_suffix("") not in stems]
        found += sorted(midi + audio)
    return found


# ---------------------------------------------------------------------------------------------- curves


def plot_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    """One small panel per logged metric over the steps (training first, then validation); None if
    nothing was logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(float(record["step"]))
            values.append(float(value))
    if not series:
        return None
    keys = sorted(series, key=lambda k: (k.startswith("valid_"), k != "loss", k))[:15]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        steps, values = series[key]
        ax.plot(
            steps,
            values,
            marker="o" if len(steps) < 30 else None,
            markersize=3,
            color="C1" if key.startswith("valid_") else "C0",
        )
        ax.set_title(key, fontsize="medium")
        ax.set_xlabel("step", fontsize="small")
        ax.tick_params(labelsize="small")
        ax.grid(color="0.9")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


# ---------------------------------------------------------------------------------------------- html


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any) -> str:
    return "-" if x is None else format_value(x)


def _kv_table(section: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(_num(v))}</td></tr>"
        for k, v in section.items()
        if not isinstance(v, dict | list)
    )
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _stats_table(stats: dict[str, Any]) -> str:
    real = stats.get("real_vs_real") or {}
    real_features = real.get("features", {})

    def cell(f: dict, label: str) -> str:
        if f"{label}_mean" in f:
            return f"{f[f'{label}_mean']:.3f} &plusmn; {f[f'{label}_std']:.3f}"
        return "(histogram)" if f.get(f"{label}_pieces") else "-"

    def baseline(source: dict, key: str) -> str:
        return f"<td>{_e(_num(source.get(key)))}</td>" if real else ""

    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{cell(f, 'reference')}</td><td>{cell(f, 'generated')}</td>"
        f"<td>{_e(_num(f.get('overlap_area')))}</td><td>{_e(_num(f.get('kl_divergence')))}</td>"
        f"{baseline(real_features.get(name, {}), 'overlap_area')}{baseline(real_features.get(name, {}), 'kl_divergence')}</tr>"
        for name, f in stats.get("features", {}).items()
    )
    rows += (
        f"<tr><td>mean over features</td><td></td><td></td><td>{_e(_num(stats.get('mean_overlap_area')))}</td>"
        f"<td>{_e(_num(stats.get('mean_kl_divergence')))}</td>"
        f"{baseline(real, 'mean_overlap_area')}{baseline(real, 'mean_kl_divergence')}</tr>"
        f"<tr><td>feature Frechet distance</td><td></td><td></td>"
        f"<td>{_e(_num(stats.get('feature_frechet')))}</td><td></td>"
        f"{baseline(real, 'feature_frechet')}{'<td></td>' if real else ''}</tr>"
    )
    length = (
        f"excerpts of {stats['excerpt_quarters']:g} quarter notes"
        if stats.get("excerpt_quarters")
        else "pieces"
    )
    caption = (
        f"{stats.get('reference_pieces')} held-out {length} vs {stats.get('generated_pieces')} samples "
        f"({stats.get('generated_without_notes', 0)} without notes). Overlap area (1 is best) and KL "
        "divergence (0 is best) of the generated-to-held-out distances vs the distances within the "
        "held-out set (mgeval)."
        + (
            " The real columns compare as many other held-out excerpts the same "
            "way: what real music scores at this size and length."
            if real
            else ""
        )
    )
    real_head = "<th>real overlap</th><th>real KL</th>" if real else ""
    return (
        f"<p class='note'>{_e(caption)}</p><table><tr><th>feature</th><th>held-out</th><th>generated</th>"
        f"<th>overlap</th><th>KL</th>{real_head}</tr>{rows}</table>"
    )


def _eval_html(report: dict[str, Any], source: Path) -> str:
    parts = [
        f"<p class='note'>{_e(report.get('family', ''))} checkpoint {_e(report.get('checkpoint', ''))} "
        f"(step {_e(report.get('step'))}), {_e(report.get('split', ''))} split of {_e(report.get('data', ''))}; "
        f"from {_e(source.name)}</p>"
    ]
    for key, title in SECTIONS.items():
        if isinstance(report.get(key), dict):
            parts.append(f"<h3>{_e(title)}</h3>{_kv_table(report[key])}")
    if isinstance(report.get("statistics"), dict):
        parts.append(f"<h3>musical statistics</h3>{_stats_table(report['statistics'])}")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- page


def _media_name(index: int, path: Path, suffix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)
    return f"{index:03d}_{safe}{suffix}"


def _sample_html(index: int, sample: Path, media: Path, make_missing: bool, label: str) -> str:
    from musgen.viz.media import plot_audio_file, plot_png, render_wav

    figure = [f"<figure><figcaption>{_e(label)}</figcaption>"]
    audio: Path | None  # None: no audio to show
    if sample.suffix.lower() in (".mid", ".midi"):
        png = media / _media_name(index, sample, ".png")
        if sample.with_suffix(".png").is_file():
            shutil.copyfile(sample.with_suffix(".png"), png)
            figure.append(f"<img src='media/{_e(png.name)}' alt='piano roll of {_e(sample.name)}'>")
        elif make_missing:
            plot_png(sample, png)
            figure.append(f"<img src='media/{_e(png.name)}' alt='piano roll of {_e(sample.name)}'>")
        wav = next((sample.with_suffix(s) for s in AUDIO_SUFFIXES if sample.with_suffix(s).is_file()), None)
        audio = media / _media_name(index, sample, wav.suffix if wav else ".wav")
        if wav is not None:
            shutil.copyfile(wav, audio)
        elif not (make_missing and render_wav(sample, audio) is not None):
            audio = None
    else:  # an audio sample (the audio prior, a codec's reconstruction): its spectrogram and player
        png = media / _media_name(index, sample, ".png")
        if sample.with_suffix(".png").is_file():
            shutil.copyfile(sample.with_suffix(".png"), png)
        elif not (make_missing and plot_audio_file(sample, png) is not None):
            png = None
        if png is not None:
            figure.append(f"<img src='media/{_e(png.name)}' alt='spectrogram of {_e(sample.name)}'>")
        audio = media / _media_name(index, sample, sample.suffix.lower())
        shutil.copyfile(sample, audio)
    if audio is not None:
        figure.append(f"<audio controls preload='metadata' src='media/{_e(audio.name)}'></audio>")
    else:
        figure.append("<p class='note'>(no audio: the sample has no notes)</p>")
    figure.append("</figure>")
    return "".join(figure)


def build_report(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    samples: list[str | Path] | None = None,
    eval_file: str | Path | None = None,
    make_missing: bool = True,
    max_samples: int = MAX_SAMPLES,
) -> Path:
    """Writes ``out_dir/index.html`` (and ``out_dir/media/``) for RUN_DIR; returns the page's path.

    ``samples``: folders of samples (default RUN_DIR/samples); ``eval_file``: an eval JSON (default
    RUN_DIR/eval.json when present); ``make_missing``: render and plot samples that lack a WAV/PNG."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise MusgenError(f"run directory {run_dir} does not exist")
    markers = ("metrics.jsonl", "config.yaml", "checkpoints", "musgen.json")
    if not any((run_dir / m).exists() for m in markers):
        raise MusgenError(
            f"{run_dir} is not a musgen run directory (no metrics.jsonl, config.yaml or checkpoints)"
        )
    sample_dirs = [Path(s) for s in samples] if samples else [run_dir / "samples"]
    for folder in sample_dirs:
        if samples and not folder.is_dir():
            raise MusgenError(f"--samples {folder} is not a directory")
    eval_path = Path(eval_file) if eval_file else run_dir / "eval.json"
    if eval_file and not eval_path.is_file():
        raise MusgenError(f"--eval {eval_path} is not a file")
    evaluation = None
    if eval_path.is_file():
        try:
            evaluation = json.loads(eval_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise MusgenError(f"cannot read {eval_path}: {err}") from None
        if not isinstance(evaluation, dict) or "family" not in evaluation:
            raise MusgenError(f"{eval_path} is not a `musgen eval` report")

    media = out_dir / "media"
    if media.exists():
        shutil.rmtree(media)
    media.mkdir(parents=True)
    title = f"musgen run {run_dir.resolve().name}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>{_e(str(run_dir.resolve()))}; page written "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
    ]

    body.append("<h2>Training</h2>")
    from musgen.training.loop import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    curves = plot_curves(records, media / "curves.png")
    if curves is not None:
        last = max(r["step"] for r in records)
        body.append(
            f"<p class='note'>{len(records)} records of metrics.jsonl up to step {_e(last)}</p>"
            f"<img src='media/{curves.name}' alt='training curves'>"
        )
    else:
        body.append("<p class='note'>no metrics.jsonl in the run directory</p>")

    body.append("<h2>Evaluation</h2>")
    if evaluation is not None:
        body.append(_eval_html(evaluation, eval_path))
    else:
        body.append(
            f"<p class='note'>no evaluation: <code>musgen eval --checkpoint {_e(run_dir)} --data DATA_DIR "
            f"--out {_e(run_dir / 'eval.json')}</code> writes one</p>"
        )

    body.append("<h2>Samples</h2>")
    roots = [d for d in sample_dirs if d.is_dir()]
    found = find_samples(roots, exclude=out_dir)
    if len(found) > max_samples:
        body.append(f"<p class='note'>the first {max_samples} of {len(found)} samples</p>")
        found = found[:max_samples]
    if not found:
        body.append(
            f"<p class='note'>no samples: <code>musgen sample --checkpoint {_e(run_dir)} --out "
            f"{_e(run_dir / 'samples')} --render --plot</code> writes some</p>"
        )
    for i, sample in enumerate(progress(found, desc="report samples", unit="sample")):
        # Captioned by the path under its samples folder: several models write sample_000.mid.
        root = next(r for r in roots if sample.is_relative_to(r))
        body.append(_sample_html(i, sample, media, make_missing, sample.relative_to(root).as_posix()))

    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(page)
    return index
