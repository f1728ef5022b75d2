"""Cutting stories into windows, skip reasons, and the seeded split by story."""

import pytest

from storylib.data.windows import SKIP_REASONS, plan_windows, split_by_story, story_windows, window_starts


def grounded_story(count: int, texts: dict[int, str] | None = None) -> str:
    texts = texts or {}
    return "\n".join(
        f"<gdi image{n}><gdo char1>Mara</gdo> {texts.get(n, f'does thing {n}')}</gdi>" for n in range(1, count + 1)
    )


def test_first_mode_gives_one_window_of_the_first_five_frames():
    windows, reason = story_windows(0, "s0", grounded_story(7), 7, "first")
    assert reason is None and len(windows) == 1
    assert windows[0].frame_numbers == (1, 2, 3, 4, 5)


def test_sliding_mode_gives_every_run_of_five_consecutive_frames():
    windows, reason = story_windows(3, "s3", grounded_story(7), 7, "sliding")
    assert reason is None
    assert [w.frame_numbers for w in windows] == [(1, 2, 3, 4, 5), (2, 3, 4, 5, 6), (3, 4, 5, 6, 7)]
    assert {w.story_row for w in windows} == {3} and {w.story_id for w in windows} == {"s3"}
    assert window_starts(5, "sliding") == [0] and window_starts(4, "first") == []


@pytest.mark.parametrize("mode", ["first", "sliding"])
def test_target_text_is_the_target_frames_own_description(mode):
    # The published version used frame 4's text as the "frame 5" target; pin the fix.
    story = grounded_story(6, {n: f"unique words of frame {n}" for n in range(1, 7)})
    for window in story_windows(0, "s", story, 6, mode)[0]:
        target_number = window.frame_numbers[4]
        assert window.descriptions[4] == f"Mara unique words of frame {target_number}"
        assert window.descriptions[3] == f"Mara unique words of frame {target_number - 1}"
        assert window.descriptions[4] != window.descriptions[3]


def test_blocks_out_of_order_still_map_to_their_frames():
    story = "".join(f"<gdi image{n}>text {n}</gdi>" for n in (5, 3, 1, 2, 4))
    (window,), _ = story_windows(0, "s", story, 5, "first")
    assert window.descriptions == ("text 1", "text 2", "text 3", "text 4", "text 5")


@pytest.mark.parametrize(
    ("story", "images", "reason"),
    [
        (grounded_story(6), 7, "gdi_count_mismatch"),  # fewer blocks than images
        (grounded_story(6), 5, "gdi_count_mismatch"),  # more blocks than images
        ("".join(f"<gdi image{n}>t</gdi>" for n in (1, 2, 3, 4, 6)), 5, "gdi_count_mismatch"),  # N out of range
        ("".join(f"<gdi image{n}>t</gdi>" for n in (1, 1, 2, 3, 4)), 5, "gdi_count_mismatch"),  # duplicate N
        (grounded_story(4), 4, "too_few_frames"),
        ("".join(f"<gdi image{n}>{'<gdo obj1> </gdo>' if n == 3 else 't'}</gdi>" for n in range(1, 6)), 5, "empty_description"),
    ],
)
def test_skip_reasons(story, images, reason):
    assert reason in SKIP_REASONS
    assert story_windows(0, "s", story, images, "first") == ([], reason)


def test_empty_description_outside_every_window_does_not_skip_in_first_mode():
    story = grounded_story(6).replace("<gdi image6><gdo char1>Mara</gdo> does thing 6</gdi>", "<gdi image6> </gdi>")
    assert story_windows(0, "s", story, 6, "first")[1] is None
    assert story_windows(0, "s", story, 6, "sliding") == ([], "empty_description")


def test_plan_counts_skips_by_reason_and_keeps_row_order():
    ids = ["a", "b", "c", "d"]
    stories = [grounded_story(5), grounded_story(3), grounded_story(6), grounded_story(5)]
    counts = [5, 3, 7, 5]
    plan = plan_windows(ids, stories, counts, "first")
    assert [w.story_id for w in plan.windows] == ["a", "d"]
    assert plan.skip_counts() == {"gdi_count_mismatch": 1, "too_few_frames": 1, "undecodable_image": 0, "empty_description": 0}
    assert plan.story_count() == 2
    assert [w.story_id for w in plan_windows(ids, stories, counts, "first", rows=[3, 0]).windows] == ["d", "a"]


def test_split_by_story_is_disjoint_seeded_and_sized():
    ids = [f"story-{k}" for k in range(50)] + ["story-7", "story-7"]  # one id on three rows
    train_rows, val_rows = split_by_story(ids, 0.2, seed=0)
    train_ids, val_ids = {ids[r] for r in train_rows}, {ids[r] for r in val_rows}
    assert not train_ids & val_ids
    assert sorted(train_rows + val_rows) == list(range(len(ids)))
    assert len(val_ids) == 10
    assert split_by_story(ids, 0.2, seed=0) == (train_rows, val_rows)
    assert split_by_story(ids, 0.2, seed=1) != (train_rows, val_rows)
    # The split depends on the ids, not on the row order.
    reversed_ids = ids[::-1]
    assert {reversed_ids[r] for r in split_by_story(reversed_ids, 0.2, seed=0)[1]} == val_ids
    assert split_by_story(ids, 0.0, seed=0)[1] == []
