"""Cut stories into windows of 4 context frames + 1 target frame, and split stories seeded.

A window is five consecutive frames of one story: frames 1–4 are the context, frame 5 the
target, and each frame carries its *own* description (the target text is the target frame's
description, never the last context frame's). ``first`` keeps one window per story (its first
five frames); ``sliding`` keeps every run of five consecutive frames.

A story that cannot give clean windows is skipped and counted by reason (see
:data:`SKIP_REASONS`); only the frames a window uses are checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from storylib.data.parsing import gdi_blocks, parse_frame_descriptions
from storylib.data.shots import UNKNOWN, camera_setups

CONTEXT_FRAMES = 4
WINDOW_FRAMES = CONTEXT_FRAMES + 1
WINDOW_MODES = ("first", "sliding")
SKIP_REASONS = ("gdi_count_mismatch", "too_few_frames", "undecodable_image", "empty_description")


@dataclass(frozen=True)
class Window:
    """Five consecutive frames of one story; the last is the target."""

    story_row: int  # row of the story in its stories split
    story_id: str
    frame_numbers: tuple[int, ...]  # 1-based image numbers N (of <gdi imageN>)
    descriptions: tuple[str, ...]  # descriptions[i] belongs to frame_numbers[i]
    setups: tuple[str, ...] = ()  # camera set-up of each frame where the data name it, else ""
    pattern: str = UNKNOWN  # the story's shot pattern where the data name it


@dataclass
class WindowPlan:
    """The windows of one split and the stories skipped, with their reasons."""

    windows: list[Window] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (story_id, reason)

    def skip_counts(self) -> dict[str, int]:
        """Skipped stories per reason, every reason present (0 when none)."""
        counts = Counter(reason for _, reason in self.skipped)
        return {reason: counts.get(reason, 0) for reason in SKIP_REASONS}

    def story_count(self) -> int:
        """Stories that gave at least one window."""
        return len({window.story_row for window in self.windows})


def window_starts(frame_count: int, mode: str) -> list[int]:
    """0-based first-frame positions of the windows of a story with ``frame_count`` frames."""
    if mode not in WINDOW_MODES:
        raise ValueError(f"window mode {mode!r} is not one of {', '.join(WINDOW_MODES)}")
    if frame_count < WINDOW_FRAMES:
        return []
    return [0] if mode == "first" else list(range(frame_count - WINDOW_FRAMES + 1))


def story_windows(
    story_row: int, story_id: str, story: str, image_count: int, mode: str, chain_of_thought: str = ""
) -> tuple[list[Window], str | None]:
    """The windows of one story, or ``([], reason)`` when it must be skipped.

    Checks, in order: one ``<gdi imageN>`` block per image with N = 1…image_count
    (``gdi_count_mismatch``), at least five frames (``too_few_frames``), a non-empty
    description for every frame a window uses (``empty_description``). Image decoding is
    checked later, when the frames are read (``undecodable_image``).
    """
    descriptions = parse_frame_descriptions(story)
    if len(gdi_blocks(story)) != image_count or set(descriptions) != set(range(1, image_count + 1)):
        return [], "gdi_count_mismatch"
    if image_count < WINDOW_FRAMES:
        return [], "too_few_frames"
    cameras = camera_setups(chain_of_thought)
    windows = []
    for start in window_starts(image_count, mode):
        numbers = tuple(range(start + 1, start + WINDOW_FRAMES + 1))
        texts = tuple(descriptions[number] for number in numbers)
        if not all(texts):
            return [], "empty_description"
        setups = tuple(cameras.get(number, (UNKNOWN, UNKNOWN))[0] for number in numbers)
        pattern = cameras.get(numbers[-1], (UNKNOWN, UNKNOWN))[1]
        windows.append(Window(story_row, story_id, numbers, texts, setups, pattern))
    return windows, None


def plan_windows(
    story_ids: Sequence[str],
    stories: Sequence[str],
    image_counts: Sequence[int],
    mode: str,
    rows: Sequence[int] | None = None,
    chains_of_thought: Sequence[str] | None = None,
) -> WindowPlan:
    """Windows of the stories at ``rows`` (default: all), in row order, and the skips.

    ``chains_of_thought`` (one per story) give the camera set-ups where they name them."""
    plan = WindowPlan()
    for row in range(len(story_ids)) if rows is None else rows:
        chain_of_thought = chains_of_thought[row] if chains_of_thought is not None else ""
        windows, reason = story_windows(
            int(row), str(story_ids[row]), stories[row], int(image_counts[row]), mode, chain_of_thought or ""
        )
        if reason is None:
            plan.windows.extend(windows)
        else:
            plan.skipped.append((str(story_ids[row]), reason))
    return plan


def split_by_story(story_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices of the train and validation stories: a seeded split *by story id*.

    Unique ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and the first
    ``round(val_fraction × ids)`` go to validation, so no story (even one whose id appears on
    two rows) lands in both splits, and the split does not depend on row order.
    """
    unique_ids = sorted(set(map(str, story_ids)))
    shuffled = np.random.default_rng(seed).permutation(len(unique_ids))
    val_count = int(round(val_fraction * len(unique_ids)))
    val_ids = {unique_ids[i] for i in shuffled[:val_count]}
    train_rows = [row for row, story_id in enumerate(story_ids) if str(story_id) not in val_ids]
    val_rows = [row for row, story_id in enumerate(story_ids) if str(story_id) in val_ids]
    return train_rows, val_rows
