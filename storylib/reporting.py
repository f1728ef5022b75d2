"""The comparison report: every run of one results folder, beside the trivial floors.

Reads the results contract (``<results>/<data>-<scale>/<experiment>/seed<k>/...``, see
``design.md``) and nothing else, so a report can be rebuilt from committed results without
torch. Numbers are shown as mean ± sd over seeds; an experiment's change against a reference
is a paired percentile bootstrap over test windows (per-window metrics averaged over seeds
first), because seed-to-seed spread alone says nothing about which windows improved.

Figures are built with :class:`matplotlib.figure.Figure` (not pyplot), so a notebook cell that
returns one shows it exactly once and nothing accumulates in pyplot's figure registry.
"""

from __future__ import annotations

import json
import math
import textwrap
from io import StringIO
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from storylib.io import atomic_write_text

# Every metric of test_metrics.json that the comparison shows, in display order.
CONTRACT_METRICS = (
    "image_mae",
    "image_mse",
    "image_ssim",
    "image_psnr",
    "text_perplexity",
    "bleu",
    "chrf",
    "rouge_l",
    "prediction_spread",
)
# Metrics that predictions.csv holds per test window (paired comparisons use these).
PER_WINDOW_METRICS = CONTRACT_METRICS[:-1]
LOWER_IS_BETTER = frozenset({"image_mae", "image_mse", "text_perplexity"})
RUN_FACTS = ("num_params", "train_seconds", "stories_per_second")
# Decimals shown per column; everything else gets four.
DECIMALS = {
    "train_seconds": 1,
    "stories_per_second": 1,
    "image_psnr": 2,
    "text_perplexity": 2,
    "bleu": 2,
    "chrf": 2,
    "rouge_l": 2,
}
# Baseline first, the capacity control second: the two references of every comparison.
EXPERIMENT_ORDER = ("baseline", "enhanced", "crossmodal", "vae", "both", "residual_decoder")
IMAGE_FLOORS = ("median_image", "mean_image", "copy_last_frame")
FLOOR_ORDER = (*IMAGE_FLOORS, "unigram", "copy_last_description")
LOSS_TERMS = ("loss", "image", "text", "context", "kl")
VERDICTS = ("better", "worse", "no clear difference")


def enable_inline_figures() -> None:
    """Show returned matplotlib Figures as PNG in a notebook kernel, whatever the backend.

    IPython registers its Figure formatter only once pyplot loads the inline backend; the
    report builds figures without pyplot, so it registers the formatter itself (no-op outside
    IPython). Without this, papermill copies and report.html would show ``<Figure ...>``.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "display_formatter"):
        select_figure_formats(shell, {"png"}, bbox_inches="tight")


enable_inline_figures()


# --------------------------------------------------------------------------- reading


def experiment_sort_key(name: str) -> tuple[int, str]:
    """Known experiments in study order, any others alphabetically after them."""
    if name in EXPERIMENT_ORDER:
        return (EXPERIMENT_ORDER.index(name), name)
    return (len(EXPERIMENT_ORDER), name)


def _seed_number(folder: Path) -> int:
    return int(folder.name[4:]) if folder.name[4:].isdigit() else 1 << 30


def run_folders(data_dir: Path | str) -> list[tuple[str, Path, str | None]]:
    """Every ``<experiment>/seed<k>`` with a ``test_metrics.json``: (experiment, folder, why it
    is stale or None), in study order. See :func:`storylib.runs.stale_reason`."""
    from storylib.runs import stale_reason

    found = []
    for path in Path(data_dir).glob("*/seed*/test_metrics.json"):
        experiment, folder = path.parent.parent.name, path.parent
        found.append((experiment, folder, stale_reason(folder, experiment)))
    return sorted(found, key=lambda item: (experiment_sort_key(item[0]), _seed_number(item[1])))


def seed_dirs(data_dir: Path | str, experiment: str) -> list[Path]:
    """``<experiment>/seed<k>`` folders that hold a finished, current run, by seed (stale runs,
    trained with other settings or unreadable, are left out: :func:`stale_runs` lists them)."""
    return [folder for name, folder, stale in run_folders(data_dir) if name == experiment and stale is None]


def finished_experiments(data_dir: Path | str) -> list[str]:
    """Experiments with at least one finished, current seed, in study order."""
    return list(dict.fromkeys(name for name, _, stale in run_folders(data_dir) if stale is None))


def stale_runs(data_dir: Path | str) -> list[tuple[Path, str]]:
    """(folder relative to ``data_dir``, why) of every run the report leaves out."""
    return [(folder.relative_to(data_dir), stale) for _, folder, stale in run_folders(data_dir) if stale is not None]


def stale_runs_text(data_dir: Path | str) -> str:
    """One line per stale run (empty when there is none), for the report and run_all.py."""
    stale = stale_runs(data_dir)
    if not stale:
        return ""
    lines = [f"Left out of the report ({len(stale)} stale run{'s' if len(stale) != 1 else ''}):"]
    lines += [f"- {folder}: {why}" for folder, why in stale]
    return "\n".join(lines)


def collect_runs(data_dir: Path | str) -> pd.DataFrame:
    """One row per experiment × seed, read from every ``test_metrics.json`` under ``data_dir``.

    Columns: ``experiment``, ``seed``, the contract metrics, ``num_params``, ``train_seconds``,
    ``stories_per_second`` and whatever else the files hold (tokenizer, config_hash, ...).
    Only finished, current runs (:func:`stale_runs` lists the others). An empty frame (with
    those columns) when nothing has finished yet.
    """
    from storylib.runs import read_test_metrics

    rows = []
    for experiment, folder, stale in run_folders(data_dir):
        if stale is None:
            values = read_test_metrics(folder)
            flat = {key: value for key, value in values.items() if not isinstance(value, (dict, list))}
            flat["experiment"] = experiment
            flat["seed"] = int(values.get("seed", folder.name[4:]))
            rows.append(flat)
    leading = ["experiment", "seed", *CONTRACT_METRICS, *RUN_FACTS]
    runs = pd.DataFrame(rows)
    for column in leading:
        if column not in runs:
            runs[column] = pd.Series(dtype=float if column not in ("experiment",) else object)
    others = [c for c in runs.columns if c not in leading]
    return runs[leading + others].reset_index(drop=True)


def load_floors(data_dir: Path | str) -> dict:
    """``floors.json`` of the folder, or an empty dict when it is not there yet."""
    path = Path(data_dir) / "floors.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def results_folder(results_dir: Path | str, data: str, scale: str) -> Path:
    """``<results_dir>/<data label>-<scale>``: the folder that runs with these parameters write.

    ``data`` is made concrete (``auto`` → storyreasoning or synthetic) and ``scale`` resolved
    exactly as :func:`storylib.experiment.setup` does (``STORYLIB_SCALE`` and
    ``STORYLIB_RESULTS_DIR`` win when set).
    """
    from storylib.data.sources import resolve_source, source_label
    from storylib.experiment import resolve_results_dir, resolve_scale

    return resolve_results_dir(results_dir) / f"{source_label(resolve_source(data))}-{resolve_scale(scale)}"


def no_runs_message(data_dir: Path | str) -> str:
    return (
        f"No finished runs under {Path(data_dir)} yet: every table and figure of this report stays "
        "empty. Run `python run_all.py` (or notebooks/02_experiment.ipynb) with the same data and "
        "scale first."
    )


def describe_runs(data_dir: Path | str) -> str:
    """One paragraph saying what the folder holds (or that it holds nothing yet); also printed."""
    runs = collect_runs(data_dir)
    if runs.empty:
        text = no_runs_message(data_dir)
    else:
        seeds = runs.groupby("experiment")["seed"].nunique()
        listed = ", ".join(f"{name} ({seeds[name]} seed{'s' if seeds[name] != 1 else ''})"
                           for name in sorted(seeds.index, key=experiment_sort_key))
        floors = load_floors(data_dir)
        facts = []
        for key in ("data_source", "tokenizer", "num_test_windows"):
            value = floors.get(key, runs[key].iloc[0] if key in runs else None)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                facts.append(f"{key.replace('_', ' ')}: {value}")
        text = f"{Path(data_dir)}: {listed}." + (f" {'; '.join(facts)}." if facts else "")
    stale = stale_runs_text(data_dir)
    if stale:
        text += "\n" + stale
    print(text)
    return text


# --------------------------------------------------------------------------- tables


def format_mean_sd(values: Iterable[float], decimals: int = 4) -> str:
    """``"mean ± sd"`` (sample sd, ddof=1) of the finite values; just the mean for one value."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "—"
    mean = float(np.mean(finite))
    if len(finite) == 1:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {float(np.std(finite, ddof=1)):.{decimals}f}"


def _format_single(value: object, decimals: int) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{float(value):.{decimals}f}"


def summary_table(runs: pd.DataFrame, floors: dict) -> pd.DataFrame:
    """Experiments (mean ± sd over seeds) and floors (``"floor: <name>"`` rows) in one table.

    Columns: ``n_seeds``, ``num_params``, ``train_seconds``, ``stories_per_second`` and every
    contract metric; a floor fills only the metrics it defines ("—" elsewhere).
    """
    columns = ["n_seeds", *RUN_FACTS, *CONTRACT_METRICS]
    rows: dict[str, dict[str, str]] = {}
    if not runs.empty:
        for experiment in sorted(runs["experiment"].unique(), key=experiment_sort_key):
            group = runs[runs["experiment"] == experiment]
            row = {"n_seeds": str(group["seed"].nunique())}
            params = group["num_params"].dropna()
            row["num_params"] = f"{int(params.iloc[0]):,}" if len(params) else "—"
            for column in (*RUN_FACTS[1:], *CONTRACT_METRICS):
                row[column] = format_mean_sd(group[column], DECIMALS.get(column, 4))
            rows[experiment] = row
    named = [name for name, values in floors.items() if isinstance(values, dict)]
    for name in sorted(named, key=lambda n: (FLOOR_ORDER.index(n) if n in FLOOR_ORDER else len(FLOOR_ORDER), n)):
        values = floors[name]
        row = {column: "—" for column in columns}
        for metric, value in values.items():
            if metric in CONTRACT_METRICS:
                row[metric] = _format_single(value, DECIMALS.get(metric, 4))
        rows[f"floor: {name}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "experiment"
    return table


# (column, config path) of the settings the experiment table shows
CONFIG_COLUMNS = (
    ("epochs", ("train", "epochs")), ("batch_size", ("train", "batch_size")), ("lr", ("train", "lr")),
    ("schedule", ("train", "schedule")), ("latent_dim", ("model", "latent_dim")),
    ("attention", ("model", "cross_modal_attention")), ("vae", ("model", "vae")),
    ("image_decoder", ("model", "image_decoder")), ("text_decoder", ("model", "text_decoder")),
    ("image_weight", ("train", "image_weight")), ("text_weight", ("train", "text_weight")),
)


def experiment_table(data_dir: Path | str) -> pd.DataFrame:
    """One row per experiment: its settings (config.yaml of its first seed), parameter count,
    training time and stories/s (mean ± sd over seeds)."""
    import yaml

    runs = collect_runs(data_dir)
    rows = {}
    for experiment in finished_experiments(data_dir):
        config_path = seed_dirs(data_dir, experiment)[0] / "config.yaml"
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        row: dict[str, object] = {"description": (config or {}).get("description", "")}
        for column, (section, key) in CONFIG_COLUMNS:
            row[column] = ((config or {}).get(section) or {}).get(key, "—")
        group = runs[runs["experiment"] == experiment]
        params = group["num_params"].dropna()
        row["num_params"] = f"{int(params.iloc[0]):,}" if len(params) else "—"
        row["n_seeds"] = int(group["seed"].nunique())
        for column in RUN_FACTS[1:]:
            row[column] = format_mean_sd(group[column], DECIMALS[column])
        rows[experiment] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "experiment"
    return table


def per_window_means(data_dir: Path | str, experiment: str, metric: str) -> pd.Series:
    """``metric`` per test window averaged over the experiment's seeds, indexed by window_index."""
    frames = []
    for folder in seed_dirs(data_dir, experiment):
        path = folder / "predictions.csv"
        if path.is_file():
            frames.append(pd.read_csv(path, usecols=["window_index", metric]))
    if not frames:
        return pd.Series(dtype=float, name=metric)
    stacked = pd.concat(frames, ignore_index=True)
    stacked = stacked[np.isfinite(stacked[metric].astype(float))]
    return stacked.groupby("window_index")[metric].mean().rename(metric)


def bootstrap_mean_ci(differences: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (windows resampled)."""
    differences = np.asarray(differences, dtype=float)
    if differences.size == 0:
        return (math.nan, math.nan)
    generator = np.random.default_rng(seed)
    picks = generator.integers(0, differences.size, size=(n_boot, differences.size))
    means = differences[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))


def verdict(metric: str, ci_low: float, ci_high: float) -> str:
    """"better"/"worse" when the interval excludes zero, in the metric's own direction."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)) or ci_low <= 0.0 <= ci_high:
        return "no clear difference"
    increased = ci_low > 0.0
    return "worse" if increased == (metric in LOWER_IS_BETTER) else "better"


PAIRED_COLUMNS = ["experiment", "reference", "metric", "n_windows", "reference_mean",
                  "experiment_mean", "difference", "ci_low", "ci_high", "verdict"]


def paired_differences(data_dir: Path | str, reference: str, metric: str | Sequence[str] = PER_WINDOW_METRICS,
                       n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Each experiment's change against ``reference`` on ``metric`` (one name or several).

    Per-window values are averaged over seeds, paired on ``window_index`` (windows both have),
    and the mean difference (experiment − reference) gets a percentile bootstrap CI with a
    fixed ``seed``. Empty when the reference has no finished run.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    rows = []
    others = [e for e in finished_experiments(data_dir) if e != reference]
    for name in metrics:
        reference_values = per_window_means(data_dir, reference, name)
        if reference_values.empty:
            continue
        for experiment in others:
            paired = pd.concat([reference_values.rename("reference"),
                                per_window_means(data_dir, experiment, name).rename("experiment")],
                               axis=1, join="inner")
            if paired.empty:
                continue
            differences = (paired["experiment"] - paired["reference"]).to_numpy()
            low, high = bootstrap_mean_ci(differences, n_boot=n_boot, seed=seed, confidence=confidence)
            rows.append({
                "experiment": experiment, "reference": reference, "metric": name,
                "n_windows": len(paired), "reference_mean": float(paired["reference"].mean()),
                "experiment_mean": float(paired["experiment"].mean()),
                "difference": float(differences.mean()), "ci_low": low, "ci_high": high,
                "verdict": verdict(name, low, high),
            })
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


# --------------------------------------------------------------------------- figures


def _message_figure(text: str) -> Figure:
    figure = Figure(figsize=(7, 1.2))
    axis = figure.add_subplot()
    axis.axis("off")
    axis.text(0.5, 0.5, textwrap.fill(text, 90), ha="center", va="center", fontsize=10)
    return figure


def mean_history(data_dir: Path | str, experiment: str) -> pd.DataFrame:
    """metrics.csv of every seed of ``experiment``, averaged per epoch."""
    frames = [pd.read_csv(folder / "metrics.csv") for folder in seed_dirs(data_dir, experiment)
              if (folder / "metrics.csv").is_file()]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).groupby("epoch", as_index=False).mean(numeric_only=True)


def plot_loss_curves(data_dir: Path | str) -> Figure:
    """Train (solid) and val (dashed) curves of every experiment, one panel per loss term."""
    histories = {e: mean_history(data_dir, e) for e in finished_experiments(data_dir)}
    histories = {e: h for e, h in histories.items() if not h.empty}
    if not histories:
        return _message_figure(no_runs_message(data_dir))
    figure = Figure(figsize=(3.2 * len(LOSS_TERMS), 3.2), layout="constrained")
    axes = figure.subplots(1, len(LOSS_TERMS), sharex=True)
    colours = {e: f"C{i % 10}" for i, e in enumerate(histories)}
    for axis, term in zip(axes, LOSS_TERMS):
        for experiment, history in histories.items():
            for split, style in (("train", "-"), ("val", "--")):
                column = f"{split}_{term}"
                if column in history:
                    axis.plot(history["epoch"], history[column], style, color=colours[experiment],
                              label=f"{experiment} {split}", marker="o", markersize=3)
        axis.set_title(term)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("loss (mean over seeds)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return figure


def frame_to_hwc(frame: np.ndarray) -> np.ndarray:
    """uint8 (3, H, W) → (H, W, 3) for imshow / PIL."""
    return np.ascontiguousarray(np.transpose(frame, (1, 2, 0)))


def short_text(text: object, width: int = 24, max_lines: int = 4) -> str:
    lines = textwrap.wrap(str(text) if isinstance(text, str) else "", width)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, width - 1)] + "…"
    return "\n".join(lines)


class ResultsFolder:
    """Lazy, cached access to the browser/grid files of one ``<data>-<scale>`` folder."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self._predictions: dict[tuple[str, int], tuple[pd.DataFrame, dict]] = {}
        path = self.data_dir / "test_windows.npz"
        if path.is_file():
            with np.load(path) as arrays:
                self.window_indices = arrays["window_index"].astype(int)
                self.frames = arrays["frames"]
        else:
            self.window_indices = np.zeros(0, dtype=int)
            self.frames = np.zeros((0, 5, 3, 1, 1), dtype=np.uint8)
        texts_path = self.data_dir / "test_windows.csv"
        self.texts = (pd.read_csv(texts_path, keep_default_na=False).set_index("window_index")
                      if texts_path.is_file() else pd.DataFrame())
        floors_path = self.data_dir / "floor_windows.csv"
        self.floor_windows = (pd.read_csv(floors_path).set_index("window_index")
                              if floors_path.is_file() else pd.DataFrame())
        self.experiments = finished_experiments(self.data_dir)

    def position(self, window_index: int) -> int:
        matches = np.flatnonzero(self.window_indices == int(window_index))
        if not len(matches):
            raise KeyError(f"window {window_index} is not among the saved test windows of {self.data_dir}")
        return int(matches[0])

    def window_frames(self, window_index: int) -> np.ndarray:
        """uint8 (5, 3, H, W): 4 context frames and the true target."""
        return self.frames[self.position(window_index)]

    def window_texts(self, window_index: int) -> list[str]:
        """The 4 context descriptions and the target description."""
        if window_index not in self.texts.index:
            return [""] * 5
        row = self.texts.loc[window_index]
        return [str(row.get(f"context_text_{i}", "")) for i in range(1, 5)] + [str(row.get("target_text", ""))]

    def seeds(self, experiment: str) -> list[int]:
        return [int(folder.name[4:]) for folder in seed_dirs(self.data_dir, experiment)]

    def predictions(self, experiment: str, seed: int | None = None) -> tuple[pd.DataFrame, dict]:
        """(predictions.csv indexed by window_index, predictions.npz arrays) of one run."""
        seeds = self.seeds(experiment)
        seed = seeds[0] if seed is None and seeds else seed
        key = (experiment, int(seed) if seed is not None else -1)
        if key not in self._predictions:
            folder = self.data_dir / experiment / f"seed{seed}"
            table = (pd.read_csv(folder / "predictions.csv", keep_default_na=False).set_index("window_index")
                     if (folder / "predictions.csv").is_file() else pd.DataFrame())
            arrays: dict = {}
            if (folder / "predictions.npz").is_file():
                with np.load(folder / "predictions.npz") as loaded:
                    arrays = {name: loaded[name] for name in loaded.files}
            self._predictions[key] = (table, arrays)
        return self._predictions[key]

    def _saved(self, name: str, experiment: str, window_index: int, seed: int | None) -> np.ndarray | None:
        """Row of the saved array ``name`` of predictions.npz for one test window, if saved."""
        _, arrays = self.predictions(experiment, seed)
        if name not in arrays or "window_index" not in arrays:
            return None
        matches = np.flatnonzero(arrays["window_index"] == int(window_index))
        return arrays[name][matches[0]] if len(matches) else None

    def predicted_frame(self, experiment: str, window_index: int, seed: int | None = None) -> np.ndarray | None:
        return self._saved("predicted_frame", experiment, window_index, seed)

    def vae_samples(self, experiment: str, window_index: int, seed: int | None = None) -> np.ndarray | None:
        return self._saved("vae_samples", experiment, window_index, seed)

    def window_metrics(self, experiment: str, window_index: int, seed: int | None = None) -> dict:
        table, _ = self.predictions(experiment, seed)
        if table.empty or window_index not in table.index:
            return {}
        return table.loc[window_index].to_dict()


def default_windows(data_dir: Path | str, count: int = 4) -> list[int]:
    """``count`` fixed, evenly spaced saved test windows (the same ones on every rebuild)."""
    indices = ResultsFolder(data_dir).window_indices
    if not len(indices):
        return []
    positions = np.unique(np.linspace(0, len(indices) - 1, num=min(count, len(indices))).round().astype(int))
    return [int(indices[p]) for p in positions]


def plot_qualitative_grid(data_dir: Path | str, window_indices: Sequence[int],
                          experiments: Sequence[str] | None = None) -> Figure:
    """Rows: test windows. Columns: 4 context frames, the truth, each experiment's prediction
    (its first seed), each with its description or generated text underneath."""
    folder = ResultsFolder(data_dir)
    experiments = list(experiments) if experiments is not None else folder.experiments
    window_indices = [int(w) for w in window_indices if int(w) in set(folder.window_indices.tolist())]
    if not window_indices or not experiments:
        return _message_figure(no_runs_message(data_dir) if not experiments
                               else f"No saved test windows (test_windows.npz) under {folder.data_dir}.")
    columns = 5 + len(experiments)
    frame_height, frame_width = folder.window_frames(window_indices[0]).shape[-2:]
    # per row: the frame, its title above and about five lines of text below
    row_height = 2.1 * frame_height / frame_width + 1.0
    figure = Figure(figsize=(2.1 * columns, row_height * len(window_indices)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(window_indices), columns, squeeze=False))
    for row, window in enumerate(window_indices):
        frames, texts = folder.window_frames(window), folder.window_texts(window)
        panels = [(frames[i], f"context {i + 1}", texts[i]) for i in range(4)]
        panels.append((frames[4], "truth", texts[4]))
        for experiment in experiments:
            metrics = folder.window_metrics(experiment, window)
            mae = metrics.get("image_mae")
            title = experiment + (f" (MAE {float(mae):.3f})" if mae not in (None, "") else "")
            panels.append((folder.predicted_frame(experiment, window), title, metrics.get("generated_text", "")))
        for column, (image, title, text) in enumerate(panels):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if image is not None:
                axis.imshow(frame_to_hwc(image))
            else:
                axis.text(0.5, 0.5, "not saved", ha="center", va="center", fontsize=8)
            axis.set_title(f"w{window} {title}" if column == 0 else title, fontsize=8)
            axis.set_xlabel(short_text(text), fontsize=6.5)
    return figure


# --------------------------------------------------------------------------- report files


def markdown_table(table: pd.DataFrame, index: bool = True) -> str:
    """A GitHub markdown table (no tabulate dependency); ``|`` in cells is escaped."""
    frame = table.reset_index() if index else table

    def cell(value: object) -> str:
        if isinstance(value, float):
            text = "—" if not np.isfinite(value) else f"{value:.4g}"
        else:
            text = str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = [cell(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def paired_table(data_dir: Path | str, references: Sequence[str] = ("baseline", "enhanced"),
                 metrics: Sequence[str] = PER_WINDOW_METRICS) -> pd.DataFrame:
    """:func:`paired_differences` against each reference, stacked."""
    parts = [paired_differences(data_dir, reference, metrics) for reference in references]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIRED_COLUMNS)


def write_report_files(data_dir: Path | str) -> dict[str, Path]:
    """Write ``results.csv`` (one row per experiment × seed) and ``Results.md`` (the tables)."""
    data_dir = Path(data_dir)
    runs = collect_runs(data_dir)
    floors = load_floors(data_dir)
    buffer = StringIO()
    runs.to_csv(buffer, index=False)
    paths = {"results_csv": atomic_write_text(data_dir / "results.csv", buffer.getvalue())}
    lines = [f"# Results: {data_dir.name}", ""]
    if stale_runs_text(data_dir):
        lines += [stale_runs_text(data_dir), ""]
    if runs.empty:
        lines += [no_runs_message(data_dir), ""]
    else:
        facts = {k: floors.get(k) for k in ("data_source", "tokenizer", "num_test_windows") if k in floors}
        if facts:
            lines += ["; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in facts.items()), ""]
        lines += ["## Experiments (settings; training time and stories/s as mean ± sd over seeds)", "",
                  markdown_table(experiment_table(data_dir)), "",
                  "## Test metrics (mean ± sd over seeds; floors as rows)", "",
                  markdown_table(summary_table(runs, floors)), ""]
        for reference in ("baseline", "enhanced"):
            differences = paired_differences(data_dir, reference)
            if differences.empty:
                continue
            lines += [f"## Change against `{reference}` (experiment − {reference}; paired bootstrap "
                      "95% CI over test windows, per-window values averaged over seeds)", "",
                      markdown_table(differences.drop(columns="reference"), index=False), ""]
    paths["results_md"] = atomic_write_text(data_dir / "Results.md", "\n".join(lines))
    return paths
