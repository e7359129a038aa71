"""Configs are the one source of defaults: MLproject and the CLI agree with them."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from helpers import REPO
from pipeline.config import diagnosis, fields, parsing, pattern, recipes, stages, studies
from pipeline.errors import ConfigError

STAGES = {
    "main": stages.MainConfig,
    "prepare_data": stages.PrepareDataConfig,
    "train": stages.TrainConfig,
    "evaluate": stages.EvaluateConfig,
}
STAGES.update({"capacity": studies.CapacityConfig, "sweep": studies.SweepConfig, "inspect": stages.InspectConfig})
STAGES.update({"diagnose": diagnosis.DiagnoseConfig, "capacity_pattern": pattern.PatternCapacityConfig})


def _mlproject() -> dict:
    return yaml.safe_load((REPO / "MLproject").read_text())


def test_every_stage_has_an_entry_point():
    assert set(STAGES) <= set(_mlproject()["entry_points"])


@pytest.mark.parametrize("entry", sorted(STAGES))
def test_mlproject_parameters_are_config_fields_with_the_same_default(entry):
    cls = STAGES[entry]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    params = _mlproject()["entry_points"][entry]["parameters"]
    command = _mlproject()["entry_points"][entry]["command"]
    assert params, entry
    for name, spec in params.items():
        assert name in fields, f"MLproject {entry}.{name} is not a field of {cls.__name__}"
        parsed = parsing.parse_value(fields[name], str(spec.get("default", "")))
        assert parsed == fields[name].default, (entry, name, parsed, fields[name].default)
        assert f"--{name.replace('_', '-')} {{{name}}}" in command, (entry, name)


@pytest.mark.parametrize("entry", sorted(STAGES))
def test_every_config_field_is_an_mlproject_parameter(entry):
    tracking = {f.name for f in dataclasses.fields(fields.TrackingFields)}  # the environment sets these
    params = set(_mlproject()["entry_points"][entry]["parameters"])
    missing = [f.name for f in dataclasses.fields(STAGES[entry]) if f.name not in params | tracking]
    assert not missing, f"MLproject {entry} lacks parameters {missing}"


def test_parse_int_list():
    assert parsing.parse_int_list("3") == (3,)
    assert parsing.parse_int_list("6,16") == (6, 16)
    assert parsing.parse_int_list("1-4") == (1, 2, 3, 4)
    assert parsing.parse_int_list("1-2,5") == (1, 2, 5)
    assert parsing.parse_int_list("") is None
    with pytest.raises(ConfigError, match="empty range"):
        parsing.parse_int_list("1-0")
    with pytest.raises(ConfigError, match="not an integer list"):
        parsing.parse_int_list("three")


def test_recipe_fills_only_unset_fields():
    cfg = recipes.resolve(stages.TrainConfig(filters=(4,)))
    assert cfg.filters == (4,)  # explicit wins
    assert cfg.kernel_size == (5,) and cfg.lr == 0.05 and cfg.epochs == 500  # from the recipe
    assert cfg.momentum == 0.9 and cfg.weight_decay == 1e-3


def test_other_spellings_parse_to_the_same_value():
    f = {f.name: f for f in dataclasses.fields(stages.TrainConfig)}
    assert parsing.parse_value(f["lr"], "5e-2") == 0.05
    assert parsing.parse_value(f["epochs"], "500") == 500
    assert parsing.parse_value(f["epochs"], "5e2") == 500
    with pytest.raises(ConfigError):
        parsing.parse_value(f["epochs"], "2.5")


def test_unknown_keys_and_bad_values_fail_loudly():
    with pytest.raises(ConfigError, match="unknown option"):
        parsing.build_config(stages.TrainConfig, {"filterz": "3"})
    with pytest.raises(ConfigError, match="odd"):
        stages.TrainConfig(kernel_size=(4,))
    with pytest.raises(ConfigError, match="unknown recipe"):
        stages.TrainConfig(recipe="nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stages.TrainConfig().seed = 3  # type: ignore[misc]


def test_every_field_has_help():
    for cls in STAGES.values():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
