"""The report's first paragraph: the best model against the strongest floor, overall and where
the shot continues or cuts, on image and on text ("no model beats the strongest floor" when
none does)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from storylib.report.formatting import DECIMALS, format_single
from storylib.report.stats import PERPLEXITY_DEFINITION
from storylib.report.tables import _shown
from storylib.results.contract import LOWER_IS_BETTER, SHOT_GROUPS
from storylib.results.folder import (
    _finite,
    collect_runs,
    experiment_sort_key,
    load_floors,
    no_runs_message,
    strongest_floor,
)


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
    return f"`{model}` {format_single(mean, decimals)} {verb} `{floor}` {format_single(value, decimals)}"


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
        lines.append(f"- Image: best on image MAE is `{best}` ({format_single(mae[best], 4)}); floors.json "
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
            lines.append(f"- Text ({label}): best is `{best}` ({format_single(means[best], 2)}); no text floor has "
                         f"{label}.")
            continue
        value = float(found[1][metric])
        beaters = _beating(means, value, metric)
        tail = (f"{len(beaters)} model{'s' if len(beaters) != 1 else ''} beat{'s' if len(beaters) == 1 else ''} it"
                if beaters else "no model beats the strongest floor")
        lines.append(f"- Text ({label}): best is {_compare(best, means[best], found[0], value, metric)} "
                     f"(the strongest text floor on {label}); {tail}.")
    return lines
