"""The frame browser's logic, without a front end, on a hand-made results folder."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from _results_folder import frame_value, make_results_folder, predicted_value
from storylib.widgets import FrameBrowser, png_bytes


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
    browser = FrameBrowser(data_dir, interactive=False)
    assert browser.window_order == [3, 7, 11]
    browser.slider.value = 1                      # window 7 (position 1)
    assert browser.current_window == 7
    assert "window 7" in browser.info.value and "syn-test-00007" in browser.info.value
    assert [pixel(image.value)[0] for image in browser.context_images] == [frame_value(1, f) for f in range(4)]
    assert pixel(browser.target_image.value)[0] == frame_value(1, 4)
    assert "window 7 context 2" in browser.context_texts[1].value
    assert "window 7 target &lt;b&gt;" in browser.target_text.value        # escaped, not markup
    assert pixel(browser.prediction_images["enhanced"].value)[0] == predicted_value("enhanced", 0, 1)
    enhanced_text = browser.prediction_texts["enhanced"].value
    assert "enhanced seed 0 says 7" in enhanced_text and "MAE 0.100" in enhanced_text and "chrF 25.0" in enhanced_text
    assert "copy_last_frame_image_mae</td><td>0.120" in browser.floors.value


def test_vae_experiments_also_show_their_samples(data_dir):
    browser = FrameBrowser(data_dir, interactive=False)
    boxes = {box.children[1].value.split("</b>")[0].split("<b>")[1]: box for box in browser.predictions_box.children}
    assert len(boxes["vae"].children) == 3 and len(boxes["baseline"].children) == 2
    samples = Image.open(io.BytesIO(boxes["vae"].children[2].value))
    assert samples.size == (2 * 6, 4)
    assert samples.convert("RGB").getpixel((0, 0))[0] == 200 and samples.convert("RGB").getpixel((6, 0))[0] == 201


def test_order_by_mean_image_mae_of_the_chosen_experiments(data_dir):
    browser = FrameBrowser(data_dir, experiments=["baseline", "enhanced"], interactive=False)
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
    browser = FrameBrowser(data_dir, interactive=False)
    assert len(browser.predictions_box.children) == 3
    browser.experiment_select.value = ("enhanced",)
    assert len(browser.predictions_box.children) == 1
    assert browser.window_order == [3, 7, 11]     # window order does not depend on the selection


def test_seed_choice_changes_the_prediction(data_dir):
    browser = FrameBrowser(data_dir, experiments=["baseline"], seed=1, interactive=False)
    assert pixel(browser.prediction_images["baseline"].value)[0] == predicted_value("baseline", 1, 0)
    assert "MAE 0.300" in browser.prediction_texts["baseline"].value


def test_show_without_a_front_end_returns_a_static_figure_of_the_same_view(data_dir):
    browser = FrameBrowser(data_dir, interactive=False)
    browser.slider.value = 2
    figure = browser.show()
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[:5] == ["context 1", "context 2", "context 3", "context 4", "truth"]
    assert "baseline (seed 0)" in titles and "vae samples" in titles
    assert figure.axes[4].images[0].get_array()[0, 0, 0] == frame_value(2, 4)
    assert "window 11" in figure._suptitle.get_text()


def test_empty_folder_says_so(tmp_path):
    browser = FrameBrowser(tmp_path, interactive=False)
    assert browser.current_window is None
    assert "No saved test windows" in browser.info.value
    assert "No saved test windows" in browser.figure().axes[0].texts[0].get_text()
