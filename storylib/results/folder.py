"""Reading a results folder, torch-free: which runs it holds and which are current (the
configuration hash and code version they were recorded with), the plan of the last
``run_all.py`` call and the runs it could not use, the metrics of every current run
(:func:`collect_runs`), the floors, and the strongest legal floor a model must beat."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from storylib.io import atomic_write_json
from storylib.results.contract import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    CONTRACT_METRICS,
    FLOORS_FILE,
    IMAGE_FLOORS,
    LAST_CHECKPOINT,
    LOWER_IS_BETTER,
    METRICS_FILE,
    PLAN_FILE,
    data_folder,
    run_folder,
)


RUN_FACTS = ("num_params", "train_seconds", "stories_per_second")
# Baseline first, the capacity control second: the two references of every comparison.
EXPERIMENT_ORDER = ("baseline", "enhanced", "crossmodal", "vae", "both", "shots", "shots_crossmodal", "shots_vae", "shots_both")
# Display order of the floors of floors.json; any other floor there is shown after these.
FLOOR_ORDER = (*IMAGE_FLOORS, "oracle_best_context", "unigram", "copy_last_description")


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
