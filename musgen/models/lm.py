"""What every token language model shares (LSTM now, the Music Transformer next): token-window
datasets, next-token cross-entropy, NLL evaluation and sampling from a tokenizer-aware primer.

A model of such a family maps ``(input_ids (B, T), state) -> (logits (B, T, V), state)``; ``state``
is whatever lets it continue a sequence incrementally (LSTM (h, c), a transformer's KV cache).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from musgen.errors import ConfigError, MusgenError
from musgen.training.task import Task


@dataclass
class SequenceDataConfig:
    seq_len: int = 256  # tokens per training window
    transpose: int = 5  # random transposition in [-transpose, +transpose] semitones (0 = off)
    velocity_jitter: int = 0  # random velocity shift in [-k, +k] velocity bins (0 = off)

    def validate(self) -> None:
        if self.seq_len < 1 or self.transpose < 0 or self.velocity_jitter < 0:
            raise ConfigError("data.seq_len must be at least 1, data.transpose and data.velocity_jitter >= 0")


class LanguageModelTask(Task):
    """Next-token prediction over the token stream of a data set built by ``musgen data build``."""

    checkpoint_files = ("tokenizer.json",)

    def __init__(self, cfg: Any, data_dir: Path | None = None, data_meta: Mapping[str, Any] | None = None):
        meta = dict(data_meta or {})
        if "vocab_size" not in meta:
            raise MusgenError("the data set or checkpoint does not record its vocabulary size")
        self.vocab_size = int(meta["vocab_size"])
        self.tokenizer: Any = None
        super().__init__(cfg, data_dir, meta)

    # -- training -------------------------------------------------------------------------------
    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.dataset import TokenWindows

        assert self.data_dir is not None
        data = self.cfg.data
        train = TokenWindows(
            self.data_dir,
            "train",
            data.seq_len,
            transpose=data.transpose,
            velocity_jitter=data.velocity_jitter,
            seed=self.cfg.train.seed,
        )
        valid = TokenWindows(self.data_dir, "valid", data.seq_len)
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

    # -- sampling -------------------------------------------------------------------------------
    def on_load(self, checkpoint_dir: Path) -> None:
        from musgen.data.tokenizers import load_tokenizer

        file = checkpoint_dir / "tokenizer.json"
        if not file.exists():
            raise MusgenError(f"checkpoint {checkpoint_dir} has no tokenizer.json")
        self.tokenizer = load_tokenizer(file)
        if len(self.tokenizer) != self.vocab_size:
            raise MusgenError(
                f"tokenizer in {checkpoint_dir} has {len(self.tokenizer)} tokens but the model was trained on "
                f"{self.vocab_size}: the tokenizer does not match the model"
            )

    def sample(self, n: int, prime: Any = None, **controls: Any) -> list[list[int]]:
        """Token id sequences (primer included, BOS/EOS/PAD stripped) for ``n`` samples."""
        from musgen.data.dataset import special_ids
        from musgen.data.tokenizers import MidiReadError, midi_to_ids
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
        seqs = sample_sequences(model, prime_ids, n, ctl, eos_id=eos, pad_id=pad, bar_ids=bar_ids)
        drop = {bos, eos, pad}
        return [[t for t in seq if t not in drop] for seq in seqs]

    def ids_to_score(self, ids: list[int]) -> Any:
        from musgen.data.tokenizers import ids_to_score

        return ids_to_score(self.tokenizer, ids)
