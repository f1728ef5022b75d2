"""What the cpu scale's narrower text side costs: one seed of an experiment trained and scored
at the miniature widths (``params/scales/cpu.yaml``, ``at_most:``) and at the published widths
(not a test; prints figures).

    python benchmarks/miniature.py [--experiment enhanced] [--seed 0] [--data synthetic]

Each width trains in this process, one after the other, on one thread; CPU time is user + sys
of this process, which a machine shared with other work inflates less than wall time.
"""

from __future__ import annotations

import argparse
import json

import torch
from trained import train_and_evaluate

from storylib.config import load_experiment_config

SHOWN = ("image_mae", "image_ssim", "prediction_spread", "text_perplexity", "bleu", "chrf", "rouge_l")


def run(experiment: str, seed: int, data: str, published_widths: bool) -> dict:
    overrides: dict = {"data.source": data, "seed": seed, "train.device": "cpu"}
    if published_widths:
        full = load_experiment_config(experiment, "full").model
        overrides.update({"model.embedding_dim": full.embedding_dim, "model.text_hidden": full.text_hidden})
    cfg = load_experiment_config(experiment, "cpu", overrides=overrides)
    trained = train_and_evaluate(cfg)
    return {
        "widths": f"{cfg.model.embedding_dim} / {cfg.model.lstm_layers}x{cfg.model.text_hidden}",
        "parameters": trained.parameters,
        "train_cpu_s": trained.train_cpu_s,
        "eval_cpu_s": trained.eval_cpu_s,
        "final_val_loss": float(trained.history["val_loss"].iloc[-1]),
        **{key: trained.metrics[key] for key in SHOWN},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="enhanced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for published in (False, True):
        row = run(args.experiment, args.seed, args.data, published)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
