"""Calibrates a voice MuseGAN checkpoint's rests and chooses its sampling temperature (issue 20),
writing a calibrated copy: for each temperature of a grid, each voice's rest logit is shifted until
the generated phrases rest as often as the training phrases do (``MuseGANGenerator.calibrate_rests``),
then ``--num-samples`` phrases are compared with the VALID split's phrases (the test split stays for
``musgen eval``) by the feature Frechet distance and mgeval's overlap areas. The temperature with the
lowest Frechet distance wins; its offsets go into the copy's generator weights, the temperature into
its musgen.json (``"sampling"``, where ``musgen sample`` and ``musgen eval`` find it), and the whole
table into ``"calibration"``.

    python scripts/calibrate_musegan.py runs/musegan --data data/bach --out runs/musegan-calibrated \\
        [--grid 1.0,0.9,0.8,0.7] [--num-samples 256] [--out-json scripts/results/calibrate_musegan.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from safetensors.torch import save_model  # noqa: E402

import musgen  # noqa: E402
from musgen.checkpoint import resolve_checkpoint, set_sampling_defaults, update_meta  # noqa: E402
from musgen.eval.evaluate import evenly, symbolic_statistics  # noqa: E402
from musgen.eval.musegan import data_phrases  # noqa: E402
from musgen.models.musegan import rest_share, unwrap  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a musegan checkpoint or RUN_DIR (voice output)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the calibrated checkpoint goes")
    parser.add_argument("--grid", default="1.0,0.9,0.8,0.7", help="temperatures, comma-separated")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", type=Path, help="JSON file for the table")
    args = parser.parse_args()

    source = resolve_checkpoint(args.checkpoint)
    generator = musgen.load(source)
    gen = unwrap(generator.models["generator"])
    cfg = generator.cfg.data
    target = rest_share(data_phrases(args.data, ("train",), cfg))
    valid = data_phrases(args.data, ("valid",), cfg)
    reference = [generator.roll_to_score(roll) for roll in evenly(list(valid))]
    base = gen.voice_bias.detach().clone()
    rows = []
    for temperature in (float(t) for t in args.grid.split(",")):
        start = time.time()
        with torch.no_grad():
            gen.voice_bias.copy_(base)
        offsets = generator.calibrate_rests(
            target.tolist(), temperature=temperature, num_samples=args.num_samples, seed=args.seed + 1000
        )
        rolls = generator.generate_rolls(args.num_samples, seed=args.seed, temperature=temperature)
        stats = symbolic_statistics(reference, [generator.roll_to_score(r) for r in rolls], None, args.seed)
        overlaps = [
            f["overlap_area"] for f in stats["features"].values() if f.get("overlap_area") is not None
        ]
        rows.append(
            {
                "temperature": temperature,
                "rest_offsets": [round(x, 3) for x in offsets],
                "rest_share": [round(float(x), 4) for x in rest_share(rolls)],
                "feature_frechet": stats["feature_frechet"],
                "mean_overlap_area": stats["mean_overlap_area"],
                "min_overlap_area": min(overlaps),
                "seconds": round(time.time() - start, 1),
            }
        )
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}),
            flush=True,
        )
    best = min(rows, key=lambda r: r["feature_frechet"])
    with torch.no_grad():
        gen.voice_bias.copy_(base)
        gen.voice_bias[:, -1] += torch.tensor(best["rest_offsets"])
    result = {
        "source": str(source),
        "data": str(args.data),
        "split": "valid",
        "num_samples": args.num_samples,
        "seed": args.seed,
        "train_rest_share": [round(float(x), 4) for x in target],
        "criterion": "lowest feature Frechet distance to the valid phrases, rests calibrated at each temperature",
        "chosen": {"temperature": best["temperature"], "rest_offsets": best["rest_offsets"]},
        "rows": rows,
    }
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(source, args.out)
    if (args.checkpoint / "metrics.jsonl").is_file():  # a RUN_DIR's training curves go along (pack, report)
        shutil.copyfile(args.checkpoint / "metrics.jsonl", args.out / "metrics.jsonl")
    save_model(gen, str(args.out / "generator.safetensors"))
    set_sampling_defaults(
        args.out, {"temperature": best["temperature"]}, {"by": "scripts/calibrate_musegan.py"}
    )
    update_meta(args.out, {"calibration": result})
    print("chosen:", result["chosen"], "->", args.out)
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
