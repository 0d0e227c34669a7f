"""``musgen card``: a Hugging Face model card for a checkpoint, so its folder can be pushed as is.

The output folder gets the checkpoint's own files (unless told otherwise), ``README.md`` (the hub's
YAML header, what the model is, its training settings, its evaluation table, how to load it) and
``media/``: one sample as MIDI with its piano roll and a rendering (symbolic families), or as WAV
with its spectrogram (audio families; for a codec, the reconstruction of a short test melody).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musgen import __version__
from musgen.errors import MusgenError

log = logging.getLogger(__name__)

HUB_PLACEHOLDER = "ORG/NAME"
TRAIN_KEYS = ("steps", "batch_size", "grad_accum", "lr", "warmup_steps", "mixed_precision", "seed")


@dataclass
class CardOptions:
    hub_id: str | None = None  # how the card tells readers to load it (ORG/NAME when not given)
    seed: int = 0
    length: int = 256  # new tokens of a language model's sample
    seconds: float = 5.0  # of an audio prior's sample
    copy_checkpoint: bool = True  # the checkpoint's files go into the card's folder too
    device: str = "cpu"
    revision: str | None = None  # of a hub id given as the checkpoint


def write_card(checkpoint: str | Path, out_dir: str | Path, options: CardOptions | None = None) -> list[Path]:
    """Writes the model card of ``checkpoint`` into ``out_dir``; returns the files written."""
    from musgen.generator import load

    opts = options or CardOptions()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MusgenError(f"--out {out} is a file, not a folder")
    generator = load(checkpoint, opts.device, revision=opts.revision)
    source = generator.checkpoint.path
    written = copy_checkpoint(source, out) if opts.copy_checkpoint else []
    media = sample_media(generator, out / "media", opts)
    readme = out / "README.md"
    readme.write_text(card_text(generator, media, out, opts))
    return [*written, *media, readme]


def copy_checkpoint(source: Path, out: Path) -> list[Path]:
    """The portable checkpoint's files (weights, settings, tokenizer, codec, eval, curves) in ``out``."""
    if out.resolve() == source.resolve():
        return []
    if out.resolve().is_relative_to(source.resolve()):
        raise MusgenError(
            f"--out {out} is inside the checkpoint {source}: write the card into the checkpoint folder "
            "itself, or into a folder outside it"
        )
    shutil.copytree(source, out, dirs_exist_ok=True)
    return [out / p.relative_to(source) for p in sorted(source.rglob("*")) if p.is_file()]


# -- media ---------------------------------------------------------------------------------------


def sample_media(generator: Any, media: Path, opts: CardOptions) -> list[Path]:
    """One sample and its pictures/sound under ``media``."""
    media.mkdir(parents=True, exist_ok=True)
    if generator.sample_rate is None:
        return _symbolic_sample(generator, media, opts)
    if _is_codec(generator):
        return _codec_example(generator, media)
    (wave,) = generator.generate(1, seconds=opts.seconds, seed=opts.seed)
    return _audio_files(generator, media / "sample.wav", wave, "sample")


def _is_codec(generator: Any) -> bool:
    """An audio codec: it samples nothing by itself, it reconstructs."""
    return hasattr(generator, "reconstruct_audio")


def _symbolic_sample(generator: Any, media: Path, opts: CardOptions) -> list[Path]:
    from musgen.viz.media import plot_png, render_wav

    request: dict[str, Any] = {"seed": opts.seed}
    if "min_length" in generator.options:  # a token language model: its samples' length
        request["length"] = opts.length
    (score,) = generator.generate(1, **request)
    midi = media / "sample.mid"
    generator.write(score, midi)
    written = [midi, plot_png(midi, media / "sample.png")]
    wav = render_wav(midi, media / "sample.wav")
    return written + ([wav] if wav is not None else [])


def _codec_example(generator: Any, media: Path) -> list[Path]:
    """A codec samples nothing: the card plays a short test melody and its reconstruction."""
    wave = test_melody(generator.sample_rate)
    recon = generator.reconstruct_audio(wave)
    return _audio_files(generator, media / "original.wav", wave, "original") + _audio_files(
        generator, media / "reconstruction.wav", recon, "reconstruction"
    )


def _audio_files(generator: Any, wav: Path, wave: np.ndarray, title: str) -> list[Path]:
    from musgen.data.audio_io import write_audio
    from musgen.viz.media import plot_spectrogram

    write_audio(wav, wave, generator.sample_rate)
    return [wav, plot_spectrogram(wave, generator.sample_rate, wav.with_suffix(".png"), title)]


def test_melody(rate: int, seconds_per_note: float = 0.25) -> np.ndarray:
    """An arpeggio (C4 E4 G4 C5 G4 E4 C4) of decaying harmonic tones, float32 mono at ``rate``."""
    t = np.arange(round(seconds_per_note * rate)) / rate
    notes = []
    for midi_pitch in (60, 64, 67, 72, 67, 64, 60):
        f0 = 440.0 * 2 ** ((midi_pitch - 69) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3) if f0 * k < rate / 2)
        notes.append(0.3 * tone * np.exp(-4.0 * t))
    return np.concatenate(notes).astype(np.float32)


# -- the card ------------------------------------------------------------------------------------


def card_text(generator: Any, media: list[Path], out: Path, opts: CardOptions) -> str:
    """README.md: the hub's YAML header, then the model, its training, evaluation, sample and use."""
    hub_id = opts.hub_id or HUB_PLACEHOLDER
    sections = [
        _header(generator),
        f"# musgen {generator.family}: {_model_name(generator, opts.hub_id)}\n\n"
        f"This is {generator.spec.description or 'a ' + generator.family + ' model'}, trained "
        "with musgen (a toolkit that trains and samples music generators; `pip install musgen`). "
        "The folder is a portable musgen checkpoint: safetensors weights and JSON/YAML settings, "
        "so loading it never runs code.",
        _model_section(generator),
        _training_section(generator),
        _eval_section(generator.checkpoint.path),
        _media_section(generator, media, out),
        _use_section(generator, hub_id),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _model_name(generator: Any, hub_id: str | None) -> str:
    """The hub name, else the checkpoint folder's (a RUN_DIR's for its step_N checkpoints)."""
    from musgen.checkpoint import STEP_DIR

    if hub_id:
        return hub_id.split("/")[-1]
    path = generator.checkpoint.path.resolve()
    return path.parents[1].name if STEP_DIR.match(path.name) else path.name


def _header(generator: Any) -> str:
    kind = "audio" if generator.sample_rate is not None else "symbolic-music"
    tags = ["music-generation", "musgen", generator.family, kind]
    if generator.sample_rate is None:
        tags.append("midi")
    lines = ["---", "library_name: musgen", "tags:", *[f"- {t}" for t in tags], "---"]
    return "\n".join(lines)


def _model_section(generator: Any) -> str:
    meta = generator.checkpoint.meta
    params = sum(p.numel() for m in generator.models.values() for p in m.parameters())
    data = meta.get("data", {})
    rows = [
        ("family", generator.family),
        ("parameters", f"{params / 1e6:.2f}M"),
        ("trained steps", meta.get("step")),
        ("musgen version", meta.get("musgen_version", __version__)),
        ("data", _data_source(data)),
        ("tokenizer", data.get("tokenizer")),
        ("vocabulary", data.get("vocab_size")),
        ("sample rate", f"{generator.sample_rate} Hz" if generator.sample_rate else None),
        ("recommended sampling", _inline(meta.get("sampling"))),
    ]
    return "## Model\n\n" + _table(("", ""), [(k, v) for k, v in rows if v not in (None, "", {})])


def _data_source(data: dict[str, Any]) -> str | None:
    source = data.get("source")
    if isinstance(source, dict):
        return ", ".join(f"{k} {v}" for k, v in source.items())
    return str(source) if source else None


def _training_section(generator: Any) -> str:
    config = generator.checkpoint.config
    model = config.get("model", {})
    train = config.get("train", {})
    lines = ["## Training", ""]
    if model:
        lines.append("Model settings: " + _inline(_flat(model)) + ".")
    if train:
        lines.append("")
        lines.append("Training: " + _inline({k: train[k] for k in TRAIN_KEYS if k in train}) + ".")
    metrics = generator.checkpoint.meta.get("metrics") or {}
    if metrics:
        lines += ["", "Validation at the saved step:", "", _table(("metric", "value"), _rounded(metrics))]
    lines += [
        "",
        "The full resolved configuration is `config.yaml`; training curves, if kept, `metrics.jsonl`.",
    ]
    return "\n".join(lines)


def _eval_section(ckpt_dir: Path) -> str:
    """The table of ``eval.json`` (``musgen eval``) when the checkpoint holds one."""
    file = ckpt_dir / "eval.json"
    if not file.is_file():
        return ""
    try:
        report = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s is not readable JSON (%s): the card has no evaluation", file, err)
        return ""
    table = report.get("table")
    if not table:
        from musgen.eval.evaluate import format_report

        table = format_report(report)
    where = f" on the {report['split']} split of {report['data']}" if "split" in report else ""
    return f"## Evaluation\n\n`musgen eval`{where} (`eval.json` holds every number):\n\n```\n{table}\n```"


def _media_section(generator: Any, media: list[Path], out: Path) -> str:
    lines = ["## Sample", ""]
    for path in media:
        rel = path.relative_to(out).as_posix()
        if path.suffix == ".png":
            lines += [f"![{path.stem}]({rel})", ""]
        elif path.suffix == ".wav":
            lines += [f'<audio controls src="{rel}"></audio> [{path.name}]({rel})', ""]
        elif path.suffix == ".mid":
            lines += [f"MIDI: [{path.name}]({rel})", ""]
    if _is_codec(generator):
        lines.insert(2, "A codec samples nothing by itself: a short test melody and its reconstruction.\n")
    return "\n".join(lines).rstrip()


def _use_section(generator: Any, hub_id: str) -> str:
    if _is_codec(generator):
        cli = f"musgen reconstruct take.wav --checkpoint {hub_id} --out recon"
    elif hasattr(generator, "interpolate_to"):
        cli = f"musgen interpolate a.mid b.mid --checkpoint {hub_id} --steps 8 --out morph"
    else:
        cli = f"musgen sample --checkpoint {hub_id} --out samples --num-samples 4 --seed 0"
    python = (
        f'codec = musgen.load("{hub_id}")\nrecon = codec.reconstruct_audio(wave)  # mono float32 at '
        f"{generator.sample_rate} Hz"
        if _is_codec(generator)
        else f'generator = musgen.load("{hub_id}")  # device="cuda" / "auto" to run on a GPU\n'
        "samples = generator.generate(4, seed=0)"
    )
    return (
        "## Use\n\n`pip install musgen`, then from the command line:\n\n"
        f"```\n{cli}\n```\n\nor from Python:\n\n```python\nimport musgen\n\n{python}\n```"
    )


# -- formatting ----------------------------------------------------------------------------------


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _inline(values: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (values or {}).items())


def _rounded(values: dict[str, Any]) -> list[tuple[str, Any]]:
    from musgen.eval.report_format import format_value

    return [(k, format_value(v)) for k, v in values.items()]


def _table(head: tuple[str, str], rows: list[tuple[str, Any]]) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
