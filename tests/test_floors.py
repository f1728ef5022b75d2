"""Floors on hand-made splits, with values computed by hand."""

import math

import numpy as np
import pytest

from storylib.floors import PICTURED_FLOORS, compute_floors, floor_prediction_frames, unigram_perplexity
from tests.helpers_fake_data import WORDS, make_prepared

SIZE = (12, 12)


def hand_made():
    prepared = make_prepared(train=3, val=1, test=2, size=SIZE)
    prepared.test.shot_cuts = np.array([False, True])  # window 0 continues, window 1 cuts
    prepared.test.cut_basis = "set-up labels"
    for i, value in enumerate([0, 30, 255]):  # train targets: median 30, mean 95
        prepared.train.frames[i, 4] = value
    prepared.test.frames[:, 4] = 60  # both test targets
    prepared.test.frames[0, 3], prepared.test.frames[1, 3] = 50, 70  # frame 4: off by 10 either way
    ids = {w: i for i, w in enumerate(WORDS)}
    prepared.test.token_ids[:] = 0
    prepared.test.token_ids[0, 3, :5] = [1, ids["mara"], ids["walks"], ids["left"], 2]
    prepared.test.token_ids[0, 4, :5] = [1, ids["mara"], ids["walks"], ids["right"], 2]
    prepared.test.token_ids[1, 3, :4] = [1, ids["theo"], ids["walks"], 2]
    prepared.test.token_ids[1, 4, :4] = [1, ids["theo"], ids["walks"], 2]
    return prepared


def test_image_floors_are_exact():
    floors, per_window = compute_floors(hand_made())
    assert floors["median_image"]["image_mae"] == pytest.approx(30 / 255)
    assert floors["mean_image"]["image_mae"] == pytest.approx(35 / 255)
    assert floors["mean_image"]["image_mse"] == pytest.approx((35 / 255) ** 2)
    assert floors["copy_last_frame"]["image_mae"] == pytest.approx(10 / 255)
    assert floors["copy_last_frame"]["image_psnr"] == pytest.approx(10 * math.log10(1 / (10 / 255) ** 2), rel=1e-5)
    assert floors["median_image"]["prediction_spread"] == pytest.approx(0.0, abs=1e-7)
    assert floors["copy_last_frame"]["prediction_spread"] == pytest.approx(10 / 255)
    assert list(per_window.columns) == [
        "window_index", "story_id", "shot", "median_image_image_mae", "mean_image_image_mae", "copy_last_frame_image_mae",
        "motion_extrapolation_image_mae", "analogue_image_mae", "oracle_best_context_image_mae",
        "copy_last_description_bleu", "copy_last_description_chrf", "copy_last_description_rouge_l",
        "analogue_bleu", "analogue_chrf", "analogue_rouge_l",
    ]  # fmt: skip
    assert per_window["copy_last_frame_image_mae"].tolist() == pytest.approx([10 / 255, 10 / 255])


def test_text_floors_are_exact():
    floors, per_window = compute_floors(hand_made())
    assert per_window["copy_last_description_rouge_l"].tolist() == pytest.approx([100 * 2 / 3, 100.0])
    assert floors["copy_last_description"]["rouge_l"] == pytest.approx((100 * 2 / 3 + 100) / 2)
    assert per_window["copy_last_description_chrf"][1] == pytest.approx(100.0)
    assert per_window["copy_last_description_bleu"][1] == pytest.approx(100.0)  # effective order
    assert 0 <= floors["copy_last_description"]["bleu"] < 100
    assert floors["num_test_windows"] == 2 and floors["tokenizer"] == "fake-words" and floors["data_source"] == "fake"
    assert set(floors) >= {"median_image", "mean_image", "copy_last_frame", "unigram", "copy_last_description"}


def test_unigram_perplexity_by_hand():
    vocab = len(WORDS)  # 12
    train = np.zeros((2, 5, 5), dtype=np.int32)
    train[0, 4, :4] = [1, 3, 3, 2]  # counted: 3, 3, 2 (bos excluded)
    train[1, 4, :3] = [1, 4, 2]  # counted: 4, 2
    train[:, :4] = 9  # context descriptions never count
    test = np.zeros((1, 5, 5), dtype=np.int32)
    test[0, 4, :4] = [1, 3, 5, 2]  # scored: 3 (p 3/17), 5 (p 1/17), 2 (p 3/17)
    expected = math.exp(-(math.log(3 / 17) + math.log(1 / 17) + math.log(3 / 17)) / 3)
    assert unigram_perplexity(train, test, vocab) == pytest.approx(expected)
    assert expected == pytest.approx(17 / 9 ** (1 / 3))


def test_every_floor_is_split_by_shot_and_the_oracle_is_labelled():
    floors, per_window = compute_floors(hand_made())
    for name in ("median_image", "mean_image", "copy_last_frame", "motion_extrapolation", "analogue", "oracle_best_context"):
        assert floors[name]["continues"]["num_windows"] == 1 and floors[name]["cuts"]["num_windows"] == 1
    assert floors["copy_last_frame"]["continues"]["image_mae"] == pytest.approx(10 / 255)  # |50 - 60|
    assert floors["copy_last_frame"]["cuts"]["image_mae"] == pytest.approx(10 / 255)  # |70 - 60|
    assert floors["copy_last_description"]["cuts"]["chrf"] == pytest.approx(100.0)  # window 1: identical texts
    assert set(floors["analogue"]["continues"]) >= {"image_mae", "chrf", "bleu", "rouge_l"}
    assert "text_perplexity" in floors["unigram"]["cuts"]
    assert floors["oracle_best_context"]["oracle"] is True
    assert floors["cut_share"] == 0.5 and floors["cut_basis"] == "set-up labels"
    assert per_window["shot"].tolist() == ["continues", "cuts"]


def test_floor_prediction_frames_are_the_pictured_floors_as_uint8():
    prepared = hand_made()
    frames = floor_prediction_frames(prepared.test, 2)
    assert list(frames) == [f"floor_{name}" for name in PICTURED_FLOORS]
    assert frames["floor_copy_last_frame"].dtype == np.uint8
    assert np.array_equal(frames["floor_copy_last_frame"], np.asarray(prepared.test.frames[:, 3]))
    assert frames["floor_oracle_best_context"].shape == (2, 3, *SIZE)
