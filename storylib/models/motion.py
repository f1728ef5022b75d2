"""Fixed motion features of the context frames: no parameters, nothing learned.

For every pair (i, j), i < j, of the context frames, a correlation cost over integer shifts says
how frame j relates to frame i: the shift (dy, dx) that best maps frame i onto frame j (refined
to sub-pixel by a parabola through the costs beside the minimum), the cost at that shift, the
cost at no shift, and the per-channel log brightness gain mean(j) / mean(i). This is the
correlation layer of FlowNet (Dosovitskiy et al. 2015) or a PWC-Net cost volume (Sun et al.
2018) made global: one displacement per pair instead of one per pixel. Two frames of one view
give a low best cost; a cut gives a high one at every shift, which is what lets a small model see
which frames repeat and how far the camera moved between them.

The search runs at half resolution over |dx| ≤ MAX_SHIFT_X and |dy| ≤ MAX_SHIFT_Y full-resolution
pixels (the range of :mod:`storylib.classical`), comparing a central crop of frame j with frame
i moved, so every shift is scored on the same pixels.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from storylib.classical import GAIN_FLOOR, MAX_SHIFT_X, MAX_SHIFT_Y
from storylib.data.dataset import WindowSplit, make_batch
from storylib.data.windows import CONTEXT_FRAMES

FRAME_PAIRS: tuple[tuple[int, int], ...] = tuple(itertools.combinations(range(CONTEXT_FRAMES), 2))
FEATURES_PER_PAIR = 7  # dy, dx, best cost, zero-shift cost, log gain (3 channels)
# The parts of a pair's motion in the order :func:`pack_motion` stores them, with their widths.
MOTION_PARTS = {"shift": 2, "best_cost": 1, "zero_cost": 1, "log_gain": 3}
SEARCH_SCALE = 2  # the search runs on frames average-pooled by this factor


def log_gain(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-channel log(mean(after) / mean(before)) of (N, 3, H, W) images → (N, 3)."""
    return torch.log(after.mean(dim=(2, 3)).clamp_min(GAIN_FLOOR)) - torch.log(before.mean(dim=(2, 3)).clamp_min(GAIN_FLOOR))


def _parabola_offset(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset of a minimum from the costs at −1, 0, +1 (in [−0.5, 0.5])."""
    curvature = minus - 2 * centre + plus
    offset = 0.5 * (minus - plus) / curvature.clamp_min(1e-6)
    return torch.where(curvature > 1e-6, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def shift_cost_volume(before: torch.Tensor, after: torch.Tensor, max_dy: int, max_dx: int) -> torch.Tensor:
    """Mean |gain·before moved by (dy, dx) − after| on ``after``'s central crop, for every integer
    shift: (N, 3, H, W) pairs → (N, 2·max_dy+1, 2·max_dx+1); ``before`` moved by (dy, dx) means
    moved[y, x] = before[y − dy, x − dx]. The difference is taken on the channel mean of the
    gain-corrected frames (a third of the work; the gain already matched each channel)."""
    height, width = after.shape[-2:]
    gain = log_gain(before, after).exp()[..., None, None]
    corrected = (before * gain).mean(dim=1)
    crop = after.mean(dim=1)[..., max_dy : height - max_dy, max_dx : width - max_dx]
    costs = []
    for dy in range(-max_dy, max_dy + 1):
        row = []
        for dx in range(-max_dx, max_dx + 1):
            moved = corrected[..., max_dy - dy : height - max_dy - dy, max_dx - dx : width - max_dx - dx]
            row.append((moved - crop).abs().mean(dim=(1, 2)))
        costs.append(torch.stack(row, dim=1))
    return torch.stack(costs, dim=1)


def best_shift(costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum of a cost volume (N, Y, X) centred on shift 0: sub-pixel (dy, dx) (N, 2) in the
    volume's pixels, and the cost there (N,)."""
    count, rows, columns = costs.shape
    best_cost, flat = costs.flatten(1).min(dim=1)
    y, x = flat // columns, flat % columns
    index = torch.arange(count, device=costs.device)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return costs[index, yy.clamp(0, rows - 1), xx.clamp(0, columns - 1)]

    inside_y = (y > 0) & (y < rows - 1)
    inside_x = (x > 0) & (x < columns - 1)
    offset_y = torch.where(inside_y, _parabola_offset(at(y - 1, x), best_cost, at(y + 1, x)), torch.zeros_like(best_cost))
    offset_x = torch.where(inside_x, _parabola_offset(at(y, x - 1), best_cost, at(y, x + 1)), torch.zeros_like(best_cost))
    shift = torch.stack([y - rows // 2 + offset_y, x - columns // 2 + offset_x], dim=1)
    return shift, best_cost


def pair_motion(context_frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """Motion between every pair of context frames (B, F, 3, H, W) in [0, 1].

    Returns ``shift`` (B, P, 2) (dy, dx) in full-resolution pixels, ``best_cost`` and
    ``zero_cost`` (B, P) and ``log_gain`` (B, P, 3), P = len(FRAME_PAIRS).
    """
    batch = context_frames.shape[0]
    with torch.no_grad():
        small = F.avg_pool2d(context_frames.flatten(0, 1).float(), SEARCH_SCALE).view(
            batch, context_frames.shape[1], 3, *[s // SEARCH_SCALE for s in context_frames.shape[-2:]]
        )
        first = torch.stack([small[:, i] for i, _ in FRAME_PAIRS], dim=1).flatten(0, 1)
        second = torch.stack([small[:, j] for _, j in FRAME_PAIRS], dim=1).flatten(0, 1)
        max_dy = min(MAX_SHIFT_Y // SEARCH_SCALE, first.shape[-2] // 4)
        max_dx = min(MAX_SHIFT_X // SEARCH_SCALE, first.shape[-1] // 4)
        costs = shift_cost_volume(first, second, max_dy, max_dx)
        shift, best_cost = best_shift(costs)
        pairs = len(FRAME_PAIRS)
        return {
            "shift": (shift * SEARCH_SCALE).view(batch, pairs, 2),
            "best_cost": best_cost.view(batch, pairs),
            "zero_cost": costs[:, max_dy, max_dx].view(batch, pairs),
            "log_gain": log_gain(first, second).view(batch, pairs, 3),
        }


def motion_features(motion: dict[str, torch.Tensor]) -> torch.Tensor:
    """The pair motion of :func:`pair_motion` as one (B, P·FEATURES_PER_PAIR) vector, each
    feature scaled to about unit range (shifts by the search range, costs ×10, gains ×10)."""
    shift = motion["shift"] / torch.tensor([MAX_SHIFT_Y, MAX_SHIFT_X], dtype=torch.float32, device=motion["shift"].device)
    parts = [shift, 10 * motion["best_cost"].unsqueeze(-1), 10 * motion["zero_cost"].unsqueeze(-1), 10 * motion["log_gain"]]
    return torch.cat(parts, dim=-1).flatten(1)


def pack_motion(motion: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dict of :func:`pair_motion` as one (B, P, FEATURES_PER_PAIR) tensor, unscaled."""
    batch, pairs = motion["best_cost"].shape
    return torch.cat([motion[name].reshape(batch, pairs, width) for name, width in MOTION_PARTS.items()], dim=-1)


def unpack_motion(packed: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`pack_motion` undone: (B, P, FEATURES_PER_PAIR) → the dict of :func:`pair_motion`."""
    parts = dict(zip(MOTION_PARTS, packed.split(list(MOTION_PARTS.values()), dim=-1)))
    return {name: part.squeeze(-1) if MOTION_PARTS[name] == 1 else part for name, part in parts.items()}


def split_motion(split: WindowSplit, chunk: int = 64) -> torch.Tensor:
    """The packed motion of every window of ``split`` (N, P, FEATURES_PER_PAIR) on the CPU, from
    the frames exactly as :func:`storylib.data.dataset.make_batch` gives them to the model.

    Why: the features have no parameters and a window's frames do not change between epochs,
    so measuring them once per split replaces a tenth of every training step (and of every
    validation pass) by a lookup."""
    parts = [
        pack_motion(pair_motion(make_batch(split, np.arange(start, min(start + chunk, len(split))))["context_frames"]))
        for start in range(0, len(split), chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, len(FRAME_PAIRS), FEATURES_PER_PAIR)
