"""Source resolution, the offline hub error, and the round trip through a local parquet folder."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from storylib.config import DataConfig
from storylib.data import sources
from storylib.data.prepare import prepare_data
from storylib.data.sources import DataSourceError, load_stories, resolve_source, source_label
from storylib.data.synthetic import generate_synthetic_dataset

TINY = dict(synthetic_train_stories=10, synthetic_test_stories=5, synthetic_seed=4)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any socket connect fails the test: nothing here may touch the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    sources._REACHABILITY.clear()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYLIB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_stories():
    return generate_synthetic_dataset(TINY["synthetic_train_stories"], TINY["synthetic_test_stories"], TINY["synthetic_seed"])


@pytest.fixture
def local_copy(tmp_path, tiny_stories):
    """The tiny synthetic stories written as on the hub: data/train-*.parquet, data/test-*.parquet."""
    folder = tmp_path / "story copy"
    (folder / "data").mkdir(parents=True)
    tiny_stories["train"].to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    tiny_stories["test"].to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    return folder


def test_named_sources_pass_through_and_labels():
    assert resolve_source("synthetic") == "synthetic"
    assert resolve_source("storyreasoning") == "storyreasoning"
    assert source_label("synthetic") == "synthetic" and source_label("storyreasoning") == "storyreasoning"
    assert source_label("/some/where/My Stories") == "local-My-Stories"


def test_auto_offline_falls_back_to_synthetic_with_a_notice(monkeypatch, capsys):
    monkeypatch.setattr(sources, "hub_dataset_cached", lambda name=sources.HUB_DATASET: False)
    assert resolve_source("auto") == "synthetic"
    notice = capsys.readouterr().err
    assert "synthetic" in notice and "offline" in notice


def test_auto_uses_the_real_data_when_cached(monkeypatch):
    monkeypatch.setattr(sources, "hub_dataset_cached", lambda name=sources.HUB_DATASET: True)
    assert resolve_source("auto") == "storyreasoning"


def test_reachability_is_skipped_when_offline_and_bounded_otherwise(monkeypatch):
    assert sources.hub_reachable() is False  # conftest sets the offline switches: no connect at all
    for name in sources.OFFLINE_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    attempts = []

    def unreachable(address, timeout):
        attempts.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert sources.hub_reachable(timeout=0.5) is False
    assert sources.hub_reachable(timeout=0.5) is False  # remembered: one attempt only
    assert attempts == [(("huggingface.co", 443), 0.5)]


def test_hub_unavailable_is_one_clear_paragraph(monkeypatch):
    monkeypatch.setattr(sources, "hub_dataset_cached", lambda name=sources.HUB_DATASET: False)
    with pytest.raises(DataSourceError) as caught:
        load_stories(DataConfig(source="storyreasoning"))
    message = str(caught.value)
    assert "\n" not in message and "--data synthetic" in message and "local folder" in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_hub_failure_inside_datasets_becomes_the_same_paragraph(monkeypatch):
    import datasets

    monkeypatch.setattr(sources, "hub_dataset_cached", lambda name=sources.HUB_DATASET: True)

    def broken_load(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'daniel3303/StoryReasoning'\nlong traceback text")

    monkeypatch.setattr(datasets, "load_dataset", broken_load)
    with pytest.raises(DataSourceError, match="ConnectionError: Couldn't reach") as caught:
        load_stories(DataConfig(source="storyreasoning"))
    assert "long traceback text" not in str(caught.value) and "--data synthetic" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback wall


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataSourceError, match="neither one of auto, storyreasoning, synthetic nor an existing folder"):
        resolve_source(str(tmp_path / "missing"))
    with pytest.raises(DataSourceError, match=r"data/train-\*\.parquet"):
        load_stories(DataConfig(source=str(tmp_path)))


def test_synthetic_source_uses_the_configured_sizes(tiny_stories):
    stories, source = load_stories(DataConfig(source="synthetic", **TINY))
    assert source == "synthetic"
    assert (len(stories["train"]), len(stories["test"])) == (10, 5)
    assert list(stories["train"]["story_id"]) == list(tiny_stories["train"]["story_id"])


def test_local_folder_round_trip_gives_the_same_stories(cache, local_copy, tiny_stories):
    stories, source = load_stories(DataConfig(source=str(local_copy)))
    assert source == str(local_copy)
    for split in ("train", "test"):
        assert list(stories[split]["story_id"]) == list(tiny_stories[split]["story_id"])
        assert list(stories[split]["story"]) == list(tiny_stories[split]["story"])
    assert stories["train"].features["images"] == tiny_stories["train"].features["images"]


def test_local_folder_round_trip_gives_the_same_windows(cache, local_copy):
    options = dict(image_height=16, image_width=24, tokenizer="trained", vocab_size=100, max_text_length=24, **TINY)
    from_generator = prepare_data(DataConfig(source="synthetic", **options))
    from_folder = prepare_data(DataConfig(source=str(local_copy), **options))
    assert from_folder.source == str(local_copy)
    assert from_folder.cache_dir.name.startswith("local-story-copy-")
    assert from_folder.cache_dir != from_generator.cache_dir
    assert from_folder.summary["splits"] == from_generator.summary["splits"]
    for name, split in from_generator.splits().items():
        other = from_folder.splits()[name]
        assert other.story_ids == split.story_ids and other.descriptions == split.descriptions
        np.testing.assert_array_equal(other.frame_numbers, split.frame_numbers)
        np.testing.assert_array_equal(other.frames, split.frames)
        np.testing.assert_array_equal(other.token_ids, split.token_ids)
