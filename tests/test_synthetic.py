"""The embedded synthetic data set: schema, determinism, consistency of text, boxes and images."""

from __future__ import annotations

import io
import re

import datasets
import numpy as np
import pytest
from PIL import Image

from storylib.data.synthetic import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    MAX_FRAMES,
    MIN_FRAMES,
    _encode_png,
    generate_synthetic_dataset,
)

GDI_BLOCK = re.compile(r"<gdi image(\d+)>(.*?)</gdi>", re.DOTALL)
OPEN_TAG = re.compile(r"<(gd[oal])( [a-z]+\d+)+>")
CLOSE_TAG = re.compile(r"</(gd[oal])>")
ANY_TAG = re.compile(r"</?gd[ioal][^>]*>")
BOX = re.compile(r"\| (\d+),(\d+),(\d+),(\d+) \|")


@pytest.fixture(scope="module")
def stories() -> datasets.DatasetDict:
    return generate_synthetic_dataset(num_train=6, num_test=4, seed=3)


@pytest.fixture(scope="module")
def raw_stories(stories) -> list[dict]:
    """Every story of both splits, images left as PNG bytes."""
    raw_feature = datasets.Sequence(datasets.Image(decode=False))
    return [row for split in stories.values() for row in split.cast_column("images", raw_feature)]


def decode(image: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"))


def test_splits_sizes_and_features_match_storyreasoning(stories):
    assert set(stories) == {"train", "test"}
    assert (stories["train"].num_rows, stories["test"].num_rows) == (6, 4)
    expected = datasets.Features(
        {
            "story_id": datasets.Value("string"),
            "images": datasets.Sequence(datasets.Image()),
            "frame_count": datasets.Value("int32"),
            "chain_of_thought": datasets.Value("string"),
            "story": datasets.Value("string"),
        }
    )
    for split in stories.values():
        assert split.features == expected


def test_images_are_png_bytes_of_rgb_frames(raw_stories):
    for row in raw_stories:
        for image in row["images"]:
            assert image["path"] is None
            assert image["bytes"].startswith(b"\x89PNG\r\n\x1a\n")
            with Image.open(io.BytesIO(image["bytes"])) as decoded:
                assert decoded.format == "PNG"
                assert decoded.mode == "RGB"
                assert decoded.size == (FRAME_WIDTH, FRAME_HEIGHT)


def test_decoded_feature_gives_pil_images(stories):
    first = stories["test"][0]["images"][0]
    assert isinstance(first, Image.Image) and first.size == (250, 120)


def test_png_encoder_round_trips_exactly():
    frame = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(_encode_png(frame)))), frame)


def test_frame_count_matches_images_and_gdi_blocks(raw_stories):
    for row in raw_stories:
        numbers = [int(number) for number, _ in GDI_BLOCK.findall(row["story"])]
        assert MIN_FRAMES <= row["frame_count"] <= MAX_FRAMES
        assert row["frame_count"] == len(row["images"])
        assert numbers == list(range(1, row["frame_count"] + 1))


def test_story_ids_unique_and_named_by_split(stories):
    ids = list(stories["train"]["story_id"]) + list(stories["test"]["story_id"])
    assert len(set(ids)) == len(ids)
    assert list(stories["train"]["story_id"])[:2] == ["syn-train-00000", "syn-train-00001"]
    assert list(stories["test"]["story_id"])[3] == "syn-test-00003"


def test_same_seed_gives_identical_text_and_image_bytes(raw_stories):
    again = generate_synthetic_dataset(num_train=6, num_test=4, seed=3)
    raw_feature = datasets.Sequence(datasets.Image(decode=False))
    rows = [row for split in again.values() for row in split.cast_column("images", raw_feature)]
    assert [row["story"] for row in rows] == [row["story"] for row in raw_stories]
    assert [row["chain_of_thought"] for row in rows] == [row["chain_of_thought"] for row in raw_stories]
    assert [[image["bytes"] for image in row["images"]] for row in rows] == [
        [image["bytes"] for image in row["images"]] for row in raw_stories
    ]


def test_different_seed_gives_different_stories(stories):
    other = generate_synthetic_dataset(num_train=6, num_test=4, seed=4)
    assert list(other["train"]["story"]) != list(stories["train"]["story"])
    assert list(other["test"]["story"]) != list(stories["test"]["story"])


def test_train_and_test_differ_and_stories_do_not_depend_on_split_size(stories):
    assert list(stories["train"]["story"])[:4] != list(stories["test"]["story"])
    smaller = generate_synthetic_dataset(num_train=2, num_test=1, seed=3)
    assert list(smaller["train"]["story"]) == list(stories["train"]["story"])[:2]
    assert list(smaller["test"]["story"]) == list(stories["test"]["story"])[:1]


def test_every_gdi_block_has_balanced_tags_and_a_short_description(raw_stories):
    for row in raw_stories:
        for _, body in GDI_BLOCK.findall(row["story"]):
            opened = [kind for kind, _ in OPEN_TAG.findall(body)]
            closed = CLOSE_TAG.findall(body)
            assert opened == closed, body  # properly nested, never overlapping: each closes before the next opens
            assert re.fullmatch(r"([^<]*<(gd[oal])[^>]*>[^<]*</\2>)*[^<]*", body), body
            assert "gdo char1" in body
            words = ANY_TAG.sub("", body).split()
            assert 12 <= len(words) <= 25, body


def test_chain_of_thought_has_a_section_per_frame_with_boxes_inside_the_frame(raw_stories):
    for row in raw_stories:
        sections = re.split(r"^## Image (\d+)$", row["chain_of_thought"], flags=re.MULTILINE)
        numbers = [int(number) for number in sections[1::2]]
        assert numbers == list(range(1, row["frame_count"] + 1))
        for body in sections[2::2]:
            assert "### Characters" in body and "### Objects" in body and "### Setting" in body
            assert "| char1 |" in body and "| bg1 |" in body
            boxes = [tuple(map(int, box)) for box in BOX.findall(body)]
            assert boxes, body
            for x1, y1, x2, y2 in boxes:
                assert 0 <= x1 < x2 <= FRAME_WIDTH and 0 <= y1 < y2 <= FRAME_HEIGHT


def test_character_box_contains_its_colour(raw_stories):
    """The box of char1 in image 1 surrounds pixels of the colour the text names (light aside)."""
    row = raw_stories[0]
    line = next(line for line in row["chain_of_thought"].splitlines() if line.startswith("| char1 |"))
    x1, y1, x2, y2 = map(int, BOX.search(line).groups())
    frame = decode(row["images"][0]).astype(np.int16)
    centre = frame[(y1 + y2) // 2, (x1 + x2) // 2]
    assert np.abs(frame[y1:y2, x1:x2] - centre).sum(axis=-1).min() == 0
    assert (np.abs(frame - centre).sum(axis=-1) < 6)[y1 - 3 : y2 + 3, x1 - 3 : x2 + 3].sum() >= 0.9 * (
        np.abs(frame - centre).sum(axis=-1) < 6
    ).sum()


def test_consecutive_frames_differ_and_fifth_text_is_not_a_copy(raw_stories):
    changed_texts = 0
    for row in raw_stories:
        frames = [decode(image).astype(np.int16) for image in row["images"]]
        for previous, current in zip(frames, frames[1:]):
            assert np.abs(current - previous).mean() > 2.0  # the camera pans, the light changes
        texts = {int(number): ANY_TAG.sub("", body).strip() for number, body in GDI_BLOCK.findall(row["story"])}
        changed_texts += texts[5] != texts[4]
    assert changed_texts >= 0.8 * len(raw_stories)


def test_negative_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_train"):
        generate_synthetic_dataset(num_train=-1, num_test=0)
