"""The embedded synthetic data set: schema, determinism, consistency of text, boxes and images."""

from __future__ import annotations

import io
import re

import datasets
import numpy as np
import pytest
from PIL import Image

from storylib.data.shots import camera_setups
from storylib.data.synthetic import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    MAX_FRAMES,
    MIN_FRAMES,
    SHOT_PATTERN_WEIGHTS,
    SHOT_PATTERNS,
    VIEW_PHRASES,
    _encode_png,
    _simulate_story,
    generate_synthetic_dataset,
    simulate_story,
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
            assert re.search(r"<gdo char\d", body), body  # every view names whom it shows
            words = ANY_TAG.sub("", body).split()
            assert 12 <= len(words) <= 25, body


def test_chain_of_thought_has_a_section_per_frame_with_boxes_inside_the_frame(raw_stories):
    for row in raw_stories:
        sections = re.split(r"^## Image (\d+)$", row["chain_of_thought"], flags=re.MULTILINE)
        numbers = [int(number) for number in sections[1::2]]
        assert numbers == list(range(1, row["frame_count"] + 1))
        for body in sections[2::2]:
            assert "### Characters" in body and "### Objects" in body and "### Setting" in body
            assert "### Camera" in body and "| bg1 |" in body
            boxes = [tuple(map(int, box)) for box in BOX.findall(body)]
            for x1, y1, x2, y2 in boxes:
                assert 0 <= x1 < x2 <= FRAME_WIDTH and 0 <= y1 < y2 <= FRAME_HEIGHT


def test_character_box_contains_its_colour(raw_stories):
    """The box of char1 in image 1 surrounds pixels of the colour the text names (light aside)."""
    row = raw_stories[0]
    first_image = row["chain_of_thought"].split("## Image 2")[0]
    line = next(line for line in first_image.splitlines() if line.startswith("| char") and BOX.search(line))
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
            assert np.abs(current - previous).mean() > 1.0  # the world moves, the light changes
        texts = {int(number): ANY_TAG.sub("", body).strip() for number, body in GDI_BLOCK.findall(row["story"])}
        changed_texts += texts[5] != texts[4]
    assert changed_texts >= 0.8 * len(raw_stories)


def test_negative_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_train"):
        generate_synthetic_dataset(num_train=-1, num_test=0)


# ------------------------------------------------------------------ version 2: scenes told in shots


def _plans(count: int) -> list:
    """Stories simulated (not rendered) from ``count`` child seeds: cheap enough for proportions."""
    return [_simulate_story(f"s{i}", np.random.default_rng(seed)) for i, seed in enumerate(np.random.SeedSequence(11).spawn(count))]


def test_shot_patterns_occur_in_their_intended_proportions():
    stories = _plans(1500)
    shares = {name: np.mean([story.pattern == name for story in stories]) for name in SHOT_PATTERNS}
    for name, weight in zip(SHOT_PATTERNS, SHOT_PATTERN_WEIGHTS):
        assert abs(shares[name] - weight) < 0.035, (name, shares[name], weight)


def test_each_pattern_follows_its_grammar():
    for story in _plans(300):
        labels = [story.setups[index].label for index in story.sequence]
        assert 2 <= len(story.setups) <= 4
        if story.pattern == "continuous":
            assert len(set(labels)) == 1
        elif story.pattern == "shot_reverse":
            assert labels[0::2] == [labels[0]] * len(labels[0::2]) and labels[1::2] == [labels[1]] * len(labels[1::2])
            assert labels[0] != labels[1]
        elif story.pattern == "establishing":
            assert story.setups[story.sequence[0]].kind == "wide"
            assert labels[1::2] == ["A"] * len(labels[1::2]) and labels[2::2] == ["B"] * len(labels[2::2])
        elif story.pattern == "cutaway":
            away = [frame for frame, label in enumerate(labels) if label == "B"]
            assert away and all(b - a == 3 for a, b in zip(away, away[1:]))


def test_cut_share_at_frame_five_is_calibrated_to_storyreasoning():
    stories = [story for story in _plans(1500)]
    cuts = np.mean([story.sequence[3] != story.sequence[4] for story in stories])
    assert 0.75 <= cuts <= 0.90  # StoryReasoning: about 0.85


def test_setup_labels_agree_with_the_rendered_frames():
    """A frame is closer to the previous frame of its own set-up than to any frame of another."""
    checked = 0
    for seed in np.random.SeedSequence(5).spawn(12):
        story, frames = simulate_story("s", seed)
        frames = frames.astype(np.float32)
        for frame in range(2, story.num_frames):
            own = [k for k in range(frame) if story.sequence[k] == story.sequence[frame]]
            other = [k for k in range(max(0, frame - 2), frame) if story.sequence[k] != story.sequence[frame]]
            if own and other:
                same = np.abs(frames[frame] - frames[own[-1]]).mean()
                assert all(same < np.abs(frames[frame] - frames[k]).mean() for k in other), (story.pattern, frame)
                checked += 1
    assert checked >= 20


def test_description_names_the_view_of_its_camera_table(raw_stories):
    phrases = {kind: [p.split("{")[0].strip().lower() or p.split("}")[-1].strip(". ").lower() for p in options] for kind, options in VIEW_PHRASES.items()}
    for row in raw_stories:
        cameras = camera_setups(row["chain_of_thought"])
        for number, body in GDI_BLOCK.findall(row["story"]):
            text = ANY_TAG.sub("", body).strip().lower()
            view = next(line for line in row["chain_of_thought"].split(f"## Image {number}\n")[1].splitlines() if line.startswith(f"| {cameras[int(number)][0]} |"))
            kind = view.split("|")[2].strip()
            assert any(phrase and phrase in text for phrase in phrases[kind]), (kind, text)


def test_generator_version_is_part_of_the_cache_key(monkeypatch):
    import storylib.data.synthetic as synthetic
    from storylib.config import DataConfig
    from storylib.data.cache import cache_key, cache_key_inputs
    from storylib.data.sources import source_identity

    config = DataConfig(source="synthetic")
    before = cache_key(cache_key_inputs(config, source_identity("synthetic", config), "trained"))
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", "999")
    after = cache_key(cache_key_inputs(config, source_identity("synthetic", config), "trained"))
    assert before != after
