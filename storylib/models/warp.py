"""The retrieve-and-warp image decoder: which earlier view returns, moved and relit.

Frame 5 of a story is nearly always a view the context has already shown: the same shot moved
on (it continues), or an earlier set-up that the film cuts back to (shot / reverse shot,
cut-away and return). So instead of painting frame 5 from z, this decoder predicts, from z and
fixed motion features, for every context frame k

- a selection logit (softmax over the four frames: which earlier view returns),
- a translation, warped with ``F.grid_sample`` (a spatial transformer,
  Jaderberg et al. 2015), and
- a per-channel brightness gain,

and returns Σ_k softmax(s)_k · gain_k · warp(frame_k, t_k). The translation and the log gain
of frame k are *gated combinations of what was measured*: coefficients over the six context
pairs' shifts and log gains (:mod:`storylib.models.motion`), plus a small residual. The head
only has to say "the camera moves as between frames 3 and 4, twice over" rather than regress
pixels, which a plain MLP head learns much less well.

The story latent z enters the head beside the motion features and the cosine similarities of
small CNN embeddings of the frames, so cross-modal attention (which changes how z is formed)
and a VAE (which samples z) can change the picture.

Untrained, the head's last layer is zero: identity warp, gain 1 and the selection on frame 4
(to 1.4·10⁻⁴), so the decoder starts as the copy-last-frame floor and training moves away from
it only where that lowers the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from storylib.config import ModelConfig
from storylib.data.windows import CONTEXT_FRAMES
from storylib.models.encoders import group_norm
from storylib.models.motion import FEATURES_PER_PAIR, FRAME_PAIRS, motion_features, pair_motion, unpack_motion

# Selection logits are SELECT_SCALE · head output + SELECT_BIAS on frame 4: untrained, frame 4
# weighs 1 − 3·e^−10 ≈ 1 − 1.4·10⁻⁴; the scale lets the head move a logit by the bias's 10 units
# in as many steps as an unscaled logit moves by 2 (bias 10 unscaled learned the retrieval ~2×
# more slowly).
SELECT_BIAS = 10.0
SELECT_SCALE = 5.0
PAIRS = len(FRAME_PAIRS)
# per context frame: selection logit, shift coefficients over the pairs, shift residual (dy, dx),
# log-gain coefficients over the pairs, log-gain residual (3 channels)
HEAD_OUTPUTS = 1 + PAIRS + 2 + PAIRS + 3
MAX_RESIDUAL_SHIFT = 4.0  # pixels
MAX_COEFFICIENT = 4.0  # |c| ≤ 4: "the motion of a pair, up to four times over"


def translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move (N, 3, H, W) images by sub-pixel ``shift`` (N, 2) = (dy, dx) pixels, bilinear, edges
    repeated: output[y, x] = image[y − dy, x − dx].

    The sampling grid is the one ``F.affine_grid`` gives for a pure translation (in [−1, 1]
    coordinates with align_corners=False a pixel is 2/W wide), built directly: a translation
    needs no matrix product per pixel.
    """
    height, width = images.shape[-2:]
    xs = (2 * torch.arange(width, dtype=images.dtype, device=images.device) + 1) / width - 1
    ys = (2 * torch.arange(height, dtype=images.dtype, device=images.device) + 1) / height - 1
    grid_x = xs[None, None, :] - (2.0 * shift[:, 1] / width)[:, None, None]
    grid_y = ys[None, :, None] - (2.0 * shift[:, 0] / height)[:, None, None]
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FrameEmbedding(nn.Module):
    """A small CNN: (N, 3, H, W) → unit vectors (N, D) whose cosine says which frames look alike."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, channels, 5, stride=2, padding=2), group_norm(channels), nn.LeakyReLU(0.1),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), group_norm(2 * channels), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * channels, dim, 3, stride=2, padding=1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(images).mean(dim=(2, 3)), dim=-1)


class WarpImageDecoder(nn.Module):
    """(z, context_frames) → frame 5: a chosen, warped and relit context frame (module docs)."""

    uses_context_motion = True  # reads the batch's precomputed motion where it has it

    def __init__(self, latent_dim: int, channels: int, hidden: int):
        super().__init__()
        self.embed = FrameEmbedding(channels, 2 * channels)
        inputs = latent_dim + PAIRS * FEATURES_PER_PAIR + PAIRS
        self.head = nn.Sequential(
            nn.Linear(inputs, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, CONTEXT_FRAMES * HEAD_OUTPUTS),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @classmethod
    def from_config(cls, config: ModelConfig, image_size: tuple[int, int]) -> "WarpImageDecoder":
        return cls(config.latent_dim, max(4, config.decoder_channels // 4), 4 * config.decoder_channels)

    def plan(
        self, z: torch.Tensor, context_frames: torch.Tensor, context_motion: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """What the decoder will do per context frame: ``weights`` (B, F) of each frame in the
        prediction, ``shift`` (B, F, 2) pixels and ``log_gain`` (B, F, 3). ``context_motion``:
        the frames' packed motion (:func:`storylib.models.motion.split_motion`), else measured here."""
        batch, frames = context_frames.shape[:2]
        motion = pair_motion(context_frames) if context_motion is None else unpack_motion(context_motion)
        embeddings = self.embed(context_frames.flatten(0, 1)).view(batch, frames, -1)
        similarity = torch.stack([(embeddings[:, i] * embeddings[:, j]).sum(-1) for i, j in FRAME_PAIRS], dim=1)
        out = self.head(torch.cat([z.float(), motion_features(motion), similarity], dim=-1)).view(batch, frames, HEAD_OUTPUTS)
        select, shift_coefficients, shift_residual, gain_coefficients, gain_residual = out.split(
            [1, PAIRS, 2, PAIRS, 3], dim=-1
        )
        shift = MAX_COEFFICIENT * torch.tanh(shift_coefficients / MAX_COEFFICIENT) @ motion["shift"]
        shift = shift + MAX_RESIDUAL_SHIFT * torch.tanh(shift_residual / MAX_RESIDUAL_SHIFT)
        log_gain = MAX_COEFFICIENT * torch.tanh(gain_coefficients / MAX_COEFFICIENT) @ motion["log_gain"] + gain_residual
        logits = SELECT_SCALE * select.squeeze(-1) + SELECT_BIAS * F.one_hot(torch.tensor(frames - 1), frames).to(select)
        return {"weights": F.softmax(logits, dim=-1), "shift": shift, "log_gain": log_gain}

    def forward(
        self, z: torch.Tensor, context_frames: torch.Tensor, context_motion: torch.Tensor | None = None
    ) -> torch.Tensor:
        plan = self.plan(z, context_frames, context_motion)
        warped = translate(context_frames.flatten(0, 1), plan["shift"].flatten(0, 1)).view_as(context_frames)
        # frames and their bilinear warps lie in [0, 1] and a gain is positive, so only the upper
        # bound of [0, 1] can bind (one comparison less, forward and backward); the weighted
        # sum as one batched matrix product rather than a product and a sum over the stack
        relit = (warped * plan["log_gain"].exp()[..., None, None]).clamp_max(1.0)
        return torch.einsum("bk,bkchw->bchw", plan["weights"], relit)
