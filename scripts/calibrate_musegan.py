"""Calibrates a voice MuseGAN checkpoint's sampling to the training data and picks its settings on
the valid split (issue 20), writing a calibrated copy. At each point of a grid (temperature x
per-voice temperature multipliers x harmony scale), in this order:

- ``--intervals``: the voice-leading tables are tilted until each voice moves from one 16th to the
  next by each interval (a hold included, per place in the beat) as often as the training phrases'
  voices do (``MuseGANGenerator.calibrate_intervals``);
- ``--voice-temperatures upc``: each voice's temperature multiplier is set until it uses as many
  pitch classes per bar (UPC) as the training phrases' voice (else the given sets are tried);
- each voice's restrike probabilities are scaled until it repeats notes as often as the data's
  (``calibrate_restrikes``, model.restrikes), then its rest logit shifted until it rests as often
  (``calibrate_rests``);

then ``--num-samples`` phrases are compared with the VALID split's phrases (the test split stays for
``musgen eval``) by the feature Frechet distance and mgeval's overlap areas. The point with the
lowest Frechet distance wins: its tables, restrike factors and rest offsets go into the copy's
generator weights, its temperature into musgen.json (``"sampling"``, where ``musgen sample`` and
``musgen eval`` find it), its voice multipliers and harmony scale into config.yaml
(``model.voice_temperatures``, ``model.harmony_scale``), and the whole table into musgen.json's
``"calibration"``. ``--harmony`` turns ``model.harmony`` on in a checkpoint trained without it (the
table from ``--data``'s training phrases; every trained weight kept).

    python scripts/calibrate_musegan.py runs/musegan --data data/bach --out runs/musegan-calibrated \\
        [--grid 1.0,0.9,0.8,0.7] [--intervals] [--voice-temperatures upc | "1,1,1,1;1.25,1,1,1"] \\
        [--harmony 1,2] [--num-samples 256] [--out-json scripts/results/calibrate_musegan.json]
"""

from __future__ import annotations

import argparse
import itertools
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
from musgen.config import dump_yaml  # noqa: E402
from musgen.data.pianoroll_data import RollPhrases  # noqa: E402
from musgen.eval.evaluate import evenly, symbolic_statistics  # noqa: E402
from musgen.eval.musegan import data_phrases  # noqa: E402
from musgen.models.musegan import (  # noqa: E402
    MuseGANGenerator,
    RollGenerator,
    repeat_share,
    rest_share,
    unwrap,
    voice_upc,
)


def add_harmony(generator: MuseGANGenerator, phrases: RollPhrases) -> None:
    """Turns ``model.harmony`` on in a loaded voice MuseGAN: its generator rebuilt with the harmony
    table (from the training ``phrases``), every trained weight kept."""
    generator.cfg.model.harmony = True
    generator.cfg.validate()
    old = unwrap(generator.models["generator"])
    new = RollGenerator(generator.cfg.model, generator.cfg.data).to(generator.device)
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    assert missing == ["harmony"] and not unexpected, (missing, unexpected)
    new.set_harmony(*phrases.voice_intervals(new.sub_steps))
    generator.models["generator"] = new.eval()


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
    parser.add_argument(
        "--voice-temperatures",
        help="per-voice multipliers of the temperature to try, one value per track, sets split by ';', "
        "or 'upc': calibrated until each voice uses as many pitch classes per bar as in the training "
        "phrases (default: the checkpoint's)",
    )
    parser.add_argument(
        "--harmony",
        help="harmony scales to try, comma-separated; turns model.harmony on where the checkpoint has it off",
    )
    parser.add_argument(
        "--harmony-chain",
        action="store_true",
        help="set model.harmony_chain: each voice biased by every voice chosen before it",
    )
    parser.add_argument(
        "--intervals",
        action="store_true",
        help="first tilt the voice-leading tables until each voice moves by each interval as often as "
        "in the training phrases (MuseGANGenerator.calibrate_intervals)",
    )
    args = parser.parse_args()

    source = resolve_checkpoint(args.checkpoint)
    generator = musgen.load(source)
    cfg = generator.cfg.data
    phrases = RollPhrases(args.data, "train", cfg, progress=False)  # for the data's tables
    if args.harmony is not None and not generator.cfg.model.harmony:
        add_harmony(generator, phrases)
    gen = unwrap(generator.models["generator"])
    if args.harmony_chain:
        generator.cfg.model.harmony_chain = gen.harmony_chain = True
        generator.cfg.validate()
    train = data_phrases(args.data, ("train",), cfg)
    target, target_repeats = rest_share(train), repeat_share(train)
    target_upc = voice_upc(train, cfg).tolist()
    valid = data_phrases(args.data, ("valid",), cfg)
    reference = [generator.roll_to_score(roll) for roll in evenly(list(valid))]
    base = gen.voice_bias.detach().clone()
    base_restrike = None if gen.restrike is None else gen.restrike.clone()
    base_transition = None if gen.transition is None else gen.transition.detach().clone()
    if args.intervals:
        if base_transition is None:
            parser.error("--intervals needs a musegan with model.voice_leading=true")
        train_moves = phrases.voice_transitions(gen.sub_steps, base_transition.shape[0])
    scales = [float(h) for h in args.harmony.split(",")] if args.harmony else [gen.harmony_scale]
    voice_sets: list[list[float] | None] = [gen.voice_temperatures.tolist()]
    if args.voice_temperatures == "upc":
        voice_sets = [None]  # calibrated at each point
    elif args.voice_temperatures:
        voice_sets = [[float(t) for t in group.split(",")] for group in args.voice_temperatures.split(";")]
    if any(v is not None and len(v) != gen.num_tracks for v in voice_sets):
        parser.error(f"--voice-temperatures: each set needs {gen.num_tracks} values")
    rows: list[dict] = []
    tilted: dict[int, torch.Tensor] = {}  # row -> its tilted voice-leading tables (--intervals)
    for scale, chosen_voices, temperature in itertools.product(
        scales, voice_sets, (float(t) for t in args.grid.split(","))
    ):
        start = time.time()
        gen.harmony_scale, voices = scale, chosen_voices
        factors = None
        with torch.no_grad():
            gen.voice_bias.copy_(base)
            if args.intervals:  # moves first: they set how often a voice holds, leaps, steps
                gen.voice_temperatures = torch.ones(gen.num_tracks)
                gen.transition.copy_(base_transition)
                generator.calibrate_intervals(
                    train_moves, temperature=temperature, num_samples=args.num_samples, seed=args.seed + 4000
                )
                tilted[len(rows)] = gen.transition.detach().clone()
            if voices is None:  # each voice's temperature from its pitch classes per bar
                voices = generator.calibrate_voice_temperatures(
                    target_upc, temperature=temperature, num_samples=args.num_samples, seed=args.seed + 3000
                )
            gen.voice_temperatures = torch.tensor(voices)
            if base_restrike is not None:  # repeated notes first: their silent steps count as rests
                gen.restrike.copy_(base_restrike)
                factors = generator.calibrate_restrikes(
                    target_repeats.tolist(),
                    temperature=temperature,
                    num_samples=args.num_samples,
                    seed=args.seed + 2000,
                )
        offsets = generator.calibrate_rests(
            target.tolist(), temperature=temperature, num_samples=args.num_samples, seed=args.seed + 1000
        )
        rolls = generator.generate_rolls(args.num_samples, seed=args.seed, temperature=temperature)
        upc = voice_upc(rolls, cfg)
        stats = symbolic_statistics(reference, [generator.roll_to_score(r) for r in rolls], None, args.seed)
        overlaps = [
            f["overlap_area"] for f in stats["features"].values() if f.get("overlap_area") is not None
        ]
        rows.append(
            {
                "temperature": temperature,
                "voice_temperatures": [round(x, 3) for x in voices],
                "harmony_scale": scale if generator.cfg.model.harmony else None,
                "rest_offsets": [round(x, 3) for x in offsets],
                "rest_share": [round(float(x), 4) for x in rest_share(rolls)],
                "restrike_factors": None if factors is None else [round(x, 3) for x in factors],
                "repeat_share": [round(float(x), 4) for x in repeat_share(rolls)],
                "upc": [round(float(x), 3) for x in upc],
                "intervals_calibrated": args.intervals,
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
        if base_restrike is not None:
            gen.restrike.copy_((base_restrike * torch.tensor(best["restrike_factors"])).clamp(max=1.0))
        if args.intervals:
            gen.transition.copy_(tilted[rows.index(best)])
    model = generator.cfg.model
    model.voice_temperatures = [] if set(best["voice_temperatures"]) == {1.0} else best["voice_temperatures"]
    if model.harmony:
        model.harmony_scale = best["harmony_scale"]
    result = {
        "source": str(source),
        "data": str(args.data),
        "split": "valid",
        "num_samples": args.num_samples,
        "seed": args.seed,
        "train_rest_share": [round(float(x), 4) for x in target],
        "train_repeat_share": [round(float(x), 4) for x in target_repeats],
        "train_upc": [round(float(x), 3) for x in target_upc],
        "criterion": "lowest feature Frechet distance to the valid phrases, repeated notes and rests "
        "calibrated at each point",
        "chosen": {
            k: best[k]
            for k in (
                "temperature",
                "voice_temperatures",
                "harmony_scale",
                "restrike_factors",
                "rest_offsets",
            )
        },
        "rows": rows,
    }
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(source, args.out)
    (args.out / "eval.json").unlink(missing_ok=True)  # the source's evaluation does not describe the copy
    if (args.checkpoint / "metrics.jsonl").is_file():  # a RUN_DIR's training curves go along (pack, report)
        shutil.copyfile(args.checkpoint / "metrics.jsonl", args.out / "metrics.jsonl")
    save_model(gen, str(args.out / "generator.safetensors"))
    # the config that builds the generator (its harmony table) and draws each voice as chosen
    (args.out / "config.yaml").write_text(dump_yaml(generator.cfg, "musegan"))
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
