"""How long the synthetic set takes to generate and cache, and how it compares with the real data.

Run: ``python benchmarks/synthetic_floors.py [--json] [--train N] [--test N] [--seed S]``

It builds the data cache exactly as the suite does (``prepare_data`` with the default data
settings: first windows, 60×125), in a fresh temporary cache folder, and scores every floor
with :func:`storylib.floors.compute_floors` on the test windows — the numbers ``floors.json``
will hold. Then it prints the calibration figures against StoryReasoning (see the README):

- ``cut_share``: windows whose shot cuts at frame 5 (real data ≈ 0.85);
- ``copy_last_over_median``: copy-last MAE / median-image MAE (real ≈ 0.17 / 0.15);
- ``copy_last_over_median_continues``: the same where the shot continues (real ≈ 0.04 / 0.11);
- ``oracle_over_median``: best context frame (an oracle) / median image (real ≈ 0.13 / 0.15);
- ``motion_over_median``: motion extrapolation / median image (≥ 0.7: one pan no longer
  explains the data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from storylib.config import DataConfig
from storylib.data.prepare import prepare_data
from storylib.floors import compute_floors
from storylib.results.contract import IMAGE_FLOORS, IMAGE_ORACLES, TEXT_FLOORS


def calibration(floors: dict) -> dict:
    """The calibration figures of the README's table, from a floors.json payload."""

    def mae(name: str, group: str | None = None) -> float:
        return float((floors[name][group] if group else floors[name])["image_mae"])

    return {
        "cut_share": floors["cut_share"],
        "copy_last_over_median": mae("copy_last_frame") / mae("median_image"),
        "copy_last_over_median_continues": mae("copy_last_frame", "continues") / mae("median_image", "continues"),
        "oracle_over_median": mae("oracle_best_context") / mae("median_image"),
        "motion_over_median": mae("motion_extrapolation") / mae("median_image"),
        "analogue_over_median": mae("analogue") / mae("median_image"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1500, help="train stories (default 1500)")
    parser.add_argument("--test", type=int, default=300, help="test stories (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    config = DataConfig(source="synthetic", tokenizer="trained", synthetic_train_stories=args.train,
                        synthetic_test_stories=args.test, synthetic_seed=args.seed)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="storylib-bench-cache-") as cache:
        os.environ["STORYLIB_CACHE"] = cache
        started = time.perf_counter()
        prepared = prepare_data(config, progress=False)
        prepare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        floors, _ = compute_floors(prepared)
        floor_seconds = time.perf_counter() - started

    def rounded(value):
        return round(value, 4) if isinstance(value, float) else value

    report = {
        **{key: round(value, 4) for key, value in calibration(floors).items()},
        "generate_and_cache_seconds": round(prepare_seconds, 1),
        "floor_seconds": round(floor_seconds, 1),
        "cpu_count": os.cpu_count(),
        "vocabulary_size": prepared.tokenizer.vocab_size,
        "splits": {name: {k: v for k, v in split.items() if k != "skipped"} for name, split in prepared.summary["splits"].items()},
        "floors": {
            name: {
                key: (rounded(value) if not isinstance(value, dict) else {k: rounded(v) for k, v in value.items()})
                for key, value in floors[name].items()
                if key in ("image_mae", "bleu", "chrf", "rouge_l", "text_perplexity", "continues", "cuts")
            }
            for name in dict.fromkeys((*IMAGE_FLOORS, *IMAGE_ORACLES, *TEXT_FLOORS))
        },
    }
    if args.json:
        json.dump(report, sys.stdout)
        print()
        return
    print(f"generated and cached {args.train} + {args.test} stories in {prepare_seconds:.1f} s; floors in {floor_seconds:.1f} s")
    for key in ("cut_share", "copy_last_over_median", "copy_last_over_median_continues", "oracle_over_median", "motion_over_median", "analogue_over_median"):
        print(f"{key:34s} {report[key]:.3f}")
    for name, values in report["floors"].items():
        parts = [f"{k} {v:.4f}" for k, v in values.items() if not isinstance(v, dict)]
        split = [f"{g} {values[g].get('image_mae', values[g].get('chrf', np.nan)):.4f}" for g in ("continues", "cuts") if g in values]
        print(f"{name:24s} {'  '.join(parts)}   ({', '.join(split)})")
    print(f"vocabulary {report['vocabulary_size']} tokens")


if __name__ == "__main__":
    main()
