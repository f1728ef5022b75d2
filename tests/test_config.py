"""Configuration: layering, validation messages, hashing, round trip."""

from pathlib import Path

import pytest
import yaml

from storylib.config import (
    ConfigError,
    available_experiments,
    config_hash,
    config_to_dict,
    config_to_yaml,
    load_config_file,
    load_experiment_config,
)

PARAMS = Path(__file__).resolve().parent.parent / "params"


def write_params(folder: Path, name: str, body: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_every_experiment_loads_at_every_scale():
    experiments = available_experiments()
    assert experiments == sorted(path.stem for path in PARAMS.glob("*.yaml"))  # every file is an experiment
    for experiment in experiments:
        for scale in ("smoke", "cpu", "full"):
            config = load_experiment_config(experiment, scale)
            assert config.name == experiment and config.scale == scale


def test_scale_overlay_then_overrides_win(tmp_path):
    write_params(tmp_path, "exp", {"train": {"epochs": 7, "batch_size": 4}})
    (tmp_path / "scales").mkdir()
    write_params(tmp_path / "scales", "smoke", {"train": {"epochs": 1}})
    config = load_experiment_config("exp", "smoke", params_dir=tmp_path)
    assert (config.train.epochs, config.train.batch_size) == (1, 4)
    config = load_experiment_config("exp", "smoke", overrides={"train.epochs": 3, "seed": 2}, params_dir=tmp_path)
    assert (config.train.epochs, config.seed) == (3, 2)
    config = load_experiment_config("exp", "cpu", params_dir=tmp_path)  # no cpu overlay file
    assert config.train.epochs == 7


def test_scales_give_every_experiment_of_a_family_the_same_epochs_and_batch():
    """A family is the experiments sharing an image decoder: the published (conv) decoder and the
    learning (warp) one; the learning family states its own cpu settings once (``scales:``)."""
    for scale in ("smoke", "cpu"):
        settings: dict[str, set] = {}
        for experiment in available_experiments():
            config = load_experiment_config(experiment, scale)
            settings.setdefault(config.model.image_decoder, set()).add((config.train.epochs, config.train.batch_size))
        assert set(settings) == {"conv", "warp"}
        assert all(len(values) == 1 for values in settings.values()), (scale, settings)


def test_enhanced_is_both_without_the_two_components():
    both = config_to_dict(load_experiment_config("both", "full"))
    enhanced = config_to_dict(load_experiment_config("enhanced", "full"))
    assert both["model"]["cross_modal_attention"] and both["model"]["vae"]
    both["model"].update(cross_modal_attention=False, vae=False)
    both["train"].update(kl_weight=0.0, kl_warmup_epochs=0)  # the KL settings belong to the VAE
    for config in (both, enhanced):
        config.pop("name"), config.pop("description")
    assert both == enhanced


def test_unknown_key_names_file_key_and_allowed(tmp_path):
    path = write_params(tmp_path, "bad", {"train": {"epoch": 3}})
    with pytest.raises(ConfigError) as error:
        load_experiment_config("bad", params_dir=tmp_path)
    message = str(error.value)
    assert str(path) in message and "'train.epoch'" in message and "epochs" in message


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"train": {"epochs": "ten"}}, "key 'train.epochs': expected a whole number, got 'ten'"),
        ({"train": {"epochs": 0}}, "key 'train.epochs': 0 is below the minimum 1"),
        ({"train": {"optimizer": "sgd"}}, "key 'train.optimizer': 'sgd' is not allowed; choose one of adam, adamw"),
        ({"model": {"vae": "yes"}}, "key 'model.vae': expected true or false, got 'yes'"),
        ({"train": {"lr": True}}, "key 'train.lr': expected a number, got True"),
        ({"data": {"val_fraction": 0.95}}, "key 'data.val_fraction': 0.95 is above the maximum 0.9"),
        ({"model": 3}, "'model' must be a mapping"),
    ],
)
def test_bad_values_are_explained(tmp_path, body, expected):
    write_params(tmp_path, "bad", body)
    with pytest.raises(ConfigError, match=None) as error:
        load_experiment_config("bad", params_dir=tmp_path)
    assert expected in str(error.value)


def test_missing_experiment_lists_known_ones():
    with pytest.raises(ConfigError, match="known experiments: baseline, both"):
        load_experiment_config("nope")


def test_bad_scale_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="scale 'huge' is not allowed"):
        load_experiment_config("baseline", "huge")
    (tmp_path / "broken.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment_config("broken", params_dir=tmp_path)


def test_integer_promoted_to_float_and_hash_is_stable():
    config = load_experiment_config("baseline", overrides={"train.lr": 1})
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config_hash(load_experiment_config("vae")) == config_hash(load_experiment_config("vae"))
    assert config_hash(load_experiment_config("vae")) != config_hash(load_experiment_config("vae", overrides={"seed": 1}))


def test_yaml_round_trip(tmp_path):
    config = load_experiment_config("shots_both", "smoke", overrides={"data.source": "synthetic"})
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    assert load_config_file(path) == config
    assert config_hash(load_config_file(path)) == config_hash(config)


# ------------------------------------------------------------------ composition: extends


def test_extends_applies_the_base_first_and_states_only_what_differs(tmp_path):
    write_params(tmp_path, "base", {"description": "base", "train": {"epochs": 7, "lr": 0.01}, "model": {"vae": False}})
    write_params(tmp_path, "middle", {"extends": "base", "train": {"epochs": 3}})
    write_params(tmp_path, "top", {"extends": "middle", "model": {"vae": True}})
    config = load_experiment_config("top", "cpu", params_dir=tmp_path)
    assert (config.name, config.train.epochs, config.train.lr, config.model.vae, config.description) == ("top", 3, 0.01, True, "base")
    explicit = write_params(tmp_path, "explicit", {"description": "base", "train": {"epochs": 3, "lr": 0.01}, "model": {"vae": True}})
    assert explicit.is_file()
    resolved = config_to_dict(load_experiment_config("explicit", "cpu", params_dir=tmp_path))
    assert {k: v for k, v in config_to_dict(config).items() if k != "name"} == {k: v for k, v in resolved.items() if k != "name"}


def test_an_extends_cycle_is_an_error_naming_the_files(tmp_path):
    write_params(tmp_path, "a", {"extends": "b"})
    write_params(tmp_path, "b", {"extends": "a"})
    with pytest.raises(ConfigError, match=r"'extends' makes a cycle: .*a\.yaml → .*b\.yaml → .*a\.yaml"):
        load_experiment_config("a", "cpu", params_dir=tmp_path)


def test_extends_of_a_missing_experiment_names_the_file_and_the_known_ones(tmp_path):
    write_params(tmp_path, "child", {"extends": "ghost"})
    with pytest.raises(ConfigError, match=r"child\.yaml: 'extends: ghost': no such experiment file ghost\.yaml; known experiments: child"):
        load_experiment_config("child", "cpu", params_dir=tmp_path)


def test_an_error_names_the_file_of_the_chain_that_set_the_key(tmp_path):
    write_params(tmp_path, "base", {"train": {"epoch": 3}})  # a typo in the base
    write_params(tmp_path, "child", {"extends": "base", "train": {"epochs": 2}})
    with pytest.raises(ConfigError, match=r"base\.yaml: unknown key 'train\.epoch'"):
        load_experiment_config("child", "cpu", params_dir=tmp_path)
    write_params(tmp_path, "bad", {"extends": 3})
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'extends': expected the name of another experiment"):
        load_experiment_config("bad", "cpu", params_dir=tmp_path)


def test_the_study_files_use_extends_and_only_vae_files_carry_kl_settings():
    for experiment in available_experiments():
        config = load_experiment_config(experiment, "cpu")
        assert config.model.vae or config.train.kl_weight == 0.0, experiment
    assert yaml.safe_load((PARAMS / "both.yaml").read_text())["extends"] == "vae"
