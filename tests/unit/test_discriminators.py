"""The codec's multi-scale STFT discriminator and its losses on inputs with known answers."""

from __future__ import annotations

import torch

from musgen.modules.discriminators import (
    MultiScaleSTFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)


def test_every_scale_gives_a_logit_map_and_features():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator((256, 128), channels=8)
    out = disc(torch.randn(3, 1, 4000))
    assert len(out) == 2
    for (logits, feats), n_fft in zip(out, (256, 128), strict=True):
        frames = 4000 // (n_fft // 4) + 1
        assert logits.shape[:3] == (3, 1, frames) and len(feats) == 5  # 1 + 3 dilated + 1 convs
        assert feats[1].shape[-1] == (n_fft // 2 + 1 + 1) // 2  # frequency halved by the strides


def test_hinge_and_feature_matching_losses():
    real = [
        (torch.full((2, 1, 3, 4), 2.0), [torch.ones(2, 4)]),
        (torch.full((2, 1, 5, 2), 0.5), [torch.ones(2, 4)]),
    ]
    fake = [
        (torch.full((2, 1, 3, 4), -2.0), [torch.zeros(2, 4)]),
        (torch.full((2, 1, 5, 2), 0.5), [torch.ones(2, 4)]),
    ]
    # scale 1: relu(1 - 2) + relu(1 - 2) = 0; scale 2: relu(0.5) + relu(1.5) = 2 -> mean 1
    assert float(discriminator_hinge_loss(real, fake)) == 1.0
    # generator: scale 1 relu(1 + 2) = 3, scale 2 relu(0.5) = 0.5 -> mean 1.75
    assert float(generator_hinge_loss(fake)) == 1.75
    # features: scale 1 |1 - 0| / 1 = 1, scale 2: 0 -> mean 0.5 (up to the 1e-5 guard)
    assert abs(float(feature_matching_loss(real, fake)) - 0.5) < 1e-4


def test_the_discriminator_learns_to_tell_a_sine_from_noise():
    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator((256,), channels=8)
    opt = torch.optim.Adam(disc.parameters(), 1e-3)
    t = torch.arange(1000) / 16000
    real = torch.sin(2 * torch.pi * 440 * t).expand(4, 1, -1)
    for _ in range(20):
        fake = 0.3 * torch.randn(4, 1, 1000)
        loss = discriminator_hinge_loss(disc(real), disc(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        (r, _), (f, _) = disc(real)[0], disc(0.3 * torch.randn(4, 1, 1000))[0]
    assert float(r.mean()) > float(f.mean()) + 1.0


def test_codec_config_refuses_feature_matching_alone_and_accumulation():
    import pytest

    from musgen.config import validate_config
    from musgen.errors import MusgenError
    from musgen.models.vqvae import VQVAEConfig, VQVAELossConfig

    with pytest.raises(MusgenError, match="needs the discriminator"):
        validate_config(VQVAEConfig(loss=VQVAELossConfig(feature_matching_weight=1.0)))
    cfg = VQVAEConfig(loss=VQVAELossConfig(adversarial_weight=1.0))
    cfg.train.grad_accum = 2
    with pytest.raises(MusgenError, match="grad_accum"):
        validate_config(cfg)
