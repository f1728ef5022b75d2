"""Encoders of :class:`storylib.models.StoryPredictor`: frames, descriptions and the story.

Read top to bottom: a conv backbone turns one frame into a feature map; two of them
("content" for each frame, "context" for the story's mean context image) give a per-frame image
vector; an LSTM gives each description's token states and last state; optional cross-modal
attention lets tokens look at image cells and the image look back at the tokens; a GRU with
additive (Bahdanau) attention over the four frames gives the story summary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from storylib.data.tokenizer import PAD_ID


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups where the channel count allows, else one group (LayerNorm-like)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class ConvBackbone(nn.Module):
    """Conv(3→c1,k7,s2) → Conv(c1→c2,k5,s2) → Conv(c2→c3,k3,s2), each with GroupNorm + LeakyReLU(0.1)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        kernels = [7, 5] + [3] * max(0, len(channels) - 2)
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, kernel in zip(channels, kernels):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2),
                group_norm(out_channels),
                nn.LeakyReLU(0.1),
            ]
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N,3,H,W) -> (N,C,h,w)
        return self.layers(images)


def feature_map_shape(backbone: ConvBackbone, image_size: tuple[int, int]) -> tuple[int, int, int]:
    """(C, h, w) of the backbone's output for one ``image_size`` frame."""
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, *image_size))
    return tuple(out.shape[1:])  # type: ignore[return-value]


class FrameImageEncoder(nn.Module):
    """Per-frame image vectors from a "content" backbone (the frame) and a "context" backbone
    (the per-pixel mean of the story's four context frames), concatenated and projected."""

    def __init__(self, channels: list[int], image_size: tuple[int, int], feature_dim: int):
        super().__init__()
        self.content = ConvBackbone(channels)
        self.context = ConvBackbone(channels)
        self.map_shape = feature_map_shape(self.content, image_size)
        flat = math.prod(self.map_shape)
        self.content_proj = nn.Linear(flat, feature_dim)
        self.context_proj = nn.Linear(flat, feature_dim)
        self.fuse = nn.Sequential(nn.Linear(2 * feature_dim, feature_dim), nn.LeakyReLU(0.1))

    def forward(self, context_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,F,3,H,W) → frame vectors (B,F,D) and content feature maps (B*F,C,h,w)."""
        batch, frames = context_frames.shape[:2]
        maps = self.content(context_frames.flatten(0, 1))
        content = self.content_proj(maps.flatten(1)).view(batch, frames, -1)
        story_mean = self.context(context_frames.mean(dim=1))
        context = self.context_proj(story_mean.flatten(1)).unsqueeze(1).expand_as(content)
        return self.fuse(torch.cat([content, context], dim=-1)), maps


class TextEncoder(nn.Module):
    """Embedding → LSTM; returns every token state and the state at the last real token.

    The LSTM is unidirectional, so the state at position ``length - 1`` never sees the padding
    after it: gathering there is exactly what packing would give, without the packing cost.
    """

    def __init__(self, embedding: nn.Embedding, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding.embedding_dim, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )

    def forward(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N,L) ids → token states (N,L,H), last state (N,H), padding mask (N,L) True at pads."""
        padding = token_ids == PAD_ID
        lengths = (~padding).sum(dim=1).clamp(min=1)
        states, _ = self.lstm(self.dropout(self.embedding(token_ids)))
        last = states.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.size(-1))).squeeze(1)
        # a text of only padding still needs one key for attention: keep position 0 visible
        padding = padding.clone()
        padding[:, 0] = False
        return states, last, padding


class CrossModalAttention(nn.Module):
    """Text tokens attend over the frame's spatial cells; the frame's summary attends back over
    the tokens (``nn.MultiheadAttention`` with ``key_padding_mask`` for the text padding)."""

    def __init__(self, text_dim: int, map_channels: int, cells: int, image_dim: int, heads: int):
        super().__init__()
        dim = heads * math.ceil(max(text_dim, 16) / heads)
        self.dim = dim
        self.token_proj = nn.Linear(text_dim, dim)
        self.cell_proj = nn.Linear(map_channels, dim)
        self.cell_position = nn.Parameter(torch.zeros(1, cells, dim))
        self.image_query = nn.Linear(image_dim, dim)
        self.text_to_image = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.image_to_text = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(
        self, token_states: torch.Tensor, padding: torch.Tensor, feature_maps: torch.Tensor, image_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """token_states (N,L,T), padding (N,L), feature_maps (N,C,h,w), image_vectors (N,D)
        → fused (N, 2·dim) and attention weights {"text_to_image": (N,L,h·w), "image_to_text": (N,L)}."""
        tokens = self.token_proj(token_states)
        cells = self.cell_proj(feature_maps.flatten(2).transpose(1, 2)) + self.cell_position
        attended_cells, text_to_image = self.text_to_image(tokens, cells, cells)
        real = (~padding).unsqueeze(-1).to(attended_cells.dtype)
        text_grounded = (attended_cells * real).sum(1) / real.sum(1)
        query = self.image_query(image_vectors).unsqueeze(1)
        attended_tokens, image_to_text = self.image_to_text(query, tokens, tokens, key_padding_mask=padding)
        fused = torch.cat([text_grounded, attended_tokens.squeeze(1)], dim=-1)
        return fused, {"text_to_image": text_to_image, "image_to_text": image_to_text.squeeze(1)}


class AdditiveAttention(nn.Module):
    """Bahdanau attention: score_t = v · tanh(W o_t + U q)."""

    def __init__(self, dim: int):
        super().__init__()
        self.keys = nn.Linear(dim, dim, bias=False)
        self.query = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, outputs: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """outputs (B,F,D), query (B,D) → context (B,D), weights (B,F)."""
        scores = self.score(torch.tanh(self.keys(outputs) + self.query(query).unsqueeze(1))).squeeze(-1)
        weights = F.softmax(scores, dim=-1)
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1), weights


class StoryEncoder(nn.Module):
    """GRU over the per-frame vectors + additive attention → [h_last, context] (B, 2·G)."""

    def __init__(self, frame_dim: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(frame_dim, hidden, batch_first=True)
        self.attention = AdditiveAttention(hidden)
        self.out_dim = 2 * hidden

    def forward(self, frame_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, _ = self.gru(frame_vectors)
        last = outputs[:, -1]
        context, weights = self.attention(outputs, last)
        return torch.cat([last, context], dim=-1), weights
