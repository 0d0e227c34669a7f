"""The codec's quantizers: straight-through gradients, dead-code restarts, code round trips."""

import pytest
import torch

from musgen.config import from_dict
from musgen.errors import ConfigError
from musgen.modules.quantizer import Quantizer, QuantizerConfig, code_counts, code_statistics


def _codebook(q: Quantizer) -> torch.Tensor:
    return q.vq._codebook.embed[0]  # (K, D)


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    q = Quantizer(
        8, QuantizerConfig(codebook_size=16, kmeans_init=False, dead_code_threshold=0, commitment_weight=0)
    )
    z = torch.randn(2, 8, 5, requires_grad=True)
    book = _codebook(q).clone()  # training mode: the EMA update moves the codebook after quantizing
    quantized, codes, _ = q(z)
    # The forward value is the nearest code ...
    assert torch.equal(codes[..., 0], torch.cdist(z.detach().transpose(1, 2), book[None]).argmin(-1))
    nearest = book[codes[..., 0]].permute(0, 2, 1)  # (B, D, T)
    torch.testing.assert_close(quantized, nearest)
    assert not torch.allclose(quantized, z)
    # ... and the backward pass copies the gradient to the encoder output unchanged.
    upstream = torch.randn_like(quantized)
    (grad,) = torch.autograd.grad((quantized * upstream).sum(), z)
    torch.testing.assert_close(grad, upstream)


def test_commitment_loss_pulls_the_encoder_output_to_its_code():
    torch.manual_seed(0)
    q = Quantizer(
        4, QuantizerConfig(codebook_size=8, kmeans_init=False, dead_code_threshold=0, commitment_weight=1.0)
    )
    z = torch.randn(1, 4, 10, requires_grad=True)
    quantized, _, commit = q(z)
    (grad,) = torch.autograd.grad(commit, z)
    # d/dz mean((z - sg(q))^2) = 2 (z - q) / N
    torch.testing.assert_close(grad, 2 * (z - quantized.detach()) / z.numel())


@pytest.mark.parametrize("threshold, revived", [(2.0, True), (0.0, False)])
def test_dead_codes_restart_from_encoder_outputs(threshold, revived):
    torch.manual_seed(0)
    q = Quantizer(
        4, QuantizerConfig(codebook_size=16, kmeans_init=False, dead_code_threshold=threshold, decay=0.8)
    )
    with torch.no_grad():  # half the codebook far from any data: never chosen
        book = q.vq._codebook
        book.embed[0, 8:] = 1000.0
        book.embed_avg[0, 8:] = 1000.0 * book.cluster_size[0, 8:, None]  # the EMA's numerator agrees
    q.train()
    for _ in range(20):
        q(torch.randn(8, 4, 32))
    far = _codebook(q)[8:].norm(dim=-1)
    q.eval()
    _, codes, _ = q(torch.randn(8, 4, 32))
    used = set(codes.flatten().tolist())
    if revived:
        assert far.max() < 10, "dead codes were not moved to the data"
        assert len(used & set(range(8, 16))) >= 4, "revived codes are not used"
    else:
        assert far.min() > 100 and not used & set(range(8, 16))


@pytest.mark.parametrize("kind", ["vq", "rvq", "fsq"])
def test_codes_decode_to_the_quantized_latents(kind):
    torch.manual_seed(0)
    cfg = QuantizerConfig(kind=kind, codebook_size=32, num_quantizers=3, fsq_levels=[5, 4, 4])
    q = Quantizer(6, cfg)
    q(torch.randn(4, 6, 40))  # k-means init
    q.eval()
    quantized, codes, _ = q(torch.randn(2, 6, 7))
    assert codes.shape == (2, 7, cfg.levels) and int(codes.max()) < cfg.codes and int(codes.min()) >= 0
    torch.testing.assert_close(q.decode_codes(codes), quantized)


def test_quantize_dropout_decodes_the_first_levels_alone():
    torch.manual_seed(0)
    cfg = QuantizerConfig(kind="rvq", codebook_size=32, num_quantizers=3, quantize_dropout=True)
    q = Quantizer(6, cfg)
    q(torch.randn(64, 6, 40))  # k-means init
    q.eval()
    z = torch.randn(2, 6, 7)
    quantized, codes, _ = q(z)
    errors = []
    for n in (1, 2, 3):
        coarse = q.decode_codes(codes[..., :n])  # (B, D, T) from the first n levels
        assert coarse.shape == z.shape
        errors.append(float((coarse - z).pow(2).mean()))
    torch.testing.assert_close(q.decode_codes(codes), quantized)
    assert errors[0] > errors[1] > errors[2], errors  # every residual level refines the latent


def test_code_statistics():
    counts = code_counts(torch.tensor([[[0], [1], [1], [3]]]), 4)  # (B=1, T=4, Q=1)
    assert counts.tolist() == [[1, 2, 0, 1]]
    stats = code_statistics(torch.tensor([[5, 5, 0, 0]]))
    assert stats["code_usage"] == 0.5 and stats["code_perplexity"] == pytest.approx(2.0)
    assert set(stats) == {"code_usage", "code_perplexity"}  # one codebook: no per-level entries
    levels = code_statistics(torch.tensor([[5, 5, 5, 5], [9, 0, 0, 0]]))  # residual VQ, 2 levels
    assert levels["code_usage_l0"] == 1.0 and levels["code_perplexity_l0"] == pytest.approx(4.0)
    assert levels["code_usage_l1"] == 0.25 and levels["code_perplexity_l1"] == pytest.approx(1.0)
    assert levels["code_usage"] == pytest.approx(0.625) and levels["code_perplexity"] == pytest.approx(2.5)


def test_bad_quantizer_settings():
    with pytest.raises(ConfigError):
        from_dict(QuantizerConfig, {"kind": "pq"})
    with pytest.raises(ConfigError):
        from_dict(QuantizerConfig, {"kind": "fsq", "fsq_levels": [1, 4]})
    with pytest.raises(ConfigError, match="quantize_dropout"):
        from_dict(QuantizerConfig, {"kind": "vq", "quantize_dropout": True})


def test_a_packed_codebook_loads_without_its_ema_sums(tmp_path):
    """pack_checkpoint leaves the EMA sums (training state) out; loading rebuilds them, codes agree."""
    from musgen import checkpoint

    torch.manual_seed(0)
    cfg = QuantizerConfig(kind="rvq", num_quantizers=2, codebook_size=16, kmeans_init=False)
    q = Quantizer(8, cfg)
    for _ in range(3):  # EMA updates: the sums are no longer the initial ones
        q(torch.randn(4, 8, 10))
    q.eval()
    src = checkpoint.save_portable(
        tmp_path / "run" / "checkpoints" / "step_0000001",
        family="vqvae",
        config_yaml="{}",
        models={"model": q},
        step=1,
    )
    packed = checkpoint.pack_checkpoint(src, tmp_path / "packed")
    from safetensors import safe_open

    with safe_open(str(packed / "model.safetensors"), framework="pt") as handle:
        names = list(handle.keys())  # noqa: SIM118
    assert names and not [n for n in names if n.endswith(".embed_avg")]
    fresh = Quantizer(8, cfg).eval()
    checkpoint.load_portable(packed).load_weights("model", fresh)  # strict: nothing missing
    z = torch.randn(2, 8, 7)
    assert torch.equal(q(z)[1], fresh(z)[1])
    for name, sums in q.state_dict().items():
        if name.endswith(".embed_avg"):
            torch.testing.assert_close(fresh.state_dict()[name], sums, rtol=2e-2, atol=1e-3)
