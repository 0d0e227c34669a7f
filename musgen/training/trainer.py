"""The one Trainer (HuggingFace Accelerate) for every family, in named steps.

``Trainer.fit`` runs: ``set_up`` (accelerator, ``recover``, task, data loaders, prepared models and
optimizers), ``restore`` (the last complete state), then ``train_step`` until the schedule ends, with
``evaluate`` and ``save`` at their cadence. The files it writes are described in
``musgen.training.run_files``.

Exact resume: the data order comes from a sampler seeded by (seed, epoch), augmentation from
(seed, epoch, index), the LR from the step counter, dropout from the RNG states that save_state
keeps; so N steps straight equal N/2 + resume + N/2.

Crash safety: a save writes the portable checkpoint (atomically) first, then the state into
``state/.tmp-step_N``, then renames it to ``state/step_N`` with loop.json inside; only then are old
steps pruned (renamed away before deletion). A process killed at any moment therefore leaves every
``state/step_*`` complete, each with its portable checkpoint, and ``--resume`` first cleans up what
a killed save left (``checkpoint.recover``). A save that fails (disk full, read-only directory)
stops the run with one line; the previous state and checkpoint are untouched.

Several processes (``accelerate launch --num_processes N``): the batches of each step are dealt
out to the processes (global batch = N x train.batch_size), metrics are averaged over the
processes, validation is split between them without duplicates, each process draws its own random
numbers (dropout, GAN noise) after the identical initialisation, and only the main process writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.tracking import get_available_trackers
from accelerate.utils import (
    DistributedType,
    ProjectConfiguration,
    gather_object,
    get_int_from_env,
    send_to_device,
    set_seed,
)
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm.auto import tqdm

from musgen import checkpoint
from musgen.config import dump_yaml, flat_dict
from musgen.errors import MusgenError, first_line
from musgen.registry import get_family
from musgen.training.precision import resolve_mixed_precision
from musgen.training.run_files import (
    LOOP_FILE,
    TRACKER_DIR,
    MetricsLog,
    checkpoint_complete,
    failure_reason,
    latest_state,
    state_complete,
    step_name,
    trim_metrics,
    write_text_atomic,
)
from musgen.training.safe_state import load_state
from musgen.training.schedules import warmup_cosine
from musgen.training.task import StepContext, Task, metrics_from_sums, sum_eval_steps

log = logging.getLogger(__name__)

# Accelerate setups that shard the model over the processes (not supported, see make_accelerator).
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
# Environment variables that give the number of processes started by torchrun / accelerate launch / mpirun.
WORLD_SIZE_VARS = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]

Batch = dict[str, torch.Tensor]


class EpochShuffleSampler(Sampler[int]):
    """A permutation of range(n) that depends only on (seed, epoch): every process and every
    resumed run sees the same order."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


@dataclass
class FitResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    main: bool = True  # False in the other processes of a multi-process run (they write nothing)


@dataclass
class ValidationSet:
    """This process's share of the validation items and how many forward passes every process runs."""

    loader: DataLoader
    sharded: bool  # the items are split between the processes (else each evaluates them all)
    batches: int  # forward passes per process, the same on all


def weights_digest(models: Mapping[str, torch.nn.Module]) -> str:
    """sha256 over the parameters and buffers of ``models`` (not BatchNorm running statistics:
    under DDP each process keeps its own until the next forward re-broadcasts the main one's)."""
    digest = hashlib.sha256()
    for name, model in models.items():
        for mod_name, module in model.named_modules():
            tensors = list(module.named_parameters(recurse=False))
            if not isinstance(module, torch.nn.modules.batchnorm._NormBase):
                tensors += list(module.named_buffers(recurse=False))
            for t_name, tensor in tensors:
                digest.update(f"{name}.{mod_name}.{t_name}".encode())
                digest.update(
                    tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
                )
    return digest.hexdigest()


def size(dataset: Dataset) -> int:
    """Items in a map-style dataset (every Task's datasets have a length)."""
    return len(cast(Sized, dataset))


def check_machine(train_cfg: Any) -> None:
    """What this machine cannot run (the values themselves were validated with the config)."""
    if train_cfg.mixed_precision == "fp16" and (train_cfg.cpu or not torch.cuda.is_available()):
        raise MusgenError("train.mixed_precision=fp16 needs a GPU; use bf16 on the CPU")
    check_trackers(train_cfg.trackers)


def check_trackers(names: list[str]) -> None:
    """Every tracker of train.log_with installed (Accelerate would silently drop a missing one)."""
    available = {getattr(t, "value", str(t)) for t in get_available_trackers()}
    missing = [name for name in names if name not in available]
    if missing:
        package = "musgen[tensorboard]" if missing[0] == "tensorboard" else missing[0].replace("_", "-")
        raise MusgenError(
            f"train.log_with: the {missing[0]} tracker is not installed (pip install '{package}')"
        )


def make_accelerator(train_cfg: Any, run_dir: Path) -> Accelerator:
    """The Accelerator for this process, with the train.log_with trackers (not started yet); refuses a
    launch Accelerate did not pick up and sharded setups."""
    launched = get_int_from_env(WORLD_SIZE_VARS, 1)
    # Without a GPU, Accelerate sets up several processes (gloo) only when asked for the CPU; else each
    # process would silently train alone, all of them writing the same RUN_DIR.
    cpu = train_cfg.cpu or (
        launched > 1
        and not torch.cuda.is_available()
        and not (hasattr(torch, "xpu") and torch.xpu.is_available())
    )
    on_accelerator = not cpu and (
        torch.cuda.is_available()
        or (hasattr(torch, "xpu") and torch.xpu.is_available())
        or torch.backends.mps.is_available()
    )
    # Accelerate keeps one AcceleratorState per process and refuses a second Accelerator with another
    # mixed precision; a process that trains again (the Python API, a sweep, the tests) starts afresh
    # (the distributed setup, PartialState, is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(train_cfg.mixed_precision, on_cpu=not on_accelerator),
        cpu=cpu,
        log_with=train_cfg.trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / TRACKER_DIR)),
    )
    if launched > 1 and accelerator.num_processes != launched:
        raise MusgenError(
            f"{launched} processes were launched but Accelerate set up {accelerator.num_processes}; "
            "check the launcher's settings (accelerate env, accelerate config)"
        )
    if accelerator.distributed_type in SHARDED:
        raise MusgenError(
            f"accelerate's {accelerator.distributed_type.value} is not supported: the portable checkpoint is "
            "written from the main process's whole model, which a sharded model does not have there; "
            "use DDP (accelerate launch --multi_gpu, see configs/accelerate/)"
        )
    return accelerator


def read_data_meta(data_dir: Path) -> dict[str, Any]:
    """The manifest fields a portable checkpoint records about its data set."""
    manifest = data_dir / "manifest.json"
    if not manifest.is_file():
        raise MusgenError(
            f"{data_dir} is not a musgen data set (no manifest.json); run `musgen data build` first"
        )
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as err:
        raise MusgenError(f"{manifest} is not valid JSON: {err}") from None
    keep = (
        "format_version",
        "kind",
        "tokenizer",
        "vocab_size",
        "sample_rate",
        "source",
        "fingerprint",
        "tracks",
    )
    return {k: meta[k] for k in keep if k in meta} if isinstance(meta, Mapping) else {}


def train_loader(train_ds: Dataset, train_cfg: Any, world: int) -> tuple[DataLoader, EpochShuffleSampler]:
    """The (unprepared) training loader and its (seed, epoch) sampler."""
    sampler = EpochShuffleSampler(size(train_ds), train_cfg.seed)
    # Each DataLoader iterator draws a worker base seed; from its own generator, not the global RNG,
    # or a resumed run (one iterator more) would see different dropout masks than a straight one.
    loader = DataLoader(
        train_ds,
        batch_size=train_cfg.batch_size,
        sampler=sampler,
        drop_last=size(train_ds) >= train_cfg.batch_size * world,
        num_workers=train_cfg.num_workers,
        generator=torch.Generator().manual_seed(train_cfg.seed),
    )
    return loader, sampler


def validation_set(valid_ds: Dataset | None, train_cfg: Any, world: int, rank: int) -> ValidationSet | None:
    """The first eval_batches global batches, dealt out to the processes without the duplicates that
    pad a prepared loader's last batch: the sums reduced over the processes are those of one process
    evaluating the same items. (Fewer items than processes: each evaluates all.) None: no validation."""
    if valid_ds is None or size(valid_ds) == 0:
        return None
    n_eval = size(valid_ds)
    if train_cfg.eval_batches:
        n_eval = min(n_eval, train_cfg.eval_batches * train_cfg.batch_size * world)
    sharded = world > 1 and n_eval >= world
    shard = range(rank, n_eval, world) if sharded else range(n_eval)
    loader = DataLoader(
        Subset(valid_ds, shard),
        batch_size=train_cfg.batch_size,
        shuffle=False,
        num_workers=train_cfg.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    # Forward passes per process, the same on all (the first process has the most items): a
    # wrapped model (DDP buffers, FSDP shards) may talk to the others in every forward.
    batches = math.ceil(len(range(0, n_eval, world if sharded else 1)) / train_cfg.batch_size)
    return ValidationSet(loader, sharded, batches)


def _on_device(loader: DataLoader, device: torch.device, last: list[Batch]) -> Iterator[Batch]:
    """The batches of ``loader`` moved to ``device``; ``last`` holds the latest one."""
    for batch in loader:
        last[:] = [send_to_device(batch, device)]
        yield last[0]


class Trainer:
    """Trains one family on one data set into one RUN_DIR, on every process of the launch.

    It owns what the Task does not (see ``musgen.training.task``): devices and precision, seeds and
    the data order, the LR schedule, logging, the evaluation and save cadence, the run directory and
    resume. The loop position (step, epoch, batch_in_epoch) is the whole of its resumable state next
    to Accelerate's; it goes into every state's loop.json. Each step is a method; ``fit`` runs them.
    """

    accelerator: Accelerator
    task: Task
    optimizers: dict[str, torch.optim.Optimizer]
    base_lrs: dict[str, list[float]]
    train_ds: Dataset
    valid_ds: Dataset | None
    train_dl: DataLoader
    sampler: EpochShuffleSampler
    validation: ValidationSet | None
    state_dir: Path | None  # the complete state to resume from
    config_yaml: str
    metrics_log: MetricsLog
    pbar: tqdm

    def __init__(
        self,
        family: str,
        cfg: Any,
        data_dir: Path,
        run_dir: Path,
        *,
        resume: bool = False,
        progress: bool = True,
    ):
        self.family = family
        self.task_cls: type[Task] = get_family(family).task_cls
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = progress
        # The loop position, saved in loop.json.
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.elapsed_before = 0.0  # training seconds of the runs this one resumes
        self.last_valid: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.last_ckpt: Path | None = None
        self.stopping = False  # a time budget spent or a planned stop reached
        self.lr_factor = 1.0
        self.start = self.window_start = time.time()
        self.window_tokens = 0  # tokens trained since the last log line, for tokens/s

    # -- the run ----------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Set-up (with recover), restore, the run directory opened, then train steps with
        evaluation and saves at their cadence; the run's result."""
        self.set_up()
        self.restore()
        self.open_run_dir()
        self.start_trackers()
        self.ensure_resumed_checkpoint()
        data = self.start_training()
        try:
            while self.step < self.train_cfg.steps and not self.stopping:
                metrics = self.train_step(data)
                self.after_step(metrics)
        finally:
            self.pbar.close()
        del data  # the loader's iterator, before the process group goes
        self.close()
        return FitResult(
            run_dir=self.run_dir,
            step=self.step,
            checkpoint=self.last_ckpt,
            metrics=self.last_valid,
            history=self.history,
            main=self.main,
        )

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    # -- set-up -----------------------------------------------------------------------------------
    def set_up(self) -> None:
        """Accelerator, recovery of the run directory, Task, data loaders, prepared models and
        optimizers. The order matters for exact resume and identical processes: the common seed is
        set before the Task builds its models (same initial weights everywhere) and the per-process
        seed only after ``prepare``."""
        check_machine(self.train_cfg)
        self.accelerator = make_accelerator(self.train_cfg, self.run_dir)
        self.state_dir = self.recover()
        # Same seed on every process: identical initial weights and data order (the sampler is sharded).
        set_seed(self.train_cfg.seed)
        self.build_task()
        if self.train_cfg.init_from and self.state_dir is None:
            self.initialize_from(Path(self.train_cfg.init_from))
        self.train_dl, self.sampler = train_loader(self.train_ds, self.train_cfg, self.world)
        self.validation = validation_set(
            self.valid_ds, self.train_cfg, self.world, self.accelerator.process_index
        )
        self.prepare()
        if self.world > 1:
            # Identical initial weights came from the common seed; from here each process draws its own
            # dropout masks, noise and choices (else its shard of the batch would get the same ones).
            set_seed(self.train_cfg.seed, device_specific=True)
        self.base_lrs = {n: [g["lr"] for g in opt.param_groups] for n, opt in self.optimizers.items()}

    def build_task(self) -> None:
        """The family's Task (its models) and its train / valid datasets."""
        self.task = self.task_cls(self.cfg, self.data_dir, read_data_meta(self.data_dir))
        with self.accelerator.main_process_first():  # derived views (melodies, rolls, codes) are cached once
            self.train_ds, self.valid_ds = self.task.datasets()
        if size(self.train_ds) == 0:
            raise MusgenError(f"the training split of {self.data_dir} is empty")

    def initialize_from(self, path: Path) -> None:
        """train.init_from: the Task's models start from a checkpoint's weights (same family; weights
        the checkpoint lacks or holds in another shape keep their initialization, weights the model
        lacks are skipped, a model it has no file for starts fresh: all logged)."""
        ckpt = checkpoint.load_portable(path)
        if ckpt.family != self.family:
            raise MusgenError(f"train.init_from {path} is a {ckpt.family} checkpoint, not {self.family}")
        for name, model in self.task.models.items():
            if not (ckpt.path / f"{name}.safetensors").exists():  # a model added for fine-tuning
                if self.main:  # (a codec's discriminator, say): it keeps its initialization
                    log.info("%s is new: %s has no weights for it", name, ckpt.path)
                continue
            missing = ckpt.load_weights(
                name, model, allow_missing=True, skip_unexpected=True, skip_reshaped=True
            )
            if self.main:
                log.info("%s starts from %s (new: %s)", name, ckpt.path, ", ".join(missing) or "none")

    def prepare(self) -> None:
        """Wraps the Task's models, its optimizers and the training loader for the devices/processes."""
        models, optimizers = self.task.models, self.task.optimizers()
        if self.train_cfg.compile:
            # in place: the module keeps its state_dict keys and methods; only __call__ is compiled
            for model in models.values():
                model.compile()
            if self.main:
                log.info("train.compile: the models' forward and backward are compiled on first use")
        prepared = self.accelerator.prepare(*models.values(), *optimizers.values(), self.train_dl)
        self.task.models = dict(zip(models, prepared[: len(models)], strict=True))
        self.optimizers = dict(zip(optimizers, prepared[len(models) : -1], strict=True))
        self.train_dl = prepared[-1]

    def close(self) -> None:
        """Ends the run: the trackers closed, then the process group destroyed. The wrapped models and
        optimizers are released first: a DDP model keeps the process group (and gloo's worker
        threads) alive past ``destroy_process_group``, and a process that tears them down during
        interpreter exit can abort ("terminate called without an active exception", seen in CI)."""
        self.task.models = {name: self.accelerator.unwrap_model(m) for name, m in self.task.models.items()}
        self.optimizers = {}
        self.accelerator.free_memory()  # drops the accelerator's references and collects the garbage
        self.accelerator.end_training()  # closes the trackers, also after a planned stop

    # -- recover and restore ----------------------------------------------------------------------
    def recover(self) -> Path | None:
        """Cleans what an interrupted save left (on --resume, main process: temporary directories, a
        replaced one not yet deleted) and returns the last complete state (one with loop.json; a
        half-written one never counts). A run directory that holds a state needs --resume. A state
        that is complete but damaged or planted is refused by ``restore`` with the file's name."""
        if self.resume and self.main:
            try:
                for sub, complete in (("state", state_complete), ("checkpoints", checkpoint_complete)):
                    for action in checkpoint.recover(self.run_dir / sub, complete):
                        log.info("%s/%s: %s (left by an interrupted save)", self.run_dir.name, sub, action)
            except OSError as err:
                raise MusgenError(f"cannot write to {self.run_dir}: {failure_reason(err)}") from None
        self.accelerator.wait_for_everyone()
        state_dir = latest_state(self.run_dir)
        if state_dir is not None and not self.resume:
            raise MusgenError(
                f"{self.run_dir} already holds a run (step {state_dir.name}); pass --resume or another --out"
            )
        if self.resume and state_dir is None:
            log.info("no complete state in %s: starting from step 0", self.run_dir)
        return state_dir

    def restore(self) -> None:
        """Loads the state found by ``recover`` (weights, optimizers, RNG; weights-only unpickling
        that never runs code, a damaged file stops with its name) and the loop position."""
        if not (self.resume and self.state_dir is not None):
            return
        load_state(self.accelerator, self.state_dir)
        loop_state = json.loads((self.state_dir / LOOP_FILE).read_text())
        self.step, self.epoch = loop_state["step"], loop_state["epoch"]
        self.batch_in_epoch = loop_state["batch_in_epoch"]
        self.elapsed_before = loop_state.get("elapsed", 0.0)
        self.last_valid = dict(loop_state.get("valid", {}))
        if self.main:
            log.info("resumed from %s (step %d)", self.state_dir, self.step)

    def open_run_dir(self) -> None:
        """config.yaml, metrics.jsonl cut back to the resumed step, and the metrics log."""
        self.config_yaml = dump_yaml(self.cfg, self.family)
        if self.main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                write_text_atomic(self.run_dir / "config.yaml", self.config_yaml)
                trim_metrics(self.run_dir / "metrics.jsonl", self.step)
            except OSError as err:
                raise MusgenError(f"cannot write to {self.run_dir}: {failure_reason(err)}") from None
        self.metrics_log = MetricsLog(self.run_dir, self.main)

    def start_trackers(self) -> None:
        """The train.log_with trackers, named after the run directory (a resumed run logs to the same
        one) and given the resolved config as flat hyperparameters."""
        if not self.train_cfg.trackers:
            return
        config = {"family": self.family, **flat_dict(self.cfg)}
        try:
            self.accelerator.init_trackers(project_name=self.run_dir.resolve().name, config=config)
        except Exception as err:  # a tracker's own failure (no login, no server): one line, before training
            raise MusgenError(
                f"train.log_with: cannot start the trackers {self.train_cfg.trackers}: {first_line(err)}"
            ) from err

    def ensure_resumed_checkpoint(self) -> None:
        """The portable checkpoint of the resumed state; written now for a state saved by an older
        musgen without one."""
        if not (self.resume and self.state_dir is not None and self.main):
            return
        self.last_ckpt = self.run_dir / "checkpoints" / self.state_dir.name
        if checkpoint_complete(self.last_ckpt):
            return
        try:
            self.last_ckpt = self.write_portable(self.step)
        except Exception as err:
            raise MusgenError(
                f"cannot write the checkpoint of step {self.step} in {self.run_dir}: "
                f"{failure_reason(err, self.run_dir)}"
            ) from err

    # -- training ---------------------------------------------------------------------------------
    def start_training(self) -> Iterator[Batch]:
        """Models in training mode, the clocks, the progress bar; returns the batch stream."""
        for model in self.task.models.values():
            model.train()
        self.start = time.time()
        self.window_tokens, self.window_start = 0, time.time()
        data = self.batches()
        self.pbar = tqdm(
            total=self.train_cfg.steps,
            initial=self.step,
            disable=not (self.main and self.progress),
            desc=f"train {self.family}",
            dynamic_ncols=True,
        )
        return data

    def batches(self) -> Iterator[Batch]:
        """The training batches forever, epoch after epoch, from the loop position (epoch,
        batch_in_epoch), which it keeps up to date for the saves."""
        while True:
            self.sampler.set_epoch(self.epoch)
            if hasattr(self.train_ds, "set_epoch"):
                self.train_ds.set_epoch(self.epoch)
            # A prepared loader hands ITS count of iterations to the sampler and the dataset as the epoch
            # at every __iter__ (and skip_first_batches copies it): keep that count equal to ours, or a
            # resumed run (its loader counting from 0 again) replays epoch 0's order after a boundary.
            if hasattr(self.train_dl, "set_epoch"):
                self.train_dl.set_epoch(self.epoch)
            loader = self.train_dl
            if self.batch_in_epoch:
                loader = self.accelerator.skip_first_batches(self.train_dl, self.batch_in_epoch)
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def train_step(self, data: Iterator[Batch]) -> dict[str, float]:
        """One optimizer step: the scheduled LR, the Task's step on its micro-batches; its metrics."""
        self.set_learning_rate()
        micro = [next(data) for _ in range(self.task.batches_per_step())]
        ctx = StepContext(self.accelerator, self.optimizers, self.train_cfg.grad_clip, self.step)
        metrics = self.task.train_step(micro, ctx)
        self.window_tokens += sum(self.task.tokens_in(b) for b in micro) * self.world
        self.step += 1
        self.pbar.update(1)
        return metrics

    def set_learning_rate(self) -> None:
        """The LR of this step from the step counter alone (resume needs no scheduler state)."""
        cfg = self.train_cfg
        self.lr_factor = warmup_cosine(self.step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base_lrs[name], strict=True):
                group["lr"] = base * self.lr_factor

    def after_step(self, metrics: dict[str, float]) -> None:
        """Logging, planned stops, evaluation and saving at their cadence (the last step does all)."""
        cfg = self.train_cfg
        if self.step % cfg.log_every == 0 or self.step == cfg.steps:
            self.log_train(metrics)
        if cfg.stop_at and self.step >= cfg.stop_at:
            self.stopping = True  # a planned stop: same schedule, resumable with --resume
        is_last = self.step == cfg.steps or self.stopping
        if self.step % cfg.eval_every == 0 or is_last:
            self.evaluate()
        if self.step % cfg.save_every == 0 or is_last:
            self.save(self.step)

    def log_train(self, metrics: dict[str, float]) -> None:
        """A metrics record (averaged over the processes), the progress bar; stops on a non-finite
        loss and when the time budget is spent."""
        metrics.setdefault("loss", float("nan"))
        if self.world > 1:
            metrics.update(self.mean_over_processes(metrics))
        now = time.time()
        tok_s = self.window_tokens / max(now - self.window_start, 1e-9)
        self.window_tokens, self.window_start = 0, now
        first_lr = self.base_lrs[next(iter(self.optimizers))][0]
        self.record({"step": self.step, "lr": first_lr * self.lr_factor, "tokens_per_s": tok_s, **metrics})
        self.pbar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{tok_s:.0f}")
        if not math.isfinite(metrics["loss"]):
            raise MusgenError(
                f"loss is {metrics['loss']} at step {self.step}; lower train.lr or check the data"
            )
        if self.train_cfg.max_minutes > 0:
            self.stopping = self.time_budget_spent()

    def mean_over_processes(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Every process's numeric metrics (same keys on all), averaged; one all-reduce."""
        keys = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        values = torch.tensor(
            [float(metrics[k]) for k in keys], dtype=torch.float64, device=self.accelerator.device
        )
        return dict(zip(keys, self.accelerator.reduce(values, "mean").tolist(), strict=True))

    def time_budget_spent(self) -> bool:
        """train.max_minutes spent on any process (all of them stop at the same step)."""
        spent = torch.tensor(
            float(time.time() - self.start > 60 * self.train_cfg.max_minutes), device=self.accelerator.device
        )
        stopping = bool(self.accelerator.reduce(spent, "max") > 0)
        if stopping:
            log.info("time budget of %.1f min spent at step %d", self.train_cfg.max_minutes, self.step)
        return stopping

    def record(self, record: dict[str, Any]) -> None:
        """One metrics record: metrics.jsonl, the train.log_with trackers (main process) and the history."""
        self.metrics_log.write(record)
        if self.train_cfg.trackers:
            scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, int | float)}
            self.accelerator.log(scalars, step=record["step"])
        self.history.append(record)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self) -> None:
        """Validation metrics (``valid_*``), kept for loop.json and the checkpoint, logged."""
        self.last_valid = {f"valid_{k}": v for k, v in self.validation_metrics().items()}
        if not self.last_valid:
            return
        self.record({"step": self.step, **self.last_valid})
        if self.main:
            log.info("step %d: %s", self.step, ", ".join(f"{k}={v:.4f}" for k, v in self.last_valid.items()))

    def validation_metrics(self) -> dict[str, float]:
        """The Task's eval metrics over this process's validation share, reduced over the processes.
        Every process runs the same number of forward passes; the training RNG stream is untouched."""
        if self.validation is None:
            return {}
        for model in self.task.models.values():
            model.eval()
        last: list[Batch] = []  # the last batch, for the padding forwards below
        # fork_rng: evaluating (at a planned stop, say) must not shift the training RNG stream.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            batches = _on_device(self.validation.loader, self.accelerator.device, last)
            sums, done = sum_eval_steps(self.task, batches, self.accelerator.autocast)
            for _ in range(self.validation.batches - done):  # one batch fewer here: sums are dropped
                with self.accelerator.autocast():
                    self.task.eval_step(last[0])
        for model in self.task.models.values():
            model.train()
        op = "sum" if self.validation.sharded else "mean"  # unsharded: every process summed the same items
        reduced = {
            k: self.accelerator.reduce(v.to(self.accelerator.device), op).cpu() for k, v in sums.items()
        }
        return metrics_from_sums(self.task, reduced)

    # -- saving -----------------------------------------------------------------------------------
    def save(self, at_step: int) -> None:
        """Saves ``at_step`` crash-safely, in this order (see the module docstring):

        1. the portable checkpoint, written atomically by the main process;
        2. Accelerate's state into ``state/.tmp-step_N`` (every process takes part);
        3. loop.json into it, then the rename to ``state/step_N`` (main process);
        4. only then are old states, then old checkpoints pruned (every state left has its checkpoint).

        The processes agree after each phase, so a failure anywhere stops all of them with one line
        and leaves the previous state and checkpoint untouched."""
        tmp = self.run_dir / "state" / f".tmp-{step_name(at_step)}"
        final = self.run_dir / "state" / step_name(at_step)
        new_ckpt, error = self.write_checkpoint_phase(at_step, tmp)
        ok = self.agree(error is None)
        if ok:
            error = self.save_state_phase(tmp)
        ok = self.agree(ok and error is None)
        if ok:
            error = self.commit_state_phase(at_step, tmp, final)
        ok = self.agree(ok and error is None)
        if not ok:
            self.save_failed(at_step, tmp, error)
        if self.main:
            self.last_ckpt = new_ckpt
            self.prune()
            log.info("saved step %d to %s", at_step, self.last_ckpt)
        self.accelerator.wait_for_everyone()

    def write_portable(self, at_step: int) -> Path:
        """The portable checkpoint of the current weights (main process)."""
        return checkpoint.save_portable(
            self.run_dir / "checkpoints" / step_name(at_step),
            family=self.family,
            config_yaml=self.config_yaml,
            models={n: self.accelerator.unwrap_model(m) for n, m in self.task.models.items()},
            step=at_step,
            metrics=self.last_valid,
            extra_files=self.task.checkpoint_extra_files(),
            extra_meta={"data": self.task.data_meta},
        )

    def write_checkpoint_phase(self, at_step: int, tmp: Path) -> tuple[Path | None, Exception | None]:
        """Save phase 1 (main process): the portable checkpoint, and a stale ``tmp`` removed."""
        if not self.main:
            return None, None
        try:
            new_ckpt = self.write_portable(at_step)
            if tmp.exists():
                shutil.rmtree(tmp)
        except Exception as err:  # reported by save, on every process
            return None, err
        return new_ckpt, None

    def save_state_phase(self, tmp: Path) -> Exception | None:
        """Save phase 2 (every process): Accelerate's state into the temporary directory."""
        try:
            self.accelerator.save_state(str(tmp))
        except Exception as err:
            return err
        return None

    def commit_state_phase(self, at_step: int, tmp: Path, final: Path) -> Exception | None:
        """Save phase 3: loop.json written last into ``tmp``, which is then renamed to ``final``
        (main process; every process contributes its weights digest under DDP)."""
        digests = self.weights_digests()
        if not self.main:
            return None
        loop_state = self.loop_state(at_step, digests)
        try:
            (tmp / LOOP_FILE).write_text(json.dumps(loop_state))
            checkpoint.commit_directory(tmp, final)
        except Exception as err:
            return err
        return None

    def weights_digests(self) -> list[str] | None:
        """Each process's weights digest (one all-gather), under DDP with several processes."""
        data_parallel = self.accelerator.distributed_type.value.startswith(
            "MULTI_"
        )  # every process holds it all
        if self.world > 1 and data_parallel:
            return gather_object([weights_digest(self.task.models)])
        return None

    def loop_state(self, at_step: int, digests: list[str] | None) -> dict[str, Any]:
        """The contents of loop.json: the loop position and what resume and checks need."""
        loop_state: dict[str, Any] = {
            "step": at_step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed": self.elapsed_before + time.time() - self.start,
            "valid": self.last_valid,
            "processes": self.world,
        }
        if digests is not None:
            loop_state["weights_sha256"] = digests  # one per process: DDP keeps them identical
            if len(set(digests)) > 1:
                log.warning("the processes hold different weights at step %d (%s)", at_step, digests)
        return loop_state

    def save_failed(self, at_step: int, tmp: Path, error: Exception | None) -> NoReturn:
        """Removes the temporary state and stops every process with one line."""
        if not self.main:
            raise MusgenError(f"saving step {at_step} failed on the main process") from None
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_state(self.run_dir)
        kept = (
            f"the state and checkpoint of step {int(previous.name.split('_')[1])} are untouched "
            "(continue with --resume)"
            if previous is not None
            else "no earlier state was saved"
        )
        raise MusgenError(
            f"cannot save step {at_step} in {self.run_dir}: {failure_reason(error, self.run_dir)}; {kept}"
        ) from error

    def prune(self) -> None:
        """Keeps the newest train.keep_checkpoints steps: states first, so every state left has its
        checkpoint. A failure only warns (the new step is saved)."""
        keep = self.train_cfg.keep_checkpoints
        try:
            checkpoint.prune(self.run_dir / "state", keep)
            checkpoint.prune(self.run_dir / "checkpoints", keep)
        except OSError as err:
            log.warning("could not delete old checkpoints in %s: %s", self.run_dir, failure_reason(err))

    def agree(self, ok: bool) -> bool:
        """True when ``ok`` on every process (one all-reduce; every process must call it)."""
        if self.world == 1:
            return ok
        failed = self.accelerator.reduce(
            torch.tensor([0.0 if ok else 1.0], device=self.accelerator.device), "sum"
        )
        return float(failed.item()) == 0.0
