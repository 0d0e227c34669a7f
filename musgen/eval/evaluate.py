"""``musgen eval``: held-out metrics of any checkpoint, as a JSON-ready dict and a readable table.

By family (the checkpoint says which):

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from musgen.errors import MusgenError
from musgen.training.task import metrics_from_sums, sum_eval_steps

log = logging.getLogger(__name__)

FORMAT = "musgen-eval"
FORMAT_VERSION = 1
MAX_REFERENCE = 256  # held-out pieces whose statistics are computed (evenly spaced through the split)
DEFAULT_EXCERPT_QUARTERS = 32.0  # language-model samples and held-out pieces are compared as 8 bars of 4/4
SYMBOLIC = ("lstm", "transformer", "musicvae", "musegan")


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    num_samples: int = 32,
    split: str = "test",
    seed: int = 0,
    length: int | None = None,
    seconds: float | None = None,
    max_seconds: float = 10.0,
    batch_size: int = 16,
    samples_dir: str | Path | None = None,
    excerpt_quarters: float | None = DEFAULT_EXCERPT_QUARTERS,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> dict[str, Any]:
    """Evaluates a checkpoint (or a RUN_DIR's latest) on DATA_DIR's ``split`` (the valid split when
    it is empty); returns the report, its text table under ``"table"``. ``length`` (new tokens) and
    ``seconds`` (audio) size the samples; ``samples_dir`` keeps them as files. Language-model samples
    and held-out pieces are compared as excerpts of ``excerpt_quarters`` quarter notes (None: whole
    pieces); ``temperature``/``top_k``/``top_p`` override the checkpoint's recommended settings."""
    import musgen
    from musgen.data.dataset import read_manifest

    if num_samples < 0:
        raise MusgenError(f"--num-samples must be at least 0, got {num_samples}")
    if batch_size < 1:
        raise MusgenError(f"--batch-size must be at least 1, got {batch_size}")
    data_dir = Path(data_dir)
    if not (data_dir / "manifest.json").is_file():
        raise MusgenError(
            f"{data_dir} is not a musgen data set (no manifest.json); run `musgen data build` first"
        )
    generator = musgen.load(checkpoint)
    family = generator.family
    manifest = read_manifest(data_dir)
    audio_data = manifest.get("kind") == "audio"
    if audio_data != (family in ("vqvae", "prior")):
        want = "an audio data set" if family in ("vqvae", "prior") else "a MIDI data set"
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
        "seed": seed,
        "num_samples": num_samples,
    }
    samples: list[Any] = []
    extra: Any = None  # () -> held-out pieces of the other split, called only when the asked one has too few
    quarters: float | None = None
    controls = generator.sampling_settings(temperature=temperature, top_k=top_k, top_p=top_p)
    if family in ("lstm", "transformer"):
        report["likelihood"], reference, extra, tokens_per_quarter = _language_model(
            generator, data_dir, split, batch_size
        )
        quarters = excerpt_quarters
        if num_samples:
            # Long enough to cover the excerpt: 1.8x its typical token count, no EOS before that.
            new_tokens = length or sample_tokens(quarters or DEFAULT_EXCERPT_QUARTERS, tokens_per_quarter)
            report["sampling"] = {**controls, "length": new_tokens, "min_length": new_tokens}
            samples = generator.generate(
                num_samples, length=new_tokens, min_length=new_tokens, seed=seed, **controls
            )
    elif family == "musicvae":
        report["reconstruction"], reference = _musicvae(generator, data_dir, split, batch_size)
        if num_samples:
            report["sampling"] = controls
            samples = generator.generate(num_samples, seed=seed, **controls)
    elif family == "musegan":
        report["critic"], reference = _musegan(generator, data_dir, split, batch_size, seed)
        if num_samples:
            samples = generator.generate(num_samples, seed=seed)
    elif family == "vqvae":
        report.update(_codec(generator, data_dir, split, max_seconds))
    elif family == "prior":
        report.update(_prior(generator, data_dir, split, num_samples, seed, seconds, max_seconds, batch_size))
        samples = report.pop("_samples")
    else:  # a family added to the registry without an evaluation here
        raise MusgenError(f"musgen eval does not know the {family} family yet")
    if family in SYMBOLIC:
        report["statistics"] = _statistics(reference, samples, quarters, seed, extra)
    if samples_dir is not None and samples:
        out = Path(samples_dir)
        out.mkdir(parents=True, exist_ok=True)
        report["samples_dir"] = str(out)
        for i, sample in enumerate(samples):
            generator.task.write_sample(sample, out / f"sample_{i:03d}{generator.task.sample_suffix}")
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
    sums, _ = sum_eval_steps(task, DataLoader(dataset, batch_size=batch_size, shuffle=False))
    if not sums:
        raise MusgenError("the held-out split has nothing to evaluate (no window of the model's length)")
    return metrics_from_sums(task, sums)


def _evenly(items: list, limit: int = MAX_REFERENCE) -> list:
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


def _language_model(
    generator: Any, data_dir: Path, split: str, batch_size: int
) -> tuple[dict, list, Any, float]:
    """The held-out likelihood, the split's pieces, a function giving the other held-out split's pieces
    and the split's tokens per quarter note."""
    from musgen.data.dataset import TokenWindows, read_manifest
    from musgen.data.tokenizers import load_tokenizer

    task = generator.task
    data_tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    if data_tokenizer.vocab != task.tokenizer.vocab:
        raise MusgenError(
            f"the tokenizer of {data_dir} is not the checkpoint's: evaluate on the data set the "
            "model was trained on (or one built with the same tokenizer settings)"
        )
    windows = TokenWindows(data_dir, split, task.cfg.data.seq_len)
    metrics = task_metrics(task, windows, batch_size)
    pieces, tokens_per_quarter = split_pieces(task.tokenizer, data_dir, split)
    notes = sum(int(p.note_num()) for p in pieces)
    nll_sum = metrics["nll"] * metrics["tokens"]
    metrics.update(
        {
            "pieces": len(pieces),
            "notes": notes,
            "nll_per_note": nll_sum / notes if notes else math.nan,
            "context_tokens": task.cfg.data.seq_len,
        }
    )
    other = {"test": "valid", "valid": "test"}.get(split)
    has_other = bool(other) and read_manifest(data_dir).get("splits", {}).get(other, {}).get("pieces", 0) > 0

    def extra() -> list:  # decoded only when the split gives too few excerpts
        return _evenly(split_pieces(task.tokenizer, data_dir, other)[0]) if has_other else []

    return metrics, _evenly(pieces), extra, tokens_per_quarter


def _musicvae(generator: Any, data_dir: Path, split: str, batch_size: int) -> tuple[dict, list]:
    from musgen.data.melody_data import MelodyWindows, require_windows

    task = generator.task
    windows = MelodyWindows(data_dir, split, task.cfg.data, progress=False)
    require_windows(windows, data_dir, split)
    metrics = {**task_metrics(task, windows, batch_size), "windows": len(windows)}
    reference = [task.ids_to_score(windows.window(i)) for i in _evenly(list(range(len(windows))))]
    return metrics, reference


def _musegan(generator: Any, data_dir: Path, split: str, batch_size: int, seed: int) -> tuple[dict, list]:
    from musgen.data.pianoroll_data import RollPhrases, require_phrases
    from musgen.eval.musegan import data_phrases

    task = generator.task
    phrases = RollPhrases(data_dir, split, task.cfg.data, progress=False)
    require_phrases(phrases, data_dir, split)
    with torch.random.fork_rng(devices=[]):  # the critic's evaluation draws generator noise
        torch.manual_seed(seed)
        metrics = {**task_metrics(task, phrases, batch_size), "phrases": len(phrases)}
    held_out = data_phrases(data_dir, (split,), task.cfg.data)  # non-overlapping phrases
    return metrics, [task.ids_to_score(roll) for roll in _evenly(list(held_out))]


def _statistics(
    reference: list, samples: list, quarters: float | None, seed: int, extra: Any
) -> dict[str, Any]:
    from musgen.eval.fair_sets import fair_statistics

    return fair_statistics(reference, samples, quarters, seed=seed, extra=extra)


def _audio_reference(data_dir: Path, split: str, max_seconds: float, rate: int) -> list[np.ndarray]:
    from musgen.data.audio_data import audio_pieces

    keep = round(max_seconds * rate) if max_seconds > 0 else None
    return [wave[:keep] for wave in _evenly(audio_pieces(data_dir, split))]


def _codec(generator: Any, data_dir: Path, split: str, max_seconds: float) -> dict[str, Any]:
    from musgen.eval.audio import evaluate_codec
    from musgen.eval.frechet import audio_frechet

    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    codec = evaluate_codec(generator, data_dir, split, max_seconds=max_seconds, reconstructions=pairs)
    originals, recons = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"codec": codec, "frechet": audio_frechet(originals, recons, generator.task.sample_rate)}


def _prior(
    generator: Any,
    data_dir: Path,
    split: str,
    num_samples: int,
    seed: int,
    seconds: float | None,
    max_seconds: float,
    batch_size: int,
) -> dict[str, Any]:
    from musgen.eval.audio import evaluate_prior
    from musgen.eval.frechet import audio_frechet

    out: dict[str, Any] = {"likelihood": evaluate_prior(generator, data_dir, split, batch_size=batch_size)}
    samples = generator.generate(num_samples, seconds=seconds or 5.0, seed=seed) if num_samples else []
    if len(samples) >= 2:
        rate = generator.task.sample_rate
        out["frechet"] = audio_frechet(_audio_reference(data_dir, split, max_seconds, rate), samples, rate)
    out["_samples"] = samples
    return out


# ---------------------------------------------------------------------------------------------- table

_SECTIONS = {
    "likelihood": "held-out likelihood",
    "reconstruction": "held-out reconstruction",
    "critic": "critic on held-out phrases",
    "codec": "codec on held-out audio",
    "frechet": "Frechet distance (random-CNN embeddings)",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def format_report(report: dict[str, Any]) -> str:
    """The report as text: a header, one block per metric group, the statistics table."""
    from musgen.eval.distributions import format_comparison

    lines = [
        f"{report['family']} checkpoint {report['checkpoint']} (step {report.get('step')}), "
        f"{report['split']} split of {report['data']}"
    ]
    for key, title in _SECTIONS.items():
        section = report.get(key)
        if not section:
            continue
        lines += ["", f"{title}:"]
        width = max(len(k) for k in section)
        lines += [f"  {k.ljust(width)}  {_fmt(v)}" for k, v in section.items()]
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
