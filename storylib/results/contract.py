"""The results contract, declared once: the files of a results folder and of a run, the names
of the metrics, floors and loss terms in them, and where a results folder lives.

Every module takes these names from here (``tests/test_contract.py`` finds any file name of the
contract spelled out elsewhere in ``storylib``). It imports nothing, so anything can import it.

    <results_dir>/<data>-<scale>/                       data_folder(...)
        floors.json, floor_windows.csv                   the floors, overall and per window
        test_windows.csv, test_windows.npz               the test windows the browser shows
        saved_windows_subset.json, run_plan.json, report_inputs.json, collapse_diagnostic.json
        data_exploration.ipynb, comparison_report.ipynb  notebooks 01 and 03, executed
        report.html, results.csv, Results.md             the report
        <experiment>/seed<N>/                            run_folder(...)
            config.yaml, experiment.ipynb, metrics.csv, loss_curve.png, visualizations/
            test_metrics.json, predictions.csv, predictions.npz
            checkpoints/best.pt, checkpoints/last.pt
"""

from __future__ import annotations

from pathlib import Path

# --------------------------------------------------------------------------- a results folder

FLOORS_FILE = "floors.json"
FLOOR_WINDOWS_FILE = "floor_windows.csv"
TEST_WINDOWS_TABLE = "test_windows.csv"
TEST_WINDOWS_FRAMES = "test_windows.npz"
SUBSET_FILE = "saved_windows_subset.json"
PLAN_FILE = "run_plan.json"
REPORT_INPUTS_FILE = "report_inputs.json"
COLLAPSE_FILE = "collapse_diagnostic.json"
EXECUTED_EXPLORATION = "data_exploration.ipynb"  # notebooks 01 and 03 as run_all.py executed them
EXECUTED_REPORT = "comparison_report.ipynb"
REPORT_HTML = "report.html"
RESULTS_TABLE = "results.csv"
RESULTS_MARKDOWN = "Results.md"

# --------------------------------------------------------------------------- a run folder

CONFIG_FILE = "config.yaml"
EXECUTED_RUN = "experiment.ipynb"  # notebook 02 as executed for this run
HISTORY_FILE = "metrics.csv"  # one row per epoch: the loss terms, train and validation
LOSS_CURVE_FILE = "loss_curve.png"
METRICS_FILE = "test_metrics.json"
PREDICTIONS_TABLE = "predictions.csv"  # per test window: metrics and generated text
PREDICTIONS_FRAMES = "predictions.npz"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = Path(CHECKPOINT_DIR) / "best.pt"  # the weights a finished run's metrics come from
LAST_CHECKPOINT = Path(CHECKPOINT_DIR) / "last.pt"  # where an interrupted run resumes


def data_folder(results_dir: Path | str, source_label: str, scale: str) -> Path:
    """``<results_dir>/<data>-<scale>``: one data source at one scale (``synthetic-cpu``)."""
    return Path(results_dir) / f"{source_label}-{scale}"


def run_folder(data_dir: Path | str, experiment: str, seed: int) -> Path:
    return Path(data_dir) / experiment / f"seed{seed}"


# --------------------------------------------------------------------------- names inside

LOSS_TERMS = ("image", "text", "context", "kl")  # unweighted terms; "loss" is their weighted sum
IMAGE_FLOORS = ("median_image", "mean_image", "copy_last_frame", "motion_extrapolation", "analogue")
IMAGE_ORACLES = ("oracle_best_context",)  # peek at the truth: references, not floors
TEXT_FLOORS = ("unigram", "copy_last_description", "analogue")  # analogue: image and text alike
SHOT_GROUPS = ("continues", "cuts")  # windows whose shot continues into frame 5, or cuts

IMAGE_METRICS = ("image_mae", "image_mse", "image_ssim", "image_psnr")  # per window, and their means
TEXT_METRICS = ("bleu", "chrf", "rouge_l")  # sacreBLEU's 0-100 scale
# Every metric of test_metrics.json that the comparison shows, in display order.
CONTRACT_METRICS = (*IMAGE_METRICS, "text_perplexity", *TEXT_METRICS, "prediction_spread")
# Metrics that predictions.csv holds per test window (paired comparisons use these).
PER_WINDOW_METRICS = CONTRACT_METRICS[:-1]
LOWER_IS_BETTER = frozenset({"image_mae", "image_mse", "image_mae_best_of_k", "text_perplexity",
                             "text_perplexity_window_mean"})
