"""MuseGAN modules at tiny sizes: the patch layers equal strided (transposed) convolutions, generator
and critic shapes in every mode, the gradient penalty on inputs with a known answer, conditioning,
and binary neurons."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from musgen.data.pianoroll import PianorollConfig
from musgen.errors import ConfigError
from musgen.models.musegan import (
    MODES,
    Critics,
    MuseGANConfig,
    MuseGANModelConfig,
    PatchExpand,
    PatchMerge,
    RollGenerator,
    critic_objective,
    gradient_penalty,
)

DATA = PianorollConfig(num_bars=2, steps_per_bar=48, num_pitches=84)


def _model_cfg(mode: str, **kw) -> MuseGANModelConfig:
    return MuseGANModelConfig(mode=mode, z_dim=8, gen_channels=16, critic_channels=16, **kw)


def _leading_cfg(**kw) -> MuseGANModelConfig:
    """One voice per track on the 16th grid, chosen in order with voice leading."""
    return _model_cfg("hybrid", output="voice", time_grid="sixteenth", voice_leading=True, **kw)


def test_patch_expand_is_a_transposed_convolution_with_stride_equal_to_kernel():
    torch.manual_seed(0)
    layer = PatchExpand(6, 4, 3, 2).eval()  # eval: batch norm with its (fresh) running stats
    conv = nn.ConvTranspose2d(6, 4, (3, 2), stride=(3, 2))
    # Linear weight (kh*kw*cout, cin) laid out as (kh, kw, cout) -> ConvTranspose2d (cin, cout, kh, kw).
    conv.weight.data = layer.linear.weight.data.view(3, 2, 4, 6).permute(3, 2, 0, 1).contiguous()
    conv.bias.data = layer.linear.bias.data.view(3, 2, 4)[0, 0].clone()
    layer.linear.bias.data = conv.bias.data.repeat(6)  # one bias per output channel, as the conv
    x = torch.randn(2, 5, 7, 6)  # (N, H, W, C) channels last
    expected = torch.relu(conv(x.permute(0, 3, 1, 2)) / (1 + 1e-5) ** 0.5).permute(0, 2, 3, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_patch_merge_is_a_convolution_with_stride_equal_to_kernel():
    torch.manual_seed(0)
    layer = PatchMerge(3, 5, 2, 4)
    conv = nn.Conv2d(3, 5, (2, 4), stride=(2, 4))
    conv.weight.data = layer.linear.weight.data.view(5, 2, 4, 3).permute(0, 3, 1, 2).contiguous()
    conv.bias.data = layer.linear.bias.data.clone()
    x = torch.randn(2, 6, 8, 3)
    expected = nn.functional.leaky_relu(conv(x.permute(0, 3, 1, 2)), 0.2).permute(0, 2, 3, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_generator_and_critic_shapes_in_every_mode(mode):
    torch.manual_seed(0)
    cfg = _model_cfg(mode)
    gen, critics = RollGenerator(cfg, DATA), Critics(cfg, DATA)
    rolls = gen(gen.noise(3))
    assert rolls.shape == (3, 4, 96, 84)
    assert float(rolls.detach().min()) >= 0 and float(rolls.detach().max()) <= 1
    heads = 4 if mode == "jamming" else 1
    assert critics(rolls).shape == (3, heads)
    # The noise a mode uses: shared (composer), private (jamming) or both (hybrid).
    assert (
        set(gen.noise(1))
        == {
            "composer": {"inter", "inter_t"},
            "jamming": {"intra", "intra_t"},
            "hybrid": {"inter", "inter_t", "intra", "intra_t"},
        }[mode]
    )
    assert len(gen.bar_generators) == (1 if mode == "composer" else 4)
    # Each track's private noise moves only that track (jamming/hybrid), every track otherwise.
    gen.eval()
    noise = gen.noise(2, torch.Generator().manual_seed(1))
    base = gen(noise)
    key = "intra" if mode != "composer" else "inter"
    moved = dict(noise)
    moved[key] = noise[key].clone()
    moved[key][:, 0] += 1.0
    changed = (gen(moved) - base).abs().amax(dim=(0, 2, 3)) > 0  # per track
    expected = [True, False, False, False] if mode != "composer" else [True] * 4
    assert changed.tolist() == expected


class _LinearCritic(nn.Module):
    """score_h(x) = <w_h, x>: its gradient is w_h everywhere."""

    def __init__(self, weights: torch.Tensor):  # (H, K, T, P); for H > 1 head h sees only track h
        super().__init__()
        self.w = nn.Parameter(weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w.shape[0] == 1:
            return (x * self.w[0]).flatten(1).sum(1, keepdim=True)
        return torch.stack(
            [(x[:, h] * self.w[h, h]).flatten(1).sum(1) for h in range(self.w.shape[0])], dim=1
        )


def test_gradient_penalty_on_a_critic_with_a_known_gradient():
    torch.manual_seed(0)
    real, fake = torch.rand(5, 2, 6, 12), torch.rand(5, 2, 6, 12)
    w = torch.randn(1, 2, 6, 12) * 0.1
    loss, wdist, gp = critic_objective(_LinearCritic(w.clone()), real, fake, gp_weight=10.0, heads=1)
    norm = w.norm()
    torch.testing.assert_close(gp, (norm - 1) ** 2)
    torch.testing.assert_close(wdist, ((real - fake) * w[0]).flatten(1).sum(1).mean())
    torch.testing.assert_close(loss, -wdist + 10 * (norm - 1) ** 2)
    # Per-track heads (jamming): one norm per track, penalties summed.
    wk = torch.zeros(2, 2, 6, 12)
    wk[0, 0], wk[1, 1] = 0.5 / (6 * 12) ** 0.5, 3.0 / (6 * 12) ** 0.5  # norms 0.5 and 3
    _, _, gp = critic_objective(_LinearCritic(wk), real, fake, gp_weight=10.0, heads=2)
    torch.testing.assert_close(gp, torch.tensor((0.5 - 1) ** 2 + (3 - 1) ** 2))
    # And the penalty takes the gradient at the interpolates: a quadratic critic at known points.
    x = torch.tensor([[[[3.0, 4.0]]]])
    grad = torch.autograd.functional.jacobian(lambda v: (v**2).sum() / 2, x)  # = x
    torch.testing.assert_close(gradient_penalty(grad, 1), torch.tensor((5.0 - 1.0) ** 2))


def test_the_penalty_trains_a_critic_towards_unit_gradient_norm():
    torch.manual_seed(0)
    critic = _LinearCritic(torch.randn(1, 2, 6, 12) * 3)
    opt = torch.optim.SGD(critic.parameters(), lr=0.02)
    real = torch.rand(8, 2, 6, 12)
    for _ in range(50):
        loss, _, _ = critic_objective(critic, real, real.clone(), gp_weight=10.0, heads=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(float(critic.w.norm()) - 1.0) < 0.05


def test_a_conditioned_track_is_copied_and_steers_the_others():
    torch.manual_seed(0)
    cfg = _model_cfg("hybrid", condition_tracks=["soprano"])
    gen = RollGenerator(cfg, DATA).eval()
    noise = gen.noise(2, torch.Generator().manual_seed(0))
    given = (torch.rand(2, 96, 84) < 0.02).float()
    track = torch.tensor([0, 0])
    out = gen(noise, given, track)
    assert torch.equal(out[:, 0], given)
    other = gen(noise, torch.roll(given, 7, dims=-1), track)
    assert (other[:, 1:] - out[:, 1:]).abs().max() > 0  # the accompaniment depends on the given track
    none = gen(noise, given, torch.tensor([4, 4]))  # track index K: unconditioned
    assert not torch.equal(none[:, 0], given)


@pytest.mark.parametrize("binary", ["deterministic", "stochastic"])
def test_binary_neurons_output_zeros_and_ones_and_pass_gradients(binary):
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg("composer", binary=binary), DATA)
    out = gen(gen.noise(2))
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    out.sum().backward()
    assert gen.bar_generators[0].time_pitch[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("relax", ["straight_through", "gumbel"])
def test_voice_output_sounds_at_most_one_pitch_per_track_and_step(mode, relax):
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg(mode, output="voice", voice_relax=relax), DATA)
    out = gen(gen.noise(3))  # (B, K, T, P) in training mode
    assert out.shape == (3, 4, 96, 84)
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    assert out.detach().sum(-1).max() <= 1  # one pitch or a rest
    # The softmax's gradient reaches the pitch streams, the rest head and the register bias.
    (out * torch.randn_like(out)).sum().backward()
    bar = gen.bar_generators[0]
    assert bar.time_pitch[1].weight.grad.abs().sum() > 0 and bar.rest.weight.grad.abs().sum() > 0
    assert gen.voice_bias.grad.abs().sum() > 0


def test_voice_output_is_the_argmax_at_inference_and_its_bias_sets_the_register():
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg("hybrid", output="voice", voice_relax="gumbel"), DATA).eval()
    noise = gen.noise(2, torch.Generator().manual_seed(1))
    assert torch.equal(gen(noise), gen(noise))  # no draw at inference: the noise decides
    with torch.no_grad():
        gen.voice_bias.zero_()
        gen.voice_bias[2, 40] = 1e4  # the tenor always sings pitch index 40; the bass always rests
        gen.voice_bias[3, -1] = 1e4
    out = gen(noise)
    assert (out[:, 2, :, 40] == 1).all() and out[:, 2].sum() == out[:, 2, :, 40].sum()
    assert out[:, 3].sum() == 0


def test_voice_leading_tables_follow_the_metrical_position_of_each_16th():
    torch.manual_seed(0)
    cfg = _model_cfg(
        "hybrid", output="voice", time_grid="sixteenth", voice_leading=True, voice_leading_positions=2
    )
    gen = RollGenerator(cfg, DATA).eval()
    assert gen.transition.shape == (2, 4, 85, 85)
    with torch.no_grad():
        gen.transition[1, :, :, -1] = 1e4  # every 16th at an odd position is a rest
        gen.transition[0, :, :, -1] = -1e4  # and none at an even one
    out = gen(gen.noise(2)).view(2, 4, 32, 3, 84)  # (B, K, 16ths, steps per 16th, P)
    assert out[:, :, 1::2].sum() == 0  # odd 16ths rest
    assert out[:, :, 2::2].sum() == 2 * 4 * 15 * 3  # even 16ths sing (the first has no table before it)


def test_voice_inference_draw_follows_the_softmax_and_argmax_does_not():
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg("hybrid", output="voice", voice_inference="draw"), DATA).eval()
    logits = torch.full((20000, 3), -30.0)
    logits[:, 0] = logits[:, 1] = 0.0  # two equally likely pitches, the third never
    drawn = gen.one_voice_full(logits).sum(0)
    assert drawn[2] == 0 and abs(drawn[0] / 20000 - 0.5) < 0.02  # a draw: both, at their odds
    gen.voice_draws = False  # voice_inference argmax: always the first of the tied maxima
    assert gen.one_voice_full(logits).sum(0)[0] == 20000


def test_voice_temperatures_draw_each_voice_at_its_own_temperature():
    torch.manual_seed(0)
    cfg = _model_cfg("hybrid", output="voice", voice_inference="draw", voice_temperatures=[1e-3, 1, 1, 1])
    gen = RollGenerator(cfg, DATA).eval()
    logits = torch.zeros(5000, 4, 3)
    logits[..., 0] = 1.0  # e : 1 : 1 odds for every voice
    drawn = gen.one_voice_full(logits).mean(0)  # (K, 3) shares
    assert drawn[0, 0] == 1.0  # nearly cold: the likeliest, always
    assert torch.allclose(drawn[1:, 0], torch.full((3,), math.e / (math.e + 2)), atol=0.03)
    per_step = gen.one_voice_full(logits[:, :, None].expand(-1, -1, 2, -1)).mean(0)  # (B, K, T, P + 1)
    assert torch.all(per_step[0, :, 0] == 1.0) and per_step[1:, :, 0].max() < 0.8
    for bad in ([1.0, 1.0], [0.0, 1.0, 1.0, 1.0]):
        with pytest.raises(ConfigError, match="voice_temperatures"):
            cfg = MuseGANConfig(model=_model_cfg("hybrid", output="voice", voice_inference="draw"), data=DATA)
            cfg.model.voice_temperatures = bad
            cfg.model.validate()
            cfg.validate()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("output", ["multihot", "voice"])
def test_sixteenth_time_grid_holds_each_value_for_the_steps_of_its_16th(mode, output):
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg(mode, output=output, time_grid="sixteenth"), DATA)
    out = gen(gen.noise(2))  # (B, K, T, P); 48 steps per bar = 16 sixteenths x 3 steps
    assert out.shape == (2, 4, 96, 84)
    held = out.detach().view(2, 4, 32, 3, 84)
    assert torch.equal(held, held[:, :, :, :1].expand_as(held))
    assert not torch.equal(held[:, :, 0], held[:, :, 1])  # the 16ths themselves differ
    out.sum().backward()
    assert gen.bar_generators[0].pitch_time[1].weight.grad.abs().sum() > 0


def test_with_logits_returns_the_logits_the_voices_are_the_argmax_of():
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg("hybrid", output="voice"), DATA).eval()
    probs, logits = gen(gen.noise(2), with_logits=True)  # (B, K, T, P), (B, K, T, P + 1)
    assert logits.shape == (2, 4, 96, 85)
    chosen = logits.argmax(-1)  # the rest is index P
    assert torch.equal(probs.amax(-1) > 0, chosen < 84)
    sounding = chosen < 84
    assert torch.equal(probs.argmax(-1)[sounding], chosen[sounding])


@pytest.mark.parametrize("output", ["multihot", "voice"])
def test_voice_range_keeps_each_track_within_its_pitches(output):
    torch.manual_seed(0)
    gen = RollGenerator(_model_cfg("hybrid", output=output, voice_range="data"), DATA).eval()
    gen.set_pitch_ranges([40, 30, 20, 0], [60, 50, 40, 25])
    out = gen(gen.noise(8))  # (B, K, T, P)
    for k, (lo, hi) in enumerate([(40, 60), (30, 50), (20, 40), (0, 25)]):
        sounding = out[:, k].sum(dim=(0, 1)) > 0  # (P,)
        assert sounding.any() and sounding[:lo].sum() == 0 and sounding[hi + 1 :].sum() == 0
    assert "pitch_allowed" in gen.state_dict()  # saved with the model
    assert "pitch_allowed" not in RollGenerator(_model_cfg("hybrid", output=output), DATA).state_dict()


def test_melodic_motion_measures_each_voices_intervals():
    from musgen.models.musegan import melodic_motion

    x = torch.zeros(1, 2, 5, 40)  # (B, K, T, P)
    for t, p in enumerate([10, 12, 12, 30, 29]):  # voice 0: up 2, same, up 18, down 1
        x[0, 0, t, p] = 1
    x[0, 1, 0, 5] = 1  # voice 1: one note, then rests
    m = melodic_motion(x.requires_grad_())  # (B, K, T, 4): interval / 12, its size, sounding, both
    assert m.shape == (1, 2, 5, 4)
    torch.testing.assert_close(m[0, 0, :, 0], torch.tensor([2, 0, 18, -1, 0]) / 12)
    torch.testing.assert_close(m[0, 0, :, 1], torch.tensor([2, 0, 18, 1, 0]) / 12)
    assert m[0, 0, :, 2].tolist() == [1, 1, 1, 1, 1] and m[0, 0, :, 3].tolist() == [1, 1, 1, 1, 0]
    assert (
        m[0, 1, :, 2].tolist() == [1, 0, 0, 0, 0] and m[0, 1, :, :2].abs().sum() == 0
    )  # no interval to a rest
    m[0, 0, 0, 0].backward()  # the first leap grows with the second note's pitch, shrinks with the first's
    assert x.grad[0, 0, 1, 13] > x.grad[0, 0, 1, 12] and x.grad[0, 0, 0, 11] < x.grad[0, 0, 0, 10]


def test_teacher_forced_logits_take_the_bias_from_the_given_roll_and_keep_the_voices():
    torch.manual_seed(0)
    cfg = _model_cfg("hybrid", output="voice", time_grid="sixteenth", voice_leading=True)
    gen = RollGenerator(cfg, DATA).eval()
    with torch.no_grad():  # "stay" bias: the biased logits favour the previous 16th's pitch
        gen.transition.copy_(50 * torch.eye(85).expand(1, 4, -1, -1))
    noise = gen.noise(2)
    given = torch.zeros(2, 4, 96, 84)
    given[:, :, :, 7] = 1  # every voice holds pitch 7 throughout
    free, free_logits = gen(noise, with_logits=True)
    forced, forced_logits = gen(noise, with_logits=True, leading_from=given)
    assert torch.equal(free, forced)  # the voices still follow their own 16ths
    sub = gen.sub_steps
    assert (forced_logits[:, :, sub:].argmax(-1) == 7).all()  # after the first 16th: the given pitch
    torch.testing.assert_close(forced_logits[:, :, :sub], free_logits[:, :, :sub])  # no previous 16th


def test_restrikes_silence_the_step_before_a_held_pitch_struck_again():
    torch.manual_seed(0)
    cfg = _leading_cfg(voice_leading_positions=4, restrikes=True)
    gen = RollGenerator(cfg, DATA).eval()
    with torch.no_grad():
        gen.transition.copy_(1e4 * torch.eye(85).expand(4, 4, -1, -1))  # every voice holds its first 16th
        gen.restrike.copy_(torch.tensor([[1.0], [0.0], [0.0], [0.0]]).expand(4, 4))  # struck on each beat
    out = gen(gen.noise(3))  # (B, K, T, P)
    beat = 4 * gen.sub_steps  # steps per beat
    gaps = torch.zeros(96, dtype=torch.bool)
    gaps[beat - 1 :: beat][:-1] = True  # the step before every beat but the first
    singing = out[:, :, 0].sum(-1) > 0  # (B, K) voices whose first 16th is a pitch
    assert singing.sum() >= 3
    for b, k in singing.nonzero().tolist():
        assert torch.equal(out[b, k].sum(-1) == 0, gaps)
    assert "restrike" in gen.state_dict()
    with torch.no_grad():
        gen.restrike.zero_()  # never struck again: one long note
    held = gen(gen.noise(3))
    assert torch.equal(held, held[:, :, :1].expand_as(held))


def test_harmony_sets_each_voice_by_its_interval_to_the_lead():
    torch.manual_seed(0)
    cfg = _leading_cfg(harmony=True, condition_tracks=["soprano"])
    gen = RollGenerator(cfg, DATA).eval()
    assert gen.harmony_lead == 0 and "harmony" in gen.state_dict()
    below = {1: 3, 2: 8, 3: 15}  # alto a minor third under the lead, tenor a minor sixth, bass 15
    with torch.no_grad():
        gen.harmony.fill_(-1e4)  # every other interval ruled out
        for k, d in below.items():
            gen.harmony[:, k, 83 - d] = 0.0  # index: the interval + P - 1
        gen.voice_bias[:, -1] = -1e4  # nobody rests
        gen.voice_bias[0, :20] = -1e4  # a soprano high enough for the bass to sound 15 below
    given = torch.zeros(2, 96, 84)
    melody = torch.randint(40, 70, (2, 32)).repeat_interleave(3, dim=1)  # a pitch per 16th
    given.scatter_(2, melody[..., None], 1.0)
    out = gen(gen.noise(2), given, torch.tensor([0, 0]))
    assert torch.equal(out[:, 0], given)
    for k, d in below.items():
        assert torch.equal(out[:, k].argmax(-1), melody - d), k  # every 16th, around the given melody
    free = gen(gen.noise(2))  # unconditioned: the drawn soprano leads
    for k, d in below.items():
        assert torch.equal(free[:, k].argmax(-1), free[:, 0].argmax(-1) - d), k
    lead, value = torch.tensor([0, 2]), torch.tensor([50, 84])  # the second lead rests: no bias
    bias = gen.harmony_bias(lead, value)  # (B, K, P + 1)
    assert bias.shape == (2, 4, 85)
    assert bias[0, 0].abs().max() == 0 and bias[1].abs().max() == 0 and bias[0, :, -1].abs().max() == 0
    assert bias[0, 1, 47] == 0 and bias[0, 1, 48] == -1e4  # 50 - 3 allowed, 50 - 2 not
    with pytest.raises(ConfigError, match="harmony needs"):
        _model_cfg("hybrid", output="voice", harmony=True).validate()
    # harmony_chain: each voice is also placed by the voices chosen before it
    with torch.no_grad():
        gen.harmony.fill_(0.0)
        gen.harmony[0, 1].fill_(-1e4)
        gen.harmony[0, 1, 83 - 3] = 0.0  # alto a minor third under the soprano
        gen.harmony[1, 2].fill_(-1e4)
        gen.harmony[1, 2, 83 - 4] = 0.0  # tenor a major third under the alto
    loose = gen(gen.noise(2), given, torch.tensor([0, 0]))
    assert torch.equal(loose[:, 1].argmax(-1), melody - 3)
    assert not torch.equal(loose[:, 2].argmax(-1), melody - 7)  # the lead alone does not place the tenor
    gen.harmony_chain = True
    chained = gen(gen.noise(2), given, torch.tensor([0, 0]))
    assert torch.equal(chained[:, 1].argmax(-1), melody - 3) and torch.equal(
        chained[:, 2].argmax(-1), melody - 7
    )


def test_critic_with_intervals_scores_and_passes_gradients():
    torch.manual_seed(0)
    critic = Critics(_model_cfg("hybrid", critic_intervals=True), DATA)
    x = torch.rand(3, 4, 96, 84, requires_grad=True)
    out = critic(x)
    assert out.shape == (3, 1)
    out.sum().backward()
    assert critic.critics[0].intervals[0].linear.weight.grad.abs().sum() > 0


def test_voice_leading_chooses_16ths_in_order_with_the_learned_transition():
    torch.manual_seed(0)
    cfg = _model_cfg("hybrid", output="voice", time_grid="sixteenth", voice_leading=True)
    gen = RollGenerator(cfg, DATA)
    out, logits = gen(gen.noise(2), with_logits=True)  # training mode: straight-through
    assert out.shape == (2, 4, 96, 84) and out.detach().sum(-1).max() <= 1
    (out * torch.randn_like(out)).sum().backward()
    assert gen.transition.grad.abs().sum() > 0  # the transition is learned through the choices
    with torch.no_grad():  # a strong "stay" bias: every voice holds its first choice
        gen.transition.copy_(1e4 * torch.eye(85).expand(4, -1, -1))
    held = gen.eval()(gen.noise(2))
    assert torch.equal(held, held[:, :, :1].expand_as(held))
    bad = _model_cfg("hybrid", output="voice", voice_leading=True)  # the full grid: refused
    from musgen.errors import ConfigError

    with pytest.raises(ConfigError, match="voice_leading"):
        bad.validate()


def test_config_rejects_unknown_condition_tracks_and_gradient_accumulation():
    # Checked once where every config is read (config.validate_config in resolve / from_dict).
    from musgen.config import validate_config
    from musgen.errors import MusgenError

    cfg = MuseGANConfig(model=_model_cfg("hybrid", condition_tracks=["lead"]), data=DATA)
    with pytest.raises(MusgenError, match="condition_tracks"):
        validate_config(cfg)
    cfg = MuseGANConfig(model=_model_cfg("hybrid"), data=DATA)
    cfg.train.grad_accum = 2
    with pytest.raises(MusgenError, match="grad_accum"):
        validate_config(cfg)
    cfg = MuseGANConfig(model=_model_cfg("hybrid", output="voice"), data=DATA)
    cfg.loss.paired_weight, cfg.loss.paired_teacher_forced = 1.0, True
    with pytest.raises(MusgenError, match="paired_teacher_forced"):  # no voice leading to force
        validate_config(cfg)
    for bad, message in (
        ({"output": "poly"}, "model.output"),
        ({"output": "voice", "binary": "deterministic"}, "one-hot already"),
        ({"voice_relax": "soft"}, "model.voice_relax"),
        ({"gumbel_tau": 0.0}, "gumbel_tau"),
        ({"voice_inference": "sample"}, "model.voice_inference"),
        ({"voice_leading_positions": 3}, "voice_leading_positions"),
        ({"voice_leading_positions": 4}, "needs model.voice_leading"),
        ({"restrikes": True}, "restrikes needs model.voice_leading"),
        ({"voice_inference": "draw"}, "needs model.output=voice"),
    ):
        with pytest.raises(MusgenError, match=message):
            validate_config(MuseGANConfig(model=_model_cfg("hybrid", **bad), data=DATA))


def test_jaccard_distances_between_phrases():
    import numpy as np

    from musgen.eval.musegan import diversity, jaccard_distances

    a = np.zeros((3, 1, 4, 2), dtype=bool)
    a[0, 0, :2, 0] = True  # cells {0, 2}
    a[1, 0, :2, 0] = True
    a[1, 0, 0, 1] = True  # cells {0, 1, 2}: shares 2 of 3 with phrase 0
    a[2, 0, 3, 1] = True  # disjoint from both
    d = jaccard_distances(a, a)
    np.testing.assert_allclose(d, [[0, 1 / 3, 1], [1 / 3, 0, 1], [1, 1, 0]], atol=1e-6)
    spread = diversity(a, a, a[:1], n=3)
    assert spread["pairwise_generated"] == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert spread["nearest_train_min"] == pytest.approx(0.0)


def test_repeat_share_counts_notes_that_repeat_the_pitch_before():
    import numpy as np

    from musgen.models.musegan import repeat_share

    roll = np.zeros((1, 2, 12, 5), dtype=bool)
    # voice 0: 1 1 | 1 (struck again after a silent step) 3 3 - 3 : intervals 0, 2, 0 -> 2/3
    for t, p in [(0, 1), (1, 1), (3, 1), (4, 3), (5, 3), (7, 3)]:
        roll[0, 0, t, p] = True
    roll[0, 1, :, 2] = True  # voice 1: one long note, no interval
    share = repeat_share(roll)
    assert share[0] == 2 / 3 and np.isnan(share[1])
