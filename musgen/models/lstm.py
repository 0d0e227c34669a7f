"""The LSTM language model over MIDI tokens (MelodyRNN / PerformanceRNN lineage)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from musgen.config import TrainConfig
from musgen.models.lm import (
    LanguageModelGenerator,
    LanguageModelTask,
    SequenceDataConfig,
    evaluate_language_model,
)
from musgen.registry import FamilySpec


@dataclass
class LSTMModelConfig:
    embed_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False  # output projection shares the input embedding


@dataclass
class LSTMConfig:
    model: LSTMModelConfig = field(default_factory=LSTMModelConfig)
    data: SequenceDataConfig = field(default_factory=SequenceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, B, hidden)


class LSTMLanguageModel(nn.Module):
    """Embedding -> multi-layer LSTM -> (projection) -> logits over the token vocabulary."""

    def __init__(self, vocab_size: int, cfg: LSTMModelConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.hidden_size,
            cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        # With tied weights the LSTM output is projected back to the embedding width first.
        self.proj = nn.Linear(cfg.hidden_size, cfg.embed_dim) if cfg.tie_weights else None
        self.head = nn.Linear(cfg.embed_dim if cfg.tie_weights else cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight

    @classmethod
    def from_config(cls, vocab_size: int, cfg: LSTMConfig) -> LSTMLanguageModel:
        return cls(vocab_size, cfg.model)

    def forward(
        self, input_ids: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """input_ids (B, T) -> logits (B, T, V) and the new state; pass the state back in to continue
        a sequence one token at a time (the incremental-decoding protocol of musgen.generate)."""
        x = self.drop(self.embed(input_ids))  # (B, T, E)
        # oneDNN has no bf16 LSTM kernel on many CPUs and bf16 autocast makes it fail or run ~3x
        # slower (measured): the recurrence always runs in fp32, the rest follows autocast.
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            h, state = self.lstm(x.float(), state)  # (B, T, H)
        h = self.drop(h)
        if self.proj is not None:
            h = self.proj(h)
        return self.head(h), state  # (B, T, V)


class LSTMTask(LanguageModelTask):
    model_class = LSTMLanguageModel


class LSTMGenerator(LanguageModelGenerator):
    model_class = LSTMLanguageModel


FAMILY = FamilySpec(
    "lstm",
    LSTMConfig,
    LSTMTask,
    LSTMGenerator,
    evaluate_language_model,
    description="an LSTM language model over MIDI tokens (the MelodyRNN / PerformanceRNN lineage)",
)
