"""Causal self-attention with learned relative position logits (Shaw et al. 2018) computed by the
memory-efficient *skewing* of the Music Transformer (Huang et al. 2018), plus a key/value cache.

For a query at position p and a key at position j <= p the logit is

    (q_p . k_j + q_p . E_r[min(p - j, M)]) / sqrt(D_h)

where E_r holds one learned vector per distance 0..M (``max_relative_position``; longer distances
share the last one). Shaw et al. gather E_r into an (L, L, D_h) tensor per head: O(L^2 D) memory.
Skewing instead multiplies Q by the L distance embeddings once, (B, H, L, L), and shifts each row
into place with a pad + reshape (``relative_shift``): no L x L x D tensor is ever built.

The relative logits enter ``F.scaled_dot_product_attention`` as an additive float mask. That mask
needs a gradient, which sends SDPA to its math path (no fused kernel), so queries run in blocks
that skip the masked upper triangle. Switching ``relative`` off gives plain causal attention
through the same code and PyTorch's fused kernel (the model then adds absolute position embeddings).

``kernel: band`` (``auto``'s choice on a CPU) splits each query block's keys in two. Keys at
least M positions before every query of the block all get the same logit, q . E_r[M], a constant
per query that softmax ignores: they go through PyTorch's fused CPU kernel with no mask, which also
returns each row's log-sum-exp. Only the band of nearer keys (block + M - 1 wide) gets the skewed
relative logits, on the math path; the two partial softmaxes are merged by their log-sum-exps, and
the backward (``_NearFarAttention``) recomputes the band's probabilities and hands the fused
kernel's own backward the merged output and log-sum-exp, which makes its gradients exact. Measured
(B 8, H 8, D_h 32, M 512, forward + backward, one thread): 2.2 s against the blocked skewing's 4.2 s
at L 2,048 (plain attention 1.15 s); no faster at L 512, where there are no far keys, so ``auto``
takes it only for passes longer than M.

``kernel: flex`` runs a whole (non-cached) causal pass through FlexAttention instead, fused: the
per-query scores of the M + 1 distances, Q E_r^T (B, H, L, M + 1), are added inside the kernel by
a score modification that reads the entry of each (query, key) pair's distance, so no (L, L) tensor
is ever built. torch 2.13 has its backward on GPUs only, so on a CPU it serves inference and
training keeps the blocked skewing. ``auto``: flex on CUDA, band on a CPU; ``skew`` forces the
blocked skewing of the whole key range (with an additive mask through SDPA).
"""

from __future__ import annotations

import math
from functools import cache, partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class KVCache:
    """Keys and values of one layer for incremental decoding, in preallocated (B, H, capacity, D_h)
    buffers that grow by doubling: appending a token writes in place instead of copying the whole
    cache (``torch.cat`` made decoding quadratic in memory traffic). Inference only (no autograd)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.length = 0
        self.keys = keys.new_empty(*keys.shape[:2], max(64, 2 * keys.shape[2]), keys.shape[3])
        self.values = torch.empty_like(self.keys)
        self.append(keys, values)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adds (B, H, T, D_h) keys/values; returns views of all of them, (B, H, length, D_h)."""
        end = self.length + keys.shape[2]
        if end > self.keys.shape[2]:  # grow to twice what is needed, copying what is there
            b, h, _, d = self.keys.shape
            for name in ("keys", "values"):
                old = getattr(self, name)
                new = old.new_empty(b, h, 2 * end, d)
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


def relative_shift(x: torch.Tensor) -> torch.Tensor:
    """The skewing step. ``x[..., i, m]`` is query i's logit for distance ``Tk - 1 - m`` (query i sits
    at absolute position ``Tk - Tq + i``); returns ``s[..., i, j]`` = the logit of query i for key j,
    i.e. ``x[..., i, j + Tq - 1 - i]``. Valid where key j is not in the future of query i (the rest is
    masked by the caller). Works for Tq <= Tk (cached decoding) as in Transformer-XL.

    (..., Tq, Tk) -> (..., Tq, Tk)
    """
    *lead, tq, tk = x.shape
    x = F.pad(x, (1, 0))  # (..., Tq, Tk + 1): one zero column on the left
    x = x.reshape(*lead, tk + 1, tq)[..., 1:, :]  # (..., Tk, Tq): drop the first row
    return x.reshape(*lead, tq, tk)


def causal_mask(tq: int, tk: int, device: torch.device) -> torch.Tensor:
    """(Tq, Tk) bool, True where query i (at position Tk - Tq + i) may attend to key j."""
    q_pos = torch.arange(tk - tq, tk, device=device)[:, None]
    return torch.arange(tk, device=device)[None, :] <= q_pos


def _key_distances(tk: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """(Tk,) distance of each key from the last position, clipped: [Tk - 1, ..., 1, 0] <= M."""
    return torch.arange(tk - 1, -1, -1, device=device).clamp(max=max_distance)


def distance_embeddings(rel_embed: torch.Tensor, tk: int) -> torch.Tensor:
    """Distance embeddings ordered for ``relative_shift``: row m is distance ``tk - 1 - m``, clipped to
    the last learned distance. (H, M + 1, D_h) -> (H, Tk, D_h)"""
    return rel_embed[:, _key_distances(tk, rel_embed.shape[1] - 1, rel_embed.device)]


def naive_relative_logits(q: torch.Tensor, rel_embed: torch.Tensor, tk: int) -> torch.Tensor:
    """Reference (Shaw et al. 2018): gathers one embedding per (query, key) pair, an (H, Tq, Tk, D_h)
    tensor, then contracts it with Q. O(L^2 D) memory: for tests and benchmarks only.

    q (B, H, Tq, D_h), rel_embed (H, M + 1, D_h) -> (B, H, Tq, Tk); future keys get distance 0.
    """
    tq = q.shape[2]
    max_distance = rel_embed.shape[1] - 1
    q_pos = torch.arange(tk - tq, tk, device=q.device)[:, None]
    distance = (q_pos - torch.arange(tk, device=q.device)[None, :]).clamp(0, max_distance)  # (Tq, Tk)
    pair_embed = rel_embed[:, distance]  # (H, Tq, Tk, D_h): the O(L^2 D) tensor
    return torch.einsum("bhqd,hqkd->bhqk", q, pair_embed)


def _per_head_matmul(q: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """q (B, H, T, D_h) . emb (H, N, D_h) -> (B, H, T, N). einsum runs it as one bmm over heads;
    ``q @ emb.mT`` would broadcast-copy emb to (B, H, D_h, N) first (measured: most of the time of
    cached sampling at batch 8)."""
    return torch.einsum("bhtd,hnd->bhtn", q, emb)


def relative_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_embed: torch.Tensor | None,
    *,
    impl: str = "skew",
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention of the last Tq positions over Tk >= Tq keys, with relative logits when
    ``rel_embed`` (H, M + 1, D_h) is given. q (B, H, Tq, D_h), k and v (B, H, Tk, D_h) -> (B, H, Tq, D_h)"""
    tq, tk = q.shape[2], k.shape[2]
    if rel_embed is None:
        if tq == tk:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        # Cached decoding: SDPA's is_causal aligns top-left, so the mask is explicit.
        mask = causal_mask(tq, tk, q.device) if tq > 1 else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    # SDPA scales Q K^T by 1/sqrt(D_h) but adds the mask unscaled: scale the relative logits here.
    q_scaled = q * (1.0 / math.sqrt(q.shape[-1]))
    if tq == 1 and impl == "skew":
        # One new token (cached sampling) sees every key and needs no shift: score the M + 1 learned
        # distances once, then spread them over the keys (no (H, Tk, D_h) gather per token).
        per_distance = _per_head_matmul(q_scaled, rel_embed)  # (B, H, 1, M + 1)
        bias = per_distance.index_select(
            -1, _key_distances(tk, rel_embed.shape[1] - 1, q.device)
        )  # (B, H, 1, Tk)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    if impl == "skew":
        s_rel = relative_shift(
            _per_head_matmul(q_scaled, distance_embeddings(rel_embed, tk))
        )  # (B, H, Tq, Tk)
    else:
        s_rel = naive_relative_logits(q_scaled, rel_embed, tk)
    bias = s_rel.masked_fill(~causal_mask(tq, tk, q.device), float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)


class _NearFarAttention(torch.autograd.Function):
    """Causal attention of one query block over far keys (no bias: PyTorch's fused CPU kernel) and
    near keys (an additive bias that holds the relative logits and the causal mask), one softmax.

    q (B, H, Tq, D_h); far k, v (B, H, F, D_h), F >= 0; near k, v (B, H, W, D_h); bias (B, H, Tq, W)
    -> (B, H, Tq, D_h). Saves the inputs, the output and the merged log-sum-exp; the band's
    probabilities are recomputed in backward."""

    @staticmethod
    def forward(ctx, q, k_far, v_far, k_near, v_near, bias):
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = torch.matmul(q, k_near.mT).mul_(scale).add_(bias)  # (B, H, Tq, W)
        lse = torch.logsumexp(scores, -1)  # (B, H, Tq)
        out = torch.matmul(scores.sub_(lse[..., None]).exp_(), v_near)
        if k_far.shape[2]:
            out_far, lse_far = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k_far, v_far)
            merged = torch.logaddexp(lse_far, lse)
            out = out_far * (lse_far - merged).exp()[..., None] + out * (lse - merged).exp()[..., None]
            lse = merged
        ctx.save_for_backward(q, k_far, v_far, k_near, v_near, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k_far, v_far, k_near, v_near, bias, out, lse = ctx.saved_tensors
        scale = 1.0 / math.sqrt(q.shape[-1])
        grad_out = grad_out.contiguous()
        row_dot = (grad_out * out).sum(-1, keepdim=True)  # (B, H, Tq, 1)
        probs = torch.matmul(q, k_near.mT).mul_(scale).add_(bias).sub_(lse[..., None]).exp_()
        grad_v_near = torch.matmul(probs.mT, grad_out)
        grad_scores = probs.mul_(torch.matmul(grad_out, v_near.mT).sub_(row_dot))  # = grad of bias
        grad_q = torch.matmul(grad_scores, k_near).mul_(scale)
        grad_k_near = torch.matmul(grad_scores.mT, q).mul_(scale)
        if k_far.shape[2]:  # the fused backward, given the merged output and log-sum-exp: exact
            grad_q_far, grad_k_far, grad_v_far = (
                torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    grad_out, q, k_far, v_far, out, lse, 0.0, False
                )
            )
            grad_q = grad_q + grad_q_far
        else:
            grad_k_far, grad_v_far = torch.zeros_like(k_far), torch.zeros_like(v_far)
        return grad_q, grad_k_far, grad_v_far, grad_k_near, grad_v_near, grad_scores


def near_far_relative_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_embed: torch.Tensor, chunk: int
) -> torch.Tensor:
    """A whole causal pass (no cache) with relative logits, in query blocks of ``chunk``, each
    split into far keys (fused kernel) and the band of near ones (see the module text). CPU only.

    q, k, v (B, H, L, D_h), rel_embed (H, M + 1, D_h) -> (B, H, L, D_h)"""
    length, max_distance = q.shape[2], rel_embed.shape[1] - 1
    # q . E_r[M] is the logit of every key M or more back: subtracted from all of a row's logits
    # (softmax does not change), it leaves far keys with none and near ones with q . (E_r[d] - E_r[M])
    rel = rel_embed - rel_embed[:, max_distance:]
    q_scaled = q * (1.0 / math.sqrt(q.shape[-1]))
    outs = []
    for start in range(0, length, chunk):
        end = min(start + chunk, length)
        near = max(0, start - max_distance + 1)  # keys before it are >= M back from every query here
        width = end - near
        bias = relative_shift(
            _per_head_matmul(q_scaled[:, :, start:end], distance_embeddings(rel, width))
        )  # (B, H, end - start, width)
        bias = bias.masked_fill(~causal_mask(end - start, width, q.device), float("-inf"))
        block = _NearFarAttention.apply(
            q[:, :, start:end], k[:, :, :near], v[:, :, :near], k[:, :, near:end], v[:, :, near:end], bias
        )
        outs.append(block)
    return torch.cat(outs, dim=2)


KERNELS = ("auto", "skew", "band", "flex")


@cache
def _flex_kernel():  # the compiled FlexAttention (compiled once per process, on first use)
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@cache
def _causal_block_mask(length: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return create_block_mask(causal, None, None, length, length, device=device)


def flex_relative_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_embed: torch.Tensor
) -> torch.Tensor:
    """Causal relative attention of L queries over their own L keys in one FlexAttention call.
    q, k, v (B, H, L, D_h), rel_embed (H, M + 1, D_h) -> (B, H, L, D_h)"""
    length, max_distance = q.shape[2], rel_embed.shape[1] - 1
    # (B, H, L, M + 1): query i's relative logit for each distance, already scaled like Q K^T
    per_distance = _per_head_matmul(q * (1.0 / math.sqrt(q.shape[-1])), rel_embed)

    def add_relative(score, b, h, q_idx, kv_idx):
        return score + per_distance[b, h, q_idx, torch.clamp(q_idx - kv_idx, 0, max_distance)]

    mask = _causal_block_mask(length, str(q.device))
    return _flex_kernel()(q, k, v, score_mod=add_relative, block_mask=mask)


class RelativeSelfAttention(nn.Module):
    """Multi-head causal self-attention; ``relative`` in {"skew", "naive", None (plain)}.

    With relative logits the queries are processed in blocks of ``chunk`` positions, each attending
    only to the keys up to its end: this skips the masked upper triangle and keeps the (B, H, chunk,
    Tk) blocks in cache. Measured on a 2-core CPU (B 8, H 8, L 512, D_h 32, forward + backward):
    135 ms with 128-query blocks vs 434 ms unchunked; plain SDPA attention takes 78 ms.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        relative: str | None = "skew",
        max_relative_position: int = 512,
        share_relative_heads: bool = False,
        dropout: float = 0.0,
        chunk: int = 128,
        recompute: bool = False,
        kernel: str = "auto",
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        if relative not in ("skew", "naive", None):
            raise ValueError(f"relative must be 'skew', 'naive' or None, not {relative!r}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.relative = relative
        self.dropout = dropout
        self.chunk = chunk
        # Keep only q, k, v for backward and recompute each block's (B, H, chunk, Tk) logits there:
        # the attention's saved memory then grows like L * D instead of L^2 (costs a second forward).
        self.recompute = recompute
        self.kernel = kernel
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rel_embed = None
        if relative is not None:
            heads = 1 if share_relative_heads else num_heads
            # One vector per distance 0..M (per head, or one set shared by all heads).
            self.rel_embed = nn.Parameter(torch.randn(heads, max_relative_position + 1, self.head_dim) * 0.02)

    def forward(
        self, x: torch.Tensor, cache: KVCache | tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, KVCache | tuple[torch.Tensor, torch.Tensor]]:
        """x (B, Tq, D) -> (B, Tq, D) and the cache extended by these Tq positions: a KVCache when
        gradients are off (sampling), else the (keys, values) tensors of this call."""
        b, tq, _ = x.shape
        q, k, v = self.qkv(x).view(b, tq, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # q, k, v: (B, H, Tq, D_h)
        new_cache: KVCache | tuple[torch.Tensor, torch.Tensor]
        if isinstance(cache, KVCache):
            k, v = cache.append(k, v)  # (B, H, Tk, D_h)
            new_cache = cache
        elif cache is not None:  # (keys, values) of an earlier call made with gradients on
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            new_cache = (k, v)
        elif torch.is_grad_enabled():
            new_cache = (k, v)
        else:
            new_cache = KVCache(k, v)
        rel = None if self.rel_embed is None else self.rel_embed.expand(self.num_heads, -1, -1)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # bf16 attention is 2-4x slower than fp32 on this kind of CPU (measured): the attention
            # core runs in fp32 and only the linear layers around it follow autocast.
            with torch.autocast("cpu", enabled=False):
                y = self._attend(q.float(), k.float(), v.float(), None if rel is None else rel.float())
        else:
            y = self._attend(q, k, v, rel)  # (B, H, Tq, D_h)
        y = y.transpose(1, 2).reshape(b, tq, -1).to(x.dtype)  # (B, Tq, D)
        return self.out(y), new_cache

    def uses_flex(self, q: torch.Tensor) -> bool:
        """Whether a full pass runs in FlexAttention: asked for (or auto on CUDA), with the skewing's
        relative logits, no attention dropout, and a backward where gradients are needed."""
        wanted = self.kernel == "flex" or (self.kernel == "auto" and q.is_cuda)
        no_dropout = self.dropout == 0 or not self.training
        return (
            wanted and self.relative == "skew" and no_dropout and (q.is_cuda or not torch.is_grad_enabled())
        )

    def uses_band(self, q: torch.Tensor) -> bool:
        """Whether a full pass splits its keys into far (fused) and near (relative logits): asked for,
        or auto on a CPU where some keys are far (more than M positions); with the skewing's relative
        logits and no attention dropout. (Without far keys it is the skewing with another backward:
        measured 10 % slower per training step at 512 x 8, M 512.)"""
        far = self.rel_embed is not None and q.shape[2] > self.rel_embed.shape[1] - 1
        wanted = self.kernel == "band" or (self.kernel == "auto" and q.device.type == "cpu" and far)
        no_dropout = self.dropout == 0 or not self.training
        return wanted and self.relative == "skew" and no_dropout and q.device.type == "cpu"

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel: torch.Tensor | None
    ) -> torch.Tensor:
        """q (B, H, Tq, D_h), k and v (B, H, Tk, D_h) -> (B, H, Tq, D_h), in query blocks."""
        tq, past = q.shape[2], k.shape[2] - q.shape[2]
        if rel is not None and self.uses_flex(q) and past == 0 and tq > 1:
            return flex_relative_attention(q, k, v, rel)
        if rel is not None and self.uses_band(q) and past == 0 and tq > 1:
            return near_far_relative_attention(q, k, v, rel, self.chunk if self.chunk > 0 else tq)
        attend = partial(
            relative_attention, impl=self.relative or "skew", dropout=self.dropout if self.training else 0.0
        )
        if self.recompute and torch.is_grad_enabled():  # (checkpoint replays the dropout RNG)
            attend = partial(checkpoint, attend, use_reentrant=False)
        chunk = self.chunk if self.chunk > 0 and rel is not None else tq
        if tq <= chunk:
            return attend(q, k, v, rel)
        outs = [
            attend(q[:, :, a : a + chunk], k[:, :, : past + a + chunk], v[:, :, : past + a + chunk], rel)
            for a in range(0, tq, chunk)
        ]
        return torch.cat(outs, dim=2)
