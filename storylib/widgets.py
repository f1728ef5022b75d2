"""The frame browser: look at what the models actually predict, window by window.

One results folder (``<results>/<data>-<scale>``), one test window at a time: the 4 context
frames with their descriptions, the true target, each chosen experiment's predicted frame and
generated description with its per-window metrics (and their spread over the seeds), VAE
samples, and every floor's per-window metrics beside them. Windows can be stepped through in
window order or ordered by error (the mean image MAE over the chosen experiments), worst or
best first: the quickest way to see a collapsed model; and limited to one group of windows (where
the shot continues or cuts at frame 5, or one shot pattern of the story). The slider gives the *position* in that
order; the window number is shown beside it.

Rendering uses ``widgets.Image`` (PNG bytes) and ``widgets.HTML`` only: an ``Output`` widget
breaks nbval. The view is laid out for a notebook 1,200 px wide (five 200 px columns; rows wrap).

Speed (a control change answers within half a second): the runs of the folder are listed once
(checking that a run is current reads its files, 1.3 s per listing on the reference folder);
a run's per-window table is read on first use and its frames decompressed only when one of
them is shown; PNGs are cached, and a widget whose PNG did not change is not sent again.
In a kernel, a control change shows a busy line at once and renders on a worker thread; a
render that a later change overtook is dropped, so the last change always wins.

What a notebook shows does not depend on guessing the front end: :meth:`FrameBrowser.show`
displays one mime bundle holding the widget view *and* a static PNG of the same view. JupyterLab
renders the widget; papermill, nbconvert and report.html (no widget state, no kernel) show the
picture. Outside IPython it returns the static figure.
"""

from __future__ import annotations

import base64
import html
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from storylib.comparisons import window_groups
from storylib.io import kernel_shell
from storylib.report.figures import Panel, figure_png, message_figure, panel_figure, short_text
from storylib.report.metric_text import SHOWN_METRICS, floor_metrics, header_lines, metrics_text, spread_text
from storylib.report.latest_only import LatestOnly
from storylib.report.run_files import RunFiles, png_bytes
from storylib.report.tables import floor_row_label
from storylib.results.windows import ResultsFolder, saved_subset


ORDERS = ("window order", "worst first", "best first")
ALL_WINDOWS = "all windows"
NOTEBOOK_WIDTH_PX = 1200
_LABELLED = {"description_width": "initial"}          # labels never cut to the default 80 px
_CAPTION = '<div style="white-space:normal;overflow-wrap:anywhere;line-height:1.35;font-size:12px">{}</div>'
PNG_CACHE_SIZE = 512  # PNGs kept (a few KB each): every frame of a few dozen windows
BUSY_HTML = "<i>working…</i>"


class FrameBrowser:
    """ipywidgets browser over one results folder (see the module docstring).

    ``slider`` picks a position in the current order (``window_label`` names the window),
    ``order`` the order, ``experiment_select`` the experiments shown, ``seed_select`` the seed
    (an experiment without that seed shows its first one, and says so).
    """

    def __init__(self, data_dir: Path | str, experiments: Sequence[str] | None = None,
                 seed: int | None = None, image_width: int = 200, background: bool | None = None):
        """``background``: render control changes on a worker thread (default: when running
        in a kernel). The first view is always rendered before this returns."""
        import ipywidgets as widgets

        self.folder = ResultsFolder(data_dir)
        self.runs = RunFiles(self.folder.data_dir)
        self._png_cache: OrderedDict[tuple, bytes] = OrderedDict()
        if background is None:
            background = kernel_shell() is not None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-browser") if background else None
        self.renders = LatestOnly(self._executor.submit if self._executor else (lambda job: job()))
        self.image_width = image_width
        recorded = saved_subset(self.folder.data_dir)
        self._subset_note = (f"frames saved for {recorded['kept']} of {recorded['of']} test windows "
                             "(a subset kept to stay small)" if recorded else "")
        self._build_controls(widgets, experiments, seed)
        self._build_panels(widgets)
        self._widgets = widgets
        self._ordered: list[int] = []
        self.slider.observe(self._on_position, names="value")
        self.order.observe(self._on_order, names="value")
        self.group.observe(self._on_order, names="value")
        self.experiment_select.observe(self._on_experiments, names="value")
        self.seed_select.observe(self._on_experiments, names="value")
        self._reorder()
        self._apply(self._render(self._state()))

    def _build_controls(self, widgets, experiments: Sequence[str] | None, seed: int | None) -> None:
        """The slider, the order / windows / seed dropdowns and the experiment selection."""
        count = len(self.folder.window_indices)
        self.slider = widgets.IntSlider(value=0, min=0, max=max(count - 1, 0), description="position in order",
                                        continuous_update=False, style=_LABELLED, layout={"width": "420px"})
        self.window_label = widgets.HTML()
        self.order = widgets.Dropdown(options=ORDERS, value=ORDERS[0], description="order", style=_LABELLED,
                                      layout={"width": "220px"})
        # which windows: all, where the shot continues / cuts at frame 5, or one shot pattern
        self.groups = {name: set(members) for name, members in window_groups(self.folder.data_dir).items()
                       if name != "all" and members}
        self.group = widgets.Dropdown(options=(ALL_WINDOWS, *self.groups), value=ALL_WINDOWS, description="windows",
                                      style=_LABELLED, layout={"width": "260px"})
        seeds = sorted({s for e in self.folder.experiments for s in self.runs.seeds.get(e, [])})
        self.seed_select = widgets.Dropdown(options=seeds or [0], value=seed if seed in seeds else (seeds or [0])[0],
                                            description="seed", style=_LABELLED, layout={"width": "140px"})
        chosen = tuple(experiments) if experiments is not None else tuple(self.folder.experiments)
        self.experiment_select = widgets.SelectMultiple(
            options=tuple(self.folder.experiments), value=chosen, description="experiments", style=_LABELLED,
            rows=min(8, max(2, len(self.folder.experiments))), layout={"width": "420px"})

    def _build_panels(self, widgets) -> None:
        """The four context frames and the truth, a prediction per experiment, the samples, the
        floors, laid out under the controls in :attr:`widget`."""
        width = f"{self.image_width}px"
        self.info = widgets.HTML()
        self.busy = widgets.HTML()            # "working…" between a control change and its view
        self.context_images = [widgets.Image(format="png", layout={"width": width}) for _ in range(4)]
        self.context_texts = [widgets.HTML(layout={"width": width}) for _ in range(4)]
        self.target_image = widgets.Image(format="png", layout={"width": width})
        self.target_text = widgets.HTML(layout={"width": width})
        self.prediction_images: dict[str, widgets.Image] = {}
        self.prediction_texts: dict[str, widgets.HTML] = {}
        self.sample_images: dict[str, list[widgets.Image]] = {}
        for experiment in self.folder.experiments:
            self.prediction_images[experiment] = widgets.Image(format="png", layout={"width": width})
            self.prediction_texts[experiment] = widgets.HTML(layout={"width": width})
            self.sample_images[experiment] = []
        wrap = {"flex_flow": "row wrap", "max_width": f"{NOTEBOOK_WIDTH_PX}px"}
        self.predictions_box = widgets.HBox(layout=wrap)
        self.samples_box = widgets.VBox()
        self.floors = widgets.HTML(layout={"max_width": f"{NOTEBOOK_WIDTH_PX}px"})
        columns = [widgets.VBox([image, text]) for image, text in zip(self.context_images, self.context_texts)]
        columns.append(widgets.VBox([self.target_image, self.target_text]))
        self.widget = widgets.VBox([
            widgets.HBox([self.slider, self.window_label, self.busy], layout=wrap),
            widgets.HBox([self.order, self.group, self.seed_select], layout=wrap),
            self.experiment_select, self.info,
            widgets.HBox(columns, layout=wrap), self.predictions_box, self.samples_box, self.floors,
        ], layout={"max_width": f"{NOTEBOOK_WIDTH_PX}px"})

    # ----------------------------------------------------------------- state

    @property
    def experiments(self) -> list[str]:
        return list(self.experiment_select.value)

    @property
    def seed(self) -> int:
        return int(self.seed_select.value)

    @property
    def window_order(self) -> list[int]:
        """window_index values in the current order."""
        return list(self._ordered)

    @property
    def current_window(self) -> int | None:
        return self._ordered[self.slider.value] if self._ordered else None

    def seed_of(self, experiment: str, seed: int | None = None) -> int | None:
        """The chosen seed (or ``seed``), or the experiment's first seed when it has no run with it."""
        seed = self.seed if seed is None else seed
        seeds = self.runs.seeds.get(experiment, [])
        return seed if seed in seeds else (seeds[0] if seeds else None)

    def mean_image_mae(self) -> pd.Series:
        """Per saved window, the image MAE averaged over the chosen experiments (NaN if none)."""
        values = {}
        for experiment in self.experiments:
            seed = self.seed_of(experiment)
            table = self.runs.table(experiment, seed) if seed is not None else pd.DataFrame()
            if "image_mae" in table:
                values[experiment] = pd.to_numeric(table["image_mae"], errors="coerce")
        frame = pd.DataFrame(values).reindex(self.folder.window_indices)
        return frame.mean(axis=1) if values else pd.Series(np.nan, index=self.folder.window_indices)

    def _reorder(self) -> None:
        windows = [int(w) for w in self.folder.window_indices]
        if self.group.value != ALL_WINDOWS:
            windows = [w for w in windows if w in self.groups[self.group.value]]
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
        self.slider.max = max(len(self._ordered) - 1, 0)
        if self.slider.value != 0:
            self.slider.value = 0          # triggers _refresh
        else:
            self._refresh()

    def _on_experiments(self, _change: dict | None = None) -> None:
        if self.order.value == "window order":
            self._refresh()
        else:
            self._on_order()          # the error order depends on the chosen experiments and seed

    def _state(self) -> dict:
        """The controls now: what a render is for (a render never reads the live controls)."""
        return {"window": self.current_window, "position": self.slider.value, "count": len(self._ordered),
                "order": self.order.value, "experiments": self.experiments, "seed": self.seed}

    def _refresh(self) -> None:
        """Show the view of the controls as they are now: the busy line at once, the view when
        rendered; a render that a later change overtook is never shown."""
        self.busy.value = BUSY_HTML
        state = self._state()

        def job(number: int) -> None:
            try:
                if not self.renders.is_current(number):
                    return                      # a later change came in before this one started
                rendered = self._render(state)
                if self.renders.is_current(number):
                    self._apply(rendered)
            except Exception as error:  # noqa: BLE001 - a worker thread has no one else to tell
                self.busy.value = f"<b>could not show this window:</b> {html.escape(repr(error))}"
                raise

        self.renders.request(job)

    # ----------------------------------------------------------------- rendering

    def view(self, state: dict | None = None) -> dict:
        """What the browser shows for ``state`` (default: the controls now), as plain data
        (used by both renderings)."""
        state = state or self._state()
        window = state["window"]
        if window is None:
            return {"window": None}
        frames, texts = self.folder.window_frames(window), self.folder.window_texts(window)
        predictions = []
        for experiment in state["experiments"]:
            seed = self.seed_of(experiment, state["seed"])
            metrics = self.runs.metrics(experiment, window, seed) if seed is not None else {}
            per_seed = {s: self.runs.metrics(experiment, window, s) for s in self.runs.seeds.get(experiment, [])}
            predictions.append({
                "experiment": experiment, "seed": seed, "seed_missing": seed != state["seed"],
                "frame": self.runs.frame("predicted_frame", experiment, window, seed) if seed is not None else None,
                "samples": self.runs.frame("vae_samples", experiment, window, seed) if seed is not None else None,
                "text": str(metrics.get("generated_text", "")),
                "metrics": {k: metrics[k] for k, _, _ in SHOWN_METRICS if k in metrics},
                "spread": spread_text({s: m for s, m in per_seed.items() if m}),
            })
        floors = {}
        if not self.folder.floor_windows.empty and window in self.folder.floor_windows.index:
            floors = floor_metrics(self.folder.floor_windows.loc[window].to_dict())
        known = window in self.folder.texts.index
        story = self.folder.texts.loc[window, "story_id"] if known else ""
        shot = " · ".join(str(self.folder.texts.loc[window, column]).replace("_", " ") for column in ("pattern", "shot")
                          if known and column in self.folder.texts.columns and self.folder.texts.loc[window, column])
        return {"window": window, "position": state["position"], "count": state["count"],
                "order": state["order"], "seed": state["seed"], "story_id": story, "shot": shot, "frames": frames,
                "texts": texts, "predictions": predictions, "floors": floors}

    def png(self, key: tuple, frames: np.ndarray | None) -> bytes:
        """:func:`png_bytes` of ``frames``, cached under ``key`` (what the frames are)."""
        if frames is None:
            return b""
        cached = self._png_cache.get(key)
        if cached is None:
            cached = self._png_cache[key] = png_bytes(frames)
            while len(self._png_cache) > PNG_CACHE_SIZE:
                self._png_cache.popitem(last=False)
        else:
            self._png_cache.move_to_end(key)
        return cached

    def _render(self, state: dict) -> dict:
        """The view of ``state`` with every PNG encoded: all the slow work, no widget touched."""
        view = self.view(state)
        window = view["window"]
        if window is None:
            return view
        view["context_png"] = [self.png(("frame", window, i), view["frames"][i]) for i in range(5)]
        for prediction in view["predictions"]:
            key = (prediction["experiment"], prediction["seed"], window)
            prediction["png"] = self.png(("prediction", *key), prediction["frame"])
            samples = prediction["samples"]
            prediction["sample_png"] = ([] if samples is None else
                                        [self.png(("sample", *key, k), sample) for k, sample in enumerate(samples)])
        return view

    def _prediction_caption(self, prediction: dict, chosen_seed: int) -> str:
        seed = f"seed {prediction['seed']}" + (f", no seed {chosen_seed}" if prediction["seed_missing"] else "")
        spread = f"<br>{html.escape(prediction['spread'])}" if prediction["spread"] else ""
        return _CAPTION.format(f"<b>{html.escape(prediction['experiment'])}</b> ({seed}): "
                               f"{html.escape(prediction['text'])}<br><i>{metrics_text(prediction['metrics'])}</i>"
                               f"{spread}")

    def _floors_html(self, floors: dict[str, dict]) -> str:
        """One row per floor, one column per metric: as wide as the metrics, not the floors."""
        if not floors:
            return "<small>no per-window floors (floor_windows.csv) in this folder</small>"
        shown = [(key, label, decimals) for key, label, decimals in SHOWN_METRICS
                 if any(key in values for values in floors.values())]
        header = "".join(f"<th style='padding:0 8px'>{label}</th>" for _, label, _ in shown)
        rows = "".join(
            f"<tr><td>{html.escape(floor_row_label(name))}</td>"
            + "".join(f"<td style='padding:0 8px;text-align:right'>"
                      f"{values[key]:.{decimals}f}</td>" if key in values else "<td></td>"
                      for key, _, decimals in shown) + "</tr>"
            for name, values in floors.items())
        return (f"<div style='font-size:12px'><b>floors on this window</b><table><tr><th></th>{header}</tr>"
                f"{rows}</table></div>")

    def _apply(self, view: dict) -> None:
        """Put a rendered view into the widgets. A widget given the value it has already sends
        nothing to the front end (traitlets compares), so an unchanged frame is not redrawn."""
        if view["window"] is None:
            self.info.value = f"<b>No saved test windows in {html.escape(self.folder.data_dir.name)}.</b>"
            self.window_label.value = ""
            self.predictions_box.children = ()
            self.samples_box.children = ()
            self.busy.value = ""
            return
        self.window_label.value = (f"<b>window {view['window']}</b> ({view['position'] + 1} of {view['count']}, "
                                   f"{view['order']})")
        self.info.value = f"<b>window {view['window']}</b> · story {html.escape(str(view['story_id']))}" + (
            f" · {html.escape(view['shot'])}" if view.get("shot") else "") + (
            f" · {self._subset_note}" if self._subset_note else "")
        for i in range(4):
            self.context_images[i].value = view["context_png"][i]
            self.context_texts[i].value = _CAPTION.format(f"<b>context {i + 1}</b>: {html.escape(view['texts'][i])}")
        self.target_image.value = view["context_png"][4]
        self.target_text.value = _CAPTION.format(f"<b>truth</b>: {html.escape(view['texts'][4])}")
        boxes, sample_rows = [], []
        for prediction in view["predictions"]:
            name = prediction["experiment"]
            image, text = self.prediction_images[name], self.prediction_texts[name]
            image.value = prediction["png"]
            text.value = self._prediction_caption(prediction, view["seed"])
            boxes.append(self._widgets.VBox([image, text]))
            if prediction["sample_png"]:
                sample_rows.append(self._samples_row(name, prediction["sample_png"]))
        self.predictions_box.children = tuple(boxes)
        self.samples_box.children = tuple(sample_rows)
        self.floors.value = self._floors_html(view["floors"])
        self.busy.value = ""

    def _samples_row(self, experiment: str, samples: list[bytes]):
        """The experiment's VAE samples (PNGs), each at the width of a frame, in a wrapping row."""
        widgets = self._widgets
        images = self.sample_images[experiment]
        while len(images) < len(samples):
            images.append(widgets.Image(format="png", layout={"width": f"{self.image_width}px"}))
        for image, sample in zip(images, samples):
            image.value = sample
        label = widgets.HTML(_CAPTION.format(f"<b>{html.escape(experiment)}</b>: {len(samples)} samples "
                                             "of the VAE prior"))
        return widgets.VBox([label, widgets.HBox(images[: len(samples)],
                                                 layout={"flex_flow": "row wrap",
                                                         "max_width": f"{NOTEBOOK_WIDTH_PX}px"})])

    def figure(self) -> Figure:
        """A static matplotlib figure of the current view, as wide as a page."""
        view = self.view()
        if view["window"] is None:
            return message_figure(f"No saved test windows in {self.folder.data_dir.name}.")
        rows: list[list[Panel]] = [[(view["frames"][i], f"context {i + 1}", short_text(view["texts"][i]))
                                    for i in range(4)] + [(view["frames"][4], "truth", short_text(view["texts"][4]))]]
        predictions, samples = [], []
        for prediction in view["predictions"]:
            caption = short_text(prediction["text"], max_lines=2) + "\n" + short_text(
                metrics_text(prediction["metrics"]), max_lines=3)
            predictions.append((prediction["frame"], f"{prediction['experiment']} (seed {prediction['seed']})", caption))
            if prediction["samples"] is not None:
                samples += [(sample, f"{prediction['experiment']} sample {k + 1}", "")
                            for k, sample in enumerate(prediction["samples"])]
        rows += [predictions, samples] if samples else [predictions]
        floors = [f"{name} MAE {values['image_mae']:.3f}" for name, values in view["floors"].items()
                  if "image_mae" in values]
        shot = f" · {view['shot']}" if view.get("shot") else ""
        title = "\n".join([f"window {view['window']} (story {view['story_id']}){shot}", *header_lines("floors: ", floors)])
        return panel_figure(rows, caption_lines=5, title=title)

    def mime_bundle(self) -> dict:
        """The widget view and a PNG of the same view in one display: a front end with widgets
        renders the widget, any other renderer (nbconvert, report.html) the picture."""
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["image/png"] = base64.b64encode(figure_png(self.figure())).decode("ascii")
        bundle["text/plain"] = f"frame browser of {self.folder.data_dir.name} (window {self.current_window})"
        return bundle

    def show(self) -> Figure | None:
        """In IPython, display :meth:`mime_bundle`; elsewhere return the static figure."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython comes with ipykernel
            return self.figure()
        if get_ipython() is None:
            return self.figure()
        display(self.mime_bundle(), raw=True)
        return None


def browse(data_dir: Path | str, experiments: Sequence[str] | None = None) -> Figure | None:
    """One-call browser for a notebook cell (see :meth:`FrameBrowser.show`)."""
    return FrameBrowser(data_dir, experiments=experiments).show()
