"""Configs: dataclasses + YAML presets + dotted ``--set key=value`` overrides.

Every family's config is a dataclass tree. A preset and the overrides are merged onto the dataclass
defaults; an unknown key anywhere is an error, so a typo never silently trains the wrong model. The
resolved config is saved with every run and every checkpoint and read back from there (never
re-derived from a preset name).

Presets ship inside the package (``musgen/presets/``) and hold only what differs from the defaults.
They are named by their path there without ``.yaml``: ``lstm`` (the family's default preset),
``tiny/lstm``, ``pretrained/transformer``. ``--config`` also takes a YAML file, and the old spelling
``configs/tiny/lstm.yaml`` (the presets' former home in the source tree) still names ``tiny/lstm``.

Validation has one path: a config dataclass with checks has a ``validate()`` method, and
``validate_config`` calls every node's once, when ``resolve`` or ``from_dict`` has built the tree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from musgen.errors import ConfigError

T = TypeVar("T")

PRESET_DIR = Path(__file__).resolve().parent / "presets"
# The experiment trackers Accelerate knows (accelerate.tracking.LOGGER_TYPE_TO_CLASS) for train.log_with;
# whether a tracker's package is installed is checked when training starts.
TRACKERS = ("tensorboard", "wandb", "trackio", "comet_ml", "aim", "mlflow", "clearml", "dvclive", "swanlab")
OLD_PRESET_DIR = "configs"  # where presets lived in the source tree before they moved into the package


@dataclasses.dataclass
class TrainConfig:
    """What the one training loop needs; shared by every family."""

    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # per process, per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # 0 disables clipping
    mixed_precision: str = "no"  # no | bf16 | fp16 (fp16 on GPU only) | auto (bf16 where faster, measured)
    eval_every: int = 250
    eval_batches: int = 50  # 0 = the whole validation split
    save_every: int = 500
    keep_checkpoints: int = 2  # portable checkpoints and resume states kept on disk
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0  # DataLoader workers
    max_minutes: float = 0.0  # wall-clock budget; 0 = none. The run saves and stops when it is spent.
    stop_at: int = 0  # stop (state saved) after this step without changing the schedule; 0 = run to `steps`
    cpu: bool = False  # force CPU even where a GPU is present
    # torch.compile (inductor) each model's forward (and so its backward) in place: the first steps
    # compile (tens of seconds), later ones run fused kernels. Where it pays: docs/measured.md.
    compile: bool = False
    # A checkpoint (or run directory) of the same family whose weights a new run starts from
    # (fine-tuning; new modules, e.g. hint embeddings, keep their initialization). Ignored on resume.
    init_from: str = ""
    # Accelerate experiment trackers that get the metrics too (metrics.jsonl is always written), e.g.
    # [tensorboard]; a single name is accepted. Local ones write under RUN_DIR/tensorboard.
    log_with: list[str] | str = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.log_with, str):  # `--set train.log_with=tensorboard`
            self.log_with = [self.log_with] if self.log_with.strip() else []
        elif self.log_with is None:  # `log_with: null` in a YAML file
            self.log_with = []

    @property
    def trackers(self) -> list[str]:
        """train.log_with as a list (a single name was made a list on construction)."""
        return [self.log_with] if isinstance(self.log_with, str) else list(self.log_with)

    def validate(self) -> None:
        # fp16 needing a GPU depends on the machine, not on the config: the training loop checks it.
        if self.mixed_precision not in ("no", "bf16", "fp16", "auto"):
            raise ConfigError(
                f"train.mixed_precision must be no, bf16, fp16 or auto, not {self.mixed_precision!r}"
            )
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.steps, train.batch_size and train.grad_accum must be at least 1")
        unknown = [name for name in self.trackers if name not in TRACKERS]
        if unknown:
            raise ConfigError(
                f"train.log_with: unknown tracker {unknown[0]!r} (Accelerate's trackers: {', '.join(TRACKERS)})"
            )


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Override(str):
    """The raw text of a ``--set`` value; ``parsed`` is its YAML reading. A str field takes the text
    as typed, so ``--set train.mixed_precision=no`` is "no", not YAML's False."""

    parsed: Any


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Converts a YAML/CLI value to the annotated type, or raises ConfigError."""
    if isinstance(value, _Override):
        value = str(value) if tp is str else value.parsed
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _to_union(value, tp, where)
    if _is_dataclass_type(tp):
        return _build(tp, _mapping(value, where), where)
    if tp in _SCALARS:
        return _SCALARS[tp](value, where)
    if origin in (list, tuple):
        return _to_list(value, tp, where)
    if origin is dict or tp is dict:  # a bare ``dict`` field holds YAML values: --set's parsed ones
        return _to_dict(value, tp, where)
    return value  # Any, or a type without a rule: as read


def _to_union(value: Any, tp: Any, where: str) -> Any:
    """``X | None`` and the like: None as it is, else the first member type the value fits."""
    if value is None:
        return None
    for arg in (a for a in typing.get_args(tp) if a is not type(None)):
        try:
            return _coerce(value, arg, where)
        except ConfigError:
            continue
    raise ConfigError(f"{where}: {value!r} does not fit {tp}")


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _to_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"{where}: expected true/false, got {value!r}")


def _to_int(value: Any, where: str) -> int:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)  # accepts "2000" and "2e3"
        except ValueError:
            number = None
    if isinstance(number, int):
        return number
    if number is not None and float(number).is_integer():
        return int(number)
    raise ConfigError(f"{where}: expected an integer, got {value!r}")


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


def _to_str(value: Any, where: str) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: expected a string, got {value!r}")


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
}


def _to_list(value: Any, tp: Any, where: str) -> list:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    inner = typing.get_args(tp)[0] if typing.get_args(tp) else Any
    return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]


def _to_dict(value: Any, tp: Any, where: str) -> dict:
    key_value = typing.get_args(tp)
    val_tp = key_value[1] if len(key_value) == 2 else Any
    return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in _mapping(value, where).items()}


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Builds dataclass ``cls`` from a (possibly partial) mapping and validates it; unknown keys are
    an error."""
    cfg = _build(cls, data, where)
    validate_config(cfg)
    return cfg


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T is a dataclass type
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (valid keys: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def validate_config(cfg: Any) -> None:
    """Calls ``validate()`` on every dataclass of the tree, children before their parent (a parent's
    checks across its children may then assume each child is sound); raises ConfigError."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate_config(value)
    check = getattr(cfg, "validate", None)
    if callable(check):
        check()


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flat_dict(cfg: Any) -> dict[str, Any]:
    """The config as dotted keys with scalar values (``{"train.lr": 0.001, "train.betas": "[0.9, 0.99]"}``):
    what experiment trackers take as a run's hyperparameters."""
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            elif value is None or isinstance(value, bool | int | float | str):
                flat[prefix + key] = value
            else:
                flat[prefix + key] = str(value)

    walk(to_dict(cfg), "")
    return flat


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of plain dicts (update wins)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.num_layers=3"]`` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set has an empty key in {item!r}")
        value = _Override(raw)
        try:
            value.parsed = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value.parsed = raw
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is set twice, once as a value")
        node[parts[-1]] = value
    return nested


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def available_presets() -> list[str]:
    """Names of the packaged presets (``lstm``, ``tiny/lstm``, ``pretrained/transformer`` ...)."""
    return sorted(p.relative_to(PRESET_DIR).with_suffix("").as_posix() for p in PRESET_DIR.rglob("*.yaml"))


def preset_path(name: str) -> Path:
    """The file of packaged preset ``name`` (``tiny/lstm``; a trailing ``.yaml`` is allowed)."""
    stem = name.strip().removesuffix(".yaml").rstrip("/")
    path = PRESET_DIR / f"{stem}.yaml"
    inside = stem and not Path(stem).is_absolute() and ".." not in Path(stem).parts
    if not inside or not path.is_file():
        raise ConfigError(f"no preset {name!r} (presets: {', '.join(available_presets())})")
    return path


def find_config(config: str | Path) -> Path:
    """What ``--config`` names: a YAML file that exists, a packaged preset, or a preset in its old
    spelling ``configs/NAME.yaml`` (any path through a ``configs`` folder); else a ConfigError that
    lists the presets."""
    path = Path(config)
    if path.is_file():
        return path
    candidates = [str(config)]
    if OLD_PRESET_DIR in path.parts[:-1]:
        parts = path.parts
        last = len(parts) - 1 - parts[::-1].index(OLD_PRESET_DIR)
        candidates.append(Path(*parts[last + 1 :]).as_posix())
    for name in candidates:
        try:
            return preset_path(name)
        except ConfigError:
            continue
    raise ConfigError(
        f"--config {config}: no such file or preset (presets: {', '.join(available_presets())})"
    )


def resolve(cls: type[T], family: str, config: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Dataclass defaults <- preset (``config``: a preset name or a YAML file; default: the family's
    preset) <- ``--set`` overrides; validated once."""
    source = find_config(config) if config is not None else preset_path(family)
    data = read_yaml(source)
    file_family = data.pop("family", family)
    if file_family != family:
        raise ConfigError(f"config {source} is for family {file_family!r}, not {family!r}")
    data = merge(data, parse_overrides(overrides))
    data.pop("family", None)
    return from_dict(cls, data)


def dump_yaml(cfg: Any, family: str) -> str:
    return yaml.safe_dump({"family": family, **to_dict(cfg)}, sort_keys=False)
