"""One experiment with changed settings, beside the floors of its own test windows (not a test;
prints figures).

Run: ``python benchmarks/variant.py --experiment EXP [--set KEY=VALUE ...] [--seeds 3]
[--scale cpu] [--out variant.json]``, for example

- another synthetic world (a fresh set of stories; the default study's is 0):
  ``--experiment shots --set data.synthetic_seed=1 --out other_world.json``;
- the VAE with a learned prior (SVG-LP): ``--experiment shots_vae --set model.vae_prior=learned``.

It trains ``--experiment`` with the ``--set`` overrides (values read as YAML) for seeds 0..N−1
on one thread, computes the floors of that data's test windows, and prints the model's image MAE
over the strongest legal floor's (the image floor with the lowest MAE over all windows, the oracle
excluded, as in the report) on every window group and pattern, mean of the seeds; the JSON also
holds the ratio to every image floor, best-of-K, sample diversity and the last KL. Written
atomically after every seed, so an interruption keeps what ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from trained import train_and_evaluate

from storylib.config import run_config
from storylib.data.prepare import prepare_data
from storylib.data.tokenizer import resolve_tokenizer_kind
from storylib.floors import compute_floors
from storylib.io import atomic_write_json
from storylib.reporting import is_floor, strongest_floor


EXTRA_METRICS = ("image_mae_best_of_k", "image_mae_best_of_k_irregular", "sample_diversity", "prediction_spread",
                 "text_perplexity", "chrf")


def floor_mae(values: dict, group: str) -> float:
    found = values.get("image_mae") if group == "all" else (values.get(group) or {}).get("image_mae")
    return float("nan") if found is None else float(found)


def ratios(model_mae: dict[str, float], floors: dict) -> dict[str, dict[str, float]]:
    """Model MAE over each image floor's, per group: {floor: {group: ratio}}."""
    return {name: {group: mae / floor_mae(values, group) for group, mae in model_mae.items()}
            for name, values in floors.items() if isinstance(values, dict) and "image_mae" in values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. data.synthetic_seed=1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", default="cpu")
    parser.add_argument("--out", default="variant.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--set {item!r}: expected KEY=VALUE, e.g. data.synthetic_seed=1")
        overrides[key] = yaml.safe_load(value)

    def config(seed: int):
        return run_config(args.experiment, args.scale, seed, "synthetic", resolve_tokenizer_kind("auto"), "cpu", overrides)

    prepared = prepare_data(config(0).data, progress=False)
    floors, _ = compute_floors(prepared)
    strongest, _ = strongest_floor(floors)
    result = {"experiment": args.experiment, "scale": args.scale, "overrides": overrides,
              "strongest_floor": strongest, "floors": {name: values for name, values in floors.items() if is_floor(name, values)
                                                       or name == "oracle_best_context"},
              "seeds": {}}
    for seed in range(args.seeds):
        print(f"seed {seed}: training {args.experiment} with {overrides or 'its own settings'}", flush=True)
        trained = train_and_evaluate(config(seed), prepared)
        groups = {"all": trained.metrics["image_mae"]}
        groups.update({key.removeprefix("image_mae_"): value for key, value in trained.metrics.items()
                       if key.startswith("image_mae_") and not key.startswith("image_mae_best_of_k")})
        val_loss = trained.history["val_loss"].to_numpy()
        result["seeds"][seed] = {"image_mae": groups, "cpu_seconds": trained.train_cpu_s + trained.eval_cpu_s,
                                 **{key: trained.metrics.get(key) for key in EXTRA_METRICS},
                                 "last_train_kl": float(trained.history["train_kl"].iloc[-1]) if "train_kl" in trained.history else None,
                                 "last_val_loss_change": float(val_loss[-1] / val_loss[-2] - 1) if len(val_loss) > 1 else None}
        mean = {group: float(np.mean([entry["image_mae"][group] for entry in result["seeds"].values()]))
                for group in groups}
        result["mean_image_mae"] = mean
        result["over_floor"] = ratios(mean, result["floors"])
        atomic_write_json(Path(args.out), result)
        over = result["over_floor"][strongest]
        print(f"  image MAE {groups['all']:.4f}; mean of {len(result['seeds'])} seed(s) over {strongest}: "
              + ", ".join(f"{group} {ratio:.3f}" for group, ratio in over.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
