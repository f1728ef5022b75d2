"""Window-consistent augmentation: one random crop / flip / colour jitter per window, applied
identically to its five frames (four context frames and the target), so the motion and the
light trend between frames are untouched.

Off by default (``TrainConfig.augment``). The horizontal flip mirrors the images but not the
descriptions' "left"/"right"; enable augmentation for data whose texts do not name sides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from storylib.data.dataset import CONTEXT_MOTION

CROP_FRACTION = 0.9  # the crop keeps at least this share of each side, then is resized back
JITTER = 0.2  # brightness and contrast factors are drawn from [1 - JITTER, 1 + JITTER]


def augment_batch(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A new batch with ``context_frames`` and ``target_frame`` augmented; texts unchanged, and
    the precomputed motion of the frames dropped (the model measures the augmented frames').

    Random numbers come from ``generator`` (CPU) only, so a seeded run stays reproducible."""
    frames = torch.cat([batch["context_frames"], batch["target_frame"].unsqueeze(1)], dim=1)  # (B,5,3,H,W)
    batch_size, _, _, height, width = frames.shape
    uniform = torch.rand(batch_size, 6, generator=generator).to(frames.device)
    out = []
    for i in range(batch_size):
        scale = CROP_FRACTION + (1 - CROP_FRACTION) * float(uniform[i, 0])
        crop_h, crop_w = max(1, round(height * scale)), max(1, round(width * scale))
        top = int(float(uniform[i, 1]) * (height - crop_h + 1))
        left = int(float(uniform[i, 2]) * (width - crop_w + 1))
        window = frames[i, :, :, top : top + crop_h, left : left + crop_w]
        window = F.interpolate(window, size=(height, width), mode="bilinear", align_corners=False)
        if float(uniform[i, 3]) < 0.5:
            window = window.flip(-1)
        brightness = 1 - JITTER + 2 * JITTER * float(uniform[i, 4])
        contrast = 1 - JITTER + 2 * JITTER * float(uniform[i, 5])
        mean = window.mean(dim=(1, 2, 3), keepdim=True)
        out.append((((window - mean) * contrast + mean) * brightness).clamp(0.0, 1.0))
    augmented = torch.stack(out)
    kept = {name: value for name, value in batch.items() if name != CONTEXT_MOTION}
    return dict(kept, context_frames=augmented[:, :4], target_frame=augmented[:, 4].contiguous())


def augmentation_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The generator of one training step: a function of (seed, epoch, step), so resume is exact."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)
