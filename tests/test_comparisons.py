"""The study's comparisons read from a hand-made results folder: families, switch effects, groups."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from storylib.comparisons import families, format_effects, group_table, switch_effects, window_groups
from tests._results_folder import make_results_folder


@pytest.fixture()
def data_dir(tmp_path):
    folder = make_results_folder(tmp_path / "synthetic-cpu")
    table = pd.read_csv(folder / "test_windows.csv")
    table["shot"] = ["continues", "cuts", "cuts"]                  # windows 3, 7, 11
    table["pattern"] = ["continuous", "irregular", "shot_reverse"]
    table.to_csv(folder / "test_windows.csv", index=False)
    return folder


def test_families_are_read_from_the_configs_with_the_switches_off(data_dir):
    # baseline (latent 16) has no relatives; vae is enhanced (latent 256) with the VAE on
    assert families(data_dir) == {"baseline": {"plain": "baseline"}, "enhanced": {"plain": "enhanced", "vae": "vae"}}


def test_window_groups_come_from_test_windows_csv(data_dir):
    assert window_groups(data_dir) == {"all": [3, 7, 11], "continues": [3], "cuts": [7, 11],
                                       "continuous": [3], "irregular": [7], "shot_reverse": [11]}


def test_switch_effects_per_group_with_the_hand_computed_differences(data_dir):
    table = switch_effects(data_dir, metrics=("image_mae",), groups=("all", "cuts", "irregular"), n_boot=200)
    vae = table[(table["switch"] == "vae")].set_index("group")
    # seed means per window: enhanced [0.1, 0.2, 0.3], vae (one seed) [0.3, 0.1, 0.5]
    assert vae.loc["all", "difference"] == pytest.approx(0.1)
    assert vae.loc["cuts", "difference"] == pytest.approx(((0.1 - 0.2) + (0.5 - 0.3)) / 2)
    assert vae.loc["irregular", "difference"] == pytest.approx(-0.1)
    assert vae.loc["irregular", "n_windows"] == 1
    family = table[table["switch"] == "family"].set_index("group")
    assert (family["experiment"] == "enhanced").all() and (family["reference"] == "baseline").all()
    assert family.loc["all", "difference"] == pytest.approx(-0.1)
    readable = format_effects(table)
    assert readable.loc[("vae − enhanced", "image_mae"), "irregular (1)"].startswith("-0.1000 [")


def test_a_group_without_windows_says_so(data_dir):
    table = pd.read_csv(data_dir / "test_windows.csv")
    table["pattern"] = ["continuous", "shot_reverse", "shot_reverse"]
    table.to_csv(data_dir / "test_windows.csv", index=False)
    effects = switch_effects(data_dir, metrics=("image_mae",), groups=("all", "irregular"), n_boot=50)
    assert set(effects["group"]) == {"all"}  # no irregular windows: no row, rather than a crash
    table["shot"] = ["continues"] * 3
    table.to_csv(data_dir / "test_windows.csv", index=False)
    effects = switch_effects(data_dir, metrics=("image_mae",), groups=("cuts",), n_boot=50)
    assert (effects["n_windows"] == 0).all() and (effects["verdict"] == "no windows").all()
    assert effects["difference"].map(math.isnan).all()


def test_group_table_puts_experiments_beside_the_floors_on_every_group(data_dir):
    table = group_table(data_dir)
    assert list(table.columns) == ["all (3)", "continues (1)", "cuts (2)", "continuous (1)", "irregular (1)",
                                   "shot_reverse (1)"]
    assert table.loc["baseline", "all (3)"] == "0.3000 ± 0.1414"
    assert table.loc["baseline", "cuts (2)"] == "—"         # the hand-made runs hold no split metrics
    assert table.loc["floor: median_image", "all (3)"] == "0.2410"


def test_perplexity_is_compared_at_the_corpus_level(data_dir):
    """exp(Σ NLL / Σ tokens) per seed, averaged over seeds: not a mean of per-window perplexities."""
    for experiment, seeds, nll in (("enhanced", (0, 1), [2.0, 4.0, 6.0]), ("vae", (0,), [1.0, 1.0, 4.0])):
        for seed in seeds:
            path = data_dir / experiment / f"seed{seed}" / "predictions.csv"
            table = pd.read_csv(path)
            table["text_nll"], table["text_tokens"] = nll, [2, 2, 4]
            table.to_csv(path, index=False)
    effects = switch_effects(data_dir, metrics=("text_perplexity",), groups=("all",), n_boot=100)
    row = effects.iloc[0]
    assert row["reference_mean"] == pytest.approx(math.exp(12 / 8))
    assert row["experiment_mean"] == pytest.approx(math.exp(6 / 8))
    assert row["verdict"] == "better"  # lower perplexity on every resample of these windows
