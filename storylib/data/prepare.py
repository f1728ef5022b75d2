"""Build (once) and load (every time) the cached windows of a data configuration.

``prepare_data(config)``: resolve the source, look for a verified cache folder for this exact
content; if there is none (or it is truncated, altered or incomplete), load the stories, cut
windows, decode only the frames a window uses, tokenise, and write the cache atomically.
The second call decodes no image and only memory-maps the arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageOps

from storylib.config import DataConfig
from storylib.data.cache import (
    ARRAY_FILES,
    MANIFEST_FILE,
    SKIPPED_FILE,
    SPLIT_NAMES,
    TOKENIZER_FOLDER,
    WINDOWS_FILE,
    AtomicNpyWriter,
    CacheInvalid,
    cache_dir_for,
    cache_lock_path,
    cache_key,
    cache_key_inputs,
    load_split,
    read_json,
    split_metadata,
)
from storylib.data.dataset import PreparedData, WindowSplit
from storylib.data.parsing import parse_frame_descriptions
from storylib.data.shots import UNKNOWN, cut_flags, frame_l1
from storylib.data.sources import (
    NAMED_SOURCES,
    REQUIRED_COLUMNS,
    DataSourceError,
    load_stories,
    local_parquet_files,
    resolve_source,
    source_identity,
)
from storylib.data.tokenizer import TextTokenizer, build_tokenizer, resolve_tokenizer_kind
from storylib.data.windows import WINDOW_FRAMES, WindowPlan, plan_windows, split_by_story
from storylib.io import atomic_write_json, exclusive, is_interactive, remove_temporary_files
from storylib.io import progress as progress_bar

HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


# --------------------------------------------------------------------------- images


def open_image(value: Any) -> Image.Image:
    """A PIL image from a ``datasets`` image value: ``{"bytes", "path"}``, a PIL image or bytes."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, dict) and value.get("bytes"):
        return Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, dict) and value.get("path"):
        return Image.open(value["path"])
    raise ValueError("image value holds neither bytes nor a path")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB whatever the mode: L, LA, RGBA, P (with or without transparency), CMYK, 16-bit, float."""
    if image.mode == "RGB":
        return image
    if image.mode in HIGH_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def decode_frame(value: Any, height: int, width: int, equalize: bool = False) -> np.ndarray:
    """One frame as uint8 ``(3, height, width)``: RGB, antialiased resize, optional equalisation.

    Raises whatever PIL raises for bytes that are not an image; the caller counts the story
    as ``undecodable_image``.
    """
    with open_image(value) as image:
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            image.draft(image.mode, (width, height))  # decode JPEG at a reduced scale ≥ the target
        image.load()
        rgb = to_rgb(image)
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
        if equalize:
            rgb = ImageOps.equalize(rgb)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


# --------------------------------------------------------------------------- building


@contextlib.contextmanager
def _datasets_progress(enabled: bool) -> Iterator[None]:
    """Silence the ``datasets`` progress bars when ours are off (papermill, CI, pipes)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            datasets.enable_progress_bars()


def image_counts(stories: Any) -> list[int | None]:
    """Images per story, read from the Arrow list offsets (no image bytes are touched); None
    where a story's ``images`` value is null."""
    import pyarrow.compute as pc

    if not len(stories):
        return []
    return pc.list_value_length(stories.with_format("arrow")[:]["images"]).to_pylist()


def check_local_columns(folder: str | Path) -> None:
    """Every parquet file of a local source holds the StoryReasoning columns, else a
    :class:`DataSourceError` naming the file, its split and the missing columns.

    (``datasets`` would unify the splits' schemas and fill a missing column with nulls.)
    """
    import pyarrow.parquet as pq

    for split, files in local_parquet_files(folder).items():
        for file in files:
            try:
                names = pq.read_schema(file).names
            except Exception as error:  # noqa: BLE001 - not a parquet file, truncated, unreadable
                raise DataSourceError(f"{file} ({split} split) cannot be read as parquet ({type(error).__name__}: {error})") from None
            absent = [column for column in REQUIRED_COLUMNS if column not in names]
            if absent:
                raise DataSourceError(
                    f"{file}: the {split} split lacks the column(s) {', '.join(absent)} of the StoryReasoning "
                    f"schema (it has {', '.join(names)})"
                )


def plan_split(story_ids: list[str], texts: list[str], counts: list[int | None], mode: str,
               rows: list[int] | None = None, *more: Any) -> WindowPlan:
    """:func:`plan_windows` (``more``: its further arguments), with a story whose ``images``
    value is null skipped as ``undecodable_image`` (it has no image to decode) instead of
    failing the whole split."""
    rows = list(range(len(story_ids))) if rows is None else list(rows)
    usable = [row for row in rows if counts[row] is not None]
    plan = plan_windows(story_ids, texts, [count or 0 for count in counts], mode, usable, *more)
    plan.skipped += [(str(story_ids[row]), "undecodable_image") for row in rows if counts[row] is None]
    return plan


def check_windows(source: str, plans: dict[str, WindowPlan], stage: str) -> None:
    """A train or test split without a single usable window is an error naming the split and
    its skips (it would fail later, deep inside torch or sacreBLEU)."""
    for name in ("train", "test"):
        plan = plans[name]
        if plan.windows:
            continue
        skipped = ", ".join(f"{reason} {count}" for reason, count in plan.skip_counts().items() if count) or "none"
        raise DataSourceError(
            f"data source {source!r}: the {name} split gives no usable window {stage} "
            f"({len(plan.skipped)} stories skipped: {skipped}). A window needs {WINDOW_FRAMES} consecutive "
            "frames, each with a decodable image and a non-empty <gdi imageN> description; check the data or "
            "choose another source (--data synthetic)."
        )


def _story_image_values(arrow_stories: Any, row: int, frame_numbers: list[int]) -> dict[int, Any]:
    """The raw image values (bytes/path) of the given 1-based frames of one story, not decoded."""
    images = arrow_stories[row : row + 1].column("images")[0].values
    return {number: images[number - 1].as_py() for number in frame_numbers}


def _windows_by_story(plan: WindowPlan) -> dict[int, list[int]]:
    """Window positions in ``plan.windows`` grouped by story row (story order kept)."""
    grouped: dict[int, list[int]] = defaultdict(list)
    for position, window in enumerate(plan.windows):
        grouped[window.story_row].append(position)
    return grouped


def _write_split(
    folder: Path,
    name: str,
    stories: Any,
    plan: WindowPlan,
    tokenizer: TextTokenizer,
    config: DataConfig,
    show_progress: bool,
) -> None:
    """Decode the frames of ``plan``'s windows and write the split's arrays and windows.json."""
    split_folder = folder / name
    frame_shape = (3, config.image_height, config.image_width)
    kept_windows: list = []
    last_target_l1: list[float] = []  # mean |frame 5 − frame 4| per kept window
    arrow_stories = stories.with_format("arrow")
    with AtomicNpyWriter(split_folder / ARRAY_FILES["frames"], (len(plan.windows), WINDOW_FRAMES, *frame_shape), np.uint8) as frames_file:
        grouped = _windows_by_story(plan)
        for story_row, positions in progress_bar(grouped.items(), total=len(grouped), desc=f"{name} frames", enabled=show_progress):
            windows = [plan.windows[p] for p in positions]
            needed = sorted({n for window in windows for n in window.frame_numbers})
            try:
                values = _story_image_values(arrow_stories, story_row, needed)
                decoded = {n: decode_frame(values[n], config.image_height, config.image_width, config.equalize) for n in needed}
            except Exception:  # noqa: BLE001 - any failure to read a frame skips the story
                plan.skipped.append((windows[0].story_id, "undecodable_image"))
                continue
            for window in windows:
                window_frames = np.stack([decoded[n] for n in window.frame_numbers])
                frames_file.array[len(kept_windows)] = window_frames
                last_target_l1.append(float(frame_l1(window_frames[None, -2], window_frames[None, -1])[0]))
                kept_windows.append(window)
        frames_record = frames_file.commit(rows=len(kept_windows))
    plan.windows = kept_windows

    texts = [text for window in kept_windows for text in window.descriptions]
    token_ids = tokenizer.encode_batch(texts, config.max_text_length).reshape(len(kept_windows), WINDOW_FRAMES, config.max_text_length)
    with AtomicNpyWriter(split_folder / ARRAY_FILES["token_ids"], token_ids.shape, np.int32) as tokens_file:
        tokens_file.array[:] = token_ids
        tokens_record = tokens_file.commit()

    descriptions_by_row: dict[int, dict[int, str]] = defaultdict(dict)
    for window in kept_windows:
        descriptions_by_row[window.story_row].update(zip(window.frame_numbers, window.descriptions))
    atomic_write_json(
        split_folder / WINDOWS_FILE,
        split_metadata(
            story_ids=[w.story_id for w in kept_windows],
            story_rows=[w.story_row for w in kept_windows],
            frame_numbers=np.array([w.frame_numbers for w in kept_windows], dtype=np.int32).reshape(-1, WINDOW_FRAMES),
            descriptions_by_row=descriptions_by_row,
            skipped=plan.skip_counts(),
            arrays={"frames": frames_record, "token_ids": tokens_record},
            shots=_shot_metadata(kept_windows, np.asarray(last_target_l1)),
        ),
    )


def _shot_metadata(windows: list, last_target_l1: np.ndarray) -> dict:
    """The ``shots`` entry of windows.json: cut flags (and their basis), set-ups, patterns."""
    setups = [tuple(window.setups) if window.setups else (UNKNOWN,) * WINDOW_FRAMES for window in windows]
    cuts, basis = cut_flags(setups, last_target_l1)
    return {
        "cuts": cuts.tolist(),
        "basis": basis,
        "setups": [list(labels) for labels in setups],
        "patterns": [window.pattern for window in windows],
    }


def _train_texts(stories_text: list[str], plan: WindowPlan) -> list[str]:
    """Every frame description of the train stories that gave windows (the tokenizer's corpus)."""
    rows = sorted({window.story_row for window in plan.windows})
    return [text for row in rows for text in parse_frame_descriptions(stories_text[row]).values() if text]


def split_line(name: str, plan: WindowPlan, seconds: float) -> str:
    """The progress line of one prepared split (when no progress bar is shown)."""
    return (f"storylib: prepared {name}: {len(plan.windows)} windows from {plan.story_count()} stories, "
            f"{len(plan.skipped)} skipped ({seconds:.1f} s)")


def build_cache(config: DataConfig, source: str, tokenizer_kind: str, folder: Path, key_inputs: dict, show_progress: bool) -> None:
    """Load the stories and write every file of the cache folder (manifest last)."""
    started = time.perf_counter()
    (folder / MANIFEST_FILE).unlink(missing_ok=True)  # the folder is incomplete until the end
    if source not in NAMED_SOURCES:
        check_local_columns(source)
    with _datasets_progress(show_progress):
        stories, _ = load_stories(dataclasses.replace(config, source=source))
    hub_train, hub_test = stories["train"], stories["test"]
    train_ids, test_ids = [str(s) for s in hub_train["story_id"]], [str(s) for s in hub_test["story_id"]]
    train_text, test_text = list(hub_train["story"]), list(hub_test["story"])
    train_thoughts, test_thoughts = list(hub_train["chain_of_thought"]), list(hub_test["chain_of_thought"])
    train_counts, test_counts = image_counts(hub_train), image_counts(hub_test)

    train_rows, val_rows = split_by_story(train_ids, config.val_fraction, config.split_seed)
    plans = {
        "train": plan_split(train_ids, train_text, train_counts, config.window_mode, train_rows, train_thoughts),
        "val": plan_split(train_ids, train_text, train_counts, config.window_mode, val_rows, train_thoughts),
        "test": plan_split(test_ids, test_text, test_counts, config.window_mode, None, test_thoughts),
    }
    check_windows(source, plans, "(before decoding)")
    # The requested kind, so "auto" still falls back to "trained" if BERT fails to load after all.
    tokenizer = build_tokenizer(config.tokenizer, _train_texts(train_text, plans["train"]), config.vocab_size, folder / TOKENIZER_FOLDER)
    split_stories = {"train": hub_train, "val": hub_train, "test": hub_test}
    for name in SPLIT_NAMES:
        split_started = time.perf_counter()
        _write_split(folder, name, split_stories[name], plans[name], tokenizer, config, show_progress)
        if not show_progress:   # tqdm showed the stories; otherwise one line per split
            print(split_line(name, plans[name], time.perf_counter() - split_started), file=sys.stderr, flush=True)
    check_windows(source, plans, "(after decoding the images)")

    atomic_write_json(
        folder / SKIPPED_FILE,
        {
            "counts": {name: plans[name].skip_counts() for name in SPLIT_NAMES},
            "stories": {name: [{"story_id": s, "reason": r} for s, r in plans[name].skipped] for name in SPLIT_NAMES},
        },
    )
    atomic_write_json(
        folder / MANIFEST_FILE,
        {
            "key": cache_key(key_inputs),
            "key_inputs": key_inputs,
            "source": source,
            "tokenizer": tokenizer.name,
            "build_seconds": round(time.perf_counter() - started, 3),
            "splits": {
                name: {"stories": plans[name].story_count(), "windows": len(plans[name].windows), "skipped": plans[name].skip_counts()}
                for name in SPLIT_NAMES
            },
        },
    )


def load_cache(folder: Path, key_inputs: dict, config: DataConfig) -> tuple[dict[str, WindowSplit], TextTokenizer, dict]:
    """The verified splits, tokenizer and manifest of ``folder``; :class:`CacheInvalid` otherwise."""
    manifest = read_json(folder / MANIFEST_FILE)
    if manifest.get("key") != cache_key(key_inputs) or manifest.get("key_inputs") != json_round_trip(key_inputs):
        raise CacheInvalid(f"{folder / MANIFEST_FILE} was written for other settings")
    if not all(isinstance(manifest.get("splits", {}).get(name, {}).get("skipped"), dict) for name in SPLIT_NAMES):
        raise CacheInvalid(f"{folder / MANIFEST_FILE} lacks the per-split skip counts")
    frame_shape = (3, config.image_height, config.image_width)
    splits = {name: load_split(folder, name, frame_shape, config.max_text_length) for name in SPLIT_NAMES}
    try:
        tokenizer = TextTokenizer.load(folder / TOKENIZER_FOLDER)
    except Exception as error:  # noqa: BLE001 - missing or corrupt tokenizer files
        raise CacheInvalid(f"{folder / TOKENIZER_FOLDER}: cannot load the tokenizer ({type(error).__name__}: {error})") from None
    if tokenizer.name != manifest.get("tokenizer"):
        raise CacheInvalid(f"{folder / TOKENIZER_FOLDER} holds {tokenizer.name!r}, the manifest says {manifest.get('tokenizer')!r}")
    return splits, tokenizer, manifest


def json_round_trip(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons with files."""
    return json.loads(json.dumps(value))


def summarize(splits: dict[str, WindowSplit], manifest: dict, folder: Path, source: str, tokenizer: TextTokenizer, seconds: float) -> dict:
    """The summary of the splits as handed out (after ``max_*_windows``), with the cached skips."""
    return {
        "splits": {
            name: {
                "stories": len(set(split.story_ids)),
                "windows": len(split),
                "cut_share": round(float(np.mean(split.shot_cuts)), 4) if len(split) else None,
                "cut_basis": split.cut_basis,
                "skipped": dict(manifest["splits"][name]["skipped"]),
            }
            for name, split in splits.items()
        },
        "cache_dir": str(folder),
        "seconds": round(seconds, 3),
        "source": source,
        "tokenizer": tokenizer.name,
    }


def _build_locked(config: DataConfig, source: str, tokenizer_kind: str, folder: Path, key_inputs: dict,
                  show_progress: bool) -> tuple[dict[str, WindowSplit], TextTokenizer, dict]:
    """Build the cache entry under its lock, so two processes never build the same one: the
    second waits (and says so), then finds it built. Holding the lock, the temporary files a
    crashed or interrupted build left are removed first."""
    message = f"storylib: another process is building the data cache {folder}; waiting for it"
    with exclusive(cache_lock_path(folder), message):
        try:
            return load_cache(folder, key_inputs, config)
        except CacheInvalid as why:
            if (folder / MANIFEST_FILE).exists():
                print(f"storylib: rebuilding the data cache: {why}", file=sys.stderr)
        if folder.is_dir():
            for leftover in remove_temporary_files(folder):
                print(f"storylib: removed {leftover}, left by an interrupted build", file=sys.stderr)
        build_cache(config, source, tokenizer_kind, folder, key_inputs, show_progress)
        return load_cache(folder, key_inputs, config)


def prepare_data(config: DataConfig, progress: bool | None = None) -> PreparedData:
    """The windows of ``config``: from a verified cache, else built (once) and cached.

    ``max_train_windows`` / ``max_val_windows`` / ``max_test_windows`` are applied after
    loading with :meth:`WindowSplit.head`, so they never trigger a rebuild.
    """
    started = time.perf_counter()
    show_progress = is_interactive() if progress is None else progress
    source = resolve_source(config.source)
    tokenizer_kind = resolve_tokenizer_kind(config.tokenizer)
    key_inputs = cache_key_inputs(config, source_identity(source, config), tokenizer_kind)
    folder = cache_dir_for(source, key_inputs)
    try:
        splits, tokenizer, manifest = load_cache(folder, key_inputs, config)
    except CacheInvalid:
        splits, tokenizer, manifest = _build_locked(config, source, tokenizer_kind, folder, key_inputs, show_progress)

    limits = {"train": config.max_train_windows, "val": config.max_val_windows, "test": config.max_test_windows}
    splits = {name: split.head(limits[name]) for name, split in splits.items()}
    summary = summarize(splits, manifest, folder, source, tokenizer, time.perf_counter() - started)
    return PreparedData(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        tokenizer=tokenizer,
        source=source,
        summary=summary,
        cache_dir=folder,
    )
