"""The on-disk cache of prepared windows: one folder per content key, verified on every load.

Layout of ``<cache root>/<source label>-<key>/``::

    manifest.json            written last: key inputs, version, per-split summary
    skipped.json             skipped stories per split, with reasons and counts
    tokenizer/               the tokenizer the token ids were made with
    train|val|test/
        frames.npy           uint8 (N, 5, 3, H, W)
        token_ids.npy        int32 (N, 5, L), 0-padded
        windows.json         story ids, frame numbers, descriptions, skip counts and the
                             size + sha256 of each .npy (a truncated or altered file is caught)

The cache root is ``$STORYLIB_CACHE`` or ``~/.cache/storylib``. Every file is written to a
temporary name in the same folder and renamed into place, so an interrupted build never
leaves a file that a later load would trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from storylib.config import DataConfig
from storylib.data.dataset import WindowSplit
from storylib.data.sources import source_label
from storylib.io import read_json_object
from storylib.locations import cache_root

# Bump when the content of a cache folder changes for the same configuration.
CACHE_VERSION = 2  # 2: per-window shot structure in windows.json
SPLIT_NAMES = ("train", "val", "test")
MANIFEST_FILE = "manifest.json"
SKIPPED_FILE = "skipped.json"
WINDOWS_FILE = "windows.json"
TOKENIZER_FOLDER = "tokenizer"
ARRAY_FILES = {"frames": "frames.npy", "token_ids": "token_ids.npy"}
# DataConfig fields that change the cached content (max_*_windows only trim, via head()).
CONTENT_FIELDS = (
    "image_height",
    "image_width",
    "equalize",
    "window_mode",
    "vocab_size",
    "max_text_length",
    "val_fraction",
    "split_seed",
)


# Room left on the disk beyond the file itself (the manifest, windows.json, the tokenizer).
SPACE_MARGIN_BYTES = 16 << 20
LOCKS_FOLDER = ".locks"


class CacheInvalid(Exception):
    """A cache folder is missing, incomplete, stale or corrupt; the message says which."""


class CacheSpaceError(OSError):
    """The cache disk has too little free space for a file about to be written."""


def check_free_space(path: Path, size: int) -> None:
    """Raise :class:`CacheSpaceError` unless the disk of ``path`` has room for ``size`` bytes.

    A memory-mapped write onto a full disk does not fail with an error: the process dies of
    SIGBUS ("Bus error"), so the space is checked before the file is created.
    """
    free = shutil.disk_usage(path.parent).free
    if free < size + SPACE_MARGIN_BYTES:
        raise CacheSpaceError(
            f"no space left for the data cache: writing {path} needs {_megabytes(size + SPACE_MARGIN_BYTES)}, "
            f"{path.parent} has {_megabytes(free)} free. Free some space there or point STORYLIB_CACHE at a "
            "folder on a larger disk, then rerun."
        )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def cache_lock_path(folder: Path) -> Path:
    """The lock of one cache entry: ``<cache root>/.locks/<folder name>.lock``."""
    return folder.parent / LOCKS_FOLDER / f"{folder.name}.lock"


def cache_key_inputs(config: DataConfig, source_identity: dict, tokenizer_kind: str) -> dict:
    """Everything that changes a cache folder's content, as a JSON-able dict."""
    values = dataclasses.asdict(config)
    return {
        "cache_version": CACHE_VERSION,
        "source": source_identity,
        "tokenizer": tokenizer_kind,
        **{name: values[name] for name in CONTENT_FIELDS},
    }


def cache_key(inputs: dict) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def cache_dir_for(source: str, inputs: dict) -> Path:
    return cache_root() / f"{source_label(source)}-{cache_key(inputs)}"


def file_sha256(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class AtomicNpyWriter:
    """A ``.npy`` filled in place through a memory map, then renamed into place.

    Rows may be filled incrementally (images are decoded one story at a time);
    :meth:`commit` keeps the first ``rows`` rows and returns the file's size and sha256.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = self._temporary_name()
        self.array = self._open(self._temporary, shape, dtype)

    def _open(self, temporary: Path, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        check_free_space(self.path, math.prod(shape) * np.dtype(dtype).itemsize)
        return np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)

    def _temporary_name(self) -> Path:
        return self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.tmp"

    def commit(self, rows: int | None = None) -> dict:
        array = self.array
        if rows is not None and rows != array.shape[0]:
            trimmed_name = self._temporary_name()
            trimmed = self._open(trimmed_name, (rows, *array.shape[1:]), array.dtype)
            trimmed[:] = array[:rows]
            trimmed.flush()
            del array, trimmed, self.array
            Path(self._temporary).unlink()
            self._temporary = trimmed_name
        else:
            array.flush()
            del array, self.array
        with open(self._temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        record = {"file": self.path.name, "bytes": os.path.getsize(self._temporary), "sha256": file_sha256(self._temporary)}
        os.replace(self._temporary, self.path)
        return record

    def abort(self) -> None:
        self.__dict__.pop("array", None)
        Path(self._temporary).unlink(missing_ok=True)

    def __enter__(self) -> "AtomicNpyWriter":
        return self

    def __exit__(self, error_type: Any, *_: Any) -> None:
        if error_type is not None:
            self.abort()


def verified_array(folder: Path, record: dict) -> np.ndarray:
    """Memory-map the ``.npy`` described by ``record`` after checking its size and sha256."""
    path = folder / record["file"]
    if not path.is_file():
        raise CacheInvalid(f"{path} is missing")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise CacheInvalid(f"{path} has {size} bytes, expected {record['bytes']} (truncated or replaced)")
    if file_sha256(path) != record["sha256"]:
        raise CacheInvalid(f"{path} does not match its recorded sha256 (altered or corrupt)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CacheInvalid(f"{path} cannot be read as .npy ({error})") from None


def read_json(path: Path) -> dict:
    try:
        return read_json_object(path)
    except FileNotFoundError:
        raise CacheInvalid(f"{path} is missing") from None
    except (OSError, ValueError) as error:
        raise CacheInvalid(f"{path} is unreadable: {error}") from None


def split_metadata(
    story_ids: list[str],
    story_rows: list[int],
    frame_numbers: np.ndarray,
    descriptions_by_row: dict[int, dict[int, str]],
    skipped: dict[str, int],
    arrays: dict[str, dict],
    shots: dict | None = None,
) -> dict:
    """The ``windows.json`` payload; descriptions are stored once per story frame, not per window.

    ``shots``: ``{"cuts": [bool per window], "basis": …, "setups": [[5 labels]], "patterns": […]}``."""
    return {
        "shots": shots or {"cuts": [], "basis": "", "setups": [], "patterns": []},
        "story_ids": story_ids,
        "story_rows": story_rows,
        "frame_numbers": np.asarray(frame_numbers).tolist(),
        "descriptions": {str(row): {str(n): text for n, text in texts.items()} for row, texts in descriptions_by_row.items()},
        "stories": len(set(story_rows)),
        "skipped": skipped,
        "arrays": arrays,
    }


def load_split(folder: Path, name: str, expected_frame_shape: tuple[int, int, int], text_length: int) -> WindowSplit:
    """One verified split of a cache folder (raises :class:`CacheInvalid` when anything is off)."""
    split_folder = folder / name
    meta = read_json(split_folder / WINDOWS_FILE)
    try:
        frames = verified_array(split_folder, meta["arrays"]["frames"])
        token_ids = verified_array(split_folder, meta["arrays"]["token_ids"])
        story_ids = [str(s) for s in meta["story_ids"]]
        rows = [str(r) for r in meta["story_rows"]]
        frame_numbers = np.asarray(meta["frame_numbers"], dtype=np.int32).reshape(len(story_ids), 5)
        descriptions = [
            [meta["descriptions"][row][str(n)] for n in numbers] for row, numbers in zip(rows, frame_numbers.tolist())
        ]
        shots = meta["shots"]
        shot_cuts = np.asarray(shots["cuts"], dtype=bool).reshape(len(story_ids))
        setups = [tuple(str(label) for label in labels) for labels in shots["setups"]]
        patterns = [str(pattern) for pattern in shots["patterns"]]
    except (KeyError, TypeError, ValueError) as error:
        raise CacheInvalid(f"{split_folder / WINDOWS_FILE} is inconsistent ({type(error).__name__}: {error})") from None
    count = len(story_ids)
    if frames.dtype != np.uint8 or frames.shape != (count, 5, *expected_frame_shape):
        raise CacheInvalid(f"{split_folder}: frames are {frames.dtype} {frames.shape}, expected uint8 {(count, 5, *expected_frame_shape)}")
    if token_ids.dtype != np.int32 or token_ids.shape != (count, 5, text_length):
        raise CacheInvalid(f"{split_folder}: token ids are {token_ids.dtype} {token_ids.shape}, expected int32 {(count, 5, text_length)}")
    if frame_numbers.shape != (count, 5) or len(rows) != count or len(setups) != count or len(patterns) != count:
        raise CacheInvalid(f"{split_folder / WINDOWS_FILE}: per-window lists do not have {count} entries")
    return WindowSplit(name, frames, token_ids, story_ids, frame_numbers, descriptions, shot_cuts, str(shots["basis"]), setups, patterns)
