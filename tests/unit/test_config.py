"""Config: packaged presets and their names, dotted overrides, type coercion, unknown keys refused,
validation once per resolved tree."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from musgen import config as config_module
from musgen.config import (
    PRESET_DIR,
    TrainConfig,
    available_presets,
    dump_yaml,
    from_dict,
    parse_overrides,
    preset_path,
    read_yaml,
    resolve,
    to_dict,
)
from musgen.errors import ConfigError
from musgen.models.lstm import LSTMConfig
from musgen.models.musegan import MuseGANConfig
from musgen.registry import FAMILIES, get_family


def test_presets_resolve_and_overrides_apply():
    cfg = resolve(
        LSTMConfig,
        "lstm",
        "tiny/lstm",
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


def test_free_form_dict_overrides_are_yaml_values():
    # a bare dict field (miditok's extra settings) takes --set values as YAML: false is False
    from musgen.config import from_dict, parse_overrides
    from musgen.data.build import DataConfig

    cfg = from_dict(DataConfig, parse_overrides(["tokenizer_params.use_velocities=false", "tracks=[a, b]"]))
    assert cfg.tokenizer_params == {"use_velocities": False} and cfg.tracks == ["a", "b"]


def _family_of(preset: str) -> str:
    return read_yaml(preset_path(preset))["family"]


def test_every_family_has_a_default_preset_and_a_tiny_one():
    presets = available_presets()
    for family in FAMILIES:
        assert family in presets and f"tiny/{family}" in presets
        assert resolve(get_family(family).config_cls, family) == resolve(
            get_family(family).config_cls, family, family
        )
    assert {"pretrained/transformer", "large/transformer", "musicvae_2bar"} <= set(presets)


@pytest.mark.parametrize("preset", available_presets())
def test_every_packaged_preset_resolves_for_its_family(preset):
    family = _family_of(preset)
    resolve(get_family(family).config_cls, family, preset)


def test_a_preset_is_named_by_name_path_or_its_old_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: the old spelling maps to the packaged preset
    by_name = resolve(LSTMConfig, "lstm", "tiny/lstm")
    copy = tmp_path / "mine.yaml"
    copy.write_text(preset_path("tiny/lstm").read_text())
    assert resolve(LSTMConfig, "lstm", copy) == by_name
    assert resolve(LSTMConfig, "lstm", str(copy)) == by_name
    assert resolve(LSTMConfig, "lstm", "tiny/lstm.yaml") == by_name
    assert resolve(LSTMConfig, "lstm", "configs/tiny/lstm.yaml") == by_name
    assert resolve(LSTMConfig, "lstm", tmp_path / "repo" / "configs" / "tiny" / "lstm.yaml") == by_name
    assert resolve(LSTMConfig, "lstm", "configs/lstm.yaml") == resolve(LSTMConfig, "lstm")
    assert by_name.model.hidden_size == 128  # the tiny preset, not the default one


@pytest.mark.parametrize(
    "missing", ["tiny/lsmt", "nope.yaml", "configs/tiny/nope.yaml", "../presets/lstm", "/no/such/lstm"]
)
def test_a_missing_preset_is_an_error_that_lists_the_presets(missing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no such file or preset") as err:
        resolve(LSTMConfig, "lstm", missing)
    assert "tiny/lstm" in str(err.value) and "pretrained/transformer" in str(err.value)


def test_a_family_without_its_default_preset_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(config_module, "PRESET_DIR", tmp_path)
    with pytest.raises(ConfigError, match="no preset 'lstm'"):
        resolve(LSTMConfig, "lstm")


def test_train_help_names_the_presets(capsys):
    from musgen.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    assert "--config tiny/lstm" in capsys.readouterr().out


def _keys_equal_to_defaults(preset: dict[str, Any], defaults: dict[str, Any], where: str) -> list[str]:
    same = []
    for key, value in preset.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            same += _keys_equal_to_defaults(value, defaults[key], f"{where}.{key}")
        elif key in defaults and value == defaults[key]:
            same.append(f"{where}.{key}")
    return same


@pytest.mark.parametrize("preset", available_presets())
def test_presets_hold_only_what_differs_from_the_defaults(preset):
    data = read_yaml(preset_path(preset))
    defaults = to_dict(get_family(data.pop("family")).config_cls())
    assert _keys_equal_to_defaults(data, defaults, preset) == []


def test_presets_live_in_the_package():
    assert PRESET_DIR.parent.name == "musgen" and preset_path("tiny/lstm").parent == PRESET_DIR / "tiny"


def _count_validations(monkeypatch) -> list[str]:
    """Counts every validate() call on TrainConfig and on the MuseGAN root config."""
    calls: list[str] = []
    for cls in (TrainConfig, MuseGANConfig):
        original = cls.validate

        def counted(self, original=original, name=cls.__name__):
            calls.append(name)
            original(self)

        monkeypatch.setattr(cls, "validate", counted)
    return calls


def test_validation_runs_once_on_resolve_and_on_from_dict(monkeypatch):
    calls = _count_validations(monkeypatch)
    cfg = resolve(MuseGANConfig, "musegan", "tiny/musegan", ["train.lr=3e-4"])
    assert calls == ["TrainConfig", "MuseGANConfig"]  # children first, each once
    calls.clear()
    from_dict(MuseGANConfig, to_dict(cfg))  # how a checkpoint's config.yaml is read back
    assert calls == ["TrainConfig", "MuseGANConfig"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": {"mixed_precision": "fp32"}}, "train.mixed_precision must be no, bf16, fp16 or auto"),
        ({"train": {"grad_accum": 0}}, "train.steps, train.batch_size and train.grad_accum"),
        ({"train": {"grad_accum": 2}}, "leave train.grad_accum at 1"),
        ({"model": {"condition_tracks": ["lute"]}}, "'lute' is not one of data.track_names"),
        ({"model": {"condition_prob": 2}}, "model.condition_prob must be in"),
        ({"model": {"mode": "solo"}}, "model.mode must be one of"),
        ({"loss": {"n_critic": 0}}, "loss.n_critic must be at least 1"),
        ({"data": {"num_pitches": 80}}, "data.num_pitches must be a positive multiple of 12"),
    ],
)
def test_bad_values_are_refused_on_resolve_and_on_from_dict(change, message):
    overrides = [f"{section}.{key}={value}" for section, kv in change.items() for key, value in kv.items()]
    overrides = [o.replace("['lute']", "[lute]") for o in overrides]
    with pytest.raises(ConfigError, match=message):
        resolve(MuseGANConfig, "musegan", "tiny/musegan", overrides)
    with pytest.raises(ConfigError, match=message):  # e.g. a hand-edited checkpoint config.yaml
        from_dict(MuseGANConfig, change)


def test_building_a_dataclass_directly_does_not_validate():
    # Validation is the job of from_dict / resolve (once per tree), not of each constructor.
    assert dataclasses.replace(TrainConfig(), steps=0).steps == 0


def test_train_log_with_takes_tracker_names_as_a_list_or_one_name():
    def log_with(*overrides: str) -> list[str] | str:
        return resolve(LSTMConfig, "lstm", "tiny/lstm", overrides).train.log_with

    assert log_with() == []
    assert log_with("train.log_with=[tensorboard]") == ["tensorboard"]
    assert log_with("train.log_with=tensorboard") == ["tensorboard"]
    assert log_with("train.log_with=[tensorboard, wandb]") == ["tensorboard", "wandb"]
    assert log_with("train.log_with=[]") == log_with("train.log_with=") == []
    saved = yaml.safe_load(
        dump_yaml(resolve(LSTMConfig, "lstm", None, ["train.log_with=tensorboard"]), "lstm")
    )
    assert saved["train"]["log_with"] == ["tensorboard"]  # a resumed run reads it back as a list
    with pytest.raises(ConfigError, match="train.log_with: unknown tracker 'tensorbord'"):
        log_with("train.log_with=[tensorboard, tensorbord]")
    with pytest.raises(ConfigError, match="unknown tracker 'all'"):  # explicit names only
        log_with("train.log_with=all")
