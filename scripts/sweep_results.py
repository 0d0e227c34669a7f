"""Collects the runs of scripts/sweep_lm.sh into one JSON table (scripts/results/sweep_lm.json):
per run its family, data, model settings, steps and tokens seen, the held-out (valid split) NLL at
the end and the same NLL per note (comparable across tokenizers: the summed NLL over the notes of
the split).

    python scripts/sweep_results.py [--runs runs/sweep] [--out scripts/results/sweep_lm.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from compare_models import note_count  # noqa: E402  (scripts/ is on sys.path when run)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, default=REPO / "runs/sweep")
    parser.add_argument("--out", type=Path, default=REPO / "scripts/results/sweep_lm.json")
    args = parser.parse_args()
    rows = []
    for run in sorted(p for p in args.runs.iterdir() if (p / "done").exists()):
        records = [
            json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()
        ]
        valid = [r for r in records if "valid_nll" in r][-1]
        config = yaml.safe_load((run / "config.yaml").read_text())
        data_file = run / "data"  # written by sweep_lm.sh, relative to the repository
        data_name = data_file.read_text().strip() if data_file.exists() else None
        data_dir = REPO / data_name if data_name else None
        train = config["train"]
        row = {
            "name": run.name,
            "family": config.get("family"),
            "model": config["model"],
            "seq_len": config["data"]["seq_len"],
            "batch_size": train["batch_size"],
            "lr": train["lr"],
            "mixed_precision": train["mixed_precision"],
            "steps": valid["step"],
            "train_tokens": valid["step"] * train["batch_size"] * config["data"]["seq_len"],
            "valid_nll": valid["valid_nll"],
            "valid_tokens": valid["valid_tokens"],
        }
        if data_dir and (data_dir / "valid.tokens.npy").exists():
            notes = note_count(data_dir, "valid")
            row.update(
                {
                    "data": data_name,
                    "valid_notes": notes,
                    "valid_nll_per_note": valid["valid_nll"] * valid["valid_tokens"] / notes,
                }
            )
        rows.append(row)
        print(
            f"{run.name:24s} {row['family']:12s} steps {row['steps']:5d} valid nll {row['valid_nll']:.4f}"
            + (f"  per note {row['valid_nll_per_note']:.3f}" if "valid_nll_per_note" in row else "")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    budget = (
        "each run trains for the steps that take about 6 minutes of one core of this 2-core CPU at its "
        "measured idle step time (two runs shared the machine, with other work, so wall times were longer)"
    )
    args.out.write_text(
        json.dumps({"command": "scripts/sweep_lm.sh NAME...", "budget": budget, "runs": rows}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
