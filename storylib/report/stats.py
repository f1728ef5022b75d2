"""The report's statistics: per-window values by seed, the hierarchical bootstrap (seeds, then
paired windows within them) of an experiment's change against a reference, and its verdict.

Averaging seeds first and resampling windows alone would ignore the seed-to-seed spread and
call a difference that one seed drives "better" (Davison & Hinkley 1997, ch. 3.8, on
resampling hierarchical data)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from storylib.report.formatting import DECIMALS, format_single
from storylib.results.contract import FLOORS_FILE, LOWER_IS_BETTER, PER_WINDOW_METRICS, PREDICTIONS_TABLE
from storylib.results.folder import (
    _file_signature,
    _finite,
    finished_experiments,
    load_floors,
    run_folders,
    seed_dirs,
    strongest_floor,
)


VERDICTS = ("better", "worse", "no clear difference")
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
        return f"both worse than floor: {found[0]} ({format_single(value, DECIMALS.get(metric, 4))})"
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
