"""The report's tables: mean ± sd over seeds with the floors as rows, the experiments' settings,
the paired differences, and Markdown for ``Results.md``; every number formatted once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from storylib.report.formatting import DECIMALS, format_mean_sd, format_single
from storylib.report.stats import PAIRED_COLUMNS, paired_differences
from storylib.results.contract import CONFIG_FILE, CONTRACT_METRICS, IMAGE_METRICS, PER_WINDOW_METRICS, TEXT_METRICS
from storylib.results.folder import (
    FLOOR_ORDER,
    RUN_FACTS,
    collect_runs,
    experiment_sort_key,
    finished_experiments,
    load_floors,
    no_runs_message,
    report_title,
    seed_dirs,
    unusable_runs_text,
)


# The columns of the two metric tables shown in the notebook (Results.md keeps the whole table).
IMAGE_TABLE = ("n_seeds", *IMAGE_METRICS, "prediction_spread")
TEXT_TABLE = ("n_seeds", "text_perplexity", *TEXT_METRICS)


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


def provenance_facts(floors: dict, runs: pd.DataFrame) -> list[str]:
    """"data source: …", "tokenizer: …", "num test windows: …" (from ``floors.json``, else the
    runs) and "code revision: …": the short commit(s) the runs were recorded with, with how many
    runs each where they differ, and "not recorded" for runs written before storylib recorded it."""
    facts = []
    for key in ("data_source", "tokenizer", "num_test_windows"):
        value = floors.get(key, runs[key].iloc[0] if key in runs and len(runs) else None)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            facts.append(f"{key.replace('_', ' ')}: {value}")
    if len(runs):
        labels = [short_revision(value) for value in runs.get("code_revision", [None] * len(runs))]
        counts = pd.Series(labels).value_counts(sort=False)
        if len(counts) == 1:
            facts.append(f"code revision: {labels[0]}")
        else:
            facts.append("code revisions: " + ", ".join(
                f"{label} ({count} run{'s' if count != 1 else ''})" for label, count in counts.items()))
    return facts


def short_revision(revision: object) -> str:
    """The first 12 hex digits of a recorded commit (keeping its +dirty mark), or "not recorded"."""
    if not isinstance(revision, str) or not revision:
        return "not recorded"
    commit, dirty, mark = revision.partition("+")
    return commit[:12] + dirty + mark


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
        facts = provenance_facts(load_floors(data_dir), runs)
        text = f"{Path(data_dir).name}: {listed}." + (f" {'; '.join(facts)}." if facts else "")
    unusable = unusable_runs_text(data_dir) if Path(data_dir).is_dir() else ""
    if unusable:
        text += "\n\n" + unusable
    text = f"## {report_title(data_dir)}\n\n{text}"
    _show_markdown(text)
    return text


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
                row[metric] = format_single(value, DECIMALS.get(metric, 4))
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


def format_paired(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired_differences` for reading: indexed by experiment and metric, means and the
    difference with the metric's decimals, the interval as one "[low, high]" column."""
    rows = []
    records = sorted(table.to_dict("records"), key=lambda r: experiment_sort_key(r["experiment"]))   # stable
    for record in records:
        decimals = DECIMALS.get(record["metric"], 4)

        def number(value: float) -> str:
            return format_single(value, decimals)

        rows.append({"experiment": record["experiment"], "metric": record["metric"],
                     "windows": int(record["n_windows"]), "seeds": record.get("n_seeds", ""),
                     f"{record['reference']} mean": number(record["reference_mean"]),
                     "experiment mean": number(record["experiment_mean"]), "difference": number(record["difference"]),
                     "95% CI": f"[{number(record['ci_low'])}, {number(record['ci_high'])}]",
                     "verdict": record["verdict"], "floor note": record.get("floor_note") or ""})
    if not rows:
        return pd.DataFrame(columns=["experiment", "metric"]).set_index(["experiment", "metric"])
    return pd.DataFrame(rows).set_index(["experiment", "metric"])


def _shown(text: str) -> str:
    _show_markdown(text)
    return text


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
