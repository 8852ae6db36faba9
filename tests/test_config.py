"""Config loading: YAML + extends + dotted overrides, and one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from gadms.config import Config, deep_merge, load_config, to_yaml
from gadms.errors import ConfigError


class MaskingExample(Config):
    alpha_noise: float = Field(0.2, ge=0, le=1)
    steepness: float = 20.0


class JobExample(Config):
    name: str = "run"
    epochs: int = Field(30, ge=1)
    norm: Literal["batch", "sample"] = "batch"
    masking: MaskingExample = MaskingExample()
    layers: list[int] = [1, 2]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file_are_the_declared_values():
    cfg = load_config(JobExample)
    assert cfg == JobExample()
    assert cfg.masking.alpha_noise == 0.2


def test_yaml_extends_and_overrides_merge_in_order(tmp_path: Path):
    write(tmp_path / "base.yaml", "epochs: 10\nmasking: {alpha_noise: 0.1, steepness: 5}\nname: base\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nmasking: {alpha_noise: 0.3}\n")
    cfg = load_config(JobExample, child, ["epochs=2", "masking.steepness=1e1", "layers=[3, 4]"])
    assert cfg.name == "base"  # from the parent
    assert cfg.masking.alpha_noise == 0.3  # child wins over parent
    assert cfg.masking.steepness == 10.0  # override wins over both; YAML number parsing
    assert cfg.epochs == 2
    assert cfg.layers == [3, 4]


def test_resolved_config_round_trips_through_yaml(tmp_path: Path):
    cfg = load_config(JobExample, None, ["norm=sample", "masking.alpha_noise=0.25"])
    again = load_config(JobExample, write(tmp_path / "dump.yaml", to_yaml(cfg)))
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["masking.alpha_noise=1.5"], "masking.alpha_noise: Input should be less than or equal to 1 (got 1.5)"),
        (["masking.alpha_nois=0.1"], "masking.alpha_nois: unknown field (known: alpha_noise, steepness)"),
        (["epochs=zero"], "epochs: Input should be a valid integer"),
        (["norm=global"], "norm: Input should be 'batch' or 'sample'"),
        (["epochs"], "override 'epochs': expected key=value"),
        (["name.sub=1"], "name: Input should be a valid string"),
    ],
)
def test_bad_values_give_one_line_naming_the_field(overrides: list[str], expected: str):
    with pytest.raises(ConfigError) as err:
        load_config(JobExample, None, overrides)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_and_extends_cycle_are_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(JobExample, tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(JobExample, tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(JobExample, write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(JobExample, write(tmp_path / "bad.yaml", "a: [1, 2\n"))


def test_configs_are_immutable():
    cfg = JobExample()
    with pytest.raises(Exception):
        cfg.epochs = 3  # type: ignore[misc]


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": [1]}}
    update = {"a": {"b": 2}}
    merged = deep_merge(base, update)
    merged["a"]["c"].append(2)
    assert base == {"a": {"b": 1, "c": [1]}} and merged == {"a": {"b": 2, "c": [1, 2]}}
