"""The VQ-VAE's encode/decode shapes, the audio metrics, and the prior's code layout."""

import numpy as np
import pytest
import torch

from musgen.data.audio_codes import CodeWindows, flatten_codes, trim_trailing_silence, unflatten_tokens
from musgen.eval.audio_metrics import MultiResolutionSTFTLoss, log_mel_l1, si_sdr
from musgen.models.prior import _splice
from musgen.models.vqvae import VQVAE, VQVAEModelConfig
from musgen.modules.quantizer import QuantizerConfig


def tiny_config(**changes) -> VQVAEModelConfig:
    cfg = VQVAEModelConfig(
        strides=[2, 3, 5],
        base_channels=4,
        max_channels=8,
        latent_dim=6,
        dilations=[1, 3],
        quantizer=QuantizerConfig(codebook_size=16, kmeans_init=False),
        decoder_channels=8,
        decoder_blocks=2,
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module", params=["conv", "istft", "istft-n_fft-240"])
def codec(request):
    """The decoders: transposed convolutions, and the inverse STFT at 4 x hop and 8 x hop points."""
    torch.manual_seed(0)
    kind, _, n_fft = request.param.partition("-n_fft-")
    return VQVAE(tiny_config(decoder=kind, decoder_n_fft=int(n_fft or 0))).eval()


@pytest.mark.parametrize("n_fft", [29, 31, 121])
def test_decoder_n_fft_must_be_even_and_at_least_the_hop(n_fft):
    from musgen.errors import ConfigError

    with pytest.raises(ConfigError, match="decoder_n_fft"):
        tiny_config(decoder="istft", decoder_n_fft=n_fft).validate()


@pytest.mark.parametrize("length", [1, 29, 30, 31, 997, 16001])
def test_encode_decode_lengths_for_any_input_length(codec, length):
    hop = codec.hop  # 2 * 3 * 5 = 30: odd strides too
    x = torch.randn(2, 1, length) * 0.1
    codes = codec.encode(x)
    frames = -(-length // hop)
    assert codes.shape == (2, frames, 1) and codes.dtype == torch.long
    assert codec.decode(codes).shape == (2, 1, frames * hop)
    recon, codes2, _ = codec(x)
    assert recon.shape == x.shape and torch.equal(codes, codes2)


def test_a_code_frame_only_moves_its_neighbourhood(codec):
    """Locality: changing one code changes the decoded audio near its frame, not far away (istft:
    the stem's and each block's kernel reach 3 frames, the synthesis window n_fft / 2 each side)."""
    window = (codec.cfg.decoder_n_fft or 4 * codec.hop) // (2 * codec.hop)  # in hops
    reach = 10 if codec.cfg.decoder == "conv" else 3 * (1 + codec.cfg.decoder_blocks) + window
    codes = codec.encode(torch.randn(1, 1, 3000) * 0.1)  # 100 frames
    other = codes.clone()
    other[0, 50, 0] = (other[0, 50, 0] + 1) % 16
    diff = (codec.decode(codes) - codec.decode(other)).abs()[0, 0]
    changed = torch.nonzero(diff > 1e-7).flatten()
    assert len(changed) and changed.min() >= 30 * (50 - reach) and changed.max() < 30 * (51 + reach)


def test_a_frozen_encoder_keeps_its_codes_while_the_decoder_learns():
    """model.freeze_encoder: a training step moves the decoder only; the encoder's weights, the
    codebooks (EMA buffers too) and so the codes of any input stay as they were."""
    torch.manual_seed(0)
    rvq = QuantizerConfig(
        kind="rvq", num_quantizers=3, codebook_size=16, kmeans_init=False, quantize_dropout=True
    )
    codec = VQVAE(tiny_config(decoder="istft", freeze_encoder=True, quantizer=rvq))
    codec.train()
    assert not codec.encoder.training and not codec.quantizer.training and codec.decoder.training
    x = torch.randn(4, 1, 900) * 0.1
    frozen = {k: v.clone() for k, v in codec.state_dict().items() if not k.startswith("decoder.")}
    decoder = {k: v.clone() for k, v in codec.decoder.state_dict().items()}
    codes = codec.encode(x)
    trainable = [p for p in codec.parameters() if p.requires_grad]
    assert trainable == list(codec.decoder.parameters())
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    for _ in range(3):
        recon, step_codes, aux = codec(x)
        assert torch.equal(step_codes, codes) and float(aux) == 0.0
        optimizer.zero_grad()
        (recon - x).abs().mean().backward()
        optimizer.step()
    assert all(torch.equal(v, codec.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, codec.decoder.state_dict()[k]) for k, v in decoder.items())
    assert torch.equal(codec.encode(x), codes)


def test_a_grown_decoder_starts_as_the_one_it_grew_from():
    """model.decoder_blocks raised with train.init_from: the blocks the checkpoint lacks load as the
    identity (layer scale 0), so the grown decoder decodes exactly as before and then trains."""
    torch.manual_seed(0)
    small = VQVAE(tiny_config(decoder="istft")).eval()
    grown = VQVAE(tiny_config(decoder="istft", decoder_blocks=4)).eval()
    missing, unexpected = grown.load_state_dict(small.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("decoder.blocks.") for k in missing)
    assert not grown.decoder.blocks[2].gamma.detach().any()
    assert grown.decoder.blocks[1].gamma.detach().all()  # loaded blocks keep theirs
    codes = small.encode(torch.randn(2, 1, 900) * 0.1)
    assert torch.equal(grown.decode(codes), small.decode(codes))
    grown.decode(codes).square().mean().backward()
    assert grown.decoder.blocks[3].gamma.grad.abs().sum() > 0


def test_an_encoder_given_a_spectral_side_input_starts_as_the_one_it_grew_from():
    """model.encoder_spectral_n_fft with train.init_from: the side input's convolution starts at
    zero, so the codes are those of the checkpoint's encoder at first; then it trains (its weights
    get gradients through the straight-through quantizer), for any input length."""
    torch.manual_seed(0)
    plain = VQVAE(tiny_config(decoder="istft")).eval()
    spectral = VQVAE(tiny_config(decoder="istft", encoder_spectral_n_fft=120)).eval()
    missing, unexpected = spectral.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and sorted(missing) == [
        "encoder.spectral.proj.bias",
        "encoder.spectral.proj.weight",
    ]
    x = torch.randn(2, 1, 900) * 0.1
    assert torch.equal(spectral.encode(x), plain.encode(x))
    recon, _, aux = spectral.train()(x)  # the straight-through estimator acts in training
    ((recon - x).abs().mean() + aux).backward()
    assert spectral.encoder.spectral.proj.weight.grad.abs().sum() > 0
    for length in (1, 29, 31, 997):
        assert spectral.encode(torch.randn(1, 1, length)).shape == (1, -(-length // 30), 1)


@pytest.mark.parametrize("n_fft", [28, 29, 121])
def test_encoder_spectral_n_fft_must_be_even_at_least_the_hop_and_centred(n_fft):
    from musgen.errors import ConfigError

    with pytest.raises(ConfigError, match="encoder_spectral_n_fft"):
        tiny_config(encoder_spectral_n_fft=n_fft).validate()


def test_metrics_on_known_signals():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t)[None]
    noise = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    stft = MultiResolutionSTFTLoss((512, 256))
    assert float(stft(tone, tone)) == 0.0 and float(stft(tone + 0.1 * noise, tone)) > 0.1
    # SI-SDR: scale-invariant, and noise at -20 dB power gives about 20 dB.
    assert float(si_sdr(3 * tone, tone)) > 60
    scaled_noise = noise / noise.norm() * tone.norm() * 0.1
    assert float(si_sdr(tone + scaled_noise, tone)) == pytest.approx(20.0, abs=0.2)
    assert float(log_mel_l1(tone, tone, 16000)) == 0.0
    # doubling white noise multiplies the power in every mel band by 4
    assert float(log_mel_l1(2 * noise, noise, 16000)) == pytest.approx(2 * np.log(2), rel=0.01)


def test_flattened_codes_round_trip():
    codes = np.array([[1, 2, 3], [4, 5, 6]])  # (F=2, Q=3), K = 10
    tokens = flatten_codes(codes, 10)
    assert tokens.tolist() == [1, 12, 23, 4, 15, 26]
    assert np.array_equal(unflatten_tokens(tokens, 10, 3), codes)
    assert np.array_equal(unflatten_tokens(tokens[:-1], 10, 3), codes[:1])  # partial frame dropped


def test_trailing_silence_is_trimmed_with_the_edge_frames():
    silence = np.array([7, 8])  # (Q=2,) K = 10
    music = np.array([[1, 2], [3, 4], [7, 5]])  # a quiet frame inside a piece (coarse code 7) stays
    ending = np.array([[1, 2], [7, 3], [7, 8], [7, 8], [7, 1], [2, 2]])  # sound, silence (coarse 7), edge
    pieces = [np.concatenate([music, ending]), music, np.array([[7, 8]] * 4)]
    tokens = np.concatenate([flatten_codes(p, 10) for p in pieces]).astype(np.int32)
    offsets = np.cumsum([0, *(p.size for p in pieces)])
    out, new_offsets, dropped = trim_trailing_silence(tokens, offsets, silence, 10, edge=2)
    kept = [unflatten_tokens(out[a:b], 10, 2) for a, b in zip(new_offsets[:-1], new_offsets[1:], strict=True)]
    assert np.array_equal(kept[0], pieces[0][:4])  # up to the last sound
    assert np.array_equal(kept[1], music)  # no silence at its end: untouched (its last 2 frames too)
    assert len(kept[2]) == 0  # silence alone
    assert dropped == 5 + 4 and out.dtype == tokens.dtype


def test_code_windows_start_with_bos_and_resume_exactly():
    tokens = np.arange(100, dtype=np.int32)
    offsets = np.array([0, 70, 100])
    ds = CodeWindows(tokens, offsets, seq_len=16, bos=999, jitter=True, seed=3)
    first = ds[0]
    assert first["input_ids"][0] == 999 and first["labels"][0] == 0
    ds.set_epoch(2)
    again = CodeWindows(tokens, offsets, seq_len=16, bos=999, jitter=True, seed=3)
    again.set_epoch(2)
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["input_ids"], again[i]["input_ids"])
        real = item["labels"] != -100
        # labels are the next input token wherever they are real
        assert torch.equal(item["labels"][real][:-1], item["input_ids"][1:][real[:-1]][: int(real.sum()) - 1])


def test_splice_starts_with_the_prompt():
    prompt = np.linspace(-0.5, 0.5, 300).astype(np.float32)
    decoded = np.zeros(1000, np.float32)
    out = _splice(prompt, decoded, fade=50)
    assert len(out) == 1000 and np.array_equal(out[:250], prompt[:250]) and np.all(out[300:] == 0)
    assert np.all(np.abs(out[250:300]) <= np.abs(prompt[250:300]) + 1e-6)


def test_silent_fraction_counts_quiet_tenths_of_a_second():
    from musgen.eval.audio import silent_fraction

    rate = 1000
    tone = 0.1 * np.sin(np.arange(rate) / 3.0)  # 1 s at -23 dB RMS
    fading = np.concatenate([tone, 0.001 * tone, np.zeros(rate // 2)])  # then -63 dB, then silence
    assert silent_fraction([tone], rate) == 0.0
    assert silent_fraction([fading, tone], rate) == pytest.approx(15 / 35)


def test_spectral_flatness_tells_a_tone_from_noise():
    from musgen.eval.audio import spectral_flatness

    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t)
    noise = np.random.default_rng(0).standard_normal(rate)
    assert spectral_flatness([tone]) < 0.01
    assert spectral_flatness([noise]) == pytest.approx(0.56, abs=0.03)  # exp(-Euler's gamma)
    assert (
        spectral_flatness([tone, noise])
        > spectral_flatness([tone + 0.01 * noise])
        > spectral_flatness([tone])
    )
