"""``python run_all.py --data synthetic --scale smoke --seeds 1`` (the session's
``local_smoke_suite``, tests/conftest.py): every file of the results contract, with content; a
second call reuses every run. Slow (minutes): deselect with
``-m "not slow"``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _smoke_suite import run_all
from storylib.config import available_experiments

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CONTRACT_KEYS = {"image_mae", "image_mse", "image_ssim", "image_psnr", "text_perplexity", "bleu", "chrf",
                 "rouge_l", "prediction_spread", "num_params", "train_seconds", "stories_per_second",
                 "tokenizer", "data_source", "num_test_windows", "config_hash"}


def assert_image(path: Path) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.size[0] > 10 and image.size[1] > 10, path


def test_every_contract_file_is_written_with_content(local_smoke_suite):
    results_dir, completed = local_smoke_suite
    data_dir = results_dir / "synthetic-smoke"
    assert f"results: {data_dir}" in completed.stdout
    assert_results_contract(data_dir, available_experiments())
    assert f"report: {data_dir / 'report.html'}" in completed.stdout
    assert not list((REPO / "notebooks").glob("**/experiment.ipynb"))


def assert_results_contract(data_dir: Path, experiments: list[str]) -> None:
    """Every file of the results contract (design.md) in ``data_dir``, with content, for one seed
    of ``experiments``."""
    for name in ("data_exploration.ipynb", "comparison_report.ipynb", "floors.json", "floor_windows.csv",
                 "test_windows.csv", "Results.md"):
        assert (data_dir / name).stat().st_size > 0, name
    floors = json.loads((data_dir / "floors.json").read_text())
    assert {"median_image", "mean_image", "copy_last_frame", "unigram", "copy_last_description"} <= set(floors)
    for name in ("median_image", "copy_last_frame", "motion_extrapolation", "analogue", "oracle_best_context",
                 "unigram", "copy_last_description"):
        assert {"continues", "cuts"} <= set(floors[name]), name  # every floor split by the shot at frame 5
    assert floors["cut_basis"] == "set-up labels" and floors["oracle_best_context"]["oracle"] is True
    with np.load(data_dir / "test_windows.npz") as saved:
        assert saved["frames"].dtype == np.uint8 and saved["frames"].shape[1:3] == (5, 3)
    results = pd.read_csv(data_dir / "results.csv")
    assert sorted(results["experiment"]) == sorted(experiments) and (results["seed"] == 0).all()
    for experiment in experiments:
        run_dir = data_dir / experiment / "seed0"
        metrics = json.loads((run_dir / "test_metrics.json").read_text())
        assert CONTRACT_KEYS <= set(metrics), CONTRACT_KEYS - set(metrics)
        assert {"image_mae_continues", "image_mae_cuts", "image_ssim_cuts"} <= set(metrics)
        assert (run_dir / "config.yaml").stat().st_size > 0 and (run_dir / "experiment.ipynb").is_file()
        # a complete run keeps the weights its metrics come from, not the resume point
        assert (run_dir / "checkpoints" / "best.pt").is_file() and not (run_dir / "checkpoints" / "last.pt").exists()
        assert len(pd.read_csv(run_dir / "metrics.csv")) >= 1
        predictions = pd.read_csv(run_dir / "predictions.csv")
        assert len(predictions) == metrics["num_test_windows"] > 0
        with np.load(run_dir / "predictions.npz") as saved:
            assert saved["predicted_frame"].dtype == np.uint8
        assert_image(run_dir / "loss_curve.png")
        visualizations = sorted((run_dir / "visualizations").glob("epoch_*.png"))
        assert visualizations
        assert_image(visualizations[-1])
    html = (data_dir / "report.html").read_text()
    assert all(experiment in html for experiment in experiments)
    markdown = (data_dir / "Results.md").read_text()
    assert "floor: median_image" in markdown and all(f"| {e} |" in markdown for e in experiments)


def test_a_second_call_reuses_every_run(local_smoke_suite):
    results_dir, _ = local_smoke_suite
    executed = sorted(results_dir.glob("*/*/seed*/experiment.ipynb"))
    before = {path: path.stat().st_mtime_ns for path in executed}
    completed = run_all(results_dir)
    assert completed.returncode == 0, completed.stderr[-3000:]
    # reused means not executed again: no executed experiment notebook was rewritten
    assert executed and {path: path.stat().st_mtime_ns for path in executed} == before
    for experiment in available_experiments():
        assert f"{experiment} seed0: reused" in completed.stdout
    # nothing the report reads changed either: no kernel for notebook 03, report.html kept
    assert "03_comparison_report: reused" in completed.stdout
    assert f"0 ran, {len(available_experiments()) + 2} reused, 0 failed" in completed.stdout
    assert "(unchanged: nothing it reads changed since it was built" in completed.stdout
