"""A hand-made results folder in the contract layout (docs/architecture.md), shared by the report,
browser and runner tests. Values are chosen so that means, sds and paired differences are
easy to compute by hand (see the comments)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from storylib.runs import current_config_hash

WINDOWS = [3, 7, 11]          # window_index of the three saved test windows
HEIGHT, WIDTH = 4, 6

# per-window image_mae per (experiment, seed); seed means per window:
#   baseline [0.2, 0.3, 0.4], enhanced [0.1, 0.2, 0.3] (always 0.1 lower), vae [0.3, 0.1, 0.5]
WINDOW_MAE = {
    ("baseline", 0): [0.1, 0.2, 0.3],
    ("baseline", 1): [0.3, 0.4, 0.5],
    ("enhanced", 0): [0.0, 0.1, 0.2],
    ("enhanced", 1): [0.2, 0.3, 0.4],
    ("vae", 0): [0.3, 0.1, 0.5],
}
# per-window chrF: enhanced always 5 higher than baseline
WINDOW_CHRF = {
    ("baseline", 0): [10.0, 20.0, 30.0],
    ("baseline", 1): [10.0, 20.0, 30.0],
    ("enhanced", 0): [15.0, 25.0, 35.0],
    ("enhanced", 1): [15.0, 25.0, 35.0],
    ("vae", 0): [10.0, 20.0, 30.0],
}
# test_metrics.json image_mae per run: baseline 0.2, 0.4 → "0.3000 ± 0.1414"
RUN_MAE = {("baseline", 0): 0.2, ("baseline", 1): 0.4, ("enhanced", 0): 0.1,
           ("enhanced", 1): 0.3, ("vae", 0): 0.3}
FLOORS = {
    "median_image": {"image_mae": 0.241, "image_mse": 0.079, "image_ssim": 0.1,
                     "image_psnr": 11.0, "prediction_spread": 0.0},
    "mean_image": {"image_mae": 0.25, "image_mse": 0.07, "image_ssim": 0.12,
                   "image_psnr": 11.5, "prediction_spread": 0.0},
    "copy_last_frame": {"image_mae": 0.15, "image_mse": 0.05, "image_ssim": 0.4,
                        "image_psnr": 14.0, "prediction_spread": 0.2},
    "unigram": {"text_perplexity": 300.0},
    "copy_last_description": {"bleu": 4.0, "chrf": 21.0, "rouge_l": 0.2},
    "num_test_windows": 3, "tokenizer": "wordpiece-trained-100", "data_source": "synthetic",
}


def solid_frame(value: int) -> np.ndarray:
    """uint8 (3, H, W) frame of one grey value, so tests can tell frames apart by pixels."""
    return np.full((3, HEIGHT, WIDTH), value, dtype=np.uint8)


def frame_value(window_position: int, frame: int) -> int:
    return 10 * window_position + frame          # context 0..3, target 4


def predicted_value(experiment: str, seed: int, window_position: int) -> int:
    return 100 + 40 * ["baseline", "enhanced", "vae"].index(experiment) + 10 * seed + window_position


def make_results_folder(data_dir: Path, experiments: tuple[str, ...] = ("baseline", "enhanced", "vae")) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "floors.json").write_text(json.dumps(FLOORS, sort_keys=True))   # as atomic_write_json does
    pd.DataFrame({
        "window_index": WINDOWS, "story_id": [f"syn-test-{w:05d}" for w in WINDOWS],
        "median_image_image_mae": [0.24, 0.25, 0.26], "mean_image_image_mae": [0.3, 0.3, 0.3],
        "copy_last_frame_image_mae": [0.11, 0.12, 0.13],
        "copy_last_description_chrf": [20.0, 21.0, 22.0],
        "copy_last_description_bleu": [1.0, 2.0, 3.0],
        "copy_last_description_rouge_l": [0.1, 0.2, 0.3],
    }).to_csv(data_dir / "floor_windows.csv", index=False)
    frames = np.stack([np.stack([solid_frame(frame_value(p, f)) for f in range(5)]) for p in range(3)])
    np.savez_compressed(data_dir / "test_windows.npz", window_index=np.array(WINDOWS), frames=frames)
    pd.DataFrame({
        "window_index": WINDOWS, "story_id": [f"syn-test-{w:05d}" for w in WINDOWS],
        **{f"context_text_{i}": [f"window {w} context {i}" for w in WINDOWS] for i in range(1, 5)},
        "target_text": [f"window {w} target <b>" for w in WINDOWS],
    }).to_csv(data_dir / "test_windows.csv", index=False)
    for (experiment, seed), maes in WINDOW_MAE.items():
        if experiment not in experiments:
            continue
        run_dir = data_dir / experiment / f"seed{seed}"
        run_dir.mkdir(parents=True)
        metrics = {
            "image_mae": RUN_MAE[(experiment, seed)], "image_mse": 0.05, "image_ssim": 0.3,
            "image_psnr": 13.0, "text_perplexity": 50.0 + seed, "bleu": 5.0, "chrf": 30.0,
            "rouge_l": 0.3, "prediction_spread": 0.1, "num_params": 1234,
            "train_seconds": 10.0 + seed, "stories_per_second": 20.0, "tokenizer": "wordpiece-trained-100",
            "data_source": "synthetic", "num_test_windows": 3,
            "experiment": experiment, "seed": seed, "versions": {"python": "3"},
        }
        (run_dir / "config.yaml").write_text(yaml.safe_dump({
            "name": experiment, "description": f"{experiment} settings", "seed": seed,
            "model": {"latent_dim": 16 if experiment == "baseline" else 256, "vae": experiment == "vae"},
            "train": {"epochs": 2, "lr": 0.001}}))
        # the hash the current params/ files give for this run, so the report counts it as current
        metrics["config_hash"] = current_config_hash(run_dir, experiment)
        (run_dir / "test_metrics.json").write_text(json.dumps(metrics))
        pd.DataFrame({
            "window_index": WINDOWS, "story_id": [f"syn-test-{w:05d}" for w in WINDOWS],
            "image_mae": maes, "image_mse": [0.05] * 3, "image_ssim": [0.3] * 3, "image_psnr": [13.0] * 3,
            "text_perplexity": [50.0] * 3, "chrf": WINDOW_CHRF[(experiment, seed)], "bleu": [5.0] * 3,
            "rouge_l": [0.3] * 3,
            "generated_text": [f"{experiment} seed {seed} says {w}" for w in WINDOWS],
            "target_text": [f"window {w} target <b>" for w in WINDOWS],
        }).to_csv(run_dir / "predictions.csv", index=False)
        arrays = {"window_index": np.array(WINDOWS),
                  "predicted_frame": np.stack([solid_frame(predicted_value(experiment, seed, p)) for p in range(3)])}
        if experiment == "vae":
            arrays["vae_samples"] = np.stack([np.stack([solid_frame(200 + k) for k in range(2)]) for _ in range(3)])
        np.savez_compressed(run_dir / "predictions.npz", **arrays)
        history = {"epoch": [1, 2]}
        for split in ("train", "val"):
            for term, start in (("loss", 3.0), ("image", 1.0), ("text", 2.0), ("context", 0.5), ("kl", 0.0)):
                history[f"{split}_{term}"] = [start + seed, start / 2 + seed]
        pd.DataFrame(history).to_csv(run_dir / "metrics.csv", index=False)
    return data_dir
