"""The study's questions, answered from a results folder (no torch).

- **Families.** Experiments whose configurations are equal once the two switches are off
  (cross-modal attention, the VAE and its KL settings) form a family; the member with both
  switches off is its *plain* model. The published family's plain model is ``enhanced`` (its
  capacity control); the learning family's is ``shots``. Nothing here lists experiment names:
  the families are read from the runs' ``config.yaml``.
- **Switch effects.** Each switch against its family's plain model, and the plain models of the
  families against each other, with the hierarchical bootstrap of :mod:`storylib.reporting`
  (seeds, then paired windows), on every window and on the windows of each group: where the shot
  continues or cuts at frame 5, and the irregular pattern (where a stochastic model can show
  value).
- **Groups.** Each experiment's image MAE on every group (shot and pattern), mean ± sd over
  seeds, beside every floor's on the same windows.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import yaml

from storylib.report.formatting import DECIMALS, format_mean_sd, format_single
from storylib.report.stats import (
    TEXT_NLL,
    TEXT_TOKENS,
    hierarchical_bootstrap_ci,
    per_window_by_seed,
    verdict,
)
from storylib.report.tables import floor_row_label, markdown_table
from storylib.results.contract import COLLAPSE_FILE, CONFIG_FILE, SHOT_GROUPS, TEST_WINDOWS_TABLE
from storylib.results.folder import (
    FLOOR_ORDER,
    collect_runs,
    experiment_sort_key,
    finished_experiments,
    load_floors,
    seed_dirs,
)


SWITCHES = (("model", "cross_modal_attention"), ("model", "vae"))
# Settings that only a VAE has: a VAE experiment differs from its plain model in these too.
VAE_SETTINGS = (("train", "kl_weight"), ("train", "kl_warmup_epochs"))
# What is not the experiment: the run's identity and provenance.
RUN_IDENTITY = ("name", "description", "seed")
# The groups every switch effect is reported on: all windows, the two shot groups, and the
# pattern where the next view is least predictable from the context.
COMPARISON_GROUPS = ("all", *SHOT_GROUPS, "irregular")
COMPARISON_METRICS = ("image_mae", "image_mae_best_of_k", "chrf", "text_perplexity")
GROUP_COLUMNS = ["family", "experiment", "reference", "switch", "metric", "group", "n_windows", "n_seeds",
                 "reference_mean", "experiment_mean", "difference", "ci_low", "ci_high", "verdict"]


def _config(data_dir: Path, experiment: str) -> dict:
    path = seed_dirs(data_dir, experiment)[0] / CONFIG_FILE
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _switches(config: dict) -> tuple[bool, bool]:
    return tuple(bool((config.get(section) or {}).get(key)) for section, key in SWITCHES)  # type: ignore[return-value]


def _family_key(config: dict) -> str:
    """The configuration with the switches off: equal keys, one family."""
    plain = copy.deepcopy(config)
    for key in RUN_IDENTITY:
        plain.pop(key, None)
    for section, key in (*SWITCHES, *VAE_SETTINGS):
        plain.setdefault(section, {})[key] = 0
    return yaml.safe_dump(plain, sort_keys=True)


def families(data_dir: Path | str) -> dict[str, dict[str, str]]:
    """Plain model → {"plain", "attention", "vae", "both"} → experiment, for every family of the
    finished experiments that has a plain model (a family without one has nothing to compare)."""
    data_dir = Path(data_dir)
    grouped: dict[str, dict[str, str]] = {}
    names = {(False, False): "plain", (True, False): "attention", (False, True): "vae", (True, True): "both"}
    for experiment in finished_experiments(data_dir):
        config = _config(data_dir, experiment)
        members = grouped.setdefault(_family_key(config), {})
        members.setdefault(names[_switches(config)], experiment)
    result = {members["plain"]: members for members in grouped.values() if "plain" in members}
    return dict(sorted(result.items(), key=lambda item: experiment_sort_key(item[0])))


def window_groups(data_dir: Path | str) -> dict[str, list[int]]:
    """Test window indices of every group ``test_windows.csv`` names: all, the shot groups and
    each pattern (an empty list for a group without windows)."""
    path = Path(data_dir) / TEST_WINDOWS_TABLE
    if not path.is_file():
        return {}
    table = pd.read_csv(path, keep_default_na=False)
    groups = {"all": table["window_index"].astype(int).tolist()}
    if "shot" in table:
        for name in SHOT_GROUPS:
            groups[name] = table.loc[table["shot"] == name, "window_index"].astype(int).tolist()
    if "pattern" in table:
        for name in sorted(set(table["pattern"]) - {""}):
            groups[name] = table.loc[table["pattern"] == name, "window_index"].astype(int).tolist()
    return groups


def _paired(data_dir: Path, experiment: str, reference: str, column: str, windows: Sequence[int]):
    """(experiment (S_e, W), reference (S_r, W), seeds text) of ``column`` on the windows both have."""
    ours, theirs = per_window_by_seed(data_dir, experiment, column), per_window_by_seed(data_dir, reference, column)
    if ours.empty or theirs.empty:
        return None
    paired = ours.dropna().index.intersection(theirs.dropna().index).intersection(pd.Index(windows))
    return ours.loc[paired].to_numpy().T, theirs.loc[paired].to_numpy().T, f"{ours.shape[1]} vs {theirs.shape[1]}"


def _compare(data_dir: Path, experiment: str, reference: str, metric: str, windows: Sequence[int],
             n_boot: int, seed: int) -> dict | None:
    """One bootstrap comparison; perplexity is corpus-level (exp of the summed token NLL over the
    summed token count, per seed), as in every table of the report."""
    perplexity = metric == "text_perplexity"
    values = _paired(data_dir, experiment, reference, TEXT_NLL if perplexity else metric, windows)
    if values is None:
        return None
    ours, theirs, seeds = values
    if ours.shape[1] == 0:
        return {"n_windows": 0, "n_seeds": seeds, "reference_mean": np.nan, "experiment_mean": np.nan,
                "difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "verdict": "no windows"}
    weights = None, None
    if perplexity:
        counts = _paired(data_dir, experiment, reference, TEXT_TOKENS, windows)
        if counts is None or counts[0].shape != ours.shape:
            return None
        weights = counts[0], counts[1]
        our_mean = float(np.mean(np.exp(ours.sum(1) / weights[0].sum(1))))
        their_mean = float(np.mean(np.exp(theirs.sum(1) / weights[1].sum(1))))
    else:
        our_mean, their_mean = float(ours.mean()), float(theirs.mean())
    low, high = hierarchical_bootstrap_ci(ours, theirs, n_boot=n_boot, seed=seed, experiment_weights=weights[0],
                                          reference_weights=weights[1], transform="exp" if perplexity else "identity")
    return {"n_windows": ours.shape[1], "n_seeds": seeds, "reference_mean": their_mean, "experiment_mean": our_mean,
            "difference": our_mean - their_mean, "ci_low": low, "ci_high": high, "verdict": verdict(metric, low, high)}


def switch_effects(data_dir: Path | str, metrics: Sequence[str] = COMPARISON_METRICS,
                   groups: Sequence[str] = COMPARISON_GROUPS, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every switch against its family's plain model, and each family's plain model against the
    first family's, per metric and group (rows :data:`GROUP_COLUMNS`)."""
    data_dir = Path(data_dir)
    by_group = window_groups(data_dir)
    found = families(data_dir)
    pairs = [(plain, members[switch], plain, switch) for plain, members in found.items()
             for switch in ("attention", "vae", "both") if switch in members]
    plains = list(found)
    pairs += [(plain, plain, plains[0], "family") for plain in plains[1:]]
    rows = []
    for family, experiment, reference, switch in pairs:
        for metric in metrics:
            for group in groups:
                if group not in by_group:
                    continue
                compared = _compare(data_dir, experiment, reference, metric, by_group[group], n_boot, seed)
                if compared is not None:
                    rows.append({"family": family, "experiment": experiment, "reference": reference, "switch": switch,
                                 "metric": metric, "group": group, **compared})
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def format_effects(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`switch_effects` for reading: one row per comparison and metric, a column per group
    holding "difference [low, high] verdict"."""
    if table.empty:
        return pd.DataFrame()
    rows: dict[tuple, dict] = {}
    for record in table.to_dict("records"):
        key = (f"{record['experiment']} − {record['reference']}", record["metric"])
        decimals = DECIMALS.get(record["metric"], 4)
        if record["n_windows"] == 0:
            text = "no windows"
        else:
            text = (f"{format_single(record['difference'], decimals)} "
                    f"[{format_single(record['ci_low'], decimals)}, {format_single(record['ci_high'], decimals)}] "
                    f"{record['verdict']}")
        rows.setdefault(key, {})[f"{record['group']} ({record['n_windows']})"] = text
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["comparison", "metric"])
    return frame


def group_table(data_dir: Path | str, metric: str = "image_mae") -> pd.DataFrame:
    """Rows: experiments (mean ± sd over seeds) and the floors; columns: ``metric`` on all windows,
    each shot group and each pattern, headed with its window count."""
    data_dir = Path(data_dir)
    runs, floors, by_group = collect_runs(data_dir), load_floors(data_dir), window_groups(data_dir)
    names = [name for name in by_group]
    decimals = DECIMALS.get(metric, 4)
    rows: dict[str, dict[str, str]] = {}
    for experiment in sorted(runs["experiment"].unique(), key=experiment_sort_key) if not runs.empty else []:
        seeds = runs[runs["experiment"] == experiment]
        rows[experiment] = {group: format_mean_sd(seeds.get(metric if group == "all" else f"{metric}_{group}",
                                                             pd.Series(dtype=float)), decimals) for group in names}
    image_floors = [name for name in FLOOR_ORDER if isinstance(floors.get(name), dict) and metric in floors[name]]
    for name in image_floors:
        values = floors[name]
        rows[floor_row_label(name)] = {
            group: format_single(values[metric] if group == "all" else (values.get(group) or {}).get(metric, np.nan),
                                  decimals) for group in names}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=names)
    table.columns = [f"{group} ({len(by_group[group])})" for group in names]
    table.index.name = metric
    return table


def sampling_table(data_dir: Path | str) -> pd.DataFrame:
    """Per experiment (mean ± sd over seeds): image MAE at z = μ, the best of K sampled frames, and
    the samples' diversity — equal MAEs and zero diversity for a deterministic model."""
    runs = collect_runs(Path(data_dir))
    columns = ("image_mae", "image_mae_best_of_k", "sample_diversity", "image_mae_irregular",
               "image_mae_best_of_k_irregular")
    rows = {}
    for experiment in sorted(runs["experiment"].unique(), key=experiment_sort_key) if not runs.empty else []:
        seeds = runs[runs["experiment"] == experiment]
        rows[experiment] = {column: format_mean_sd(seeds.get(column, pd.Series(dtype=float))) for column in columns}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))
    table.index.name = "experiment"
    return table


def collapse_table(data_dir: Path | str) -> pd.DataFrame:
    """The published decoder under one-factor changes (``benchmarks/collapse.py``), when its JSON
    sits in the results folder; an empty table otherwise."""
    path = Path(data_dir) / COLLAPSE_FILE
    if not path.is_file():
        return pd.DataFrame()
    import json

    diagnostic = json.loads(path.read_text(encoding="utf-8"))
    rows = {name: {"change": ", ".join(f"{k}={v}" for k, v in result["overrides"].items()) or "(published settings)",
                   "epochs": result["epochs"], "image_mae": f"{result['image_mae']:.4f}",
                   "median_image floor": f"{result['median_image_mae']:.4f}",
                   "prediction_spread": f"{result['prediction_spread']:.4f}",
                   "left the median floor": "yes" if result["left_the_median_floor"] else "no"}
            for name, result in diagnostic.get("variants", {}).items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = f"{diagnostic.get('experiment', '')}, seed {diagnostic.get('seed', '')}"
    return table


def markdown_sections(data_dir: Path | str) -> list[str]:
    """The study's sections of ``Results.md``: groups, sampling, switch effects, the collapse."""
    data_dir = Path(data_dir)
    lines = ["## Image MAE on every group of windows (mean ± sd over seeds; floors on the same windows)", "",
             markdown_table(group_table(data_dir)), "",
             "## Sampling: MAE at μ, best of K sampled frames, and their diversity", "",
             markdown_table(sampling_table(data_dir)), ""]
    effects = switch_effects(data_dir)
    if not effects.empty:
        lines += ["## The switches: each against its family's plain model, and the families' plain models against "
                  "each other (difference [95% hierarchical bootstrap CI] verdict, per group of windows)", "",
                  markdown_table(format_effects(effects)), ""]
    collapse = collapse_table(data_dir)
    if not collapse.empty:
        lines += ["## Why the published decoder collapses (benchmarks/collapse.py, one seed)", "",
                  markdown_table(collapse), ""]
    return lines
