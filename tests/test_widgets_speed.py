"""The frame browser's speed logic without timing: the last control change wins, frames are
decoded once and cached, and a widget whose picture did not change is not sent again."""

from __future__ import annotations

import numpy as np
import pytest

from _results_folder import make_results_folder, predicted_value
from storylib import widgets
from storylib.widgets import BUSY_HTML, FrameBrowser, LatestOnly
from test_widgets import pixel


@pytest.fixture()
def data_dir(tmp_path):
    return make_results_folder(tmp_path / "synthetic-smoke")


def test_only_the_latest_request_counts_whatever_order_jobs_run_in():
    queued, applied = [], []
    renders = LatestOnly(queued.append)
    for name in ("a", "b", "c"):
        renders.request(lambda number, name=name: applied.append(name) if renders.is_current(number) else None)
    for job in (queued[2], queued[0], queued[1]):
        job()
    assert applied == ["c"]


def test_a_render_overtaken_by_a_later_change_is_never_shown(data_dir):
    browser = FrameBrowser(data_dir, background=False)
    queued = []
    browser.renders = LatestOnly(queued.append)          # hold the renders, run them by hand
    browser.slider.value = 1
    assert browser.busy.value == BUSY_HTML and len(queued) == 1
    browser.slider.value = 2
    queued[1]()                                           # the later change renders first …
    assert browser.current_window == 11 and "window 11" in browser.info.value
    assert browser.busy.value == ""
    queued[0]()                                           # … and the earlier one is dropped
    assert "window 11" in browser.info.value and "window 7" not in browser.window_label.value


def test_frames_are_decoded_once_and_unchanged_pictures_not_sent_again(data_dir, monkeypatch):
    loads = []
    real_load = np.load
    monkeypatch.setattr(widgets.np, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    browser = FrameBrowser(data_dir, experiments=["baseline"], background=False)
    first_loads = len(loads)
    for position in (1, 2, 0, 1, 2):
        browser.slider.value = position
    assert len(loads) == first_loads                     # predictions.npz read once, not per step
    sent = []
    browser.context_images[0].observe(lambda change: sent.append(change), names="value")
    prediction_sent = []
    browser.prediction_images["baseline"].observe(lambda change: prediction_sent.append(change), names="value")
    browser.seed_select.value = 1                        # same window: the context frames stay
    assert sent == [] and len(prediction_sent) == 1
    assert pixel(browser.prediction_images["baseline"].value)[0] == predicted_value("baseline", 1, 2)
    # a cached key is not encoded again (other frames under the same key give the cached PNG)
    assert browser.png(("frame", 11, 0), np.zeros((3, 2, 2), np.uint8)) == bytes(browser.context_images[0].value)
    assert browser.png(("absent",), None) == b""
