"""The frame browser: look at what the models actually predict, window by window.

One results folder (``<results>/<data>-<scale>``), one test window at a time: the 4 context
frames with their descriptions, the true target, each chosen experiment's predicted frame and
generated description with its per-window metrics, and the floors' per-window metrics beside
them. Windows can be stepped through in window order or ordered by error (the mean image MAE
over the chosen experiments), worst or best first: the quickest way to see a collapsed model.

Rendering uses ``widgets.Image`` (PNG bytes) and ``widgets.HTML`` only: an ``Output`` widget
breaks nbval. Without a widget front end (papermill, nbconvert, plain python),
:meth:`FrameBrowser.show` returns a static matplotlib figure of the same view.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image as PILImage

from storylib.io import is_interactive
from storylib.reporting import ResultsFolder, frame_to_hwc, short_text

ORDERS = ("window order", "worst first", "best first")
SHOWN_METRICS = (("image_mae", "MAE", 3), ("image_ssim", "SSIM", 3), ("image_psnr", "PSNR", 1),
                 ("text_perplexity", "ppl", 1), ("chrf", "chrF", 1), ("bleu", "BLEU", 1),
                 ("rouge_l", "ROUGE-L", 1))


def png_bytes(frames: np.ndarray) -> bytes:
    """PNG of one uint8 (3, H, W) frame, or of (K, 3, H, W) frames side by side."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim == 4:
        frames = np.concatenate(list(frames), axis=2)
    buffer = io.BytesIO()
    PILImage.fromarray(frame_to_hwc(frames)).save(buffer, format="PNG")
    return buffer.getvalue()


def _metrics_text(values: dict) -> str:
    parts = []
    for key, label, decimals in SHOWN_METRICS:
        value = values.get(key)
        if value not in (None, "") and np.isfinite(float(value)):
            parts.append(f"{label} {float(value):.{decimals}f}")
    return " · ".join(parts)


class FrameBrowser:
    """ipywidgets browser over one results folder (see the module docstring).

    ``slider`` picks a position in the current order, ``order`` the order, ``experiment_select``
    the experiments shown; ``seed`` (default: each experiment's first seed) the run shown.
    """

    def __init__(self, data_dir: Path | str, experiments: Sequence[str] | None = None,
                 seed: int | None = None, interactive: bool | None = None, image_width: int = 200):
        import ipywidgets as widgets

        self.folder = ResultsFolder(data_dir)
        self.seed = seed
        self.interactive = interactive
        width = f"{image_width}px"
        count = len(self.folder.window_indices)
        self.slider = widgets.IntSlider(value=0, min=0, max=max(count - 1, 0), description="window",
                                        continuous_update=False)
        self.order = widgets.Dropdown(options=ORDERS, value=ORDERS[0], description="order")
        chosen = tuple(experiments) if experiments is not None else tuple(self.folder.experiments)
        self.experiment_select = widgets.SelectMultiple(options=tuple(self.folder.experiments), value=chosen,
                                                        description="experiments", rows=min(6, max(2, len(chosen))))
        self.info = widgets.HTML()
        self.context_images = [widgets.Image(format="png", layout={"width": width}) for _ in range(4)]
        self.context_texts = [widgets.HTML(layout={"width": width}) for _ in range(4)]
        self.target_image = widgets.Image(format="png", layout={"width": width})
        self.target_text = widgets.HTML(layout={"width": width})
        self.prediction_images: dict[str, widgets.Image] = {}
        self.prediction_texts: dict[str, widgets.HTML] = {}
        self.sample_images: dict[str, widgets.Image] = {}
        for experiment in self.folder.experiments:
            self.prediction_images[experiment] = widgets.Image(format="png", layout={"width": width})
            self.prediction_texts[experiment] = widgets.HTML(layout={"width": width})
            self.sample_images[experiment] = widgets.Image(format="png", layout={"width": width})
        self.predictions_box = widgets.HBox()
        self.floors = widgets.HTML()
        columns = [widgets.VBox([image, text]) for image, text in zip(self.context_images, self.context_texts)]
        columns.append(widgets.VBox([self.target_image, self.target_text]))
        self.widget = widgets.VBox([
            widgets.HBox([self.slider, self.order]), self.experiment_select, self.info,
            widgets.HBox(columns), self.predictions_box, self.floors,
        ])
        self._widgets = widgets
        self._ordered: list[int] = []
        self.slider.observe(self._on_position, names="value")
        self.order.observe(self._on_order, names="value")
        self.experiment_select.observe(self._on_experiments, names="value")
        self._reorder()
        self._refresh()

    # ----------------------------------------------------------------- state

    @property
    def experiments(self) -> list[str]:
        return list(self.experiment_select.value)

    @property
    def window_order(self) -> list[int]:
        """window_index values in the current order."""
        return list(self._ordered)

    @property
    def current_window(self) -> int | None:
        return self._ordered[self.slider.value] if self._ordered else None

    def mean_image_mae(self) -> pd.Series:
        """Per saved window, the image MAE averaged over the chosen experiments (NaN if none)."""
        values = {}
        for experiment in self.experiments:
            table, _ = self.folder.predictions(experiment, self.seed)
            if "image_mae" in table:
                values[experiment] = pd.to_numeric(table["image_mae"], errors="coerce")
        frame = pd.DataFrame(values).reindex(self.folder.window_indices)
        return frame.mean(axis=1) if values else pd.Series(np.nan, index=self.folder.window_indices)

    def _reorder(self) -> None:
        windows = [int(w) for w in self.folder.window_indices]
        if self.order.value != "window order":
            errors = self.mean_image_mae()
            sign = -1.0 if self.order.value == "worst first" else 1.0

            def key(position: int) -> tuple[bool, float, int]:
                error = float(errors[windows[position]])
                missing = bool(np.isnan(error))   # windows without a value go last either way
                return (missing, 0.0 if missing else sign * error, position)

            windows = [windows[p] for p in sorted(range(len(windows)), key=key)]
        self._ordered = windows

    def _on_position(self, _change: dict | None = None) -> None:
        self._refresh()

    def _on_order(self, _change: dict | None = None) -> None:
        self._reorder()
        if self.slider.value != 0:
            self.slider.value = 0          # triggers _refresh
        else:
            self._refresh()

    def _on_experiments(self, _change: dict | None = None) -> None:
        if self.order.value == "window order":
            self._refresh()
        else:
            self._on_order()          # the error order depends on the chosen experiments

    # ----------------------------------------------------------------- rendering

    def view(self) -> dict:
        """What the browser shows now, as plain data (used by both renderings)."""
        window = self.current_window
        if window is None:
            return {"window": None}
        frames, texts = self.folder.window_frames(window), self.folder.window_texts(window)
        predictions = []
        for experiment in self.experiments:
            seeds = self.folder.seeds(experiment)
            seed = self.seed if self.seed is not None else (seeds[0] if seeds else None)
            metrics = self.folder.window_metrics(experiment, window, seed)
            predictions.append({
                "experiment": experiment, "seed": seed,
                "frame": self.folder.predicted_frame(experiment, window, seed),
                "samples": self.folder.vae_samples(experiment, window, seed),
                "text": str(metrics.get("generated_text", "")),
                "metrics": {k: metrics[k] for k, _, _ in SHOWN_METRICS if k in metrics},
            })
        floors = {}
        if not self.folder.floor_windows.empty and window in self.folder.floor_windows.index:
            floors = {k: v for k, v in self.folder.floor_windows.loc[window].items() if k != "story_id"}
        story = self.folder.texts.loc[window, "story_id"] if window in self.folder.texts.index else ""
        return {"window": window, "position": self.slider.value, "count": len(self._ordered),
                "order": self.order.value, "story_id": story, "frames": frames, "texts": texts,
                "predictions": predictions, "floors": floors}

    def _refresh(self) -> None:
        view = self.view()
        if view["window"] is None:
            self.info.value = f"<b>No saved test windows under {html.escape(str(self.folder.data_dir))}.</b>"
            self.predictions_box.children = ()
            return
        self.info.value = (f"<b>window {view['window']}</b> (story {html.escape(str(view['story_id']))}) · "
                           f"{view['position'] + 1} of {view['count']} in {view['order']}")
        for i in range(4):
            self.context_images[i].value = png_bytes(view["frames"][i])
            self.context_texts[i].value = f"<small><b>context {i + 1}</b>: {html.escape(view['texts'][i])}</small>"
        self.target_image.value = png_bytes(view["frames"][4])
        self.target_text.value = f"<small><b>truth</b>: {html.escape(view['texts'][4])}</small>"
        boxes = []
        for prediction in view["predictions"]:
            name = prediction["experiment"]
            image, text = self.prediction_images[name], self.prediction_texts[name]
            children = [image, text]
            image.value = png_bytes(prediction["frame"]) if prediction["frame"] is not None else b""
            text.value = (f"<small><b>{html.escape(name)}</b> (seed {prediction['seed']}): "
                          f"{html.escape(prediction['text'])}<br><i>{_metrics_text(prediction['metrics'])}</i></small>")
            if prediction["samples"] is not None:
                self.sample_images[name].value = png_bytes(prediction["samples"])
                children.append(self.sample_images[name])
            boxes.append(self._widgets.VBox(children))
        self.predictions_box.children = tuple(boxes)
        if view["floors"]:
            cells = "".join(f"<td>{html.escape(k)}</td><td>{float(v):.3f}</td>" if isinstance(v, (int, float))
                            else "" for k, v in view["floors"].items())
            self.floors.value = f"<small><b>floors on this window</b><table><tr>{cells}</tr></table></small>"
        else:
            self.floors.value = "<small>no per-window floors (floor_windows.csv) in this folder</small>"

    def figure(self) -> Figure:
        """A static matplotlib figure of the current view (for papermill / nbconvert / scripts)."""
        view = self.view()
        if view["window"] is None:
            figure = Figure(figsize=(6, 1))
            axis = figure.add_subplot()
            axis.axis("off")
            axis.text(0.5, 0.5, f"No saved test windows under {self.folder.data_dir}.", ha="center", va="center")
            return figure
        panels = [(view["frames"][i], f"context {i + 1}", short_text(view["texts"][i], 30, 5)) for i in range(4)]
        panels.append((view["frames"][4], "truth", short_text(view["texts"][4], 30, 5)))
        for prediction in view["predictions"]:
            caption = (short_text(prediction["text"], 30, 3) + "\n"
                       + short_text(_metrics_text(prediction["metrics"]), 30, 3))
            panels.append((prediction["frame"], f"{prediction['experiment']} (seed {prediction['seed']})", caption))
            if prediction["samples"] is not None:
                panels.append((np.concatenate(list(prediction["samples"]), axis=2),
                               f"{prediction['experiment']} samples", ""))
        columns = 5
        rows = -(-len(panels) // columns)
        figure = Figure(figsize=(2.6 * columns, 2.9 * rows + 0.6), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for axis, (image, title, text) in zip(axes, panels):
            axis.set_xticks([])
            axis.set_yticks([])
            if image is not None:
                axis.imshow(frame_to_hwc(image))
            axis.set_title(title, fontsize=8)
            axis.set_xlabel(text, fontsize=6.5)
        for axis in axes[len(panels):]:
            axis.axis("off")
        floors = " · ".join(f"{k} {float(v):.3f}" for k, v in view["floors"].items() if isinstance(v, (int, float)))
        figure.suptitle(f"window {view['window']} (story {view['story_id']})"
                        + (f"\nfloors: {floors}" if floors else ""), fontsize=8)
        return figure

    def show(self) -> Figure | None:
        """Display the widget in a live front end; otherwise return the static figure."""
        interactive = is_interactive() if self.interactive is None else self.interactive
        if interactive:
            from IPython.display import display

            display(self.widget)
            return None
        return self.figure()


def browse(data_dir: Path | str, experiments: Sequence[str] | None = None) -> Figure | None:
    """One-call browser for a notebook cell: the widget, or its static figure headless."""
    return FrameBrowser(data_dir, experiments=experiments).show()
