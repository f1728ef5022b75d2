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
as complete (:func:`is_complete`); it records the size and sha256 of ``checkpoints/best.pt``,
and a run whose ``best.pt`` differs is trained again. A complete run keeps ``best.pt`` only (the
weights its metrics come from); ``STORYLIB_KEEP_CHECKPOINTS=1`` (``run_all.py
--keep-checkpoints``) keeps ``last.pt`` too.

The shared files of a results folder (``floors.json``, ``floor_windows.csv``,
``test_windows.npz``, ``test_windows.csv``) are validated against the prepared data before
every use and rebuilt when they do not match (:func:`ensure_shared_files`).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import storylib
from storylib import evaluation, training
from storylib.config import ExperimentConfig, config_hash, config_to_yaml, load_experiment_config, run_config
from storylib.data import PreparedData, prepare_data, resolve_source, source_label
from storylib.data.tokenizer import resolve_tokenizer_kind
from storylib.device import resolve_device
from storylib.floors import PICTURED_FLOORS, compute_floors, floor_prediction_frames, floor_table
from storylib.io import atomic_save_npz, atomic_write_json, atomic_write_text, exclusive, read_json_object
from storylib.locations import environment_override, resolve_results_dir, resolve_scale  # noqa: F401
from storylib.models import StoryPredictor, build_model, count_parameters
from storylib.provenance import code_revision
from storylib.results.contract import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    FLOORS_FILE,
    FLOOR_WINDOWS_FILE,
    HISTORY_FILE,
    IMAGE_FLOORS,
    LAST_CHECKPOINT,
    LOSS_CURVE_FILE,
    METRICS_FILE,
    PREDICTIONS_FRAMES,
    PREDICTIONS_TABLE,
    SUBSET_FILE,
    TEST_WINDOWS_FRAMES,
    TEST_WINDOWS_TABLE,
    TEXT_FLOORS,
    data_folder,
    run_folder,
)
from storylib.results.windows import saved_subset
from storylib.runs import CONTRACT_KEYS, checkpoint_digest, checkpoint_problem, finished_hash

SHARED_FILES_LOCK = Path(".locks") / "shared-files.lock"
TEST_WINDOW_COLUMNS = ["window_index", "story_id", *(f"context_text_{i}" for i in range(1, 5)), "target_text"]


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
    return run_config(experiment, scale, seed, resolve_source(data), resolve_tokenizer_kind(base.data.tokenizer),
                      device, overrides)


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
    data_dir = data_folder(resolve_results_dir(results_dir), source_label(source), scale)
    run_dir = run_folder(data_dir, experiment, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, config_to_yaml(cfg))
    return Run(
        experiment, seed, scale, cfg, config_hash(cfg), run_dir, data_dir, source, str(resolve_device(device))
    )


# --------------------------------------------------------------------------- shared files


def _read_floors(path: Path) -> dict:
    """floors.json as a dict, or ValueError saying what is wrong with it."""
    try:
        return read_json_object(path)
    except FileNotFoundError:
        raise ValueError("missing") from None


def floors_problem(data_dir: Path, prepared: PreparedData) -> str | None:
    """What is wrong with ``floors.json`` + ``floor_windows.csv`` for ``prepared`` (None: usable)."""
    try:
        floors = _read_floors(data_dir / FLOORS_FILE)
    except ValueError as error:
        return f"floors.json: {error}"
    absent = [name for name in (*IMAGE_FLOORS, *TEXT_FLOORS) if not isinstance(floors.get(name), dict)]
    if absent:
        return f"floors.json: no entry for {', '.join(absent)}"
    expected = {"num_test_windows": len(prepared.test), "tokenizer": prepared.tokenizer.name,
                "data_source": prepared.source, "data_cache": prepared.cache_dir.name}
    for key, value in expected.items():
        if floors.get(key) != value:
            return f"floors.json: {key} is {floors.get(key)!r}, the prepared data has {value!r}"
    try:
        per_window = pd.read_csv(data_dir / FLOOR_WINDOWS_FILE)
    except FileNotFoundError:
        return "floor_windows.csv: missing"
    except (OSError, ValueError) as error:
        return f"floor_windows.csv: unreadable ({type(error).__name__})"
    needed = ["window_index", *(f"{name}_image_mae" for name in IMAGE_FLOORS)]
    if [c for c in needed if c not in per_window.columns] or len(per_window) != len(prepared.test):
        return f"floor_windows.csv: {len(per_window)} rows / columns {list(per_window.columns)[:4]}…, expected " \
               f"{len(prepared.test)} rows with {', '.join(needed)}"
    return None


def saved_window_count(config: ExperimentConfig, prepared: PreparedData) -> int:
    """How many test windows ``test_windows.npz`` keeps (``eval.saved_prediction_windows``, 0 = all)."""
    return min(config.eval.saved_prediction_windows or len(prepared.test), len(prepared.test))


def expected_saved_windows(data_dir: Path, prepared: PreparedData, count: int) -> np.ndarray:
    """The test windows ``test_windows.npz`` should hold: the first ``count``, or the subset a
    committed reference was shrunk to (``saved_windows_subset.json``, by
    :func:`storylib.results.windows.keep_saved_window_subset`) when it records these windows."""
    subset = saved_subset(data_dir) or {}
    kept = subset.get("window_index")
    total = len(prepared.test)
    if (subset.get("of") == total and isinstance(kept, list) and kept
            and all(isinstance(w, int) and 0 <= w < total for w in kept)):
        return np.asarray(kept)
    return np.arange(count)


def test_windows_problem(data_dir: Path, prepared: PreparedData, count: int) -> str | None:
    """What is wrong with ``test_windows.npz`` + ``test_windows.csv`` for ``prepared`` (None: usable)."""
    test = prepared.test
    expected = expected_saved_windows(data_dir, prepared, count)
    try:
        with np.load(data_dir / TEST_WINDOWS_FRAMES, allow_pickle=False) as saved:
            window_index, frames = saved["window_index"], saved["frames"]
            pictured = {f"floor_{name}" for name in PICTURED_FLOORS} <= set(saved.files)
    except FileNotFoundError:
        return "test_windows.npz: missing"
    except Exception as error:  # noqa: BLE001 - a truncated zip raises zipfile, OSError or ValueError
        return f"test_windows.npz: unreadable ({type(error).__name__}: {str(error)[:80]})"
    if frames.dtype != np.uint8 or frames.shape != (len(expected), *test.frames.shape[1:]):
        return (f"test_windows.npz: frames are {frames.dtype} {frames.shape}, "
                f"expected uint8 {(len(expected), *test.frames.shape[1:])}")
    if not np.array_equal(window_index, expected) or not np.array_equal(frames, test.frames[expected]):
        return "test_windows.npz: its frames are not the prepared test windows"
    if not pictured:
        return "test_windows.npz: it lacks the floors' predictions (floor_<name>)"
    try:
        table = pd.read_csv(data_dir / TEST_WINDOWS_TABLE, keep_default_na=False)
    except FileNotFoundError:
        return "test_windows.csv: missing"
    except (OSError, ValueError) as error:
        return f"test_windows.csv: unreadable ({type(error).__name__})"
    if not set(TEST_WINDOW_COLUMNS) <= set(table.columns) or len(table) != len(test):
        return (f"test_windows.csv: {len(table)} rows, columns {list(table.columns)}; expected {len(test)} rows "
                f"with {', '.join(TEST_WINDOW_COLUMNS)}")
    if table["story_id"].astype(str).tolist() != list(test.story_ids):
        return "test_windows.csv: its story ids are not those of the prepared test windows"
    return None


def _write_floors(data_dir: Path, prepared: PreparedData) -> None:
    floors, per_window = compute_floors(prepared)  # floors["data_cache"] names the windows' content key
    atomic_write_text(data_dir / FLOOR_WINDOWS_FILE, per_window.to_csv(index=False))
    atomic_write_json(data_dir / FLOORS_FILE, floors)


def _write_test_windows(data_dir: Path, prepared: PreparedData, count: int) -> None:
    test = prepared.test
    (data_dir / SUBSET_FILE).unlink(missing_ok=True)        # the first ``count`` windows, no subset
    atomic_save_npz(
        data_dir / TEST_WINDOWS_FRAMES,
        window_index=np.arange(count),
        frames=np.asarray(test.frames[:count]),
        **floor_prediction_frames(test, count),
    )
    table = pd.DataFrame({"window_index": np.arange(len(test)), "story_id": test.story_ids})
    for frame in range(4):
        table[f"context_text_{frame + 1}"] = [d[frame] for d in test.descriptions]
    table["target_text"] = [d[4] for d in test.descriptions]
    table = table.join(shot_table(test))
    atomic_write_text(data_dir / TEST_WINDOWS_TABLE, table.to_csv(index=False))


def ensure_shared_files(data_dir: Path, prepared: PreparedData, config: ExperimentConfig) -> list[str]:
    """Validate the shared files of ``data_dir`` against ``prepared`` and rebuild those that do not
    match (missing, unparsable, wrong keys or window count, other data or tokenizer).

    Returns one note per rebuilt group (empty when every file was usable). Holds the folder's
    shared-files lock, so kernels running side by side check and build them once.
    """
    notes = []
    message = f"{data_dir}: another process is writing the shared files (floors, test windows); waiting"
    with exclusive(data_dir / SHARED_FILES_LOCK, message):
        problem = floors_problem(data_dir, prepared)
        if problem:
            _write_floors(data_dir, prepared)
            notes.append(f"{data_dir}: rebuilt floors.json and floor_windows.csv ({problem})")
        count = saved_window_count(config, prepared)
        problem = test_windows_problem(data_dir, prepared, count)
        if problem:
            _write_test_windows(data_dir, prepared, count)
            notes.append(f"{data_dir}: rebuilt test_windows.npz and test_windows.csv ({problem})")
    return notes


def refresh_shared_files(experiment: str, data: str, scale: str, results_dir: str | Path) -> list[str]:
    """:func:`ensure_shared_files` for the results folder of (data, scale), with the data settings
    of ``experiment`` (``run_all.py`` calls it before the report, even when every run is reused)."""
    cfg = planned_config(experiment, data, scale)
    data_dir = data_folder(resolve_results_dir(results_dir), source_label(cfg.data.source), cfg.scale)
    return ensure_shared_files(data_dir, prepare_data(cfg.data), cfg)


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
    """``prepare_data`` + the shared files of ``run.data_dir``, validated and rebuilt when they do not match."""
    prepared = prepare_data(run.config.data)
    for note in ensure_shared_files(run.data_dir, prepared, run.config):
        print(note)
    return prepared


def build(run: Run, prepared: PreparedData) -> StoryPredictor:
    """The seeded model of ``run`` for the prepared vocabulary and image size."""
    torch.manual_seed(run.seed)
    model = build_model(run.config, prepared.tokenizer.vocab_size, prepared.train.image_size)
    print(f"{run.experiment}: {count_parameters(model):,} parameters (vocabulary {prepared.tokenizer.vocab_size:,})")
    return model


def train(run: Run, prepared: PreparedData, model: StoryPredictor) -> pd.DataFrame:
    """Train (resuming, or reusing a finished trajectory) and show the loss curve.

    A complete run (``test_metrics.json`` with this configuration's hash) is not trained again:
    its ``best.pt`` weights are loaded and its recorded history returned. A ``best.pt`` that is
    not the file the record was written with (:func:`storylib.runs.checkpoint_problem`: replaced
    by random bytes or another run's weights) is never reused: the record is removed, since no
    weights on disk back it any more, and the run trains afresh (``last.pt`` would only resume
    the finished trajectory beside the wrong ``best.pt``).
    """
    best = run.run_dir / BEST_CHECKPOINT
    problem = checkpoint_problem(run.run_dir) if finished_hash(run.run_dir) == run.config_hash else None
    if problem:
        print(f"{problem}; removing {run.run_dir / METRICS_FILE} and training this run afresh")
        (run.run_dir / METRICS_FILE).unlink(missing_ok=True)
        history = training.train(run.config, prepared, run.run_dir, resume=False, model=model)
    elif is_complete(run.run_dir, run.config_hash) and best.is_file():
        print(f"{run.run_dir} is a finished run of this configuration: reusing {best.name}, not training again")
        model.load_state_dict(training.load_checkpoint(best)["model"])
        history = training_history(run.run_dir)
    else:
        history = training.train(run.config, prepared, run.run_dir, resume=True, model=model)
    curve = run.run_dir / LOSS_CURVE_FILE
    if curve.is_file():
        from IPython.display import Image

        _display(Image(filename=str(curve)))
    return history


def training_history(run_dir: Path) -> pd.DataFrame:
    """The per-epoch metrics of a run: ``metrics.csv``, else the history saved in its checkpoints
    (``last.pt``, then ``best.pt``), which also restores ``metrics.csv``."""
    path = run_dir / HISTORY_FILE
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        pass
    for checkpoint in (LAST_CHECKPOINT, BEST_CHECKPOINT):
        checkpoint_path = run_dir / checkpoint
        if checkpoint_path.is_file():
            history = pd.DataFrame(training.load_checkpoint(checkpoint_path).get("history", []),
                                   columns=training.METRIC_COLUMNS)
            if len(history):
                print(f"{path} is missing or unreadable: restored from {checkpoint_path}")
                atomic_write_text(path, history.to_csv(index=False))
                return history
    raise FileNotFoundError(
        f"{path} is missing or unreadable and no checkpoint of {run_dir} holds the training history; "
        f"delete {run_dir / 'checkpoints'} and rerun to train this run afresh"
    )


def evaluate(run: Run, prepared: PreparedData, model: StoryPredictor) -> evaluation.EvaluationResult:
    """Score the best checkpoint on the test windows; ``result.table`` sets it beside the floors."""
    best = run.run_dir / BEST_CHECKPOINT
    checkpoint = training.load_checkpoint(best)
    model.load_state_dict(checkpoint["model"])
    model.to(resolve_device(run.config.train.device))
    result = evaluation.evaluate(model, prepared.test, prepared.tokenizer, run.config)
    result.metrics.update(
        num_params=count_parameters(model),
        tokenizer=prepared.tokenizer.name,
        data_source=prepared.source,
        checkpoint=BEST_CHECKPOINT.as_posix(),
        checkpoint_epoch=int(checkpoint["epoch"]),
    )
    if floors_problem(run.data_dir, prepared) is None:
        floors = _read_floors(run.data_dir / FLOORS_FILE)
    else:
        floors = compute_floors(prepared)[0]
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


def record(run: Run, result: evaluation.EvaluationResult, keep_checkpoints: bool | None = None) -> dict:
    """Write predictions.csv / predictions.npz, then test_metrics.json (last: it marks completion).

    Then, the run being complete, ``checkpoints/last.pt`` is deleted (``best.pt`` holds the
    weights the metrics come from) unless ``keep_checkpoints`` (default: the environment's
    ``STORYLIB_KEEP_CHECKPOINTS``, set by ``run_all.py --keep-checkpoints``).
    """
    history = training_history(run.run_dir)
    metrics = dict(result.metrics)
    metrics.update(
        train_seconds=float(history["epoch_seconds"].sum()),
        stories_per_second=float(history["stories_per_second"].mean()),
        config_hash=run.config_hash,
        code_version=storylib.__version__,
        code_revision=code_revision(),  # the git commit, where it can be known (storylib.provenance)
        experiment=run.experiment,
        seed=run.seed,
        scale=run.scale,
        device=run.device,
        versions={"python": platform.python_version(), "torch": torch.__version__, "storylib": storylib.__version__},
    )
    missing = [key for key in CONTRACT_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"evaluation result lacks {', '.join(missing)}; use experiment.evaluate to produce it")
    best = run.run_dir / BEST_CHECKPOINT
    if best.is_file():  # the weights these metrics come from: reuse checks them (storylib.runs)
        metrics.update(checkpoint_digest(best))
    atomic_write_text(run.run_dir / PREDICTIONS_TABLE, result.per_window.to_csv(index=False))
    arrays = {"window_index": result.saved_window_index, "predicted_frame": result.predicted_frames}
    if result.vae_samples is not None:
        arrays["vae_samples"] = result.vae_samples
    atomic_save_npz(run.run_dir / PREDICTIONS_FRAMES, **arrays)
    atomic_write_json(run.run_dir / METRICS_FILE, metrics)
    if keep_checkpoints is None:
        keep_checkpoints = os.environ.get("STORYLIB_KEEP_CHECKPOINTS", "").strip() not in ("", "0")
    if not keep_checkpoints and (run.run_dir / BEST_CHECKPOINT).is_file():
        (run.run_dir / LAST_CHECKPOINT).unlink(missing_ok=True)
    return metrics


def is_complete(run_dir: str | Path, config_hash: str) -> bool:
    """True when ``run_dir/test_metrics.json`` is a full record written for ``config_hash`` and
    ``checkpoints/best.pt``, when present, is the file it was recorded with."""
    return finished_hash(run_dir) == config_hash and checkpoint_problem(run_dir) is None
