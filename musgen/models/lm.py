"""What every token language model family shares (LSTM, Music Transformer): its training Task
(token-window datasets, next-token cross-entropy), its Generator (sampling from a tokenizer-aware
primer) and its evaluation hook (held-out NLL, then samples next to held-out excerpts).

A model of such a family maps ``(input_ids (B, T), state) -> (logits (B, T, V), state)``; ``state``
is whatever lets it continue a sequence incrementally (LSTM (h, c), a transformer's KV cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from musgen.errors import ConfigError, MusgenError
from musgen.generator import Generator, resolve_length
from musgen.training.task import Task

if TYPE_CHECKING:
    from musgen.eval.evaluate import EvalOptions


@dataclass
class SequenceDataConfig:
    seq_len: int = 256  # tokens per training window
    transpose: int = 5  # random transposition in [-transpose, +transpose] semitones (0 = off)
    velocity_jitter: int = 0  # random velocity shift in [-k, +k] velocity bins (0 = off)
    # Share of training windows rewritten for infilling (fill-in-the-middle; a data set with named
    # tracks: musgen.data.track_layout); the others train plain continuation, as do all at 0.
    infill: float = 0.0
    # The rewritten windows' order (musgen.data.track_layout): suffix_first (the bars from the gap on,
    # then the bars before it, then the gap), nearby (the bars before, up to infill_lookahead bars
    # after, then the gap with each bar's masked tracks last), anticipate (the bars before, the gap
    # with each bar's masked tracks last and, just before its last bar, Fill + infill_lookahead bars
    # after it + FillStart) or next_pitch (the continuation order, each masked cell of the gap's last
    # bar told its track's first pitch after the gap; none made the shipped width use the right side
    # within ~1,750 steps: docs/measured.md) or hinted (the continuation order, the masked cells'
    # input ids carrying a right-side hint the model adds as an embedding: no token moves; one or two
    # gaps per rewritten window; a transformer only).
    infill_order: str = "suffix_first"
    infill_lookahead: int = 4
    infill_hint_bars: int = 1  # hinted: the gap's last bars whose masked cells carry the hint

    def validate(self) -> None:
        if self.seq_len < 1 or self.transpose < 0 or self.velocity_jitter < 0:
            raise ConfigError("data.seq_len must be at least 1, data.transpose and data.velocity_jitter >= 0")
        if not 0 <= self.infill <= 1:
            raise ConfigError(f"data.infill is a share of windows in [0, 1], got {self.infill}")
        if (
            self.infill_order not in ("suffix_first", "nearby", "anticipate", "next_pitch", "hinted")
            or self.infill_lookahead < 1
            or self.infill_hint_bars < 1
        ):
            raise ConfigError(
                "data.infill_order must be suffix_first, nearby, anticipate, next_pitch or hinted; "
                "data.infill_lookahead and data.infill_hint_bars >= 1"
            )


def uses_hints(data: Any) -> bool:
    """Whether a family's data config trains the hinted infilling order (hint ids at the input)."""
    return bool(getattr(data, "infill", 0)) and getattr(data, "infill_order", "") == "hinted"


class LanguageModelTask(Task):
    """Next-token prediction over the token stream of a data set built by ``musgen data build``."""

    checkpoint_files = ("tokenizer.json",)
    model_class: Any  # the family's nn.Module class, with ``from_config(vocab_size, cfg)``

    def __init__(
        self,
        cfg: Any,
        data_dir: Path | None = None,
        data_meta: Mapping[str, Any] | None = None,
        models: dict[str, torch.nn.Module] | None = None,
    ):
        self.vocab_size = vocab_size(data_meta or {})
        super().__init__(cfg, data_dir, data_meta, models)

    def build_models(self) -> dict[str, torch.nn.Module]:
        model = self.model_class.from_config(self.vocab_size, self.cfg)
        if uses_hints(self.cfg.data) and getattr(model, "hint_embed", None) is None:
            raise ConfigError("data.infill_order=hinted needs a transformer (its hint embeddings)")
        return {"model": model}

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.dataset import InfillWindows, TokenWindows

        data = self.cfg.data
        augment = dict(
            transpose=data.transpose, velocity_jitter=data.velocity_jitter, seed=self.cfg.train.seed
        )
        if data.infill > 0:
            train: Dataset = InfillWindows(
                self.data_path,
                "train",
                data.seq_len,
                infill=data.infill,
                order=data.infill_order,
                lookahead=data.infill_lookahead,
                hint_bars=data.infill_hint_bars,
                **augment,
            )
        else:
            train = TokenWindows(self.data_path, "train", data.seq_len, **augment)
        valid = TokenWindows(self.data_path, "valid", data.seq_len)
        return train, valid

    def _logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits, _ = self.models["model"](batch["input_ids"])
        return logits.float()  # (B, T, V); the loss is always taken in fp32

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self._logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        return loss, {}

    def loss_weight(self, batch: Mapping[str, torch.Tensor]) -> float:
        return float((batch["labels"] != -100).sum())  # windows at a piece's end are padded

    def eval_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self._logits(batch)
        labels = batch["labels"].flatten()
        nll = F.cross_entropy(logits.flatten(0, 1), labels, ignore_index=-100, reduction="sum")
        return {"nll_sum": nll, "tokens": (labels != -100).sum()}

    def eval_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        tokens = max(sums.get("tokens", 0.0), 1.0)
        nll = sums.get("nll_sum", float("nan")) / tokens
        return {
            "nll": nll,
            "ppl": math.exp(min(nll, 50.0)),
            "bits_per_token": nll / math.log(2),
            "tokens": tokens,
        }


def vocab_size(meta: Mapping[str, Any]) -> int:
    if "vocab_size" not in meta:
        raise MusgenError("the data set or checkpoint does not record its vocabulary size")
    return int(meta["vocab_size"])


class LanguageModelGenerator(Generator):
    """Samples token sequences (optionally continuing a MIDI primer) and decodes them to Scores with
    the checkpoint's own tokenizer."""

    options = (
        "prime",
        "length",
        "min_length",
        "bars",
        "temperature",
        "top_k",
        "top_p",
        "seed",
        "compile",
        "density",
    )
    model_class: Any  # the family's nn.Module class, with ``from_config(vocab_size, cfg)``

    def build_models(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model_class.from_config(self.vocab_size, self.cfg)}

    def __init__(self, ckpt: Any, cfg: Any):
        from musgen.data.tokenizers import load_tokenizer

        self.vocab_size = vocab_size(ckpt.meta.get("data", {}))
        super().__init__(ckpt, cfg)
        file = ckpt.path / "tokenizer.json"
        if not file.exists():
            raise MusgenError(f"checkpoint {ckpt.path} has no tokenizer.json")
        self.tokenizer = load_tokenizer(file)
        if len(self.tokenizer) != self.vocab_size:
            raise MusgenError(
                f"tokenizer in {ckpt.path} has {len(self.tokenizer)} tokens but the model was trained on "
                f"{self.vocab_size}: the tokenizer does not match the model"
            )
        hints = getattr(self.models["model"], "hint_embed", None)
        if hints is not None:  # the hint strength chosen on the validation split (scripts/tune_hints.py)
            hints.scale = float(ckpt.meta.get("hint_scale", 1.0))

    def generate(
        self,
        num_samples: int = 1,
        *,
        prime: str | Path | None = None,
        length: int | None = None,
        min_length: int | None = None,
        bars: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        max_new_tokens: int | None = None,
        compile: bool | None = None,
        density: str | None = None,
    ) -> list[Any]:
        """``num_samples`` symusic Scores of ``length`` new tokens (default 512; also spelled
        ``max_new_tokens``) or ``bars`` new bars; with ``prime`` (a MIDI file) each starts with it.
        ``density`` (rest | low | mid | high; models trained on named tracks): the notes per beat
        of every new bar of every track.
        ``temperature``, ``top_k`` and ``top_p`` left at None take the checkpoint's recommended
        settings (``sampling_settings``). ``compile``: decode with a static cache and a compiled step
        (``SamplingControls.compile``)."""
        length = resolve_length(length, max_new_tokens)
        controls = self.sampling_settings(temperature=temperature, top_k=top_k, top_p=top_p)
        seqs = self.sample_ids(
            num_samples,
            prime=prime,
            length=length,
            min_length=min_length,
            bars=bars,
            seed=seed,
            compile=bool(compile),
            density=density,
            **controls,
        )
        return [self.ids_to_score(ids) for ids in seqs]

    def continue_(self, prime: str | Path, num_samples: int = 1, **options: Any) -> list[Any]:
        """``generate`` continuing the MIDI file ``prime`` (each sample starts with it)."""
        return self.generate(num_samples, prime=prime, **options)

    # -- infilling (a model trained on named tracks with data.infill > 0) ------------------------

    def infill(
        self,
        piece: str | Path | Any,
        bars: str | tuple[int, int],
        num_samples: int = 1,
        *,
        track: str | None = None,
        density: str | None = None,
        pitch_range: str | tuple[int, int] | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        compile: bool | None = None,
    ) -> list[Any]:
        """``num_samples`` copies of ``piece`` (a MIDI path or symusic Score) with ``bars`` ("9-12" or
        (9, 12), 1-based, inclusive) regenerated, of ``track`` alone or of every track; ``density``
        (rest | low | mid | high) asks for that many notes per beat in each regenerated bar;
        ``pitch_range`` ("55-67" or (55, 67), MIDI pitches) keeps the new notes within it. Notes
        that start outside the bars, and the other tracks, are kept exactly."""
        from musgen.data.tokenizers import MidiReadError, load_score
        from musgen.data.track_layout import DENSITIES
        from musgen.generate.infill import merge_into, parse_pitch_range, select
        from musgen.generate.sampling import SamplingControls

        layout = self.layout()
        if density is not None and density not in DENSITIES:
            raise MusgenError(f"--density must be one of {', '.join(DENSITIES)}, not {density!r}")
        if num_samples < 1:
            raise MusgenError(f"--num-samples must be at least 1, got {num_samples}")
        pitches = None if pitch_range is None else parse_pitch_range(pitch_range)
        try:
            score = load_score(piece)
        except MidiReadError as err:
            raise MusgenError(f"{piece}: {err.reason}") from None
        infiller = self.infiller()
        framed, n_bars = infiller.frame(score)
        sel = select(layout, bars, track, n_bars)
        controls = self.sampling_settings(temperature=temperature, top_k=top_k, top_p=top_p)
        outputs = []
        for i in range(num_samples):
            ctl = SamplingControls(seed=None if seed is None else seed + i, compile=bool(compile), **controls)
            filled = infiller.fill(framed, sel, ctl, density, pitches)
            outputs.append(merge_into(score, framed, filled, sel, self.tokenizer, layout))
        return outputs

    def infill_to(
        self, out_dir: str | Path, piece: str | Path, bars: str, num_samples: int = 1, **options: Any
    ) -> list[Path]:
        """``infill`` writing ``out_dir/infill_000.mid`` ... and recording the run in samples.json."""
        options = {k: v for k, v in options.items() if v is not None}
        run = self.run_record(
            "infill", options | {"piece": str(piece), "bars": str(bars), "num_samples": num_samples}
        )
        options["seed"] = run["seed"]
        outputs = self.infill(piece, bars, num_samples, **options)
        return self.write_all(out_dir, "infill", outputs, run=run)

    def infiller(self) -> Any:
        """The ``musgen.generate.infill.Infiller`` of this model, in the order it was trained on."""
        from musgen.data.dataset import special_ids
        from musgen.generate.infill import Infiller

        data = self.cfg.data
        return Infiller(
            self.models["model"],
            self.tokenizer,
            self.layout(),
            special_ids(self.tokenizer).bos,
            order=data.infill_order,
            lookahead=data.infill_lookahead,
            hint_bars=data.infill_hint_bars,
        )

    def layout(self) -> Any:
        """The checkpoint's tracks layout; an error when it was not trained to infill."""
        from musgen.data.track_layout import layout_of

        layout = layout_of(self.tokenizer)
        if layout is None or not getattr(self.cfg.data, "infill", 0):
            raise MusgenError(
                f"{self.checkpoint.path} was not trained to infill: that needs a data set built with "
                "named tracks (musgen data build ... --set tracks=[soprano,alto,tenor,bass]) and "
                "--set data.infill=0.5 when training"
            )
        return layout

    def sample_ids(
        self, n: int, prime: Any = None, density: str | None = None, **controls: Any
    ) -> list[list[int]]:
        """Token id sequences (primer included, BOS/EOS/PAD stripped) for ``n`` samples; ``controls``
        as ``musgen.generate.sampling.SamplingControls``; ``density`` as in ``generate``."""
        from musgen.data.dataset import special_ids
        from musgen.data.tokenizers import MidiReadError, midi_to_ids
        from musgen.data.track_layout import layout_of
        from musgen.generate.sampling import SamplingControls, sample_sequences

        if controls.get("length") is None:
            controls["length"] = 512
        ctl = SamplingControls(**controls)
        vocab = self.tokenizer.vocab
        special = special_ids(self.tokenizer)
        bos, eos, pad = special.bos, special.eos, special.pad
        prime_ids = [bos]
        if prime is not None:
            try:
                prime_ids += midi_to_ids(self.tokenizer, prime)
            except MidiReadError as err:  # name the file: "empty file" alone does not say which
                raise MusgenError(f"--prime {prime}: {err.reason}") from None
        bar_ids = [i for tok, i in vocab.items() if tok.startswith("Bar_")] if ctl.bars else None
        if ctl.bars and not bar_ids:
            raise MusgenError(
                f"--bars needs a tokenizer with Bar tokens ({type(self.tokenizer).__name__} has none); use --length"
            )
        model = self.models["model"]
        allowed = follow = None
        layout = layout_of(self.tokenizer)
        if layout is not None:  # continuing: the infilling tokens are never the model's to write
            allowed = torch.ones(1, self.vocab_size, dtype=torch.bool)
            allowed[0, [layout.fill, layout.fill_start]] = False
        if density is not None:
            follow = self._density_follow(layout, density)
        seqs = sample_sequences(
            model, prime_ids, n, ctl, eos_id=eos, pad_id=pad, bar_ids=bar_ids, allowed=allowed, follow=follow
        )
        drop = {bos, eos, pad}
        return [[t for t in seq if t not in drop] for seq in seqs]

    def _density_follow(self, layout: Any, density: str) -> torch.Tensor:
        """(V,) the density token to write after each track token (-1 after any other token)."""
        from musgen.data.track_layout import DENSITIES

        if layout is None:
            raise MusgenError(
                "--density needs a model trained on named tracks (a data set built with --set tracks=[...])"
            )
        if density not in DENSITIES:
            raise MusgenError(f"--density must be one of {', '.join(DENSITIES)}, not {density!r}")
        follow = torch.full((self.vocab_size,), -1, dtype=torch.long)
        follow[list(layout.tracks)] = layout.densities[DENSITIES.index(density)]
        return follow

    def ids_to_score(self, ids: list[int]) -> Any:
        from musgen.data.tokenizers import ids_to_score

        return ids_to_score(self.tokenizer, ids)


# -- evaluation hook (musgen eval) --------------------------------------------------------------


def evaluate_language_model(
    generator: LanguageModelGenerator, data_dir: Path, split: str, opts: EvalOptions
) -> tuple[dict[str, Any], list[Any]]:
    """Held-out NLL (per token, per note), then ``opts.num_samples`` samples long enough to cover
    ``opts.excerpt_quarters`` and their statistics next to held-out excerpts of that length."""
    from musgen.eval.evaluate import DEFAULT_EXCERPT_QUARTERS, sample_tokens, symbolic_statistics

    likelihood, reference, extra, tokens_per_quarter = _likelihood(
        generator, data_dir, split, opts.batch_size
    )
    report: dict[str, Any] = {"likelihood": likelihood}
    samples: list[Any] = []
    quarters = opts.excerpt_quarters
    if opts.num_samples:
        controls = generator.sampling_settings(**opts.sampling)
        # Long enough to cover the excerpt: 1.8x its typical token count, no EOS before that.
        new_tokens = opts.length or sample_tokens(quarters or DEFAULT_EXCERPT_QUARTERS, tokens_per_quarter)
        report["sampling"] = {**controls, "length": new_tokens, "min_length": new_tokens}
        samples = generator.generate(
            opts.num_samples, length=new_tokens, min_length=new_tokens, seed=opts.seed, **controls
        )
    report["statistics"] = symbolic_statistics(reference, samples, quarters, opts.seed, extra)
    return report, samples


def _likelihood(
    generator: LanguageModelGenerator, data_dir: Path, split: str, batch_size: int
) -> tuple[dict, list, Callable[[], list], float]:
    """The held-out likelihood, the split's pieces, a function giving the other held-out split's pieces
    and the split's tokens per quarter note."""
    from musgen.data.dataset import TokenWindows, read_manifest
    from musgen.data.tokenizers import load_tokenizer
    from musgen.eval.evaluate import evenly, split_pieces, task_metrics

    data_tokenizer = load_tokenizer(data_dir / "tokenizer.json")
    if data_tokenizer.vocab != generator.tokenizer.vocab:
        raise MusgenError(
            f"the tokenizer of {data_dir} is not the checkpoint's: evaluate on the data set the "
            "model was trained on (or one built with the same tokenizer settings)"
        )
    seq_len = generator.cfg.data.seq_len
    metrics = task_metrics(
        generator.evaluation_task(data_dir), TokenWindows(data_dir, split, seq_len), batch_size
    )
    pieces, tokens_per_quarter = split_pieces(generator.tokenizer, data_dir, split)
    notes = sum(int(p.note_num()) for p in pieces)
    nll_sum = metrics["nll"] * metrics["tokens"]
    metrics.update(
        {
            "pieces": len(pieces),
            "notes": notes,
            "nll_per_note": nll_sum / notes if notes else math.nan,
            "context_tokens": seq_len,
        }
    )
    other = {"test": "valid", "valid": "test"}.get(split)
    has_other = bool(other) and read_manifest(data_dir).get("splits", {}).get(other, {}).get("pieces", 0) > 0

    def extra() -> list:  # decoded only when the split gives too few excerpts
        return evenly(split_pieces(generator.tokenizer, data_dir, other)[0]) if has_other and other else []

    return metrics, evenly(pieces), extra, tokens_per_quarter
