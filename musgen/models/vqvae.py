"""The audio codec (Jukebox's VQ-VAE at laptop scale): waveform -> encoder -> quantizer -> decoder.

The encoder is a stack of dilated residual units and strided convolutions (musgen.modules.conv_blocks)
with total hop prod(model.strides) samples per code frame; the quantizer (musgen.modules.quantizer)
is an EMA codebook with k-means init and dead-code restarts (or residual VQ / FSQ). Training minimises
multi-resolution STFT distance + L1 on the waveform (+ log-mel L1 with ``loss.mel_weight``) + the
commitment loss on random segments of the training audio. Codebook usage and perplexity are logged on every step and evaluation, since collapse
onto a few codes is the main failure at small scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from musgen.config import TrainConfig
from musgen.errors import ConfigError, MusgenError
from musgen.generator import Generator
from musgen.modules.audio_losses import MultiResolutionSTFTLoss, log_mel_l1, si_sdr
from musgen.modules.conv_blocks import WaveDecoder, WaveEncoder
from musgen.modules.discriminators import (
    MultiScaleSTFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from musgen.modules.istft_decoder import ISTFTDecoder
from musgen.modules.quantizer import Quantizer, QuantizerConfig, code_counts, code_statistics
from musgen.registry import FamilySpec
from musgen.training.precision import cpu_bf16_is_faster
from musgen.training.task import StepContext, Task

DECODERS = ("conv", "istft")
ENCODE_PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class VQVAEModelConfig:
    strides: list[int] = field(
        default_factory=lambda: [2, 4, 4, 4]
    )  # hop = product (128 -> 125 Hz at 16 kHz)
    base_channels: int = 32  # doubled after each down-sampling ...
    max_channels: int = 256  # ... up to this
    latent_dim: int = 64
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9])
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    # conv: the encoder mirrored (transposed convolutions) | istft: Vocos-style, ConvNeXt blocks at
    # the frame rate and an inverse STFT (musgen.modules.istft_decoder)
    decoder: str = "conv"
    decoder_channels: int = 256  # istft only
    decoder_blocks: int = 6  # istft only
    # istft only: the points of the STFT the decoder writes (0: 4 x hop, Vocos's choice); more points
    # resolve harmonics more finely in each frame, over more overlapping frames
    decoder_n_fft: int = 0
    # The points of a log-magnitude STFT given to the encoder beside its convolutions (0: none;
    # musgen.modules.conv_blocks.SpectralSideInput): the harmonics' fine structure, read directly.
    encoder_spectral_n_fft: int = 0
    # Train the decoder alone: the encoder and quantizer stay as train.init_from left them (no
    # gradients, no codebook updates), so the codes - and a prior trained on them - stay valid.
    freeze_encoder: bool = False

    def validate(self) -> None:
        if self.decoder not in DECODERS:
            raise ConfigError(f"model.decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if not self.strides or min(self.strides) < 1:
            raise ConfigError("model.strides must be a non-empty list of integers >= 1")
        if min(self.base_channels, self.max_channels, self.latent_dim) < 1:
            raise ConfigError("model.base_channels, model.max_channels and model.latent_dim must be >= 1")
        if self.decoder_n_fft and (self.decoder_n_fft < self.hop or self.decoder_n_fft % 2):
            raise ConfigError(f"model.decoder_n_fft must be 0 or an even number >= the hop ({self.hop})")
        spectral = self.encoder_spectral_n_fft
        if spectral and (spectral < self.hop or spectral % 2 or (spectral - self.hop) % 2):
            raise ConfigError(
                f"model.encoder_spectral_n_fft must be 0 or an even number >= the hop ({self.hop}), "
                "differing from it by an even number"
            )

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


@dataclass
class AudioSegmentConfig:
    segment_seconds: float = 1.0  # training crops


@dataclass
class VQVAELossConfig:
    stft_weight: float = 1.0
    wave_l1_weight: float = 0.1
    mel_weight: float = 0.0  # log-mel L1 (80 mels, 1024-point FFT), EnCodec's spectral term
    fft_sizes: list[int] = field(default_factory=lambda: [2048, 1024, 512, 256, 128])
    # EnCodec's multi-scale STFT discriminator: on when adversarial_weight > 0 (hinge loss, plus
    # feature matching with feature_matching_weight), from step adversarial_start on.
    adversarial_weight: float = 0.0
    feature_matching_weight: float = 0.0
    adversarial_start: int = 0
    discriminator_fft_sizes: list[int] = field(default_factory=lambda: [1024, 512, 256])
    discriminator_channels: int = 32

    def validate(self) -> None:
        if min(self.adversarial_weight, self.feature_matching_weight, self.adversarial_start) < 0:
            raise ConfigError(
                "loss.adversarial_weight, feature_matching_weight and adversarial_start must be >= 0"
            )
        if self.feature_matching_weight and not self.adversarial_weight:
            raise ConfigError(
                "loss.feature_matching_weight needs the discriminator: set loss.adversarial_weight > 0"
            )


@dataclass
class VQVAEConfig:
    model: VQVAEModelConfig = field(default_factory=VQVAEModelConfig)
    data: AudioSegmentConfig = field(default_factory=AudioSegmentConfig)
    loss: VQVAELossConfig = field(default_factory=VQVAELossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.loss.adversarial_weight and self.train.grad_accum != 1:
            raise ConfigError("the adversarial codec takes one batch per step: leave train.grad_accum at 1")


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEModelConfig):
        super().__init__()
        self.cfg = cfg
        self.hop = cfg.hop
        args = (cfg.latent_dim, list(cfg.strides), cfg.base_channels, cfg.max_channels, list(cfg.dilations))
        self.encoder = WaveEncoder(*args, spectral_n_fft=cfg.encoder_spectral_n_fft)
        self.quantizer = Quantizer(cfg.latent_dim, cfg.quantizer)
        self.decoder: nn.Module = (
            ISTFTDecoder(cfg.latent_dim, cfg.hop, cfg.decoder_channels, cfg.decoder_blocks, cfg.decoder_n_fft)
            if cfg.decoder == "istft"
            else WaveDecoder(*args)
        )
        if cfg.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.quantizer.requires_grad_(False)

    def train(self, mode: bool = True) -> VQVAE:
        super().train(mode)
        if self.cfg.freeze_encoder:  # no codebook (EMA) updates, restarts or dropout in there
            self.encoder.eval()
            self.quantizer.eval()
        return self

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) or (B, 1, T) -> (B, 1, ceil(T / hop) * hop), zero-padded on the right."""
        x = x.reshape(x.shape[0], 1, x.shape[-1])
        return F.pad(x, (0, -x.shape[-1] % self.hop))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 1, T) -> reconstruction (B, 1, T), codes (B, ceil(T / hop), Q), commitment loss."""
        length = x.shape[-1]
        if self.cfg.freeze_encoder:
            return self._decoder_forward(x)
        quantized, codes, aux = self.quantizer(self.encoder(self._pad(x)))
        return self.decoder(quantized)[..., :length], codes, aux

    def _decoder_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen codes; in training with quantize_dropout the decoder sees the first n levels,
        n uniform in 1..Q per batch, as the quantizer's own dropout would give."""
        with torch.no_grad():
            codes = self.encode(x)  # (B, F, Q)
        kept = codes.shape[-1]
        if self.training and self.cfg.quantizer.quantize_dropout:
            kept = int(torch.randint(1, kept + 1, ()))
        recon = self.decoder(self.quantizer.decode_codes(codes[..., :kept]))
        return recon[..., : x.shape[-1]], codes, recon.new_zeros(())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T) or (B, 1, T) -> codes (B, ceil(T / hop), Q)."""
        return self.quantizer(self.encoder(self._pad(x)))[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, F, Q) -> waveform (B, 1, F * hop)."""
        return self.decoder(self.quantizer.decode_codes(codes))


class VQVAETask(Task):
    def __init__(
        self,
        cfg: VQVAEConfig,
        data_dir: Path | None = None,
        data_meta: Mapping[str, Any] | None = None,
        models: dict[str, nn.Module] | None = None,
    ):
        meta = dict(data_meta or {})
        if meta.get("kind") != "audio" or "sample_rate" not in meta:
            raise MusgenError(
                "vqvae trains on audio: build the data set with `musgen data build --audio-dir DIR` "
                "or `--corpus NAME --render`"
            )
        if models is None and cfg.model.freeze_encoder and not cfg.train.init_from:  # a new training run
            raise ConfigError(
                "model.freeze_encoder keeps a trained codec's encoder and codebooks: give it with train.init_from"
            )
        self.sample_rate = int(meta["sample_rate"])
        self.segment = max(cfg.model.hop, round(cfg.data.segment_seconds * self.sample_rate))
        self.stft_loss = MultiResolutionSTFTLoss(tuple(cfg.loss.fft_sizes))
        super().__init__(cfg, data_dir, meta, models)

    def build_models(self) -> dict[str, nn.Module]:
        models: dict[str, nn.Module] = {"model": VQVAE(self.cfg.model)}
        loss = self.cfg.loss
        if loss.adversarial_weight:
            models["discriminator"] = MultiScaleSTFTDiscriminator(
                tuple(loss.discriminator_fft_sizes), loss.discriminator_channels
            )
        return models

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = super().optimizers()
        if "discriminator" in self.models:
            train = self.cfg.train
            optimizers["discriminator"] = torch.optim.Adam(
                self.models["discriminator"].parameters(), lr=train.lr, betas=tuple(train.betas)
            )
        return optimizers

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.audio_data import AudioChunks

        train = AudioChunks(
            self.data_path, "train", self.segment, seed=self.cfg.train.seed, random_offset=True
        )
        return train, AudioChunks(self.data_path, "valid", self.segment, random_offset=False)

    def tokens_in(self, batch: Mapping[str, torch.Tensor]) -> int:
        return int(batch["audio"].shape[0] * batch["audio"].shape[-1])  # samples

    def _reconstruct(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = batch["audio"]  # (B, 1, S)
        recon, codes, aux = self.models["model"](x)
        return x, recon.float(), codes, aux

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self._reconstruction_loss(*self._reconstruct(batch))

    def _reconstruction_loss(
        self, x: torch.Tensor, recon: torch.Tensor, codes: torch.Tensor, aux: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        weights = self.cfg.loss
        stft = self.stft_loss(recon, x)
        l1 = (recon - x).abs().mean()
        loss = weights.stft_weight * stft + weights.wave_l1_weight * l1 + aux
        metrics = {"stft": float(stft.detach()), "wave_l1": float(l1.detach()), "commit": float(aux.detach())}
        if weights.mel_weight:
            mel = log_mel_l1(recon, x, self.sample_rate).mean()
            loss = loss + weights.mel_weight * mel
            metrics["log_mel_l1"] = float(mel.detach())
        metrics.update(code_statistics(code_counts(codes, self.cfg.model.quantizer.codes)))  # this batch
        return loss, metrics

    def train_step(
        self, micro_batches: Sequence[Mapping[str, torch.Tensor]], ctx: StepContext
    ) -> dict[str, float]:
        """With the discriminator: one discriminator update on the batch and its (detached)
        reconstruction, then one codec update with the adversarial and feature-matching terms added
        to the reconstruction loss. Without it: the base Task's step."""
        if "discriminator" not in self.models:
            return super().train_step(micro_batches, ctx)
        (batch,) = micro_batches  # grad_accum 1 (validated)
        model, disc, weights = self.models["model"], self.models["discriminator"], self.cfg.loss
        x, recon, codes, aux = self._reconstruct(batch)
        loss, metrics = self._reconstruction_loss(x, recon, codes, aux)
        if ctx.step >= weights.adversarial_start:
            d_loss = discriminator_hinge_loss(disc(x), disc(recon.detach()))
            ctx.optimizers["discriminator"].zero_grad(set_to_none=True)  # the codec step left grads here
            ctx.backward(d_loss)
            ctx.clip_and_step("discriminator", disc.parameters())
            with ctx.accelerator.no_sync(disc):  # its gradients from the codec's loss are discarded
                with torch.no_grad():
                    real = disc(x)
                fake = disc(recon)
                adversarial = generator_hinge_loss(fake)
                matching = feature_matching_loss(real, fake)
                loss = loss + weights.adversarial_weight * adversarial
                loss = loss + weights.feature_matching_weight * matching
                ctx.backward(loss)
            metrics.update(
                d_loss=float(d_loss.detach()),
                g_adversarial=float(adversarial.detach()),
                feature_matching=float(matching.detach()),
            )
        else:
            ctx.backward(loss)
        norm = ctx.clip_and_step("model", model.parameters())
        if norm is not None:
            metrics["grad_norm"] = norm
        return {"loss": float(loss.detach()), **metrics}

    def eval_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, recon, codes, _ = self._reconstruct(batch)
        n = x.shape[0]
        return {
            "stft_sum": self.stft_loss(recon, x) * n,
            "log_mel_l1_sum": log_mel_l1(recon, x, self.sample_rate).sum(),
            "si_sdr_sum": si_sdr(recon, x).sum(),
            "items": torch.tensor(float(n), device=x.device),
            "code_counts": code_counts(codes, self.cfg.model.quantizer.codes).double(),
        }

    def eval_metrics(self, sums: Mapping[str, Any]) -> dict[str, float]:
        n = max(float(sums.get("items", 0.0)), 1.0)
        out = {
            "stft": float(sums["stft_sum"]) / n,
            "log_mel_l1": float(sums["log_mel_l1_sum"]) / n,
            "si_sdr": float(sums["si_sdr_sum"]) / n,
        }
        if "code_counts" in sums:
            out.update(code_statistics(torch.as_tensor(sums["code_counts"])))
        return out


class VQVAEGenerator(Generator):
    """A trained codec: waveform -> codes -> waveform."""

    sample_suffix = ".wav"
    draws_tokens = False

    def __init__(self, ckpt: Any, cfg: VQVAEConfig):
        super().__init__(ckpt, cfg)
        self._sample_rate = int(self.data_meta["sample_rate"])

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": VQVAE(self.cfg.model)}

    @property
    def codec(self) -> VQVAE:
        return self.models["model"]  # type: ignore[return-value]

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def code_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.cfg.model.hop

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes."""
        q = self.cfg.model.quantizer
        return self.code_rate * q.levels * math.log2(q.codes)

    def generate(self, num_samples: int = 1, **options: Any) -> list[Any]:
        raise MusgenError(
            "a vqvae checkpoint is an audio codec: sample from a prior trained on its codes "
            "(`musgen train prior --set vqvae=RUN_DIR`), or use `musgen reconstruct in.wav`"
        )

    def check_options(self, options: Mapping[str, Any]) -> None:
        self.generate()  # whatever was asked: a codec does not sample

    def encoder_bf16(self, precision: str) -> bool:
        """Whether ``encode_audio`` runs the encoder's convolutions under bf16 autocast: ``bf16``,
        ``fp32``, or ``auto`` = bf16 on a CPU with native bf16 (``training.precision.cpu_bf16_is_faster``:
        the encoder runs ~3x faster there), float32 elsewhere (GPUs are fast enough as is)."""
        if precision not in ENCODE_PRECISIONS:
            raise MusgenError(
                f"encode precision must be one of {', '.join(ENCODE_PRECISIONS)}, not {precision!r}"
            )
        if precision == "auto":
            return self.device.type == "cpu" and cpu_bf16_is_faster()
        return precision == "bf16"

    @torch.no_grad()
    def encode_audio(self, wave: np.ndarray, precision: str = "auto") -> torch.Tensor:
        """Mono waveform (T,) at the codec's rate -> codes (ceil(T / hop), Q), on the CPU.
        ``precision`` (see ``encoder_bf16``): bf16 codes differ from float32's in a few % of the
        frames (scripts/results/eval_audio_encode_bf16.json); training data is encoded in fp32."""
        samples = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None].to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.encoder_bf16(precision)):
            return self.codec.encode(samples)[0].cpu()

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """codes (F, Q) -> waveform (F * hop,) float32."""
        return self.codec.decode(codes[None].long().to(self.device))[0, 0].clamp(-1, 1).cpu().numpy()

    def reconstruct_audio(self, wave: np.ndarray, precision: str = "auto") -> np.ndarray:
        """The round trip of a mono waveform at the codec's rate: encode (at ``precision``, see
        ``encoder_bf16``), decode, same length."""
        return self.decode_codes(self.encode_audio(wave, precision))[: len(wave)]

    def reconstruct_to(self, out_dir: str | Path, audio: str | Path, **controls: Any) -> list[Path]:
        """Writes ``original.wav`` (at the codec's rate) and ``reconstruction.wav``, recorded in
        ``samples.json``; a rerun in the same folder writes ``original_001.wav`` ..."""
        from musgen.data.audio_io import AudioReadError, read_audio

        try:
            wave = read_audio(Path(audio), self.sample_rate)
        except AudioReadError as err:
            raise err.about(str(audio)) from None
        run = self.run_record("reconstruct", {"clip": audio, **controls})
        named = {"original": wave, "reconstruction": self.reconstruct_audio(wave)}
        return self.write_all(out_dir, "", [], run=run, named=named)

    def write(self, output: np.ndarray, path: Path) -> None:
        from musgen.data.audio_io import write_audio

        write_audio(path, output, self.sample_rate)


def evaluate(
    generator: VQVAEGenerator, data_dir: Path, split: str, opts: Any
) -> tuple[dict[str, Any], list[Any]]:
    """Reconstruction of the held-out audio (multi-resolution STFT distance, log-mel L1, SI-SDR,
    codebook usage and perplexity) and the Frechet distance between originals and reconstructions."""
    from musgen.eval.audio import evaluate_codec
    from musgen.eval.frechet import audio_frechet

    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    codec = evaluate_codec(generator, data_dir, split, max_seconds=opts.max_seconds, reconstructions=pairs)
    originals, recons = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"codec": codec, "frechet": audio_frechet(originals, recons, generator.sample_rate)}, []


FAMILY = FamilySpec(
    "vqvae",
    VQVAEConfig,
    VQVAETask,
    VQVAEGenerator,
    evaluate,
    data_kind="audio",
    description="a VQ-VAE audio codec (Jukebox-style, at laptop scale): waveform -> discrete codes -> waveform",
)
