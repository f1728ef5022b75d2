"""The comparison report: every run of one results folder, beside the trivial floors.

Reads the results contract (``<results>/<data>-<scale>/<experiment>/seed<k>/...``, see
``docs/architecture.md``) and nothing else, so a report can be rebuilt from committed results without
torch. Numbers are shown as mean ± sd over seeds; an experiment's change against a reference
is a hierarchical percentile bootstrap that resamples seeds (each experiment's own) and, within
them, the paired test windows: averaging seeds first and resampling windows alone would ignore
the seed-to-seed spread and call a difference that one seed drives "better".

Figures are built with :class:`matplotlib.figure.Figure` (not pyplot), so a notebook cell that
returns one shows it exactly once and nothing accumulates in pyplot's figure registry. They are
at most :data:`PAGE_WIDTH_INCHES` wide at :data:`FIGURE_DPI`, so a notebook or ``report.html``
shows them unscaled and no text in them is smaller than :data:`MIN_FONT_PT`. Tables shown in the
notebook have few columns and formatted numbers; every path printed is relative to the results
folder (the ``<data>-<scale>`` folder is named, never the machine's absolute path).
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

from storylib.io import atomic_save_npz, atomic_write_json, atomic_write_text
from storylib.results.contract import (
    BEST_CHECKPOINT,
    COLLAPSE_FILE,
    CONFIG_FILE,
    EXECUTED_REPORT,
    FLOORS_FILE,
    FLOOR_WINDOWS_FILE,
    HISTORY_FILE,
    IMAGE_FLOORS,
    LAST_CHECKPOINT,
    LOSS_TERMS,
    METRICS_FILE,
    PLAN_FILE,
    PREDICTIONS_FRAMES,
    PREDICTIONS_TABLE,
    REPORT_HTML,
    REPORT_INPUTS_FILE,
    RESULTS_MARKDOWN,
    RESULTS_TABLE,
    SHOT_GROUPS,
    SUBSET_FILE,
    TEST_WINDOWS_FRAMES,
    TEST_WINDOWS_TABLE,
    data_folder,
    run_folder,
)

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
LOWER_IS_BETTER = frozenset({"image_mae", "image_mse", "image_mae_best_of_k", "text_perplexity",
                             "text_perplexity_window_mean"})
RUN_FACTS = ("num_params", "train_seconds", "stories_per_second")
# Decimals shown per column; everything else gets four.
DECIMALS = {
    "train_seconds": 1,
    "stories_per_second": 1,
    "image_psnr": 2,
    "text_perplexity": 2,
    "text_perplexity_window_mean": 2,
    "bleu": 2,
    "chrf": 2,
    "rouge_l": 2,
}
# Baseline first, the capacity control second: the two references of every comparison.
EXPERIMENT_ORDER = ("baseline", "enhanced", "crossmodal", "vae", "both", "shots", "shots_crossmodal", "shots_vae", "shots_both")
# Display order of the floors of floors.json; any other floor there is shown after these.
FLOOR_ORDER = (*IMAGE_FLOORS, "oracle_best_context", "unigram", "copy_last_description")
# The columns of the two metric tables shown in the notebook (Results.md keeps the whole table).
IMAGE_TABLE = ("n_seeds", "image_mae", "image_mse", "image_ssim", "image_psnr", "prediction_spread")
TEXT_TABLE = ("n_seeds", "text_perplexity", "bleu", "chrf", "rouge_l")
# Figure geometry: shown unscaled in report.html (a column of about 1,158 px) and in a notebook.
FIGURE_DPI = 100
PAGE_WIDTH_INCHES = 10.8          # 1,080 px; a tight bounding box adds about 11 px
MIN_FONT_PT = 9.0
CURVE_TERMS = ("loss", *LOSS_TERMS)  # the weighted sum, then each term
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


# data_dir -> (signature of the files the answer depends on, run_folders' answer)
_RUN_FOLDERS_CACHE: dict[Path, tuple[tuple, list[tuple[str, Path, str | None]]]] = {}


def _file_signature(paths: Iterable[Path]) -> tuple:
    """(path, size, mtime_ns) of each existing file: changes whenever one is rewritten."""
    signature = []
    for path in sorted(paths):
        try:
            status = path.stat()
        except OSError:
            continue
        signature.append((str(path), status.st_size, status.st_mtime_ns))
    return tuple(signature)


def run_folders(data_dir: Path | str) -> list[tuple[str, Path, str | None]]:
    """Every ``<experiment>/seed<k>`` with a ``test_metrics.json``: (experiment, folder, why it
    is stale or None), in study order. See :func:`storylib.runs.stale_reason`.

    Whether a run is current takes rebuilding its configuration from ``params/`` (about 50 ms
    of YAML a run), and every table and figure asks, so the answer is kept until a run's
    ``test_metrics.json`` / ``config.yaml`` or a parameter file changes (size or mtime): without
    this, notebook 03 spent most of its minutes re-reading the same YAML files.
    """
    from storylib.config import PARAMS_DIR
    from storylib.runs import stale_reason

    data_dir = Path(data_dir)
    records = list(data_dir.glob(f"*/seed*/{METRICS_FILE}"))
    signature = (storylib_version(), _file_signature(
        [*records, *(path.parent / CONFIG_FILE for path in records), *Path(PARAMS_DIR).rglob("*.yaml"),
         *data_dir.glob(f"*/seed*/{BEST_CHECKPOINT.as_posix()}")]))
    cached = _RUN_FOLDERS_CACHE.get(data_dir.absolute())
    if cached is not None and cached[0] == signature:
        return list(cached[1])
    found = []
    for path in records:
        experiment, folder = path.parent.parent.name, path.parent
        found.append((experiment, folder, stale_reason(folder, experiment)))
    found.sort(key=lambda item: (experiment_sort_key(item[0]), _seed_number(item[1])))
    _RUN_FOLDERS_CACHE[data_dir.absolute()] = (signature, found)
    return list(found)


def storylib_version() -> str:
    import storylib

    return storylib.__version__


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


# What run_all.py planned in its last call and how each planned run ended (besides finishing).
# The plan assumed when a folder has no run_plan.json (notebook 03 run by hand): run_all.py's
# defaults, every experiment of params/ × this many seeds (more when the folder holds more).
DEFAULT_SEEDS = 3


def read_plan(data_dir: Path | str) -> dict:
    """``run_plan.json`` of the folder: ``{"experiments": [...], "seeds": [...], "outcomes":
    {"<experiment>/seed<k>": {"status": ..., "error": ...}}}``; without one (or unreadable), the
    default plan: every experiment of ``params/`` × seeds 0..2 (or up to the highest seed found)."""
    from storylib.config import available_experiments

    path = Path(data_dir) / PLAN_FILE
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(plan, dict) and isinstance(plan.get("experiments"), list) and isinstance(plan.get("seeds"), list):
            plan.setdefault("outcomes", {})
            return plan
    except (OSError, ValueError):
        pass
    found = [_seed_number(folder) for folder in Path(data_dir).glob("*/seed*") if folder.is_dir()]
    seeds = max([DEFAULT_SEEDS - 1, *[seed for seed in found if seed < 1 << 30]]) + 1
    return {"experiments": available_experiments(), "seeds": list(range(seeds)), "outcomes": {}, "default": True}


def write_plan(data_dir: Path | str, experiments: Sequence[str], seeds: Sequence[int], outcomes: dict) -> Path:
    """Record what run_all.py planned and how the runs that did not finish ended (the report
    lists them). Only statuses and errors: no times, so an unchanged call writes the same bytes
    and the report's input digest stays the same."""
    return atomic_write_json(Path(data_dir) / PLAN_FILE, {
        "experiments": list(experiments), "seeds": [int(seed) for seed in seeds],
        "outcomes": {key: outcomes[key] for key in sorted(outcomes)}})


UNUSABLE_COLUMNS = ["experiment", "seed", "status", "why"]


def unusable_runs(data_dir: Path | str) -> pd.DataFrame:
    """Every planned experiment × seed (:func:`read_plan`) the report cannot use, and why.

    ``status``: *failed* (its notebook raised, per run_plan.json), *interrupted* (stopped by
    Ctrl-C / SIGTERM or killed with a checkpoint left: it resumes), *stale* (finished, but
    with other settings or unreadable: :func:`storylib.runs.stale_reason`) or *missing* (never
    started or left nothing). Finished, current runs are not listed.
    """
    data_dir = Path(data_dir)
    plan = read_plan(data_dir)
    stale = {(name, _seed_number(folder)): why for name, folder, why in run_folders(data_dir)}
    rows = []
    for experiment in sorted(plan["experiments"], key=experiment_sort_key):
        for seed in plan["seeds"]:
            key = (experiment, int(seed))
            if key in stale and stale[key] is None:
                continue
            run_dir = run_folder(data_dir, experiment, seed)
            outcome = plan["outcomes"].get(f"{experiment}/seed{seed}") or {}
            checkpoint = (run_dir / LAST_CHECKPOINT).is_file()
            if key in stale:
                status, why = "stale", stale[key]
            elif outcome.get("status") == "failed":
                status, why = "failed", outcome.get("error") or "its notebook raised an error"
            elif outcome.get("status") == "interrupted" or checkpoint:
                status = "interrupted"
                why = ("stopped before its test metrics were written; "
                       + ("resumes from its last checkpoint" if checkpoint else "starts again")
                       + " on the next `python run_all.py`")
            elif outcome.get("status") == "not started":
                status, why = "missing", "not started (the call was interrupted first)"
            elif run_dir.is_dir():
                status, why = "missing", "its folder holds no test_metrics.json and no checkpoint (it never finished)"
            else:
                status, why = "missing", "never run in this folder"
            rows.append({"experiment": experiment, "seed": int(seed), "status": status, "why": why})
    return pd.DataFrame(rows, columns=UNUSABLE_COLUMNS)


def unusable_runs_text(data_dir: Path | str) -> str:
    """Every run the report could not use, one line each ("" when there is none): the stale
    runs (:func:`stale_runs_text`), then the planned runs that failed, were interrupted or are
    missing, with the plan they come from."""
    table = unusable_runs(data_dir)
    table = table[table["status"] != "stale"]
    blocks = [stale_runs_text(data_dir)] if stale_runs(data_dir) else []
    if not table.empty:
        planned = read_plan(data_dir)
        where = (f"the default plan, every experiment of params/ × {len(planned['seeds'])} seeds (no {PLAN_FILE})"
                 if planned.get("default") else f"{PLAN_FILE}, written by the last run_all.py call")
        counts = ", ".join(f"{count} {status}" for status, count in table["status"].value_counts().items())
        lines = [f"Planned runs with no result ({counts}; plan: {where}):"]
        lines += [f"- {row.experiment}/seed{row.seed}: {row.status}: {' '.join(str(row.why).split())}"
                  for row in table.itertuples()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


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
    path = Path(data_dir) / FLOORS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def results_folder(results_dir: Path | str, data: str, scale: str) -> Path:
    """``<results_dir>/<data label>-<scale>``: the folder that runs with these parameters write.

    ``data`` is made concrete (``auto`` → storyreasoning or synthetic) and ``scale`` resolved
    exactly as :func:`storylib.experiment.setup` does (``STORYLIB_SCALE`` and
    ``STORYLIB_RESULTS_DIR`` win when set).
    """
    from storylib.data.sources import resolve_source, source_label
    from storylib.locations import resolve_results_dir, resolve_scale

    return data_folder(resolve_results_dir(results_dir), source_label(resolve_source(data)), resolve_scale(scale))


def data_and_scale(data_dir: Path | str) -> tuple[str, str]:
    """(data label, scale) of a ``<data>-<scale>`` folder name, e.g. ("synthetic", "cpu")."""
    label, _, scale = Path(data_dir).name.rpartition("-")
    return (label, scale) if label else (Path(data_dir).name, "")


def report_title(data_dir: Path | str) -> str:
    """"Comparison report: synthetic data, cpu scale" for ``.../synthetic-cpu``."""
    label, scale = data_and_scale(data_dir)
    return f"Comparison report: {label} data" + (f", {scale} scale" if scale else "")


def no_runs_message(data_dir: Path | str) -> str:
    return (
        f"No finished runs in {Path(data_dir).name} yet: every table and figure of this report stays "
        "empty. Run `python run_all.py` (or notebooks/02_experiment.ipynb) with the same data and "
        "scale first."
    )


def _show_markdown(text: str) -> None:
    """Markdown in a notebook, plain text elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text)


def describe_runs(data_dir: Path | str) -> str:
    """The report's title (data and scale) and one paragraph saying what the folder holds (or
    that it holds nothing yet); also shown."""
    runs = collect_runs(data_dir)
    if not Path(data_dir).is_dir():
        text = (f"There is no results folder {Path(data_dir).name} here (results_dir and data/scale "
                "parameters): nothing to report, and this notebook writes nothing.")
    elif runs.empty:
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
        text = f"{Path(data_dir).name}: {listed}." + (f" {'; '.join(facts)}." if facts else "")
    unusable = unusable_runs_text(data_dir) if Path(data_dir).is_dir() else ""
    if unusable:
        text += "\n\n" + unusable
    text = f"## {report_title(data_dir)}\n\n{text}"
    _show_markdown(text)
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


def floor_row_label(name: str) -> str:
    """``floor: <name>``; an oracle (it sees the truth) is a ``reference: <name>``, not a floor."""
    return f"reference: {name}" if name.startswith("oracle") else f"floor: {name}"


def summary_table(runs: pd.DataFrame, floors: dict, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Experiments (mean ± sd over seeds) and every floor of ``floors.json`` as rows of one table.

    Columns: ``columns`` (e.g. :data:`IMAGE_TABLE`, :data:`TEXT_TABLE`), by default ``n_seeds``,
    ``num_params``, ``train_seconds``, ``stories_per_second`` and every contract metric; a floor
    fills only the metrics it defines ("—" elsewhere), and a floor with none of ``columns`` is
    left out.
    """
    chosen = list(columns) if columns is not None else None
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
        if chosen is None or any(row[c] != "—" for c in chosen if c != "n_seeds"):
            rows[floor_row_label(name)] = row
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "experiment"
    return table if chosen is None else table[chosen]


# (column, config path) of the settings the experiment table shows
CONFIG_COLUMNS = (
    ("epochs", ("train", "epochs")), ("batch_size", ("train", "batch_size")), ("lr", ("train", "lr")),
    ("schedule", ("train", "schedule")), ("latent_dim", ("model", "latent_dim")),
    ("attention", ("model", "cross_modal_attention")), ("vae", ("model", "vae")),
    ("image_decoder", ("model", "image_decoder")), ("text_decoder", ("model", "text_decoder")),
    ("image_weight", ("train", "image_weight")), ("text_weight", ("train", "text_weight")),
)


# The parts of the experiment table, each narrow enough for a page.
EXPERIMENT_PARTS = {
    "cost": ("description", "num_params", "n_seeds", "train_seconds", "stories_per_second"),
    "model": ("latent_dim", "attention", "vae", "image_decoder", "text_decoder"),
    "training": ("epochs", "batch_size", "lr", "schedule", "image_weight", "text_weight"),
}


def experiment_table(data_dir: Path | str, part: str | None = None) -> pd.DataFrame:
    """One row per experiment: its settings (config.yaml of its first seed), parameter count,
    training time and stories/s (mean ± sd over seeds); ``part`` (a key of
    :data:`EXPERIMENT_PARTS`) keeps only those columns."""
    import yaml

    runs = collect_runs(data_dir)
    rows = {}
    for experiment in finished_experiments(data_dir):
        config_path = seed_dirs(data_dir, experiment)[0] / CONFIG_FILE
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
    if part is not None:
        table = table.reindex(columns=list(EXPERIMENT_PARTS[part]))
    return table


# predictions.csv path -> ((size, mtime_ns), its numeric columns by window_index)
_PREDICTIONS_CACHE: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}
# Per-window token NLL sum and token count (predictions.csv of runs recorded by storylib ≥ 0.4):
# with them the bootstrap of text_perplexity is the corpus-level one of the summary table.
TEXT_NLL, TEXT_TOKENS = "text_nll", "text_tokens"
# What the bootstrap reports for runs recorded without them: a different number, named apart.
WINDOW_MEAN_PERPLEXITY = "text_perplexity_window_mean"
PERPLEXITY_DEFINITION = (
    "Perplexity is corpus-level everywhere: exp of the mean token negative log-likelihood over every "
    "target token of the test windows, per seed (the tables show mean ± sd over seeds; the bootstrap "
    "resamples the same way). `text_perplexity_window_mean`, shown only for runs recorded without "
    "per-window token counts, is the mean of per-window perplexities: a different, larger number."
)


def _numeric_predictions(folder: Path) -> pd.DataFrame:
    """predictions.csv of one run, numeric columns only, indexed by window_index; read once per
    version of the file (a bootstrap table asks for each metric of each seed)."""
    path = folder / PREDICTIONS_TABLE
    try:
        status = path.stat()
    except OSError:
        return pd.DataFrame()
    key = (status.st_size, status.st_mtime_ns)
    cached = _PREDICTIONS_CACHE.get(path.absolute())
    if cached is None or cached[0] != key:
        table = pd.read_csv(path).set_index("window_index")
        table = table.select_dtypes(include="number").astype(float)
        _PREDICTIONS_CACHE[path.absolute()] = cached = (key, table)
    return cached[1]


def per_window_by_seed(data_dir: Path | str, experiment: str, metric: str) -> pd.DataFrame:
    """``metric`` per test window (rows, by window_index) and seed (columns) of an experiment."""
    columns = {}
    for folder in seed_dirs(data_dir, experiment):
        table = _numeric_predictions(folder)
        if metric in table:
            columns[int(folder.name[4:])] = table[metric]
    return pd.DataFrame(columns)


def hierarchical_bootstrap_ci(experiment_values: np.ndarray, reference_values: np.ndarray, n_boot: int = 2000,
                              seed: int = 0, confidence: float = 0.95,
                              experiment_weights: np.ndarray | None = None,
                              reference_weights: np.ndarray | None = None,
                              transform: str = "identity") -> tuple[float, float]:
    """Percentile interval of stat(experiment) − stat(reference), resampling seeds, then windows.

    ``experiment_values`` (S_e, W) and ``reference_values`` (S_r, W): per seed and per paired
    window. Every replicate draws each experiment's seeds with replacement (independently: seed k
    of one model has nothing to do with seed k of another) and one set of windows with
    replacement for both (windows are paired), as in the two-level bootstrap of Davison &
    Hinkley (1997, §3.8). With one seed each it is the paired bootstrap over windows.

    A seed's statistic is sum(values) / sum(weights) over the drawn windows (weights 1: the mean),
    passed through ``transform`` ("exp" for a perplexity from token NLL sums and token counts);
    an experiment's is the mean over its drawn seeds, as the tables average seeds.

    Vectorised: the windows of all replicates are drawn at once as multinomial counts, so a
    replicate costs two matrix products instead of a Python loop (2,000 replicates × 80 pairs
    made notebook 03 wait).
    """
    experiment_values, reference_values = np.atleast_2d(experiment_values), np.atleast_2d(reference_values)
    windows = experiment_values.shape[1]
    if windows == 0 or experiment_values.shape[0] == 0 or reference_values.shape[0] == 0:
        return (math.nan, math.nan)
    generator = np.random.default_rng(seed)
    picked = (generator.integers(0, windows, size=(n_boot, windows), dtype=np.int32)
              + windows * np.arange(n_boot, dtype=np.int32)[:, None])
    counts = np.bincount(picked.ravel(), minlength=n_boot * windows).reshape(n_boot, windows).astype(float)

    def statistic(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        totals = counts @ values.T                                   # (n_boot, seeds)
        amounts = counts @ weights.T if weights is not None else np.full_like(totals, windows)
        per_seed = totals / amounts
        if transform == "exp":
            per_seed = np.exp(per_seed)
        drawn = generator.integers(0, values.shape[0], size=(n_boot, values.shape[0]))
        return np.take_along_axis(per_seed, drawn, axis=1).mean(axis=1)

    differences = (statistic(experiment_values, None if experiment_weights is None else np.atleast_2d(experiment_weights))
                   - statistic(reference_values, None if reference_weights is None else np.atleast_2d(reference_weights)))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(differences, [tail, 100.0 - tail])
    return (float(low), float(high))


def is_floor(name: str, values: object) -> bool:
    """A legal floor of floors.json: a named dict of metrics, not the oracle (it sees the truth)."""
    return isinstance(values, dict) and not values.get("oracle") and not name.startswith("oracle")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def strongest_floor(floors: dict, metric: str = "image_mae") -> tuple[str, dict] | None:
    """(name, its metrics) of the floor a model must beat on ``metric``; None when none defines it.

    Image metrics: the image floor with the lowest image MAE over all windows, for every image
    metric and every shot group alike (the best floor *per group* picks by the truth, like the
    oracle). Text metrics: the floor best on that metric over all windows.
    """
    key = "image_mae" if metric.startswith("image_") or metric == "prediction_spread" else metric
    candidates = [(name, values) for name, values in floors.items() if is_floor(name, values) and _finite(values.get(key))]
    if not candidates:
        return None
    sign = 1.0 if key in LOWER_IS_BETTER else -1.0
    return min(candidates, key=lambda item: sign * float(item[1][key]))


def floor_note(floors: dict, metric: str, experiment_mean: float, reference_mean: float, reference: str) -> str:
    """"both worse than floor: <name> (<value>)" when the experiment and the reference are both on
    the wrong side of :func:`strongest_floor` on ``metric``, else "" (also when no floor has it)."""
    found = strongest_floor(floors, metric)
    if found is None or not _finite(found[1].get(metric)):
        return ""
    value = float(found[1][metric])

    def worse(mean: float) -> bool:
        return mean > value if metric in LOWER_IS_BETTER else mean < value

    if worse(experiment_mean) and worse(reference_mean):
        return f"both worse than floor: {found[0]} ({_format_single(value, DECIMALS.get(metric, 4))})"
    return ""


def verdict(metric: str, ci_low: float, ci_high: float) -> str:
    """"better"/"worse" when the interval excludes zero, in the metric's own direction."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)) or ci_low <= 0.0 <= ci_high:
        return "no clear difference"
    increased = ci_low > 0.0
    return "worse" if increased == (metric in LOWER_IS_BETTER) else "better"


PAIRED_COLUMNS = ["experiment", "reference", "metric", "n_windows", "n_seeds", "reference_mean",
                  "experiment_mean", "difference", "ci_low", "ci_high", "verdict", "floor_note"]


def _paired_values(data_dir: Path | str, reference: str, experiment: str, metric: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, str] | None:
    """(experiment values, reference values, their weights or None, the metric's name as
    reported) on the windows that every seed of both has, finite; None when there is none.

    ``text_perplexity`` is bootstrapped from per-window token NLL sums and counts when every run
    has them (corpus-level, as the tables); otherwise from per-window perplexities, reported as
    :data:`WINDOW_MEAN_PERPLEXITY` so that two definitions never share one name.
    """
    names = [metric]
    if metric == "text_perplexity":
        nll = [per_window_by_seed(data_dir, name, TEXT_NLL) for name in (experiment, reference)]
        tokens = [per_window_by_seed(data_dir, name, TEXT_TOKENS) for name in (experiment, reference)]
        counts = [len(seed_dirs(data_dir, name)) for name in (experiment, reference)]
        if all(table.shape[1] == count for table, count in zip(nll + tokens, counts + counts)):
            names = [TEXT_NLL, TEXT_TOKENS]
    tables = {name: (per_window_by_seed(data_dir, experiment, name), per_window_by_seed(data_dir, reference, name))
              for name in names}
    ours, theirs = tables[names[0]]
    if ours.empty or theirs.empty:
        return None
    frames = [frame for pair in tables.values() for frame in pair]
    windows = frames[0].index
    for frame in frames[1:]:
        windows = windows.intersection(frame.index)
    arrays = [frame.loc[windows].to_numpy(dtype=float) for frame in frames]
    finite = np.logical_and.reduce([np.isfinite(array).all(axis=1) for array in arrays]) if len(windows) else []
    if not np.any(finite):
        return None
    values = [array[finite].T for array in arrays]
    if names == [TEXT_NLL, TEXT_TOKENS]:
        return values[0], values[1], values[2], values[3], metric
    return values[0], values[1], None, None, WINDOW_MEAN_PERPLEXITY if metric == "text_perplexity" else metric


def _point_estimate(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Mean over seeds of each seed's statistic on all paired windows (the tables' number)."""
    if weights is None:
        return float(values.mean())
    return float(np.mean(np.exp(values.sum(axis=1) / weights.sum(axis=1))))


def paired_differences(data_dir: Path | str, reference: str, metric: str | Sequence[str] = PER_WINDOW_METRICS,
                       n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Each experiment's change against ``reference`` on ``metric`` (one name or several).

    Windows are paired on ``window_index`` (those every seed of both has); the mean difference
    (experiment − reference) gets a :func:`hierarchical_bootstrap_ci` with a fixed ``seed``.
    Perplexity is corpus-level (:data:`PERPLEXITY_DEFINITION`). The ``floor_note`` column says
    when both sit on the wrong side of the strongest floor of the metric
    (:func:`floor_note`): "better" between two models that are both worse than a floor is
    not learning. Empty when the reference has no finished run.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    key = (Path(data_dir).absolute(), reference, tuple(metrics), n_boot, seed, confidence, _inputs_signature(data_dir))
    if key in _PAIRED_CACHE:                 # the notebook shows it, then Results.md writes it
        return _PAIRED_CACHE[key].copy()
    floors = load_floors(data_dir)
    rows = []
    others = [e for e in finished_experiments(data_dir) if e != reference]
    for name in metrics:
        for experiment in others:
            paired = _paired_values(data_dir, reference, experiment, name)
            if paired is None:
                continue
            ours, theirs, our_weights, their_weights, reported = paired
            transform = "exp" if our_weights is not None else "identity"
            low, high = hierarchical_bootstrap_ci(ours, theirs, n_boot=n_boot, seed=seed, confidence=confidence,
                                                  experiment_weights=our_weights, reference_weights=their_weights,
                                                  transform=transform)
            reference_mean, experiment_mean = _point_estimate(theirs, their_weights), _point_estimate(ours, our_weights)
            rows.append({
                "experiment": experiment, "reference": reference, "metric": reported,
                "n_windows": ours.shape[1], "n_seeds": f"{ours.shape[0]} vs {theirs.shape[0]}",
                "reference_mean": reference_mean, "experiment_mean": experiment_mean,
                "difference": experiment_mean - reference_mean, "ci_low": low, "ci_high": high,
                "verdict": verdict(reported, low, high),
                "floor_note": floor_note(floors, reported, experiment_mean, reference_mean, reference),
            })
    _PAIRED_CACHE[key] = table = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    return table.copy()


_PAIRED_CACHE: dict[tuple, pd.DataFrame] = {}


def _inputs_signature(data_dir: Path | str) -> tuple:
    """(size, mtime) of every file a paired table reads, with which runs are current."""
    data_dir = Path(data_dir)
    return (tuple(run_folders(data_dir)), _file_signature([data_dir / FLOORS_FILE, *data_dir.glob(f"*/seed*/{PREDICTIONS_TABLE}")]))


def format_paired(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired_differences` for reading: indexed by experiment and metric, means and the
    difference with the metric's decimals, the interval as one "[low, high]" column."""
    rows = []
    records = sorted(table.to_dict("records"), key=lambda r: experiment_sort_key(r["experiment"]))   # stable
    for record in records:
        decimals = DECIMALS.get(record["metric"], 4)

        def number(value: float) -> str:
            return _format_single(value, decimals)

        rows.append({"experiment": record["experiment"], "metric": record["metric"],
                     "windows": int(record["n_windows"]), "seeds": record.get("n_seeds", ""),
                     f"{record['reference']} mean": number(record["reference_mean"]),
                     "experiment mean": number(record["experiment_mean"]), "difference": number(record["difference"]),
                     "95% CI": f"[{number(record['ci_low'])}, {number(record['ci_high'])}]",
                     "verdict": record["verdict"], "floor note": record.get("floor_note") or ""})
    if not rows:
        return pd.DataFrame(columns=["experiment", "metric"]).set_index(["experiment", "metric"])
    return pd.DataFrame(rows).set_index(["experiment", "metric"])


# --------------------------------------------------------------------------- the answer

SHOT_GROUP_WORDS = {"continues": "where the shot continues", "cuts": "where the shot cuts"}


def _seed_means(runs: pd.DataFrame, column: str) -> pd.Series:
    """Mean over seeds of ``column`` per experiment (finite values only), in study order."""
    if runs.empty or column not in runs:
        return pd.Series(dtype=float)
    values = pd.to_numeric(runs[column], errors="coerce")
    means = values.groupby(runs["experiment"]).mean().dropna()
    return means.reindex(sorted(means.index, key=experiment_sort_key))


def _floor_value(values: dict, metric: str, group: str | None = None) -> float | None:
    if group is not None:
        values = values.get(group) if isinstance(values.get(group), dict) else {}
    value = values.get(metric)
    return float(value) if _finite(value) else None


def _compare(model: str, mean: float, floor: str, value: float, metric: str) -> str:
    better = mean < value if metric in LOWER_IS_BETTER else mean > value
    decimals = DECIMALS.get(metric, 4)
    verb = "beats" if better else "does not beat"
    return f"`{model}` {_format_single(mean, decimals)} {verb} `{floor}` {_format_single(value, decimals)}"


def _beating(means: pd.Series, value: float, metric: str) -> list[str]:
    return [name for name, mean in means.items() if (mean < value if metric in LOWER_IS_BETTER else mean > value)]


def answer(data_dir: Path | str) -> str:
    """:func:`answer_text`, shown (Markdown in a notebook)."""
    return _shown(answer_text(data_dir))


def answer_text(data_dir: Path | str) -> str:
    """The report's first paragraph, computed from the tables: the best model on image MAE and on
    text, and whether it beats the strongest floor overall and where the shot continues / cuts
    ("no model beats the strongest floor" when none does); also shown.

    Means are over seeds, as in the tables; the floor is :func:`strongest_floor` (lowest image
    MAE over all windows, the oracle excluded), the same floor for every group. Written so that
    a reader who stops after it knows what the study found, not only what it measured.
    """
    runs, floors = collect_runs(data_dir), load_floors(data_dir)
    if runs.empty:
        return "\n".join(["### The answer", "", no_runs_message(data_dir)])
    return "\n".join(["### The answer", "", *_image_answer(runs, floors), *_text_answer(runs, floors), "",
                      PERPLEXITY_DEFINITION])


def _image_answer(runs: pd.DataFrame, floors: dict) -> list[str]:
    """The answer's image lines: the best model against the strongest floor, overall and per shot group."""
    lines: list[str] = []
    mae = _seed_means(runs, "image_mae")
    floor = strongest_floor(floors, "image_mae")
    if mae.empty:
        lines.append("- Image: no run has an image MAE.")
    elif floor is None:
        best = mae.idxmin()
        lines.append(f"- Image: best on image MAE is `{best}` ({_format_single(mae[best], 4)}); floors.json "
                     "has no image floor to compare it with.")
    else:
        name, values = floor
        best = mae.idxmin()
        beaters = _beating(mae, float(values["image_mae"]), "image_mae")
        verdict_text = (f"{', '.join(f'`{b}`' for b in beaters)} beat{'s' if len(beaters) == 1 else ''} it"
                        if beaters else "**no model beats the strongest floor**")
        lines.append(f"- Image: best on image MAE (mean over seeds) is `{best}`. The strongest floor, lowest "
                     f"image MAE over all windows with the oracle excluded, is `{name}`. Overall "
                     f"{_compare(best, mae[best], name, float(values['image_mae']), 'image_mae')}: {verdict_text}.")
        for group in SHOT_GROUPS:
            words = SHOT_GROUP_WORDS[group]
            group_means = _seed_means(runs, f"image_mae_{group}")
            value = _floor_value(values, "image_mae", group)
            if group_means.empty or value is None:
                continue
            windows = (values.get(group) or {}).get("num_windows")
            count = f" ({int(windows)} windows)" if _finite(windows) else ""
            group_best = group_means.idxmin()
            beaters = _beating(group_means, value, "image_mae")
            tail = (f"{', '.join(f'`{b}`' for b in beaters)} beat{'s' if len(beaters) == 1 else ''} it there"
                    if beaters else "no model beats it there")
            lines.append(f"  - {words.capitalize()}{count}: best "
                         f"{_compare(group_best, group_means[group_best], name, value, 'image_mae')}; {tail}.")
    return lines


def _text_answer(runs: pd.DataFrame, floors: dict) -> list[str]:
    """The answer's text lines: the best model on chrF and on perplexity against the strongest text floor."""
    lines: list[str] = []
    for metric, label in (("chrf", "chrF"), ("text_perplexity", "perplexity")):
        means = _seed_means(runs, metric)
        if means.empty:
            continue
        best = means.idxmin() if metric in LOWER_IS_BETTER else means.idxmax()
        found = strongest_floor(floors, metric)
        if found is None:
            lines.append(f"- Text ({label}): best is `{best}` ({_format_single(means[best], 2)}); no text floor has "
                         f"{label}.")
            continue
        value = float(found[1][metric])
        beaters = _beating(means, value, metric)
        tail = (f"{len(beaters)} model{'s' if len(beaters) != 1 else ''} beat{'s' if len(beaters) == 1 else ''} it"
                if beaters else "no model beats the strongest floor")
        lines.append(f"- Text ({label}): best is {_compare(best, means[best], found[0], value, metric)} "
                     f"(the strongest text floor on {label}); {tail}.")
    return lines


def _shown(text: str) -> str:
    _show_markdown(text)
    return text


# --------------------------------------------------------------------------- figures


def _message_figure(text: str) -> Figure:
    figure = Figure(figsize=(PAGE_WIDTH_INCHES * 0.8, 1.2), dpi=FIGURE_DPI)
    axis = figure.add_subplot()
    axis.axis("off")
    axis.text(0.5, 0.5, textwrap.fill(text, 110), ha="center", va="center", fontsize=10)
    return figure


def mean_history(data_dir: Path | str, experiment: str) -> pd.DataFrame:
    """metrics.csv of every seed of ``experiment``, averaged per epoch."""
    frames = [pd.read_csv(folder / HISTORY_FILE) for folder in seed_dirs(data_dir, experiment)
              if (folder / HISTORY_FILE).is_file()]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).groupby("epoch", as_index=False).mean(numeric_only=True)


def plot_loss_curves(data_dir: Path | str) -> Figure:
    """Train (solid) and val (dashed) curves of every experiment, one panel per loss term."""
    histories = {e: mean_history(data_dir, e) for e in finished_experiments(data_dir)}
    histories = {e: h for e, h in histories.items() if not h.empty}
    if not histories:
        return _message_figure(no_runs_message(data_dir))
    columns = 3
    rows = -(-(len(CURVE_TERMS) + 1) // columns)          # one more panel for the legend
    figure = Figure(figsize=(PAGE_WIDTH_INCHES, 3.0 * rows), dpi=FIGURE_DPI, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    axes, spare = grid[: len(CURVE_TERMS)], grid[len(CURVE_TERMS):]
    colours = {e: f"C{i % 10}" for i, e in enumerate(histories)}
    for axis, term in zip(axes, CURVE_TERMS):
        for experiment, history in histories.items():
            for split, style in (("train", "-"), ("val", "--")):
                column = f"{split}_{term}"
                if column in history:
                    axis.plot(history["epoch"], history[column], style, color=colours[experiment],
                              label=f"{experiment} {split}", marker="o", markersize=3)
        axis.set_title(term)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        epochs = sorted({float(e) for h in histories.values() for e in h["epoch"]})
        if len(epochs) == 1:                        # one epoch: its tick in the middle, not at an edge
            axis.set_xlim(epochs[0] - 1, epochs[0] + 1)
        axis.grid(alpha=0.3)
    for axis in axes[::columns]:
        axis.set_ylabel("loss (mean over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    for axis in spare:
        axis.axis("off")
    spare[0].legend(handles, labels, fontsize=MIN_FONT_PT, loc="center", ncols=1 if len(labels) <= 12 else 2)
    return figure


def frame_to_hwc(frame: np.ndarray) -> np.ndarray:
    """uint8 (3, H, W) → (H, W, 3) for imshow / PIL."""
    return np.ascontiguousarray(np.transpose(frame, (1, 2, 0)))


def short_text(text: object, width: int = 28, max_lines: int = 4) -> str:
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
        path = self.data_dir / TEST_WINDOWS_FRAMES
        if path.is_file():
            with np.load(path) as arrays:
                self.window_indices = arrays["window_index"].astype(int)
                self.frames = arrays["frames"]
                # floor_<name>: what the classical floors (and the oracle) predict, per window
                self.floor_frames = {name[len("floor_"):]: arrays[name] for name in arrays.files if name.startswith("floor_")}
        else:
            self.window_indices = np.zeros(0, dtype=int)
            self.frames = np.zeros((0, 5, 3, 1, 1), dtype=np.uint8)
            self.floor_frames = {}
        texts_path = self.data_dir / TEST_WINDOWS_TABLE
        self.texts = (pd.read_csv(texts_path, keep_default_na=False).set_index("window_index")
                      if texts_path.is_file() else pd.DataFrame())
        floors_path = self.data_dir / FLOOR_WINDOWS_FILE
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

    def floor_frame(self, name: str, window_index: int) -> np.ndarray | None:
        """uint8 (3, H, W): what floor ``name`` predicts for the window, if saved."""
        frames = self.floor_frames.get(name)
        return None if frames is None else frames[self.position(window_index)]

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
            folder = run_folder(self.data_dir, experiment, seed)
            table = (pd.read_csv(folder / PREDICTIONS_TABLE, keep_default_na=False).set_index("window_index")
                     if (folder / PREDICTIONS_TABLE).is_file() else pd.DataFrame())
            arrays: dict = {}
            if (folder / PREDICTIONS_FRAMES).is_file():
                with np.load(folder / PREDICTIONS_FRAMES) as loaded:
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


def evenly_spaced(indices: Sequence[int], count: int) -> list[int]:
    """``count`` of ``indices``, evenly spaced from the first to the last (all when fewer)."""
    if not len(indices):
        return []
    positions = np.unique(np.linspace(0, len(indices) - 1, num=min(count, len(indices))).round().astype(int))
    return [int(indices[p]) for p in positions]


def default_windows(data_dir: Path | str, count: int = 4) -> list[int]:
    """``count`` fixed, evenly spaced saved test windows (the same ones on every rebuild)."""
    return evenly_spaced(ResultsFolder(data_dir).window_indices, count)


def keep_saved_window_subset(data_dir: Path | str, count: int) -> list[int]:
    """Shrink a results folder for committing: keep the frames and predicted frames (and VAE
    samples) of ``count`` evenly spaced test windows only, in ``test_windows.npz`` and every
    ``predictions.npz``. Metrics stay for every window (``predictions.csv``, tables, bootstrap);
    ``saved_windows_subset.json`` records the subset, and the frame browser says so.

    A local run saves every test window; this is for the committed reference only.
    """
    data_dir = Path(data_dir)
    folder = ResultsFolder(data_dir)
    total = len(folder.window_indices)
    kept = evenly_spaced(folder.window_indices, count)
    positions = [folder.position(w) for w in kept]
    floors = {f"floor_{name}": frames[positions] for name, frames in folder.floor_frames.items()}
    atomic_save_npz(data_dir / TEST_WINDOWS_FRAMES, window_index=np.asarray(kept), frames=folder.frames[positions], **floors)
    for path in data_dir.glob(f"*/seed*/{PREDICTIONS_FRAMES}"):
        with np.load(path) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
        keep = np.isin(arrays["window_index"], kept)
        atomic_save_npz(path, **{name: values[keep] for name, values in arrays.items()})
    atomic_write_json(data_dir / SUBSET_FILE, {"kept": len(kept), "of": total, "window_index": kept})
    return kept


# (image or None, title, caption) of one panel of a figure of frames
Panel = tuple[np.ndarray | None, str, str]


def panel_figure(rows: Sequence[Sequence[Panel]], columns: int = 5, caption_lines: int = 4,
                 title: str | None = None) -> Figure:
    """Frames in rows of at most ``columns`` panels, each titled and captioned underneath.

    The figure is :data:`PAGE_WIDTH_INCHES` wide and every text :data:`MIN_FONT_PT` or larger,
    so a notebook or report.html shows the captions readable without scaling. A row longer than
    ``columns`` continues on the next line; empty places stay blank.
    """
    lines = [list(row[i:i + columns]) for row in rows for i in range(0, max(len(row), 1), columns)]
    shapes = [panel[0].shape[-2:] for line in lines for panel in line if panel[0] is not None]
    height, width = shapes[0] if shapes else (1, 2)
    panel_width = PAGE_WIDTH_INCHES / columns
    text_inches = (caption_lines + 2.5) * MIN_FONT_PT * 1.3 / 72       # captions, the title, a gap
    figure = Figure(figsize=(PAGE_WIDTH_INCHES, len(lines) * (panel_width * height / width + text_inches)
                             + (0.5 if title else 0.0)), dpi=FIGURE_DPI, layout="constrained")
    figure.get_layout_engine().set(h_pad=0.12)        # a title never touches the captions above it
    axes = figure.subplots(len(lines), columns, squeeze=False)
    for row, line in enumerate(lines):
        for column in range(columns):
            axis = axes[row, column]
            if column >= len(line):
                axis.axis("off")
                continue
            image, panel_title, caption = line[column]
            axis.set_xticks([])
            axis.set_yticks([])
            if image is not None:
                axis.imshow(frame_to_hwc(image))
            else:
                axis.text(0.5, 0.5, "not saved", ha="center", va="center", fontsize=MIN_FONT_PT)
            axis.set_title(panel_title, fontsize=MIN_FONT_PT)
            axis.set_xlabel(caption, fontsize=MIN_FONT_PT)
    if title:
        figure.suptitle(title, fontsize=MIN_FONT_PT + 1)
    return figure


def plot_qualitative_grid(data_dir: Path | str, window_indices: Sequence[int],
                          experiments: Sequence[str] | None = None) -> Figure:
    """Per test window: a row of the 4 context frames and the truth, then the experiments'
    predictions (first seed) in rows of five, each with its description or generated text."""
    folder = ResultsFolder(data_dir)
    experiments = list(experiments) if experiments is not None else folder.experiments
    window_indices = [int(w) for w in window_indices if int(w) in set(folder.window_indices.tolist())]
    if not window_indices or not experiments:
        return _message_figure(no_runs_message(data_dir) if not experiments
                               else f"No saved test windows (test_windows.npz) in {folder.data_dir.name}.")
    rows: list[list[Panel]] = []
    for window in window_indices:
        frames, texts = folder.window_frames(window), folder.window_texts(window)
        context = [(frames[i], f"context {i + 1}", short_text(texts[i])) for i in range(4)]
        context[0] = (frames[0], f"window {window} · context 1", context[0][2])
        rows.append([*context, (frames[4], "truth", short_text(texts[4]))])
        floor_panels = []
        for name, floor_frames in folder.floor_frames.items():
            mae = folder.floor_windows.get(f"{name}_image_mae", pd.Series(dtype=float)).get(window)
            # two lines: a floor's name is as wide as a panel
            label = floor_row_label(name) + (f"\nMAE {float(mae):.3f}" if mae is not None else "")
            floor_panels.append((floor_frames[folder.position(window)], label, ""))
        if floor_panels:
            rows.append(floor_panels)
        predictions = []
        for experiment in experiments:
            metrics = folder.window_metrics(experiment, window)
            mae = metrics.get("image_mae")
            title = experiment + (f" (MAE {float(mae):.3f})" if mae not in (None, "") else "")
            predictions.append((folder.predicted_frame(experiment, window), title,
                                short_text(metrics.get("generated_text", ""))))
        rows.append(predictions)
    return panel_figure(rows)


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


# The committed reference results, relative to the checkout (README, docs/architecture.md).
REFERENCE_FOLDER = Path("results") / "synthetic-cpu"


def is_committed_reference(data_dir: Path | str) -> bool:
    """Whether ``data_dir`` is the committed reference folder of the checkout storylib runs from
    (never true for an installed package, which has no checkout)."""
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "pyproject.toml").is_file():
        return False
    return Path(data_dir).resolve() == (checkout / REFERENCE_FOLDER).resolve()


def write_report_files(data_dir: Path | str, update_reference: bool = False,
                       extra_sections: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``results.csv`` (one row per experiment × seed) and ``Results.md`` (the answer, the
    runs it could not use, the tables, then ``extra_sections``: markdown that modules reading
    this one add, such as :func:`storylib.comparisons.markdown_sections`), and say so; a
    results folder that does not exist stays so (nothing written, an empty dict).

    The committed reference (:data:`REFERENCE_FOLDER`) is rewritten only with
    ``update_reference`` (``run_all.py`` sets it): notebook 03 opened by hand in a checkout
    reads it by default, and must not turn a look into a change to commit.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        print(f"Nothing written: there is no results folder {data_dir.name}.")
        return {}
    if is_committed_reference(data_dir) and not update_reference:
        print(f"Nothing written: {REFERENCE_FOLDER.as_posix()} is the committed reference. Set update_reference = "
              "True in the parameters cell to rewrite its Results.md and results.csv (python run_all.py does), "
              "or choose another results_dir.")
        return {}
    runs = collect_runs(data_dir)
    floors = load_floors(data_dir)
    buffer = StringIO()
    runs.to_csv(buffer, index=False)
    paths = {"results_csv": atomic_write_text(data_dir / RESULTS_TABLE, buffer.getvalue())}
    lines = [f"# Results: {data_dir.name}", ""]
    if not runs.empty:
        lines += [answer_text(data_dir).replace("### The answer", "## The answer"), ""]
    unusable = unusable_runs_text(data_dir)
    if unusable:
        lines += [unusable, ""]
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
            lines += [f"## Change against `{reference}` (experiment − {reference}; hierarchical bootstrap "
                      "95% CI, resampling seeds and, within them, the paired test windows; `floor_note`: both "
                      "are worse than the strongest floor of the metric, so a \"better\" there is not learning)", "",
                      markdown_table(differences.drop(columns="reference"), index=False), ""]
        lines += list(extra_sections)
    paths["results_md"] = atomic_write_text(data_dir / RESULTS_MARKDOWN, "\n".join(lines))
    print(f"Wrote {', '.join(path.name for path in paths.values())} in {data_dir.name}.")
    return paths


# Beside report.html: the digest of everything the report read when it was last built.
# Files of the folder and of every run folder that notebook 03 reads.
# Beside the runs, when benchmarks/collapse.py wrote it: the published decoder under one-factor changes.
REPORT_FOLDER_FILES = (FLOORS_FILE, FLOOR_WINDOWS_FILE, TEST_WINDOWS_TABLE, TEST_WINDOWS_FRAMES, SUBSET_FILE, PLAN_FILE,
                       COLLAPSE_FILE)
REPORT_RUN_FILES = (METRICS_FILE, CONFIG_FILE, HISTORY_FILE, PREDICTIONS_TABLE, PREDICTIONS_FRAMES)
# The package code that decides what the report shows.
REPORT_CODE = ("reporting.py", "comparisons.py", "widgets.py", "runs.py", "config.py")


def report_inputs_digest(data_dir: Path | str, notebook: Path | str, parameters: dict) -> str:
    """sha256 over everything notebook 03 reads: the folder's shared files (floors, saved test
    windows, :data:`PLAN_FILE`), each run folder's record, predictions and curves, which runs are
    current (:func:`run_folders`: that covers ``params/`` and the code version), the notebook,
    its parameters and the report's code. ``run_all.py`` rebuilds the report only when this
    changes, so a rerun that reuses every run starts no kernel for it.

    Content, not mtimes: a file rewritten with the same bytes (a reused run, a rebuilt floors
    file with the same values) keeps the report. A few hundred MB of predictions hash in about a
    second.
    """
    import hashlib

    data_dir = Path(data_dir)
    digest = hashlib.sha256()

    def add_file(path: Path) -> None:
        digest.update(str(path.relative_to(data_dir) if path.is_relative_to(data_dir) else path.name).encode())
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            digest.update(b"<absent>")

    for name in REPORT_FOLDER_FILES:
        add_file(data_dir / name)
    for path in sorted(data_dir.glob("*/seed*")):
        if path.is_dir():
            for name in REPORT_RUN_FILES:
                add_file(path / name)
    digest.update(json.dumps([(name, folder.relative_to(data_dir).as_posix(), why)
                              for name, folder, why in run_folders(data_dir)]).encode())
    add_file(Path(notebook))
    package = Path(__file__).resolve().parent
    for name in REPORT_CODE:
        add_file(package / name)
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(storylib_version().encode())
    return digest.hexdigest()


def report_is_current(data_dir: Path | str, digest: str) -> bool:
    """Whether report.html and comparison_report.ipynb were built from inputs with ``digest``."""
    data_dir = Path(data_dir)
    try:
        recorded = json.loads((data_dir / REPORT_INPUTS_FILE).read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError, AttributeError):
        return False
    return (recorded == digest and (data_dir / REPORT_HTML).is_file()
            and (data_dir / EXECUTED_REPORT).is_file())


def record_report_inputs(data_dir: Path | str, digest: str) -> Path:
    """Write :data:`REPORT_INPUTS_FILE` after report.html was built from a notebook 03 that finished."""
    return atomic_write_json(Path(data_dir) / REPORT_INPUTS_FILE, {
        "digest": digest, "what": "sha256 of every file notebook 03 read to build report.html "
        "(storylib.reporting.report_inputs_digest); run_all.py rebuilds the report when it changes"})


# Cells whose code report.html leaves out (their outputs stay): the install cell, the default
# parameters and papermill's injected ones (two parameter cells that disagree, and the results
# folder as this machine's path).
HIDDEN_INPUT_TAGS = frozenset({"remove_input", "parameters", "injected-parameters"})


def report_html(notebook: Path | str, data_dir: Path | str) -> str:
    """The executed comparison notebook as a standalone HTML page titled by its data and scale.

    The widget state is dropped: a page has no kernel, so nbconvert then shows the static PNG
    that every widget display of this package carries beside the widget view. The code of the
    cells tagged :data:`HIDDEN_INPUT_TAGS` is left out (nbconvert's ``TagRemovePreprocessor``),
    and so is papermill's record of the parameters: a reader sees the report, not the machine.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    executed = nbformat.read(str(notebook), as_version=4)
    executed.metadata.pop("widgets", None)
    executed.metadata.pop("papermill", None)
    executed.metadata["title"] = report_title(data_dir)
    exporter = HTMLExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags=set(HIDDEN_INPUT_TAGS)), enabled=True)
    body, _ = exporter.from_notebook_node(executed)
    return body
