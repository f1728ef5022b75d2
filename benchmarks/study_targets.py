"""The study's targets, read from a results folder: does the learning family beat the strongest floor?

Run: ``python benchmarks/study_targets.py [results/synthetic-cpu] [--family-decoder warp] [--json]``

For every experiment whose image decoder is ``--family-decoder`` (the learning family) it prints,
as means over its seeds:

- its image MAE over the strongest legal floor's (the image floor with the lowest MAE over all
  windows, the oracle excluded), on all windows and where the shot continues / cuts (targets
  ≤ 0.85, ≤ 1.0 and ≤ 0.85), and against every floor on every group and pattern;
- its prediction spread over copy-last's (≥ 0.5: it has not collapsed);
- its perplexity over the unigram floor's (< 0.5) and its chrF against every text floor;
- how flat its validation loss is at the last epoch (last / previous − 1, mean over seeds; ≤ 2 %).

Everything comes from the files of the folder (``test_metrics.json``, ``metrics.csv``,
``floors.json``), so the figures are the report's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from storylib.comparisons import window_groups
from storylib.reporting import collect_runs, load_floors, seed_dirs, strongest_floor

TEXT_FLOORS = ("copy_last_description", "analogue")


def family(data_dir: Path, decoder: str) -> list[str]:
    runs = collect_runs(data_dir)
    names = []
    for experiment in sorted(runs["experiment"].unique()):
        config = yaml.safe_load((seed_dirs(data_dir, experiment)[0] / "config.yaml").read_text(encoding="utf-8"))
        if (config.get("model") or {}).get("image_decoder") == decoder:
            names.append(experiment)
    return names


def flatness(data_dir: Path, experiment: str) -> float:
    changes = []
    for folder in seed_dirs(data_dir, experiment):
        history = pd.read_csv(folder / "metrics.csv")
        if len(history) >= 2:
            changes.append(history["val_loss"].iloc[-1] / history["val_loss"].iloc[-2] - 1)
    return float(sum(changes) / len(changes)) if changes else float("nan")


def targets(data_dir: Path, decoder: str) -> dict:
    runs, floors = collect_runs(data_dir), load_floors(data_dir)
    strongest, strongest_values = strongest_floor(floors)
    groups = [group for group in window_groups(data_dir) if group != "all"]
    image_floors = [name for name, values in floors.items() if isinstance(values, dict) and "image_mae" in values]
    result = {"strongest_floor": strongest, "experiments": {}}
    for experiment in family(data_dir, decoder):
        seeds = runs[runs["experiment"] == experiment]
        mean = seeds.mean(numeric_only=True)

        def mae(group: str) -> float:
            return float(mean["image_mae" if group == "all" else f"image_mae_{group}"])

        def floor_mae(name: str, group: str) -> float:
            values = floors[name]
            return float(values["image_mae"] if group == "all" else (values.get(group) or {}).get("image_mae", float("nan")))

        entry = {
            "seeds": int(len(seeds)),
            "image_mae": {group: mae(group) for group in ("all", *groups)},
            "over_strongest": {group: mae(group) / floor_mae(strongest, group) for group in ("all", *groups)},
            "over_every_floor": {name: {group: mae(group) / floor_mae(name, group) for group in ("all", *groups)}
                                 for name in image_floors},
            "spread_over_copy_last": float(mean["prediction_spread"] / floors["copy_last_frame"]["prediction_spread"]),
            "perplexity_over_unigram": float(mean["text_perplexity"] / floors["unigram"]["text_perplexity"]),
            "chrf": float(mean["chrf"]),
            "chrf_of_text_floors": {name: floors[name]["chrf"] for name in TEXT_FLOORS if "chrf" in floors.get(name, {})},
            "image_mae_best_of_k": float(mean.get("image_mae_best_of_k", float("nan"))),
            "sample_diversity": float(mean.get("sample_diversity", float("nan"))),
            "val_loss_last_change": flatness(data_dir, experiment),
        }
        result["experiments"][experiment] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default="results/synthetic-cpu")
    parser.add_argument("--family-decoder", default="warp")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = targets(Path(args.data_dir), args.family_decoder)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"strongest legal floor: {figures['strongest_floor']}")
    for experiment, entry in figures["experiments"].items():
        ratios = entry["over_strongest"]
        print(f"\n{experiment} ({entry['seeds']} seeds): image MAE {entry['image_mae']['all']:.4f}")
        print("  over the strongest floor: " + ", ".join(f"{g} {r:.3f}" for g, r in ratios.items()))
        print(f"  spread / copy-last {entry['spread_over_copy_last']:.2f}; perplexity / unigram "
              f"{entry['perplexity_over_unigram']:.3f}; chrF {entry['chrf']:.2f} against "
              + ", ".join(f"{n} {v:.2f}" for n, v in entry["chrf_of_text_floors"].items()))
        print(f"  best-of-K {entry['image_mae_best_of_k']:.4f}, diversity {entry['sample_diversity']:.4f}; "
              f"val loss last-epoch change {100 * entry['val_loss_last_change']:+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
