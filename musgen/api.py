"""The Python API: ``musgen.load(CKPT).generate(...)``, ``musgen.train(...)``, ``musgen.data.build(...)``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from musgen import checkpoint
from musgen.config import from_dict, resolve
from musgen.errors import CheckpointError, ConfigError
from musgen.registry import get_family


class MusicGenerator:
    """A trained model loaded from a portable checkpoint, ready to sample."""

    def __init__(self, ckpt: checkpoint.PortableCheckpoint, task: Any):
        self.checkpoint = ckpt
        self.task = task

    @property
    def family(self) -> str:
        return self.checkpoint.family

    def generate(
        self,
        num_samples: int = 1,
        *,
        prime: str | Path | None = None,
        length: int = 512,
        min_length: int | None = None,
        bars: int | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[Any]:
        """Returns ``num_samples`` symusic Scores; with ``prime`` (a MIDI file) each starts with it."""
        seqs = self.task.sample(num_samples, prime=prime, length=length, min_length=min_length, bars=bars, temperature=temperature,
                                top_k=top_k, top_p=top_p, seed=seed)
        return [self.task.ids_to_score(ids) for ids in seqs]

    def generate_to(self, out_dir: str | Path, num_samples: int = 1, **kwargs: Any) -> list[Path]:
        """Like ``generate`` and writes ``out_dir/sample_000.mid`` ...; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, score in enumerate(self.generate(num_samples, **kwargs)):
            path = out / f"sample_{i:03d}.mid"
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
    """Trains ``family`` on a built data set; returns ``musgen.train.loop.FitResult``.

    With ``resume`` the run's own saved config.yaml is the base (``overrides`` still apply on top,
    e.g. ``train.steps=...`` to train longer)."""
    from musgen.train.loop import fit

    spec = get_family(family)
    run_config = Path(out) / "config.yaml"
    if resume and config is None and run_config.exists():
        config = run_config
    cfg = resolve(spec.config_cls, family, Path(config) if config else None, overrides)
    return fit(family, cfg, Path(data), Path(out), resume=resume, progress=progress)
