"""A test-only model family, "bigram": a next-token model that sees only the previous token.

It exists to show what adding a family takes: this one module (config, model, training Task,
inference Generator, evaluation hook) plus one line in the registry (the test adds it with
monkeypatch). Nothing in musgen/eval, musgen/api or musgen/cli names it; it trains, samples and
evaluates through the same CLI as the shipped families (tests/integration/test_new_family.py).
"""

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
class BigramModelConfig:
    embed_dim: int = 32


@dataclass
class BigramConfig:
    model: BigramModelConfig = field(default_factory=BigramModelConfig)
    data: SequenceDataConfig = field(default_factory=SequenceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class BigramModel(nn.Module):
    """logits of token t+1 from token t alone: embedding -> linear."""

    def __init__(self, vocab_size: int, cfg: BigramModelConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, vocab_size)

    @classmethod
    def from_config(cls, vocab_size: int, cfg: BigramConfig) -> BigramModel:
        return cls(vocab_size, cfg.model)

    def forward(self, input_ids: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """input_ids (B, T) -> logits (B, T, V); no state: the last token is all it needs."""
        return self.head(self.embed(input_ids)), None


class BigramTask(LanguageModelTask):
    model_class = BigramModel


class BigramGenerator(LanguageModelGenerator):
    model_class = BigramModel


FAMILY = FamilySpec("bigram", BigramConfig, BigramTask, BigramGenerator, evaluate_language_model)
