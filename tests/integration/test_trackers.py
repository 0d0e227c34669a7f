"""train.log_with: Accelerate's experiment trackers get the metrics that metrics.jsonl gets (TensorBoard
read back here, across a planned stop and a resume); an unknown or missing tracker stops before
training with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import musgen
from musgen.cli import main
from musgen.config import TRACKERS
from musgen.training.run_files import read_metrics


def _scalars(event_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag of the event files in ``event_dir``: {tag: {step: value}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_dir))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_gets_the_training_loss_and_validation_nll_across_a_resume(bach_data, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    cadence = ["train.steps=6", "train.log_every=2", "train.eval_every=3", "train.save_every=3"]
    musgen.train(
        "lstm",
        bach_data,
        run,
        config="tiny/lstm",
        overrides=[*cadence, "train.log_with=[tensorboard]", "train.stop_at=3"],
        progress=False,
    )
    # The resumed run reads log_with from the run's config.yaml and logs to the same folder.
    musgen.train("lstm", bach_data, run, resume=True, overrides=["train.stop_at=0"], progress=False)

    records = read_metrics(run / "metrics.jsonl")
    train_loss = {r["step"]: r["loss"] for r in records if "loss" in r}
    valid_nll = {r["step"]: r["valid_nll"] for r in records if "valid_nll" in r}
    assert sorted(train_loss) == [2, 4, 6] and sorted(valid_nll) == [3, 6]

    assert [p.name for p in (run / "tensorboard").iterdir()] == ["run"]  # one run, named after RUN_DIR
    scalars = _scalars(run / "tensorboard" / "run")
    assert scalars["loss"] == pytest.approx(train_loss)
    assert scalars["valid_nll"] == pytest.approx(valid_nll)
    assert set(scalars["lr"]) == set(train_loss)


def test_an_unknown_or_missing_tracker_is_one_line_and_exit_2(bach_data, tmp_path, capsys):
    from accelerate.tracking import get_available_trackers

    installed = {getattr(t, "value", str(t)) for t in get_available_trackers()}
    cases = [("nosuch", "train.log_with: unknown tracker 'nosuch'")]
    missing = [name for name in TRACKERS if name not in installed]
    if missing:
        cases.append((missing[0], f"train.log_with: the {missing[0]} tracker is not installed"))
    for name, message in cases:
        out = tmp_path / name
        capsys.readouterr()
        train = ["train", "lstm", "--config", "tiny/lstm", "--data", str(bach_data), "--out", str(out)]
        code = main([*train, "--set", f"train.log_with=[{name}]", "-q"])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (name, code, lines)
        assert not out.exists()  # refused before the run directory is written


def test_the_accepted_tracker_names_are_accelerates():
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    assert set(TRACKERS) <= set(LOGGER_TYPE_TO_CLASS)
