"""The one training loop (HuggingFace Accelerate) for every family.

RUN_DIR layout::

    config.yaml               the resolved config
    metrics.jsonl             one JSON line per log / eval event
    state/step_000500/        Accelerate save_state (models, optimizers, RNG) + loop.json, for --resume
    checkpoints/step_000500/  portable checkpoints (see musgen.checkpoint)

Exact resume: the data order comes from a sampler seeded by (seed, epoch), augmentation from
(seed, epoch, index), the LR from the step counter, dropout from the RNG states that save_state
keeps; so N steps straight equal N/2 + resume + N/2.
"""

from __future__ import annotations

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
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from musgen import checkpoint
from musgen.config import dump_yaml
from musgen.errors import MusgenError
from musgen.registry import get_family
from musgen.train.schedules import warmup_cosine
from musgen.train.task import StepContext, Task

log = logging.getLogger(__name__)

LOOP_FILE = "loop.json"


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


def latest_state(run_dir: Path) -> Path | None:
    complete = [p for _, p in checkpoint.step_dirs(run_dir / "state") if (p / LOOP_FILE).is_file()]
    return complete[-1] if complete else None


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
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
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
        raise MusgenError(f"train.mixed_precision must be no, bf16 or fp16, not {train_cfg.mixed_precision!r}")
    if train_cfg.mixed_precision == "fp16" and (train_cfg.cpu or not torch.cuda.is_available()):
        raise MusgenError("train.mixed_precision=fp16 needs a GPU; use bf16 on the CPU")
    if train_cfg.steps < 1 or train_cfg.batch_size < 1 or train_cfg.grad_accum < 1:
        raise MusgenError("train.steps, train.batch_size and train.grad_accum must be at least 1")

    state_dir = latest_state(run_dir)
    if state_dir is not None and not resume:
        raise MusgenError(f"{run_dir} already holds a run (step {state_dir.name}); pass --resume or another --out")
    if resume and state_dir is None:
        log.info("no complete state in %s: starting from step 0", run_dir)

    accelerator = Accelerator(mixed_precision=train_cfg.mixed_precision, cpu=train_cfg.cpu)
    main = accelerator.is_main_process
    # Same seed on every process: identical initial weights and data order (the sampler is sharded).
    set_seed(train_cfg.seed)
    data_meta = _read_data_meta(data_dir)
    task: Task = spec.task_cls(cfg, data_dir, data_meta)
    train_ds, valid_ds = task.datasets()
    if len(train_ds) == 0:
        raise MusgenError(f"the training split of {data_dir} is empty")

    sampler = EpochShuffleSampler(len(train_ds), train_cfg.seed)
    drop_last = len(train_ds) >= train_cfg.batch_size * accelerator.num_processes
    # Each DataLoader iterator draws a worker base seed; from its own generator, not the global RNG,
    # or a resumed run (one iterator more) would see different dropout masks than a straight one.
    train_dl = DataLoader(
        train_ds, batch_size=train_cfg.batch_size, sampler=sampler, drop_last=drop_last,
        num_workers=train_cfg.num_workers, generator=torch.Generator().manual_seed(train_cfg.seed),
    )
    valid_dl = None
    if valid_ds is not None and len(valid_ds) > 0:
        valid_dl = DataLoader(valid_ds, batch_size=train_cfg.batch_size, shuffle=False,
                              num_workers=train_cfg.num_workers, generator=torch.Generator().manual_seed(0))

    names = list(task.models)
    optimizers = task.optimizers()
    opt_names = list(optimizers)
    prepared = accelerator.prepare(*[task.models[n] for n in names], *[optimizers[n] for n in opt_names], train_dl)
    task.models = dict(zip(names, prepared[: len(names)], strict=True))
    optimizers = dict(zip(opt_names, prepared[len(names) : len(names) + len(opt_names)], strict=True))
    train_dl = prepared[-1]
    if valid_dl is not None:
        valid_dl = accelerator.prepare(valid_dl)
    base_lrs = {n: [g["lr"] for g in opt.param_groups] for n, opt in optimizers.items()}

    step, epoch, batch_in_epoch, elapsed_before = 0, 0, 0, 0.0
    history: list[dict[str, Any]] = []
    if resume and state_dir is not None:
        accelerator.load_state(str(state_dir))
        loop_state = json.loads((state_dir / LOOP_FILE).read_text())
        step, epoch = loop_state["step"], loop_state["epoch"]
        batch_in_epoch, elapsed_before = loop_state["batch_in_epoch"], loop_state.get("elapsed", 0.0)
        log.info("resumed from %s (step %d)", state_dir, step)

    config_yaml = dump_yaml(cfg, family)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_yaml)
    metrics_log = _MetricsLog(run_dir, main)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        nonlocal epoch, batch_in_epoch
        while True:
            sampler.set_epoch(epoch)
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
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
        sums: dict[str, torch.Tensor] = {}
        # fork_rng: evaluating (at a planned stop, say) must not shift the training RNG stream.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for i, batch in enumerate(valid_dl):
                if train_cfg.eval_batches and i >= train_cfg.eval_batches:
                    break
                with accelerator.autocast():
                    out = task.eval_step(batch)
                for key, value in out.items():
                    sums[key] = sums.get(key, 0) + value.detach().double()
        for model in task.models.values():
            model.train()
        reduced = {k: accelerator.reduce(v.to(accelerator.device), "sum").cpu() for k, v in sums.items()}
        # Scalars as floats; vectors (e.g. a codebook's assignment counts) stay tensors.
        return task.eval_metrics({k: float(v) if v.numel() == 1 else v for k, v in reduced.items()})

    last_valid: dict[str, float] = {}
    last_ckpt: Path | None = None

    def save(at_step: int) -> None:
        nonlocal last_ckpt
        name = _step_name(at_step)
        tmp = run_dir / "state" / f".tmp-{name}"
        if main and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            loop_state = {"step": at_step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                          "elapsed": elapsed_before + time.time() - start, "valid": last_valid}
            (tmp / LOOP_FILE).write_text(json.dumps(loop_state))
            final = run_dir / "state" / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            last_ckpt = checkpoint.save_portable(
                run_dir / "checkpoints" / name,
                family=family,
                config_yaml=config_yaml,
                models={n: accelerator.unwrap_model(m) for n, m in task.models.items()},
                step=at_step,
                metrics=last_valid,
                extra_files=task.checkpoint_extra_files(),
                extra_meta={"data": task.data_meta},
            )
            checkpoint.prune(run_dir / "state", train_cfg.keep_checkpoints)
            checkpoint.prune(run_dir / "checkpoints", train_cfg.keep_checkpoints)
            log.info("saved step %d to %s", at_step, last_ckpt)
        accelerator.wait_for_everyone()

    for model in task.models.values():
        model.train()
    start = time.time()
    window_tokens, window_start = 0, time.time()
    data = batches()
    pbar = tqdm(total=train_cfg.steps, initial=step, disable=not (main and progress), desc=f"train {family}",
                dynamic_ncols=True)
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
                loss = torch.tensor(metrics.get("loss", float("nan")), device=accelerator.device)
                metrics["loss"] = float(accelerator.reduce(loss, "mean"))
                now = time.time()
                tok_s = window_tokens / max(now - window_start, 1e-9)
                window_tokens, window_start = 0, now
                record = {"step": step, "lr": base_lrs[opt_names[0]][0] * factor, "tokens_per_s": tok_s, **metrics}
                metrics_log.write(record)
                history.append(record)
                pbar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{tok_s:.0f}")
                if not math.isfinite(metrics["loss"]):
                    raise MusgenError(f"loss is {metrics['loss']} at step {step}; lower train.lr or check the data")
                if train_cfg.max_minutes > 0:
                    spent = torch.tensor(float(time.time() - start > 60 * train_cfg.max_minutes),
                                         device=accelerator.device)
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
                    log.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in last_valid.items()))
            if step % train_cfg.save_every == 0 or is_last:
                save(step)
    finally:
        pbar.close()
        metrics_log.close()
    accelerator.end_training()
    return FitResult(run_dir=run_dir, step=step, checkpoint=last_ckpt, metrics=last_valid, history=history)


def _read_data_meta(data_dir: Path) -> dict[str, Any]:
    manifest = data_dir / "manifest.json"
    if not manifest.is_file():
        raise MusgenError(f"{data_dir} is not a musgen data set (no manifest.json); run `musgen data build` first")
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as err:
        raise MusgenError(f"{manifest} is not valid JSON: {err}") from None
    keep = ("format_version", "kind", "tokenizer", "vocab_size", "sample_rate", "source", "fingerprint")
    return {k: meta[k] for k in keep if k in meta} if isinstance(meta, Mapping) else {}
