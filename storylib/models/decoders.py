"""Decoders of :class:`storylib.models.StoryPredictor`: images and text from the story latent z.

Every decoder is named in :mod:`storylib.models.registry` and built by its ``from_config``
from the model config (and the image size, or the shared embedding).

Image decoders map ``(z, context_frames) → frame`` in [0, 1]:

- :class:`ConvImageDecoder` decodes from z alone (Linear → 3 ConvTranspose → sigmoid);
- :class:`ResidualUNetDecoder` predicts last context frame + a decoded change from a small
  U-Net over the four stacked context frames, conditioned on z by FiLM at the bottleneck;
- :class:`storylib.models.warp.WarpImageDecoder` retrieves a context frame and warps it.

Text decoders map ``(input_ids, z, memory) → scores (B,T,V)`` with an explicit recurrent
``state`` so that teacher forcing and greedy generation run through the same code:

- :class:`LSTMTextDecoder`: an LSTM initialised from z, returning vocabulary logits;
- :class:`CopyTextDecoder`: a pointer-generator with coverage (See et al., 2017, "Get To The
  Point") that mixes the vocabulary distribution with a copy distribution over the context
  descriptions' tokens, returning log-probabilities of the mixture.

Both return ``(scores, state, coverage_penalty)``; the penalty (B,T) is None for the LSTM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from storylib.config import ModelConfig
from storylib.data.windows import CONTEXT_FRAMES
from storylib.models.encoders import PAD_ID, group_norm


def _crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop to ``size`` when the decoded map is larger (it is, by construction), else resize."""
    height, width = size
    if images.shape[-2] >= height and images.shape[-1] >= width:
        return images[..., :height, :width]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


class ConvImageDecoder(nn.Module):
    """Linear(z → C×⌈H/8⌉×⌈W/8⌉) → 3 × ConvTranspose(k4, s2) → sigmoid → cropped to H×W."""

    def __init__(self, latent_dim: int, channels: int, image_size: tuple[int, int]):
        super().__init__()
        self.image_size = image_size
        self.start_shape = (channels, math.ceil(image_size[0] / 8), math.ceil(image_size[1] / 8))
        half, quarter = max(channels // 2, 4), max(channels // 4, 4)
        self.project = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start_shape)), nn.LeakyReLU(0.1))
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(channels, half, 4, stride=2, padding=1),
            group_norm(half),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(half, quarter, 4, stride=2, padding=1),
            group_norm(quarter),
            nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(quarter, 3, 4, stride=2, padding=1),
        )

    @classmethod
    def from_config(cls, config: ModelConfig, image_size: tuple[int, int]) -> "ConvImageDecoder":
        return cls(config.latent_dim, config.decoder_channels, image_size)

    def forward(self, z: torch.Tensor, context_frames: torch.Tensor | None = None) -> torch.Tensor:
        maps = self.project(z).view(z.size(0), *self.start_shape)
        return _crop(torch.sigmoid(self.upsample(maps)), self.image_size)


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), group_norm(out_channels), nn.LeakyReLU(0.1)
    )


class ResidualUNetDecoder(nn.Module):
    """Target = clamp(last context frame + tanh(change), 0, 1), the change decoded by a two-level
    U-Net over the stacked context frames (3·F channels) with skip connections and FiLM from z.

    The output convolution starts at zero, so an untrained decoder predicts exactly the last
    context frame (the copy-last-frame floor) and training can only move away from it by
    learning a change that lowers the loss.
    """

    def __init__(self, latent_dim: int, base_channels: int, image_size: tuple[int, int], frames: int = CONTEXT_FRAMES):
        super().__init__()
        c = base_channels
        self.image_size = image_size
        self.down0 = _conv_block(3 * frames, c)
        self.down1 = _conv_block(c, 2 * c, stride=2)
        self.down2 = _conv_block(2 * c, 4 * c, stride=2)
        self.film = nn.Linear(latent_dim, 2 * 4 * c)
        self.bottleneck = _conv_block(4 * c, 4 * c)
        self.up1 = nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1)
        self.merge1 = _conv_block(4 * c, 2 * c)
        self.up0 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.merge0 = _conv_block(2 * c, c)
        self.change = nn.Conv2d(c, 3, 3, padding=1)
        nn.init.zeros_(self.change.weight)
        nn.init.zeros_(self.change.bias)

    @classmethod
    def from_config(cls, config: ModelConfig, image_size: tuple[int, int]) -> "ResidualUNetDecoder":
        return cls(config.latent_dim, max(8, config.decoder_channels // 4), image_size)

    def forward(self, z: torch.Tensor, context_frames: torch.Tensor) -> torch.Tensor:
        height, width = context_frames.shape[-2:]
        stacked = context_frames.flatten(1, 2)
        pad_h, pad_w = (-height) % 4, (-width) % 4
        stacked = F.pad(stacked, (0, pad_w, 0, pad_h), mode="replicate")
        skip0 = self.down0(stacked)
        skip1 = self.down1(skip0)
        bottom = self.down2(skip1)
        gamma, beta = self.film(z).view(z.size(0), 2, -1, 1, 1).unbind(1)
        bottom = self.bottleneck(bottom * (1 + gamma) + beta)
        up = self.merge1(torch.cat([self.up1(bottom), skip1], dim=1))
        up = self.merge0(torch.cat([self.up0(up), skip0], dim=1))
        change = torch.tanh(self.change(up))[..., :height, :width]
        return (context_frames[:, -1] + change).clamp(0.0, 1.0)


class VocabularyHead(nn.Module):
    """Features → vocabulary logits; with ``tie`` the output matrix is the input embedding's.

    Padding is never a target, so its logit is pinned to a large negative constant (this also
    keeps the pad embedding, whatever it holds, out of every prediction when tied)."""

    def __init__(self, in_dim: int, embedding: nn.Embedding, tie: bool):
        super().__init__()
        self.embedding = embedding if tie else None
        if tie:
            self.project = nn.Linear(in_dim, embedding.embedding_dim)
            self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))
        else:
            self.project = nn.Linear(in_dim, embedding.num_embeddings)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # The (B, T, V) logits are the largest tensor of a step (29M floats at the published
        # configuration); masking a copy of them cost a fifth of the step. Untied, the pad row
        # of the (V, H) matrix is zeroed and its bias set instead, which gives the pad logit
        # exactly -1e4 for a few hundred thousand multiplications. Tied, the matrix is the
        # embedding (V × 512 at full width, larger than the logits of a generation step), so
        # the logits are written in place: the linear layer's backward does not need them.
        if self.embedding is None:
            keep = torch.ones(self.project.out_features, 1, dtype=features.dtype, device=features.device)
            keep[PAD_ID] = 0.0
            bias = self.project.bias.masked_fill(keep[:, 0] == 0, -1e4)
            return F.linear(features, self.project.weight * keep, bias)
        logits = F.linear(self.project(features), self.embedding.weight, self.bias)
        logits[..., PAD_ID] = -1e4
        return logits


class LatentInitialisedLSTM(nn.Module):
    """The recurrent core both text decoders share: an LSTM whose (h0, c0) are linear maps of z."""

    def __init__(self, embedding: nn.Embedding, hidden: int, layers: int, latent_dim: int, dropout: float, input_dim: int):
        super().__init__()
        self.embedding, self.hidden, self.layers = embedding, hidden, layers
        self.init_h = nn.Linear(latent_dim, layers * hidden)
        self.init_c = nn.Linear(latent_dim, layers * hidden)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(input_dim, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)

    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def reshape(x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x).view(z.size(0), self.layers, self.hidden).transpose(0, 1).contiguous()

        return reshape(self.init_h(z)), reshape(self.init_c(z))


class LSTMTextDecoder(LatentInitialisedLSTM):
    """LSTM whose (h0, c0) are linear maps of z; returns vocabulary logits (B,T,V)."""

    def __init__(self, embedding: nn.Embedding, hidden: int, layers: int, latent_dim: int, dropout: float, tie: bool):
        super().__init__(embedding, hidden, layers, latent_dim, dropout, embedding.embedding_dim)
        self.head = VocabularyHead(hidden, embedding, tie)

    @classmethod
    def from_config(cls, config: ModelConfig, embedding: nn.Embedding) -> "LSTMTextDecoder":
        return cls(embedding, config.text_hidden, config.lstm_layers, config.latent_dim, config.dropout,
                   config.tie_embeddings)

    def forward(self, input_ids, z, memory=None, state=None, before=None):  # noqa: D401 - see module docs
        """input_ids (B,T) → (logits (B,T,V), state, None). ``memory`` and ``before`` are unused here."""
        state = self.initial_state(z) if state is None else state[:2]
        outputs, (h, c) = self.lstm(self.dropout(self.embedding(input_ids)), state)
        return self.head(self.dropout(outputs)), (h, c), None


class CopyTextDecoder(LatentInitialisedLSTM):
    """Pointer-generator with coverage over the context descriptions' tokens (all four, with a
    frame embedding).

    At step t with LSTM state s_t (input: previous token embedding and z) and coverage
    c_t = Σ_{t'<t} a_t' (the attention already paid to each context token):
      a_t = softmax(q(s_t)·k(m_j)/√d + w₁·follow_tj + w₂·follow2_tj + w_c·c_tj)   over context tokens j
      ctx_t = Σ_j a_tj m_j,  P_vocab = softmax(W[s_t, ctx_t]),  p_gen = σ(w_g·[s_t, ctx_t, e(y_{t-1})])
      P(w) = p_gen·P_vocab(w) + (1 − p_gen)·Σ_{j: x_j = w} a_tj
    ``follow_tj`` is 1 where the context token before j equals the decoder's input token
    (``follow2`` also matches the token before that): a learned prior for "keep copying where
    the last copied word was", which content attention alone learns slowly. Coverage (See et
    al. §2.3) lets the decoder see what it has copied already, and its penalty
    covloss_t = Σ_j min(a_tj, c_tj) (their eq. 12) is returned for the loss: without it a greedy
    decoder falls into loops that copy the same sentence again and again.
    Returns log P (B,T,V) (cross-entropy on it is the NLL of the mixture), the state
    (h, c, coverage) and covloss (B,T).
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        hidden: int,
        layers: int,
        latent_dim: int,
        memory_dim: int,
        frames: int,
        dropout: float,
        tie: bool,
    ):
        super().__init__(embedding, hidden, layers, latent_dim, dropout, embedding.embedding_dim + latent_dim)
        self.frame_embedding = nn.Embedding(frames, memory_dim)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(memory_dim, hidden)
        self.follow_weights = nn.Parameter(torch.tensor([3.0, 3.0]))
        self.head = VocabularyHead(hidden + memory_dim, embedding, tie)
        self.gate = nn.Linear(hidden + memory_dim + embedding.embedding_dim, 1)
        self.coverage_weight = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, config: ModelConfig, embedding: nn.Embedding) -> "CopyTextDecoder":
        # the memory is the text encoder's token states, text_hidden wide
        return cls(embedding, config.text_hidden, config.lstm_layers, config.latent_dim, config.text_hidden,
                   CONTEXT_FRAMES, config.dropout, config.tie_embeddings)

    def forward(self, input_ids, z, memory, state=None, before=None):
        """input_ids (B,T); memory {"states" (B,S,M), "ids" (B,S), "padding" (B,S), "frame" (S,)};
        ``before`` (B,) the token preceding input_ids[:, 0] (None at the start)."""
        batch, steps = input_ids.shape
        if state is None:
            lstm_state, coverage = self.initial_state(z), torch.zeros(memory["ids"].shape, device=z.device)
        else:
            lstm_state, coverage = state[:2], state[2]
        embedded = self.dropout(self.embedding(input_ids))
        lstm_in = torch.cat([embedded, z.unsqueeze(1).expand(-1, steps, -1)], dim=-1)
        outputs, lstm_state = self.lstm(lstm_in, lstm_state)
        outputs = self.dropout(outputs)

        source_ids, memory_states = memory["ids"], memory["states"]
        keys = self.key(memory_states + self.frame_embedding(memory["frame"]))
        scores = self.query(outputs) @ keys.transpose(1, 2) / math.sqrt(self.hidden)
        previous_source = F.pad(source_ids, (1, 0), value=-1)[:, :-1]
        second_previous_source = F.pad(source_ids, (2, 0), value=-1)[:, :-2]
        if before is None:
            before = torch.full((batch,), -1, dtype=input_ids.dtype, device=input_ids.device)
        previous_input = torch.cat([before.view(batch, 1), input_ids[:, :-1]], dim=1)
        follow = previous_source.unsqueeze(1) == input_ids.unsqueeze(2)
        follow2 = follow & (second_previous_source.unsqueeze(1) == previous_input.unsqueeze(2))
        scores = scores + self.follow_weights[0] * follow + self.follow_weights[1] * follow2
        scores = scores.float().masked_fill(memory["padding"].unsqueeze(1), float("-inf"))
        # coverage depends on the previous steps' attention, so this part runs step by step
        step_attention, step_penalty = [], []
        for step in range(steps):
            attention_t = F.softmax(scores[:, step] + self.coverage_weight * coverage, dim=-1)
            step_penalty.append(torch.minimum(attention_t, coverage).sum(dim=-1))
            coverage = coverage + attention_t
            step_attention.append(attention_t)
        attention = torch.stack(step_attention, dim=1)
        context = attention.to(memory_states.dtype) @ memory_states

        features = torch.cat([outputs, context], dim=-1)
        vocabulary = F.softmax(self.head(features).float(), dim=-1)
        p_gen = torch.sigmoid(self.gate(torch.cat([features, embedded], dim=-1)).float())
        copy = torch.zeros_like(vocabulary).scatter_add_(
            2, source_ids.unsqueeze(1).expand(-1, steps, -1), attention
        )
        mixture = p_gen * vocabulary + (1 - p_gen) * copy
        return torch.log(mixture.clamp_min(1e-12)), (*lstm_state, coverage), torch.stack(step_penalty, dim=1)
