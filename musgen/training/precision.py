"""``train.mixed_precision: auto``: bf16 autocast where this machine runs it faster than float32.

bf16 is ~2-4x faster than float32 on CPUs with native bf16 (AVX512-BF16, AMX) and 3-20x *slower* on
CPUs without it (AVX2 only), so a preset cannot pick one for every machine. ``auto`` decides at the
start of a run: on a CUDA GPU by whether it supports bf16; on an x86 CPU by its flags (native bf16:
``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo; measured ~2x on the probe below on such an EPYC);
elsewhere by timing one small probe (a matrix-multiply MLP step, the operation that dominates every
family's training step) both ways. The flags come first because they do not depend on the machine's
load: a probe timed while other jobs ran chose float32 on a bf16 CPU, which changed a codec's codes
(and so its samples) from one run of the same command to the next.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# bf16 must beat float32 by this factor to be chosen: a near tie is noise, and float32 is exact.
MARGIN = 1.15
# x86 flags of native bf16 arithmetic (AVX512-BF16 dot products, AMX tiles); AVX2-only CPUs emulate it.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


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


def cpu_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether an x86 CPU's flags (``cpuinfo``: /proc/cpuinfo's text) list native bf16; None where
    there are no x86 flags to read (another OS or architecture: only the probe can tell there)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.partition(":")[2].split()))
    return None


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 autocast is the faster precision on this CPU (decided once per process): by the
    CPU's flags where it has x86 ones, else by ``probe_bf16_is_faster``."""
    native = cpu_native_bf16()
    if native is None:
        return probe_bf16_is_faster()
    log.info(
        "precision: this CPU's flags %s native bf16 -> %s",
        "list" if native else "lack",
        "bf16" if native else "float32",
    )
    return native


def probe_bf16_is_faster() -> bool:
    """Whether bf16 autocast beats float32 by ``MARGIN`` in the probe, timed here and now."""
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
