"""The saved predictions of the runs of one results folder, read lazily, and frames as PNG."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image as PILImage

from storylib.results.contract import PREDICTIONS_FRAMES, PREDICTIONS_TABLE, run_folder
from storylib.results.folder import run_folders
from storylib.results.windows import frame_to_hwc


class RunFiles:
    """The saved outputs of the runs of one results folder, read lazily and kept.

    A run's ``predictions.csv`` is read on first use (per-window metrics and texts); each array
    of its ``predictions.npz`` is decompressed only when a frame of it is shown.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, int], pd.DataFrame] = {}
        self._arrays: dict[tuple[str, int, str], dict[int, np.ndarray] | None] = {}
        self.seeds: dict[str, list[int]] = {}
        for experiment, folder, stale in run_folders(data_dir):   # one listing for the whole session
            if stale is None:
                self.seeds.setdefault(experiment, []).append(int(folder.name[4:]))

    def table(self, experiment: str, seed: int) -> pd.DataFrame:
        key = (experiment, seed)
        with self._lock:
            if key not in self._tables:
                path = run_folder(self.data_dir, experiment, seed) / PREDICTIONS_TABLE
                self._tables[key] = (pd.read_csv(path, keep_default_na=False).set_index("window_index")
                                     if path.is_file() else pd.DataFrame())
            return self._tables[key]

    def metrics(self, experiment: str, window: int, seed: int) -> dict:
        table = self.table(experiment, seed)
        return {} if table.empty or window not in table.index else table.loc[window].to_dict()

    def frame(self, name: str, experiment: str, window: int, seed: int) -> np.ndarray | None:
        """Row ``window`` of array ``name`` (``predicted_frame``, ``vae_samples``) of the run."""
        key = (experiment, seed, name)
        with self._lock:
            if key not in self._arrays:
                self._arrays[key] = None
                path = run_folder(self.data_dir, experiment, seed) / PREDICTIONS_FRAMES
                if path.is_file():
                    with np.load(path) as loaded:
                        if name in loaded.files and "window_index" in loaded.files:
                            rows = loaded["window_index"]
                            values = loaded[name]
                            self._arrays[key] = {int(w): values[i] for i, w in enumerate(rows)}
            by_window = self._arrays[key]
        return None if by_window is None else by_window.get(int(window))


def png_bytes(frames: np.ndarray) -> bytes:
    """PNG of one uint8 (3, H, W) frame, or of (K, 3, H, W) frames side by side."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim == 4:
        frames = np.concatenate(list(frames), axis=2)
    buffer = io.BytesIO()
    PILImage.fromarray(frame_to_hwc(frames)).save(buffer, format="PNG")
    return buffer.getvalue()
