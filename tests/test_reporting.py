"""storylib.reporting on a hand-made results folder (tests/_results_folder.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from _results_folder import FLOORS, make_results_folder
from storylib import reporting


@pytest.fixture()
def data_dir(tmp_path):
    return make_results_folder(tmp_path / "synthetic-smoke")


def render(figure) -> Image.Image:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_collect_runs_one_row_per_experiment_and_seed_in_study_order(data_dir):
    runs = reporting.collect_runs(data_dir)
    assert list(zip(runs["experiment"], runs["seed"])) == [
        ("baseline", 0), ("baseline", 1), ("enhanced", 0), ("enhanced", 1), ("vae", 0)]
    assert runs.loc[1, "image_mae"] == 0.4
    assert "versions" not in runs  # nested values stay out of the flat table


def test_collect_runs_on_an_empty_folder_is_empty_with_the_contract_columns(tmp_path):
    runs = reporting.collect_runs(tmp_path)
    assert runs.empty
    assert {"experiment", "seed", "image_mae", "prediction_spread", "num_params"} <= set(runs.columns)


def test_format_mean_sd_uses_the_sample_sd_and_skips_missing_values():
    assert reporting.format_mean_sd([0.2, 0.4]) == "0.3000 ± 0.1414"
    assert reporting.format_mean_sd([1.0, 2.0, 3.0], decimals=2) == "2.00 ± 1.00"
    assert reporting.format_mean_sd([0.5, float("nan")]) == "0.5000"
    assert reporting.format_mean_sd([]) == "—"


def test_summary_table_has_experiments_then_floor_rows(data_dir):
    table = reporting.summary_table(reporting.collect_runs(data_dir), reporting.load_floors(data_dir))
    assert list(table.index) == ["baseline", "enhanced", "vae", "floor: median_image", "floor: mean_image",
                                 "floor: copy_last_frame", "floor: unigram", "floor: copy_last_description"]
    assert table.loc["baseline", "image_mae"] == "0.3000 ± 0.1414"
    assert table.loc["baseline", "text_perplexity"] == "50.50 ± 0.71"
    assert table.loc["baseline", "n_seeds"] == "2"
    assert table.loc["vae", "image_mae"] == "0.3000"   # one seed: no sd
    assert table.loc["baseline", "num_params"] == "1,234"
    assert table.loc["baseline", "train_seconds"] == "10.5 ± 0.7"
    assert table.loc["floor: median_image", "image_mae"] == "0.2410"
    assert table.loc["floor: unigram", "text_perplexity"] == "300.00"
    assert table.loc["floor: unigram", "image_mae"] == "—"


def test_experiment_table_shows_settings_parameters_and_training_time(data_dir):
    table = reporting.experiment_table(data_dir)
    assert list(table.index) == ["baseline", "enhanced", "vae"]
    assert table.loc["baseline", "description"] == "baseline settings"
    assert table.loc["baseline", "latent_dim"] == 16 and table.loc["enhanced", "latent_dim"] == 256
    assert [bool(v) for v in table["vae"]] == [False, False, True]
    assert table.loc["baseline", "schedule"] == "—"                            # not in this config.yaml
    assert table.loc["baseline", "train_seconds"] == "10.5 ± 0.7"
    assert table.loc["baseline", "n_seeds"] == 2


def test_bootstrap_of_a_constant_difference_is_that_constant():
    assert reporting.bootstrap_mean_ci(np.full(5, -0.1)) == pytest.approx((-0.1, -0.1))


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_mean():
    differences = np.random.default_rng(0).normal(0.1, 0.3, size=40)
    first = reporting.bootstrap_mean_ci(differences, seed=3)
    assert first == reporting.bootstrap_mean_ci(differences, seed=3)
    assert first[0] < differences.mean() < first[1]
    assert first != reporting.bootstrap_mean_ci(differences, seed=4)


@pytest.mark.parametrize(("metric", "low", "high", "expected"), [
    ("image_mae", -0.2, -0.1, "better"), ("image_mae", 0.1, 0.2, "worse"),
    ("chrf", 1.0, 2.0, "better"), ("chrf", -2.0, -1.0, "worse"),
    ("image_ssim", -0.1, 0.1, "no clear difference"), ("text_perplexity", -3.0, -1.0, "better"),
])
def test_verdict_follows_the_metric_direction(metric, low, high, expected):
    assert reporting.verdict(metric, low, high) == expected


def test_paired_differences_average_seeds_per_window_then_pair(data_dir):
    table = reporting.paired_differences(data_dir, "baseline", ["image_mae", "chrf"]).set_index(["experiment", "metric"])
    enhanced_mae = table.loc[("enhanced", "image_mae")]
    assert enhanced_mae["n_windows"] == 3
    assert enhanced_mae["reference_mean"] == pytest.approx(0.3)
    assert enhanced_mae["difference"] == pytest.approx(-0.1)
    assert (enhanced_mae["ci_low"], enhanced_mae["ci_high"]) == pytest.approx((-0.1, -0.1))
    assert enhanced_mae["verdict"] == "better"
    assert table.loc[("enhanced", "chrf"), "difference"] == pytest.approx(5.0)
    assert table.loc[("enhanced", "chrf"), "verdict"] == "better"
    # vae per window minus baseline: [+0.1, -0.2, +0.1]; 1/27 of resamples are all -0.2
    vae_mae = table.loc[("vae", "image_mae")]
    assert vae_mae["difference"] == pytest.approx(0.0)
    assert (vae_mae["ci_low"], vae_mae["ci_high"]) == pytest.approx((-0.2, 0.1))
    assert vae_mae["verdict"] == "no clear difference"


def test_paired_differences_against_a_missing_reference_is_empty(data_dir):
    assert reporting.paired_differences(data_dir, "both", "image_mae").empty


def test_loss_curves_have_one_panel_per_term_and_a_line_per_experiment_and_split(data_dir):
    figure = reporting.plot_loss_curves(data_dir)
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == list(reporting.LOSS_TERMS)
    assert len(axes[0].lines) == 3 * 2
    baseline_train = next(line for line in axes[0].lines if line.get_label() == "baseline train")
    assert list(baseline_train.get_ydata()) == [3.5, 2.0]   # mean over seeds 0 and 1 per epoch
    assert render(figure).size[0] > 0


def test_figures_on_an_empty_folder_show_the_message(tmp_path):
    for figure in (reporting.plot_loss_curves(tmp_path), reporting.plot_qualitative_grid(tmp_path, [3])):
        texts = [t.get_text() for axis in figure.axes for t in axis.texts]
        assert any("No finished runs" in text for text in texts)


def test_qualitative_grid_shows_context_truth_and_each_prediction(data_dir):
    figure = reporting.plot_qualitative_grid(data_dir, [3, 11])
    assert len(figure.axes) == 2 * (5 + 3)
    second_row = figure.axes[8:]
    assert second_row[4].get_title() == "truth"
    assert second_row[4].images[0].get_array()[0, 0, 0] == 24     # window position 2, target
    assert second_row[5].get_title() == "baseline (MAE 0.300)"
    assert second_row[5].images[0].get_array()[0, 0, 0] == 102    # baseline seed 0, position 2
    assert "baseline seed 0 says 11" in second_row[5].get_xlabel()
    assert reporting.default_windows(data_dir, count=2) == [3, 11]


def test_markdown_table_escapes_pipes():
    text = reporting.markdown_table(pd.DataFrame({"a": ["x|y"], "b": [0.5]}), index=False)
    assert text == "| a | b |\n|---|---|\n| x\\|y | 0.5 |\n"


def test_write_report_files(data_dir):
    paths = reporting.write_report_files(data_dir)
    results = pd.read_csv(paths["results_csv"])
    assert len(results) == 5 and results["image_mae"].tolist() == [0.2, 0.4, 0.1, 0.3, 0.3]
    markdown = paths["results_md"].read_text()
    assert "| baseline | 2 | 1,234 |" in markdown
    assert "| baseline | baseline settings |" in markdown
    assert "| floor: median_image |" in markdown
    assert "Change against `baseline`" in markdown and "Change against `enhanced`" in markdown
    assert FLOORS["tokenizer"] in markdown


def test_write_report_files_without_runs_says_so(tmp_path):
    paths = reporting.write_report_files(tmp_path)
    assert "No finished runs" in paths["results_md"].read_text()
    assert json.dumps(reporting.describe_runs(tmp_path)).count("No finished runs") == 1
