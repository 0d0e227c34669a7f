"""The audio prior (Jukebox's top-level prior at laptop scale): the Music Transformer (relative
attention, KV-cached sampling) over the codes of a frozen VQ-VAE.

``musgen train prior --set vqvae=RUN_DIR`` encodes the data set's audio once with that codec (cached
code files, musgen.data.audio_codes), then trains next-token prediction on windows of code tokens.
The codec travels inside every prior checkpoint (``vqvae/``), so sampling needs only the prior;
on load the codebook sizes of the two are checked against each other. Sampling continues BOS (or an
encoded audio prompt), decodes the codes to a waveform and, with a prompt, starts with the prompt's
own samples (a short crossfade joins them to the decoded continuation).
"""

from __future__ import annotations

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
from musgen.errors import MusgenError
from musgen.models.lm import LanguageModelTask
from musgen.models.transformer import MusicTransformer, TransformerModelConfig

CROSSFADE_SECONDS = 0.01


@dataclass
class PriorDataConfig:
    seq_len: int = 512  # code tokens per training window (frames * codebooks)


@dataclass
class PriorConfig:
    vqvae: str = ""  # the codec: a vqvae RUN_DIR or checkpoint directory
    model: TransformerModelConfig = field(default_factory=TransformerModelConfig)
    data: PriorDataConfig = field(default_factory=PriorDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _load_codec(path: Path) -> Any:
    from musgen.api import load

    generator = load(path)
    if generator.family != "vqvae":
        raise MusgenError(f"vqvae={path} is a {generator.family} checkpoint, not a vqvae one")
    return generator


class PriorTask(LanguageModelTask):
    family = "prior"
    sample_options = ("seconds",)
    sample_suffix = ".wav"

    def __init__(
        self, cfg: PriorConfig, data_dir: Path | None = None, data_meta: Mapping[str, Any] | None = None
    ):
        meta = dict(data_meta or {})
        self.codec: Any = None  # VQVAETask, frozen
        self.codec_dir: Path | None = None
        if data_dir is not None:  # training: the codec comes from the config
            if not cfg.vqvae:
                raise MusgenError("the prior needs its codec: --set vqvae=PATH_TO_VQVAE_RUN_OR_CHECKPOINT")
            if meta.get("kind") != "audio":
                raise MusgenError(
                    f"{data_dir} is not an audio data set: the prior trains on the codes of audio"
                )
            self.codec_dir = checkpoint.resolve_checkpoint(Path(cfg.vqvae))
            self.codec = _load_codec(self.codec_dir).task
            if int(meta["sample_rate"]) != self.codec.sample_rate:
                raise MusgenError(
                    f"the data set is at {meta['sample_rate']} Hz but the codec at "
                    f"{self.codec.sample_rate} Hz: build the data at the codec's rate"
                )
            q = self.codec.cfg.model.quantizer
            meta.update(
                codebook_size=q.codes,
                levels=q.levels,
                vocab_size=q.codes * q.levels + 1,
                hop=self.codec.cfg.model.hop,
            )
        elif "codebook_size" not in meta:
            raise MusgenError("the prior checkpoint does not record its codebook size")
        self.codebook_size, self.levels = int(meta["codebook_size"]), int(meta["levels"])
        self.sample_rate, self.hop = int(meta["sample_rate"]), int(meta["hop"])
        self.bos = self.codebook_size * self.levels
        super().__init__(cfg, data_dir, meta)

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": MusicTransformer(self.vocab_size, self.cfg.model, context=self.cfg.data.seq_len)}

    @property
    def code_rate(self) -> float:
        return self.sample_rate / self.hop

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from musgen.data.audio_codes import CodeWindows, encoded_split, weights_key

        assert self.data_dir is not None and self.codec_dir is not None
        key = weights_key(self.codec_dir)
        seq_len = self.cfg.data.seq_len
        train = CodeWindows(
            *encoded_split(self.data_dir, "train", self.codec, key),
            seq_len,
            self.bos,
            jitter=True,
            seed=self.cfg.train.seed,
        )
        valid = CodeWindows(*encoded_split(self.data_dir, "valid", self.codec, key), seq_len, self.bos)
        return train, valid

    def checkpoint_extra_files(self) -> dict[str, Path]:
        assert self.codec_dir is not None
        return {
            f"vqvae/{name}": self.codec_dir / name
            for name in (checkpoint.META_FILE, checkpoint.CONFIG_FILE, "model.safetensors")
        }

    def on_load(self, checkpoint_dir: Path) -> None:
        codec_dir = checkpoint_dir / "vqvae"
        if not (codec_dir / checkpoint.META_FILE).is_file():
            raise MusgenError(f"prior checkpoint {checkpoint_dir} has no vqvae/ codec inside")
        self.codec = _load_codec(codec_dir).task
        q = self.codec.cfg.model.quantizer
        if (q.codes, q.levels) != (self.codebook_size, self.levels) or self.codec.cfg.model.hop != self.hop:
            raise MusgenError(
                f"the codec in {codec_dir} has {q.levels} x {q.codes} codes at hop {self.codec.cfg.model.hop}, "
                f"but the prior was trained on {self.levels} x {self.codebook_size} at hop {self.hop}"
            )

    # -- sampling -------------------------------------------------------------------------------
    def _level_mask(self) -> torch.Tensor:
        """(Q, V) bool: the ids allowed at each level of a frame (never BOS)."""
        mask = torch.zeros(self.levels, self.vocab_size, dtype=torch.bool)
        for level in range(self.levels):
            mask[level, level * self.codebook_size : (level + 1) * self.codebook_size] = True
        return mask

    def _prompt(self, prime: Any) -> tuple[np.ndarray, list[int]]:
        """The prompt's samples (whole code frames only) and its tokens (BOS first)."""
        from musgen.data.audio_codes import flatten_codes
        from musgen.data.audio_io import AudioReadError, read_audio

        if prime is None:
            return np.zeros(0, np.float32), [self.bos]
        try:
            wave = read_audio(Path(prime), self.sample_rate)
        except AudioReadError as err:
            raise err.about(f"--prime {prime}") from None
        frames = len(wave) // self.hop
        if frames < 1:
            raise MusgenError(f"--prime {prime} is shorter than one code frame ({self.hop} samples)")
        wave = wave[: frames * self.hop]  # the model sees the last seq_len tokens of a longer prompt
        codes = self.codec.encode_audio(wave).numpy()
        return wave, [self.bos, *flatten_codes(codes, self.codebook_size).tolist()]

    def sample(self, n: int, prime: Any = None, **controls: Any) -> list[np.ndarray]:
        """``n`` waveforms (float32, the codec's rate) of ``seconds`` (default 5) new audio each (or
        ``length`` new code frames), starting with the prompt when ``prime`` (an audio file) is given."""
        from musgen.data.audio_codes import unflatten_tokens
        from musgen.generate.sampling import SamplingControls, sample_sequences

        if controls.get("bars") is not None:
            raise MusgenError("--bars does not apply to audio: use --seconds")
        seconds, frames = controls.pop("seconds", None), controls.pop("length", None)
        controls.pop("bars", None)
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise MusgenError(f"--seconds must be a finite number > 0, got {seconds}")
        if frames is None:
            frames = math.ceil((5.0 if seconds is None else seconds) * self.code_rate)
        controls.update(length=frames * self.levels, min_length=0)
        ctl = SamplingControls(**controls)
        prompt, prime_ids = self._prompt(prime)
        seqs = sample_sequences(
            self.models["model"], prime_ids, n, ctl, eos_id=None, pad_id=self.bos, allowed=self._level_mask()
        )
        waves = []
        for seq in seqs:
            codes = unflatten_tokens(seq[1:], self.codebook_size, self.levels)
            waves.append(
                _splice(
                    prompt,
                    self.codec.decode_codes(torch.from_numpy(codes)),
                    round(CROSSFADE_SECONDS * self.sample_rate),
                )
            )
        return waves

    def sample_output(self, sample: np.ndarray) -> np.ndarray:
        return sample

    def write_sample(self, output: np.ndarray, path: Path) -> None:
        from musgen.data.audio_io import write_audio

        write_audio(path, output, self.sample_rate)


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
