"""Command line of the data layer.

``python -m storylib.data prepare --data SOURCE [--json] [--scale SCALE] [--set KEY=VALUE …]``
builds (or reuses) the cached windows and prints, per split, the stories, windows and skips
by reason, the cache folder and the seconds taken. ``--json`` prints one JSON object instead.
While it builds, a progress bar over the stories shows in a terminal, one line per split
elsewhere (on stderr). Bad input, or a disk without room for the cache, ends with a one-line
error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn, Sequence

import yaml

from storylib.config import SCALES, ConfigError, load_experiment_config
from storylib.data.cache import SPLIT_NAMES
from storylib.data.sources import DataSourceError

PROGRAM = "python -m storylib.data"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {PROGRAM} prepare --help)")


def fail(message: str) -> NoReturn:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROGRAM, description="Prepare and cache the windows of a data source.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    prepare = commands.add_parser(
        "prepare", help="build or reuse the cached windows and print a summary",
        description="Build (or reuse) the cached windows of a data source and print a summary. The cache "
                    "depends on the scale: by default this prepares the cpu scale (the cache of "
                    "run_all.py --scale cpu); for smoke runs, use --scale smoke. Progress: a bar over the "
                    "stories in a terminal, one line per split otherwise.",
    )
    prepare.add_argument("--data", default="auto", help="auto | storyreasoning | synthetic | PATH to hub-layout parquet files")
    prepare.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    prepare.add_argument("--scale", choices=SCALES, default="cpu", help="scale whose data settings (image size, story counts) apply; each scale has its own "
                              "cache (default: cpu, the cache of run_all.py --scale cpu; smoke runs need "
                              "--scale smoke)")
    prepare.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a data setting, e.g. --set window_mode=sliding (repeatable)",
    )  # fmt: skip
    return parser


def parse_overrides(pairs: Sequence[str]) -> dict:
    """``["window_mode=sliding", "image_height=32"]`` → ``{"data.window_mode": "sliding", …}``."""
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            fail(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[f"data.{key.strip().removeprefix('data.')}"] = yaml.safe_load(value) if value.strip() else ""
    return overrides


def format_summary(summary: dict) -> str:
    lines = [f"source: {summary['source']}    tokenizer: {summary['tokenizer']}"]
    for name in SPLIT_NAMES:
        split = summary["splits"][name]
        skipped = ", ".join(f"{reason} {count}" for reason, count in split["skipped"].items() if count) or "none"
        lines.append(f"{name:>5}: {split['stories']:>6} stories {split['windows']:>7} windows   skipped: {skipped}")
    lines.append(f"cache: {summary['cache_dir']}")
    lines.append(f"seconds: {summary['seconds']:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {**parse_overrides(args.overrides), "data.source": args.data}
        config = load_experiment_config("baseline", scale=args.scale, overrides=overrides).data
        from storylib.data.prepare import prepare_data

        prepared = prepare_data(config)
    except (ConfigError, DataSourceError, OSError) as error:   # OSError: e.g. no space for the cache
        fail(" ".join(str(error).split()))
    summary = prepared.summary
    if args.json:
        print(json.dumps(summary, sort_keys=False))
    else:
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
