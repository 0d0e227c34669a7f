"""``train.mixed_precision: auto``: bf16 autocast where this machine runs it faster than float32.

bf16 is ~2-4x faster than float32 on CPUs with native bf16 (AVX512-BF16, AMX) and 3-20x *slower* on
CPUs without it (AVX2 only), so a preset cannot pick one for every machine. ``auto`` decides at the
start of a run: on a CUDA GPU by whether it supports bf16, on a CPU by timing one small probe (a
matrix-multiply MLP step, the operation that dominates every family's training step) both ways.
"""

from __future__ import annotations

import functools
import logging
import time

import torch

log = logging.getLogger(__name__)

# bf16 must beat float32 by this factor to be chosen: a near tie is noise, and float32 is exact.
MARGIN = 1.15


def probe_step_seconds(bf16: bool, repeats: int = 5, batch: int = 512, width: int = 256) -> float:
    """Best time of ``repeats`` forward + backward passes of a 2-layer MLP on (batch, width) inputs."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, width, generator=gen)
    w1 = torch.randn(width, 4 * width, generator=gen, requires_grad=True)
    w2 = torch.randn(4 * width, width, generator=gen, requires_grad=True)
    best = float("inf")
    with torch.enable_grad():  # the probe may first be asked for inside inference (torch.no_grad)
        for _ in range(repeats + 1):  # the first pass warms up the kernels and is not counted
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = torch.relu(x @ w1) @ w2
            out.float().square().mean().backward()
            best = min(best, time.perf_counter() - start) if _ else best
            w1.grad = w2.grad = None
    return best


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 autocast beats float32 by ``MARGIN`` on this CPU (probed once per process)."""
    fp32, bf16 = probe_step_seconds(False), probe_step_seconds(True)
    faster = bf16 * MARGIN < fp32
    log.info(
        "precision probe: step %.2f ms float32, %.2f ms bf16 on this CPU -> %s",
        1e3 * fp32,
        1e3 * bf16,
        "bf16" if faster else "float32",
    )
    return faster


def resolve_mixed_precision(setting: str, on_cpu: bool) -> str:
    """The Accelerate mixed-precision mode for ``setting`` (no | bf16 | fp16 | auto) on this machine."""
    if setting != "auto":
        return setting
    if not on_cpu:
        if torch.cuda.is_available():
            choice = "bf16" if torch.cuda.is_bf16_supported() else "no"
            log.info("train.mixed_precision=auto: %s on %s", choice, torch.cuda.get_device_name())
            return choice
        log.info("train.mixed_precision=auto: no (float32) on this accelerator")
        return "no"
    choice = "bf16" if cpu_bf16_is_faster() else "no"
    log.info("train.mixed_precision=auto: %s", "bf16" if choice == "bf16" else "no (float32)")
    return choice
