"""Why the published decoder collapses onto the median image: one factor changed at a time.

Run: ``python benchmarks/collapse.py [--experiment enhanced] [--seed 0] [--max-train-windows N]
[--out results/synthetic-cpu/collapse_diagnostic.json]``

It trains the published family's ``enhanced`` (the capacity control) at the cpu scale on the
synthetic data, as ``run_all.py`` would, then again with one setting changed each time:

- ``weights_1_1``: image / text loss weights 1 / 1 instead of the published 0.2 / 10;
- ``mse``: MSE image loss instead of L1;
- ``epochs_x3``: three times the cpu epochs;
- ``latent_16``: latent 16 instead of 256;

and scores each on the test windows beside the median-image floor: image MAE, prediction
spread, and whether it left the floor (MAE more than 0.005 below it and a spread above 0.01).
The JSON is written atomically; ``notebooks/03`` shows it when it sits in the results folder.
One seed: a diagnostic, not a comparison (the study's seeds are in ``run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from trained import train_and_evaluate

from storylib.config import config_to_dict, run_config
from storylib.data.tokenizer import resolve_tokenizer_kind
from storylib.floors import compute_floors
from storylib.io import atomic_write_json
from storylib.results.contract import COLLAPSE_FILE

LEFT_FLOOR_MAE = 0.005  # below the median floor by more than this …
LEFT_FLOOR_SPREAD = 0.01  # … with predictions that differ between stories by more than this


def variants(experiment: str, scale: str) -> dict[str, dict]:
    """The one-factor changes, as config overrides of ``experiment`` at ``scale``."""
    base = run_config(experiment, scale, 0, "synthetic", "trained", "cpu")
    return {
        "published": {},
        "weights_1_1": {"train.image_weight": 1.0, "train.text_weight": 1.0},
        "mse": {"train.image_loss": "mse"},
        "epochs_x3": {"train.epochs": 3 * base.train.epochs},
        "latent_16": {"model.latent_dim": 16},
    }


def run_variant(experiment: str, scale: str, seed: int, overrides: dict, max_train_windows: int) -> dict:
    values = {**overrides, "train.device": "cpu"}
    if max_train_windows:
        values["data.max_train_windows"] = max_train_windows
    config = run_config(experiment, scale, seed, "synthetic", resolve_tokenizer_kind("auto"), "cpu", values)
    trained = train_and_evaluate(config)
    floors, _ = compute_floors(trained.prepared)
    median = floors["median_image"]["image_mae"]
    metrics = trained.metrics
    return {
        "overrides": overrides,
        "image_mae": metrics["image_mae"],
        "prediction_spread": metrics["prediction_spread"],
        "median_image_mae": median,
        "analogue_mae": floors["analogue"]["image_mae"],
        "left_the_median_floor": bool(metrics["image_mae"] < median - LEFT_FLOOR_MAE
                                      and metrics["prediction_spread"] > LEFT_FLOOR_SPREAD),
        "final_val_image": float(trained.history["val_image"].iloc[-1]),
        "epochs": config.train.epochs,
        "cpu_seconds": trained.train_cpu_s + trained.eval_cpu_s,
        "config": config_to_dict(config),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="enhanced")
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train-windows", type=int, default=0, help="0 = every train window")
    parser.add_argument("--only", nargs="*", help="a subset of the variants")
    parser.add_argument("--out", default=f"results/synthetic-cpu/{COLLAPSE_FILE}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    chosen = variants(args.experiment, args.scale)
    if args.only:
        chosen = {name: chosen[name] for name in args.only}
    results = {"experiment": args.experiment, "scale": args.scale, "seed": args.seed,
               "max_train_windows": args.max_train_windows, "variants": {}}
    for name, overrides in chosen.items():
        print(f"{name}: training {args.experiment} with {overrides or 'the published settings'}", flush=True)
        result = run_variant(args.experiment, args.scale, args.seed, overrides, args.max_train_windows)
        results["variants"][name] = result
        print(f"  image MAE {result['image_mae']:.4f} (median floor {result['median_image_mae']:.4f}), "
              f"spread {result['prediction_spread']:.4f}, left the floor: {result['left_the_median_floor']}",
              flush=True)
        atomic_write_json(Path(args.out), results)  # after every variant: an interruption keeps what ran
    print(json.dumps({name: {k: v for k, v in r.items() if k != "config"} for name, r in results["variants"].items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
