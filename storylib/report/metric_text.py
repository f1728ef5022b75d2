"""Per-window metrics as short lines of text: under a browser panel, in a figure's header."""

from __future__ import annotations

from typing import Sequence

import numpy as np

HEADER_WIDTH = 150  # characters of a figure title line at the page width (10.8 in at 9 pt and more)
SHOWN_METRICS = (("image_mae", "MAE", 3), ("image_ssim", "SSIM", 3), ("image_psnr", "PSNR", 1),
                 ("text_perplexity", "ppl", 1), ("chrf", "chrF", 1), ("bleu", "BLEU", 1),
                 ("rouge_l", "ROUGE-L", 1))
# metrics whose spread over seeds is shown under each prediction
SPREAD_METRICS = ("image_mae", "chrf")


def finite_value(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def metrics_text(values: dict) -> str:
    parts = []
    for key, label, decimals in SHOWN_METRICS:
        value = finite_value(values.get(key))
        if value is not None:
            parts.append(f"{label} {value:.{decimals}f}")
    return " · ".join(parts)


def spread_text(per_seed: dict[int, dict]) -> str:
    """"over seeds 0, 1, 2: MAE 0.080–0.120 (sd 0.020) · chrF ..." for one window."""
    if len(per_seed) < 2:
        return ""
    parts = []
    for key, label, decimals in SHOWN_METRICS:
        if key not in SPREAD_METRICS:
            continue
        values = [v for v in (finite_value(m.get(key)) for m in per_seed.values()) if v is not None]
        if len(values) >= 2:
            parts.append(f"{label} {min(values):.{decimals}f}–{max(values):.{decimals}f} "
                         f"(sd {np.std(values, ddof=1):.{decimals}f})")
    seeds = ", ".join(str(seed) for seed in per_seed)
    return f"over seeds {seeds}: " + " · ".join(parts) if parts else ""


def floor_metrics(row: dict, metrics: Sequence[str] = tuple(key for key, _, _ in SHOWN_METRICS)) -> dict[str, dict]:
    """``{floor: {metric: value}}`` from one row of floor_windows.csv (columns
    ``<floor>_<metric>``), for whatever floors the file holds, in its column order."""
    floors: dict[str, dict] = {}
    for column, value in row.items():
        for metric in metrics:
            if column.endswith(f"_{metric}") and finite_value(value) is not None:
                floors.setdefault(column[: -len(metric) - 1], {})[metric] = float(value)
                break
    return floors


def header_lines(lead: str, items: Sequence[str], width: int = HEADER_WIDTH) -> list[str]:
    """``lead`` + the ``items`` joined by " · ", broken between items into lines of at most
    ``width`` characters (an item longer than that gets a line of its own), so that a figure's
    header is never cut off at either end; nothing when there are no items."""
    lines: list[str] = []
    current = lead
    for item in items:
        candidate = item if current in ("", lead) else f" · {item}"
        if current not in ("", lead) and len(current) + len(candidate) > width:
            lines.append(current)
            current, candidate = "", item
        current += candidate
    if current not in ("", lead):
        lines.append(current)
    return lines
