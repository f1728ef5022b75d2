"""Fault injection into the parameter files: NaN, degenerate and duplicated values are refused
with the file and the key named (issue 12, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storylib.config import ConfigError, load_experiment_config


def write(folder: Path, text: str) -> Path:
    path = folder / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "key", "why"), [
    ("train:\n  lr: .nan\n", "train.lr", "expected a finite number, got nan"),
    ("model:\n  dropout: .nan\n", "model.dropout", "expected a finite number, got nan"),
    ("train:\n  max_lr: .inf\n", "train.max_lr", "expected a finite number, got inf"),
    ("train:\n  lr: 0\n", "train.lr", "0.0 must be greater than 0.0"),
    ("train:\n  max_lr: 0.0\n", "train.max_lr", "0.0 must be greater than 0.0"),
    ("train:\n  lr: -0.001\n", "train.lr", "must be greater than 0.0"),
])
def test_nan_and_degenerate_values_are_refused_naming_file_and_key(tmp_path, body, key, why):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_experiment_config("exp", "cpu", params_dir=tmp_path)
    assert str(error.value).startswith(f"{path}: key '{key}'")
    assert why in str(error.value)


def test_a_duplicated_key_is_refused_with_both_lines(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.001\n  epochs: 2\n  lr: 0.003\n")
    with pytest.raises(ConfigError) as error:
        load_experiment_config("exp", "cpu", params_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"{path}: not valid YAML")
    assert "duplicate key 'lr' (line 4; first given on line 2)" in message


def test_overrides_are_checked_the_same_way(tmp_path):
    write(tmp_path, "train:\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=r"overrides: key 'train.lr': expected a finite number, got nan"):
        load_experiment_config("exp", "cpu", overrides={"train.lr": float("nan")}, params_dir=tmp_path)
    config = load_experiment_config("exp", "cpu", overrides={"train.lr": 0.002}, params_dir=tmp_path)
    assert config.train.lr == 0.002          # sane values still pass
