"""storylib.reporting on a hand-made results folder (tests/_results_folder.py)."""

from __future__ import annotations

import base64
import io
import json

import nbformat
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from _results_folder import FLOORS, make_results_folder
from storylib import reporting
from storylib.widgets import FrameBrowser


@pytest.fixture()
def data_dir(tmp_path):
    return make_results_folder(tmp_path / "synthetic-smoke")


def render(figure) -> Image.Image:
    """The PNG a notebook shows (IPython's inline formatter saves with a tight bounding box)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_figure(buffer, format="png", bbox_inches="tight")
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


def test_metric_tables_shown_in_the_notebook_are_narrow_and_keep_every_floor_of_the_file(data_dir):
    floors = {**FLOORS, "motion_extrapolation": {"image_mae": 0.12, "image_mae_continues": 0.1},
              "oracle_best_context": {"image_mae": 0.09}, "a_new_floor": {"chrf": 30.0}}
    runs = reporting.collect_runs(data_dir)
    image = reporting.summary_table(runs, floors, reporting.IMAGE_TABLE)
    assert list(image.columns) == list(reporting.IMAGE_TABLE) and len(image.columns) <= 6
    assert list(image.index) == ["baseline", "enhanced", "vae", "floor: median_image", "floor: mean_image",
                                 "floor: copy_last_frame", "floor: motion_extrapolation",
                                 "reference: oracle_best_context"]          # no text-only floor rows
    assert image.loc["floor: motion_extrapolation", "image_mae"] == "0.1200"
    text = reporting.summary_table(runs, floors, reporting.TEXT_TABLE)
    assert list(text.index)[3:] == ["floor: unigram", "floor: copy_last_description", "floor: a_new_floor"]
    assert text.loc["floor: a_new_floor", "chrf"] == "30.00"


def test_experiment_table_parts_each_fit_a_page(data_dir):
    for part, columns in reporting.EXPERIMENT_PARTS.items():
        table = reporting.experiment_table(data_dir, part)
        assert list(table.columns) == list(columns) and len(columns) <= 6, part
    assert reporting.experiment_table(data_dir, "model").loc["enhanced", "latent_dim"] == 256
    assert reporting.experiment_table(data_dir, "cost").loc["baseline", "num_params"] == "1,234"


def test_format_paired_rounds_to_the_metric_and_joins_the_interval(data_dir):
    table = reporting.format_paired(reporting.paired_differences(data_dir, "baseline", ["image_mae", "chrf"]))
    assert list(table.columns) == ["windows", "seeds", "baseline mean", "experiment mean", "difference", "95% CI", "verdict",
                                   "floor note"]
    assert table.loc[("enhanced", "image_mae"), "difference"] == "-0.1000"
    assert table.loc[("enhanced", "image_mae"), "seeds"] == "2 vs 2"
    assert table.loc[("enhanced", "chrf"), "95% CI"] == "[5.00, 5.00]"
    assert table.loc[("enhanced", "chrf"), "baseline mean"] == "20.00"
    assert reporting.format_paired(reporting.paired_differences(data_dir, "both")).empty


def test_describe_runs_names_data_and_scale_and_no_absolute_path(data_dir, capsys):
    text = reporting.describe_runs(data_dir)
    assert text.startswith("## Comparison report: synthetic data, smoke scale")
    assert "synthetic-smoke: baseline (2 seeds), enhanced (2 seeds), vae (1 seed)" in text
    assert str(data_dir.parent) not in text + capsys.readouterr().out


def test_a_missing_results_folder_is_reported_and_nothing_is_written(tmp_path, capsys):
    missing = tmp_path / "results" / "synthetic-cpu"
    assert "no results folder synthetic-cpu" in reporting.describe_runs(missing)
    assert reporting.write_report_files(missing) == {}
    assert "Nothing written" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


def test_report_html_is_titled_by_data_and_scale_and_shows_the_static_picture(data_dir, tmp_path):
    """A display that carries a widget view and a PNG: the page (no kernel) shows the PNG."""
    picture = base64.b64encode(b"\x89PNG fake").decode()
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("widgets.browse(data_dir)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "image/png": picture, "text/plain": "FrameBrowser"})]
    notebook.cells = [cell]
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"abc": {"model_name": "VBoxModel", "state": {}}}, "version_major": 2, "version_minor": 0}}
    path = tmp_path / "comparison_report.ipynb"
    nbformat.write(notebook, str(path))
    page = reporting.report_html(path, data_dir)
    assert "<title>Comparison report: synthetic data, smoke scale</title>" in page
    assert picture in page


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
    reference = np.full((2, 5), 0.3)
    assert reporting.hierarchical_bootstrap_ci(reference - 0.1, reference) == pytest.approx((-0.1, -0.1))


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_mean():
    generator = np.random.default_rng(0)
    ours, theirs = generator.normal(0.1, 0.3, size=(3, 40)), generator.normal(0.0, 0.3, size=(3, 40))
    first = reporting.hierarchical_bootstrap_ci(ours, theirs, seed=3)
    assert first == reporting.hierarchical_bootstrap_ci(ours, theirs, seed=3)
    assert first[0] < ours.mean() - theirs.mean() < first[1]
    assert first != reporting.hierarchical_bootstrap_ci(ours, theirs, seed=4)


def test_a_difference_that_one_seed_drives_is_not_called_better():
    """Two seeds equal the reference on every window, the third is 0.3 better on every window:
    averaging seeds first, every window improves by exactly 0.1 and a bootstrap over windows
    alone gives the interval [-0.1, -0.1], "better". Resampling the seeds too, a quarter or so
    of the replicates draw no third seed, so the interval reaches 0."""
    windows = np.linspace(0.2, 0.4, 30)
    reference = np.stack([windows, windows, windows])
    experiment = np.stack([windows, windows, windows - 0.3])
    seed_averaged = experiment.mean(axis=0) - reference.mean(axis=0)
    assert reporting.hierarchical_bootstrap_ci(seed_averaged[None], np.zeros((1, 30))) == pytest.approx((-0.1, -0.1))
    low, high = reporting.hierarchical_bootstrap_ci(experiment, reference)
    # P(the third seed drawn all three times) = 1/27 > 2.5 %; P(never drawn) = 8/27 > 2.5 %
    assert low == pytest.approx(-0.3) and high == pytest.approx(0.0)
    assert reporting.verdict("image_mae", low, high) == "no clear difference"


@pytest.mark.parametrize(("metric", "low", "high", "expected"), [
    ("image_mae", -0.2, -0.1, "better"), ("image_mae", 0.1, 0.2, "worse"),
    ("chrf", 1.0, 2.0, "better"), ("chrf", -2.0, -1.0, "worse"),
    ("image_ssim", -0.1, 0.1, "no clear difference"), ("text_perplexity", -3.0, -1.0, "better"),
])
def test_verdict_follows_the_metric_direction(metric, low, high, expected):
    assert reporting.verdict(metric, low, high) == expected


def test_paired_differences_resample_seeds_and_windows(data_dir):
    table = reporting.paired_differences(data_dir, "baseline", ["image_mae", "chrf"]).set_index(["experiment", "metric"])
    enhanced_mae = table.loc[("enhanced", "image_mae")]
    assert enhanced_mae["n_windows"] == 3 and enhanced_mae["n_seeds"] == "2 vs 2"
    assert enhanced_mae["reference_mean"] == pytest.approx(0.3)
    assert enhanced_mae["difference"] == pytest.approx(-0.1)
    # Seeds differ by 0.2 within each experiment, window for window: a replicate that draws
    # enhanced seed 0 twice and baseline seed 1 twice gives -0.3 (probability 1/16), the
    # opposite draw +0.1. A 0.1 gain against a seed spread of 0.2 is not established.
    assert (enhanced_mae["ci_low"], enhanced_mae["ci_high"]) == pytest.approx((-0.3, 0.1))
    assert enhanced_mae["verdict"] == "no clear difference"
    # chrF: enhanced is 5 higher on every window and every seed, so every replicate says +5
    assert table.loc[("enhanced", "chrf"), "difference"] == pytest.approx(5.0)
    assert (table.loc[("enhanced", "chrf"), "ci_low"], table.loc[("enhanced", "chrf"), "ci_high"]) == pytest.approx((5.0, 5.0))
    assert table.loc[("enhanced", "chrf"), "verdict"] == "better"
    vae_mae = table.loc[("vae", "image_mae")]
    assert vae_mae["difference"] == pytest.approx(0.0) and vae_mae["n_seeds"] == "1 vs 2"
    assert vae_mae["ci_low"] < 0.0 < vae_mae["ci_high"]
    assert vae_mae["verdict"] == "no clear difference"


def test_paired_differences_against_a_missing_reference_is_empty(data_dir):
    assert reporting.paired_differences(data_dir, "both", "image_mae").empty


def test_loss_curves_have_one_panel_per_term_and_a_line_per_experiment_and_split(data_dir):
    figure = reporting.plot_loss_curves(data_dir)
    axes = figure.axes[: len(reporting.CURVE_TERMS)]
    assert list(reporting.CURVE_TERMS) == ["loss", "image", "text", "context", "kl"]
    assert [axis.get_title() for axis in axes] == ["total (weighted)", "image", "text", "context", "kl"]
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
    shown = [axis for axis in figure.axes if axis.get_title()]
    assert len(shown) == 2 * (5 + 3)                 # per window: 4 context frames, truth, 3 predictions
    second = shown[8:]
    assert second[0].get_title() == "window 11 · context 1"
    assert second[4].get_title() == "truth"
    assert second[4].images[0].get_array()[0, 0, 0] == 24     # window position 2, target
    assert second[5].get_title() == "baseline (MAE 0.300)"
    assert second[5].images[0].get_array()[0, 0, 0] == 102    # baseline seed 0, position 2
    assert "baseline seed 0 says 11" in second[5].get_xlabel()
    assert reporting.default_windows(data_dir, count=2) == [3, 11]


def texts_of(figure) -> list:
    return [text for text in figure.findobj(Text) if text.get_text().strip() and text.get_visible()]


@pytest.mark.parametrize("build", [
    lambda d: reporting.plot_qualitative_grid(d, [3, 7, 11]),
    lambda d: reporting.plot_loss_curves(d),
    lambda d: FrameBrowser(d).figure(),
], ids=["qualitative grid", "loss curves", "browser figure"])
def test_figures_are_shown_unscaled_on_the_page_with_text_of_at_least_9_pt(data_dir, build):
    """report.html's column is about 1,158 px wide: a PNG no wider is shown at its own size, so
    a 9 pt caption at 100 dpi is 12.5 px tall on the page."""
    figure = build(data_dir)
    width = render(figure).size[0]
    assert width <= 1158
    sizes = [text.get_fontsize() for text in texts_of(figure)]
    assert sizes and min(sizes) >= reporting.MIN_FONT_PT >= 9


def test_the_grid_continues_predictions_of_many_experiments_on_further_rows(data_dir):
    many = ["baseline", "enhanced", "vae"] * 3                     # 9 predictions per window
    figure = reporting.plot_qualitative_grid(data_dir, [3], experiments=many)
    shown = [axis for axis in figure.axes if axis.get_title()]
    assert len(shown) == 5 + 9
    assert render(figure).size[0] <= 1158
    assert len({round(axis.get_position().x0, 3) for axis in shown}) == 5   # five columns, never more


def test_markdown_table_escapes_pipes():
    text = reporting.markdown_table(pd.DataFrame({"a": ["x|y"], "b": [0.5]}), index=False)
    assert text == "| a | b |\n|---|---|\n| x\\|y | 0.5 |\n"


def test_write_report_files(data_dir, capsys):
    paths = reporting.write_report_files(data_dir)
    assert capsys.readouterr().out == "Wrote results.csv, Results.md in synthetic-smoke.\n"
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


def test_the_grid_shows_what_the_classical_floors_predict(data_dir):
    """Floor predictions saved in test_windows.npz get their own row, labelled, with their MAE."""
    with np.load(data_dir / "test_windows.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    arrays["floor_copy_last_frame"] = arrays["frames"][:, 3]
    arrays["floor_oracle_best_context"] = arrays["frames"][:, 0]
    np.savez_compressed(data_dir / "test_windows.npz", **arrays)
    figure = reporting.plot_qualitative_grid(data_dir, [11])
    shown = [axis for axis in figure.axes if axis.get_title()]
    assert len(shown) == 5 + 2 + 3  # context and truth, two floors, three predictions
    assert shown[5].get_title() == "floor: copy_last_frame\nMAE 0.130"
    assert shown[5].images[0].get_array()[0, 0, 0] == arrays["frames"][2, 3, 0, 0, 0]
    assert shown[6].get_title().startswith("reference: oracle_best_context")
    kept = reporting.keep_saved_window_subset(data_dir, 2)
    with np.load(data_dir / "test_windows.npz") as shrunk:
        assert shrunk["floor_copy_last_frame"].shape[0] == len(kept) == 2
