"""The static-cache decoding step (musgen.generate.static_decode): the same logits and samples as the
eager KV-cached decoder, for relative and plain attention and the audio prior's delay pattern, across
a sliding window; compiled with inductor once, and falling back to eager when compiling fails."""

from __future__ import annotations

import logging

import pytest
import torch

from musgen.generate import static_decode
from musgen.generate.sampling import IncrementalDecoder, SamplingControls, sample_delayed, sample_sequences
from musgen.generate.static_decode import CompiledDecoder, static_decoder
from musgen.models.prior import DelayedCodeTransformer
from musgen.models.transformer import MusicTransformer, TransformerModelConfig

CFG = dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.1, max_relative_position=10)


def _model(attention: str, context: int = 24) -> MusicTransformer:
    torch.manual_seed(0)
    cfg = TransformerModelConfig(attention=attention, attention_chunk=5, **CFG)
    return MusicTransformer(37, cfg, context=context).eval()


def _greedy_logits(decoder, primer: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps + 1, B, V): the logits after the primer, then after each greedy token."""
    seqs, outs = primer, [decoder.start(primer)]
    for _ in range(steps):
        seqs = torch.cat([seqs, outs[-1].argmax(-1, keepdim=True)], dim=1)
        outs.append(decoder.advance(seqs))
    return torch.stack(outs)


@pytest.mark.parametrize("attention", ["relative", "plain"])
@pytest.mark.parametrize("capacity", [None, 16])
@torch.no_grad()
def test_static_step_equals_the_eager_cached_decoder_across_a_slide(attention, capacity):
    model = _model(attention)
    primer = torch.randint(0, 37, (2, 5))
    expected = _greedy_logits(IncrementalDecoder(model), primer, 40)  # slides at 24 positions
    static = CompiledDecoder(model, capacity=capacity, compile=False)
    got = _greedy_logits(static, primer, 40)
    assert static.keys[0].shape == (2, 4, capacity or 24, 8)  # (B, H, capacity, D_h)
    if capacity is None:  # the same window: the same logits
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    else:  # a shorter window slides sooner: equal until then
        torch.testing.assert_close(got[:12], expected[:12], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_compiled_sampling_gives_the_eager_samples_and_compiles_once(caplog):
    model = _model("relative", context=32)
    ctl = dict(length=40, min_length=40, seed=5, top_k=10)
    eager = sample_sequences(model, [1, 4, 9], 2, SamplingControls(**ctl), eos_id=2, pad_id=0)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # earlier tests' compilations are counted there too
    with caplog.at_level(logging.WARNING):
        compiled = sample_sequences(
            model, [1, 4, 9], 2, SamplingControls(**ctl, compile=True), eos_id=2, pad_id=0
        )
    assert "compiled decoding failed" not in caplog.text  # this machine compiles
    assert compiled == eager
    counters = torch._dynamo.utils.counters["stats"]
    assert counters["unique_graphs"] == 1  # one graph for every position and slide


@torch.no_grad()
def test_compiled_steps_over_growing_spans_of_the_cache_give_the_eager_logits(monkeypatch, caplog):
    """The compiled step reads the cache in spans of SPAN positions, one graph for each span, batch
    size and capacity, each run with dynamo's guards skipped: on one model, across spans and two
    capacities (the window slides in both), every logit is the eager step's."""
    monkeypatch.setattr(static_decode, "SPAN", 6)
    model = _model("relative")
    with caplog.at_level(logging.WARNING):
        for capacity, batch in ((8, 1), (12, 2)):
            primer = torch.randint(0, 37, (batch, 3))
            expected = _greedy_logits(CompiledDecoder(model, capacity, compile=False), primer, 14)
            decoder = CompiledDecoder(model, capacity)
            torch.testing.assert_close(_greedy_logits(decoder, primer, 14), expected, rtol=1e-5, atol=1e-5)
    assert "compiled decoding failed" not in caplog.text
    assert decoder.step.compiled
    assert {key[:3] for key in decoder.step.copies} == {(1, 6, 8), (1, 8, 8), (2, 6, 12), (2, 12, 12)}


def test_a_step_that_fails_to_compile_falls_back_to_eager(caplog):
    model = _model("relative")
    decoder = CompiledDecoder(model)

    def broken(*args):
        raise RuntimeError("no C++ compiler\nsecond line")

    decoder.step._compile = lambda: broken  # what a machine without a compiler gets
    primer = torch.randint(0, 37, (1, 4))
    expected = _greedy_logits(IncrementalDecoder(model), primer, 6)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        got = _greedy_logits(decoder, primer, 6)
    assert "compiled decoding failed (no C++ compiler); decoding without compiling" in caplog.text
    assert not decoder.step.compiled
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_delay_pattern_prior_decodes_the_same_with_the_static_step():
    torch.manual_seed(0)
    cfg = TransformerModelConfig(attention="relative", **CFG)
    model = DelayedCodeTransformer(8, 3, cfg, context=12).eval()
    prime = torch.randint(0, 8, (4, 3))
    controls = [SamplingControls(length=10, temperature=t, seed=3) for t in (1.0, 0.8, 1.2)]
    kw = {"pad_id": 8, "bos_id": 9}
    eager = sample_delayed(model, prime, 2, 10, controls, **kw)  # 4 + 10 frames + 2 delay rows > context
    for ctl in controls:
        ctl.compile = True
    assert torch.equal(sample_delayed(model, prime, 2, 10, controls, **kw), eager)


@pytest.mark.parametrize("tie", [False, True])
def test_lstm_compiled_cell_step_gives_the_eager_samples(tie, caplog):
    from musgen.models.lstm import LSTMLanguageModel, LSTMModelConfig

    torch.manual_seed(0)
    cfg = LSTMModelConfig(embed_dim=8, hidden_size=16, num_layers=2, tie_weights=tie)
    model = LSTMLanguageModel(37, cfg).eval()
    ctl = dict(length=30, min_length=30, seed=1, temperature=0.9)
    eager = sample_sequences(model, [1, 3], 2, SamplingControls(**ctl), eos_id=2, pad_id=0)
    with caplog.at_level(logging.INFO):
        compiled = sample_sequences(
            model, [1, 3], 2, SamplingControls(**ctl, compile=True), eos_id=2, pad_id=0
        )
    assert compiled == eager
    assert "decoding without compiling" not in caplog.text


def test_models_without_a_static_step_get_none():
    assert static_decoder(torch.nn.Linear(3, 3), capacity=256) is None
