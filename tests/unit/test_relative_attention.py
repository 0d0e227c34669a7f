"""Relative attention: the skewing equals Shaw et al.'s naive reference, blocks and cache change
nothing, no information flows from the future, and cached decoding equals a full forward pass."""

from __future__ import annotations

import pytest
import torch

from musgen.config import from_dict
from musgen.errors import ConfigError, MusgenError
from musgen.generate.sampling import SamplingControls, sample_sequences
from musgen.models.transformer import MusicTransformer, TransformerModelConfig
from musgen.modules.relative_attention import (
    RelativeSelfAttention,
    causal_mask,
    distance_embeddings,
    naive_relative_logits,
    relative_shift,
)


def _skewed(q: torch.Tensor, rel: torch.Tensor, tk: int) -> torch.Tensor:
    return relative_shift(q @ distance_embeddings(rel, tk).transpose(-1, -2))


@pytest.mark.parametrize(
    "tq,tk,max_distance", [(37, 37, 64), (37, 37, 5), (1, 23, 64), (6, 23, 4), (23, 23, 1)]
)
def test_skewing_equals_the_naive_reference(tq, tk, max_distance):
    gen = torch.Generator().manual_seed(tq * 100 + tk)
    q = torch.randn(3, 4, tq, 16, generator=gen, dtype=torch.float64)
    rel = torch.randn(4, max_distance + 1, 16, generator=gen, dtype=torch.float64)
    valid = causal_mask(tq, tk, q.device)
    naive = naive_relative_logits(q, rel, tk)
    skewed = _skewed(q, rel, tk)
    assert torch.allclose(skewed[..., valid], naive[..., valid], rtol=0, atol=1e-12)
    # Spot-check the definition itself: query at position p, key j -> embedding of distance p - j.
    p, j = tk - 1, 0
    expected = q[1, 2, tq - 1] @ rel[2, min(p - j, max_distance)]
    assert torch.isclose(skewed[1, 2, tq - 1, j], expected)


def _attention(relative, chunk=128, shared=False, max_rel=16, seed=0, recompute=False, kernel="auto"):
    torch.manual_seed(seed)
    return RelativeSelfAttention(
        32,
        4,
        relative=relative,
        max_relative_position=max_rel,
        share_relative_heads=shared,
        chunk=chunk,
        recompute=recompute,
        kernel=kernel,
    ).double()


@pytest.mark.parametrize("shared", [False, True])
def test_attention_output_and_gradients_match_the_naive_module(shared):
    # 29 positions, distances clipped at 16: with 8-query blocks the band kernel has far keys
    x = torch.randn(2, 29, 32, dtype=torch.float64, requires_grad=True)
    outs, grads = [], []
    for impl, chunk, recompute, kernel in [
        ("naive", 0, False, "skew"),
        ("skew", 0, False, "skew"),
        ("skew", 8, False, "skew"),
        ("skew", 8, True, "skew"),
        ("skew", 8, False, "band"),
        ("skew", 5, False, "auto"),  # band on a CPU (29 > 16 positions); a shorter last block
        ("skew", 0, False, "band"),  # one block: no far keys
    ]:
        att = _attention(impl, chunk=chunk, shared=shared, recompute=recompute, kernel=kernel)
        queries = torch.zeros(2, 4, 29, 8)  # (B, H, L, D_h)
        assert att.uses_band(queries) == (kernel != "skew")
        assert att.uses_band(queries[:, :, :16]) == (kernel == "band")  # auto: only if L > M
        y, _ = att(x)
        (y.pow(2).sum() + y.sum()).backward()
        outs.append(y)
        grads.append([p.grad.clone() for p in (x, att.rel_embed, att.qkv.weight)])
        x.grad = None
    for y, g in zip(outs[1:], grads[1:], strict=True):
        assert torch.allclose(y, outs[0], atol=1e-10)
        for got, want in zip(g, grads[0], strict=True):
            assert torch.allclose(got, want, atol=1e-9)
    assert grads[0][1].abs().sum() > 0  # the relative embeddings do get trained


def test_band_kernel_keeps_the_skewing_where_it_does_not_apply():
    """Attention dropout in training (the fused kernel is called without it) and cached passes
    take the blocked skewing; a plain model has no relative logits to place."""
    q = torch.zeros(1, 4, 600, 8)  # (B, H, L, D_h): longer than the default M, 512
    assert not RelativeSelfAttention(32, 4, dropout=0.1).train().uses_band(q)
    assert RelativeSelfAttention(32, 4, dropout=0.1).eval().uses_band(q)
    assert not RelativeSelfAttention(32, 4, relative=None).uses_band(q)
    assert not RelativeSelfAttention(32, 4, relative="naive").uses_band(q)


@pytest.mark.parametrize("attention", ["relative", "plain"])
def test_no_gradient_flows_from_the_future(attention):
    cfg = TransformerModelConfig(
        d_model=32,
        num_layers=3,
        num_heads=4,
        d_ff=64,
        dropout=0.0,
        attention=attention,
        max_relative_position=8,
        attention_chunk=5,
    )
    model = MusicTransformer(50, cfg, context=24).double()
    embedded = []
    model.embed.register_forward_hook(lambda mod, inp, out: embedded.append(out) or out.retain_grad())
    ids = torch.randint(0, 50, (1, 24))
    logits, _ = model(ids)
    t = 11
    logits[0, t].sum().backward()
    grad = embedded[0].grad[0].abs().sum(-1)  # (T,)
    assert torch.all(grad[t + 1 :] == 0), grad
    assert torch.all(grad[: t + 1] > 0), grad


def _model(attention: str, context: int = 40) -> MusicTransformer:
    torch.manual_seed(0)
    cfg = TransformerModelConfig(
        d_model=48,
        num_layers=2,
        num_heads=4,
        d_ff=96,
        dropout=0.1,
        attention=attention,
        max_relative_position=12,
        attention_chunk=7,
    )
    return MusicTransformer(61, cfg, context=context).eval()


@pytest.mark.parametrize("attention", ["relative", "plain"])
def test_cached_decoding_equals_the_full_forward_pass(attention):
    model = _model(attention)
    ids = torch.randint(0, 61, (3, 40))
    with torch.no_grad():
        full, _ = model(ids)  # (B, T, V)
        # A primer of 9 tokens, then blocks of 5, then one token at a time.
        pieces = [ids[:, :9], *ids[:, 9:24].split(5, dim=1), *ids[:, 24:].split(1, dim=1)]
        state, outs = None, []
        for piece in pieces:
            out, state = model(piece, state)
            outs.append(out)
        cached = torch.cat(outs, dim=1)
    assert state[0].length == 40 and state[0].keys.shape[:2] == (3, 4)  # (B, H, capacity, D_h) per layer
    rel_err = (cached - full).abs().max() / full.abs().max()
    assert rel_err < 1e-4, rel_err


def test_sampling_with_and_without_the_cache_gives_the_same_tokens():
    model = _model("relative", context=64)
    ctl = SamplingControls(length=40, min_length=40, seed=3, top_k=20)
    cached = sample_sequences(model, [1, 5, 7], 2, ctl, eos_id=2, pad_id=0)
    ctl = SamplingControls(length=40, min_length=40, seed=3, top_k=20)
    uncached = sample_sequences(model, [1, 5, 7], 2, ctl, eos_id=2, pad_id=0, use_cache=False)
    assert cached == uncached
    assert len(cached[0]) == 43


@pytest.mark.parametrize("attention", ["relative", "plain"])
def test_sampling_slides_past_the_trained_context(attention):
    model = _model(attention, context=16)
    ctl = SamplingControls(length=50, min_length=50, seed=0)
    seqs = sample_sequences(model, list(range(1, 21)), 2, ctl, eos_id=0, pad_id=0)  # primer > context
    assert [len(s) for s in seqs] == [70, 70]


def test_plain_attention_refuses_positions_beyond_its_context():
    with pytest.raises(MusgenError, match="at most 16"):
        _model("plain", context=16)(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "bad",
    [
        {"attention": "sparse"},
        {"d_model": 30, "num_heads": 4},
        {"max_relative_position": 0},
        {"attention_kernel": "triton"},
    ],
)
def test_bad_model_configs_are_refused(bad):
    with pytest.raises(ConfigError):
        from_dict(TransformerModelConfig, bad)


def test_hint_embeddings_start_at_zero_and_cached_decoding_reads_them():
    """A hinted model (the hinted infilling order): at initialisation a hinted id reads exactly as its
    token; with trained hints, decoding one token at a time with the cache equals the full forward."""
    from musgen.data.track_layout import HINT_CLASSES
    from musgen.models.transformer import MusicTransformer, TransformerModelConfig

    torch.manual_seed(0)
    cfg = TransformerModelConfig(d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0)
    model = MusicTransformer(50, cfg, context=64, hints=True).eval()
    ids = torch.randint(0, 50, (2, 20))
    hinted = ids + 50 * torch.randint(0, HINT_CLASSES, (2, 20))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], model(hinted)[0])
        for table in model.hint_embed.parameters():
            torch.nn.init.normal_(table)
        full, _ = model(hinted)
        assert not torch.allclose(full, model(ids)[0])
        state, steps = None, []
        for t in range(hinted.shape[1]):
            logits, state = model(hinted[:, t : t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("length,max_distance", [(64, 16), (40, 100)])
def test_flex_attention_kernel_equals_the_naive_reference(length, max_distance):
    """kernel flex (FlexAttention with the relative logits as a score modification; on a CPU for
    inference only) gives the naive reference's output, with distances clipped and the future masked."""
    torch.manual_seed(0)
    x = torch.randn(2, length, 32)
    outs = {}
    for kernel, relative in (("flex", "skew"), ("skew", "naive")):
        torch.manual_seed(1)
        att = RelativeSelfAttention(
            32, 4, relative=relative, max_relative_position=max_distance, kernel=kernel
        )
        with torch.no_grad():
            outs[kernel] = att(x)[0]
            assert att.uses_flex(x) == (kernel == "flex")
    assert torch.allclose(outs["flex"], outs["skew"], atol=1e-5)
    assert not att.uses_flex(x.requires_grad_())  # training on a CPU keeps the skewing (no flex backward)


def test_a_grown_transformer_starts_as_the_one_it_grew_from():
    """model.num_layers raised with train.init_from: the blocks the checkpoint lacks load as the
    identity (their output projections at zero), so the grown model predicts exactly as before, then
    trains (the zeroed projections get gradients)."""
    torch.manual_seed(0)
    cfg = TransformerModelConfig(d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0)
    small = MusicTransformer(50, cfg, context=64).eval()
    grown = MusicTransformer(
        50, TransformerModelConfig(**{**cfg.__dict__, "num_layers": 4}), context=64
    ).eval()
    missing, unexpected = grown.load_state_dict(small.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith(("blocks.2.", "blocks.3.")) for k in missing)
    assert grown.blocks[1].attn.out.weight.detach().any()  # loaded blocks keep theirs
    ids = torch.randint(0, 50, (2, 20))
    with torch.no_grad():
        assert torch.equal(grown(ids)[0], small(ids)[0])
    grown(ids)[0].logsumexp(-1).mean().backward()
    assert grown.blocks[3].mlp[2].weight.grad.abs().sum() > 0
