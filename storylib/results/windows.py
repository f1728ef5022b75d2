"""The saved test windows of a results folder and each run's predictions for them
(:class:`ResultsFolder`), read lazily for the report's picture grid and the frame browser."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from storylib.io import atomic_save_npz, atomic_write_json, read_json_object
from storylib.results.contract import (
    FLOOR_WINDOWS_FILE,
    PREDICTIONS_FRAMES,
    PREDICTIONS_TABLE,
    SUBSET_FILE,
    TEST_WINDOWS_FRAMES,
    TEST_WINDOWS_TABLE,
    run_folder,
)
from storylib.results.folder import finished_experiments, seed_dirs


def frame_to_hwc(frame: np.ndarray) -> np.ndarray:
    """uint8 (3, H, W) → (H, W, 3) for imshow / PIL."""
    return np.ascontiguousarray(np.transpose(frame, (1, 2, 0)))


class ResultsFolder:
    """Lazy, cached access to the browser/grid files of one ``<data>-<scale>`` folder."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self._predictions: dict[tuple[str, int], tuple[pd.DataFrame, dict]] = {}
        path = self.data_dir / TEST_WINDOWS_FRAMES
        if path.is_file():
            with np.load(path) as arrays:
                self.window_indices = arrays["window_index"].astype(int)
                self.frames = arrays["frames"]
                # floor_<name>: what the classical floors (and the oracle) predict, per window
                self.floor_frames = {name[len("floor_"):]: arrays[name] for name in arrays.files if name.startswith("floor_")}
        else:
            self.window_indices = np.zeros(0, dtype=int)
            self.frames = np.zeros((0, 5, 3, 1, 1), dtype=np.uint8)
            self.floor_frames = {}
        texts_path = self.data_dir / TEST_WINDOWS_TABLE
        self.texts = (pd.read_csv(texts_path, keep_default_na=False).set_index("window_index")
                      if texts_path.is_file() else pd.DataFrame())
        floors_path = self.data_dir / FLOOR_WINDOWS_FILE
        self.floor_windows = (pd.read_csv(floors_path).set_index("window_index")
                              if floors_path.is_file() else pd.DataFrame())
        self.experiments = finished_experiments(self.data_dir)

    def position(self, window_index: int) -> int:
        matches = np.flatnonzero(self.window_indices == int(window_index))
        if not len(matches):
            raise KeyError(f"window {window_index} is not among the saved test windows of {self.data_dir}")
        return int(matches[0])

    def window_frames(self, window_index: int) -> np.ndarray:
        """uint8 (5, 3, H, W): 4 context frames and the true target."""
        return self.frames[self.position(window_index)]

    def floor_frame(self, name: str, window_index: int) -> np.ndarray | None:
        """uint8 (3, H, W): what floor ``name`` predicts for the window, if saved."""
        frames = self.floor_frames.get(name)
        return None if frames is None else frames[self.position(window_index)]

    def window_texts(self, window_index: int) -> list[str]:
        """The 4 context descriptions and the target description."""
        if window_index not in self.texts.index:
            return [""] * 5
        row = self.texts.loc[window_index]
        return [str(row.get(f"context_text_{i}", "")) for i in range(1, 5)] + [str(row.get("target_text", ""))]

    def seeds(self, experiment: str) -> list[int]:
        return [int(folder.name[4:]) for folder in seed_dirs(self.data_dir, experiment)]

    def predictions(self, experiment: str, seed: int | None = None) -> tuple[pd.DataFrame, dict]:
        """(predictions.csv indexed by window_index, predictions.npz arrays) of one run."""
        seeds = self.seeds(experiment)
        seed = seeds[0] if seed is None and seeds else seed
        key = (experiment, int(seed) if seed is not None else -1)
        if key not in self._predictions:
            folder = run_folder(self.data_dir, experiment, seed)
            table = (pd.read_csv(folder / PREDICTIONS_TABLE, keep_default_na=False).set_index("window_index")
                     if (folder / PREDICTIONS_TABLE).is_file() else pd.DataFrame())
            arrays: dict = {}
            if (folder / PREDICTIONS_FRAMES).is_file():
                with np.load(folder / PREDICTIONS_FRAMES) as loaded:
                    arrays = {name: loaded[name] for name in loaded.files}
            self._predictions[key] = (table, arrays)
        return self._predictions[key]

    def _saved(self, name: str, experiment: str, window_index: int, seed: int | None) -> np.ndarray | None:
        """Row of the saved array ``name`` of predictions.npz for one test window, if saved."""
        _, arrays = self.predictions(experiment, seed)
        if name not in arrays or "window_index" not in arrays:
            return None
        matches = np.flatnonzero(arrays["window_index"] == int(window_index))
        return arrays[name][matches[0]] if len(matches) else None

    def predicted_frame(self, experiment: str, window_index: int, seed: int | None = None) -> np.ndarray | None:
        return self._saved("predicted_frame", experiment, window_index, seed)

    def vae_samples(self, experiment: str, window_index: int, seed: int | None = None) -> np.ndarray | None:
        return self._saved("vae_samples", experiment, window_index, seed)

    def window_metrics(self, experiment: str, window_index: int, seed: int | None = None) -> dict:
        table, _ = self.predictions(experiment, seed)
        if table.empty or window_index not in table.index:
            return {}
        return table.loc[window_index].to_dict()


def evenly_spaced(indices: Sequence[int], count: int) -> list[int]:
    """``count`` of ``indices``, evenly spaced from the first to the last (all when fewer)."""
    if not len(indices):
        return []
    positions = np.unique(np.linspace(0, len(indices) - 1, num=min(count, len(indices))).round().astype(int))
    return [int(indices[p]) for p in positions]


def default_windows(data_dir: Path | str, count: int = 4) -> list[int]:
    """``count`` fixed, evenly spaced saved test windows (the same ones on every rebuild)."""
    return evenly_spaced(ResultsFolder(data_dir).window_indices, count)


def saved_subset(data_dir: Path | str) -> dict | None:
    """``saved_windows_subset.json`` of a folder shrunk by :func:`keep_saved_window_subset`
    (``kept``, ``of``, ``window_index``), or None where every window's frames are saved."""
    try:
        return read_json_object(Path(data_dir) / SUBSET_FILE)
    except (OSError, ValueError):
        return None


def keep_saved_window_subset(data_dir: Path | str, count: int) -> list[int]:
    """Shrink a results folder for committing: keep the frames and predicted frames (and VAE
    samples) of ``count`` evenly spaced test windows only, in ``test_windows.npz`` and every
    ``predictions.npz``. Metrics stay for every window (``predictions.csv``, tables, bootstrap);
    ``saved_windows_subset.json`` records the subset, and the frame browser says so.

    A local run saves every test window; this is for the committed reference only.
    """
    data_dir = Path(data_dir)
    folder = ResultsFolder(data_dir)
    previous = saved_subset(data_dir)                  # shrinking a subset again: still "of" every window
    total = int(previous.get("of", len(folder.window_indices))) if previous else len(folder.window_indices)
    kept = evenly_spaced(folder.window_indices, count)
    positions = [folder.position(w) for w in kept]
    floors = {f"floor_{name}": frames[positions] for name, frames in folder.floor_frames.items()}
    atomic_save_npz(data_dir / TEST_WINDOWS_FRAMES, window_index=np.asarray(kept), frames=folder.frames[positions], **floors)
    for path in data_dir.glob(f"*/seed*/{PREDICTIONS_FRAMES}"):
        with np.load(path) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
        keep = np.isin(arrays["window_index"], kept)
        atomic_save_npz(path, **{name: values[keep] for name, values in arrays.items()})
    atomic_write_json(data_dir / SUBSET_FILE, {"kept": len(kept), "of": total, "window_index": kept})
    return kept
