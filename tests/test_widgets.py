"""The frame browser's logic, without a front end, on a hand-made results folder."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from _results_folder import frame_value, make_results_folder, predicted_value
from helpers_fake_data import make_prepared, tiny_config
from storylib import evaluation
from storylib.config import ExperimentConfig
from storylib.models import build_model
from storylib.report.run_files import png_bytes
from storylib.widgets import NOTEBOOK_WIDTH_PX, FrameBrowser


@pytest.fixture()
def data_dir(tmp_path):
    return make_results_folder(tmp_path / "synthetic-smoke")


def pixel(png: bytes) -> tuple[int, ...]:
    """Top-left pixel of a PNG (the fixture's frames are one grey value each)."""
    return Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))


def test_png_bytes_round_trip_and_side_by_side_samples():
    frame = np.zeros((3, 4, 6), dtype=np.uint8)
    frame[0] = 255
    assert Image.open(io.BytesIO(png_bytes(frame))).size == (6, 4)
    assert pixel(png_bytes(frame)) == (255, 0, 0)
    assert Image.open(io.BytesIO(png_bytes(np.stack([frame, frame, frame])))).size == (18, 4)


def test_slider_shows_the_chosen_window_with_texts_predictions_and_floors(data_dir):
    browser = FrameBrowser(data_dir)
    assert browser.window_order == [3, 7, 11]
    browser.slider.value = 1                      # window 7 (position 1)
    assert browser.current_window == 7
    assert "window 7" in browser.info.value and "syn-test-00007" in browser.info.value
    assert browser.window_label.value.startswith("<b>window 7</b> (2 of 3, window order)")
    assert [pixel(image.value)[0] for image in browser.context_images] == [frame_value(1, f) for f in range(4)]
    assert pixel(browser.target_image.value)[0] == frame_value(1, 4)
    assert "window 7 context 2" in browser.context_texts[1].value
    assert "window 7 target &lt;b&gt;" in browser.target_text.value        # escaped, not markup
    assert pixel(browser.prediction_images["enhanced"].value)[0] == predicted_value("enhanced", 0, 1)
    enhanced_text = browser.prediction_texts["enhanced"].value
    assert "enhanced seed 0 says 7" in enhanced_text and "MAE 0.100" in enhanced_text and "chrF 25.0" in enhanced_text
    rows = floor_rows(browser.floors.value)
    assert rows["floor: copy_last_frame"][0] == "0.120" and rows["floor: median_image"][0] == "0.250"
    assert rows["floor: copy_last_description"][-3:] == ["21.0", "2.0", "0.2"]     # chrF, BLEU, ROUGE-L


def floor_rows(value: str) -> dict[str, list[str]]:
    """{row label: cells} of the floors table: one row per floor, one column per metric."""
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", value)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        rows[cells[0]] = cells[1:]
    return rows


def test_the_slider_is_a_position_in_the_order_and_the_window_is_named_beside_it(data_dir):
    browser = FrameBrowser(data_dir, experiments=["baseline", "enhanced"])
    assert browser.slider.description == "position in order"
    browser.order.value = "worst first"
    assert browser.slider.value == 0
    assert browser.window_label.value.startswith("<b>window 11</b> (1 of 3, worst first)")


def test_floors_of_any_name_in_the_file_get_a_row(data_dir):
    table = pd.read_csv(data_dir / "floor_windows.csv")
    table["motion_extrapolation_image_mae"] = [0.07, 0.08, 0.09]
    table["oracle_best_context_image_mae"] = [0.01, 0.02, 0.03]
    table.to_csv(data_dir / "floor_windows.csv", index=False)
    rows = floor_rows(FrameBrowser(data_dir).floors.value)
    assert rows["floor: motion_extrapolation"][0] == "0.070"
    assert rows["reference: oracle_best_context"][0] == "0.010"


def test_vae_samples_get_a_row_of_their_own_at_frame_width(data_dir):
    browser = FrameBrowser(data_dir)
    boxes = {box.children[1].value.split("</b>")[0].split("<b>")[1]: box for box in browser.predictions_box.children}
    assert len(boxes["vae"].children) == len(boxes["baseline"].children) == 2
    (row,) = browser.samples_box.children
    assert "vae" in row.children[0].value and "2 samples" in row.children[0].value
    images = row.children[1].children
    assert [image.layout.width for image in images] == ["200px", "200px"]
    assert [pixel(image.value)[0] for image in images] == [200, 201]


def test_seed_chooser_shows_that_seed_and_the_spread_over_seeds(data_dir):
    browser = FrameBrowser(data_dir)
    assert list(browser.seed_select.options) == [0, 1] and browser.seed == 0
    text = browser.prediction_texts["baseline"].value
    assert "(seed 0)" in text and "over seeds 0, 1: MAE 0.100–0.300 (sd 0.141)" in text
    browser.seed_select.value = 1
    assert pixel(browser.prediction_images["baseline"].value)[0] == predicted_value("baseline", 1, 0)
    assert "(seed 1)" in browser.prediction_texts["baseline"].value
    assert "(seed 0, no seed 1)" in browser.prediction_texts["vae"].value      # vae ran with seed 0 only
    assert "over seeds" not in browser.prediction_texts["vae"].value


def test_layout_fits_a_1200_px_notebook(data_dir):
    browser = FrameBrowser(data_dir)
    frames_row = browser.widget.children[4]
    widths = [int(box.children[0].layout.width.rstrip("px")) for box in frames_row.children]
    assert sum(widths) <= NOTEBOOK_WIDTH_PX
    for row in (frames_row, browser.predictions_box, *browser.widget.children[:2]):
        assert row.layout.flex_flow == "row wrap"          # more experiments wrap, never run off
    for control in (browser.slider, browser.order, browser.seed_select, browser.experiment_select):
        assert control.style.description_width == "initial"   # labels are not cut to 80 px
    assert len(re.findall("<tr>", browser.floors.value)) == 1 + 4      # header + one row per floor


def test_the_display_carries_the_widget_and_a_picture_of_the_same_view(data_dir, monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **kwargs: shown.append((objects, kwargs)))
    browser = FrameBrowser(data_dir)
    assert browser.show() is None
    ((bundle,), kwargs) = shown[0]
    assert kwargs == {"raw": True}
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == browser.widget.model_id
    picture = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert picture.size[0] <= NOTEBOOK_WIDTH_PX
    assert "synthetic-smoke (window 3)" in bundle["text/plain"]


def test_a_run_saves_predictions_for_every_test_window_by_default():
    prepared = make_prepared(test=7)
    cfg = tiny_config("vae")
    cfg.eval.saved_prediction_windows = ExperimentConfig().eval.saved_prediction_windows   # the default
    model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size)
    result = evaluation.evaluate(model, prepared.test, prepared.tokenizer, cfg)
    assert len(result.predicted_frames) == len(result.saved_window_index) == len(prepared.test) == 7
    assert result.predicted_frames.dtype == np.uint8 and result.vae_samples.shape[0] == 7


def test_order_by_mean_image_mae_of_the_chosen_experiments(data_dir):
    browser = FrameBrowser(data_dir, experiments=["baseline", "enhanced"])
    browser.slider.value = 2
    browser.order.value = "worst first"           # mean MAE per window: 0.05, 0.15, 0.25
    assert browser.window_order == [11, 7, 3]
    assert browser.slider.value == 0 and browser.current_window == 11
    browser.order.value = "best first"
    assert browser.window_order == [3, 7, 11]
    browser.experiment_select.value = ("vae",)    # vae alone: 0.3, 0.1, 0.5
    assert browser.window_order == [7, 3, 11]
    assert "window 7" in browser.info.value
    assert [box.children[0] for box in browser.predictions_box.children] == [browser.prediction_images["vae"]]


def test_experiment_selection_changes_the_predictions_shown(data_dir):
    browser = FrameBrowser(data_dir)
    assert len(browser.predictions_box.children) == 3
    browser.experiment_select.value = ("enhanced",)
    assert len(browser.predictions_box.children) == 1
    assert browser.window_order == [3, 7, 11]     # window order does not depend on the selection


def test_seed_given_at_start_changes_the_prediction(data_dir):
    browser = FrameBrowser(data_dir, experiments=["baseline"], seed=1)
    assert pixel(browser.prediction_images["baseline"].value)[0] == predicted_value("baseline", 1, 0)
    assert "MAE 0.300" in browser.prediction_texts["baseline"].value


def test_show_without_a_front_end_returns_a_static_figure_of_the_same_view(data_dir):
    browser = FrameBrowser(data_dir)
    browser.slider.value = 2
    figure = browser.show()
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[:5] == ["context 1", "context 2", "context 3", "context 4", "truth"]
    assert "baseline (seed 0)" in titles and "vae sample 1" in titles and "vae sample 2" in titles
    assert figure.axes[4].images[0].get_array()[0, 0, 0] == frame_value(2, 4)
    assert "window 11" in figure._suptitle.get_text()
    assert "copy_last_frame MAE 0.130" in figure._suptitle.get_text()


def test_empty_folder_says_so(tmp_path):
    browser = FrameBrowser(tmp_path)
    assert browser.current_window is None
    assert "No saved test windows" in browser.info.value
    assert "No saved test windows" in browser.figure().axes[0].texts[0].get_text()


class FakeHandle:
    def __init__(self, shown: list):
        self.shown = shown

    def update(self, bundle, raw=False):
        self.shown.append(("update", bundle))


def test_progress_in_a_kernel_is_one_text_line_updated_in_place_not_a_widget(monkeypatch):
    """Under papermill or nbconvert the saved output is the final line, never a blank widget."""
    import IPython
    import IPython.display

    from storylib import io as storylib_io

    shown: list = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()})())

    def fake_display(bundle, raw=False, display_id=False):
        shown.append(("display", bundle, raw, display_id))
        return FakeHandle(shown)

    monkeypatch.setattr(IPython.display, "display", fake_display)
    assert list(storylib_io.progress(range(3), desc="epoch 1", enabled=True)) == [0, 1, 2]
    assert shown[0] == ("display", {"text/plain": "epoch 1"}, True, True)
    kinds = {entry[0] for entry in shown}
    assert kinds == {"display", "update"}                              # one display, then updates of it
    final = shown[-1][1]
    assert set(final) == {"text/plain"} and final["text/plain"].startswith("epoch 1: 100%")
    assert "3/3" in final["text/plain"]


def test_a_committed_reference_can_keep_a_documented_subset_of_the_frames(data_dir):
    from storylib import reporting

    assert reporting.keep_saved_window_subset(data_dir, 2) == [3, 11]
    with np.load(data_dir / "baseline" / "seed1" / "predictions.npz") as arrays:
        assert arrays["window_index"].tolist() == [3, 11]
        assert arrays["predicted_frame"][1, 0, 0, 0] == predicted_value("baseline", 1, 2)
    with np.load(data_dir / "vae" / "seed0" / "predictions.npz") as arrays:
        assert arrays["vae_samples"].shape[0] == 2
    assert len(pd.read_csv(data_dir / "baseline" / "seed0" / "predictions.csv")) == 3    # metrics for all
    browser = FrameBrowser(data_dir)
    assert browser.window_order == [3, 11]
    browser.slider.value = 1
    assert pixel(browser.target_image.value)[0] == frame_value(2, 4)
    assert "frames saved for 2 of 3 test windows" in browser.info.value
    assert reporting.keep_saved_window_subset(data_dir, 1) == [3]          # shrunk again: still "of 3"
    assert json.loads((data_dir / "saved_windows_subset.json").read_text()) == {"kept": 1, "of": 3, "window_index": [3]}


def test_the_browser_can_be_limited_to_one_group_of_windows_and_names_each_window_s_pattern(data_dir):
    table = pd.read_csv(data_dir / "test_windows.csv")
    table["shot"] = ["continues", "cuts", "cuts"]                   # windows 3, 7, 11
    table["pattern"] = ["continuous", "shot_reverse", "irregular"]
    table.to_csv(data_dir / "test_windows.csv", index=False)
    browser = FrameBrowser(data_dir, background=False)
    assert browser.group.options == ("all windows", "continues", "cuts", "continuous", "irregular", "shot_reverse")
    browser.group.value = "cuts"
    assert browser.window_order == [7, 11] and browser.slider.max == 1
    assert "shot reverse · cuts" in browser.info.value
    browser.slider.value = 1
    assert browser.current_window == 11 and "irregular · cuts" in browser.info.value
    browser.group.value = "continuous"
    assert browser.window_order == [3] and browser.slider.value == 0 and browser.slider.max == 0
    browser.group.value = "all windows"
    assert browser.window_order == [3, 7, 11]


def test_the_static_header_is_broken_between_floors_never_cut():
    from storylib.report.metric_text import header_lines

    items = [f"floor_{i} MAE 0.{i}00" for i in range(30)]
    lines = header_lines("floors: ", items, width=60)
    assert all(len(line) <= 60 for line in lines) and lines[0].startswith("floors: floor_0 MAE")
    assert " · ".join(lines).replace("floors: ", "") == " · ".join(items)   # nothing lost, nothing cut
    assert header_lines("floors: ", []) == []
    assert header_lines("floors: ", ["x" * 80], width=60) == ["floors: " + "x" * 80]
