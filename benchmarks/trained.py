"""Train one configuration and score its best checkpoint on the test windows, as notebook 02
does but without a results folder: the shared step of the benchmark scripts that compare
settings outside the default study (``collapse.py``, ``miniature.py``, ``variant.py``)."""

from __future__ import annotations

import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from storylib import evaluation, training
from storylib.config import ExperimentConfig
from storylib.data.prepare import PreparedData, prepare_data
from storylib.models import build_model, count_parameters


def cpu_seconds() -> float:
    """User + sys CPU time of this process (a shared machine inflates it less than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Trained:
    config: ExperimentConfig
    prepared: PreparedData
    history: pd.DataFrame  # metrics.csv: one row per epoch
    metrics: dict  # test_metrics of the best checkpoint
    parameters: int
    train_cpu_s: float
    eval_cpu_s: float


def train_and_evaluate(config: ExperimentConfig, prepared: PreparedData | None = None) -> Trained:
    """Train ``config`` from scratch in a temporary folder, reload its best checkpoint (lowest
    validation loss) and evaluate it on the test windows."""
    prepared = prepared or prepare_data(config.data, progress=False)
    started = cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="storylib-benchmark-") as folder:
        history = training.train(config, prepared, Path(folder), resume=False)  # seeds, then builds
        trained = cpu_seconds()
        model = build_model(config, prepared.tokenizer.vocab_size, prepared.train.image_size)
        model.load_state_dict(training.load_checkpoint(Path(folder) / "checkpoints" / "best.pt")["model"])
    metrics = evaluation.evaluate(model, prepared.test, prepared.tokenizer, config).metrics
    return Trained(config, prepared, history, metrics, count_parameters(model), trained - started,
                   cpu_seconds() - trained)
