"""Trivial reference predictors ("floors") on the test windows, scored like the model.

A model that does not beat these has learned nothing about the story:

- ``median_image`` / ``mean_image``: one per-pixel image for every story, from the TRAIN
  windows' target frames (the published models' MAE 0.241 was exactly this);
- ``copy_last_frame``: predict frame 4 as frame 5;
- ``unigram``: perplexity of an add-one smoothed unigram model of the train target tokens;
- ``copy_last_description``: predict description 4 as description 5.

Image floors go through :class:`storylib.evaluation.ImageScorer` and text floors through
:func:`storylib.evaluation.score_texts`, the same functions that score the model.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from storylib.data.dataset import PreparedData, iterate_batches
from storylib.evaluation import ImageScorer, score_texts
from storylib.models.encoders import PAD_ID

IMAGE_FLOORS = ("median_image", "mean_image", "copy_last_frame")
TARGET = 4  # index of the target frame / description in a window
BATCH = 64


def per_pixel_image(frames: np.ndarray, statistic: str) -> torch.Tensor:
    """Per-pixel median or mean of uint8 (N,3,H,W) frames → float (3,H,W) in [0, 1].

    Computed one channel at a time so a large split never needs N·3·H·W float64 at once."""
    channels = []
    for channel in range(frames.shape[1]):
        values = np.asarray(frames[:, channel], dtype=np.float64)
        channels.append(np.median(values, axis=0) if statistic == "median" else values.mean(axis=0))
    return torch.from_numpy(np.stack(channels) / 255.0).float()


def target_tokens(token_ids: np.ndarray) -> np.ndarray:
    """The tokens perplexity is computed on: every non-pad target token after bos (eos included),
    i.e. ``token_ids[:, 4, 1:]`` without padding — the targets of the model's teacher forcing."""
    tokens = np.asarray(token_ids[:, TARGET, 1:]).ravel()
    return tokens[tokens != PAD_ID].astype(np.int64)


def unigram_perplexity(train_token_ids: np.ndarray, test_token_ids: np.ndarray, vocab_size: int) -> float:
    """exp(−mean log p(w)) over the test target tokens, p(w) = (count_train(w) + 1) / (N_train + V)."""
    train_tokens, test_tokens = target_tokens(train_token_ids), target_tokens(test_token_ids)
    if test_tokens.size == 0:
        return float("nan")
    counts = np.bincount(train_tokens, minlength=vocab_size).astype(np.float64)
    log_probabilities = np.log(counts + 1.0) - math.log(train_tokens.size + vocab_size)
    return float(math.exp(-log_probabilities[test_tokens].mean()))


def compute_floors(prepared: PreparedData) -> tuple[dict, pd.DataFrame]:
    """floors.json content and one row per test window (see the module docstring)."""
    test, tokenizer = prepared.test, prepared.tokenizer
    train_targets = prepared.train.frames[:, TARGET]
    constant = {"median_image": per_pixel_image(train_targets, "median"), "mean_image": per_pixel_image(train_targets, "mean")}
    scorers = {name: ImageScorer() for name in IMAGE_FLOORS}
    window_index = []
    for batch in iterate_batches(test, BATCH):
        target = batch["target_frame"]
        for name, image in constant.items():
            scorers[name].update(image.expand_as(target), target)
        scorers["copy_last_frame"].update(batch["context_frames"][:, -1], target)
        window_index.append(batch["window_index"].numpy())
    window_index = np.concatenate(window_index) if window_index else np.zeros(0, dtype=np.int64)

    hypotheses = [tokenizer.decode(row) for row in np.asarray(test.token_ids[:, TARGET - 1]).tolist()]
    references = [tokenizer.decode(row) for row in np.asarray(test.token_ids[:, TARGET]).tolist()]
    copy_text, copy_windows = score_texts(hypotheses, references)

    floors: dict = {name: scorers[name].result() for name in IMAGE_FLOORS}
    floors["unigram"] = {
        "text_perplexity": unigram_perplexity(prepared.train.token_ids, test.token_ids, tokenizer.vocab_size)
    }
    floors["copy_last_description"] = {key: copy_text[key] for key in ("bleu", "chrf", "rouge_l")}
    floors["copy_last_description"].update(bleu_signature=copy_text["bleu_signature"], chrf_signature=copy_text["chrf_signature"])
    floors.update(num_test_windows=len(test), tokenizer=tokenizer.name, data_source=prepared.source)

    per_window = pd.DataFrame({"window_index": window_index, "story_id": [test.story_ids[i] for i in window_index]})
    for name in IMAGE_FLOORS:
        per_window[f"{name}_image_mae"] = scorers[name].window_values()["image_mae"]
    for metric in ("chrf", "bleu", "rouge_l"):
        per_window[f"copy_last_description_{metric}"] = copy_windows[metric].to_numpy()
    return floors, per_window


def floor_table(floors: dict, model_metrics: dict | None = None) -> pd.DataFrame:
    """Rows: the model (when given) and each floor; columns: the metrics that apply (NaN elsewhere)."""
    columns = ["image_mae", "image_mse", "image_ssim", "image_psnr", "prediction_spread", "text_perplexity", "bleu", "chrf", "rouge_l"]
    rows = {}
    if model_metrics is not None:
        rows["model"] = {c: model_metrics.get(c, np.nan) for c in columns}
    for name in (*IMAGE_FLOORS, "unigram", "copy_last_description"):
        if name in floors:
            rows[name] = {c: floors[name].get(c, np.nan) for c in columns}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
