"""MusicGen's delay pattern for the audio prior: the row layout, training windows, the multi-stream
transformer (cached == full decoding) and the sampler that keeps a prompt and undoes the delay."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musgen.data.audio_codes import IGNORE_INDEX, DelayedCodeWindows, delay_codes, flatten_codes
from musgen.generate.sampling import SamplingControls, limit_run, sample_delayed
from musgen.models.prior import DelayedCodeTransformer, noisy_codes
from musgen.models.transformer import TransformerModelConfig

C, Q = 8, 3  # codes per book, books (levels)
PAD, BOS = C, C + 1


def test_delay_codes_layout():
    codes = np.arange(4 * Q).reshape(4, Q) % C  # (F, Q)
    rows = delay_codes(codes, PAD, BOS)  # (1 + F + Q - 1, Q)
    assert rows.shape == (1 + 4 + Q - 1, Q)
    assert (rows[0] == BOS).all()
    for f in range(4):
        for k in range(Q):
            assert rows[1 + f + k, k] == codes[f, k]  # stream k delayed by k rows
    assert rows[1, 1] == rows[1, 2] == rows[2, 2] == PAD  # before streams 1, 2 start
    assert rows[-1, 0] == rows[-1, 1] == rows[-2, 0] == PAD  # after streams 0, 1 end


def test_delayed_windows_predict_each_code_once():
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, C, (n, Q)) for n in (10, 3)]
    tokens = np.concatenate([flatten_codes(p, C) for p in pieces])
    offsets = np.array([0, 10 * Q, 13 * Q])
    windows = DelayedCodeWindows(tokens, offsets, seq_len=4, codebook_size=C, levels=Q)
    assert len(windows) == 3 + 2  # 10 + 3 rows (BOS included) in windows of 4; 3 + 3 rows in 4
    labelled = []
    for i in range(len(windows)):
        item = windows[i]
        assert item["input_ids"].shape == (4, Q) and item["labels"].shape == (4 * Q,)
        labels = item["labels"].view(4, Q)
        labelled.append(labels[labels != IGNORE_INDEX])
    # Every code of every piece is a label exactly once; BOS and delay pads never are.
    assert sum(len(x) for x in labelled) == 13 * Q
    first = windows[0]
    rows = delay_codes(pieces[0], PAD, BOS)
    assert torch.equal(first["input_ids"], torch.from_numpy(rows[:4]))


def tiny_model() -> DelayedCodeTransformer:
    torch.manual_seed(0)
    cfg = TransformerModelConfig(
        d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0, tie_weights=False
    )
    return DelayedCodeTransformer(C, Q, cfg, context=12).eval()


def test_multi_stream_transformer_shapes_and_cache():
    model = tiny_model()
    ids = torch.randint(0, C + 2, (2, 9, Q))
    logits, _ = model(ids)
    assert logits.shape == (2, 9, Q, C)
    # The cached pass (6 rows, then 3 more with the cache) equals the full one.
    head, state = model(ids[:, :6])
    tail, _ = model(ids[:, 6:], state)
    torch.testing.assert_close(torch.cat([head, tail], 1), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prime_frames", [0, 5])
def test_sampler_keeps_the_prompt_and_equals_uncached_decoding(prime_frames):
    model = tiny_model()
    prime = torch.randint(0, C, (prime_frames, Q))
    controls = [SamplingControls(length=8, temperature=t, seed=3) for t in (1.0, 0.8, 1.2)]
    kw = {"pad_id": PAD, "bos_id": BOS}
    cached = sample_delayed(model, prime, 2, 8, controls, **kw)  # 5 + 8 frames + 2 delay rows > context
    full = sample_delayed(model, prime, 2, 8, controls, use_cache=False, **kw)
    assert cached.shape == (2, prime_frames + 8, Q)
    assert ((cached >= 0) & (cached < C)).all()  # codes only: no pad or BOS left after undelaying
    assert torch.equal(cached[:, :prime_frames], prime.expand(2, -1, -1))
    if prime_frames + 8 + Q <= model.context:  # within the window the two decoders agree exactly
        assert torch.equal(cached, full)
    assert torch.equal(cached, sample_delayed(model, prime, 2, 8, controls, **kw))  # seeded


def test_sampler_uses_each_levels_controls():
    """top_k=1 on level 1 only: level 1 is the model's argmax given the rows so far, level 0 is not."""
    model = tiny_model()
    controls = [SamplingControls(length=6, seed=0), SamplingControls(length=6, top_k=1, seed=0)]
    controls.append(SamplingControls(length=6, seed=0))
    codes = sample_delayed(model, torch.zeros(0, Q, dtype=torch.long), 4, 6, controls, pad_id=PAD, bos_id=BOS)
    rows = torch.stack([torch.from_numpy(delay_codes(c.numpy(), PAD, BOS)) for c in codes])  # (B, R, Q)
    logits, _ = model(rows[:, :-1])  # (B, R - 1, Q, C): the prediction of each row from the ones before
    for f in range(6):
        r = 1 + f + 1  # level 1's code of frame f sits in row 1 + f + 1
        assert torch.equal(codes[:, f, 1], logits[:, r - 1, 1].argmax(-1))
    assert not all(
        torch.equal(codes[:, f, 0], logits[:, f, 0].argmax(-1)) for f in range(6)
    )  # sampled at temperature 1


def longest_run(row: torch.Tensor, code: int) -> int:
    best = run = 0
    for value in row.tolist():
        run = run + 1 if value == code else 0
        best = max(best, run)
    return best


def test_sampler_caps_runs_of_a_code_on_its_level():
    """run_limits (level, code, max_run): level 0 (greedy here, so it repeats code 1) never writes
    more than max_run of code 1 in a row, none at all with 0; the other levels are drawn as before."""
    model = tiny_model()
    controls = [SamplingControls(length=30, top_k=1, seed=0)]
    controls += [SamplingControls(length=30, seed=0) for _ in range(Q - 1)]
    kw = {"pad_id": PAD, "bos_id": BOS}
    none = torch.zeros(0, Q, dtype=torch.long)
    free = sample_delayed(model, none, 4, 30, controls, **kw)
    assert max(longest_run(row, 1) for row in free[:, :, 0]) >= 2  # the cap below has work to do
    for max_run in (0, 1):
        capped = sample_delayed(model, none, 4, 30, controls, run_limits=[(0, 1, max_run)], **kw)
        assert max(longest_run(row, 1) for row in capped[:, :, 0]) <= max_run
    scores = limit_run(torch.zeros(2, C), torch.tensor([[1, 1], [2, 1]]), 1, 2)  # rows after 1 1 / 2 1
    assert scores[0, 1] == -math.inf and scores[1, 1] == 0 and (scores[:, 2:] == 0).all()


@pytest.mark.parametrize("delay", [True, False])
def test_code_noise_replaces_codes_within_their_level_and_never_pads_or_bos(delay):
    torch.manual_seed(0)
    codes = np.random.default_rng(0).integers(0, C, size=(200, Q))
    if delay:
        ids = torch.from_numpy(delay_codes(codes, PAD, BOS))[None].repeat(8, 1, 1)  # (B, T, Q)
        special = ids >= C
    else:
        ids = torch.from_numpy(np.concatenate([[C * Q], flatten_codes(codes, C)]))[None].repeat(8, 1)
        special = ids == C * Q
    noisy = noisy_codes(ids, 0.3, C, Q)
    assert torch.equal(noisy[special], ids[special])
    changed = (noisy != ids).float().mean().item() / (~special).float().mean().item()
    assert 0.3 * (1 - 1 / C) - 0.03 < changed < 0.3 * (1 - 1 / C) + 0.03  # a random code may be the same
    assert torch.equal(noisy // C, ids // C)  # every code stays in its level (delay: below the pad)
    assert torch.equal(noisy_codes(ids, 0.0, C, Q), ids)


def test_prior_task_adds_code_noise_in_training_only():
    """data.code_noise reaches the model's inputs in training mode only: evaluation sees clean codes."""
    from musgen.models.prior import PriorConfig, PriorTask, build_prior

    model_cfg = TransformerModelConfig(
        d_model=16, num_layers=1, num_heads=2, d_ff=32, dropout=0.0, tie_weights=False
    )
    meta = {"kind": "audio", "codebook_size": C, "levels": Q, "vocab_size": C * Q + 1, "sample_rate": 16000}
    tasks = {}
    for noise in (0.0, 0.5):
        cfg = PriorConfig(pattern="delay", model=model_cfg)
        cfg.data.code_noise, cfg.data.seq_len = noise, 16
        torch.manual_seed(0)
        tasks[noise] = PriorTask(cfg, data_meta=meta, models={"model": build_prior(cfg, C, Q)})
    ids = torch.from_numpy(delay_codes(np.random.default_rng(0).integers(0, C, size=(12, Q)), PAD, BOS))[None]
    batch = {"input_ids": ids}
    for task in tasks.values():
        task.models["model"].eval()
    assert torch.equal(tasks[0.0]._logits(batch), tasks[0.5]._logits(batch))
    for task in tasks.values():
        task.models["model"].train()
    assert torch.equal(tasks[0.0]._logits(batch), tasks[0.0]._logits(batch))  # no dropout: deterministic
    assert not torch.equal(tasks[0.0]._logits(batch), tasks[0.5]._logits(batch))
