"""StoryPredictor: four frames (image + description) in, the fifth frame's image and text out.

One module, configured by :class:`storylib.config.ModelConfig` (nanoGPT style). ``forward``
returns the predictions *and* the unweighted loss terms ("image", "text", "context", "kl"),
so training, evaluation and notebooks never re-implement a loss. The weights live in
:class:`storylib.config.TrainConfig` and are applied by :mod:`storylib.training`.

    frames ─ FrameImageEncoder ─┐
                                ├─ (CrossModalAttention) ─ per-frame vector ─ GRU + attention ─ z
    texts ── TextEncoder ───────┘                                                  (or μ, log σ²)
    z ─ image decoder ─ frame 5      z ─ context head ─ mean context image
    z ─ text decoder (teacher-forced / greedy) ─ description 5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from storylib.config import ExperimentConfig, ModelConfig
from storylib.data.dataset import CONTEXT_MOTION, WindowSplit
from storylib.models.decoders import ConvImageDecoder
from storylib.models.encoders import PAD_ID, CrossModalAttention, FrameImageEncoder, StoryEncoder, TextEncoder
from storylib.models.motion import split_motion
from storylib.models.registry import decoder_class


@dataclass
class PredictorOutput:
    predicted_frame: torch.Tensor  # (B,3,H,W) in [0,1]
    predicted_context: torch.Tensor  # (B,3,H,W): the story's mean context image
    text_logits: torch.Tensor  # (B,L-1,V), position t predicts target_text_ids[:, t+1]
    losses: dict[str, torch.Tensor]  # unweighted: image, text, context, kl
    attention: dict[str, torch.Tensor] | None
    mu: torch.Tensor | None
    logvar: torch.Tensor | None
    latent: torch.Tensor


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ_d (1 + log σ²_d − μ²_d − σ²_d)  (Kingma & Welling 2014, App. B),
    summed over the latent dimensions and averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor, prior_logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(μ_p, σ_p²)) = ½ Σ_d (log σ_p² − log σ² + (σ² + (μ − μ_p)²) / σ_p² − 1),
    summed over the latent dimensions and averaged over the batch (SVG-LP's KL term)."""
    ratio = (logvar.exp() + (mu - prior_mu).pow(2)) / prior_logvar.exp()
    return (0.5 * (prior_logvar - logvar + ratio - 1).sum(dim=1)).mean()


def text_loss(
    text_logits: torch.Tensor, target_text_ids: torch.Tensor, coverage_penalty: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over the non-pad targets target_text_ids[:, 1:], plus, for the copy
    decoder, the mean coverage penalty over the same steps (See et al. 2017, eq. 13, λ = 1)."""
    targets = target_text_ids[:, 1:]
    if targets.numel() == 0 or not (targets != PAD_ID).any():
        return text_logits.sum() * 0.0
    loss = F.cross_entropy(text_logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD_ID)
    if coverage_penalty is not None:
        real = (targets != PAD_ID).float()
        loss = loss + (coverage_penalty.float() * real).sum() / real.sum()
    return loss


class StoryPredictor(nn.Module):
    def __init__(
        self, config: ModelConfig, vocab_size: int, image_size: tuple[int, int], image_loss: str = "l1",
        context_head_learns: bool = True,
    ):
        """``context_head_learns``: False where the context term's weight is 0 (the learning
        family): the context head then runs without a graph, so no backward pass runs through
        its transposed convolutions. Its term is still reported (``losses["context"]``) but
        nothing learns from it: the head keeps its initial weights (no gradient at all, where a
        graph gave it exact zeros) and the encoders get what the 0-weighted term gave them,
        zeros."""
        super().__init__()
        self.config, self.vocab_size, self.image_size, self.image_loss = config, vocab_size, tuple(image_size), image_loss
        self.context_head_learns = context_head_learns
        c = config
        self.embedding = nn.Embedding(vocab_size, c.embedding_dim, padding_idx=PAD_ID)
        self.image_encoder = FrameImageEncoder(list(c.backbone_channels), self.image_size, c.image_feature_dim)
        self.text_encoder = TextEncoder(self.embedding, c.text_hidden, c.lstm_layers, c.dropout)
        frame_dim = c.image_feature_dim + c.text_hidden
        self.cross_modal: CrossModalAttention | None = None
        if c.cross_modal_attention:
            map_channels, map_h, map_w = self.image_encoder.map_shape
            self.cross_modal = CrossModalAttention(
                c.text_hidden, map_channels, map_h * map_w, c.image_feature_dim, c.attention_heads
            )
            frame_dim += 2 * self.cross_modal.dim
        self.story_encoder = StoryEncoder(frame_dim, c.gru_hidden)
        self.dropout = nn.Dropout(c.dropout)
        self.to_posterior: nn.Linear | None = None
        if c.vae:
            self.to_mu = nn.Linear(self.story_encoder.out_dim, c.latent_dim)
            self.to_logvar = nn.Linear(self.story_encoder.out_dim, c.latent_dim)
            if c.vae_prior == "learned":  # sees the context's summary and frame 5's image vector
                self.to_posterior = nn.Linear(self.story_encoder.out_dim + c.image_feature_dim, 2 * c.latent_dim)
        else:
            self.to_latent = nn.Linear(self.story_encoder.out_dim, c.latent_dim)

        self.image_decoder: nn.Module = decoder_class("image", c.image_decoder).from_config(c, self.image_size)
        self.context_decoder = ConvImageDecoder.from_config(c, self.image_size)
        self.text_decoder: nn.Module = decoder_class("text", c.text_decoder).from_config(c, self.embedding)

    # ------------------------------------------------------------------ encoding

    def encode(self, batch: dict[str, torch.Tensor], sample: bool | None = None):
        """→ (z, μ, log σ², memory for the copy decoder, attention weights)."""
        context_frames, context_ids = batch["context_frames"], batch["context_text_ids"]
        batch_size, frames, length = context_ids.shape
        image_vectors, feature_maps = self.image_encoder(context_frames)
        token_states, text_vectors, padding = self.text_encoder(context_ids.flatten(0, 1))
        parts = [image_vectors, text_vectors.view(batch_size, frames, -1)]
        attention: dict[str, torch.Tensor] = {}
        if self.cross_modal is not None:
            fused, weights = self.cross_modal(token_states, padding, feature_maps, image_vectors.flatten(0, 1))
            parts.append(fused.view(batch_size, frames, -1))
            attention = {name: w.view(batch_size, frames, *w.shape[1:]) for name, w in weights.items()}
        summary, frame_weights = self.story_encoder(torch.cat(parts, dim=-1))
        attention["frames"] = frame_weights
        summary = self.dropout(summary)
        mu = logvar = None
        if self.config.vae:
            mu, logvar = self.to_mu(summary), self.to_logvar(summary)
            sample = self.training if sample is None else sample
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        else:
            z = self.to_latent(summary)
        memory = {
            "states": token_states.reshape(batch_size, frames * length, -1),
            "ids": context_ids.reshape(batch_size, frames * length),
            "padding": (context_ids == PAD_ID).reshape(batch_size, frames * length),
            "frame": torch.arange(frames, device=context_ids.device).repeat_interleave(length),
            "summary": summary,  # the story encoder's output, for the learned prior's posterior
        }
        return z, mu, logvar, memory, attention

    # ------------------------------------------------------------------ forward

    def forward(self, batch: dict[str, torch.Tensor], encoded: tuple | None = None) -> PredictorOutput:
        """``encoded``: what :meth:`encode` returned for this batch, so that evaluation encodes
        each batch once for the frame, the text and the samples (None: encode here)."""
        context_frames, target_ids = batch["context_frames"], batch["target_text_ids"]
        z, mu, logvar, memory, attention = self.encode(batch) if encoded is None else encoded
        target_frame = batch["target_frame"]
        kl = kl_divergence(mu.float(), logvar.float()) if mu is not None else z.new_zeros((), dtype=torch.float32)
        if self.to_posterior is not None:
            # SVG-LP: the posterior sees frame 5; z is drawn from it while training only (at test
            # time, and for the validation loss, z comes from the learned prior of the context)
            target_vector = self.image_encoder(target_frame.unsqueeze(1))[0][:, 0]
            post_mu, post_logvar = self.to_posterior(torch.cat([memory["summary"], target_vector], dim=-1)).chunk(2, dim=-1)
            if self.training:
                z = post_mu + torch.randn_like(post_mu) * torch.exp(0.5 * post_logvar)
            kl = gaussian_kl(post_mu.float(), post_logvar.float(), mu.float(), logvar.float())
        predicted_frame = self.decode_frame(z, batch)
        if self.context_head_learns:
            predicted_context = self.context_decoder(z)
        else:
            with torch.no_grad():
                predicted_context = self.context_decoder(z)
        text_logits, _, coverage_penalty = self.text_decoder(target_ids[:, :-1], z, memory)

        image_error = F.l1_loss if self.image_loss == "l1" else F.mse_loss
        losses = {
            "image": image_error(predicted_frame.float(), target_frame),
            "text": text_loss(text_logits, target_ids, coverage_penalty),
            "context": F.mse_loss(predicted_context.float(), context_frames.mean(dim=1)),
            "kl": kl,
        }
        return PredictorOutput(predicted_frame, predicted_context, text_logits, losses, attention, mu, logvar, z)

    def decode_frame(self, z: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Frame 5 from z; a decoder that reads fixed motion features (``uses_context_motion``)
        gets the batch's precomputed ``context_motion`` where it has one."""
        if getattr(self.image_decoder, "uses_context_motion", False):
            return self.image_decoder(z, batch["context_frames"], batch.get(CONTEXT_MOTION))
        return self.image_decoder(z, batch["context_frames"])

    def precompute(self, split: WindowSplit) -> None:
        """Store in ``split`` what this model's parameter-free parts compute from its frames, so
        every batch of it carries that instead of recomputing it each step (the motion features
        of the warp decoder); nothing for the other decoders."""
        if getattr(self.image_decoder, "uses_context_motion", False) and CONTEXT_MOTION not in split.precomputed:
            split.precomputed[CONTEXT_MOTION] = split_motion(split)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def generate_text(
        self, batch: dict[str, torch.Tensor], max_length: int, eos_id: int | None = None, bos_id: int | None = None,
        encoded: tuple | None = None,
    ) -> torch.Tensor:
        """Greedy decoding → (B, T≤max_length) token ids, 0 after the first ``eos_id``.

        Starts from ``bos_id``, or from the batch's target_text_ids[:, 0] (the bos token).
        ``encoded``: ``self.encode(batch, sample=False)`` when the caller has it already."""
        z, _, _, memory, _ = self.encode(batch, sample=False) if encoded is None else encoded
        if bos_id is None:
            start = batch["target_text_ids"][:, :1]
        else:
            start = torch.full((z.size(0), 1), bos_id, dtype=torch.long, device=z.device)
        tokens, state, before = start, None, None
        finished = torch.zeros(z.size(0), dtype=torch.bool, device=z.device)
        generated = []
        for _ in range(max_length):
            scores, state, _ = self.text_decoder(tokens, z, memory, state, before)
            next_token = scores[:, -1].argmax(dim=-1).masked_fill(finished, PAD_ID)
            generated.append(next_token)
            if eos_id is not None:
                finished |= next_token == eos_id
                if bool(finished.all()):
                    break
            before, tokens = tokens[:, -1], next_token.unsqueeze(1)
        if not generated:
            return start.new_zeros((z.size(0), 0))
        return torch.stack(generated, dim=1)

    @torch.no_grad()
    def sample_frames(self, batch: dict[str, torch.Tensor], k: int, encoded: tuple | None = None) -> torch.Tensor:
        """k frames per window from z ~ N(μ, σ²) (VAE) or k copies of the deterministic frame → (B,k,3,H,W).
        ``encoded``: ``self.encode(batch, sample=False)`` when the caller has it already."""
        z, mu, logvar, _, _ = self.encode(batch, sample=False) if encoded is None else encoded
        if mu is None:  # deterministic: one decoding, k views of it (eval mode draws nothing)
            return self.decode_frame(z, batch).unsqueeze(1).expand(-1, k, -1, -1, -1)
        frames = []
        for _ in range(k):
            if mu is not None:
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            frames.append(self.decode_frame(z, batch))
        return torch.stack(frames, dim=1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor (tied embeddings) counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cfg: ExperimentConfig, vocab_size: int, image_size: tuple[int, int]) -> StoryPredictor:
    return StoryPredictor(
        cfg.model, vocab_size, image_size, image_loss=cfg.train.image_loss, context_head_learns=cfg.train.context_weight != 0
    )
