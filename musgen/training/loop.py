"""The one training loop (HuggingFace Accelerate) for every family.

RUN_DIR layout::

    config.yaml               the resolved config
    metrics.jsonl             one JSON line per log / eval event
    state/step_000500/        Accelerate save_state (models, optimizers, RNG) + loop.json, for --resume
    checkpoints/step_000500/  portable checkpoints (see musgen.checkpoint)

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
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object, get_int_from_env, send_to_device, set_seed
from torch.utils.data import DataLoader, Sampler, Subset
from tqdm.auto import tqdm

from musgen import checkpoint
from musgen.config import dump_yaml
from musgen.errors import MusgenError, first_line
from musgen.registry import get_family
from musgen.training.safe_state import load_state
from musgen.training.schedules import warmup_cosine
from musgen.training.task import StepContext, Task, metrics_from_sums, sum_eval_steps

log = logging.getLogger(__name__)

LOOP_FILE = "loop.json"
# Accelerate setups that shard the model over the processes (not supported, see fit).
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)


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


def latest_state(run_dir: Path) -> Path | None:
    complete = [p for _, p in checkpoint.step_dirs(run_dir / "state") if _state_complete(p)]
    return complete[-1] if complete else None


def _state_complete(path: Path) -> bool:
    return (path / LOOP_FILE).is_file()  # written last, inside the temporary directory


def _checkpoint_complete(path: Path) -> bool:
    return (path / checkpoint.META_FILE).is_file()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file that have a step (a line cut short by a killed process
    is skipped); [] when there is no file."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int | float):
            records.append(record)
    return records


def _trim_metrics(path: Path, step: int) -> None:
    """Keeps the metrics.jsonl records up to ``step`` (a resumed run logs the later ones again) and
    drops a line cut short by a killed process."""
    if not path.is_file():
        return
    kept = [json.dumps(record) + "\n" for record in read_metrics(path) if record["step"] <= step]
    _write_text_atomic(path, "".join(kept))


def _reason(err: BaseException | None, where: Path | None = None) -> str:
    """The cause of a failed write in a few words: an OS error's strerror ("No space left on device");
    torch and safetensors wrap those in their own messages, so then the disk's free space and the
    process's file size limit are checked."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err) if err is not None else ""
    for known in (
        "No space left on device",
        "File too large",
        "Read-only file system",
        "Permission denied",
        "Disk quota exceeded",
    ):
        if known in text:
            return known
    if where is not None:
        try:
            free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
        except OSError:
            free = None
        if free is not None and free < 64 * 2**20:
            return f"No space left on device ({free / 2**20:.1f} MiB free)"
        try:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        except (ImportError, OSError, ValueError):
            limit = None
        if limit is not None and limit != resource.RLIM_INFINITY:
            return f"File too large (the file size limit, ulimit -f, is {limit} bytes)"
    return first_line(err) if err is not None else "unknown error"


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


def _step_name(step: int) -> str:
    return f"step_{step:07d}"


class _MetricsLog:
    """metrics.jsonl on the main process, plus TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as err:
            raise MusgenError(f"cannot write {self.path}: {_reason(err)}") from None
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def fit(
    family: str,
    cfg: Any,
    data_dir: Path,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Trains ``family`` with config ``cfg`` on DATA_DIR, writing RUN_DIR; returns the final state."""
    spec = get_family(family)
    train_cfg = cfg.train
    run_dir = Path(run_dir)
    data_dir = Path(data_dir)
    if train_cfg.mixed_precision not in ("no", "bf16", "fp16"):
        raise MusgenError(
            f"train.mixed_precision must be no, bf16 or fp16, not {train_cfg.mixed_precision!r}"
        )
    if train_cfg.mixed_precision == "fp16" and (train_cfg.cpu or not torch.cuda.is_available()):
        raise MusgenError("train.mixed_precision=fp16 needs a GPU; use bf16 on the CPU")
    if train_cfg.steps < 1 or train_cfg.batch_size < 1 or train_cfg.grad_accum < 1:
        raise MusgenError("train.steps, train.batch_size and train.grad_accum must be at least 1")

    # processes started by torchrun / accelerate launch / mpirun
    launched = get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)
    # Without a GPU, Accelerate sets up several processes (gloo) only when asked for the CPU; else each
    # process would silently train alone, all of them writing the same RUN_DIR.
    cpu = train_cfg.cpu or (
        launched > 1
        and not torch.cuda.is_available()
        and not (hasattr(torch, "xpu") and torch.xpu.is_available())
    )
    accelerator = Accelerator(mixed_precision=train_cfg.mixed_precision, cpu=cpu)
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
    main = accelerator.is_main_process
    if resume and main:
        try:  # what a killed save left behind: temporary directories, a replaced one not yet deleted
            for sub, complete in (("state", _state_complete), ("checkpoints", _checkpoint_complete)):
                for action in checkpoint.recover(run_dir / sub, complete):
                    log.info("%s/%s: %s (left by an interrupted save)", run_dir.name, sub, action)
        except OSError as err:
            raise MusgenError(f"cannot write to {run_dir}: {_reason(err)}") from None
    accelerator.wait_for_everyone()
    state_dir = latest_state(run_dir)
    if state_dir is not None and not resume:
        raise MusgenError(
            f"{run_dir} already holds a run (step {state_dir.name}); pass --resume or another --out"
        )
    if resume and state_dir is None:
        log.info("no complete state in %s: starting from step 0", run_dir)

    world = accelerator.num_processes
    # Same seed on every process: identical initial weights and data order (the sampler is sharded).
    set_seed(train_cfg.seed)
    data_meta = _read_data_meta(data_dir)
    task: Task = spec.task_cls(cfg, data_dir, data_meta)
    with accelerator.main_process_first():  # derived views (melodies, rolls, codes) are cached once
        train_ds, valid_ds = task.datasets()
    if len(train_ds) == 0:
        raise MusgenError(f"the training split of {data_dir} is empty")

    sampler = EpochShuffleSampler(len(train_ds), train_cfg.seed)
    drop_last = len(train_ds) >= train_cfg.batch_size * world
    # Each DataLoader iterator draws a worker base seed; from its own generator, not the global RNG,
    # or a resumed run (one iterator more) would see different dropout masks than a straight one.
    train_dl = DataLoader(
        train_ds,
        batch_size=train_cfg.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=train_cfg.num_workers,
        generator=torch.Generator().manual_seed(train_cfg.seed),
    )
    valid_dl, valid_sharded, valid_batches = None, False, 0
    if valid_ds is not None and len(valid_ds) > 0:
        # The first eval_batches global batches, dealt out to the processes without the duplicates
        # that pad a prepared loader's last batch: the sums reduced over the processes are those of
        # one process evaluating the same items. (Fewer items than processes: each evaluates all.)
        n_eval = len(valid_ds)
        if train_cfg.eval_batches:
            n_eval = min(n_eval, train_cfg.eval_batches * train_cfg.batch_size * world)
        valid_sharded = world > 1 and n_eval >= world
        shard = range(accelerator.process_index, n_eval, world) if valid_sharded else range(n_eval)
        valid_dl = DataLoader(
            Subset(valid_ds, shard),
            batch_size=train_cfg.batch_size,
            shuffle=False,
            num_workers=train_cfg.num_workers,
            generator=torch.Generator().manual_seed(0),
        )
        # Forward passes per process, the same on all (the first process has the most items): a
        # wrapped model (DDP buffers, FSDP shards) may talk to the others in every forward.
        valid_batches = math.ceil(len(range(0, n_eval, world if valid_sharded else 1)) / train_cfg.batch_size)

    names = list(task.models)
    optimizers = task.optimizers()
    opt_names = list(optimizers)
    prepared = accelerator.prepare(
        *[task.models[n] for n in names], *[optimizers[n] for n in opt_names], train_dl
    )
    task.models = dict(zip(names, prepared[: len(names)], strict=True))
    optimizers = dict(zip(opt_names, prepared[len(names) : len(names) + len(opt_names)], strict=True))
    train_dl = prepared[-1]
    if world > 1:
        # Identical initial weights came from the common seed; from here each process draws its own
        # dropout masks, noise and choices (else its shard of the batch would get the same ones).
        set_seed(train_cfg.seed, device_specific=True)
    base_lrs = {n: [g["lr"] for g in opt.param_groups] for n, opt in optimizers.items()}

    step, epoch, batch_in_epoch, elapsed_before = 0, 0, 0, 0.0
    last_valid: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    if resume and state_dir is not None:
        load_state(accelerator, state_dir)  # weights-only unpickling: never runs code
        loop_state = json.loads((state_dir / LOOP_FILE).read_text())
        step, epoch = loop_state["step"], loop_state["epoch"]
        batch_in_epoch, elapsed_before = loop_state["batch_in_epoch"], loop_state.get("elapsed", 0.0)
        last_valid = dict(loop_state.get("valid", {}))
        if main:
            log.info("resumed from %s (step %d)", state_dir, step)

    config_yaml = dump_yaml(cfg, family)
    if main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(run_dir / "config.yaml", config_yaml)
            _trim_metrics(run_dir / "metrics.jsonl", step)
        except OSError as err:
            raise MusgenError(f"cannot write to {run_dir}: {_reason(err)}") from None
    metrics_log = _MetricsLog(run_dir, main)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        nonlocal epoch, batch_in_epoch
        while True:
            sampler.set_epoch(epoch)
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            # A prepared loader hands ITS count of iterations to the sampler and the dataset as the epoch
            # at every __iter__ (and skip_first_batches copies it): keep that count equal to ours, or a
            # resumed run (its loader counting from 0 again) replays epoch 0's order after a boundary.
            if hasattr(train_dl, "set_epoch"):
                train_dl.set_epoch(epoch)
            loader = accelerator.skip_first_batches(train_dl, batch_in_epoch) if batch_in_epoch else train_dl
            for batch in loader:
                batch_in_epoch += 1
                yield batch
            epoch += 1
            batch_in_epoch = 0

    def evaluate() -> dict[str, float]:
        if valid_dl is None:
            return {}
        for model in task.models.values():
            model.eval()
        moved: list[dict[str, torch.Tensor]] = []  # the last batch, for the padding forwards below

        def on_device() -> Iterator[dict[str, torch.Tensor]]:
            for batch in valid_dl:
                moved[:] = [send_to_device(batch, accelerator.device)]
                yield moved[0]

        # fork_rng: evaluating (at a planned stop, say) must not shift the training RNG stream.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            sums, done = sum_eval_steps(task, on_device(), accelerator.autocast)
            for _ in range(valid_batches - done):  # one batch fewer here: a forward whose sums are dropped
                with accelerator.autocast():
                    task.eval_step(moved[0])
        for model in task.models.values():
            model.train()
        op = "sum" if valid_sharded else "mean"  # unsharded: every process summed the same items
        reduced = {k: accelerator.reduce(v.to(accelerator.device), op).cpu() for k, v in sums.items()}
        return metrics_from_sums(task, reduced)

    last_ckpt: Path | None = None

    def agree(ok: bool) -> bool:
        """True when ``ok`` on every process (one all-reduce; every process must call it)."""
        if world == 1:
            return ok
        failed = accelerator.reduce(torch.tensor([0.0 if ok else 1.0], device=accelerator.device), "sum")
        return float(failed.item()) == 0.0

    def write_portable(at_step: int) -> Path:
        return checkpoint.save_portable(
            run_dir / "checkpoints" / _step_name(at_step),
            family=family,
            config_yaml=config_yaml,
            models={n: accelerator.unwrap_model(m) for n, m in task.models.items()},
            step=at_step,
            metrics=last_valid,
            extra_files=task.checkpoint_extra_files(),
            extra_meta={"data": task.data_meta},
        )

    def save(at_step: int) -> None:
        """Portable checkpoint, then the state (renamed into place with loop.json), then pruning; see
        the module docstring. Every process takes part; only the main one writes files."""
        nonlocal last_ckpt
        name = _step_name(at_step)
        tmp, final = run_dir / "state" / f".tmp-{name}", run_dir / "state" / name
        error: Exception | None = None
        new_ckpt = None
        if main:
            try:
                new_ckpt = write_portable(at_step)
                if tmp.exists():
                    shutil.rmtree(tmp)
            except Exception as err:  # reported below, on every process
                error = err
        ok = agree(error is None)
        if ok:
            try:
                accelerator.save_state(str(tmp))
            except Exception as err:
                error = err
        ok = agree(ok and error is None)
        digests = gather_object([weights_digest(task.models)]) if ok and world > 1 and data_parallel else None
        if ok and main:
            loop_state = {
                "step": at_step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "elapsed": elapsed_before + time.time() - start,
                "valid": last_valid,
                "processes": world,
            }
            if digests is not None:
                loop_state["weights_sha256"] = digests  # one per process: DDP keeps them identical
                if len(set(digests)) > 1:
                    log.warning("the processes hold different weights at step %d (%s)", at_step, digests)
            try:
                (tmp / LOOP_FILE).write_text(json.dumps(loop_state))
                checkpoint.commit_directory(tmp, final)
            except Exception as err:
                error = err
        ok = agree(ok and error is None)
        if not ok:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
                previous = latest_state(run_dir)
                kept = (
                    f"the state and checkpoint of step {int(previous.name.split('_')[1])} are untouched "
                    "(continue with --resume)"
                    if previous is not None
                    else "no earlier state was saved"
                )
                raise MusgenError(
                    f"cannot save step {at_step} in {run_dir}: {_reason(error, run_dir)}; {kept}"
                ) from error
            raise MusgenError(f"saving step {at_step} failed on the main process") from None
        if main:
            last_ckpt = new_ckpt
            try:  # states first: every state left has its checkpoint
                checkpoint.prune(run_dir / "state", train_cfg.keep_checkpoints)
                checkpoint.prune(run_dir / "checkpoints", train_cfg.keep_checkpoints)
            except OSError as err:
                log.warning("could not delete old checkpoints in %s: %s", run_dir, _reason(err))
            log.info("saved step %d to %s", at_step, last_ckpt)
        accelerator.wait_for_everyone()

    data_parallel = accelerator.distributed_type.value.startswith("MULTI_")  # DDP: every process holds it all
    if resume and state_dir is not None and main:
        last_ckpt = run_dir / "checkpoints" / state_dir.name
        if not _checkpoint_complete(last_ckpt):  # a state saved by an older musgen without its checkpoint
            try:
                last_ckpt = write_portable(step)
            except Exception as err:
                raise MusgenError(
                    f"cannot write the checkpoint of step {step} in {run_dir}: {_reason(err, run_dir)}"
                ) from err

    for model in task.models.values():
        model.train()
    start = time.time()
    window_tokens, window_start = 0, time.time()
    data = batches()
    pbar = tqdm(
        total=train_cfg.steps,
        initial=step,
        disable=not (main and progress),
        desc=f"train {family}",
        dynamic_ncols=True,
    )
    stopping = False
    try:
        while step < train_cfg.steps and not stopping:
            factor = warmup_cosine(step, train_cfg.steps, train_cfg.warmup_steps, train_cfg.min_lr_ratio)
            for opt_name, opt in optimizers.items():
                for group, base in zip(opt.param_groups, base_lrs[opt_name], strict=True):
                    group["lr"] = base * factor
            micro = [next(data) for _ in range(task.batches_per_step())]
            ctx = StepContext(accelerator, optimizers, train_cfg.grad_clip, step)
            metrics = task.train_step(micro, ctx)
            window_tokens += sum(task.tokens_in(b) for b in micro) * accelerator.num_processes
            step += 1
            pbar.update(1)

            if step % train_cfg.log_every == 0 or step == train_cfg.steps:
                metrics.setdefault("loss", float("nan"))
                if world > 1:  # every process's metrics (same keys on all), averaged
                    keys = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
                    values = torch.tensor(
                        [float(metrics[k]) for k in keys], dtype=torch.float64, device=accelerator.device
                    )
                    metrics.update(zip(keys, accelerator.reduce(values, "mean").tolist(), strict=True))
                now = time.time()
                tok_s = window_tokens / max(now - window_start, 1e-9)
                window_tokens, window_start = 0, now
                record = {
                    "step": step,
                    "lr": base_lrs[opt_names[0]][0] * factor,
                    "tokens_per_s": tok_s,
                    **metrics,
                }
                metrics_log.write(record)
                history.append(record)
                pbar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{tok_s:.0f}")
                if not math.isfinite(metrics["loss"]):
                    raise MusgenError(
                        f"loss is {metrics['loss']} at step {step}; lower train.lr or check the data"
                    )
                if train_cfg.max_minutes > 0:
                    spent = torch.tensor(
                        float(time.time() - start > 60 * train_cfg.max_minutes), device=accelerator.device
                    )
                    stopping = bool(accelerator.reduce(spent, "max") > 0)
                    if stopping:
                        log.info("time budget of %.1f min spent at step %d", train_cfg.max_minutes, step)

            if train_cfg.stop_at and step >= train_cfg.stop_at:
                stopping = True  # a planned stop: same schedule, resumable with --resume
            is_last = step == train_cfg.steps or stopping
            if step % train_cfg.eval_every == 0 or is_last:
                last_valid = {f"valid_{k}": v for k, v in evaluate().items()}
                if last_valid:
                    record = {"step": step, **last_valid}
                    metrics_log.write(record)
                    history.append(record)
                    if main:
                        log.info(
                            "step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in last_valid.items())
                        )
            if step % train_cfg.save_every == 0 or is_last:
                save(step)
    finally:
        pbar.close()
        metrics_log.close()
    accelerator.end_training()
    return FitResult(
        run_dir=run_dir, step=step, checkpoint=last_ckpt, metrics=last_valid, history=history, main=main
    )


def _read_data_meta(data_dir: Path) -> dict[str, Any]:
    manifest = data_dir / "manifest.json"
    if not manifest.is_file():
        raise MusgenError(
            f"{data_dir} is not a musgen data set (no manifest.json); run `musgen data build` first"
        )
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as err:
        raise MusgenError(f"{manifest} is not valid JSON: {err}") from None
    keep = ("format_version", "kind", "tokenizer", "vocab_size", "sample_rate", "source", "fingerprint")
    return {k: meta[k] for k in keep if k in meta} if isinstance(meta, Mapping) else {}
