"""``musgen eval``: held-out metrics of any checkpoint, as a JSON-ready dict and a readable table.

The checkpoint's family (through the registry) supplies the evaluation hook, next to its Task and
Generator; this module holds what every hook shares (options, held-out split, the report, the table).
What the families report:

* **lstm, transformer**: NLL of the held-out split's tokens (nats per token, perplexity, bits per
  token, and nats per note: the same total over the notes the tokens decode to), computed by the
  family's own ``Task.eval_step`` / ``eval_metrics`` over non-overlapping windows of the trained
  length; then ``num_samples`` samples (with the checkpoint's recommended sampling settings unless
  given) and their musical statistics next to held-out excerpts of the same duration
  (``excerpt_quarters``; the other held-out split is added when the asked one has too few).
* **musicvae**: teacher-forced reconstruction of held-out melody windows from z = mu (accuracy over
  all steps and over note events, NLL, KL; the Task's own evaluation), and statistics of samples
  from the prior next to the held-out windows'.
* **musegan**: the critic's held-out evaluation (Task.eval_step) and statistics of generated
  phrases next to held-out phrases'.
* **vqvae**: reconstruction of the held-out audio (multi-resolution STFT distance, log-mel L1,
  SI-SDR, codebook usage and perplexity; ``musgen.eval.audio``) and the Frechet distance between
  the originals and their reconstructions (``musgen.eval.frechet``).
* **prior**: NLL per code (``musgen.eval.audio``) and the Frechet distance between ``num_samples``
  generated clips and the held-out audio.

Statistics (``musgen.eval.midi_stats``) are compared the mgeval way (``musgen.eval.distributions``),
on equal numbers of equally long pieces, next to a real-vs-real reference measured the same way in
the same run (``musgen.eval.fair_sets``).
Held-out pieces are taken in the model's own representation (token pieces decoded by the checkpoint's
tokenizer, melody windows, piano-roll phrases), so data and samples are measured alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from musgen.errors import MusgenError
from musgen.eval.report_format import SECTIONS, format_value
from musgen.training.task import metrics_from_sums, sum_eval_steps

log = logging.getLogger(__name__)

FORMAT = "musgen-eval"
FORMAT_VERSION = 1
MAX_REFERENCE = 256  # held-out pieces whose statistics are computed (evenly spaced through the split)
DEFAULT_EXCERPT_QUARTERS = 32.0  # language-model samples and held-out pieces are compared as 8 bars of 4/4


@dataclass(frozen=True)
class EvalOptions:
    """What a family's evaluation hook may use (``musgen eval``'s flags)."""

    num_samples: int = 32
    seed: int = 0
    length: int | None = None  # new tokens per language-model sample (None: enough for the excerpt)
    seconds: float | None = None  # seconds per audio sample
    max_seconds: float = 10.0  # audio: first seconds of each held-out piece (0 = all)
    batch_size: int = 16
    excerpt_quarters: float | None = DEFAULT_EXCERPT_QUARTERS  # None: whole pieces
    temperature: float | None = None  # None: the checkpoint's recommended setting
    top_k: int | None = None
    top_p: float | None = None

    @property
    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    split: str = "test",
    samples_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    revision: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluates a checkpoint (or a RUN_DIR's latest, or a hub id) on DATA_DIR's ``split`` (the valid
    split when it is empty) with the model on ``device``; returns the report, its text table under
    ``"table"``. ``options``: the fields of ``EvalOptions``; ``samples_dir`` keeps the samples as files."""
    from musgen.data.dataset import read_manifest
    from musgen.generator import load

    opts = EvalOptions(**options)
    if opts.num_samples < 0:
        raise MusgenError(f"--num-samples must be at least 0, got {opts.num_samples}")
    if opts.batch_size < 1:
        raise MusgenError(f"--batch-size must be at least 1, got {opts.batch_size}")
    data_dir = Path(data_dir)
    if not (data_dir / "manifest.json").is_file():
        raise MusgenError(
            f"{data_dir} is not a musgen data set (no manifest.json); run `musgen data build` first"
        )
    generator = load(checkpoint, device, revision=revision)
    family, spec = generator.family, generator.spec
    manifest = read_manifest(data_dir)
    if (manifest.get("kind") == "audio") != (spec.data_kind == "audio"):
        want = "an audio data set" if spec.data_kind == "audio" else "a MIDI data set"
        raise MusgenError(f"a {family} checkpoint is evaluated on {want}; {data_dir} is not one")
    split = _held_out_split(manifest, split, data_dir)
    report: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint": str(generator.checkpoint.path),
        "family": family,
        "step": generator.checkpoint.meta.get("step"),
        "data": str(data_dir),
        "split": split,
        "seed": opts.seed,
        "num_samples": opts.num_samples,
    }
    sections, samples = spec.evaluate(generator, data_dir, split, opts)
    report.update(sections)
    if samples_dir is not None and samples:
        report["samples_dir"] = str(Path(samples_dir))
        settings = {"num_samples": opts.num_samples, "seed": opts.seed, **report.get("sampling", {})}
        for key in ("length", "seconds", "excerpt_quarters"):
            settings.setdefault(key, getattr(opts, key, None))
        generator.write_all(samples_dir, "sample", samples, run=generator.run_record("eval", settings))
    report["table"] = format_report(report)
    return report


def sample_tokens(quarters: float, tokens_per_quarter: float) -> int:
    """New tokens a language-model sample needs to last ``quarters`` quarter notes: 1.8x the held-out
    data's tokens per quarter (a denser sample is cut shorter, which shortens every excerpt)."""
    return math.ceil(1.8 * quarters * tokens_per_quarter)


def _held_out_split(manifest: dict, split: str, data_dir: Path) -> str:
    splits = manifest.get("splits", {})
    if split not in splits:
        raise MusgenError(f"{data_dir} has no split {split!r} (it has {', '.join(splits) or 'none'})")
    if splits[split].get("pieces", 0) == 0:
        fallback = next((s for s in ("valid", "test") if splits.get(s, {}).get("pieces", 0) > 0), None)
        if fallback is None:
            raise MusgenError(f"{data_dir} holds no held-out pieces (its valid and test splits are empty)")
        log.info("the %s split of %s is empty: evaluating on %s", split, data_dir, fallback)
        return fallback
    return split


@torch.no_grad()
def task_metrics(task: Any, dataset: Dataset, batch_size: int) -> dict[str, float]:
    """The family's own held-out metrics: ``Task.eval_step`` summed over every batch of ``dataset``,
    then ``Task.eval_metrics`` (the loop's periodic validation does the same on the valid split)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    sums, _ = sum_eval_steps(task, on_device(loader, models_device(task.models)))
    if not sums:
        raise MusgenError("the held-out split has nothing to evaluate (no window of the model's length)")
    return metrics_from_sums(task, sums)


def models_device(models: Mapping[str, torch.nn.Module]) -> torch.device:
    """Where a Task's (loaded) models are: the device of their first parameter."""
    for model in models.values():
        for param in model.parameters():
            return param.device
    return torch.device("cpu")


def on_device(
    batches: Iterable[Mapping[str, torch.Tensor]], device: torch.device
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of a DataLoader, each tensor moved to ``device`` (the loop's Accelerator does
    this in training; ``musgen eval`` runs without one)."""
    for batch in batches:
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def evenly(items: list, limit: int = MAX_REFERENCE) -> list:
    """At most ``limit`` of ``items``, evenly spaced through them."""
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def split_pieces(tokenizer: Any, data_dir: Path, split: str) -> tuple[list, float]:
    """The pieces of a token data set's split decoded to symusic Scores, and the tokens a language
    model predicts per quarter note of them (each piece's tokens and its EOS)."""
    from musgen.data.dataset import load_split
    from musgen.data.tokenizers import ids_to_score

    tokens, offsets = load_split(data_dir, split)
    pieces = [
        ids_to_score(tokenizer, np.asarray(tokens[offsets[k] : offsets[k + 1]]).tolist())
        for k in range(len(offsets) - 1)
    ]
    quarters = sum(p.end() / p.ticks_per_quarter for p in pieces)
    return pieces, (len(tokens) + len(pieces)) / quarters if quarters else 16.0


def symbolic_statistics(
    reference: list, samples: list, quarters: float | None, seed: int, extra: Any = None
) -> dict[str, Any]:
    """Musical statistics of samples next to held-out pieces, with a real-vs-real reference
    (``musgen.eval.fair_sets``)."""
    from musgen.eval.fair_sets import fair_statistics

    return fair_statistics(reference, samples, quarters, seed=seed, extra=extra)


def audio_reference(data_dir: Path, split: str, max_seconds: float, rate: int) -> list[np.ndarray]:
    """The held-out waveforms (their first ``max_seconds``; evenly spaced through the split)."""
    from musgen.data.audio_data import audio_pieces

    keep = round(max_seconds * rate) if max_seconds > 0 else None
    return [wave[:keep] for wave in evenly(audio_pieces(data_dir, split))]


# ----------------------------------------------------------------------------------------------- table


def format_report(report: dict[str, Any]) -> str:
    """The report as text: a header, one block per metric group, the statistics table."""
    from musgen.eval.distributions import format_comparison

    lines = [
        f"{report['family']} checkpoint {report['checkpoint']} (step {report.get('step')}), "
        f"{report['split']} split of {report['data']}"
    ]
    for key, title in SECTIONS.items():
        section = report.get(key)
        if not section:
            continue
        lines += ["", f"{title}:"]
        width = max(len(k) for k in section)
        lines += [f"  {k.ljust(width)}  {format_value(v)}" for k, v in section.items()]
    if report.get("sampling"):
        lines += ["", "sampling: " + ", ".join(f"{k} {v}" for k, v in report["sampling"].items())]
    stats = report.get("statistics")
    if stats:
        length = (
            f"excerpts of {stats['excerpt_quarters']:g} quarter notes"
            if stats.get("excerpt_quarters")
            else "pieces"
        )
        lines += [
            "",
            f"musical statistics: {stats['reference_pieces']} held-out {length} vs "
            f"{stats['generated_pieces']} samples ({stats.get('samples_without_notes', 0)} samples without notes left "
            "out); overlap area and KL divergence of the "
            "inter-set vs the held-out intra-set distances; 'real' columns: as many other held-out "
            f"excerpts ({stats.get('held_out_source_pieces')} pieces in all) compared the same way",
            format_comparison(stats, "held-out", "generated"),
        ]
        if stats.get("frechet_ratio") is not None:
            lines.append(f"feature Frechet distance / real-vs-real: {stats['frechet_ratio']:.2f}")
    return "\n".join(lines)
