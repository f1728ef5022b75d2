"""The report's figures, built with :class:`matplotlib.figure.Figure` (not pyplot), so a
notebook cell that returns one shows it exactly once and nothing accumulates in pyplot's
registry. At most :data:`PAGE_WIDTH_INCHES` wide at :data:`FIGURE_DPI`, so a notebook or
``report.html`` shows them unscaled, with no text smaller than :data:`MIN_FONT_PT`."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from storylib.io import atomic_write_bytes
from storylib.report.tables import floor_row_label
from storylib.results.contract import HISTORY_FILE, LOSS_TERMS
from storylib.results.folder import finished_experiments, no_runs_message, seed_dirs
from storylib.results.windows import ResultsFolder, frame_to_hwc


# Figure geometry: shown unscaled in report.html (a column of about 1,158 px) and in a notebook.
FIGURE_DPI = 100
PAGE_WIDTH_INCHES = 10.8          # 1,080 px; a tight bounding box adds about 11 px
MIN_FONT_PT = 9.0
CURVE_TERMS = ("loss", *LOSS_TERMS)  # the weighted sum, then each term


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


def message_figure(text: str) -> Figure:
    """A figure that only says ``text``: where a plot has nothing to draw, it says why."""
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
        return message_figure(no_runs_message(data_dir))
    return loss_curve_figure(histories)


def loss_curve_figure(histories: dict[str, pd.DataFrame]) -> Figure:
    """One panel per loss term, train (solid) and val (dashed) per epoch of each named history
    (the columns of ``metrics.csv``); a run's own curve is the same figure with one name."""
    columns = 3
    rows = -(-(len(CURVE_TERMS) + 1) // columns)          # one more panel for the legend
    figure = Figure(figsize=(PAGE_WIDTH_INCHES, 3.0 * rows), dpi=FIGURE_DPI, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    axes, spare = grid[: len(CURVE_TERMS)], grid[len(CURVE_TERMS):]
    colours = {e: f"C{i % 10}" for i, e in enumerate(histories)}
    epochs = sorted({float(e) for h in histories.values() for e in h["epoch"]})
    for axis, term in zip(axes, CURVE_TERMS):
        for experiment, history in histories.items():
            for split, style in (("train", "-"), ("val", "--")):
                column = f"{split}_{term}"
                if column in history:
                    axis.plot(history["epoch"], history[column], style, color=colours[experiment],
                              label=f"{experiment} {split}", marker="o", markersize=3)
        axis.set_title("total (weighted)" if term == "loss" else term)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:                        # one epoch: its tick in the middle, not at an edge
            axis.set_xlim(epochs[0] - 1, epochs[0] + 1)
        axis.grid(alpha=0.3)
    for axis in axes[::columns]:
        axis.set_ylabel("loss (mean over seeds)" if len(histories) > 1 else "loss")
    handles, labels = axes[0].get_legend_handles_labels()
    for axis in spare:
        axis.axis("off")
    spare[0].legend(handles, labels, fontsize=MIN_FONT_PT, loc="center", ncols=1 if len(labels) <= 12 else 2)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes at its own dpi, cropped to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_png(figure: Figure, path: Path | str) -> None:
    """The figure as a PNG file, written atomically."""
    atomic_write_bytes(path, figure_png(figure))


def short_text(text: object, width: int = 28, max_lines: int = 4) -> str:
    lines = textwrap.wrap(str(text) if isinstance(text, str) else "", width)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, width - 1)] + "…"
    return "\n".join(lines)


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
        return message_figure(no_runs_message(data_dir) if not experiments
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
