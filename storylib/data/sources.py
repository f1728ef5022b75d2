"""Where the stories come from: the hub, a local copy in hub layout, or the synthetic generator.

One entry point, :func:`load_stories`, chosen by ``DataConfig.source``:

- ``storyreasoning``: ``daniel3303/StoryReasoning`` from the Hugging Face hub (offline from the
  HF cache once downloaded);
- a folder path: parquet files laid out as on the hub (``data/train-*.parquet``,
  ``data/test-*.parquet``);
- ``synthetic``: :func:`storylib.data.synthetic.generate_synthetic_dataset`;
- ``auto``: the real data set when it is cached or the hub answers within seconds, else
  ``synthetic`` with a notice on stderr.

Nothing here waits on network retries: reachability is one socket connect with a timeout,
and offline switches (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) skip it entirely.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from storylib.config import DataConfig
from storylib.locations import cache_root

if TYPE_CHECKING:  # imported lazily at run time: `datasets` is slow to import
    import datasets

HUB_DATASET = "daniel3303/StoryReasoning"
HUB_HOST = ("huggingface.co", 443)
NAMED_SOURCES = ("auto", "storyreasoning", "synthetic")
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
REQUIRED_COLUMNS = ("story_id", "images", "story")


class DataSourceError(RuntimeError):
    """The requested stories (or tokenizer) cannot be loaded; the message says what to do instead."""


def offline_requested() -> bool:
    """True when an offline switch of the Hugging Face libraries is set in the environment."""
    return any(os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for name in OFFLINE_SWITCHES)


_REACHABILITY: dict[str, tuple[float, bool]] = {}
REACHABILITY_MEMORY_S = 60.0


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to huggingface.co:443 within ``timeout`` s; False at once when offline.

    The answer is remembered for a minute, so deciding the source and the tokenizer of one
    run costs at most one wait.
    """
    if offline_requested():
        return False
    remembered = _REACHABILITY.get("hub")
    if remembered and time.monotonic() - remembered[0] < REACHABILITY_MEMORY_S:
        return remembered[1]
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            reachable = True
    except OSError:
        reachable = False
    _REACHABILITY["hub"] = (time.monotonic(), reachable)
    return reachable


def hub_dataset_cached(name: str = HUB_DATASET) -> bool:
    """Whether ``datasets`` has a prepared copy of the hub data set in its cache.

    Mirrors how ``datasets`` finds a cached copy when offline:
    ``<HF_DATASETS_CACHE>/<namespace>___<snake_case_name>/<config>/<version>/<hash>/``.
    """
    from datasets import config as datasets_config
    from datasets.naming import camelcase_to_snakecase

    namespace, dataset = name.split("/")
    root = Path(os.path.expanduser(str(datasets_config.HF_DATASETS_CACHE)))
    folder = root / f"{namespace}___{camelcase_to_snakecase(dataset)}"
    return any(Path(path).is_dir() for path in glob.glob(str(folder / "*" / "*" / "*")))


def _unavailable_paragraph(reason: str) -> str:
    return (
        f"The StoryReasoning data set ({HUB_DATASET}) cannot be loaded: {reason}. "
        "Run once with network access to download it into the Hugging Face cache, "
        "or use the synthetic stories instead (--data synthetic, or data.source: synthetic), "
        "or point --data at a local folder holding a copy as parquet files laid out as on the hub "
        "(data/train-*.parquet and data/test-*.parquet)."
    )


def resolve_source(source: str, timeout: float = 3.0) -> str:
    """Make ``source`` concrete: ``auto`` becomes ``storyreasoning`` or ``synthetic``.

    ``storyreasoning`` and ``synthetic`` pass through; anything else must be an existing
    folder and is returned as given. ``auto`` prints a notice on stderr when it falls back.
    """
    if source in ("storyreasoning", "synthetic"):
        return source
    if source == "auto":
        if hub_dataset_cached() or hub_reachable(timeout):
            return "storyreasoning"
        why = "offline mode is set" if offline_requested() else "huggingface.co cannot be reached"
        print(
            f"storylib: the StoryReasoning data set is not cached and {why}; "
            "using the synthetic stories instead (choose with --data synthetic|storyreasoning|PATH).",
            file=sys.stderr,
        )
        return "synthetic"
    if not source:
        raise DataSourceError("the data source is empty; choose auto, storyreasoning, synthetic or a folder path")
    if not Path(source).expanduser().is_dir():
        raise DataSourceError(
            f"data source {source!r} is neither one of {', '.join(NAMED_SOURCES)} nor an existing folder "
            "of parquet files (data/train-*.parquet, data/test-*.parquet)"
        )
    return source


def source_label(source: str) -> str:
    """A short name for folder names: ``synthetic``, ``storyreasoning`` or ``local-<folder>``."""
    if source in NAMED_SOURCES:
        return source
    name = Path(source).expanduser().resolve().name or "data"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)
    return f"local-{safe}"


def local_parquet_files(folder: str | Path) -> dict[str, list[str]]:
    """The hub-layout parquet files of ``folder`` per split (``data/`` first, then the folder itself)."""
    folder = Path(folder).expanduser()
    for base in (folder / "data", folder):
        files = {split: sorted(glob.glob(str(base / f"{split}-*.parquet"))) for split in ("train", "test")}
        if files["train"] and files["test"]:
            return files
    raise DataSourceError(
        f"{folder}: no parquet files in hub layout; expected data/train-*.parquet and data/test-*.parquet"
    )


def source_identity(source: str, config: DataConfig) -> dict:
    """Everything about the concrete ``source`` that changes the stories (for the cache key)."""
    if source == "storyreasoning":
        return {"source": HUB_DATASET, "revision": config.revision}
    if source == "synthetic":
        from storylib.data.synthetic import GENERATOR_VERSION  # its datasets/pyarrow import only when used

        return {
            "source": "synthetic",
            "generator_version": GENERATOR_VERSION,
            "train": config.synthetic_train_stories,
            "test": config.synthetic_test_stories,
            "seed": config.synthetic_seed,
        }
    files = local_parquet_files(source)
    return {
        "source": "local",
        "folder": str(Path(source).expanduser().resolve()),
        "files": {
            split: [[Path(f).name, os.stat(f).st_size, os.stat(f).st_mtime_ns] for f in paths]
            for split, paths in files.items()
        },
    }


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make ``datasets`` read its cache without trying the network (and so without retries)."""
    import huggingface_hub.constants as hub_constants
    from datasets import config as datasets_config

    saved = datasets_config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets_config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets_config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _load_hub(config: DataConfig, timeout: float) -> datasets.DatasetDict:
    import datasets

    cached = hub_dataset_cached()
    online = hub_reachable(timeout)
    if not cached and not online:
        why = "offline mode is set and it is not in the Hugging Face cache" if offline_requested() else (
            "huggingface.co cannot be reached and it is not in the Hugging Face cache"
        )
        raise DataSourceError(_unavailable_paragraph(why))
    try:
        with contextlib.nullcontext() if online else _hub_offline():
            return datasets.load_dataset(HUB_DATASET, revision=config.revision)
    except Exception as error:  # noqa: BLE001 - any failure becomes one readable paragraph
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataSourceError(_unavailable_paragraph(f"{type(error).__name__}: {first_line}")) from None


def _load_local(folder: str) -> datasets.DatasetDict:
    import datasets

    files = local_parquet_files(folder)
    try:
        # The Arrow copy goes under the storylib cache, not the user's HF cache.
        return datasets.load_dataset("parquet", data_files=files, cache_dir=str(cache_root() / "hf-parquet"))
    except Exception as error:  # noqa: BLE001
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataSourceError(f"{folder}: cannot read its parquet files ({type(error).__name__}: {first_line})") from None


def load_stories(config: DataConfig, timeout: float = 3.0) -> tuple[datasets.DatasetDict, str]:
    """The stories (splits ``train`` and ``test``) and the concrete source name they came from."""
    source = resolve_source(config.source, timeout)
    if source == "storyreasoning":
        stories = _load_hub(config, timeout)
    elif source == "synthetic":
        from storylib.data.synthetic import generate_synthetic_dataset

        stories = generate_synthetic_dataset(
            config.synthetic_train_stories, config.synthetic_test_stories, config.synthetic_seed
        )
    else:
        stories = _load_local(source)
    missing = {"train", "test"} - set(stories)
    if missing:
        raise DataSourceError(f"data source {source!r} has no {' or '.join(sorted(missing))} split")
    for split in ("train", "test"):
        absent = [column for column in REQUIRED_COLUMNS if column not in stories[split].column_names]
        if absent:
            raise DataSourceError(
                f"data source {source!r}: the {split} split lacks the column(s) {', '.join(absent)} "
                f"of the StoryReasoning schema"
            )
    return stories, source
