"""What a run folder holds: finished or not, and whether the current parameter files would
still train the same run. Reads files only (no torch), so the report and ``run_all.py`` use it
before any kernel starts.

A run ``<experiment>/seed<k>/`` is *finished* when its ``test_metrics.json`` is a JSON object
holding every contract metric and a ``config_hash``. A finished run is *current* when that hash
equals the hash of the configuration the current ``params/`` files give for the same
experiment, scale, seed, data source, tokenizer and device (read from its ``config.yaml``),
and its recorded code version is this storylib's. Anything else is *stale*: the report leaves
it out and says why.

A finished run is *reused* (by ``run_all.py`` and by notebook 02) only while its
``checkpoints/best.pt`` is the file its metrics came from: ``test_metrics.json`` records that
file's size and sha256 (:func:`checkpoint_digest`), and a ``best.pt`` that differs (random
bytes, another run's weights) makes the run train again (:func:`checkpoint_problem`). An absent
``best.pt`` is no such problem: the committed reference keeps no checkpoints, and its metrics
are still the record of a real run (notebook 02 trains it again when it needs the weights).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import storylib
from storylib.config import ConfigError, config_hash, load_config_file, run_config
from storylib.io import UnreadableJSON, read_json_object
from storylib.results.contract import BEST_CHECKPOINT, CONFIG_FILE, CONTRACT_METRICS, METRICS_FILE
# What a finished run's test_metrics.json holds at least: the metrics, then how it was produced.
CONTRACT_KEYS = (*CONTRACT_METRICS, "num_params", "train_seconds", "stories_per_second", "tokenizer", "data_source",
                 "num_test_windows")


class RunRecordError(ValueError):
    """A run's ``test_metrics.json`` exists but is not a finished run's record; the message says why."""


def read_test_metrics(run_dir: Path | str) -> dict:
    """The metrics of a finished run; :class:`RunRecordError` when the file is not a full record.

    ``FileNotFoundError`` (an unfinished run) passes through.
    """
    path = Path(run_dir) / METRICS_FILE
    advice = "delete it and rerun: the run resumes from its checkpoint or trains again"
    try:
        values = read_json_object(path)
    except UnreadableJSON as error:
        raise RunRecordError(f"{path}: {error}; {advice}") from None
    missing = [key for key in (*CONTRACT_KEYS, "config_hash") if key not in values]
    if missing:
        raise RunRecordError(f"{path} lacks {', '.join(missing)}; {advice}")
    return values


def finished_hash(run_dir: Path | str) -> str | None:
    """The config hash a finished run recorded, or None when the run is unfinished or unreadable."""
    try:
        return str(read_test_metrics(run_dir)["config_hash"])
    except (OSError, RunRecordError):
        return None


def checkpoint_digest(path: Path | str) -> dict:
    """``checkpoint_bytes`` and ``checkpoint_sha256`` of the file at ``path`` (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"checkpoint_bytes": size, "checkpoint_sha256": digest.hexdigest()}


def checkpoint_problem(run_dir: Path | str) -> str | None:
    """Why the ``checkpoints/best.pt`` of the finished run in ``run_dir`` is not the file its
    ``test_metrics.json`` was recorded with (None: it is, or there is nothing to compare: no
    finished record, no ``best.pt``, or a record older than the checkpoint digest).

    The size is compared first, so a replaced file of another size is found without reading it.
    """
    run_dir = Path(run_dir)
    try:
        metrics = read_test_metrics(run_dir)
    except (OSError, RunRecordError):
        return None
    recorded_size, recorded_sha = metrics.get("checkpoint_bytes"), metrics.get("checkpoint_sha256")
    path = run_dir / BEST_CHECKPOINT
    if recorded_sha is None or not path.is_file():
        return None
    what = (f"{path} is not the checkpoint {run_dir / METRICS_FILE} was recorded with "
            f"({recorded_size} bytes, sha256 {str(recorded_sha)[:12]}…)")
    try:
        size = path.stat().st_size
        if size != recorded_size:
            return f"{what}: it has {size} bytes"
        actual = checkpoint_digest(path)["checkpoint_sha256"]
    except OSError as error:
        return f"{what}: it cannot be read ({error.strerror or error})"
    if actual != recorded_sha:
        return f"{what}: its sha256 is {actual[:12]}…"
    return None


def recorded_code_version(metrics: dict) -> str | None:
    """``code_version`` of a record (older records: ``versions.storylib``)."""
    versions = metrics.get("versions")
    return metrics.get("code_version") or (versions.get("storylib") if isinstance(versions, dict) else None)


def current_config_hash(run_dir: Path | str, experiment: str) -> str:
    """The hash the current parameter files give for the run recorded in ``run_dir/config.yaml``
    (same scale, seed, concrete data source, tokenizer and device); ConfigError when they cannot."""
    recorded = load_config_file(Path(run_dir) / CONFIG_FILE)
    current = run_config(experiment, recorded.scale, recorded.seed, recorded.data.source, recorded.data.tokenizer,
                         recorded.train.device)
    return config_hash(current)


def stale_reason(run_dir: Path | str, experiment: str) -> str | None:
    """Why the run in ``run_dir`` must not be reported (None: it is finished and current)."""
    run_dir = Path(run_dir)
    try:
        metrics = read_test_metrics(run_dir)
    except FileNotFoundError:
        return f"no {METRICS_FILE} (unfinished)"
    except (OSError, RunRecordError) as error:
        return str(error)
    if not (run_dir / CONFIG_FILE).is_file():
        return f"no {CONFIG_FILE} beside {METRICS_FILE}, so its configuration cannot be checked; rerun it"
    try:
        current = current_config_hash(run_dir, experiment)
    except (ConfigError, OSError) as error:
        return f"its configuration can no longer be built ({' '.join(str(error).split())}); rerun it"
    if str(metrics["config_hash"]) != current:
        return (f"trained with another configuration (config hash {metrics['config_hash']}; the current "
                f"parameter files give {current}); rerun it, e.g. python run_all.py --only {experiment}")
    version = recorded_code_version(metrics)
    if version is not None and version != storylib.__version__:
        return f"recorded by storylib {version}, this is {storylib.__version__}; rerun it"
    return None
