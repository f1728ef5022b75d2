"""Classical predictors of frame 5 that learn nothing: the floors a model has to beat.

All of them work on float frames in [0, 1], batched over windows:
``context_frames`` (N, 4, 3, H, W) → a prediction (N, 3, H, W).

- :func:`motion_extrapolation`: the global translation between frames 3 and 4 (exhaustive
  search over integer shifts, L1 on the overlap), applied once more to frame 4, times the
  per-channel brightness ratio mean(frame 4) / mean(frame 3). On the first synthetic data
  set (one continuous pan), this no-learning method scored MAE 0.020, well ahead of every
  model of the time.
- :func:`analogue_prediction` (the method of analogues, Lorenz 1969): find the context frame
  j ∈ {1, 2, 3} most like frame 4 and predict frame j + 1, corrected for what changed over
  the same gap. For a shot / reverse-shot window A B A B it predicts frame 3 (the A view).
- :func:`oracle_best_context`: the context frame closest to the *truth* — an oracle that peeks
  at the target, a reference for how much of frame 5 is already in the context, never a floor.

And the shot-cut flag of data whose camera set-ups are unknown: :func:`cut_by_threshold`.
"""

from __future__ import annotations

import torch

from storylib.data.windows import CONTEXT_FRAMES

MAX_SHIFT_X = 20  # pixels, at the cached resolution (125 px wide at the cpu scale)
MAX_SHIFT_Y = 6
# Mean absolute difference (pixel values in [0, 1]) between frames 4 and 5 above which a
# window counts as a shot cut when the data carry no set-up labels. On StoryReasoning at
# 60×125 the copy-last error is about 0.04 where the shot continues and 0.18 where it cuts;
# 0.10 sits between the two.
CUT_L1_THRESHOLD = 0.10
GAIN_FLOOR = 1e-3  # a black frame has no brightness ratio; never divide by less


def mean_abs(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per-window mean absolute difference of (N, 3, H, W) images → (N,)."""
    return (first - second).abs().flatten(1).mean(dim=1)


def brightness_gain(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-window, per-channel ratio mean(after) / mean(before): (N, 3, 1, 1)."""
    return (after.mean(dim=(2, 3)) / before.mean(dim=(2, 3)).clamp_min(GAIN_FLOOR))[..., None, None]


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move the content of each (3, H, W) image by its integer (dy, dx); edge pixels fill the gap.

    ``shifts`` is (N, 2) int; output[y, x] = image[clamp(y − dy), clamp(x − dx)].
    """
    height, width = images.shape[-2:]
    rows = (torch.arange(height)[None, :] - shifts[:, :1]).clamp(0, height - 1)  # (N, H)
    columns = (torch.arange(width)[None, :] - shifts[:, 1:]).clamp(0, width - 1)  # (N, W)
    gathered = images.gather(2, rows[:, None, :, None].expand(-1, images.shape[1], -1, width))
    return gathered.gather(3, columns[:, None, None, :].expand(-1, images.shape[1], height, -1))


def estimate_shift(
    before: torch.Tensor, after: torch.Tensor, max_dx: int = MAX_SHIFT_X, max_dy: int = MAX_SHIFT_Y
) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer translation (dy, dx) that best maps ``before`` onto ``after``, per window.

    Exhaustive search over |dx| ≤ max_dx, |dy| ≤ max_dy; the score is the mean absolute
    difference on the overlap after correcting ``before`` by the brightness gain.
    Returns the shifts (N, 2) int64 and their scores (N,).
    """
    height, width = before.shape[-2:]
    max_dx, max_dy = min(max_dx, width // 2), min(max_dy, height // 2)
    corrected = before * brightness_gain(before, after)
    candidates, scores = [], []
    for dy in range(-max_dy, max_dy + 1):
        for dx in range(-max_dx, max_dx + 1):
            moved = corrected[..., max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
            target = after[..., max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)]
            scores.append(mean_abs(moved, target))
            candidates.append((dy, dx))
    scores_by_shift = torch.stack(scores, dim=1)  # (N, shifts)
    best_score, best = scores_by_shift.min(dim=1)
    return torch.tensor(candidates, dtype=torch.int64)[best], best_score


def extrapolate(before: torch.Tensor, after: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """What changed from ``before`` to ``after`` (shift and light), applied once more to ``base``.

    ``base`` defaults to ``after``: plain motion extrapolation of the pair.
    """
    base = after if base is None else base
    shifts, _ = estimate_shift(before, after)
    return (shift_images(base, shifts) * brightness_gain(before, after)).clamp(0.0, 1.0)


def motion_extrapolation(context_frames: torch.Tensor) -> torch.Tensor:
    """Frame 4 moved by the shift between frames 3 and 4, times their brightness ratio."""
    return extrapolate(context_frames[:, -2], context_frames[:, -1])


def analogue_choice(context_frames: torch.Tensor) -> torch.Tensor:
    """0-based index j ∈ {0, 1, 2} of the context frame most like the last one (plain L1)."""
    last = context_frames[:, -1]
    distances = torch.stack([mean_abs(context_frames[:, j], last) for j in range(CONTEXT_FRAMES - 1)], dim=1)
    return distances.argmin(dim=1)


def analogue_prediction(context_frames: torch.Tensor, same_view_threshold: float = CUT_L1_THRESHOLD) -> torch.Tensor:
    """The method of analogues: frame j + 1 after the frame j most like frame 4, corrected.

    The pair (j, 4) spans the same gap, 4 − j steps, as (j + 1, 5), so the light changed by
    their brightness ratio; the camera moved, over that gap, as it did from frame 2j − 3 to
    frame j + 1 (the earlier appearance of the predicted view, again 4 − j steps before it),
    when that frame exists and, aligned, shows the same view (score below the threshold).
    For j = 3 this is :func:`motion_extrapolation`.
    """
    choice = analogue_choice(context_frames)
    rows = torch.arange(len(context_frames))
    analogue, successor = context_frames[rows, choice], context_frames[rows, choice + 1]
    gain = brightness_gain(analogue, context_frames[:, -1])
    earlier_index = (2 * (choice + 1) - CONTEXT_FRAMES).clamp_min(0)  # 0-based 2j − 3 (1-based)
    shifts, score = estimate_shift(context_frames[rows, earlier_index], successor)
    same_view = (2 * (choice + 1) - CONTEXT_FRAMES >= 0) & (score < same_view_threshold)
    shifts = torch.where(same_view[:, None], shifts, torch.zeros_like(shifts))
    return (shift_images(successor, shifts) * gain).clamp(0.0, 1.0)


def oracle_choice(context_frames: torch.Tensor, target_frame: torch.Tensor) -> torch.Tensor:
    """0-based index of the context frame closest (L1) to the target: it peeks at the truth."""
    distances = torch.stack([mean_abs(context_frames[:, j], target_frame) for j in range(CONTEXT_FRAMES)], dim=1)
    return distances.argmin(dim=1)


def oracle_best_context(context_frames: torch.Tensor, target_frame: torch.Tensor) -> torch.Tensor:
    """ORACLE (not a floor): the context frame closest to the truth."""
    rows = torch.arange(len(context_frames))
    return context_frames[rows, oracle_choice(context_frames, target_frame)]


def cut_by_threshold(last_context: torch.Tensor, target_frame: torch.Tensor, threshold: float = CUT_L1_THRESHOLD) -> torch.Tensor:
    """True where the shot cuts at frame 5, judged by mean |frame 5 − frame 4| > threshold."""
    return mean_abs(last_context.float(), target_frame.float()) > threshold
