"""The inference side of every family: ``musgen.load(CKPT)`` returns a Generator.

A Generator is built from a portable checkpoint alone (never from a data set): the resolved config,
the weights and the files saved with them (a tokenizer, a codec). Each family subclasses it with
typed methods of its own (``generate``, ``continue_``, ``interpolate``, ``accompany``,
``reconstruct_to`` ...) and says how its outputs are written; this base class holds what they share:
loading, the recommended sampling settings, refusing options that do not apply, writing files.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from musgen import checkpoint
from musgen.atomic import write_text_atomic
from musgen.config import from_dict
from musgen.device import resolve_device
from musgen.errors import CheckpointError, ConfigError, MusgenError
from musgen.registry import FamilySpec, families_with, get_family

log = logging.getLogger(__name__)

SAMPLING_OFF = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}  # plain sampling from the model
SAMPLES_FILE = "samples.json"  # beside the outputs: one record per run that wrote into the folder
FLAGS = {"condition": "--condition-track"}  # generate() keyword -> command-line flag, where they differ


def flag(option: str) -> str:
    """The command-line spelling of a ``generate`` keyword (``top_k`` -> ``--top-k``)."""
    return FLAGS.get(option, "--" + option.replace("_", "-"))


class Generator:
    """A trained model loaded from a portable checkpoint, ready to use."""

    sample_suffix = ".mid"  # of the files ``write`` writes
    options: tuple[str, ...] = ()  # keyword options ``generate`` takes besides ``num_samples``
    draws_tokens = True  # sampled with temperature / top-k / top-p (recommended by the checkpoint)

    @property
    def controls(self) -> tuple[str, ...]:
        """The options a user sets for this generator (the web page's fields); ``options`` may also
        list ones it only refuses, with a reason."""
        return self.options

    def __init__(self, ckpt: checkpoint.PortableCheckpoint, cfg: Any):
        self.checkpoint = ckpt
        self.cfg = cfg
        self.data_meta: dict[str, Any] = dict(ckpt.meta.get("data", {}))
        self.models: dict[str, nn.Module] = self.build_models()
        for name, module in self.models.items():
            ckpt.load_weights(name, module)
            module.eval()
        self.device = torch.device("cpu")  # weights load on the CPU; ``to`` moves them
        # Where the checkpoint came from: {"path"} or, from the hub, {"hub_id", "revision", "path"}.
        self.source: dict[str, Any] = {"path": str(ckpt.path)}

    def to(self, device: str | torch.device) -> Generator:
        """Moves the models to ``device`` (a torch device; see ``musgen.device.resolve_device`` for
        names like "auto"); what the generator creates while generating follows. Outputs stay CPU
        numpy arrays / symusic Scores. Returns self."""
        self.device = torch.device(device)
        for module in self.models.values():
            module.to(self.device)
        return self

    def build_models(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def family(self) -> str:
        return self.checkpoint.family

    @property
    def spec(self) -> FamilySpec:
        return get_family(self.family)

    @property
    def sample_rate(self) -> int | None:
        """Audio sample rate of an audio checkpoint; None for symbolic ones."""
        return None

    # -- sampling settings ----------------------------------------------------------------------
    @property
    def recommended_sampling(self) -> dict[str, Any]:
        """The sampling settings stored with the checkpoint (``musgen.json`` ``"sampling"``: the
        temperature / top_k / top_p whose samples came closest to held-out music), or {}."""
        return checkpoint.sampling_defaults(self.checkpoint.meta)

    @property
    def per_level_sampling(self) -> bool:
        """Whether each sampling setting may be a list with one value per codebook level (an audio
        prior with the delay pattern draws every level of a frame at once)."""
        return False

    def sampling_settings(
        self,
        *,
        temperature: float | list[float] | None = None,
        top_k: int | list[int] | None = None,
        top_p: float | list[float] | None = None,
    ) -> dict[str, Any]:
        """temperature / top_k / top_p to sample with: each one given here, else the checkpoint's
        recommendation, else off (1.0 / 0 / 1.0). A list (one value per level) only where
        ``per_level_sampling``."""
        given = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        recommended = self.recommended_sampling
        used = {k: v if v is not None else recommended.get(k, SAMPLING_OFF[k]) for k, v in given.items()}
        if not self.per_level_sampling:
            for key, value in used.items():
                if isinstance(value, (list, tuple)):
                    raise MusgenError(
                        f"{flag(key)} takes one value here: one per codebook level needs an audio prior "
                        "trained with pattern=delay"
                    )
        return used

    def option_sampling(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The stored sampling settings beyond temperature / top_k / top_p that this family takes
        (``options``; the audio prior's max_silence): each as in ``given``, else the checkpoint's
        recommendation; unset ones left out."""
        recommended = self.recommended_sampling
        used = {}
        for key in checkpoint.SAMPLING_KEYS.keys() - SAMPLING_OFF.keys():
            value = given.get(key)
            value = recommended.get(key) if value is None else value
            if key in self.options and value is not None:
                used[key] = value
        return used

    # -- generating and writing -----------------------------------------------------------------
    if TYPE_CHECKING:  # each family defines it, with the keyword options it takes (``options``)
        generate: Callable[..., list[Any]]

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuses, with the flag's name, an option this family's ``generate`` does not take."""
        for key, value in options.items():
            if value is not None and key not in self.options:
                raise MusgenError(f"{flag(key)} does not apply to a {self.family} checkpoint")

    def write(self, output: Any, path: Path) -> None:
        """Writes one output of ``generate`` (a symusic Score by default) to ``path``."""
        output.dump_midi(str(path))

    def generate_to(self, out_dir: str | Path, num_samples: int = 1, **options: Any) -> list[Path]:
        """``generate`` with the options given (None: not given), writing ``out_dir/sample_000.mid``
        (``.wav`` for audio) ... and recording the run in ``out_dir/samples.json`` (``write_all``);
        returns the paths. Without a seed, one is drawn and recorded: sampling again with it
        repeats the run. A refused request writes nothing."""
        options = {k: v for k, v in options.items() if v is not None}
        self.check_options(options)
        run = self.run_record("sample", options | {"num_samples": num_samples})
        if "seed" in self.options:
            options["seed"] = run["seed"]
        outputs = self.generate(num_samples, **options)
        return self.write_all(out_dir, "sample", outputs, run=run)

    def run_record(self, command: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """What ``samples.json`` says about a run: the checkpoint, musgen's version, every setting
        (the sampling settings resolved as they are used) and the seed, drawn from the OS's entropy
        when none is given."""
        from musgen import __version__

        settings: dict[str, Any] = {k: _recordable(v) for k, v in options.items() if v is not None}
        if self.draws_tokens:
            settings |= self.sampling_settings(
                temperature=settings.get("temperature"),
                top_k=settings.get("top_k"),
                top_p=settings.get("top_p"),
            )
            settings |= self.option_sampling(settings)
        seed = settings.pop("seed", None)
        return {
            "command": command,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "musgen": __version__,
            "checkpoint": str(self.checkpoint.path),
            "source": self.source,  # a hub id's repository and resolved revision, or the local path
            "device": str(self.device),
            "step": self.checkpoint.meta.get("step"),
            "family": self.family,
            "settings": settings,
            "seed": draw_seed() if seed is None else seed,
            "seed_given": seed is not None,
        }

    def write_all(
        self,
        out_dir: str | Path,
        stem: str,
        outputs: list[Any],
        *,
        run: dict[str, Any] | None = None,
        named: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """Writes ``out_dir/<stem>_000<suffix>`` ... for ``outputs`` and ``<name><suffix>`` for each of
        ``named``, then appends ``run`` (``run_record``) with the files to ``out_dir/samples.json``;
        returns the paths. Nothing is overwritten: numbering continues after the files already
        there (sample_003 after sample_002), and named files already there get a number
        (reconstruction_001.mid)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        runs = read_runs(out)  # a samples.json that is not ours fails before anything is written
        run = dict(run) if run is not None else self.run_record(stem, {})
        first = next_number(out, stem) if outputs else 0
        files: list[dict[str, Any]] = []
        paths = []
        for i, output in enumerate(outputs):
            path = out / f"{stem}_{first + i:03d}{self.sample_suffix}"
            self.write(output, path)
            paths.append(path)
            files.append({"file": path.name, "seed": run["seed"], "index": i})
        for path, output in zip(
            free_names(out, list(named or {}), self.sample_suffix), (named or {}).values(), strict=True
        ):
            self.write(output, path)
            paths.append(path)
            files.append({"file": path.name, "seed": run["seed"]})
        write_runs(out, [*runs, {**run, "files": files}])
        if not run.get("seed_given", True):  # said once the run is written, not before an error
            log.info(
                "seed %d (drawn; recorded in %s: --seed %d repeats this run)",
                run["seed"],
                out / SAMPLES_FILE,
                run["seed"],
            )
        return paths

    def require(self, method: str, purpose: str) -> Callable[..., Any]:
        """This generator's ``method``, or an error naming the families that have it."""
        if not hasattr(self, method):
            owners = " or a ".join(f"{name} checkpoint" for name in families_with(method))
            raise MusgenError(f"{purpose} needs a {owners}, not a {self.family} one")
        return getattr(self, method)

    def evaluation_task(self, data_dir: Path) -> Any:
        """The family's training Task around these (loaded) models, for its ``eval_step`` on the
        held-out data of ``data_dir`` (musgen eval)."""
        return self.spec.task_cls(self.cfg, data_dir, self.data_meta, models=self.models)


def draw_seed() -> int:
    """A fresh seed from the OS's entropy, small enough to type back in as --seed."""
    return secrets.randbelow(2**31)


def next_number(out: Path, stem: str) -> int:
    """The number after the highest ``<stem>_NNN.*`` in ``out`` (0 when there is none)."""
    pattern = re.compile(rf"{re.escape(stem)}_(\d+)\.")
    numbers = [int(m.group(1)) for f in out.iterdir() if (m := pattern.match(f.name))]
    return max(numbers, default=-1) + 1


def free_names(out: Path, names: list[str], suffix: str) -> list[Path]:
    """``out/<name><suffix>`` for each name, or, when any of them is taken, ``<name>_NNN<suffix>``
    with the first number free for all of them (so that the files of one run keep one number)."""
    for number in range(10**6):
        tail = f"_{number:03d}" if number else ""
        paths = [out / f"{name}{tail}{suffix}" for name in names]
        if not any(p.exists() for p in paths):
            return paths
    raise MusgenError(f"{out} holds a million runs already; choose another --out")


def read_runs(out: Path) -> list[dict[str, Any]]:
    """The runs recorded in ``out/samples.json`` (none when it is absent)."""
    path = out / SAMPLES_FILE
    if not path.exists():
        return []
    try:
        runs = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MusgenError(f"{path} is unreadable ({e}); move it away or choose another --out") from None
    if not isinstance(runs, list):
        raise MusgenError(f"{path} is not a musgen record of runs (a list); choose another --out")
    return runs


def write_runs(out: Path, runs: list[dict[str, Any]]) -> None:
    """Replaces ``out/samples.json`` atomically: an interrupted write leaves the previous record."""
    write_text_atomic(out / SAMPLES_FILE, json.dumps(runs, indent=1) + "\n")


def resolve_length(length: int | None, max_new_tokens: int | None) -> int | None:
    """``length``, also spelled ``max_new_tokens`` (as in Hugging Face's ``generate``)."""
    if max_new_tokens is not None and length is not None and max_new_tokens != length:
        raise MusgenError(f"length={length} and max_new_tokens={max_new_tokens} disagree: give one")
    return length if length is not None else max_new_tokens


def checkpoint_config(ckpt: checkpoint.PortableCheckpoint, spec: FamilySpec) -> Any:
    """The resolved config saved in a checkpoint, as the family's dataclass."""
    config = dict(ckpt.config)
    config.pop("family", None)
    try:
        return from_dict(spec.config_cls, config)
    except ConfigError as err:
        raise CheckpointError(f"config of checkpoint {ckpt.path} does not fit this musgen: {err}") from None


def load(path: str | Path, device: str | torch.device = "cpu", *, revision: str | None = None) -> Generator:
    """Loads a portable checkpoint directory, a RUN_DIR's latest checkpoint, or a Hugging Face hub id
    ``org/name`` that is not a local path (at ``revision``), onto ``device``: cpu (default), cuda,
    cuda:N, mps, or auto (cuda, else mps, else cpu)."""
    from musgen.hub import locate

    target = resolve_device(device)  # an unavailable device fails before anything is read
    located = locate(path, revision)
    ckpt = checkpoint.load_portable(located.path)
    spec = get_family(ckpt.family)
    generator = spec.generator_cls(ckpt, checkpoint_config(ckpt, spec))
    generator.source = {**located.source, "path": str(ckpt.path)}
    return generator.to(target)


def _recordable(value: Any) -> Any:
    """A setting as samples.json can hold it: paths as text, arrays (a clip given as events) by shape."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"array {tuple(value.shape)} {value.dtype}"
    return value
