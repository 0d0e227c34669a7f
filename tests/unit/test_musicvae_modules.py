"""MusicVAE modules at tiny sizes: shapes, the KL term, teacher forcing equals step-by-step decoding,
the bidirectional encoder, beta annealing and slerp."""

from __future__ import annotations

import math

import pytest
import torch

from musgen.data.melody import MelodyConfig
from musgen.errors import ConfigError
from musgen.generate.interpolation import interpolation_path, slerp
from musgen.models.musicvae import (
    MusicVAE,
    MusicVAEConfig,
    MusicVAEModelConfig,
    MusicVAETask,
    VAELossConfig,
    kl_divergence,
)

TINY = dict(
    latent_dim=8,
    embed_dim=8,
    encoder_hidden=16,
    decoder_hidden=16,
    conductor_hidden=12,
    decoder_layers=2,
    conductor_layers=2,
)


def tiny_model(
    decoder: str, num_bars: int = 4, encoder: str = "flat", segment_bars: int = 1, bar_latents: bool = False
) -> MusicVAE:
    torch.manual_seed(0)
    return (
        MusicVAE(
            MusicVAEModelConfig(
                decoder=decoder, encoder=encoder, segment_bars=segment_bars, bar_latents=bar_latents, **TINY
            ),
            MelodyConfig(num_bars=num_bars),
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("decoder", ["flat", "hierarchical"])
def test_shapes(decoder):
    model = tiny_model(decoder)
    events = torch.randint(0, model.vocab_size, (3, model.length))  # (B, T) = (3, 64)
    logits, mu, sigma = model(events)
    assert logits.shape == (3, 64, model.vocab_size) and mu.shape == sigma.shape == (3, 8)
    assert (sigma > 0).all()
    decoded, step_logits = model.free_running(mu, lambda lg: lg.argmax(-1))
    assert decoded.shape == (3, 64) and step_logits.shape == (3, 64, model.vocab_size)
    assert model.segments == (4 if decoder == "hierarchical" else 1)


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, sigma = torch.randn(5, 7, dtype=torch.double), torch.rand(5, 7, dtype=torch.double) + 0.1
    q = torch.distributions.Normal(mu, sigma)
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(sigma))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(kl_divergence(mu, sigma), expected, atol=1e-12)
    assert torch.allclose(kl_divergence(torch.zeros(2, 3), torch.ones(2, 3)), torch.zeros(2))


@pytest.mark.parametrize(("decoder", "segment_bars"), [("flat", 1), ("hierarchical", 1), ("hierarchical", 2)])
def test_teacher_forcing_equals_step_by_step_decoding(decoder, segment_bars):
    """The parallel teacher-forced pass (all segments at once) and the step-by-step decoder fed the
    true events give the same logits: the sampler decodes exactly what training optimised."""
    model = tiny_model(decoder, segment_bars=segment_bars)
    events = torch.randint(0, model.vocab_size, (2, model.length))
    z = torch.randn(2, 8, dtype=torch.double)
    parallel = model.teacher_forced(z, events)
    stepped_events, stepped = model.free_running(
        z, lambda lg: lg.argmax(-1), teacher=events, teacher_rate=1.0
    )
    assert torch.equal(stepped_events, events)
    assert torch.allclose(parallel, stepped, atol=1e-10)


def test_hierarchical_decoder_restarts_every_bar():
    model = tiny_model("hierarchical")
    events = torch.randint(0, model.vocab_size, (1, model.length))
    z = torch.randn(1, 8, dtype=torch.double, requires_grad=True)
    logits = model.teacher_forced(z, events)
    (grad,) = torch.autograd.grad(logits[0, -1].sum(), z)
    assert grad.abs().sum() > 0
    # Changing bar 0 changes bar 1 only through its first input (bar 0's last event): the bottom
    # decoder restarts from the conductor at every bar, so bars 2.. are untouched.
    other = events.clone()
    other[0, :16] = (other[0, :16] + 1) % model.vocab_size
    changed = model.teacher_forced(z, other).detach()
    assert torch.equal(changed[0, 32:], logits[0, 32:].detach())
    assert not torch.allclose(changed[0, 16:32], logits[0, 16:32].detach())


def test_a_conductor_step_can_span_several_bars():
    """segment_bars=2: the conductor gives one embedding per two bars and the bottom decoder runs
    through both bars of a segment without restarting; a config where it does not divide is refused."""
    from musgen.config import validate_config
    from musgen.errors import MusgenError

    model = tiny_model("hierarchical", segment_bars=2)
    assert model.segments == 2 and model.conductor.num_segments == 2
    events = torch.randint(0, model.vocab_size, (1, model.length))
    z = torch.randn(1, 8, dtype=torch.double)
    logits = model.teacher_forced(z, events).detach()
    other = events.clone()
    other[0, :16] = (other[0, :16] + 1) % model.vocab_size  # bar 0 changes bar 1 (same segment) ...
    changed = model.teacher_forced(z, other).detach()
    assert not torch.allclose(changed[0, 17:32], logits[0, 17:32])
    assert torch.equal(changed[0, 33:], logits[0, 33:])  # ... but not past the next restart
    bad = MusicVAEConfig(model=MusicVAEModelConfig(segment_bars=3), data=MelodyConfig(num_bars=16))
    with pytest.raises(MusgenError, match="segment_bars"):
        validate_config(bad)


@pytest.mark.parametrize("encoder", ["flat", "hierarchical", "concat"])
def test_encoder_reads_the_whole_window_in_both_directions(encoder):
    model = tiny_model("flat", encoder=encoder)
    events = torch.randint(0, model.vocab_size, (1, model.length))
    mu = model.encode(events)[0]
    for position in (0, 15, 16, model.length - 1):  # both ends, and both sides of a bar line
        other = events.clone()
        other[0, position] = (other[0, position] + 1) % model.vocab_size
        assert not torch.allclose(model.encode(other)[0], mu)


def test_hierarchical_encoder_reads_each_bar_alone_then_the_bars_in_order():
    """mu from the per-bar BiLSTM's final states fed through the bar-level BiLSTM, built by hand."""
    model = tiny_model("hierarchical", encoder="hierarchical")
    enc = model.encoder
    events = torch.randint(0, model.vocab_size, (2, model.length))  # (B, T) = (2, 64): 4 bars of 16

    def final(lstm, x):
        out, _ = lstm(x)  # (N, L, 2H): forward state at the last step, backward state at the first
        half = out.shape[-1] // 2
        return torch.cat([out[:, -1, :half], out[:, 0, half:]], dim=-1)

    bars = torch.stack([final(enc.lstm, enc.embed(events[:, 16 * i : 16 * (i + 1)])) for i in range(4)], 1)
    expected = enc.to_mu(final(enc.bars_lstm, bars))
    assert torch.allclose(model.encode(events)[0], expected, atol=1e-12)
    assert tiny_model("flat", encoder="hierarchical").encoder.bars_lstm is not None  # any decoder


def test_concat_encoder_projects_each_bar_and_reads_the_bars_side_by_side():
    """mu = W [P bar_1; ...; P bar_U] from the per-bar BiLSTM's final states, built by hand."""
    model = tiny_model("hierarchical", encoder="concat")
    enc = model.encoder
    assert enc.bars_lstm is None and enc.bar_proj is not None
    events = torch.randint(0, model.vocab_size, (2, model.length))  # (B, T) = (2, 64): 4 bars of 16

    def final(x):
        out, _ = enc.lstm(x)  # (N, L, 2H)
        half = out.shape[-1] // 2
        return torch.cat([out[:, -1, :half], out[:, 0, half:]], dim=-1)

    bars = [enc.bar_proj(final(enc.embed(events[:, 16 * i : 16 * (i + 1)]))) for i in range(4)]
    assert bars[0].shape[-1] == 2 * model.latent_dim // 4
    expected = enc.to_mu(torch.cat(bars, dim=-1))
    assert torch.allclose(model.encode(events)[0], expected, atol=1e-12)


@pytest.mark.parametrize("segment_bars", [1, 2])
def test_bar_latents_give_each_bar_its_own_slice_and_the_conductor_reads_it(segment_bars):
    """With bar latents a bar's notes move only its slice of mu and sigma (no mixing across bars), and
    the conductor's input at segment u is the slices of u's bars, in order."""
    model = tiny_model("hierarchical", encoder="concat", segment_bars=segment_bars, bar_latents=True)
    enc, z_per_bar = model.encoder, model.latent_dim // 4  # 4 bars of 16 steps, Z = 8
    assert enc.to_mu is None and enc.bar_proj is not None
    events = torch.randint(0, model.vocab_size, (2, model.length))
    mu, sigma = model.encode(events)
    for bar in range(4):
        other = events.clone()
        other[:, 16 * bar : 16 * bar + 16] = (other[:, 16 * bar : 16 * bar + 16] + 1) % model.vocab_size
        mu2, sigma2 = model.encode(other)
        moved = ((mu2 - mu).abs() + (sigma2 - sigma).abs()).view(2, 4, z_per_bar).sum((0, 2)) > 0
        assert moved.tolist() == [b == bar for b in range(4)]
    conductor = model.conductor
    z = torch.randn(2, model.latent_dim, dtype=torch.double)
    state = conductor.init(z)  # built by hand: zero-input LSTM replaced by the slices as inputs
    h, c = torch.tanh(state).view(2, 2, conductor.layers, conductor.hidden).permute(1, 2, 0, 3)
    expected, _ = conductor.lstm(z.view(2, 4 // segment_bars, -1), (h.contiguous(), c.contiguous()))
    assert torch.allclose(conductor(z), expected, atol=1e-12)


def test_bar_latents_need_the_concat_encoder_and_a_latent_split_by_bars():
    with pytest.raises(ConfigError, match="concat"):
        MusicVAEModelConfig(encoder="flat", bar_latents=True).validate()
    cfg = MusicVAEConfig(model=MusicVAEModelConfig(encoder="concat", bar_latents=True, latent_dim=10))
    cfg.data = MelodyConfig(num_bars=4)
    with pytest.raises(ConfigError, match="divisible"):
        cfg.validate()


def test_io_dropout_acts_in_training_only_and_adds_no_weights():
    torch.manual_seed(0)
    cfg = MusicVAEModelConfig(decoder="hierarchical", io_dropout=0.5, **TINY)
    model = MusicVAE(cfg, MelodyConfig(num_bars=4)).double()
    plain = MusicVAE(MusicVAEModelConfig(decoder="hierarchical", **TINY), MelodyConfig(num_bars=4))
    assert model.state_dict().keys() == plain.state_dict().keys()  # old checkpoints load unchanged
    events = torch.randint(0, model.vocab_size, (2, model.length))
    z = torch.randn(2, 8, dtype=torch.double)
    model.train()
    assert not torch.allclose(model.teacher_forced(z, events), model.teacher_forced(z, events))
    model.eval()
    assert torch.equal(model.teacher_forced(z, events), model.teacher_forced(z, events))


def test_loss_is_reconstruction_plus_annealed_free_bits_kl():
    cfg = MusicVAEConfig(
        model=MusicVAEModelConfig(decoder="flat", **TINY),
        data=MelodyConfig(num_bars=2),
        loss=VAELossConfig(free_bits=1.0, max_beta=0.5, beta_anneal_steps=10),
    )
    task = MusicVAETask(cfg)
    assert [task.beta(s) for s in (0, 5, 10, 50)] == [0.0, 0.25, 0.5, 0.5]
    events = torch.randint(0, task.models["model"].vocab_size, (4, 32))
    task.step = 5
    torch.manual_seed(1)
    loss, metrics = task.loss({"events": events})
    loss = float(loss.detach())
    kl_nats = metrics["kl_bits"] * math.log(2)
    expected_min = metrics["recon"] + 0.25 * max(
        kl_nats - math.log(2), 0.0
    )  # Jensen: mean of clamps >= clamp of mean
    assert loss >= expected_min - 1e-4
    assert loss <= metrics["recon"] + 0.25 * kl_nats + 1e-4


def test_slerp_endpoints_and_norms():
    torch.manual_seed(0)
    z0, z1 = torch.randn(16), torch.randn(16)
    path = interpolation_path(z0, z1, 7)
    assert path.shape == (7, 16)
    assert torch.allclose(path[0], z0, atol=1e-6) and torch.allclose(path[-1], z1, atol=1e-6)
    # Same-norm endpoints: slerp stays on the sphere (a straight line would cut inside it).
    a, b = z0 / z0.norm() * 4, z1 / z1.norm() * 4
    assert torch.allclose(interpolation_path(a, b, 5).norm(dim=1), torch.full((5,), 4.0), atol=1e-5)
    assert torch.allclose(slerp(z0, 2 * z0, 0.5), 1.5 * z0, atol=1e-6)  # parallel: linear fallback
