"""Config: presets, dotted overrides, type coercion, unknown keys refused."""

from __future__ import annotations

import pytest
import yaml

from musgen.config import dump_yaml, from_dict, parse_overrides, preset_path, resolve
from musgen.errors import ConfigError
from musgen.models.lstm import LSTMConfig


def test_presets_resolve_and_overrides_apply():
    cfg = resolve(
        LSTMConfig,
        "lstm",
        preset_path("lstm", tiny=True),
        ["train.lr=3e-4", "model.num_layers=2", "train.steps=2e3", "data.transpose=0"],
    )
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.num_layers == 2 and cfg.train.steps == 2000 and cfg.data.transpose == 0
    default = resolve(LSTMConfig, "lstm")
    assert (
        default.model.hidden_size == yaml.safe_load(preset_path("lstm").read_text())["model"]["hidden_size"]
    )


def test_unknown_keys_and_bad_values_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key config.model.hiden_size"):
        resolve(LSTMConfig, "lstm", None, ["model.hiden_size=3"])
    with pytest.raises(ConfigError, match="expected an integer"):
        resolve(LSTMConfig, "lstm", None, ["train.steps=many"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.steps"])
    other = tmp_path / "other.yaml"
    other.write_text("family: transformer\n")
    with pytest.raises(ConfigError, match="not 'lstm'"):
        resolve(LSTMConfig, "lstm", other, [])
    with pytest.raises(ConfigError, match="unknown key config.family"):
        from_dict(LSTMConfig, {"family": "lstm"})


def test_resolved_config_round_trips_through_yaml():
    cfg = resolve(LSTMConfig, "lstm", None, ["train.betas=[0.8, 0.9]"])
    data = yaml.safe_load(dump_yaml(cfg, "lstm"))
    assert data.pop("family") == "lstm"
    assert from_dict(LSTMConfig, data) == cfg


def test_string_overrides_keep_their_text():
    # YAML reads a bare `no` as False; a str field must still get "no".
    from musgen.config import TrainConfig, from_dict, parse_overrides

    cfg = from_dict(TrainConfig, parse_overrides(["mixed_precision=no", "steps=7", "lr=3e-4"]))
    assert (cfg.mixed_precision, cfg.steps, cfg.lr) == ("no", 7, 3e-4)
