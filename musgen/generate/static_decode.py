"""Decoding one token at a time with a preallocated key/value cache and a compiled step.

``IncrementalDecoder`` runs the model's own forward for every new token: some hundred small eager
kernels per token, whose fixed costs are most of a token's time when the weights stay in cache (the
shipped 2.2-2.4M-parameter models; docs/measured.md). ``CompiledDecoder`` keeps the same interface (``start``, ``advance``)
and the same window sliding, but each new token runs one function of fixed shapes:

    token (B, 1, ...), position p () -> logits (B, ...), writing keys/values at p in place

over caches of ``capacity`` = the model's context positions, every key beyond p masked out. Fixed
shapes let ``torch.compile`` (inductor) fuse the step into a few kernels, compiled once per model,
batch size, capacity and span (the step reads the cache up to the next multiple of ``SPAN`` past
p). The primer and a slid window still run the model's ordinary forward (its KV cache is copied
into the static one), so only the one-token step is new code, checked against the eager decoder by
the tests.

At batch 1 on a CPU a token is one pass over the weights (19 MB for 6 x 256), so three things make
it fast (docs/measured.md, issue 23): the matrix-vector products written as sums that inductor
vectorises (``_linear``: 3-4x the library's), every intermediate kept in a buffer rather than
recomputed per output row, and dynamo's guards skipped after each graph's first call (``_Step``).
``CompiledLSTMDecoder`` does the same for the LSTM: its cells written out
(gates, state update) so that the compiler fuses them, the (h, c) state updated in place.
"""

from __future__ import annotations

import logging
import math
import types
import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from musgen.generate.sampling import slid_window
from musgen.models.lstm import LSTMLanguageModel
from musgen.models.transformer import Block, MusicTransformer, cache_length

log = logging.getLogger(__name__)

SPAN = 256  # the compiled transformer step attends over the cache in lengths of this many positions


def _linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for x (B, 1, In) -> (B, 1, Out). Compiled for a CPU, a batch-1 product is written
    as a sum over In, which inductor turns into one vectorised pass over the weights: 3-4x faster than
    the library's matrix-vector product on this CPU, where that pass is most of a token's time
    (docs/measured.md)."""
    if x.shape[0] > 1 or x.device.type != "cpu" or not torch.compiler.is_compiling():
        return layer(x)  # batches, GPUs (not measured there) and the eager step: the library's product
    linear = cast(nn.Linear, layer)
    y = (x[..., None, :] * linear.weight).sum(-1)  # (B, 1, Out): In summed
    return y if linear.bias is None else y + linear.bias


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A block's ``mlp`` (Linear, activation, Linear, dropout: an eval no-op) through ``_linear``."""
    up, activation, down = list(cast(nn.Sequential, mlp))[:3]
    return _linear(down, activation(_linear(up, x)))


def _transformer_step(
    model: MusicTransformer,
    ids: torch.Tensor,
    pos: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
) -> torch.Tensor:
    """One new position ``pos`` () for every sequence: ids (B, 1, ...) -> logits (B, 1, ...). Writes
    this position's keys/values into ``keys[i]``/``values[i]`` (B, H, C, D_h) in place."""
    x = model.embed_tokens(ids)  # (B, 1, D)
    if model.pos_embed is not None:
        x = x + model.pos_embed(pos.view(1))
    capacity = keys[0].shape[2]
    j = torch.arange(capacity, device=ids.device)
    visible = j <= pos  # (C,): keys written so far, this one included
    for layer, k_cache, v_cache in zip(model.blocks, keys, values, strict=True):
        block = cast(Block, layer)
        attn = block.attn
        b = x.shape[0]
        q, k, v = (
            _linear(attn.qkv, block.norm1(x))
            .view(b, 1, 3, attn.num_heads, attn.head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        # q, k, v: (B, H, 1, D_h)
        k_cache.index_copy_(2, pos.view(1), k)
        v_cache.index_copy_(2, pos.view(1), v)
        scale = 1.0 / math.sqrt(attn.head_dim)
        scores = torch.einsum("bhqd,bhkd->bhqk", q * scale, k_cache)  # (B, H, 1, C)
        if attn.rel_embed is not None:
            rel = attn.rel_embed.expand(attn.num_heads, -1, -1)  # (H, M + 1, D_h)
            per_distance = torch.einsum("bhqd,hmd->bhqm", q * scale, rel)  # (B, H, 1, M + 1)
            distance = (pos - j).clamp(0, rel.shape[1] - 1)  # (C,)
            scores = scores + per_distance.index_select(-1, distance)
        scores = scores.masked_fill(~visible, float("-inf"))
        y = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v_cache)  # (B, H, 1, D_h)
        x = x + _linear(attn.out, y.transpose(1, 2).reshape(b, 1, -1))
        x = x + _mlp(block.mlp, block.norm2(x))
    if type(model).output is MusicTransformer.output:  # one head: the token logits
        return _linear(model.head, model.norm(x))
    return model.output(model.norm(x))  # e.g. the audio prior's heads, one per codebook level


def lstm_weights(model: LSTMLanguageModel) -> dict[str, Any]:
    """The tensors ``_lstm_step`` reads (dynamo refuses to trace into an nn.LSTM module itself)."""
    lstm = model.lstm
    names = ("weight_ih_l{}", "weight_hh_l{}", "bias_ih_l{}", "bias_hh_l{}")
    return {
        "embed": model.embed.weight,
        "layers": [tuple(getattr(lstm, n.format(k)) for n in names) for k in range(lstm.num_layers)],
        "proj": None if model.proj is None else (model.proj.weight, model.proj.bias),
        "head": (model.head.weight, model.head.bias),
    }


def _lstm_step(weights: dict[str, Any], ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """One token through the LSTM's cells written out (so inductor fuses the gate arithmetic):
    ids (B, 1) -> logits (B, 1, V); the state h, c (layers, B, H) is updated in place."""
    x = F.embedding(ids[:, 0], weights["embed"])  # (B, E)
    for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights["layers"]):
        gates = F.linear(x, w_ih, b_ih) + F.linear(h[layer], w_hh, b_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)  # (B, H) each, PyTorch's gate order
        c_new = f.sigmoid() * c[layer] + i.sigmoid() * g.tanh()
        x = o.sigmoid() * c_new.tanh()
        c[layer].copy_(c_new)
        h[layer].copy_(x)
    if weights["proj"] is not None:
        x = F.linear(x, *weights["proj"])
    return F.linear(x, *weights["head"])[:, None]  # (B, 1, V)


def _own_copy(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` with a code object of its own: dynamo keeps its graphs (and their guards) per code object."""
    code = fn.__code__.replace()
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class _Step:
    """A step function compiled by inductor (fixed shapes, one graph per key below) with the
    eager function as the fallback: a step that fails to compile (e.g. no C++ compiler) warns once and
    runs eagerly. On a GPU the step is also captured as a CUDA graph (``reduce-overhead``: one launch
    per token).

    Each key (the caller's name for what fixes the graph: batch size, cache length, dtypes) gets its
    own copy of the function, so each copy holds exactly one graph, and after its first call the
    copy runs with dynamo's guard checks skipped
    (``skip_guard_eval_unsafe``): ~1,300 guards on the model's modules and tensors cost 0.2-0.4 ms a
    token on a CPU, a third of a compiled token's time (docs/measured.md). With one graph per copy
    there is nothing for the guards to choose, and a call that would need another graph raises
    instead of running the wrong one (it then decodes eagerly)."""

    def __init__(self, fn: Callable[..., torch.Tensor], compile: bool, device: torch.device):
        self.eager = fn
        self.compiled = compile
        self.graphs = compile and device.type == "cuda"
        self.copies: dict[tuple[Any, ...], Callable[..., torch.Tensor]] = {}

    def _compile(self) -> Callable[..., torch.Tensor]:
        fn = _own_copy(self.eager)
        if self.graphs:
            return torch.compile(fn, dynamic=False, fullgraph=True, mode="reduce-overhead")
        # A CPU kernel may recompute a cheap producer (a norm, GELU) inside each consumer; for the
        # weight passes of _linear that means once per output row (Out times per token): keep every
        # intermediate in a buffer instead (2.9 -> 1.2 ms per token, docs/measured.md). No size asserts
        # on the ~90 inputs at every call: the key already fixes their shapes.
        options: dict[str, Any] = {"realize_opcount_threshold": 0, "size_asserts": False}
        return torch.compile(fn, dynamic=False, fullgraph=True, options=options)

    def __call__(self, key: tuple[Any, ...], *args: Any) -> torch.Tensor:
        """``fn(*args)``; ``key`` names the shapes of ``args`` (those that are not the same every call)."""
        if not self.compiled:
            return self.eager(*args)
        try:
            fn = self.copies.get(key)
            if fn is None:  # first call: compiles, guards and all
                fn = self._compile()
                out = fn(*args)
                self.copies[key] = fn
            else:
                with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                    out = fn(*args)
            # a CUDA graph's output is overwritten by its next replay: the caller keeps a copy
            return out.clone() if self.graphs else out
        except Exception as err:  # noqa: BLE001 - any compiler failure: the eager step gives the same
            log.warning("compiled decoding failed (%s); decoding without compiling", str(err).split("\n")[0])
            self.compiled = False
            return self.eager(*args)


def _weights_kind(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """Part of a step's key: a model cast or moved since its step compiled gets another graph."""
    weight = next(model.parameters())
    return weight.dtype, weight.device


_STEPS: weakref.WeakKeyDictionary[nn.Module, _Step] = weakref.WeakKeyDictionary()


def _step_for(model: nn.Module, fn: Callable[..., torch.Tensor], compile: bool) -> _Step:
    """The model's compiled step, kept with the model: sampling makes a decoder per call, and each
    new copy of the step would be traced again (seconds)."""
    device = next(model.parameters()).device
    if not compile:
        return _Step(fn, False, device)
    step = _STEPS.get(model)
    if step is None or step.eager is not fn:  # (one that failed to compile stays eager: warned once)
        step = _STEPS[model] = _Step(fn, True, device)
    return step


class CompiledDecoder:
    """``IncrementalDecoder``'s interface over a static cache and a compiled one-token step (see the
    module doc). ``capacity`` positions are kept (default and at most: the model's context; fewer when
    the whole sample fits, so short samples attend over fewer masked keys); past it the window slides
    as ``IncrementalDecoder``'s does. ``compile=False`` runs the same step eagerly (the reference for
    the tests)."""

    def __init__(self, model: MusicTransformer, capacity: int | None = None, compile: bool = True):
        if not isinstance(model, MusicTransformer):
            raise TypeError(f"a static cache needs a MusicTransformer, not {type(model).__name__}")
        self.model = model
        self.context = min(model.context, capacity or model.context)
        self.keys: list[torch.Tensor] = []  # per layer (B, H, capacity, D_h)
        self.values: list[torch.Tensor] = []
        self.cached = 0
        self.step = _step_for(model, _transformer_step, compile)
        self.weights_kind = _weights_kind(model)

    def start(self, seqs: torch.Tensor) -> torch.Tensor:
        """The logits after the primer ``seqs`` (B, T, ...): (B, ...) in float32 (the eager forward)."""
        window = seqs[:, -self.context :]
        out, state = self.model(window)
        b, h, _, d = state[0].keys.shape
        if not self.keys or self.keys[0].shape[0] != b:
            like = state[0].keys
            self.keys = [like.new_zeros(b, h, self.context, d) for _ in state]
            self.values = [like.new_zeros(b, h, self.context, d) for _ in state]
        self.cached = cache_length(state[0])
        for layer, cache in enumerate(state):
            self.keys[layer][:, :, : self.cached] = cache.keys[:, :, : self.cached]
            self.values[layer][:, :, : self.cached] = cache.values[:, :, : self.cached]
        return out[:, -1].float()

    def advance(self, seqs: torch.Tensor) -> torch.Tensor:
        """The logits after ``seqs``, whose last step is new since the previous call."""
        if self.cached >= self.context:  # slide as IncrementalDecoder does
            return self.start(seqs[:, -slid_window(self.context) :])
        pos = torch.tensor(self.cached, device=seqs.device)
        ids = seqs[:, -1:].clone(memory_format=torch.contiguous_format)  # fixed strides: no recompiles
        # the step reads the cache up to the next multiple of SPAN past pos: a short prefix reads a
        # short cache (keys and values are as many bytes per token as the weights at 1,024 positions)
        span = min(self.context, -(-(self.cached + 1) // SPAN) * SPAN)
        keys = [k[:, :, :span] for k in self.keys]  # views: the step writes into the cache
        values = [v[:, :, :span] for v in self.values]
        key = (ids.shape[0], span, self.context, *self.weights_kind, keys[0].dtype)
        out = self.step(key, self.model, ids, pos, keys, values)
        self.cached += 1
        return out[:, -1].float()


class CompiledLSTMDecoder:
    """The same for the LSTM: the primer through the model's forward, then the compiled cell step on
    its (h, c) state, updated in place."""

    def __init__(self, model: LSTMLanguageModel, compile: bool = True):
        self.model = model
        self.weights = lstm_weights(model)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.step = _step_for(model, _lstm_step, compile)
        self.weights_kind = _weights_kind(model)

    def start(self, seqs: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.model(seqs)
        self.state = (h.contiguous(), c.contiguous())
        return out[:, -1].float()

    def advance(self, seqs: torch.Tensor) -> torch.Tensor:
        assert self.state is not None, "start() first"
        ids = seqs[:, -1:].clone(memory_format=torch.contiguous_format)
        key = (ids.shape[0], *self.weights_kind, self.state[0].dtype)
        return self.step(key, self.weights, ids, *self.state)[:, -1].float()


def static_decoder(model: nn.Module, capacity: int) -> CompiledDecoder | CompiledLSTMDecoder | None:
    """A compiled decoder for ``model`` when it has one (transformers, the LSTM), else None."""
    if isinstance(model, MusicTransformer) and model.context > 0:
        return CompiledDecoder(model, capacity=capacity)
    if isinstance(model, LSTMLanguageModel):
        return CompiledLSTMDecoder(model)
    return None
