"""What a run folder holds: finished or not, and whether the current parameter files would
still train the same run. Reads files only (no torch), so the report and ``run_all.py`` use it
before any kernel starts.

A run ``<experiment>/seed<k>/`` is *finished* when its ``test_metrics.json`` is a JSON object
holding every contract metric and a ``config_hash``. A finished run is *current* when that hash
equals the hash of the configuration the current ``params/`` files give for the same
experiment, scale, seed, data source, tokenizer and device (read from its ``config.yaml``),
and its recorded code version is this storylib's. Anything else is *stale*: the report leaves
it out and says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import storylib
from storylib.config import ConfigError, config_hash, load_config_file, run_config

METRICS_FILE = "test_metrics.json"
CONFIG_FILE = "config.yaml"
CONTRACT_KEYS = (
    "image_mae", "image_mse", "image_ssim", "image_psnr", "text_perplexity", "bleu", "chrf", "rouge_l",
    "prediction_spread", "num_params", "train_seconds", "stories_per_second", "tokenizer", "data_source",
    "num_test_windows",
)  # fmt: skip


class RunRecordError(ValueError):
    """A run's ``test_metrics.json`` exists but is not a finished run's record; the message says why."""


def read_test_metrics(run_dir: Path | str) -> dict:
    """The metrics of a finished run; :class:`RunRecordError` when the file is not a full record.

    ``FileNotFoundError`` (an unfinished run) passes through.
    """
    path = Path(run_dir) / METRICS_FILE
    advice = "delete it and rerun: the run resumes from its checkpoint or trains again"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise RunRecordError(f"{path} cannot be read as JSON ({error}); {advice}") from None
    if not isinstance(values, dict):
        raise RunRecordError(f"{path} holds a JSON {type(values).__name__}, not an object of metrics; {advice}")
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
