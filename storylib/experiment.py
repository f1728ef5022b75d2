"""Notebook-facing glue for ``notebooks/02_experiment``: each function is one cell.

    run = experiment.setup(experiment="baseline", data="auto", scale="cpu", seed=0,
                           results_dir="../results", device="auto")
    prepared = experiment.prepare(run)
    model = experiment.build(run, prepared)
    history = experiment.train(run, prepared, model)
    result = experiment.evaluate(run, prepared, model)
    experiment.show_visualization(run)
    experiment.record(run, result)

Files (see ``docs/architecture.md``): ``<results>/<data>-<scale>/`` holds the floors and the test
windows shared by every experiment; ``<experiment>/seed<k>/`` holds one run.
``test_metrics.json`` is written last, so its presence (with the config hash) marks a run
as complete (:func:`is_complete`).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import storylib
from storylib import evaluation, training
from storylib.config import ExperimentConfig, config_hash, config_to_yaml, load_experiment_config
from storylib.data import PreparedData, prepare_data, resolve_source, source_label
from storylib.data.tokenizer import resolve_tokenizer_kind
from storylib.floors import compute_floors, floor_prediction_frames, floor_table
from storylib.io import atomic_save_npz, atomic_write_json, atomic_write_text
from storylib.models import StoryPredictor, build_model, count_parameters

CONTRACT_KEYS = (
    "image_mae", "image_mse", "image_ssim", "image_psnr", "text_perplexity", "bleu", "chrf", "rouge_l",
    "prediction_spread", "num_params", "train_seconds", "stories_per_second", "tokenizer", "data_source",
    "num_test_windows",
)  # fmt: skip


@dataclass
class Run:
    experiment: str
    seed: int
    scale: str
    config: ExperimentConfig
    config_hash: str
    run_dir: Path
    data_dir: Path
    data_source: str
    device: str


def _display(thing) -> None:
    """IPython display inside a notebook; nothing elsewhere (scripts and tests stay quiet)."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(thing)
    except ImportError:  # pragma: no cover
        pass


def environment_override(variable: str, parameter: str, value: object) -> str | None:
    """The value of ``variable`` when it is set and differs from ``value``, announced on stdout
    (every time: a notebook whose parameter is overridden says so in its output)."""
    override = os.environ.get(variable)
    if not override or override == str(value):
        return None
    print(f"note: {variable}={override} in the environment overrides the parameter {parameter}={str(value)!r}")
    return override


def resolve_scale(scale: str) -> str:
    """``STORYLIB_SCALE``, when set, overrides ``scale`` (nbval runs the notebooks in smoke mode)."""
    return environment_override("STORYLIB_SCALE", "scale", scale) or scale


def resolve_results_dir(results_dir: str | Path) -> Path:
    """``STORYLIB_RESULTS_DIR``, when set, overrides ``results_dir`` (tests keep the notebooks'
    smoke runs out of the repository's ``results/``)."""
    return Path(environment_override("STORYLIB_RESULTS_DIR", "results_dir", results_dir) or results_dir)


def planned_config(
    experiment: str,
    data: str = "auto",
    scale: str = "cpu",
    seed: int = 0,
    device: str = "auto",
    overrides: dict | None = None,
) -> ExperimentConfig:
    """The configuration :func:`setup` builds, without touching the disk: "auto" data and
    tokenizer made concrete, so the hash says which data and tokenizer a run used."""
    scale = resolve_scale(scale)
    base = load_experiment_config(experiment, scale)
    values = {
        "seed": seed,
        "data.source": resolve_source(data),
        "data.tokenizer": resolve_tokenizer_kind(base.data.tokenizer),
        "train.device": device,
        **(overrides or {}),
    }
    return load_experiment_config(experiment, scale, overrides=values)


def planned_config_hash(experiment: str, data: str, scale: str, seed: int, device: str = "auto") -> str:
    return config_hash(planned_config(experiment, data, scale, seed, device))


def setup(
    experiment: str = "baseline",
    data: str = "auto",
    scale: str = "cpu",
    seed: int = 0,
    results_dir: str | Path = "../results",
    device: str = "auto",
    overrides: dict | None = None,
) -> Run:
    """Resolve the data source and tokenizer, build the config, create the run folder and
    write ``config.yaml``. ``STORYLIB_SCALE`` in the environment overrides ``scale``."""
    cfg = planned_config(experiment, data, scale, seed, device, overrides)
    scale, source = cfg.scale, cfg.data.source
    data_dir = resolve_results_dir(results_dir) / f"{source_label(source)}-{scale}"
    run_dir = data_dir / experiment / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
    return Run(
        experiment, seed, scale, cfg, config_hash(cfg), run_dir, data_dir, source, str(training.resolve_device(device))
    )


def _floors_match(path: Path, prepared: PreparedData) -> bool:
    try:
        floors = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (
        floors.get("num_test_windows") == len(prepared.test)
        and floors.get("tokenizer") == prepared.tokenizer.name
        and floors.get("data_source") == prepared.source
        and floors.get("data_cache") == prepared.cache_dir.name  # same content key: not a stale generator
    )


def shot_table(split) -> pd.DataFrame:
    """Per window: the set-up of each of its 5 frames, the story's shot pattern, and whether
    the shot continues or cuts at frame 5 (with the basis of that flag)."""
    table = pd.DataFrame(index=pd.RangeIndex(len(split)))
    if split.setups:
        for frame in range(5):
            table[f"setup_{frame + 1}"] = [labels[frame] for labels in split.setups]
        table["pattern"] = split.patterns
    if len(split.shot_cuts) == len(split):
        table["shot"] = np.where(split.shot_cuts, "cuts", "continues")
        table["cut_basis"] = split.cut_basis
    return table


def prepare(run: Run) -> PreparedData:
    """``prepare_data`` + the shared files of ``run.data_dir`` when missing (or stale)."""
    prepared = prepare_data(run.config.data)
    floors_path = run.data_dir / "floors.json"
    stale = not _floors_match(floors_path, prepared)  # other windows: every shared file is rebuilt
    if stale or not (run.data_dir / "floor_windows.csv").is_file():
        floors, per_window = compute_floors(prepared)
        atomic_write_text(run.data_dir / "floor_windows.csv", per_window.to_csv(index=False))
        atomic_write_json(floors_path, floors)
    if stale or not (run.data_dir / "test_windows.npz").is_file() or not (run.data_dir / "test_windows.csv").is_file():
        test = prepared.test
        count = run.config.eval.saved_prediction_windows or len(test)
        count = min(count, len(test))
        atomic_save_npz(
            run.data_dir / "test_windows.npz",
            window_index=np.arange(count),
            frames=np.asarray(test.frames[:count]),
            **floor_prediction_frames(test, count),
        )
        table = pd.DataFrame({"window_index": np.arange(len(test)), "story_id": test.story_ids})
        for frame in range(4):
            table[f"context_text_{frame + 1}"] = [d[frame] for d in test.descriptions]
        table["target_text"] = [d[4] for d in test.descriptions]
        table = table.join(shot_table(test))
        atomic_write_text(run.data_dir / "test_windows.csv", table.to_csv(index=False))
    return prepared


def build(run: Run, prepared: PreparedData) -> StoryPredictor:
    """The seeded model of ``run`` for the prepared vocabulary and image size."""
    torch.manual_seed(run.seed)
    model = build_model(run.config, prepared.tokenizer.vocab_size, prepared.train.image_size)
    print(f"{run.experiment}: {count_parameters(model):,} parameters (vocabulary {prepared.tokenizer.vocab_size:,})")
    return model


def train(run: Run, prepared: PreparedData, model: StoryPredictor) -> pd.DataFrame:
    """Train (resuming, or reusing a finished trajectory) and show the loss curve."""
    history = training.train(run.config, prepared, run.run_dir, resume=True, model=model)
    curve = run.run_dir / "loss_curve.png"
    if curve.is_file():
        from IPython.display import Image

        _display(Image(filename=str(curve)))
    return history


def evaluate(run: Run, prepared: PreparedData, model: StoryPredictor) -> evaluation.EvaluationResult:
    """Score the best checkpoint on the test windows; ``result.table`` sets it beside the floors."""
    best = run.run_dir / "checkpoints" / "best.pt"
    checkpoint = training.load_checkpoint(best)
    model.load_state_dict(checkpoint["model"])
    model.to(training.resolve_device(run.config.train.device))
    result = evaluation.evaluate(model, prepared.test, prepared.tokenizer, run.config)
    result.metrics.update(
        num_params=count_parameters(model),
        tokenizer=prepared.tokenizer.name,
        data_source=prepared.source,
        checkpoint="checkpoints/best.pt",
        checkpoint_epoch=int(checkpoint["epoch"]),
    )
    floors_path = run.data_dir / "floors.json"
    floors = json.loads(floors_path.read_text()) if floors_path.is_file() else compute_floors(prepared)[0]
    result.table = floor_table(floors, result.metrics)
    _display(result.table)
    return result


def show_visualization(run: Run) -> Path | None:
    """Display the last ``visualizations/epoch_XXX.png`` and return its path."""
    pictures = sorted((run.run_dir / "visualizations").glob("epoch_*.png"))
    if not pictures:
        return None
    from IPython.display import Image

    _display(Image(filename=str(pictures[-1])))
    return pictures[-1]


def record(run: Run, result: evaluation.EvaluationResult) -> dict:
    """Write predictions.csv / predictions.npz, then test_metrics.json (last: it marks completion)."""
    history = pd.read_csv(run.run_dir / "metrics.csv")
    metrics = dict(result.metrics)
    metrics.update(
        train_seconds=float(history["epoch_seconds"].sum()),
        stories_per_second=float(history["stories_per_second"].mean()),
        config_hash=run.config_hash,
        experiment=run.experiment,
        seed=run.seed,
        scale=run.scale,
        device=run.device,
        versions={"python": platform.python_version(), "torch": torch.__version__, "storylib": storylib.__version__},
    )
    missing = [key for key in CONTRACT_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"evaluation result lacks {', '.join(missing)}; use experiment.evaluate to produce it")
    atomic_write_text(run.run_dir / "predictions.csv", result.per_window.to_csv(index=False))
    arrays = {"window_index": result.saved_window_index, "predicted_frame": result.predicted_frames}
    if result.vae_samples is not None:
        arrays["vae_samples"] = result.vae_samples
    atomic_save_npz(run.run_dir / "predictions.npz", **arrays)
    atomic_write_json(run.run_dir / "test_metrics.json", metrics)
    return metrics


def is_complete(run_dir: str | Path, config_hash: str) -> bool:
    """True when ``run_dir/test_metrics.json`` exists and was written for ``config_hash``."""
    try:
        return json.loads((Path(run_dir) / "test_metrics.json").read_text()).get("config_hash") == config_hash
    except (OSError, ValueError):
        return False
