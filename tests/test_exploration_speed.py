"""Notebook 01's once-only reads: the story texts kept beside the cache, one story rendered for
its figure, the floors built once in the results folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storylib.config import DataConfig
from storylib import exploration
from storylib.data.prepare import prepare_data
from storylib.data.synthetic import generate_synthetic_dataset

TINY = dict(synthetic_train_stories=10, synthetic_test_stories=5, synthetic_seed=2)
CONFIG = DataConfig(source="synthetic", image_height=24, image_width=40, tokenizer="trained", vocab_size=120, **TINY)


@pytest.fixture(scope="module")
def prepared():
    return prepare_data(CONFIG)


def test_story_summary_is_written_once_and_read_back_the_same(prepared, monkeypatch):
    path = prepared.cache_dir / exploration.STORY_SUMMARY_FILE
    path.unlink(missing_ok=True)
    stories = generate_synthetic_dataset(10, 5, 2)
    first = exploration.story_summary(CONFIG, prepared)
    assert path.is_file()
    assert first["train"]["story_id"].tolist() == list(stories["train"]["story_id"])
    assert first["train"]["story"].tolist() == list(stories["train"]["story"])
    assert exploration.frames_per_story(first["train"]).tolist() == exploration.frames_per_story(stories["train"]).tolist()
    monkeypatch.setattr("storylib.data.sources.load_stories", lambda *a, **k: pytest.fail("loaded the stories again"))
    second = exploration.story_summary(CONFIG, prepared)
    for split in ("train", "test"):
        assert second[split].to_dict() == first[split].to_dict()
    assert exploration.entity_counts(second["train"]).equals(exploration.entity_counts(stories["train"]))
    assert exploration.story_table(second).loc["test", "stories"] == 5


def test_one_rendered_story_is_the_story_of_the_whole_generation():
    alone = exploration.story_with_images(CONFIG, 1)
    whole = generate_synthetic_dataset(10, 0, 2)["train"]
    assert alone[1]["story"] == whole[1]["story"]
    rendered = [np.asarray(image) for image in alone[1]["images"]]
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(rendered, whole[1]["images"]))


def test_shared_floors_are_built_once_then_read(prepared, tmp_path, monkeypatch):
    from storylib.config import load_experiment_config

    settings = load_experiment_config("baseline", "smoke", overrides={"data": json.loads(json.dumps(CONFIG.__dict__))})
    floors = exploration.shared_floors(settings, prepared, tmp_path / "synthetic-smoke")
    assert floors["num_test_windows"] == len(prepared.test) and "median_image" in floors
    monkeypatch.setattr("storylib.experiment._write_floors", lambda *a, **k: pytest.fail("computed the floors again"))
    assert exploration.shared_floors(settings, prepared, tmp_path / "synthetic-smoke") == floors
