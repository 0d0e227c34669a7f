"""The Music Transformer (Huang et al. 2018): a decoder-only transformer over MIDI tokens with
relative self-attention (musgen.modules.relative_attention) and a key/value cache for sampling.

``attention: plain`` gives the same model with absolute position embeddings and plain causal
attention (for comparisons); ``relative_naive`` swaps the skewing for Shaw et al.'s O(L^2 D)
reference (benchmarks only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from musgen.config import TrainConfig
from musgen.data.track_layout import HINT_BARS, HINT_PITCHES
from musgen.errors import ConfigError, MusgenError
from musgen.models.lm import (
    LanguageModelGenerator,
    LanguageModelTask,
    SequenceDataConfig,
    evaluate_language_model,
    uses_hints,
)
from musgen.modules.relative_attention import KERNELS, KVCache, RelativeSelfAttention
from musgen.registry import FamilySpec

ATTENTIONS = {"relative": "skew", "relative_naive": "naive", "plain": None}


@dataclass
class TransformerModelConfig:
    d_model: int = 256
    num_layers: int = 6
    num_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.1  # on embeddings and residual branches
    # On attention weights. 0 by default: with dropout PyTorch's CPU SDPA leaves its fused kernel for
    # the math path (plain attention measured ~2x slower per step at 512 x 8 on a 2-core CPU).
    attention_dropout: float = 0.0
    attention: str = "relative"  # relative | plain | relative_naive (O(L^2 D) reference, benchmarks)
    max_relative_position: int = 512  # longer distances share the last learned embedding
    share_relative_heads: bool = False  # one set of distance embeddings for all heads of a layer
    tie_weights: bool = True  # output projection shares the token embedding
    attention_chunk: int = 128  # relative attention runs in query blocks of this size (0 = one block)
    attention_recompute: bool = False  # recompute attention logits in backward: memory ~ L * D
    # auto: FlexAttention (fused relative logits) for full passes on CUDA, on a CPU the band kernel
    # (keys M or more back through the fused kernel, the nearer band with relative logits);
    # skew | band | flex force one (flex trains on GPUs only: torch has no CPU backward for it)
    attention_kernel: str = "auto"
    activation_checkpointing: bool = False  # recompute whole blocks in backward: least memory, slower

    def validate(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ConfigError(
                f"model.attention must be one of {', '.join(ATTENTIONS)}, not {self.attention!r}"
            )
        if self.attention_kernel not in KERNELS:
            raise ConfigError(
                f"model.attention_kernel must be one of {', '.join(KERNELS)}, not {self.attention_kernel!r}"
            )
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})"
            )
        if self.max_relative_position < 1:
            raise ConfigError("model.max_relative_position must be at least 1")


@dataclass
class TransformerConfig:
    model: TransformerModelConfig = field(default_factory=TransformerModelConfig)
    data: SequenceDataConfig = field(default_factory=SequenceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


TransformerState = list[
    KVCache | tuple[torch.Tensor, torch.Tensor]
]  # one per layer, keys (B, H, T_past, D_h)


def cache_length(cache: KVCache | tuple[torch.Tensor, torch.Tensor]) -> int:
    return cache.length if isinstance(cache, KVCache) else cache[0].shape[2]


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: TransformerModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = RelativeSelfAttention(
            cfg.d_model,
            cfg.num_heads,
            relative=ATTENTIONS[cfg.attention],
            max_relative_position=cfg.max_relative_position,
            share_relative_heads=cfg.share_relative_heads,
            dropout=cfg.attention_dropout,
            chunk=cfg.attention_chunk,
            recompute=cfg.attention_recompute,
            kernel=cfg.attention_kernel,
        )
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff),
            nn.GELU(),
            nn.Linear(cfg.d_ff, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )
        self.drop = nn.Dropout(cfg.dropout)
        self._register_load_state_dict_pre_hook(self._identity_when_absent)

    def _identity_when_absent(self, state: dict[str, torch.Tensor], prefix: str, *args: object) -> None:
        """A block the loaded weights lack entirely (a model grown by ``model.num_layers``, loaded with
        ``train.init_from``) starts as the identity: both residual branches' output projections at
        zero, so the grown model predicts exactly as the checkpoint's did and training grows them."""
        if not any(key.startswith(prefix) for key in state):
            with torch.no_grad():
                for layer in (self.attn.out, cast(nn.Linear, self.mlp[2])):
                    layer.weight.zero_()
                    layer.bias.zero_()

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        h, cache = self.attn(self.norm1(x), cache)  # (B, T, D)
        x = x + self.drop(h)
        return x + self.mlp(self.norm2(x)), cache


class HintEmbedding(nn.Module):
    """Hint classes of the hinted infilling order (``musgen.data.track_layout.hint_class``) -> vectors
    added to the token embeddings: bars left to the gap's end + the voice's next pitch + its pitch
    class (factored, so that every pitch's vector learns from every hinted cell at that distance,
    and the pitch from every distance). Zero at initialisation; class 0 (no hint) always zero."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.bars = nn.Embedding(HINT_BARS, d_model)
        self.pitch = nn.Embedding(HINT_PITCHES, d_model)
        self.pitch_class = nn.Embedding(13, d_model)  # 12 pitch classes, then "none"
        # Per input token, how much of the hint it takes (ones at first): a Position token late in
        # the bar, whose next token is the pitch that leads into the next bar, can take it whole and
        # an early one none. An ungated hint helped the bar's last pitches and hurt the rest.
        self.gate = nn.Embedding(vocab_size, d_model)
        # How much of the learned hint is added: 1 in training; a checkpoint's "hint_scale" (chosen
        # on the validation split, scripts/tune_hints.py) when loaded. Adam moves weakly-trained
        # hint vectors by about lr a step whatever their signal, and that noise costs NLL to second
        # order in the scale while what they carry gains to first order.
        self.scale = 1.0

    def reset_parameters(self) -> None:
        for table in (self.bars, self.pitch, self.pitch_class):
            nn.init.zeros_(table.weight)
        nn.init.ones_(self.gate.weight)

    def forward(self, hints: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """hints (B, T) in [0, track_layout.HINT_CLASSES), the tokens they come with (B, T) -> (B, T, D)."""
        k = (hints - 1).clamp(min=0)
        bars, pitch = k // HINT_PITCHES, k % HINT_PITCHES
        pitch_class = torch.where(pitch < HINT_PITCHES - 1, pitch % 12, 12)
        vec = (self.bars(bars) + self.pitch(pitch) + self.pitch_class(pitch_class)) * self.gate(tokens)
        return vec * (hints > 0).unsqueeze(-1).to(vec.dtype) * self.scale


class MusicTransformer(nn.Module):
    """Token embedding -> N pre-norm blocks -> norm -> logits. ``context`` is the trained length:
    sampling slides its window past it; plain attention cannot see further (absolute positions).
    With ``hints`` (the hinted infilling order), an input id ``token + V * class`` reads the token's
    embedding plus the class's (``HintEmbedding``: zero for class 0 and, until trained, for all)."""

    def __init__(self, vocab_size: int, cfg: TransformerModelConfig, context: int, hints: bool = False):
        super().__init__()
        self.cfg = cfg
        self.context = context
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.hint_embed = HintEmbedding(cfg.d_model, vocab_size) if hints else None
        self.pos_embed = nn.Embedding(context, cfg.d_model) if cfg.attention == "plain" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.apply(self._init)
        for name, param in self.named_parameters():
            if name.endswith(("attn.out.weight", "mlp.2.weight")):  # GPT-2: scale residual writes
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * cfg.num_layers))
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        if self.hint_embed is not None:  # zero: a hint changes nothing until training makes it count
            self.hint_embed.reset_parameters()

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, vocab_size: int, cfg: Any) -> MusicTransformer:
        """From a family config with ``model`` and ``data.seq_len`` (the transformer's and the prior's)."""
        return cls(vocab_size, cfg.model, context=cfg.data.seq_len, hints=uses_hints(cfg.data))

    def forward(
        self, input_ids: torch.Tensor, state: TransformerState | None = None
    ) -> tuple[torch.Tensor, TransformerState]:
        """input_ids (B, T) -> logits (B, T, V) and the KV cache including these T positions."""
        past = 0 if state is None else cache_length(state[0])
        x = self.embed_tokens(input_ids)  # (B, T, D)
        if self.pos_embed is not None:
            end = past + input_ids.shape[1]
            if end > self.context:
                raise MusgenError(f"plain attention sees at most {self.context} positions, got {end}")
            x = x + self.pos_embed(torch.arange(past, end, device=input_ids.device))
        x = self.drop(x)
        new_state: TransformerState = []
        for i, block in enumerate(self.blocks):
            cache = None if state is None else state[i]
            if self.cfg.activation_checkpointing and self.training and torch.is_grad_enabled():
                x, cache = checkpoint(block, x, cache, use_reentrant=False)
            else:
                x, cache = block(x, cache)
            new_state.append(cache)
        return self.output(self.norm(x)), new_state  # (B, T, V)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T) -> (B, T, D) (subclasses read other inputs, e.g. several code streams)."""
        if self.hint_embed is None:
            return self.embed(input_ids)
        vocab = self.embed.num_embeddings
        tokens = input_ids % vocab
        return self.embed(tokens) + self.hint_embed(input_ids // vocab, tokens)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, D) -> logits (B, T, V)."""
        return self.head(hidden)


class TransformerTask(LanguageModelTask):
    model_class = MusicTransformer


class TransformerGenerator(LanguageModelGenerator):
    model_class = MusicTransformer


FAMILY = FamilySpec(
    "transformer",
    TransformerConfig,
    TransformerTask,
    TransformerGenerator,
    evaluate_language_model,
    description="a Music Transformer (Huang et al. 2018): a decoder-only transformer with relative "
    "self-attention over MIDI tokens",
)
