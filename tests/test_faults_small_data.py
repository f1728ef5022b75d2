"""Small data (issue 17): a local folder in the StoryReasoning schema whose test windows all cut
at frame 5, one where none does, and one with a single test window. A shot group without
windows gives NaN metrics and ``num_windows: 0``, never a crash (sacreBLEU's
``get_signature()`` raised on the empty group's BLEU in the text floors)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from storylib import evaluation
from storylib.config import DataConfig
from storylib.data.prepare import prepare_data
from storylib.floors import compute_floors, shot_split_table
from storylib.results.contract import IMAGE_FLOORS, IMAGE_ORACLES, TEXT_METRICS
from storylib.models import build_model
from tests.helpers_fake_data import tiny_config

HEIGHT, WIDTH = 16, 24
WORDS = ["mara", "walks", "theo", "waits", "the", "door", "opens", "light", "dims", "rain", "falls", "street"]


def photo(story: int, frame: int, cut: bool) -> bytes:
    """A smooth 48×32 picture: a story's gradient that drifts a little each frame (the shot
    continues: frame 5 differs from frame 4 by about 0.01) or, for a cut at frame 5, the
    inverted picture (about 0.4 apart)."""
    y, x = np.mgrid[0:32, 0:48]
    base = np.stack([(x * 4 + story * 37) % 200, (y * 5 + story * 11) % 200, np.full_like(x, 60 + story * 9)], -1)
    picture = (base + frame * 3).clip(0, 255).astype(np.uint8)
    if cut and frame == 5:
        picture = 255 - picture
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def story(number: int, cut: bool, prefix: str) -> dict:
    """One 5-frame story in the StoryReasoning schema (one window of the "first" mode)."""
    rng = np.random.default_rng(number)
    texts = [" ".join(rng.choice(WORDS, size=4)) for _ in range(5)]
    blocks = [f"<gdi image{n}>\n<gdo char1>Mara</gdo> {text}\n</gdi>" for n, text in enumerate(texts, start=1)]
    return {"story_id": f"{prefix}{number:03d}", "images": [{"bytes": photo(number, n, cut), "path": None}
                                                            for n in range(1, 6)],
            "frame_count": 5, "chain_of_thought": "", "story": "\n".join(blocks)}


def local_folder(folder: Path, test_cuts: list[bool]) -> Path:
    """Hub layout: data/train-00000.parquet (8 stories, half of them cutting) and data/test-00000.parquet."""
    (folder / "data").mkdir(parents=True)
    train = [story(k, cut=k % 2 == 0, prefix="s") for k in range(8)]
    test = [story(50 + k, cut=cut, prefix="t") for k, cut in enumerate(test_cuts)]
    pq.write_table(pa.Table.from_pylist(train), folder / "data" / "train-00000.parquet")
    pq.write_table(pa.Table.from_pylist(test), folder / "data" / "test-00000.parquet")
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYLIB_CACHE", str(tmp_path / "cache"))


def prepared_from(folder: Path):
    return prepare_data(DataConfig(source=str(folder), image_height=HEIGHT, image_width=WIDTH, tokenizer="trained",
                                   vocab_size=60, max_text_length=12, val_fraction=0.25))


def assert_empty_group(group: dict, metrics: tuple[str, ...]) -> None:
    assert group["num_windows"] == 0
    assert set(group) == {*metrics, "num_windows"}
    assert all(math.isnan(group[metric]) for metric in metrics), group


@pytest.mark.parametrize(("test_cuts", "empty", "full"), [
    ([True, True, True], "continues", "cuts"),        # every test window cuts at frame 5
    ([False, False, False], "cuts", "continues"),     # none does
    ([True], "continues", "cuts"),                    # a single test window
])
def test_floors_of_a_folder_with_an_empty_shot_group_are_nan_with_zero_windows(tmp_path, test_cuts, empty, full):
    prepared = prepared_from(local_folder(tmp_path / "stories", test_cuts))
    assert len(prepared.test) == len(test_cuts)
    assert prepared.test.shot_cuts.tolist() == test_cuts          # the L1 threshold sees the cuts
    assert prepared.test.cut_basis == "L1 threshold 0.10"

    floors, per_window = compute_floors(prepared)

    assert len(per_window) == len(test_cuts) and per_window["shot"].tolist() == [full] * len(test_cuts)
    for name in (*IMAGE_FLOORS, *IMAGE_ORACLES):
        assert floors[name][full]["num_windows"] == len(test_cuts)
        assert floors[name][full]["image_mae"] == pytest.approx(floors[name]["image_mae"])
    for name in ("median_image", "mean_image", "copy_last_frame", "motion_extrapolation", "oracle_best_context"):
        assert_empty_group(floors[name][empty], evaluation.IMAGE_METRICS)
    assert_empty_group(floors["analogue"][empty], (*evaluation.IMAGE_METRICS, *TEXT_METRICS))
    assert_empty_group(floors["copy_last_description"][empty], TEXT_METRICS)
    assert_empty_group(floors["unigram"][empty], ("text_perplexity",))
    for name in ("copy_last_description", "analogue"):           # the signature of the windows that scored
        assert floors[name]["bleu_signature"].startswith("nrefs:1|") and floors[name][full]["num_windows"] == len(test_cuts)
        assert not math.isnan(floors[name]["chrf"])
    assert floors["cut_share"] == float(test_cuts[0])
    table = shot_split_table(floors)
    assert list(table.columns) == ["all", f"continues ({len(test_cuts) if full == 'continues' else 0})",
                                   f"cuts ({len(test_cuts) if full == 'cuts' else 0})"]
    assert table.iloc[:, 1 if empty == "continues" else 2].isna().all()


def test_a_model_scored_on_windows_that_all_cut_gives_nan_and_zero_where_the_shot_continues(tmp_path):
    prepared = prepared_from(local_folder(tmp_path / "stories", [True, True]))
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config, prepared.tokenizer.vocab_size, prepared.test.image_size)

    metrics = evaluation.evaluate(model, prepared.test, prepared.tokenizer, config).metrics

    assert metrics["num_windows_cuts"] == 2 and metrics["num_windows_continues"] == 0
    assert all(math.isnan(metrics[f"{name}_continues"]) for name in evaluation.IMAGE_METRICS)
    assert metrics["image_mae_cuts"] == pytest.approx(metrics["image_mae"])
    assert metrics["num_test_windows"] == 2 and "num_windows" not in metrics


def test_score_texts_without_windows_is_nan_and_names_no_signature():
    corpus, per_window = evaluation.score_texts([], [])
    assert corpus["num_windows"] == 0 and corpus["bleu_signature"] is None and corpus["chrf_signature"] is None
    assert all(math.isnan(corpus[metric]) for metric in TEXT_METRICS)
    assert list(per_window.columns) == ["bleu", "chrf", "rouge_l"] and len(per_window) == 0
    scored, _ = evaluation.score_texts(["mara walks"], ["mara walks"])
    assert scored["num_windows"] == 1 and scored["chrf"] == pytest.approx(100.0)
