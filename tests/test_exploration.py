"""Tables and figures of the exploration notebook, on tiny synthetic stories."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest
from matplotlib.figure import Figure

from storylib.config import DataConfig
from storylib import exploration
from storylib.data.prepare import prepare_data
from storylib.data.synthetic import generate_synthetic_dataset
from storylib.data.windows import SKIP_REASONS

TINY = dict(synthetic_train_stories=10, synthetic_test_stories=5, synthetic_seed=2)


@pytest.fixture(scope="module")
def stories():
    return generate_synthetic_dataset(TINY["synthetic_train_stories"], TINY["synthetic_test_stories"], TINY["synthetic_seed"])


@pytest.fixture(scope="module")
def prepared():
    # The session's throwaway STORYLIB_CACHE (root conftest) holds this cache.
    return prepare_data(DataConfig(source="synthetic", image_height=24, image_width=40, tokenizer="trained", vocab_size=120, **TINY))


def test_frames_per_story(stories):
    series = exploration.frames_per_story(stories["train"])
    assert list(series.index) == list(stories["train"]["story_id"])
    assert series.tolist() == [len(images) for images in stories["train"].with_format("arrow")["images"].to_pylist()]
    assert series.name == "frames" and series.min() >= 5


def test_split_and_skip_tables_follow_the_summary(prepared):
    splits = exploration.split_table(prepared)
    assert list(splits.index) == ["train", "val", "test"]
    assert splits.loc["train", "windows"] == len(prepared.train) and splits.loc["test", "stories"] == 5
    assert splits.loc["train", "stories"] + splits.loc["val", "stories"] + splits.loc["train", "skipped"] + splits.loc["val", "skipped"] == 10
    skips = exploration.skip_table(prepared)
    assert list(skips.columns) == [*SKIP_REASONS, "total"]
    assert (skips["total"] == skips[list(SKIP_REASONS)].sum(axis=1)).all()


def test_description_lengths(prepared):
    table = exploration.description_length_table(prepared)
    assert list(table.index) == ["train", "val", "test"]
    assert table.loc["train", "descriptions"] == 5 * len(prepared.train)
    expected_words = sum(len(text.split()) for texts in prepared.test.descriptions for text in texts) / (5 * len(prepared.test))
    assert table.loc["test", "words_mean"] == pytest.approx(expected_words)
    assert 0.0 <= table.loc["train", "truncated_share"] <= 1.0
    assert table.loc["train", "tokens_max"] <= prepared.train.token_ids.shape[-1]


def test_vocabulary_stats(prepared):
    stats = exploration.vocabulary_stats(prepared)
    assert stats["tokenizer"] == "wordpiece-trained-120" and stats["vocab_size"] == prepared.tokenizer.vocab_size
    assert 0 < stats["train_tokens_used"] <= stats["vocab_size"]
    assert stats["unk_rate_train"] == 0.0  # trained on these very descriptions
    assert 0.0 <= stats["test_words_unseen_in_train"] <= 1.0


def test_entity_counts_on_hand_written_stories():
    split = datasets.Dataset.from_dict(
        {
            "story": [
                "<gdi image1><gdo char1>Mara</gdo> and <gdo char2 obj1>Theo's box</gdo></gdi>"
                "<gdi image2><gda char1>runs</gda> to <gdl bg1>the sea</gdl></gdi>",
                "<gdi image1><gdo char3>Ivy</gdo></gdi>",
            ]
        }
    )
    table = exploration.entity_counts(split).set_index(["kind", "tag"])
    assert table.loc[("char", "gdo"), "mentions"] == 3
    assert table.loc[("char", "gdo"), "stories"] == 2
    assert table.loc[("char", "gdo"), "ids_per_story"] == pytest.approx(1.5)
    assert table.loc[("char", "gda"), "mentions"] == 1
    assert table.loc[("obj", "gdo"), "mentions"] == 1 and table.loc[("bg", "gdl"), "mentions"] == 1


def test_entity_counts_on_synthetic_stories(stories):
    table = exploration.entity_counts(stories["train"])
    assert isinstance(table, pd.DataFrame) and "char" in set(table["kind"])


def test_plots_return_figures_with_one_panel_per_frame(stories, prepared):
    story_figure = exploration.plot_story(stories["train"], 0)
    assert isinstance(story_figure, Figure)
    assert len(story_figure.axes) == len(stories["train"][0]["images"])
    window_figure = exploration.plot_window(prepared.test, 0)
    assert isinstance(window_figure, Figure) and len(window_figure.axes) == 5
    assert window_figure.axes[4].get_title().startswith("target")
    assert window_figure.axes[4].get_xlabel().split()[0] == prepared.test.descriptions[0][4].split()[0]


def test_shot_table_counts_cuts_and_patterns(prepared):
    table = exploration.shot_table(prepared)
    assert list(table.index) == ["train", "val", "test"]
    test = prepared.test
    assert table.loc["test", "cut_share"] == pytest.approx(test.shot_cuts.mean())
    assert table.loc["test", "cut_basis"] == "set-up labels"
    patterns = [column for column in table.columns if column not in ("windows", "cut_share", "cut_basis")]
    assert table.loc["test", patterns].sum() == len(test)  # every window has its story's pattern


def test_shot_strip_titles_each_frame_with_its_setup(prepared):
    figure = exploration.plot_shot_strip(prepared.test)
    titles = [axis.get_title() for axis in figure.axes]
    first = prepared.test.patterns.index(prepared.test.patterns[0])
    assert titles[0] == f"set-up {prepared.test.setups[first][0]}"
    assert titles[4].startswith(f"target · set-up {prepared.test.setups[first][4]} · ")
    assert len(figure.axes) == 5 * len(set(prepared.test.patterns))


def test_floor_split_table_labels_the_oracle(prepared):
    from storylib.floors import compute_floors, shot_split_table

    floors, _ = compute_floors(prepared)
    table = shot_split_table(floors)
    assert "oracle_best_context (oracle, not a floor)" in table.index
    assert table.loc["copy_last_frame", "all"] == pytest.approx(round(floors["copy_last_frame"]["image_mae"], 4))
    assert table.columns[1] == f"continues ({int((~prepared.test.shot_cuts).sum())})"
