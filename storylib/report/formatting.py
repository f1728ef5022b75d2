"""How the report writes a number: decimals per metric, and mean ± sd over seeds."""

from __future__ import annotations

from typing import Iterable

import numpy as np


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


def format_mean_sd(values: Iterable[float], decimals: int = 4) -> str:
    """``"mean ± sd"`` (sample sd, ddof=1) of the finite values; just the mean for one value."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return "—"
    mean = float(np.mean(finite))
    if len(finite) == 1:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {float(np.std(finite, ddof=1)):.{decimals}f}"


def format_single(value: object, decimals: int) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{float(value):.{decimals}f}"
