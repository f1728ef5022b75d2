"""Scoring predictions on the test windows: images, perplexity, generated text.

The same scoring functions serve the model (:func:`evaluate`) and the floors
(:mod:`storylib.floors`), so a model and a floor are never measured differently:

- :class:`ImageScorer` accumulates MAE, MSE, SSIM, PSNR (``data_range=1.0``) per window and
  the prediction spread over the whole split;
- :func:`score_texts` scores generated against reference descriptions with sacreBLEU
  corpus BLEU-4 (exponential smoothing) and chrF, and ROUGE-L; per window too;
- :func:`token_nll` gives each window's summed cross-entropy and token count, so perplexity
  is exp(total NLL / total tokens) over every non-pad target token, not a mean of batch means.

BLEU, chrF and ROUGE-L are on sacreBLEU's 0–100 scale. References are the decoded target
token ids (the same normalisation and truncation the model sees).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF

from storylib.config import ExperimentConfig
from storylib.data.dataset import WindowSplit, iterate_batches
from storylib.data.tokenizer import PAD_ID
from storylib.device import autocast
from storylib.results.contract import IMAGE_METRICS



# --------------------------------------------------------------------------- images
#
# SSIM, PSNR and ROUGE-L are written here rather than taken from torchmetrics: importing
# torchmetrics costs about 5 CPU-seconds (it imports torchvision's models), more than torch
# itself, in every kernel of run_all.py and before notebook 01's first line. They follow
# torchmetrics' definitions exactly; tests/test_evaluation.py checks them against it.

SSIM_SIGMA = 1.5  # Wang et al. 2004: an 11 × 11 Gaussian window of σ 1.5, K1 = 0.01, K2 = 0.03
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_taps(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 1-D Gaussian of the window, normalised: the 2-D window is its outer product."""
    size = int(3.5 * sigma + 0.5) * 2 + 1
    distance = torch.arange((1 - size) / 2, (1 + size) / 2, 1, dtype=dtype, device=device)
    gauss = torch.exp(-((distance / sigma) ** 2) / 2)
    return gauss / gauss.sum()


def _correlation_matrix(taps: torch.Tensor, length: int) -> torch.Tensor:
    """(length, length + taps − 1) with the taps on its diagonals: ``matrix @ v`` is the valid
    1-D correlation of v with the taps."""
    matrix = taps.new_zeros(length, length + taps.numel() - 1)
    for offset, tap in enumerate(taps.tolist()):
        matrix.diagonal(offset).fill_(tap)
    return matrix


def ssim(predicted: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of (B, C, H, W) images → (B,): the mean of the
    SSIM map computed with a Gaussian window over reflect-padded images, as torchmetrics'
    ``structural_similarity_index_measure`` does.

    The window is separable, so the local means are one matrix product down the columns and one
    along the rows (banded matrices of the 1-D taps): the same sums up to float rounding as
    torchmetrics' 11 × 11 depthwise convolution, about ten times faster on a CPU."""
    height, width = predicted.shape[-2:]
    taps = _gaussian_taps(SSIM_SIGMA, predicted.dtype, predicted.device)
    pad = (taps.numel() - 1) // 2
    predicted = F.pad(predicted, (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
    stacked = torch.cat((predicted, target, predicted * predicted, target * target, predicted * target))
    means = _correlation_matrix(taps, height) @ stacked @ _correlation_matrix(taps, width).T
    mean_p, mean_t, mean_pp, mean_tt, mean_pt = means.split(predicted.shape[0])
    variance_p = (mean_pp - mean_p.pow(2)).clamp(min=0.0)
    variance_t = (mean_tt - mean_t.pow(2)).clamp(min=0.0)
    covariance = mean_pt - mean_p * mean_t
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mean_p * mean_t + c1) * (2 * covariance + c2)) / (
        (mean_p.pow(2) + mean_t.pow(2) + c1) * (variance_p + variance_t + c2))
    return ssim_map.flatten(1).mean(-1)


def psnr(predicted: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of (B, C, H, W) images → (B,); inf for a perfect match."""
    mse = (predicted - target).pow(2).flatten(1).mean(-1)
    return 10 * torch.log10(data_range**2 / mse)


def image_window_metrics(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-window MAE, MSE, SSIM and PSNR of (B,3,H,W) images in [0, 1] → each (B,)."""
    predicted, target = predicted.float().clamp(0, 1), target.float()
    return {
        "image_mae": (predicted - target).abs().mean(dim=(1, 2, 3)),
        "image_mse": (predicted - target).pow(2).mean(dim=(1, 2, 3)),
        "image_ssim": ssim(predicted, target),
        "image_psnr": psnr(predicted, target),
    }


class ImageScorer:
    """Accumulates per-window image metrics and the spread of the predictions.

    ``prediction_spread`` = mean over pixels of the standard deviation (over all windows) of the
    predicted value at that pixel: about 0 when one image is predicted for every story.
    Split-level metrics are means of the per-window values (all windows weigh the same).
    """

    def __init__(self) -> None:
        self.per_window: dict[str, list[np.ndarray]] = {name: [] for name in IMAGE_METRICS}
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.sum_of_squares: torch.Tensor | None = None

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        metrics = {k: v.detach().cpu().double().numpy() for k, v in image_window_metrics(predicted, target).items()}
        for name, values in metrics.items():
            self.per_window[name].append(values)
        values = predicted.detach().float().clamp(0, 1).double().cpu()
        if self.sum is None:
            self.sum, self.sum_of_squares = torch.zeros_like(values[0]), torch.zeros_like(values[0])
        self.sum += values.sum(0)
        self.sum_of_squares += values.pow(2).sum(0)
        self.count += values.shape[0]
        return metrics

    def window_values(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in self.per_window.items()}

    def result(self) -> dict[str, float]:
        result = {name: float(np.mean(values)) if values.size else float("nan")
                  for name, values in self.window_values().items()}
        if self.count:
            mean = self.sum / self.count
            variance = (self.sum_of_squares / self.count - mean.pow(2)).clamp(min=0)
            result["prediction_spread"] = float(variance.sqrt().mean())
        else:
            result["prediction_spread"] = float("nan")
        return result


# --------------------------------------------------------------------------- text


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE compares: lower-cased, runs of non-alphanumerics as spaces, no stemming
    (the reference ``rouge-score`` package's default, which torchmetrics follows)."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def longest_common_subsequence(first: list[str], second: list[str]) -> int:
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for index, other in enumerate(second):
            current.append(previous[index] + 1 if token == other else max(previous[index + 1], current[index]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure (Lin 2004), 0–100, on :func:`rouge_tokens`, so the numbers compare with
    published ROUGE-L; 0 when either text has no token."""
    hypothesis_tokens, reference_tokens = rouge_tokens(hypothesis), rouge_tokens(reference)
    if not hypothesis_tokens or not reference_tokens:
        return 0.0
    common = longest_common_subsequence(hypothesis_tokens, reference_tokens)
    if common == 0:
        return 0.0
    precision, recall = common / len(hypothesis_tokens), common / len(reference_tokens)
    return 100.0 * 2 * precision * recall / (precision + recall)


def score_texts(hypotheses: list[str], references: list[str]) -> tuple[dict, pd.DataFrame]:
    """Corpus BLEU-4 (smooth "exp"), chrF and mean ROUGE-L, with sacreBLEU signatures, and
    ``num_windows``; and per window: sentence BLEU (``effective_order=True``), chrF, ROUGE-L.

    No windows (a shot group or pattern the test windows lack) gives NaN scores, ``num_windows``
    0 and signatures ``None``: sacreBLEU's ``get_signature()`` raises on a metric that never
    scored, and its ``corpus_score`` on an empty corpus.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        empty = pd.DataFrame({name: pd.Series(dtype=float) for name in ("bleu", "chrf", "rouge_l")})
        return {"bleu": float("nan"), "chrf": float("nan"), "rouge_l": float("nan"), "bleu_signature": None,
                "chrf_signature": None, "num_windows": 0}, empty
    bleu, chrf = BLEU(smooth_method="exp"), CHRF()
    sentence_bleu = BLEU(smooth_method="exp", effective_order=True)
    per_window = pd.DataFrame(
        {
            "bleu": [sentence_bleu.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)],
            "chrf": [chrf.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)],
            "rouge_l": [rouge_l(h, r) for h, r in zip(hypotheses, references)],
        }
    )
    corpus = {
        "bleu": float(bleu.corpus_score(hypotheses, [references]).score),
        "chrf": float(chrf.corpus_score(hypotheses, [references]).score),
        "rouge_l": float(per_window["rouge_l"].mean()),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "num_windows": len(hypotheses),
    }
    return corpus, per_window


def token_nll(text_logits: torch.Tensor, target_text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window: summed cross-entropy over the non-pad targets target_text_ids[:, 1:] (every
    token after bos, eos included) and their count → two (B,) tensors (float64, int64)."""
    targets = target_text_ids[:, 1:]
    losses = F.cross_entropy(
        text_logits.float().transpose(1, 2), targets, ignore_index=PAD_ID, reduction="none"
    )  # (B, T)
    real = targets != PAD_ID
    return (losses * real).double().sum(1), real.sum(1)


def perplexity(total_nll: float, count: int) -> float:
    return math.exp(total_nll / count) if count else float("nan")


# --------------------------------------------------------------------------- the model


def group_means(
    window_values: dict[str, np.ndarray], window_index: np.ndarray, split: WindowSplit, metrics: tuple[str, ...]
) -> dict:
    """``<metric>_<group>``: each metric's mean over the windows of each group of
    :meth:`WindowSplit.window_groups` (where the shot continues / cuts at frame 5, and each shot
    pattern), and ``num_windows_<group>``; a group without windows gives NaN and 0."""
    result: dict = {}
    for group, indices in split.window_groups().items():
        member = np.isin(window_index, indices)
        for name in metrics:
            values = np.asarray(window_values[name])[member]
            result[f"{name}_{group}"] = float(values.mean()) if values.size else float("nan")
        result[f"num_windows_{group}"] = int(member.sum())   # 0: the group's metrics are NaN
    return result


def best_of_k(samples: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window, the lowest MAE among K sampled frames (B, K, 3, H, W) against the target
    (B, 3, H, W) — the convention of stochastic video prediction (Denton & Fergus 2018, SVG) —
    and the samples' diversity, the mean L1 over every pair of samples (0 for one sample) → (B,), (B,)."""
    samples, target = samples.float().clamp(0, 1), target.float()
    errors = (samples - target.unsqueeze(1)).abs().flatten(2).mean(dim=2)  # (B, K)
    count = samples.shape[1]
    if count < 2:
        return errors.min(dim=1).values, torch.zeros(len(samples))
    pairs = torch.triu_indices(count, count, offset=1)
    diversity = (samples[:, pairs[0]] - samples[:, pairs[1]]).abs().flatten(2).mean(dim=2).mean(dim=1)
    return errors.min(dim=1).values, diversity



@dataclass
class EvaluationResult:
    metrics: dict
    per_window: pd.DataFrame
    predicted_frames: np.ndarray  # uint8 (n_saved, 3, H, W)
    generated_texts: list[str]
    vae_samples: np.ndarray | None = None  # uint8 (n_saved, K, 3, H, W) for VAE models
    saved_window_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    table: pd.DataFrame | None = None  # the metrics beside the floors (set by storylib.experiment)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


@dataclass
class _Collected:
    """What :func:`evaluate` gathers batch by batch before it scores the texts and averages."""

    scorer: ImageScorer = field(default_factory=ImageScorer)
    nll_sums: list = field(default_factory=list)
    token_counts: list = field(default_factory=list)
    generated_texts: list = field(default_factory=list)
    target_texts: list = field(default_factory=list)
    indices: list = field(default_factory=list)
    saved_frames: list = field(default_factory=list)
    saved_samples: list = field(default_factory=list)
    best_maes: list = field(default_factory=list)
    diversities: list = field(default_factory=list)


def _collect(model, split: WindowSplit, tokenizer, cfg: ExperimentConfig, device) -> _Collected:
    """Predict every window of ``split``: frame, text likelihood, greedy text, best-of-K samples,
    and the first ``saved_prediction_windows`` frames (and VAE samples) kept as uint8."""
    found = _Collected()
    keep = cfg.eval.saved_prediction_windows or len(split)
    with torch.no_grad(), torch.random.fork_rng(devices=[]), autocast(device, cfg.train.amp):
        torch.manual_seed(cfg.seed)  # VAE samples are reproducible and leave the global RNG alone
        for batch in iterate_batches(split, cfg.eval.batch_size, device=device):
            # one encoding serves the frame, the greedy text and the samples (eval mode: z = μ)
            encoded = model.encode(batch, sample=False)
            out = model(batch, encoded=encoded)
            found.scorer.update(out.predicted_frame, batch["target_frame"])
            best_mae, diversity = best_of_k(model.sample_frames(batch, cfg.eval.best_of_k, encoded=encoded),
                                            batch["target_frame"])
            found.best_maes.append(best_mae.double().cpu().numpy())
            found.diversities.append(diversity.double().cpu().numpy())
            sums, counts = token_nll(out.text_logits, batch["target_text_ids"])
            found.nll_sums.append(sums.cpu())
            found.token_counts.append(counts.cpu())
            generated = model.generate_text(batch, cfg.eval.max_generation_length, eos_id=tokenizer.eos_id,
                                            encoded=encoded)
            found.generated_texts += [tokenizer.decode(row) for row in generated.tolist()]
            found.target_texts += [tokenizer.decode(row) for row in batch["target_text_ids"].tolist()]
            found.indices.append(batch["window_index"].cpu())
            missing = keep - sum(len(f) for f in found.saved_frames)
            if missing > 0:
                found.saved_frames.append(to_uint8(out.predicted_frame[:missing]))
                if cfg.model.vae:
                    part = {k: v[:missing] for k, v in batch.items()}
                    z, mu, logvar = (value[:missing] for value in encoded[:3])
                    samples = model.sample_frames(part, cfg.model.vae_samples, encoded=(z, mu, logvar, None, None))
                    found.saved_samples.append(to_uint8(samples))
    return found


def evaluate(model, split: WindowSplit, tokenizer, cfg: ExperimentConfig, device=None) -> EvaluationResult:
    """Score ``model`` on every window of ``split`` (see the module docstring)."""
    device = device or next(model.parameters()).device
    model.eval()
    model.precompute(split)
    found = _collect(model, split, tokenizer, cfg, device)
    nll, count = torch.cat(found.nll_sums), torch.cat(found.token_counts)
    text_metrics, text_windows = score_texts(found.generated_texts, found.target_texts)
    window_index = torch.cat(found.indices).numpy()
    image_values = found.scorer.window_values()
    image_values["image_mae_best_of_k"] = np.concatenate(found.best_maes) if found.best_maes else np.zeros(0)
    per_window = pd.DataFrame(
        {
            "window_index": window_index,
            "story_id": [split.story_ids[i] for i in window_index],
            **image_values,
            "text_perplexity": np.exp(nll.numpy() / np.maximum(count.numpy(), 1)),
            # the report's bootstrap resamples these for the corpus-level perplexity of the tables
            "text_nll": nll.numpy(),
            "text_tokens": count.numpy(),
            **{name: text_windows[name] for name in ("chrf", "bleu", "rouge_l")},
            "generated_text": found.generated_texts,
            "target_text": found.target_texts,
        }
    )
    metrics = {
        **found.scorer.result(),
        "image_mae_best_of_k": float(np.mean(image_values["image_mae_best_of_k"])),
        "best_of_k": cfg.eval.best_of_k,
        "sample_diversity": float(np.mean(np.concatenate(found.diversities))) if found.diversities else float("nan"),
        **group_means(image_values, window_index, split, (*IMAGE_METRICS, "image_mae_best_of_k")),
        "text_perplexity": perplexity(float(nll.sum()), int(count.sum())),
        **{key: value for key, value in text_metrics.items() if key != "num_windows"},
        "num_test_windows": len(split),
    }
    frames = np.concatenate(found.saved_frames) if found.saved_frames else np.zeros((0, 3, *split.image_size), np.uint8)
    samples = np.concatenate(found.saved_samples) if found.saved_samples else None
    return EvaluationResult(metrics, per_window, frames, found.generated_texts, samples, window_index[: len(frames)])
