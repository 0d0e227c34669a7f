"""The Python API: ``musgen.load(CKPT).generate(...)``, ``musgen.train(...)``, ``musgen.data.build(...)``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musgen import checkpoint
from musgen.config import from_dict, resolve
from musgen.errors import CheckpointError, ConfigError, MusgenError
from musgen.registry import get_family

SAMPLING_OFF = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}  # plain sampling from the model


class MusicGenerator:
    """A trained model loaded from a portable checkpoint, ready to sample."""

    def __init__(self, ckpt: checkpoint.PortableCheckpoint, task: Any):
        self.checkpoint = ckpt
        self.task = task

    @property
    def family(self) -> str:
        return self.checkpoint.family

    @property
    def recommended_sampling(self) -> dict[str, Any]:
        """The sampling settings stored with the checkpoint (``musgen.json`` ``"sampling"``: the
        temperature / top_k / top_p whose samples came closest to held-out music), or {}."""
        return checkpoint.sampling_defaults(self.checkpoint.meta)

    def sampling_settings(
        self, *, temperature: float | None = None, top_k: int | None = None, top_p: float | None = None
    ) -> dict[str, Any]:
        """temperature / top_k / top_p to sample with: each one given here, else the checkpoint's
        recommendation, else off (1.0 / 0 / 1.0)."""
        given = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        recommended = self.recommended_sampling
        return {k: v if v is not None else recommended.get(k, SAMPLING_OFF[k]) for k, v in given.items()}

    def generate(
        self,
        num_samples: int = 1,
        *,
        prime: str | Path | None = None,
        length: int | None = None,
        min_length: int | None = None,
        bars: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        condition: str | Path | None = None,
        track: str | None = None,
        binarize: str | None = None,
        threshold: float | None = None,
        seconds: float | None = None,
    ) -> list[Any]:
        """Returns ``num_samples`` symusic Scores; with ``prime`` (a MIDI file) each starts with it.
        ``length`` (new tokens, default 512) and ``bars`` apply to language models; a latent model
        (musicvae) decodes windows of its own length from z ~ N(0, I). MuseGAN writes ``bars`` bars
        (default one phrase) from noise, or accompanies track ``track`` of MIDI file ``condition``;
        ``binarize`` (threshold | bernoulli) and ``threshold`` turn its probabilities into notes.
        The audio prior returns waveforms (float32 arrays at ``sample_rate``) of ``seconds`` new audio
        (default 5; ``length`` counts code frames), continuing ``prime`` (an audio file) when given.
        ``temperature``, ``top_k`` and ``top_p`` left at None take the checkpoint's recommended
        settings (``sampling_settings``)."""
        extras = {
            k: v
            for k, v in (
                ("condition", condition),
                ("track", track),
                ("binarize", binarize),
                ("threshold", threshold),
                ("seconds", seconds),
            )
            if v is not None
        }
        unsupported = [k for k in extras if k not in self.task.sample_options]
        if unsupported:
            flag = "--" + {"condition": "condition-track"}.get(unsupported[0], unsupported[0])
            owner = "the audio prior" if unsupported[0] == "seconds" else "musegan"
            raise MusgenError(f"{flag} does not apply to a {self.family} checkpoint (it is for {owner})")
        controls = self.sampling_settings(temperature=temperature, top_k=top_k, top_p=top_p)
        seqs = self.task.sample(
            num_samples,
            prime=prime,
            length=length,
            min_length=min_length,
            bars=bars,
            seed=seed,
            **controls,
            **extras,
        )
        return [self.task.sample_output(ids) for ids in seqs]

    @property
    def sample_rate(self) -> int | None:
        """Audio sample rate of an audio checkpoint (vqvae, prior); None for symbolic ones."""
        return getattr(self.task, "sample_rate", None)

    def generate_to(self, out_dir: str | Path, num_samples: int = 1, **kwargs: Any) -> list[Path]:
        """Like ``generate`` and writes ``out_dir/sample_000.mid`` (``.wav`` for audio) ...; returns the paths."""
        outputs = self.generate(num_samples, **kwargs)  # a refused request writes nothing
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, output in enumerate(outputs):
            path = out / f"sample_{i:03d}{self.task.sample_suffix}"
            self.task.write_sample(output, path)
            paths.append(path)
        return paths

    # -- latent models (musicvae) -----------------------------------------------------------------
    def _latent_task(self) -> Any:
        if not hasattr(self.task, "encode"):
            raise MusgenError(
                f"a {self.family} checkpoint has no latent space: this needs a musicvae checkpoint"
            )
        return self.task

    def clip(self, midi: str | Path, bar_offset: int = 0) -> np.ndarray:
        """The event window the model encodes for a MIDI file: its melody line (the highest note at
        each moment) from bar ``bar_offset``, as long as the model's windows."""
        from musgen.data.melody import clip_from_midi

        return clip_from_midi(midi, self._latent_task().cfg.data, bar_offset=bar_offset)

    def encode(self, clips: Sequence[str | Path | np.ndarray], bar_offset: int = 0) -> torch.Tensor:
        """Latent means (N, Z) of MIDI files (or event windows)."""
        task = self._latent_task()
        windows = [c if isinstance(c, np.ndarray) else self.clip(c, bar_offset) for c in clips]
        mu, _ = task.encode(np.stack(windows))
        return mu

    def decode_events(
        self,
        z: torch.Tensor,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> np.ndarray:
        """z (N, Z) -> event windows (N, T); greedy when ``temperature`` is 0."""
        return self._latent_task().decode(z, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    def decode(self, z: torch.Tensor, **controls: Any) -> list[Any]:
        """z (N, Z) -> symusic Scores (see ``decode_events`` for the controls)."""
        return [self.task.ids_to_score(events) for events in self.decode_events(z, **controls)]

    def interpolate(
        self,
        a: str | Path | np.ndarray,
        b: str | Path | np.ndarray,
        steps: int = 8,
        *,
        bar_offset: int = 0,
        **controls: Any,
    ) -> np.ndarray:
        """Event windows (steps, T) decoded along the slerp between the latent means of clips a and b,
        both endpoints included."""
        from musgen.generate.interpolation import interpolation_path

        mu = self.encode([a, b], bar_offset)
        return self.decode_events(interpolation_path(mu[0], mu[1], steps), **controls)

    def interpolate_to(
        self, out_dir: str | Path, a: str | Path, b: str | Path, steps: int = 8, **kwargs: Any
    ) -> list[Path]:
        """Writes ``interp_000.mid`` ... (``steps`` files) and ``interpolation.mid`` (all steps in a row)."""
        from musgen.data.melody import join_windows

        windows = self.interpolate(a, b, steps, **kwargs)
        paths = _write_scores(out_dir, "interp", [self.task.ids_to_score(w) for w in windows])
        joined = Path(out_dir) / "interpolation.mid"
        self.task.ids_to_score(join_windows(list(windows))).dump_midi(str(joined))
        return paths + [joined]

    def reconstruct_audio(self, wave: np.ndarray) -> np.ndarray:
        """A vqvae's round trip of a mono waveform at its sample rate: encode, decode, same length."""
        if self.family != "vqvae":
            raise MusgenError(f"audio reconstruction needs a vqvae checkpoint, not {self.family}")
        return self.task.decode_codes(self.task.encode_audio(wave))[: len(wave)]

    def reconstruct_to(
        self, out_dir: str | Path, midi: str | Path, *, bar_offset: int = 0, **controls: Any
    ) -> list[Path]:
        """Writes ``original.mid`` (the clip the model sees) and ``reconstruction.mid`` (encode, decode);
        for a vqvae and an audio file, ``original.wav`` (at the codec's rate) and ``reconstruction.wav``."""
        if self.family == "vqvae":
            from musgen.data.audio_io import AudioReadError, read_audio, write_audio

            try:
                wave = read_audio(Path(midi), self.task.sample_rate)
            except AudioReadError as err:
                raise err.about(str(midi)) from None
            out = Path(out_dir)
            paths = [out / "original.wav", out / "reconstruction.wav"]
            for path, audio in zip(paths, (wave, self.reconstruct_audio(wave)), strict=True):
                write_audio(path, audio, self.task.sample_rate)
            return paths
        window = self.clip(midi, bar_offset)
        recon = self.decode_events(self.encode([window]), **controls)[0]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "original.mid", out / "reconstruction.mid"]
        for path, events in zip(paths, (window, recon), strict=True):
            self.task.ids_to_score(events).dump_midi(str(path))
        return paths


def _write_scores(out_dir: str | Path, stem: str, scores: Iterable[Any]) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, score in enumerate(scores):
        path = out / f"{stem}_{i:03d}.mid"
        score.dump_midi(str(path))
        paths.append(path)
    return paths


def load(path: str | Path) -> MusicGenerator:
    """Loads a portable checkpoint directory (or a RUN_DIR's latest checkpoint) on the CPU."""
    ckpt = checkpoint.load_portable(Path(path))
    spec = get_family(ckpt.family)
    config = dict(ckpt.config)
    config.pop("family", None)
    try:
        cfg = from_dict(spec.config_cls, config)
    except ConfigError as err:
        raise CheckpointError(f"config of checkpoint {ckpt.path} does not fit this musgen: {err}") from None
    task = spec.task_cls(cfg, None, ckpt.meta.get("data", {}))
    for name, module in task.models.items():
        ckpt.load_weights(name, module)
        module.eval()
    task.on_load(ckpt.path)
    return MusicGenerator(ckpt, task)


def train(
    family: str,
    data: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """Trains ``family`` on a built data set; returns ``musgen.training.loop.FitResult``.

    With ``resume`` the run's own saved config.yaml is the base (``overrides`` still apply on top,
    e.g. ``train.steps=...`` to train longer)."""
    from musgen.training.loop import fit

    spec = get_family(family)
    run_config = Path(out) / "config.yaml"
    if resume and config is None and run_config.exists():
        config = run_config
    cfg = resolve(spec.config_cls, family, Path(config) if config else None, overrides)
    return fit(family, cfg, Path(data), Path(out), resume=resume, progress=progress)
