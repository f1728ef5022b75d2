"""Classical predictors and the shot-cut flag on hand-made frames, with values known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storylib import classical
from storylib.data.shots import CUT_BASES, CUT_L1_THRESHOLD, cut_flags, frame_l1

HEIGHT, WIDTH = 16, 40


def texture(seed: int, width: int = WIDTH) -> torch.Tensor:
    """A smooth random RGB texture (3, HEIGHT, width) in [0.2, 0.8]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, HEIGHT // 4, width // 4, generator=generator)
    return 0.2 + 0.6 * torch.nn.functional.interpolate(coarse, size=(HEIGHT, width), mode="bilinear", align_corners=False)[0]


def panning_window(shift: tuple[int, int], gain: float) -> torch.Tensor:
    """Five frames of a circular pan: frame k+1 = frame k rolled by ``shift``, times ``gain``."""
    first = texture(0) * 0.5
    frames = [torch.roll(first, shifts=(shift[0] * k, shift[1] * k), dims=(1, 2)) * gain**k for k in range(5)]
    return torch.stack(frames)[None]  # (1, 5, 3, H, W)


def test_shift_estimate_recovers_a_known_translation_and_gain():
    window = panning_window(shift=(1, 3), gain=1.05)
    shifts, gain, same_view = classical.view_change(window[:, 2], window[:, 3])
    assert shifts.tolist() == [[1, 3]]
    assert gain.flatten().tolist() == pytest.approx([1.05] * 3, rel=1e-5)
    assert same_view.tolist() == [True]


def test_motion_extrapolation_reproduces_the_next_frame_away_from_the_revealed_strip():
    window = panning_window(shift=(1, 3), gain=1.05)
    predicted = classical.motion_extrapolation(window[:, :4])
    # The revealed strip (first row, first 3 columns) repeats the edge; everything else is exact.
    assert torch.allclose(predicted[..., 1:, 3:], window[:, 4, :, 1:, 3:], atol=1e-5)


def test_motion_extrapolation_copies_frame_four_across_a_cut():
    context = torch.stack([texture(1), texture(2), texture(3), texture(4)])[None]
    assert torch.equal(classical.motion_extrapolation(context), context[:, 3])


def test_analogue_predicts_frame_three_for_a_shot_reverse_shot_window():
    view_a, view_b = texture(10), texture(20)
    context = torch.stack([view_a, view_b, view_a, view_b])[None]  # A B A B → frame 5 is A
    assert classical.analogue_lag(context).tolist() == [2]
    assert torch.equal(classical.analogue_prediction(context), context[:, 2])


def test_analogue_finds_a_cycle_of_three():
    view_a, view_b = texture(10), texture(20)
    context = torch.stack([view_a, view_b, view_a, view_a])[None]  # A B A | A B: frame 5 is B
    assert classical.analogue_lag(context).tolist() == [3]
    assert torch.equal(classical.analogue_prediction(context), context[:, 1])


def test_oracle_picks_the_context_frame_closest_to_the_truth():
    frames = torch.stack([texture(k) for k in range(4)])[None]
    target = frames[:, 1] + 0.01
    assert classical.oracle_choice(frames, target).tolist() == [1]
    assert torch.equal(classical.oracle_best_context(frames, target), frames[:, 1])


def test_cut_flag_by_threshold_on_hand_made_windows():
    last = np.full((3, 3, 4, 4), 100, dtype=np.uint8)
    target = last.copy()
    target[1] += 20  # 20/255 = 0.078: the shot continues
    target[2] += 30  # 30/255 = 0.118: a cut
    l1 = frame_l1(last, target)
    assert l1.tolist() == pytest.approx([0.0, 20 / 255, 30 / 255])
    cuts, basis = cut_flags([("", "", "", "", "")] * 3, l1)
    assert cuts.tolist() == [False, False, True] and basis == CUT_BASES[1]
    assert 20 / 255 < CUT_L1_THRESHOLD < 30 / 255


def test_cut_flag_from_setup_labels_wins_over_the_threshold():
    cuts, basis = cut_flags([("A", "B", "A", "B", "A"), ("A", "A", "A", "A", "A")], np.array([0.0, 0.5]))
    assert cuts.tolist() == [True, False] and basis == CUT_BASES[0]


@pytest.mark.parametrize("shift", [(0, 0), (1, 3), (-2, 5), (3, -7), (-6, -20), (6, 20)])
def test_vectorised_shift_search_recovers_hand_made_shifts_like_the_reference(shift):
    """The vectorised search finds the shift that made the frame, with the reference's score."""
    wide = torch.stack([texture(seed, width=WIDTH + 48) for seed in (5, 6, 7)])  # (3, 3, H, W+48)
    before = wide[..., 24 : 24 + WIDTH]
    after = torch.roll(wide, shifts=shift, dims=(2, 3))[..., 24 : 24 + WIDTH] * 1.1
    shifts, score = classical.estimate_shift(before, after, max_dx=20, max_dy=6)
    reference_shifts, reference_score = classical.estimate_shift_reference(before, after, max_dx=20, max_dy=6)
    assert shifts.tolist() == [list(shift)] * 3
    assert torch.equal(shifts, reference_shifts)
    assert torch.allclose(score, reference_score, rtol=1e-5, atol=1e-7)


def test_vectorised_shift_search_agrees_with_the_reference_on_unrelated_frames():
    """On frames that share nothing (a cut) the minimum is arbitrary, so it is a good test
    that both searches score every shift alike, ties going to the first shift in (dy, dx) order."""
    before = torch.stack([texture(seed) for seed in range(8)])
    after = torch.stack([texture(seed + 100) for seed in range(8)])
    after[0] = before[0]  # identical frames: every score but (0, 0)'s is larger
    before[1] = after[1] = 0.5  # flat frames: every shift scores 0, the first one wins
    shifts, score = classical.estimate_shift(before, after)
    reference_shifts, reference_score = classical.estimate_shift_reference(before, after)
    assert torch.equal(shifts, reference_shifts)
    assert torch.allclose(score, reference_score, rtol=1e-5, atol=1e-7)
    assert shifts[0].tolist() == [0, 0] and shifts[1].tolist() == [-6, -20]


def test_a_repeated_shift_search_is_answered_from_the_cache(monkeypatch):
    before = torch.stack([texture(seed) for seed in range(3)])
    after = torch.roll(before, shifts=(1, 2), dims=(2, 3))
    first = classical.estimate_shift(before, after)
    monkeypatch.setattr(classical, "_search_shifts", lambda *a, **k: pytest.fail("searched again"))
    again = classical.estimate_shift(before.clone(), after.clone())   # same bytes, other tensors
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    first[0][0, 0] = 99                                               # callers cannot alter the cache
    assert classical.estimate_shift(before, after)[0][0, 0] != 99
    with pytest.raises(pytest.fail.Exception):                        # other bytes: a new search
        classical.estimate_shift(before, after * 0.5)
