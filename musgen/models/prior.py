"""The audio prior (Jukebox's top-level prior at laptop scale): the Music Transformer (relative
attention, KV-cached sampling) over the codes of a frozen VQ-VAE.

``pattern`` says how a frame's Q codes (one per residual level) are read: ``flat``, one token after
another (Q steps per frame, exact); ``delay``, MusicGen's delay pattern: one step per frame, stream k
delayed by k frames, the Q streams' embeddings summed at the input and Q output heads
(``DelayedCodeTransformer``), so sampling takes one step per frame whatever Q is.

``musgen train prior --set vqvae=RUN_DIR`` encodes the data set's audio once with that codec (cached
code files, musgen.data.audio_codes), then trains next-token prediction on windows of code tokens.
The codec travels inside every prior checkpoint (``vqvae/``), so sampling needs only the prior;
on load the codebook sizes of the two are checked against each other. Sampling continues BOS (or an
encoded audio prompt), decodes the codes to a waveform and, with a prompt, starts with the prompt's
own samples (a short crossfade joins them to the decoded continuation).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from musgen import checkpoint
from musgen.config import TrainConfig
from musgen.errors import ConfigError, MusgenError
from musgen.generator import Generator, flag
from musgen.models.lm import LanguageModelTask
from musgen.models.transformer import MusicTransformer, TransformerModelConfig
from musgen.models.vqvae import VQVAEGenerator
from musgen.registry import FamilySpec

log = logging.getLogger(__name__)
CROSSFADE_SECONDS = 0.01
# A prompt's last frames are encoded with the encoder's zero padding where the music goes on: the
# codes of the last 3 frames of a 4-s prompt differ from those of the same frames inside the piece
# (and of the 4th in 30 % of prompts, stop 41), i.e. they say "the sound stops here"
PROMPT_EDGE_FRAMES = 4


@dataclass
class PriorDataConfig:
    seq_len: int = (
        512  # steps per training window: code tokens (flat: frames * codebooks), rows (delay: frames)
    )
    # train and valid windows leave out each piece's trailing digital silence (the codec's code for
    # silence after the last sound): otherwise the prior learns that silence never ends
    trim_trailing_silence: bool = True
    # the fraction of input codes replaced by random codes in training (never the targets): a prior
    # that sees wrong codes in its context learns not to trust every one, as when it continues its
    # own sampled codes (docs/measured.md, issue 21, stop 44)
    code_noise: float = 0.0


PATTERNS = ("flat", "delay")


@dataclass
class PriorConfig:
    vqvae: str = ""  # the codec: a vqvae RUN_DIR or checkpoint directory
    pattern: str = "flat"  # flat: Q tokens per code frame | delay: one step per frame (MusicGen)
    model: TransformerModelConfig = field(default_factory=TransformerModelConfig)
    data: PriorDataConfig = field(default_factory=PriorDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.pattern not in PATTERNS:
            raise ConfigError(f"pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        if not 0.0 <= self.data.code_noise < 1.0:
            raise ConfigError(f"data.code_noise must be in [0, 1), got {self.data.code_noise}")
        if self.pattern == "delay" and self.model.tie_weights:
            raise ConfigError("pattern=delay has one output head per codebook: set model.tie_weights=false")


class DelayedCodeTransformer(MusicTransformer):
    """The Music Transformer over code rows in the delay pattern: ids (B, T, Q) -> logits (B, T, Q, C).
    Stream k's ids (its C codes, a delay pad C, BOS C + 1) have their own embedding table; a row's Q
    embeddings are summed. Q heads give each stream's next code (pads and BOS are never predicted)."""

    offsets: torch.Tensor  # (Q,): where each stream's table starts in self.embed

    def __init__(self, codebook_size: int, levels: int, cfg: TransformerModelConfig, context: int):
        super().__init__(levels * (codebook_size + 2), cfg, context)  # self.embed: the Q tables in one
        self.codebook_size, self.levels = codebook_size, levels
        self.head = nn.Linear(cfg.d_model, levels * codebook_size, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)
        self.register_buffer("offsets", torch.arange(levels) * (codebook_size + 2), persistent=False)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids + self.offsets).sum(-2)  # (B, T, Q) -> (B, T, D)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).unflatten(-1, (self.levels, self.codebook_size))  # (B, T, Q, C)


def noisy_codes(ids: torch.Tensor, fraction: float, codebook_size: int, levels: int) -> torch.Tensor:
    """data.code_noise: a prior's input ids with ``fraction`` of their codes replaced by a random code
    of the same level. Delay ids (B, T, Q) hold codes 0..C-1 per stream, then its pad and BOS; flat
    ids (B, T) hold level * C + code, then BOS (C * Q). Pads and BOS are never replaced."""
    if ids.dim() == 3:
        codes = ids < codebook_size
        random = torch.randint_like(ids, codebook_size)
    else:
        codes = ids < codebook_size * levels
        random = ids - ids % codebook_size + torch.randint_like(ids, codebook_size)
    hit = codes & (torch.rand(ids.shape, device=ids.device) < fraction)
    return torch.where(hit, random, ids)


def build_prior(cfg: PriorConfig, codebook_size: int, levels: int) -> MusicTransformer:
    """The prior's transformer for its pattern (flat: one vocabulary of Q * C codes + BOS)."""
    if cfg.pattern == "delay":
        return DelayedCodeTransformer(codebook_size, levels, cfg.model, context=cfg.data.seq_len)
    return MusicTransformer.from_config(codebook_size * levels + 1, cfg)


def load_codec(path: Path) -> VQVAEGenerator:
    from musgen.generator import load

    codec = load(path)
    if not isinstance(codec, VQVAEGenerator):
        raise MusgenError(f"vqvae={path} is a {codec.family} checkpoint, not a vqvae one")
    return codec


class PriorTask(LanguageModelTask):
    """Next-code prediction over the codes of the data set's audio under the frozen codec. Training
    encodes the audio with the codec named by ``vqvae``; evaluation (given the trained models and the
    checkpoint's data fields) needs no codec."""

    model_class = MusicTransformer

    def __init__(
        self,
        cfg: PriorConfig,
        data_dir: Path | None = None,
        data_meta: Mapping[str, Any] | None = None,
        models: dict[str, nn.Module] | None = None,
    ):
        meta = dict(data_meta or {})
        self.codec: VQVAEGenerator | None = None  # frozen; training only
        self.codec_dir: Path | None = None
        if meta.get("kind") != "audio":
            raise MusgenError(f"{data_dir} is not an audio data set: the prior trains on the codes of audio")
        if models is None:  # a new model is sized by its codec
            self.codec_dir, self.codec = self._codec(cfg, meta)
            meta.update(code_fields(self.codec))
        self.codebook_size, self.levels = int(meta["codebook_size"]), int(meta["levels"])
        self.bos = self.codebook_size * self.levels
        super().__init__(cfg, data_dir, meta, models)

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": build_prior(self.cfg, self.codebook_size, self.levels)}

    def _logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.data.code_noise and self.models["model"].training:
            noisy = noisy_codes(batch["input_ids"], self.cfg.data.code_noise, self.codebook_size, self.levels)
            batch = {**batch, "input_ids": noisy}
        logits = super()._logits(batch)  # flat (B, T, V); delay (B, T, Q, C)
        return logits.flatten(1, 2) if logits.dim() == 4 else logits  # rows as the labels: (B, T * Q, C)

    @staticmethod
    def _codec(cfg: PriorConfig, meta: Mapping[str, Any]) -> tuple[Path, VQVAEGenerator]:
        if not cfg.vqvae:
            raise MusgenError("the prior needs its codec: --set vqvae=PATH_TO_VQVAE_RUN_OR_CHECKPOINT")
        codec_dir = checkpoint.resolve_checkpoint(Path(cfg.vqvae))
        codec = load_codec(codec_dir)
        if int(meta["sample_rate"]) != codec.sample_rate:
            raise MusgenError(
                f"the data set is at {meta['sample_rate']} Hz but the codec at "
                f"{codec.sample_rate} Hz: build the data at the codec's rate"
            )
        return codec_dir, codec

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.audio_codes import encoded_split, silence_codes, trim_trailing_silence, weights_key

        assert self.codec is not None and self.codec_dir is not None
        key = weights_key(self.codec_dir)
        silence = silence_codes(self.codec) if self.cfg.data.trim_trailing_silence else None
        splits = {}
        for split in ("train", "valid"):
            tokens, offsets = encoded_split(self.data_path, split, self.codec, key)
            if silence is not None:
                tokens, offsets, dropped = trim_trailing_silence(tokens, offsets, silence, self.codebook_size)
                log.info(
                    "%s: left out %d frames of trailing silence (%d pieces)", split, dropped, len(offsets) - 1
                )
            splits[split] = self.code_windows(tokens, offsets, jitter=split == "train")
        return splits["train"], splits["valid"]

    def code_windows(self, tokens: np.ndarray, offsets: np.ndarray, jitter: bool = False) -> Dataset:
        """Training windows of encoded pieces in this prior's pattern."""
        from musgen.data.audio_codes import CodeWindows, DelayedCodeWindows

        seq_len, seed = self.cfg.data.seq_len, self.cfg.train.seed
        if self.cfg.pattern == "delay":
            return DelayedCodeWindows(
                tokens, offsets, seq_len, self.codebook_size, self.levels, jitter=jitter, seed=seed
            )
        return CodeWindows(tokens, offsets, seq_len, self.bos, jitter=jitter, seed=seed)

    def checkpoint_extra_files(self) -> dict[str, Path]:
        assert self.codec_dir is not None
        return {
            f"vqvae/{name}": self.codec_dir / name
            for name in (checkpoint.META_FILE, checkpoint.CONFIG_FILE, "model.safetensors")
        }


def code_fields(codec: VQVAEGenerator) -> dict[str, int]:
    """What a prior records about its codec's codes (in the checkpoint's data fields)."""
    q = codec.cfg.model.quantizer
    return {
        "codebook_size": q.codes,
        "levels": q.levels,
        "vocab_size": q.codes * q.levels + 1,
        "hop": codec.cfg.model.hop,
    }


class PriorGenerator(Generator):
    """Continues audio: samples codes with the transformer and decodes them with the codec that travels
    inside the checkpoint (``vqvae/``)."""

    sample_suffix = ".wav"
    options = (
        "prime",
        "seconds",
        "length",
        "bars",
        "temperature",
        "top_k",
        "top_p",
        "max_silence",
        "seed",
        "compile",
    )

    def __init__(self, ckpt: Any, cfg: PriorConfig):
        meta = ckpt.meta.get("data", {})
        if "codebook_size" not in meta:
            raise MusgenError("the prior checkpoint does not record its codebook size")
        self.codebook_size, self.levels = int(meta["codebook_size"]), int(meta["levels"])
        self.hop, self.vocab_size = int(meta["hop"]), int(meta["vocab_size"])
        self.bos = self.codebook_size * self.levels
        super().__init__(ckpt, cfg)
        self._sample_rate = int(self.data_meta["sample_rate"])
        self.codec = self._codec(ckpt.path / "vqvae")

    def _codec(self, codec_dir: Path) -> VQVAEGenerator:
        if not (codec_dir / checkpoint.META_FILE).is_file():
            raise MusgenError(f"prior checkpoint {codec_dir.parent} has no vqvae/ codec inside")
        codec = load_codec(codec_dir)
        if code_fields(codec) != {
            k: getattr(self, k) for k in ("codebook_size", "levels", "vocab_size", "hop")
        }:
            q = codec.cfg.model.quantizer
            raise MusgenError(
                f"the codec in {codec_dir} has {q.levels} x {q.codes} codes at hop {codec.cfg.model.hop}, "
                f"but the prior was trained on {self.levels} x {self.codebook_size} at hop {self.hop}"
            )
        return codec

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": build_prior(self.cfg, self.codebook_size, self.levels)}

    def to(self, device: str | torch.device) -> PriorGenerator:
        """The prior and the codec inside it move together."""
        super().to(device)
        self.codec.to(device)
        return self

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def code_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def per_level_sampling(self) -> bool:
        return self.cfg.pattern == "delay"

    def level_mask(self) -> torch.Tensor:
        """(Q, V) bool: the ids allowed at each level of a frame (never BOS)."""
        mask = torch.zeros(self.levels, self.vocab_size, dtype=torch.bool, device=self.device)
        for level in range(self.levels):
            mask[level, level * self.codebook_size : (level + 1) * self.codebook_size] = True
        return mask

    def _prompt(self, prime: Any) -> tuple[np.ndarray, np.ndarray]:
        """The prompt's samples (whole code frames only) and its codes (F0, Q)."""
        from musgen.data.audio_io import AudioReadError, read_audio

        if prime is None:
            return np.zeros(0, np.float32), np.zeros((0, self.levels), np.int64)
        try:
            wave = read_audio(Path(prime), self.sample_rate)
        except AudioReadError as err:
            raise err.about(f"--prime {prime}") from None
        frames = len(wave) // self.hop
        if frames < 1:
            raise MusgenError(f"--prime {prime} is shorter than one code frame ({self.hop} samples)")
        wave = wave[: frames * self.hop]  # the model sees the last seq_len steps of a longer prompt
        codes = self.codec.encode_audio(wave).numpy().astype(np.int64)  # (F0, Q)
        if frames > PROMPT_EDGE_FRAMES:  # drawn again from the model instead, with the audio after them
            frames -= PROMPT_EDGE_FRAMES
            wave, codes = wave[: frames * self.hop], codes[:frames]
        return wave, codes

    def generate(
        self,
        num_samples: int = 1,
        *,
        prime: str | Path | None = None,
        seconds: float | None = None,
        length: int | None = None,
        bars: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        max_silence: float | None = None,
        seed: int | None = None,
        max_new_tokens: int | None = None,
        compile: bool | None = None,
    ) -> list[np.ndarray]:
        """``num_samples`` waveforms (float32, the codec's rate) of ``seconds`` (default 5) new audio
        each (or ``length`` new code frames, or ``max_new_tokens`` new tokens as Hugging Face counts
        them: ``levels`` per frame, rounded up to whole frames), starting with the prompt when
        ``prime`` (an audio file) is given. ``temperature``, ``top_k`` and ``top_p`` left at None
        take the checkpoint's recommended settings; with the delay pattern each may also be a list
        with one value per codebook level. ``max_silence``: the longest run of digital silence (the
        codec's code for it on the first level) a sample may write, in seconds; 0: none at all, inf:
        no limit (None: the checkpoint's recommendation, else no limit). ``compile``: decode with a
        static cache and a compiled step."""
        if max_new_tokens is not None:
            if length is not None or seconds is not None:
                raise MusgenError("give one of seconds, length (code frames) and max_new_tokens")
            if max_new_tokens < 1:
                raise MusgenError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
            length = math.ceil(max_new_tokens / self.levels)
        from musgen.progress import progress

        if bars is not None:
            raise MusgenError("--bars does not apply to audio: use --seconds")
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise MusgenError(f"--seconds must be a finite number > 0, got {seconds}")
        frames = (
            length
            if length is not None
            else math.ceil((5.0 if seconds is None else seconds) * self.code_rate)
        )
        silence_frames = self.silence_frames(max_silence)
        prompt, prime_codes = self._prompt(prime)
        codes = self.sample_codes(
            num_samples,
            frames,
            prime_codes,
            seed=seed,
            compile=bool(compile),
            max_silence_frames=silence_frames,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
        fade = round(CROSSFADE_SECONDS * self.sample_rate)
        return [
            _splice(prompt, self.codec.decode_codes(torch.from_numpy(c)), fade)
            for c in progress(codes, desc="decode audio", unit="sample")
        ]

    def silence_frames(self, max_silence: float | None) -> int | None:
        """``max_silence`` seconds (None: the checkpoint's recommendation) as code frames; None: no
        limit."""
        max_silence = self.option_sampling({"max_silence": max_silence}).get("max_silence")
        if max_silence is None:
            return None
        if not max_silence >= 0:  # NaN fails too
            raise MusgenError(f"--max-silence must be a number >= 0 (inf: no limit), got {max_silence}")
        if math.isinf(max_silence):
            return None
        if self.cfg.pattern != "delay":
            raise MusgenError("--max-silence needs a prior trained with pattern=delay")
        return round(max_silence * self.code_rate)

    @functools.cached_property
    def silence_code(self) -> int:
        """The first-level code the codec writes for digital silence."""
        from musgen.data.audio_codes import silence_codes

        return int(silence_codes(self.codec)[0])

    def sample_codes(
        self,
        n: int,
        frames: int,
        prime_codes: np.ndarray | None = None,
        seed: int | None = None,
        compile: bool = False,
        max_silence_frames: int | None = None,
        **settings: Any,
    ) -> list[np.ndarray]:
        """Codes (F0 + frames, Q) of ``n`` samples continuing ``prime_codes`` (F0, Q) (none: from BOS),
        in this prior's pattern; ``settings``: temperature, top_k, top_p (None: recommended);
        ``compile``: a static cache and a compiled decoding step; ``max_silence_frames`` (delay
        pattern): no more than that many frames of the first level's silence code in a row."""
        prime = np.zeros((0, self.levels), np.int64) if prime_codes is None else prime_codes
        fixed = {"seed": seed, "compile": compile}
        if self.cfg.pattern == "delay":
            limits = [] if max_silence_frames is None else [(0, self.silence_code, max_silence_frames)]
            return self._sample_delayed(prime, n, frames, settings, fixed, limits)
        return self._sample_flat(prime, n, frames, settings, fixed)

    def _sample_flat(
        self, prime_codes: np.ndarray, n: int, frames: int, settings: dict[str, Any], fixed: dict[str, Any]
    ) -> list[np.ndarray]:
        """Codes (F0 + frames, Q) of each sample, one token per code (the flattening pattern)."""
        from musgen.data.audio_codes import flatten_codes, unflatten_tokens
        from musgen.generate.sampling import SamplingControls, sample_sequences

        ctl = SamplingControls(
            length=frames * self.levels, min_length=0, **fixed, **self.sampling_settings(**settings)
        )
        prime_ids = [self.bos, *flatten_codes(prime_codes, self.codebook_size).tolist()]
        seqs = sample_sequences(
            self.models["model"], prime_ids, n, ctl, eos_id=None, pad_id=self.bos, allowed=self.level_mask()
        )
        return [unflatten_tokens(seq[1:], self.codebook_size, self.levels) for seq in seqs]

    def _sample_delayed(
        self,
        prime_codes: np.ndarray,
        n: int,
        frames: int,
        settings: dict[str, Any],
        fixed: dict[str, Any],
        run_limits: list[tuple[int, int, int]],
    ) -> list[np.ndarray]:
        """Codes (F0 + frames, Q) of each sample, one model step per frame (the delay pattern), each
        level with its own temperature / top-k / top-p (a value for all, or a list of Q)."""
        from musgen.generate.sampling import SamplingControls, sample_delayed

        per_level: list[dict[str, Any]] = [{} for _ in range(self.levels)]
        for key, value in self.sampling_settings(**settings).items():  # given, else recommended
            values = list(value) if isinstance(value, (list, tuple)) else [value] * self.levels
            if len(values) != self.levels:
                raise MusgenError(
                    f"{flag(key)}: give one value or {self.levels} (one per codebook level), got {len(values)}"
                )
            for level, v in enumerate(values):
                per_level[level][key] = v
        controls = [SamplingControls(length=frames, min_length=0, **fixed, **level) for level in per_level]
        codes = sample_delayed(
            self.models["model"],
            torch.from_numpy(prime_codes),
            n,
            frames,
            controls,
            pad_id=self.codebook_size,
            bos_id=self.codebook_size + 1,
            run_limits=run_limits,
        )
        return list(codes.cpu().numpy())

    def continue_(self, prime: str | Path, num_samples: int = 1, **options: Any) -> list[np.ndarray]:
        """``generate`` continuing the audio file ``prime`` (each sample starts with it)."""
        return self.generate(num_samples, prime=prime, **options)

    def write(self, output: np.ndarray, path: Path) -> None:
        from musgen.data.audio_io import write_audio

        write_audio(path, output, self.sample_rate)


def evaluate(
    generator: PriorGenerator, data_dir: Path, split: str, opts: Any
) -> tuple[dict[str, Any], list[Any]]:
    """NLL per code next to a unigram baseline, and the Frechet distance between ``opts.num_samples``
    generated clips and the held-out audio."""
    from musgen.eval.evaluate import audio_reference
    from musgen.eval.frechet import audio_frechet

    report: dict[str, Any] = {
        "likelihood": evaluate_prior(generator, data_dir, split, batch_size=opts.batch_size)
    }
    samples = (
        generator.generate(opts.num_samples, seconds=opts.seconds or 5.0, seed=opts.seed)
        if opts.num_samples
        else []
    )
    if len(samples) >= 2:
        rate = generator.sample_rate
        report["frechet"] = audio_frechet(
            audio_reference(data_dir, split, opts.max_seconds, rate), samples, rate
        )
    return report, samples


def _splice(prompt: np.ndarray, decoded: np.ndarray, fade: int) -> np.ndarray:
    """The prompt's own samples, then the decoded audio after them; the last ``fade`` prompt samples
    blend linearly into the decoding of the same stretch."""
    p = len(prompt)
    if p == 0:
        return decoded
    out = decoded.copy()
    out[:p] = prompt
    fade = min(fade, p)
    if fade:
        w = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out[p - fade : p] = (1 - w) * prompt[p - fade :] + w * decoded[p - fade : p]
    return out


def evaluate_prior(
    generator: Any, data_dir: Path, split: str = "test", batch_size: int = 8
) -> dict[str, Any]:
    """NLL of the split's code tokens (nats and bits per token, bits per second of audio) next to a
    unigram baseline (train code frequencies): the prior Task's own ``eval_step`` over windows of the
    split's codes (encoded once with the checkpoint's codec). ``generator``: a loaded prior."""
    from musgen.data.audio_codes import encoded_split, weights_key
    from musgen.eval.evaluate import task_metrics

    key = weights_key(generator.checkpoint.path / "vqvae")
    tokens, offsets = encoded_split(data_dir, split, generator.codec, key)
    train_tokens, _ = encoded_split(data_dir, "train", generator.codec, key)
    task = generator.evaluation_task(data_dir)
    metrics = task_metrics(task, task.code_windows(tokens, offsets), batch_size)
    # Unigram baseline: add-one smoothed code frequencies of the training split, within each level
    # (the prior predicts a code of a known level: one of K, not one of the Q x K ids).
    freq = np.bincount(train_tokens, minlength=generator.vocab_size).astype(np.float64) + 1
    per_level = freq[: generator.bos].reshape(generator.levels, generator.codebook_size)
    logp = np.log(per_level / per_level.sum(axis=1, keepdims=True)).reshape(-1)
    unigram = float(-logp[tokens].mean()) if len(tokens) else float("nan")
    nll = metrics["nll"]
    tokens_per_second = generator.code_rate * generator.levels
    return {
        "split": split,
        "tokens": int(metrics["tokens"]),
        "nll": nll,
        "bits_per_token": nll / math.log(2),
        "bits_per_second": nll / math.log(2) * tokens_per_second,
        "unigram_nll": unigram,
        "uniform_nll": math.log(generator.codebook_size),
        "context_seconds": generator.cfg.data.seq_len
        / (generator.code_rate if generator.cfg.pattern == "delay" else tokens_per_second),
    }


FAMILY = FamilySpec(
    "prior",
    PriorConfig,
    PriorTask,
    PriorGenerator,
    evaluate,
    data_kind="audio",
    description="an audio language model: a transformer over the codes of a VQ-VAE codec (inside it, in "
    "vqvae/), decoded back to audio",
)
