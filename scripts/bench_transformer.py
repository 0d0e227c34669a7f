"""Benchmark of the Music Transformer's attention and sampling (issue 3).

    python scripts/bench_transformer.py [--out scripts/results/bench_transformer.json] [--quick]

Training: tokens/s of one optimizer step (forward, backward, AdamW) at 6 layers, d_model 256, 8 heads,
batch 8, sequence 512 and 2048, for
  relative        our relative attention (skewing, 128-query blocks)
  relative_noblk  the same skewing in one block (the paper's procedure as written)
  relative_rc     relative + recomputing the attention logits in backward (attention memory ~ L*D)
  naive           Shaw et al.'s reference that gathers an (L, L, D_h) tensor per head
  plain           plain causal attention through F.scaled_dot_product_attention
  gpt2            transformers' GPT-2 of the same size (SDPA attention)
Speeds are measured in this one process, round-robin over the models (the machine is shared and
noisy, so the ratios are what to read). Peak memory is the peak resident set size (VmHWM) of a fresh
child process running the same steps, minus its size before the first step.

Sampling: new tokens/s from a 1-token primer: the eager KV cache (relative_cached), the static cache
with the torch.compile'd step (relative_compiled, compiled in an untimed warm-up), no cache, and
GPT-2 ``generate()``; vs_gpt2 is each one's speed over GPT-2's at the same size.

Weight pass (--only weight_pass): what one batch-1 token's 24 matrix-vector products cost, in ms:
reading the weights once (a sum), the library's product (F.linear) eager and compiled, and the
product written as a sum that inductor vectorises (musgen.generate.static_decode._linear).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from musgen.generate.sampling import SamplingControls, sample_sequences  # noqa: E402
from musgen.models.transformer import MusicTransformer, TransformerModelConfig  # noqa: E402

VOCAB = 357  # the REMI vocabulary of the bach data set
# Dropout 0.1 on embeddings and residuals, none on attention weights (the presets' defaults).
SIZE = dict(d_model=256, num_layers=6, num_heads=8, d_ff=1024, dropout=0.1, attention_dropout=0.0)
VARIANTS = {
    "relative": dict(attention="relative"),  # the default kernel: band on a CPU
    "relative_skew": dict(attention="relative", attention_kernel="skew"),  # the kernel before band
    "relative_noblk": dict(attention="relative", attention_chunk=0),
    "relative_rc": dict(attention="relative", attention_recompute=True),
    "naive": dict(attention="relative_naive", attention_chunk=0),
    "plain": dict(attention="plain"),
}


def build(name: str, seq_len: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=VOCAB,
            n_positions=max(seq_len, 2048),
            n_embd=SIZE["d_model"],
            n_layer=SIZE["num_layers"],
            n_head=SIZE["num_heads"],
            n_inner=SIZE["d_ff"],
            resid_pdrop=0.1,
            embd_pdrop=0.1,
            attn_pdrop=0.0,
            bos_token_id=1,
            eos_token_id=2,
            attn_implementation="sdpa",
        )
        return GPT2LMHeadModel(cfg)
    cfg = TransformerModelConfig(**SIZE, max_relative_position=512, **VARIANTS[name])
    return MusicTransformer(VOCAB, cfg, context=max(seq_len, 2048))


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    return out.logits if hasattr(out, "logits") else out[0]


class Trainer:
    """One model + AdamW; ``step()`` runs one real optimizer step on a random batch."""

    def __init__(self, name: str, seq_len: int, batch: int, bf16: bool = False, compile: bool = False):
        self.model = build(name, seq_len).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.forward = torch.compile(self.model) if compile else self.model  # as train.compile does
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, VOCAB, (batch, seq_len + 1), generator=gen)
        self.bf16 = bf16

    def step(self) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = _logits(self.forward, self.ids[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), self.ids[:, 1:].flatten())
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def peak_memory_mib(name: str, seq_len: int, batch: int, steps: int = 2) -> dict:
    """Runs ``steps`` training steps in a fresh process; peak RSS growth in MiB (or the failure)."""
    job = json.dumps({"name": name, "seq_len": seq_len, "batch": batch, "steps": steps})
    proc = subprocess.run([sys.executable, __file__, "--child", job], capture_output=True, text=True)
    if proc.returncode != 0:
        return {
            "error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200],
            "returncode": proc.returncode,
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(job: dict) -> None:
    trainer = Trainer(job["name"], job["seq_len"], job["batch"])
    before = _status_mib("VmRSS")
    for _ in range(job["steps"]):
        trainer.step()
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across fork + exec, so a child would
    # report the parent's peak.
    peak = _status_mib("VmHWM")
    print(json.dumps({"peak_mib": round(peak - before, 1), "base_mib": round(before, 1)}))


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def remeasure_memory(path: Path) -> None:
    """Recomputes the peak memory of every training row of an existing result file."""
    result = json.loads(path.read_text())
    for key in ("training", "training_1024x1"):
        for row in result.get(key, []):
            if "skipped" in row:
                continue
            long = row["seq_len"] * row["batch"] > 8192
            row.update(peak_memory_mib(row["model"], row["seq_len"], row["batch"], steps=1 if long else 2))
            print(json.dumps(row), flush=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def estimated_gib(name: str, seq_len: int, batch: int) -> float:
    """Activation memory the unblocked variants keep for backward, estimated before running so that
    the benchmark never pushes the machine into swap or the OOM killer: the naive reference keeps
    an (H, L, L, D_h) float32 gather per layer (plus one gradient of it); one-block skewing keeps
    about five (B, H, L, L) float32 tensors per layer (logits, shifted copy, masked bias, softmax)."""
    layers, d, heads = SIZE["num_layers"], SIZE["d_model"], SIZE["num_heads"]
    if name == "naive":
        return (layers + 1) * seq_len**2 * d * 4 / 2**30
    if name == "relative_noblk":
        return layers * 5 * batch * heads * seq_len**2 * 4 / 2**30
    return 0.0


def bench_training(
    seq_lens: list[int], batch: int, reps: int, names: list[str], mem_budget_gib: float
) -> list[dict]:
    rows = []
    for seq_len in seq_lens:
        long = seq_len * batch > 8192  # a step takes about a minute here: fewer repeats
        mem_steps = 1 if long else 2
        active = {}
        for name in names:
            gib = estimated_gib(name, seq_len, batch)
            if gib > mem_budget_gib:
                rows.append(
                    {
                        "model": name,
                        "seq_len": seq_len,
                        "batch": batch,
                        "skipped": f"needs about {gib:.0f} GiB of activations (machine: 23 GiB)",
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
                continue
            active[name] = Trainer(name, seq_len, batch)
            active[name].step()  # warm-up
        times: dict[str, list[float]] = {n: [] for n in active}
        for _ in range(
            max(2, reps - 1) if long else reps
        ):  # round-robin, so drifting machine load hits every model alike
            for name, trainer in active.items():
                times[name].append(trainer.step())
        base = statistics.median(times["plain"]) if "plain" in times else None
        for name, ts in times.items():
            med = statistics.median(ts)
            row = {
                "model": name,
                "seq_len": seq_len,
                "batch": batch,
                "step_s": round(med, 3),
                "tokens_per_s": round(batch * seq_len / med, 1),
                "params": sum(p.numel() for p in active[name].model.parameters()),
                "time_vs_plain": round(med / base, 2) if base else None,
            }
            row.update(peak_memory_mib(name, seq_len, batch, steps=mem_steps))
            rows.append(row)
            print(json.dumps(row), flush=True)
        del active
    return rows


def round_robin_medians(trainers: dict[str, Trainer], reps: int) -> dict[str, float]:
    """Median step seconds of each trainer over ``reps`` rounds, one step of each per round, so
    drifting machine load hits every one alike."""
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(reps):
        for name, trainer in trainers.items():
            times[name].append(trainer.step())
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_precision(seq_len: int, batch: int, reps: int) -> list[dict]:
    rows = []
    trainers = {p: Trainer("relative", seq_len, batch, bf16=(p == "bf16")) for p in ("fp32", "bf16")}
    for t in trainers.values():
        t.step()
    medians = round_robin_medians(trainers, reps)
    fp32 = medians["fp32"]
    for p, med in medians.items():
        rows.append(
            {
                "precision": p,
                "seq_len": seq_len,
                "batch": batch,
                "step_s": round(med, 3),
                "tokens_per_s": round(batch * seq_len / med, 1),
                "time_vs_fp32": round(med / fp32, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


# issue 23's training paths: (model, bf16 autocast, torch.compile'd forward + backward)
TRAIN_PATHS = {
    "relative": ("relative", False, False),  # today's step: the reference of the ratios
    "relative_bf16": ("relative", True, False),
    "relative_compiled": ("relative", False, True),
    "relative_bf16_compiled": ("relative", True, True),
    "relative_skew": ("relative_skew", False, False),
    "plain": ("plain", False, False),
    "plain_bf16_compiled": ("plain", True, True),
    "gpt2": ("gpt2", False, False),
}
PATHS_512 = [p for p in TRAIN_PATHS if p not in ("plain_bf16_compiled", "relative_skew")]
# the relative attention kernels (band: the default on a CPU; skew: the blocked skewing) next to
# plain attention, eager float32, at 512 x 8 and 2,048 x 8 (--only kernels)
PATHS_KERNELS = ["plain", "relative", "relative_skew"]
# at 2,048 x 8 (issue 23: relative attention within 1.6x plain attention's step time), per precision
# (fp32 compiled left out: slower than eager at 512 x 8, and its compilation took 7 min here)
PATHS_2048 = ["plain", "relative", "plain_bf16_compiled", "relative_bf16_compiled"]


def bench_train_paths(seq_len: int, batch: int, reps: int, paths: list[str]) -> list[dict]:
    """Training tokens/s of each path in TRAIN_PATHS, round robin in this process; compiling happens
    in an untimed warm-up (its seconds reported)."""
    trainers, compile_s = {}, {}
    for name in paths:
        model, bf16, compiled = TRAIN_PATHS[name]
        trainers[name] = Trainer(model, seq_len, batch, bf16=bf16, compile=compiled)
        start = time.perf_counter()
        trainers[name].step()  # warm-up (and compilation)
        trainers[name].step()
        compile_s[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: warm-up {compile_s[name]} s", flush=True)
    medians = round_robin_medians(trainers, reps)
    base = medians[paths[0]]  # the first path is the reference of the ratios
    rows = []
    for name, med in medians.items():
        rows.append(
            {
                "path": name,
                "seq_len": seq_len,
                "batch": batch,
                "step_s": round(med, 3),
                "tokens_per_s": round(batch * seq_len / med, 1),
                f"speed_vs_{paths[0]}": round(base / med, 2),
                "warmup_s": compile_s[name],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


@torch.no_grad()
def bench_weight_pass(reps: int) -> dict:
    """ms per token for the 24 weight matrices of the 6 x 256 model, each applied to one vector."""
    torch.manual_seed(0)
    d, ff = SIZE["d_model"], SIZE["d_ff"]
    layers = [
        nn.Linear(i, o) for _ in range(SIZE["num_layers"]) for i, o in ((d, 3 * d), (d, d), (d, ff), (ff, d))
    ]
    inputs = {n: torch.randn(1, 1, n) for n in (d, ff)}

    # each returns its results: a compiled function drops work whose result is never used
    def library() -> list[torch.Tensor]:
        return [layer(inputs[layer.in_features]) for layer in layers]

    def as_sum() -> list[torch.Tensor]:  # what the compiled step does at batch 1 (static_decode._linear)
        return [(inputs[m.in_features][..., None, :] * m.weight).sum(-1) + m.bias for m in layers]

    def read() -> list[torch.Tensor]:
        return [layer.weight.sum() for layer in layers]

    options = {"realize_opcount_threshold": 0}
    paths = {
        "read_weights_once": read,
        "library_eager": library,
        "library_compiled": torch.compile(library, options=options),
        "sum_compiled": torch.compile(as_sum, options=options),
    }
    result: dict = {"weights_mb": round(sum(layer.weight.numel() * 4 for layer in layers) / 1e6, 1)}
    for name, fn in paths.items():
        fn()  # compiles
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            for _ in range(100):
                fn()
            times.append((time.perf_counter() - start) / 100)
        result[f"{name}_ms"] = round(statistics.median(times) * 1e3, 3)
    print(json.dumps(result), flush=True)
    return result


def matmul_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return round(2 * n**3 * reps / (time.perf_counter() - start) / 1e9, 1)


def sample_once(name: str, model: torch.nn.Module, length: int, batch: int) -> None:
    if name == "gpt2_generate":
        ones = torch.ones(batch, 1, dtype=torch.long)
        model.generate(
            ones,
            attention_mask=ones,
            do_sample=True,
            top_k=0,
            max_new_tokens=length,
            min_new_tokens=length,
            pad_token_id=0,
            eos_token_id=None,
        )
        return
    # no early EOS: full length; relative_compiled: the static cache and the compiled step
    ctl = SamplingControls(length=length, min_length=length, seed=0, compile=name.endswith("_compiled"))
    sample_sequences(model, [1], batch, ctl, eos_id=2, pad_id=0, use_cache=not name.endswith("_uncached"))


@torch.no_grad()
def bench_sampling(lengths: list[int], batches: list[int], uncached_budget: int, reps: int) -> list[dict]:
    """New tokens per second (all samples of the batch counted), the median of ``reps`` runs taken
    round-robin (each sampler's runs interleaved with the others', so a busy machine slows them
    alike). Uncached decoding reruns the whole prefix for each token: run once, and skipped where
    batch * length exceeds ``uncached_budget``."""
    rows = []
    relative = build("relative", 2048).eval()
    models = {
        "relative_cached": relative,
        "relative_compiled": relative,
        "relative_uncached": relative,
        "gpt2_generate": build("gpt2", 2048).eval(),
    }
    for name, model in models.items():  # warm-up: first calls pay for lazy imports and set-up
        sample_once(name, model, 8, 2)
    for length in lengths:  # compile the step once per batch size and cache capacity, untimed
        for batch in batches:
            start = time.perf_counter()
            sample_once("relative_compiled", relative, length, batch)
            print(
                f"compiled sampler warm-up {length} x {batch}: {time.perf_counter() - start:.1f} s",
                flush=True,
            )
    for length in lengths:
        for batch in batches:
            times: dict[str, list[float]] = {}
            for rep in range(reps):
                for name, model in models.items():
                    if name == "relative_uncached" and (rep or batch * length > uncached_budget):
                        continue
                    start = time.perf_counter()
                    sample_once(name, model, length, batch)
                    times.setdefault(name, []).append(time.perf_counter() - start)
            for name in models:
                row: dict = {"sampler": name, "new_tokens": length, "batch": batch}
                if name not in times:
                    row["skipped"] = f"batch x length > {uncached_budget} (quadratic time)"
                else:
                    sec = statistics.median(times[name])
                    row.update(
                        seconds=round(sec, 2),
                        tokens_per_s=round(batch * length / sec, 1),
                        runs=[round(t, 3) for t in times[name]],
                    )
                rows.append(row)
                print(json.dumps(row), flush=True)
    for row in rows:  # speed relative to GPT-2's generate() at the same size
        gpt2 = next(
            r
            for r in rows
            if r["sampler"] == "gpt2_generate"
            and (r["new_tokens"], r["batch"]) == (row["new_tokens"], row["batch"])
        )
        if "tokens_per_s" in row:
            row["vs_gpt2"] = round(row["tokens_per_s"] / gpt2["tokens_per_s"], 2)
    return rows


def markdown(result: dict) -> str:
    """The README tables of a result file."""
    lines = [
        "| model | seq x batch | tokens/s | time vs plain | peak memory (MiB) |",
        "|---|---|---|---|---|",
    ]
    for row in result.get("training", []) + result.get("training_1024x1", []):
        size = f"{row['seq_len']} x {row['batch']}"
        if "skipped" in row:
            lines.append(f"| {row['model']} | {size} | not run: {row['skipped']} | | |")
        else:
            lines.append(
                f"| {row['model']} | {size} | {row['tokens_per_s']:,.0f} | {row['time_vs_plain']:.2f} | "
                f"{row.get('peak_mib', float('nan')):,.0f} |"
            )
    for key in ("train_paths", "train_paths_2048", "train_kernels"):
        rows = result.get(key, [])
        if rows:
            ref = next(k for k in rows[0] if k.startswith("speed_vs_"))
            memory = "peak_mib" in rows[0]
            lines += [
                "",
                f"| training path | seq x batch | tokens/s | {ref.replace('_', ' ')} | warm-up (s) |"
                + (" peak memory (MiB) |" if memory else ""),
                "|---|---|---|---|---|" + ("---|" if memory else ""),
            ]
            for row in rows:
                lines.append(
                    f"| {row['path']} | {row['seq_len']} x {row['batch']} | {row['tokens_per_s']:,.0f} | "
                    f"{row[ref]:.2f} | {row['warmup_s']} |" + (f" {row['peak_mib']:,.0f} |" if memory else "")
                )
    lines += ["", "| precision | seq x batch | tokens/s | time vs fp32 |", "|---|---|---|---|"]
    for row in result.get("precision", []):
        lines.append(
            f"| {row['precision']} | {row['seq_len']} x {row['batch']} | {row['tokens_per_s']:,.0f} | "
            f"{row['time_vs_fp32']:.1f} |"
        )
    lines += [
        "",
        "| sampler | new tokens x batch | tokens/s | vs GPT-2 generate() | seconds |",
        "|---|---|---|---|---|",
    ]
    for row in result.get("sampling", []):
        size = f"{row['new_tokens']} x {row['batch']}"
        if "skipped" in row:
            lines.append(f"| {row['sampler']} | {size} | not run: {row['skipped']} | | |")
        else:
            lines.append(
                f"| {row['sampler']} | {size} | {row['tokens_per_s']:,.0f} | {row.get('vs_gpt2', '')} | "
                f"{row['seconds']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "scripts" / "results" / "bench_transformer.json"))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the script")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="train,naive1024,precision,train_paths,sampling")
    parser.add_argument(
        "--memory-only", action="store_true", help="only redo the peak memory of --out's rows"
    )
    parser.add_argument("--table", action="store_true", help="print the README tables of --out and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    if args.memory_only:
        remeasure_memory(Path(args.out))
        return
    only = set(args.only.split(","))
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() and args.only != parser.get_default("only") else {}
    if args.quick:
        SIZE.update(num_layers=2)
    names = ["relative", "relative_noblk", "relative_rc", "naive", "plain", "gpt2"]
    result: dict = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "matmul_gflops_fp32": matmul_gflops(torch.float32),
            "matmul_gflops_bf16": matmul_gflops(torch.bfloat16, n=256 if args.quick else 512, reps=1),
        },
        "size": {**SIZE, "vocab": VOCAB, "max_relative_position": 512},
    }
    print(json.dumps(result["machine"]), flush=True)
    if "train" in only:
        seq_lens = [128, 256] if args.quick else [512, 2048]
        result["training"] = bench_training(
            seq_lens, 2 if args.quick else 8, args.reps, names, mem_budget_gib=12
        )
    if "naive1024" in only:  # the point of comparison: sequence 1024, batch 1
        result["training_1024x1"] = bench_training(
            [256 if args.quick else 1024], 1, args.reps, ["relative", "naive", "plain"], mem_budget_gib=12
        )
    if "precision" in only:  # bf16 matmuls can be very slow on CPUs without AVX512-BF16/AMX: small size
        result["precision"] = bench_precision(128 if args.quick else 512, 1, max(1, args.reps - 1))
    if "train_paths" in only:
        result["train_paths"] = bench_train_paths(
            128 if args.quick else 512, 2 if args.quick else 8, args.reps, PATHS_512
        )
    if "train_paths_2048" in only:  # not in the default run: ~10 min of compiling and 20-s steps
        result["train_paths_2048"] = bench_train_paths(
            256 if args.quick else 2048, 2 if args.quick else 8, max(2, args.reps - 1), PATHS_2048
        )
    if "kernels" in only:  # ~9 min on one thread: three 2,048 x 8 steps take ~70 s
        batch = 2 if args.quick else 8
        result["train_kernels"] = [
            {**row, **peak_memory_mib(TRAIN_PATHS[row["path"]][0], seq_len, batch)}  # a fresh process each
            for seq_len in ([128, 256] if args.quick else [512, 2048])
            for row in bench_train_paths(seq_len, batch, max(2, args.reps - 1), PATHS_KERNELS)
        ]
    if "weight_pass" in only:
        result["weight_pass"] = bench_weight_pass(args.reps)
    if "sampling" in only:
        lengths = [32, 64] if args.quick else [256, 1024]
        uncached = 64 if args.quick else 2048
        result["sampling"] = bench_sampling(lengths, [1, 8], uncached_budget=uncached, reps=args.reps)
    out.parent.mkdir(parents=True, exist_ok=True)
    if previous:  # --only updates its sections; the machine they ran on is kept beside them
        for section in only:
            result[f"machine_{section}"] = result["machine"]
        result["machine"] = previous.get("machine", result["machine"])
    out.write_text(json.dumps({**previous, **result}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
