"""Reference predictors ("floors") on the test windows, scored like the model.

A model that does not beat these has learned nothing about the story:

- ``median_image`` / ``mean_image``: one per-pixel image for every story, from the TRAIN
  windows' target frames (the published models' MAE 0.241 was exactly this);
- ``copy_last_frame``: predict frame 4 as frame 5;
- ``motion_extrapolation``: the shift and light change from frame 3 to 4, applied again
  (:mod:`storylib.classical`);
- ``analogue``: the method of analogues: what followed frame 4's analogue in the context;
- ``unigram``: perplexity of an add-one smoothed unigram model of the train target tokens;
- ``copy_last_description``: predict description 4 as description 5;
- ``analogue`` (text): the description that followed the analogue frame's description.

And one ORACLE, a reference and never a floor: ``oracle_best_context``, the context frame
closest to the truth — how much of frame 5 is already in the context.

Every floor is also scored where the shot continues and where it cuts at frame 5
(:mod:`storylib.data.shots`), under the keys ``continues`` and ``cuts``, each with its
``num_windows``; a group without windows holds NaN metrics and ``num_windows: 0``. Every image
floor is also scored on the windows of each shot pattern (``continuous``, ``shot_reverse``, …)
where the data name it. Image floors go
through :class:`storylib.evaluation.ImageScorer` and text floors through
:func:`storylib.evaluation.score_texts`, the same functions that score the model.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from storylib import classical
from storylib.data.dataset import PreparedData, WindowSplit, iterate_batches
from storylib.data.shots import SHOT_NAMES
from storylib.data.tokenizer import PAD_ID
from storylib.evaluation import ImageScorer, score_texts
from storylib.results.contract import IMAGE_FLOORS, IMAGE_METRICS, IMAGE_ORACLES, TEXT_METRICS

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


def _image_predictions(batch: dict, constant: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every image floor's and oracle's prediction for one batch."""
    context, target = batch["context_frames"], batch["target_frame"]
    return {
        **{name: image.expand_as(target) for name, image in constant.items()},
        "copy_last_frame": context[:, -1],
        "motion_extrapolation": classical.motion_extrapolation(context),
        "analogue": classical.analogue_prediction(context),
        "oracle_best_context": classical.oracle_best_context(context, target),
    }


def _decode_descriptions(split: WindowSplit, tokenizer, frame_per_window: np.ndarray) -> list[str]:
    """Window i's description of frame ``frame_per_window[i]`` (0-based), as the model sees it."""
    rows = np.asarray(split.token_ids)[np.arange(len(split)), frame_per_window]
    return [tokenizer.decode(row) for row in rows.tolist()]


def _by_shot(values: pd.DataFrame, groups: dict[str, np.ndarray], columns: tuple[str, ...]) -> dict[str, dict]:
    """Means of per-window ``columns`` where the shot continues and where it cuts."""
    return {
        name: {column: float(values[column].iloc[rows].mean()) if len(rows) else float("nan") for column in columns}
        | {"num_windows": int(len(rows))}
        for name, rows in groups.items()
    }


def _text_scores(hypotheses: list[str], references: list[str], groups: dict[str, np.ndarray]) -> tuple[dict, pd.DataFrame]:
    """Corpus scores of one text floor, overall and per shot group, and its per-window scores;
    a group without windows (small data: every test window cuts, or none does) gives NaN and
    ``num_windows: 0`` (:func:`storylib.evaluation.score_texts`), never sacreBLEU's error."""
    scores, per_window = score_texts(hypotheses, references)
    result = {key: scores[key] for key in (*TEXT_METRICS, "bleu_signature", "chrf_signature")}
    for name, rows in groups.items():
        part, _ = score_texts([hypotheses[i] for i in rows], [references[i] for i in rows])
        result[name] = {key: part[key] for key in (*TEXT_METRICS, "num_windows")}
    return result, per_window


# The floors (and the oracle) whose prediction differs per window: the figures show these.
PICTURED_FLOORS = ("copy_last_frame", "motion_extrapolation", "analogue", "oracle_best_context")


def floor_prediction_frames(split: WindowSplit, count: int) -> dict[str, np.ndarray]:
    """uint8 (count, 3, H, W) predictions of each of :data:`PICTURED_FLOORS` for the first
    ``count`` windows of ``split``, keyed ``floor_<name>`` (what ``test_windows.npz`` stores)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in PICTURED_FLOORS}
    for batch in iterate_batches(split.head(count), BATCH):
        predictions = _image_predictions(batch, {})
        for name in PICTURED_FLOORS:
            parts[name].append(predictions[name].mul(255).round().to(torch.uint8).numpy())
    empty = np.zeros((0, 3, *split.image_size), dtype=np.uint8)
    return {f"floor_{name}": np.concatenate(values) if values else empty for name, values in parts.items()}


def compute_floors(prepared: PreparedData) -> tuple[dict, pd.DataFrame]:
    """floors.json content and one row per test window (see the module docstring)."""
    test, tokenizer = prepared.test, prepared.tokenizer
    train_targets = prepared.train.frames[:, TARGET]
    constant = {"median_image": per_pixel_image(train_targets, "median"), "mean_image": per_pixel_image(train_targets, "mean")}
    scorers = {name: ImageScorer() for name in (*IMAGE_FLOORS, *IMAGE_ORACLES)}
    window_index, analogue_lags = [], []
    for batch in iterate_batches(test, BATCH):
        for name, predicted in _image_predictions(batch, constant).items():
            scorers[name].update(predicted, batch["target_frame"])
        window_index.append(batch["window_index"].numpy())
        analogue_lags.append(classical.analogue_lag(batch["context_frames"]).numpy())
    window_index = np.concatenate(window_index) if window_index else np.zeros(0, dtype=np.int64)
    lags = np.concatenate(analogue_lags) if analogue_lags else np.zeros(0, dtype=np.int64)
    groups = test.shot_groups()

    per_window = pd.DataFrame({"window_index": window_index, "story_id": [test.story_ids[i] for i in window_index]})
    if groups:
        per_window["shot"] = np.where(np.asarray(test.shot_cuts)[window_index], SHOT_NAMES[1], SHOT_NAMES[0])
    floors: dict = {}
    for name, scorer in scorers.items():
        values = pd.DataFrame(scorer.window_values())
        floors[name] = scorer.result() | _by_shot(values, test.window_groups(), IMAGE_METRICS)
        per_window[f"{name}_image_mae"] = values["image_mae"].to_numpy()
    floors["oracle_best_context"]["oracle"] = True  # it peeks at the target: never a floor to beat

    references = _decode_descriptions(test, tokenizer, np.full(len(test), TARGET))
    text_hypotheses = {  # the text floors other than the unigram model
        "copy_last_description": _decode_descriptions(test, tokenizer, np.full(len(test), TARGET - 1)),
        "analogue": _decode_descriptions(test, tokenizer, TARGET - lags),
    }
    for name, hypotheses in text_hypotheses.items():
        scores, text_windows = _text_scores(hypotheses, references, groups)
        floor = floors.setdefault(name, {})
        for key, value in scores.items():  # the image analogue's shot groups gain the text metrics
            floor[key] = floor[key] | value if isinstance(value, dict) and key in floor else value
        for metric in TEXT_METRICS:
            per_window[f"{name}_{metric}"] = text_windows[metric].to_numpy()

    floors["unigram"] = {"text_perplexity": unigram_perplexity(prepared.train.token_ids, test.token_ids, tokenizer.vocab_size)}
    for name, rows in groups.items():
        floors["unigram"][name] = {
            "text_perplexity": unigram_perplexity(prepared.train.token_ids, np.asarray(test.token_ids)[rows], tokenizer.vocab_size),
            "num_windows": int(len(rows)),
        }
    floors.update(
        num_test_windows=len(test),
        tokenizer=tokenizer.name,
        data_source=prepared.source,
        data_cache=prepared.cache_dir.name,  # "<source>-<content key>": which windows these are
        cut_share=float(np.mean(test.shot_cuts)) if groups else float("nan"),
        cut_basis=test.cut_basis,
    )
    return floors, per_window


def floor_table(floors: dict, model_metrics: dict | None = None) -> pd.DataFrame:
    """Rows: the model (when given) and each floor; columns: the metrics that apply (NaN elsewhere)."""
    columns = [*IMAGE_METRICS, "prediction_spread", "text_perplexity", *TEXT_METRICS]
    rows = {}
    if model_metrics is not None:
        rows["model"] = {c: model_metrics.get(c, np.nan) for c in columns}
    for name in (*IMAGE_FLOORS, *IMAGE_ORACLES, "unigram", "copy_last_description"):
        if name in floors:
            rows[name] = {c: floors[name].get(c, np.nan) for c in columns}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def shot_split_table(floors: dict) -> pd.DataFrame:
    """Image MAE of every image floor (and the oracle, labelled) on all windows, where the shot
    continues and where it cuts at frame 5; the count of windows of each group in the header."""
    rows = {}
    for name in (*IMAGE_FLOORS, *IMAGE_ORACLES):
        if name not in floors:
            continue
        values = floors[name]
        label = f"{name} (oracle, not a floor)" if name in IMAGE_ORACLES else name
        rows[label] = {"all": values["image_mae"], **{group: values.get(group, {}).get("image_mae", np.nan) for group in SHOT_NAMES}}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["all", *SHOT_NAMES])
    counts = {group: floors.get("median_image", {}).get(group, {}).get("num_windows", 0) for group in SHOT_NAMES}
    table.columns = ["all", *(f"{group} ({counts[group]})" for group in SHOT_NAMES)]
    table.index.name = f"image_mae ({floors.get('cut_basis', '')})"
    return table.round(4)
