"""The Task interface: what a model family gives the one training loop.

A Task owns its models, optimizers and losses; the Trainer (``musgen.training.trainer.Trainer``) owns devices,
precision, the data order, logging, evaluation cadence, checkpoints and resume.
Families with one model and one loss only implement ``build_models``, ``datasets`` and ``loss``;
MuseGAN-like families override ``train_step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from musgen.errors import MusgenError


@dataclass
class StepContext:
    """What ``Task.train_step`` may use: the accelerator, the prepared optimizers, the clip value."""

    accelerator: Any  # accelerate.Accelerator
    optimizers: Mapping[str, torch.optim.Optimizer]
    grad_clip: float
    step: int  # the optimizer step being taken (0-based)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_and_step(self, name: str, params: Any) -> float | None:
        """Clips gradients of ``params``, steps optimizer ``name`` and zeroes its gradients."""
        norm = None
        if self.grad_clip > 0:
            norm = float(self.accelerator.clip_grad_norm_(params, self.grad_clip))
        optimizer = self.optimizers[name]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return norm


class Task:
    """Base class: one model called ``model``, one AdamW optimizer, one scalar loss."""

    # Files of the data directory copied into every portable checkpoint (e.g. tokenizer.json).
    checkpoint_files: tuple[str, ...] = ()

    def __init__(
        self,
        cfg: Any,
        data_dir: Path | None = None,
        data_meta: Mapping[str, Any] | None = None,
        models: dict[str, nn.Module] | None = None,
    ):
        """``data_dir``: the data set (None: a Task used only for its losses, e.g. in a unit test);
        ``data_meta``: its manifest fields (vocabulary size, sample rate ...); ``models``: trained
        models to evaluate (``Generator.evaluation_task``), else new ones."""
        self.cfg = cfg
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.data_meta = dict(data_meta or {})
        self.models: dict[str, nn.Module] = models if models is not None else self.build_models()

    @property
    def data_path(self) -> Path:
        """The data set directory (a Task built without one cannot make datasets)."""
        if self.data_dir is None:
            raise MusgenError("this task was built without a data set")
        return self.data_dir

    # -- to implement -------------------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        """(train, valid) datasets. Train items must be deterministic given (epoch, index)."""
        raise NotImplementedError

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss of one micro-batch and metrics to log."""
        raise NotImplementedError

    def eval_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sums over the batch (e.g. ``nll_sum``, ``tokens``); the loop adds them up across batches."""
        raise NotImplementedError

    def eval_metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Turns summed ``eval_step`` outputs into metrics (e.g. mean NLL)."""
        return dict(sums)

    # -- defaults that most families keep -----------------------------------------------------
    def batches_per_step(self) -> int:
        """Micro-batches the loop hands to one ``train_step``: gradient accumulation by default; a
        GAN takes one real batch per critic update."""
        return self.cfg.train.grad_accum

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        train = self.cfg.train
        model = self.models["model"]
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            # No weight decay on biases, norms and embeddings (the usual GPT/LSTM recipe).
            (no_decay if param.ndim < 2 or "embed" in name or "norm" in name else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": train.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return {"model": torch.optim.AdamW(groups, lr=train.lr, betas=tuple(train.betas))}

    def loss_weight(self, batch: Mapping[str, torch.Tensor]) -> float | None:
        """How many items (e.g. predicted tokens) ``loss(batch)`` is the mean over, when that varies
        from batch to batch. Then the micro-batches and the processes of a step are weighted by it,
        so a step's loss is the mean over all its items, as in one big batch. None: equal weights."""
        return None

    def train_step(
        self, micro_batches: Sequence[Mapping[str, torch.Tensor]], ctx: StepContext
    ) -> dict[str, float]:
        """One optimizer step over ``micro_batches`` (gradient accumulation; with several processes,
        DDP averages the gradients of their shares of the global batch)."""
        model = self.models["model"]
        n = len(micro_batches)
        world = ctx.accelerator.num_processes
        weights = [self.loss_weight(batch) for batch in micro_batches]
        scales: list[float] | None = None  # None: the mean of the micro-batches' losses
        if all(w is not None for w in weights):
            total = float(sum(w for w in weights if w is not None))
            if world > 1:  # the items of the whole step, on every process
                local = torch.tensor(total, dtype=torch.float64, device=ctx.accelerator.device)
                total = float(ctx.accelerator.reduce(local, "sum"))
            scales = [
                float(w or 0.0) * world / max(total, 1.0) for w in weights
            ]  # x world: DDP divides by it
        totals: dict[str, float] = {}
        for i, batch in enumerate(micro_batches):
            # Only the last micro-batch all-reduces gradients across processes.
            sync = ctx.accelerator.no_sync(model) if i < n - 1 else nullcontext()
            with sync:
                loss, metrics = self.loss(batch)
                if scales is None:
                    ctx.backward(loss / n)
                else:  # one micro-batch on one process: scale 1, the loss as it is
                    ctx.backward(loss * scales[i] if scales[i] != 1.0 else loss)
            # Weighted so that the loop's mean over the processes is the step's mean over all items.
            share = 1.0 / n if scales is None else scales[i]
            totals["loss"] = totals.get("loss", 0.0) + float(loss.detach()) * share
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + float(value) * share
        norm = ctx.clip_and_step("model", model.parameters())
        if norm is not None:
            totals["grad_norm"] = norm
        return totals

    def checkpoint_extra_files(self) -> dict[str, Path]:
        """Files copied into every portable checkpoint: name inside it (may hold a '/') -> source."""
        if self.data_dir is None:
            return {}
        return {f: self.data_dir / f for f in self.checkpoint_files if (self.data_dir / f).exists()}

    def tokens_in(self, batch: Mapping[str, torch.Tensor]) -> int:
        """Training tokens in a batch, for the tokens/s display (0 if not meaningful)."""
        labels = batch.get("labels")
        return int((labels != -100).sum()) if labels is not None else 0


def sum_eval_steps(
    task: Task, batches: Iterable[Mapping[str, torch.Tensor]], autocast: Callable[[], Any] = nullcontext
) -> tuple[dict[str, torch.Tensor], int]:
    """``task.eval_step`` summed in float64 over ``batches`` (call under ``torch.no_grad``), and the
    number of batches. The loop's periodic validation and ``musgen eval`` both use it."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for batch in batches:
        with autocast():
            out = task.eval_step(batch)
        count += 1
        for key, value in out.items():
            sums[key] = sums.get(key, 0) + value.detach().double()
    return sums, count


def metrics_from_sums(task: Task, sums: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``task.eval_metrics`` of summed eval outputs: scalars as floats, vectors (a codebook's
    assignment counts, say) as tensors."""
    values: dict[str, Any] = {k: float(v) if v.numel() == 1 else v for k, v in sums.items()}
    return task.eval_metrics(values)
