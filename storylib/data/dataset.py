"""Prepared windows in memory-mapped arrays, and the batches every model consumes.

The batch dict is the one contract between data and models:

- ``context_frames``   float32 (B, 4, 3, H, W) in [0, 1]
- ``target_frame``     float32 (B, 3, H, W) in [0, 1]
- ``context_text_ids`` int64 (B, 4, L), L = the longest context description of the batch
- ``target_text_ids``  int64 (B, T), bos … eos, 0-padded, T = the longest target of the batch
- ``window_index``     int64 (B,), index into the split
- ``context_motion``   float32 (B, 6, 7), only where the split holds it: the fixed motion
  features of the context frames' pairs (:mod:`storylib.models.motion`), computed once per
  split by the model that reads them (:meth:`StoryPredictor.precompute`) instead of every step

Batches only slice cached arrays: no image decoding or tokenising happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from storylib.data.tokenizer import TextTokenizer
from storylib.data.windows import CONTEXT_FRAMES

# The batch key of the precomputed motion features (see the module docstring): a function of the
# context frames, so whatever changes the frames (augmentation) drops it.
CONTEXT_MOTION = "context_motion"


@dataclass
class WindowSplit:
    """The windows of one split; index 4 along the frame axis is always the target."""

    name: str  # "train" | "val" | "test"
    frames: np.ndarray  # uint8 (N, 5, 3, H, W), memory-mapped
    token_ids: np.ndarray  # int32 (N, 5, L), 0-padded
    story_ids: list[str]  # (N,)
    frame_numbers: np.ndarray  # int (N, 5): 1-based image numbers N of the gdi blocks used
    descriptions: list[list[str]]  # N x 5 plain descriptions; [i][4] is the target's
    # Shot structure (storylib.data.shots): per window, whether the shot cuts at frame 5, what
    # that flag rests on, the set-up of each frame and the story's shot pattern ("" unknown).
    shot_cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    cut_basis: str = ""
    setups: list[tuple[str, ...]] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    # Per-window tensors (N, ...) computed once from the frames by a model's parameter-free parts
    # (CONTEXT_MOTION); make_batch adds each one's rows to the batch under its name.
    precomputed: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def head(self, n: int) -> "WindowSplit":
        """The first ``n`` windows (``n <= 0`` → all), sharing the memory-mapped arrays."""
        if n <= 0 or n >= len(self):
            return self
        return WindowSplit(
            name=self.name,
            frames=self.frames[:n],
            token_ids=self.token_ids[:n],
            story_ids=list(self.story_ids[:n]),
            frame_numbers=self.frame_numbers[:n],
            descriptions=[list(d) for d in self.descriptions[:n]],
            shot_cuts=self.shot_cuts[:n],
            cut_basis=self.cut_basis,
            setups=list(self.setups[:n]),
            patterns=list(self.patterns[:n]),
            precomputed={name: values[:n] for name, values in self.precomputed.items()},
        )

    def shot_groups(self) -> dict[str, np.ndarray]:
        """Window indices where the shot continues at frame 5 and where it cuts."""
        cuts = np.asarray(self.shot_cuts, dtype=bool)
        if len(cuts) != len(self):
            return {}
        return {"continues": np.flatnonzero(~cuts), "cuts": np.flatnonzero(cuts)}

    def pattern_groups(self) -> dict[str, np.ndarray]:
        """Window indices of each shot pattern the split's stories follow (continuous, shot /
        reverse shot, …), in sorted order; nothing when the data do not name patterns."""
        if len(self.patterns) != len(self):
            return {}
        labels = np.asarray(self.patterns, dtype=object)
        return {name: np.flatnonzero(labels == name) for name in sorted(set(self.patterns)) if name}

    def window_groups(self) -> dict[str, np.ndarray]:
        """Every group the image metrics are split by: the shot groups, then the patterns."""
        return {**self.shot_groups(), **self.pattern_groups()}

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return int(self.frames.shape[-2]), int(self.frames.shape[-1])


@dataclass
class PreparedData:
    """Everything a run needs from the data layer."""

    train: WindowSplit
    val: WindowSplit
    test: WindowSplit
    tokenizer: TextTokenizer
    source: str  # concrete source name: "synthetic", "storyreasoning" or the folder path
    summary: dict = field(default_factory=dict)
    cache_dir: Path = Path()

    def splits(self) -> dict[str, WindowSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}


def shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch generator that depends on (seed, epoch) only, so a resumed run sees the same order."""
    mixed = int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(mixed & 0x7FFF_FFFF_FFFF_FFFF)


def window_order(length: int, shuffle: bool, seed: int = 0, epoch: int = 0) -> torch.Tensor:
    """The window indices of one epoch: 0…length-1, or a permutation seeded by (seed, epoch)."""
    if not shuffle:
        return torch.arange(length)
    return torch.randperm(length, generator=shuffle_generator(seed, epoch))


def make_batch(split: WindowSplit, indices: np.ndarray | list[int], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The batch of the windows at ``indices`` (see the module docstring for the contract)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    # Reading sorted rows is kinder to the memory map; the batch keeps the requested order.
    order = np.argsort(indices, kind="stable")
    rows = indices[order]
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    frames = torch.from_numpy(np.ascontiguousarray(split.frames[rows][restore]))
    tokens = np.asarray(split.token_ids[rows][restore])
    context_ids = trim_padding(tokens[:, :CONTEXT_FRAMES])
    target_ids = trim_padding(tokens[:, CONTEXT_FRAMES])
    frames = frames.to(device).float().div_(255.0)  # move uint8, convert on the device
    batch = {
        "context_frames": frames[:, :CONTEXT_FRAMES],
        "target_frame": frames[:, CONTEXT_FRAMES].contiguous(),
        "context_text_ids": torch.from_numpy(context_ids.astype(np.int64)).to(device),
        "target_text_ids": torch.from_numpy(target_ids.astype(np.int64)).to(device),
        "window_index": torch.from_numpy(indices.astype(np.int64)).to(device),
    }
    for name, values in split.precomputed.items():
        batch[name] = values[torch.from_numpy(indices)].to(device)
    return batch


def trim_padding(token_ids: np.ndarray) -> np.ndarray:
    """``token_ids`` (..., L) cut after the last column that holds a real token anywhere (at
    least one column is kept).

    Why: the cache pads every description to ``max_text_length`` (120), and the text encoder
    and decoder cost grows with L. Trailing padding changes no number: the LSTMs are
    unidirectional and the encoder gathers the state at each text's last real token, attention
    masks padded keys, and the losses ignore padded targets (``tests/test_trimming.py``). The
    context and the target are trimmed apart, each to its own longest text.
    """
    real_columns = np.flatnonzero((token_ids != 0).reshape(-1, token_ids.shape[-1]).any(axis=0))
    length = int(real_columns[-1]) + 1 if real_columns.size else 1
    return np.ascontiguousarray(token_ids[..., :length])


def iterate_batches(
    split: WindowSplit,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    device: str | torch.device = "cpu",
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``split`` in order, or shuffled by (seed, epoch); the last batch may be smaller."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = window_order(len(split), shuffle, seed, epoch).numpy()
    for start in range(0, len(order), batch_size):
        yield make_batch(split, order[start : start + batch_size], device)
