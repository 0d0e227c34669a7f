"""Benchmark of MuseGAN's building blocks and training step (issue 5).

    python scripts/bench_musegan.py [--out scripts/results/bench_musegan.json] [--repeats 5]

Layers: the default preset's bar generator stack (beats -> 16ths x octaves -> steps x pitches) and
the critic's first two streams, each written two ways that compute the same function:
  patch   strided-by-kernel (transposed) convolutions as one matmul over channels-last patches (ours)
  conv    nn.ConvTranspose2d / nn.Conv2d with stride = kernel, channels first (the textbook layers)
Generator: forward + backward on 32 phrases x 4 bars. Critic: forward, the gradient penalty's
double backward, on 3 x 32 phrases (real, fake, mixed) as in a critic update.
Step: one generator update of the default preset (5 critic updates on batches of 32 + 1 generator
update), phrases per second.
Speeds are measured in this one process, round robin (the machine is shared: read the ratios).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from musgen.config import resolve  # noqa: E402
from musgen.models.musegan import MuseGANConfig, MuseGANTask, PatchExpand, PatchMerge  # noqa: E402
from musgen.training.task import StepContext  # noqa: E402

W, BARS, B = 32, 4, 32  # default widths, bars, batch


def conv_expand(cin: int, cout: int, k: tuple[int, int]) -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride=k), nn.BatchNorm2d(cout), nn.ReLU())


def generator_stacks() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    n = B * BARS
    patch = nn.Sequential(
        PatchExpand(4 * W, 2 * W, 1, 7),
        PatchExpand(2 * W, W, 4, 1),
        PatchExpand(W, W // 2, 1, 12),
        nn.Linear(W // 2, 3),
    )
    conv = nn.Sequential(
        conv_expand(4 * W, 2 * W, (1, 7)),
        conv_expand(2 * W, W, (4, 1)),
        conv_expand(W, W // 2, (1, 12)),
        nn.ConvTranspose2d(W // 2, 1, (3, 1), stride=(3, 1)),
    )
    return {"patch": (patch, torch.randn(n, 4, 1, 4 * W)), "conv": (conv, torch.randn(n, 4 * W, 4, 1))}


def critic_stacks() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    n = 3 * B * BARS
    x = (torch.rand(n, 48, 84, 4) < 0.012).float()
    patch = nn.Sequential(PatchMerge(4, W // 4, 1, 12), PatchMerge(W // 4, W // 2, 3, 1))
    conv = nn.Sequential(
        nn.Conv2d(4, W // 4, (1, 12), stride=(1, 12)),
        nn.LeakyReLU(0.2),
        nn.Conv2d(W // 4, W // 2, (3, 1), stride=(3, 1)),
        nn.LeakyReLU(0.2),
    )
    return {"patch": (patch, x), "conv": (conv, x.permute(0, 3, 1, 2).contiguous())}


def gen_pass(module: nn.Module, x: torch.Tensor) -> None:
    module(x).square().mean().backward()


def critic_pass(module: nn.Module, x: torch.Tensor) -> None:
    x = x.clone().requires_grad_(True)
    out = module(x).sum()
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    (out + grad.pow(2).sum()).backward()


def round_robin(cases: dict[str, tuple[nn.Module, torch.Tensor]], fn, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    for module, x in cases.values():
        fn(module, x)  # warm-up
    for _ in range(repeats):
        for name, (module, x) in cases.items():
            start = time.perf_counter()
            fn(module, x)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step_seconds(repeats: int) -> float:
    cfg = resolve(MuseGANConfig, "musegan", "musegan")
    task = MuseGANTask(cfg)
    from accelerate import Accelerator

    ctx = StepContext(Accelerator(cpu=True), task.optimizers(), 0.0, 0)
    real = (torch.rand(B, 4, BARS * 48, 84) < 0.012).float()
    batches = [{"roll": real}] * cfg.loss.n_critic
    task.train_step(batches, ctx)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task.train_step(batches, ctx)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "scripts" / "results" / "bench_musegan.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    gen = round_robin(generator_stacks(), gen_pass, args.repeats)
    crit = round_robin(critic_stacks(), critic_pass, args.repeats)
    step = train_step_seconds(args.repeats)
    result = {
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "generator_stack_fwd_bwd_s": gen,
        "generator_conv_over_patch": gen["conv"] / gen["patch"],
        "critic_streams_gp_s": crit,
        "critic_conv_over_patch": crit["conv"] / crit["patch"],
        "default_train_step_s": step,
        "default_phrases_per_s": 5 * B / step,
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
