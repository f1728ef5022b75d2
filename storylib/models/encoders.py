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
    the tokens. Both are ``nn.MultiheadAttention`` (its parameters, its function), computed in
    a cheaper order than its forward, because only one vector per frame is kept of each:

    - tokens → cells: the mean over the real tokens of what they read. With cells
      ``c_i = P f_i + b + p_i`` (``cell_proj`` of the feature map's ``f_i``, plus a learned
      position) and keys ``W_k c_i + b_k``, a head's score is
      ``q·W_k P f_i + q·W_k p_i`` plus a term the same for every cell, which the softmax
      ignores; and the mean output ``out(mean_t Σ_i a_ti (W_v c_i + b_v))`` is
      ``out(W_v (P Σ_i ā_i f_i + b + Σ_i ā_i p_i) + b_v)`` with ``ā_i = mean_t a_ti``
      (Σ_i ā_i = 1; the projections are affine);
    - image → tokens: one query per frame, so its score ``q·(W_k s_j + b_k)`` is
      ``(W_k^T q)·s_j`` plus a constant, and its output ``W_v Σ_j a_j s_j + b_v``.

    No cell, and no key or value per cell or token, is formed: those projections were the
    largest matrix products of a training step. :meth:`plain_forward` is the definition, which
    ``tests/test_models.py`` holds this to and ``benchmarks/speed.py --parts attention`` times.
    """

    def __init__(self, text_dim: int, map_channels: int, cells: int, image_dim: int, heads: int):
        super().__init__()
        dim = heads * math.ceil(max(text_dim, 16) / heads)
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
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
        → fused (N, 2·dim) and attention weights {"text_to_image": (N,L,h·w), "image_to_text": (N,L)},
        each averaged over the heads."""
        tokens = self.token_proj(token_states)
        text_grounded, text_to_image = self.tokens_over_cells(tokens, padding, feature_maps.flatten(2).transpose(1, 2))
        attended_tokens, image_to_text = self.image_over_tokens(self.image_query(image_vectors), tokens, padding)
        fused = torch.cat([text_grounded, attended_tokens], dim=-1)
        return fused, {"text_to_image": text_to_image, "image_to_text": image_to_text}

    def tokens_over_cells(
        self, tokens: torch.Tensor, padding: torch.Tensor, cell_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``text_to_image(tokens, cells, cells)`` averaged over the real tokens (N, dim), and its
        weights (N, L, cells); ``cell_features`` (N, cells, C) are the map's f_i."""
        batch, length = tokens.shape[:2]
        w_query, w_key, _ = self.text_to_image.in_proj_weight.chunk(3)
        b_query = self.text_to_image.in_proj_bias.chunk(3)[0]  # b_k adds the same to every score
        queries = F.linear(tokens, w_query, b_query).view(batch, length, self.heads, self.head_dim)
        queries = queries / math.sqrt(self.head_dim)
        key_of_feature = (w_key @ self.cell_proj.weight).view(self.heads, self.head_dim, -1)  # W_k P
        key_of_position = (self.cell_position[0] @ w_key.T).view(-1, self.heads, self.head_dim)  # W_k p_i
        feature_queries = torch.einsum("nlhd,hdc->nlhc", queries, key_of_feature)  # P^T W_k^T q
        scores = (feature_queries.flatten(1, 2) @ cell_features.transpose(1, 2)).view(batch, length, self.heads, -1)
        scores = scores + torch.einsum("nlhd,chd->nlhc", queries, key_of_position)
        weights = torch.softmax(scores, dim=-1)  # (N,L,H,cells)
        real = (~padding).to(weights.dtype)
        mean_weights = torch.einsum("nlhc,nl->nhc", weights, real / real.sum(1, keepdim=True))  # ā per head
        pooled_cells = self.cell_proj(mean_weights @ cell_features) + mean_weights @ self.cell_position[0]
        return self._output(self.text_to_image, pooled_cells), weights.mean(dim=2)

    def image_over_tokens(
        self, image_queries: torch.Tensor, tokens: torch.Tensor, padding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_to_text(query, tokens, tokens, key_padding_mask=padding)`` for one query per
        frame (N, dim) → its output (N, dim) and weights (N, L)."""
        w_query, w_key, _ = self.image_to_text.in_proj_weight.chunk(3)
        b_query = self.image_to_text.in_proj_bias.chunk(3)[0]
        queries = F.linear(image_queries, w_query, b_query).view(-1, self.heads, self.head_dim)
        token_queries = torch.einsum("nhd,hde->nhe", queries / math.sqrt(self.head_dim),
                                     w_key.view(self.heads, self.head_dim, self.dim))  # W_k^T q
        scores = (token_queries @ tokens.transpose(1, 2)).masked_fill(padding.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (N,H,L)
        return self._output(self.image_to_text, weights @ tokens), weights.mean(dim=1)

    def plain_forward(
        self, token_states: torch.Tensor, padding: torch.Tensor, feature_maps: torch.Tensor, image_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`forward` by the definition, with ``nn.MultiheadAttention``'s own forward over
        every cell and token: what the tests and ``benchmarks/speed.py`` hold it against."""
        tokens = self.token_proj(token_states)
        cells = self.cell_proj(feature_maps.flatten(2).transpose(1, 2)) + self.cell_position
        attended_cells, text_to_image = self.text_to_image(tokens, cells, cells)
        real = (~padding).unsqueeze(-1).to(attended_cells.dtype)
        query = self.image_query(image_vectors).unsqueeze(1)
        attended_tokens, image_to_text = self.image_to_text(query, tokens, tokens, key_padding_mask=padding)
        fused = torch.cat([(attended_cells * real).sum(1) / real.sum(1), attended_tokens.squeeze(1)], dim=-1)
        return fused, {"text_to_image": text_to_image, "image_to_text": image_to_text.squeeze(1)}

    def _output(self, attention: nn.MultiheadAttention, pooled: torch.Tensor) -> torch.Tensor:
        """The attention's output from each head's weighted mean of its inputs (N, H, dim):
        ``out_proj`` of the heads' ``W_v · pooled + b_v``, concatenated."""
        _, _, w_value = attention.in_proj_weight.chunk(3)
        b_value = attention.in_proj_bias.chunk(3)[2]
        values = torch.einsum("nhe,hde->nhd", pooled, w_value.view(self.heads, self.head_dim, self.dim))
        return attention.out_proj((values + b_value.view(self.heads, self.head_dim)).flatten(1))


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
