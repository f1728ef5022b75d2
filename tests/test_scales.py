"""Scale overlays: the ``at_most:`` upper bounds of a miniature scale, on hand-made files and
on the shipped ones (the published family narrowed alike at the cpu scale, untouched at full)."""

from pathlib import Path

import pytest
import yaml

from storylib.config import ConfigError, available_experiments, load_experiment_config

PARAMS = Path(__file__).resolve().parent.parent / "params"


def write(path: Path, body: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body))


def test_upper_bounds_cut_wide_values_and_keep_narrow_ones(tmp_path):
    write(tmp_path / "wide.yaml", {"model": {"embedding_dim": 512, "text_hidden": 256}})
    write(tmp_path / "narrow.yaml", {"model": {"embedding_dim": 16, "text_hidden": 16}})
    write(tmp_path / "scales" / "cpu.yaml", {"at_most": {"model": {"embedding_dim": 128, "text_hidden": 128}}})
    wide, narrow = (load_experiment_config(name, "cpu", params_dir=tmp_path).model for name in ("wide", "narrow"))
    assert (wide.embedding_dim, wide.text_hidden) == (128, 128)
    assert (narrow.embedding_dim, narrow.text_hidden) == (16, 16)
    # an explicit override comes after the bounds, as every override does
    override = load_experiment_config("wide", "cpu", overrides={"model.text_hidden": 300}, params_dir=tmp_path)
    assert override.model.text_hidden == 300


@pytest.mark.parametrize("bounds, message", [
    ({"model": {"embeding_dim": 8}}, "unknown key 'at_most.model.embeding_dim'"),
    ({"model": {"vae": False}}, "only numbers can have an upper bound"),
    ({"model": {"text_hidden": 0}}, "below the minimum"),
    ({"model": 3}, "must be a mapping"),
])
def test_a_wrong_upper_bound_names_the_file_and_key(tmp_path, bounds, message):
    write(tmp_path / "exp.yaml", {})
    write(tmp_path / "scales" / "cpu.yaml", {"at_most": bounds})
    with pytest.raises(ConfigError, match=message) as error:
        load_experiment_config("exp", "cpu", params_dir=tmp_path)
    assert "cpu.yaml" in str(error.value)


def test_the_published_family_is_narrowed_alike_at_cpu_and_kept_at_full():
    widths = {}
    for experiment in available_experiments():
        cpu, full = (load_experiment_config(experiment, scale).model for scale in ("cpu", "full"))
        widths[experiment] = (cpu.embedding_dim, cpu.text_hidden)
        assert cpu.embedding_dim <= 128 and cpu.text_hidden <= 128
        if experiment == "baseline":
            assert (cpu.embedding_dim, cpu.text_hidden) == (full.embedding_dim, full.text_hidden) == (16, 16)
    enhanced = load_experiment_config("enhanced", "full").model
    assert (enhanced.embedding_dim, enhanced.text_hidden, enhanced.lstm_layers) == (512, 256, 2)
    published = [name for name in ("enhanced", "crossmodal", "vae", "both") if name in widths]
    assert {widths[name] for name in published} == {(128, 128)}
