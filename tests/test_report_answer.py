"""The report says what it found (issue 17): the answer first, against the strongest floor; a
"better" between two models below a floor says so; one perplexity; every planned run it could
not use, with the reason; report.html without the install and parameter cells; the committed
reference left alone. All on the hand-made results folder of tests/_results_folder.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from _results_folder import make_results_folder
from storylib import reporting

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture()
def data_dir(tmp_path):
    return make_results_folder(tmp_path / "synthetic-smoke")


def edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def add_shot_groups(data_dir: Path, model: dict[str, tuple[float, float]], floor: tuple[float, float]) -> None:
    """image_mae where the shot continues / cuts: per experiment (every seed alike) and for the
    strongest floor of the folder (copy_last_frame, image MAE 0.15 over all windows)."""
    for path in data_dir.glob("*/seed*/test_metrics.json"):
        continues, cuts = model[path.parent.parent.name]
        edit_json(path, lambda m: {**m, "image_mae_continues": continues, "image_mae_cuts": cuts})
    edit_json(data_dir / "floors.json", lambda f: {**f, "copy_last_frame": {
        **f["copy_last_frame"], "continues": {"image_mae": floor[0], "num_windows": 1},
        "cuts": {"image_mae": floor[1], "num_windows": 2}}})


# --------------------------------------------------------------------------- the answer


def test_the_answer_names_the_best_model_and_that_none_beats_the_strongest_floor(data_dir):
    # models: baseline 0.30, enhanced 0.20, vae 0.30; floors: median 0.241, mean 0.25, copy-last 0.15
    add_shot_groups(data_dir, {"baseline": (0.3, 0.3), "enhanced": (0.05, 0.25), "vae": (0.3, 0.3)}, (0.1, 0.175))
    text = reporting.answer_text(data_dir)
    image = next(line for line in text.splitlines() if line.startswith("- Image"))
    assert "best on image MAE (mean over seeds) is `enhanced`" in image
    assert "strongest floor" in image and "`copy_last_frame`" in image         # not the median image
    assert "`enhanced` 0.2000 does not beat `copy_last_frame` 0.1500" in image
    assert "**no model beats the strongest floor**" in image
    # the same floor in every group; where the shot continues enhanced beats it, where it cuts nobody
    assert "Where the shot continues (1 windows): best `enhanced` 0.0500 beats `copy_last_frame` 0.1000; " \
           "`enhanced` beats it there." in text
    assert "Where the shot cuts (2 windows): best `enhanced` 0.2500 does not beat `copy_last_frame` 0.1750; " \
           "no model beats it there." in text


def test_the_answer_says_which_models_beat_the_strongest_floor(data_dir):
    edit_json(data_dir / "floors.json", lambda f: {**f, "copy_last_frame": {**f["copy_last_frame"], "image_mae": 0.25},
                                                   "oracle_best_context": {"image_mae": 0.01, "oracle": True}})
    text = reporting.answer_text(data_dir)
    # the oracle (0.01) is a reference, not a floor; the strongest floor is median_image 0.241
    assert "`enhanced` 0.2000 beats `median_image` 0.2410: `enhanced` beats it." in text
    assert "no model beats" not in text.split("- Text")[0]
    # text: chrF 30 (every run) against copy_last_description's 21; perplexity 50-51 against unigram 300
    assert "- Text (chrF): best is `baseline` 30.00 beats `copy_last_description` 21.00" in text
    assert "- Text (perplexity): best is `vae` 50.00 beats `unigram` 300.00" in text
    assert "corpus-level" in text


def test_results_md_opens_with_the_answer(data_dir):
    reporting.write_report_files(data_dir)
    results_md = (data_dir / "Results.md").read_text()
    assert results_md.index("## The answer") < results_md.index("## Experiments")
    assert "**no model beats the strongest floor**" in results_md


# --------------------------------------------------------------------------- verdicts beside a floor


def test_a_better_verdict_between_two_models_below_a_floor_says_so(data_dir):
    # chrF: enhanced is 5 better than baseline on every window (verdict "better"); both below 40
    edit_json(data_dir / "floors.json", lambda f: {**f, "copy_last_description": {"chrf": 40.0}})
    table = reporting.paired_differences(data_dir, "baseline", ["chrf", "image_mae"]).set_index(["experiment", "metric"])
    assert table.loc[("enhanced", "chrf"), "verdict"] == "better"
    assert table.loc[("enhanced", "chrf"), "floor_note"] == "both worse than floor: copy_last_description (40.00)"
    # image MAE: both above copy_last_frame's 0.15 (the strongest image floor)
    assert table.loc[("enhanced", "image_mae"), "floor_note"] == "both worse than floor: copy_last_frame (0.1500)"
    shown = reporting.format_paired(reporting.paired_differences(data_dir, "baseline", ["chrf"]))
    assert shown.loc[("enhanced", "chrf"), "floor note"].startswith("both worse than floor")
    reporting.write_report_files(data_dir)
    assert "both worse than floor: copy_last_description (40.00)" in (data_dir / "Results.md").read_text()


def test_no_floor_note_when_a_model_is_on_the_right_side_of_the_floor(data_dir):
    # chrF floor 21: enhanced (25) beats it, so its "better" needs no note
    table = reporting.paired_differences(data_dir, "baseline", ["chrf"]).set_index(["experiment", "metric"])
    assert table.loc[("enhanced", "chrf"), "floor_note"] == ""


# --------------------------------------------------------------------------- one perplexity


def add_token_nll(data_dir: Path) -> dict[str, float]:
    """Per-window token NLL and counts, and each run's corpus-level perplexity in test_metrics.json
    (as storylib.evaluation records them); returns the mean over seeds per experiment."""
    means: dict[str, list[float]] = {}
    for path in sorted(data_dir.glob("*/seed*/predictions.csv")):
        table = pd.read_csv(path)
        seed = int(path.parent.name[4:])
        table["text_tokens"] = [2, 10, 30]                 # windows of very different lengths
        table["text_nll"] = np.array([2.0, 3.0, 1.0]) * table["text_tokens"] + seed * 0.1 * table["text_tokens"]
        table["text_perplexity"] = np.exp(table["text_nll"] / table["text_tokens"])
        table.to_csv(path, index=False)
        corpus = float(np.exp(table["text_nll"].sum() / table["text_tokens"].sum()))
        edit_json(path.parent / "test_metrics.json", lambda m: {**m, "text_perplexity": corpus})
        means.setdefault(path.parent.parent.name, []).append(corpus)
    return {name: float(np.mean(values)) for name, values in means.items()}


def test_the_bootstrap_perplexity_is_the_tables_corpus_level_perplexity(data_dir):
    means = add_token_nll(data_dir)
    summary = reporting.summary_table(reporting.collect_runs(data_dir), reporting.load_floors(data_dir))
    paired = reporting.paired_differences(data_dir, "baseline", "text_perplexity").set_index("experiment")
    assert set(paired["metric"]) == {"text_perplexity"}
    for name in ("baseline", "enhanced"):
        shown = float(summary.loc[name, "text_perplexity"].split(" ± ")[0])
        assert shown == pytest.approx(means[name], abs=0.005)
    assert paired.loc["enhanced", "reference_mean"] == pytest.approx(means["baseline"])
    assert paired.loc["enhanced", "experiment_mean"] == pytest.approx(means["enhanced"])
    # the mean of per-window perplexities is another (larger) number: it must not be shown as this one
    window_mean = pd.read_csv(data_dir / "baseline" / "seed0" / "predictions.csv")["text_perplexity"].mean()
    assert window_mean > means["baseline"] + 1


def test_without_token_counts_the_window_mean_is_named_apart(data_dir):
    paired = reporting.paired_differences(data_dir, "baseline", "text_perplexity")
    assert set(paired["metric"]) == {reporting.WINDOW_MEAN_PERPLEXITY}
    reporting.write_report_files(data_dir)
    results_md = (data_dir / "Results.md").read_text()
    assert "| text_perplexity_window_mean |" in results_md and "mean of per-window perplexities" in results_md


# --------------------------------------------------------------------------- runs it could not use


def test_every_planned_run_it_could_not_use_is_listed_with_the_reason(data_dir):
    reporting.write_plan(data_dir, ["baseline", "enhanced", "vae", "both"], [0, 1], {
        "vae/seed1": {"status": "failed", "error": "cell 12: ValueError: boom"},
        "both/seed0": {"status": "interrupted"}, "both/seed1": {"status": "not started"}})
    edit_json(data_dir / "enhanced" / "seed1" / "test_metrics.json", lambda m: {**m, "config_hash": "0123456789abcdef"})
    (data_dir / "both" / "seed0" / "checkpoints").mkdir(parents=True)
    (data_dir / "both" / "seed0" / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    table = reporting.unusable_runs(data_dir)
    assert [(r.experiment, r.seed, r.status) for r in table.itertuples()] == [
        ("enhanced", 1, "stale"), ("vae", 1, "failed"), ("both", 0, "interrupted"), ("both", 1, "missing")]
    assert "cell 12: ValueError: boom" in table.loc[1, "why"]
    assert "resumes from its last checkpoint" in table.loc[2, "why"]

    text = reporting.describe_runs(data_dir)
    reporting.write_report_files(data_dir)
    results_md = (data_dir / "Results.md").read_text()
    for shown in (text, results_md):
        assert "- enhanced/seed1: trained with another configuration" in shown
        assert "Planned runs with no result (1 failed, 1 interrupted, 1 missing" in shown
        assert "- vae/seed1: failed: cell 12: ValueError: boom" in shown
        assert "- both/seed0: interrupted:" in shown and "- both/seed1: missing: not started" in shown


def test_without_a_plan_file_the_default_plan_is_every_experiment_and_three_seeds(data_dir):
    table = reporting.unusable_runs(data_dir)
    missing = set(zip(table["experiment"], table["seed"]))
    assert ("vae", 1) in missing and ("vae", 2) in missing and ("baseline", 2) in missing
    assert ("baseline", 0) not in missing
    assert ("crossmodal", 0) in missing                             # an experiment of params/ never run
    assert "the default plan, every experiment of params/ × 3 seeds" in reporting.unusable_runs_text(data_dir)


# --------------------------------------------------------------------------- the committed reference


def test_the_committed_reference_is_read_but_not_rewritten_unless_asked(monkeypatch, tmp_path, capsys):
    reference = make_results_folder(tmp_path / "checkout" / "results" / "synthetic-cpu")
    import storylib.report.files   # where write_report_files finds it

    monkeypatch.setattr(storylib.report.files, "is_committed_reference", lambda folder: Path(folder) == reference)
    assert reporting.write_report_files(reference) == {}
    assert "committed reference" in capsys.readouterr().out and not (reference / "Results.md").exists()
    assert set(reporting.write_report_files(reference, update_reference=True)) == {"results_csv", "results_md"}


def test_the_checkouts_reference_folder_is_recognised():
    root = Path(reporting.__file__).resolve().parent.parent
    assert reporting.is_committed_reference(root / "results" / "synthetic-cpu")
    assert not reporting.is_committed_reference(root / "results" / "synthetic-smoke")


# --------------------------------------------------------------------------- report.html


def test_report_html_hides_the_install_and_parameter_cells_and_the_machines_path(data_dir, tmp_path):
    """Notebook 03 as papermill leaves it (its injected parameters after the defaults), with outputs."""
    from papermill.parameterize import parameterize_notebook

    results_dir = "../../../elsewhere/secret-machine-folder/results"
    source = nbformat.read(str(NOTEBOOKS_DIR / "03_comparison_report.ipynb"), as_version=4)
    for cell in source.cells:
        cell.metadata.setdefault("tags", [])                  # as papermill's loader does
    source.metadata["papermill"] = {}
    executed = parameterize_notebook(source, {"data": "synthetic", "scale": "smoke", "results_dir": results_dir,
                                              "update_reference": True})
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="output shown\n")]
    executed.metadata["papermill"] = {"parameters": {"results_dir": results_dir}}
    path = tmp_path / "comparison_report.ipynb"
    nbformat.write(executed, str(path))
    page = reporting.report_html(path, data_dir)
    assert "secret-machine-folder" not in page
    assert "REPOSITORY_URL" not in page and "storylib_install_target" not in page       # the install cell
    assigned = re.compile(r'<span class="n">(update_reference|results_dir)</span>\s*<span class="o">=</span>')
    assert not assigned.search(page)                                                   # no parameter cell's code
    assert '<span class="n">answer</span>' in page                                      # other code stays
    assert page.count("output shown") == sum(cell.cell_type == "code" for cell in executed.cells)


# --------------------------------------------------------------------------- a one-epoch loss curve


def visible_epoch_ticks(axis) -> list[float]:
    low, high = axis.get_xlim()
    return [tick for tick in axis.get_xticks() if low <= tick <= high]


def test_a_one_epoch_loss_curve_has_markers_and_whole_epoch_ticks(data_dir):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from storylib.report.figures import loss_curve_figure

    history = pd.DataFrame({"epoch": [1], **{f"{split}_{term}": [1.0] for split in ("train", "val")
                                             for term in ("loss", "image", "text", "context", "kl")}})
    figure = loss_curve_figure({"this run": history})               # a run's own loss_curve.png
    FigureCanvasAgg(figure).draw()
    curve_axes = [axis for axis in figure.axes if axis.get_lines()]
    assert len(curve_axes) == 5                                     # the total and every loss term
    for axis in curve_axes:
        ticks = visible_epoch_ticks(axis)
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
        assert 1.0 in ticks
        assert all(line.get_marker() not in (None, "None", "") for line in axis.get_lines())
    for path in data_dir.glob("*/seed*/metrics.csv"):             # the report's curves, one epoch each
        table = pd.read_csv(path)
        table[table["epoch"] == 1].to_csv(path, index=False)
    report_figure = reporting.plot_loss_curves(data_dir)
    FigureCanvasAgg(report_figure).draw()
    for axis in [a for a in report_figure.axes if a.get_lines()]:
        ticks = visible_epoch_ticks(axis)
        assert ticks == [1.0] or (1.0 in ticks and all(float(t).is_integer() for t in ticks)), ticks
        assert axis.get_xlim()[0] < 1.0 < axis.get_xlim()[1]
        assert all(line.get_marker() not in (None, "None", "") for line in axis.get_lines())
