"""The Frechet distance on random-CNN audio embeddings (musgen.eval.frechet): exact on known Gaussians,
deterministic, and on real chorales rendered to audio much smaller between two halves of the data than
between the data and corrupted copies of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musgen.eval.baselines import frechet_sanity
from musgen.eval.frechet import RandomMusicCNN, embed_clip, embedding_network, frechet_distance


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))  # correlated dimensions
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = np.arange(6.0)
    # Same covariance, means apart by `shift`: the distance is |shift|^2 exactly.
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # Covariance S against 4 S (same mean): Tr(S + 4S - 2 (4 S^2)^1/2) = Tr(S).
    centred = x - x.mean(0)
    assert frechet_distance(centred, 2 * centred) == pytest.approx(
        float(np.trace(np.cov(x, rowvar=False))), rel=1e-8
    )
    # Symmetric, and close to the closed form for independent draws of two diagonal Gaussians.
    a, b = rng.normal(0, 1, (20000, 3)), rng.normal(0, 2, (20000, 3))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(3 * (1 + 4 - 2 * 2), abs=0.1)
    with pytest.raises(ValueError):
        frechet_distance(x[:1], x)


def test_embedding_is_deterministic_and_silence_is_zero():
    fresh = RandomMusicCNN()
    for mine, theirs in zip(fresh.parameters(), embedding_network().parameters(), strict=True):
        assert torch.equal(mine, theirs)  # weights come from the fixed seed alone
    assert all(p.abs().sum() > 0 for p in fresh.parameters())
    rate = 16000
    t = np.arange(3 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.3)).astype(np.float32)
    first, again = embed_clip(tone, rate), embed_clip(tone, rate)
    assert first.shape == (5, embedding_network().dim)  # 1 s windows every 0.5 s over 3 s
    np.testing.assert_array_equal(first, again)
    assert np.abs(embed_clip(np.zeros(rate, np.float32), rate)).max() == 0.0
    # Another sample rate is resampled to 16 kHz first: the same tone gives nearly the same embedding.
    t44 = np.arange(3 * 44100) / 44100
    tone44 = (0.3 * np.sin(2 * np.pi * 220 * t44) * (t44 % 0.5 < 0.3)).astype(np.float32)
    np.testing.assert_allclose(embed_clip(tone44, 44100), first, rtol=0.05, atol=0.05 * np.abs(first).max())


def test_frechet_separates_real_chorales_from_corrupted_ones(bach_midi_24):
    """24 real chorales, the first 6 s of each rendered with the built-in synthesizer: the held-out
    halves are much closer than either half is to the other half with its pitches shuffled, or
    replaced by random notes (scripts/eval_frechet_sanity.py runs this on more pieces)."""
    result = frechet_sanity(sorted(bach_midi_24.rglob("*.mid")), seconds=6.0, engine="synth")
    audio = result["audio"]
    halves = audio["held-out half"]["frechet_distance"]
    assert result["windows_per_half"] >= 100
    assert 0 < halves
    assert halves * 1.5 < audio["shuffled pitch"]["frechet_distance"]
    assert halves * 3 < audio["random notes"]["frechet_distance"]
    for direction in range(2):  # also each half taken as the reference on its own
        assert (
            audio["held-out half"]["directions"][direction] < audio["shuffled pitch"]["directions"][direction]
        )
    symbolic = result["symbolic"]
    for name in ("shuffled pitch", "shuffled pitch within tracks", "random notes"):
        assert symbolic["held-out half"]["feature_frechet"] < symbolic[name]["feature_frechet"], name
