"""Tables and figures for the data exploration notebook (``notebooks/01_data_exploration``).

Every function returns a ``pandas`` object, a dict or a matplotlib ``Figure`` built without
pyplot, so nothing is shown twice and nothing leaks between notebook cells; the notebook
decides what to display.

Why the notebook takes seconds once the data cache exists: the tables of the stories need
their texts and image counts only, which :func:`story_summary` keeps beside the cache
(``stories.json``) instead of loading (for the synthetic source: rendering) every story again;
one story is loaded with its images for :func:`plot_story` (:func:`story_with_images`); the
floors are read from the results folder, where the experiments need them too
(:func:`shared_floors`). Each of these prints what it is doing, so a user sees progress.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from storylib.data.dataset import PreparedData, WindowSplit
from storylib.data.parsing import entity_kind, parse_entities, parse_frame_descriptions
from storylib.data.prepare import decode_frame, image_counts, open_image
from storylib.data.windows import CONTEXT_FRAMES, SKIP_REASONS
from storylib.io import atomic_write_json, read_json_object
from storylib.report.figures import panel_figure, short_text
from storylib.results.contract import FLOORS_FILE

SPLITS = ("train", "val", "test")
STORY_SUMMARY_FILE = "stories.json"  # beside the cached windows: texts and image counts, no pixels


def say(message: str) -> None:
    """One progress line on stderr (papermill and run_all.py show it as the notebook runs)."""
    print(f"storylib: {message}", file=sys.stderr, flush=True)


def story_summary(config: Any, prepared: PreparedData) -> dict[str, pd.DataFrame]:
    """Per split ("train", "test"), one row per story: ``story_id``, ``images`` (the image
    count) and ``story`` (its text): all the story tables of the notebook need.

    Read from ``stories.json`` in the data cache folder when an earlier run wrote it; else the
    stories are loaded once (for the synthetic source: generated, about a minute at the cpu
    scale) and the file is written. The cache folder's key covers the source and its settings,
    so the file always belongs to these stories.
    """
    from storylib.data.sources import load_stories

    path = Path(prepared.cache_dir) / STORY_SUMMARY_FILE
    if path.is_file():
        try:
            loaded = read_json_object(path)
            return {name: pd.DataFrame(rows, columns=["story_id", "images", "story"]) for name, rows in loaded.items()}
        except (OSError, ValueError):
            say(f"{path} is unreadable; loading the stories again")
    started = time.perf_counter()
    say(f"loading the {prepared.source} stories once for their texts and image counts (kept in {path.name})")
    stories, _ = load_stories(config)
    summary = {
        name: pd.DataFrame({"story_id": [str(s) for s in stories[name]["story_id"]],
                            "images": image_counts(stories[name]), "story": list(stories[name]["story"])})
        for name in ("train", "test")
    }
    if Path(prepared.cache_dir).is_dir():
        atomic_write_json(path, {name: frame.to_dict(orient="records") for name, frame in summary.items()})
    say(f"stories loaded in {time.perf_counter() - started:.1f} s")
    return summary


def story_table(summary: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stories and images per split of the source (before windows are cut)."""
    return pd.DataFrame({name: {"stories": len(frame), "images": int(pd.to_numeric(frame["images"]).fillna(0).sum())}
                         for name, frame in summary.items()}).T.rename_axis("split")


def story_with_images(config: Any, index: int = 0, split: str = "train") -> Any:
    """The stories split ``split`` holding at least story ``index`` with its images, for
    :func:`plot_story`. The synthetic generator renders only the first ``index + 1`` stories
    (story k is the same whatever the number generated: each has its own child seed)."""
    from storylib.data.sources import load_stories, resolve_source

    source = resolve_source(config.source)
    if source == "synthetic":
        from storylib.data.synthetic import generate_synthetic_dataset

        counts = {"train": (index + 1, 0), "test": (0, index + 1)}[split]
        return generate_synthetic_dataset(*counts, config.synthetic_seed)[split]
    return load_stories(config)[0][split]


def shared_floors(experiment_config: Any, prepared: PreparedData, data_dir: Path | str) -> dict:
    """floors.json of the results folder ``data_dir``: built there (with the other shared files,
    under their lock) when missing or made for other windows, else read. The experiments
    use the same files, so the floors are computed once for the whole study."""
    from storylib.experiment import ensure_shared_files

    started = time.perf_counter()
    say(f"floors of the {len(prepared.test)} test windows: checking {Path(data_dir) / FLOORS_FILE}")
    for note in ensure_shared_files(Path(data_dir), prepared, experiment_config):
        say(note)
    say(f"floors ready in {time.perf_counter() - started:.1f} s")
    return read_json_object(Path(data_dir) / FLOORS_FILE)


def frames_per_story(stories_split: Any) -> pd.Series:
    """Number of images of each story (index: story id), of a stories split or of one split of
    :func:`story_summary`."""
    counts = stories_split["images"].tolist() if isinstance(stories_split, pd.DataFrame) else image_counts(stories_split)
    return pd.Series(
        counts,
        index=pd.Index([str(s) for s in stories_split["story_id"]], name="story_id"),
        name="frames",
        dtype="int64",
    )


def split_table(prepared: PreparedData) -> pd.DataFrame:
    """Stories, windows and skipped stories per split."""
    rows = {
        name: {
            "stories": info["stories"],
            "windows": info["windows"],
            "skipped": sum(info["skipped"].values()),
        }
        for name, info in prepared.summary["splits"].items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")


def skip_table(prepared: PreparedData) -> pd.DataFrame:
    """Skipped stories per split (rows) and reason (columns), with a total column."""
    table = pd.DataFrame(
        {reason: [prepared.summary["splits"][name]["skipped"].get(reason, 0) for name in SPLITS] for reason in SKIP_REASONS},
        index=pd.Index(SPLITS, name="split"),
    )
    table["total"] = table.sum(axis=1)
    return table


def _text_lengths(split: WindowSplit) -> tuple[np.ndarray, np.ndarray]:
    """Words and tokens (bos and eos included) of every description in ``split``."""
    words = np.array([len(text.split()) for texts in split.descriptions for text in texts], dtype=np.int64)
    tokens = (np.asarray(split.token_ids) != 0).sum(axis=-1).reshape(-1)
    return words, tokens


def description_length_table(prepared: PreparedData) -> pd.DataFrame:
    """Description lengths per split in words and tokens, and the share cut at ``max_text_length``."""
    rows = {}
    for name, split in prepared.splits().items():
        words, tokens = _text_lengths(split)
        max_length = split.token_ids.shape[-1]
        rows[name] = {
            "descriptions": int(words.size),
            "words_mean": float(words.mean()) if words.size else 0.0,
            "words_median": float(np.median(words)) if words.size else 0.0,
            "words_max": int(words.max()) if words.size else 0,
            "tokens_mean": float(tokens.mean()) if tokens.size else 0.0,
            "tokens_max": int(tokens.max()) if tokens.size else 0,
            "truncated_share": float((tokens >= max_length).mean()) if tokens.size else 0.0,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")


def vocabulary_stats(prepared: PreparedData) -> dict:
    """The tokenizer, how much of its vocabulary the train texts use, unknown-token rates.

    ``unk_rate_<split>``: share of word pieces that are ``[UNK]``; ``test_words_unseen_in_train``:
    share of test words (lower-cased) that never occur in the train descriptions.
    """
    tokenizer = prepared.tokenizer
    stats: dict[str, Any] = {"tokenizer": tokenizer.name, "vocab_size": tokenizer.vocab_size}
    special = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id}
    for name, split in prepared.splits().items():
        ids = np.asarray(split.token_ids).reshape(-1)
        pieces = ids[~np.isin(ids, list(special))]
        stats[f"unk_rate_{name}"] = float((pieces == tokenizer.unk_id).mean()) if pieces.size else 0.0
        if name == "train":
            stats["train_tokens_used"] = int(np.unique(pieces).size)
    train_words = {w.lower() for texts in prepared.train.descriptions for text in texts for w in text.split()}
    test_words = [w.lower() for texts in prepared.test.descriptions for text in texts for w in text.split()]
    stats["train_distinct_words"] = len(train_words)
    stats["test_words_unseen_in_train"] = float(np.mean([w not in train_words for w in test_words])) if test_words else 0.0
    return stats


def entity_counts(stories_split: Any) -> pd.DataFrame:
    """Grounded mentions per entity kind (``char``, ``obj``, ``bg``, ``lm`` …) and tag.

    Columns: ``mentions`` (tagged id occurrences), ``stories`` (stories mentioning the kind)
    and ``ids_per_story`` (mean distinct ids of that kind per mentioning story).
    """
    mentions: Counter = Counter()
    ids_by_story: dict[tuple[str, str], list[int]] = {}
    for story in stories_split["story"]:
        distinct: dict[tuple[str, str], set[str]] = {}
        for entity in parse_entities(story):
            for entity_id in entity["ids"]:
                key = (entity_kind(entity_id), entity["tag"])
                mentions[key] += 1
                distinct.setdefault(key, set()).add(entity_id)
        for key, ids in distinct.items():
            ids_by_story.setdefault(key, []).append(len(ids))
    rows = [
        {"kind": kind, "tag": tag, "mentions": mentions[(kind, tag)], "stories": len(ids_by_story[(kind, tag)]),
         "ids_per_story": float(np.mean(ids_by_story[(kind, tag)]))}
        for kind, tag in sorted(mentions)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "tag", "mentions", "stories", "ids_per_story"])


CAPTION_LINES = 6


def _caption(text: str) -> str:
    return short_text(text, max_lines=CAPTION_LINES)


def _story_frame(value: Any, height: int) -> np.ndarray:
    """One story image as (3, height, width) uint8, keeping its aspect ratio."""
    with open_image(value) as image:
        width = max(1, round(height * image.width / max(1, image.height)))
    return decode_frame(value, height, width)


def plot_story(stories_split: Any, index: int, height: int = 120) -> Figure:
    """Every frame of story ``index`` of a stories split, with its parsed description."""
    row = stories_split.with_format("arrow")[index : index + 1]
    story_id = str(row.column("story_id")[0].as_py())
    descriptions = parse_frame_descriptions(str(row.column("story")[0].as_py()))
    values = row.column("images")[0].values
    images = [_story_frame(values[i].as_py(), height) for i in range(len(values))]
    panels = [(image, f"image {i + 1}", _caption(descriptions.get(i + 1, "(no description)")))
              for i, image in enumerate(images)]
    return panel_figure([panels], caption_lines=CAPTION_LINES, title=f"story {story_id}: {len(images)} frames")


def plot_window(split: WindowSplit, index: int) -> Figure:
    """The four context frames and the target of window ``index``, with their descriptions."""
    numbers = [int(n) for n in split.frame_numbers[index]]
    titles = [f"context {k + 1} (image {n})" for k, n in enumerate(numbers[:CONTEXT_FRAMES])]
    titles.append(f"target (image {numbers[CONTEXT_FRAMES]})")
    panels = [(np.asarray(frame), title, _caption(text))
              for frame, title, text in zip(split.frames[index], titles, split.descriptions[index])]
    return panel_figure([panels], caption_lines=CAPTION_LINES,
                        title=f"{split.name} window {index}: story {split.story_ids[index]}")


def shot_table(prepared: PreparedData) -> pd.DataFrame:
    """Per split: windows, the share whose shot cuts at frame 5 (and what the flag rests on),
    and how many windows each shot pattern gave (where the data name their patterns)."""
    rows = []
    for name, split in prepared.splits().items():
        row = {"split": name, "windows": len(split), "cut_share": float(np.mean(split.shot_cuts)) if len(split) else np.nan,
               "cut_basis": split.cut_basis}  # fmt: skip
        row.update(Counter(pattern for pattern in split.patterns if pattern))
        rows.append(row)
    return pd.DataFrame(rows).set_index("split").fillna(0)


def plot_shot_strip(split: WindowSplit, per_pattern: int = 1) -> Figure:
    """Windows of each shot pattern, one row each: every frame titled with its camera set-up,
    the target with whether the shot continues or cuts."""
    chosen: list[int] = []
    for pattern in dict.fromkeys(split.patterns or [""]):
        chosen += [i for i, p in enumerate(split.patterns or [""] * len(split)) if p == pattern][:per_pattern]
    chosen = chosen[:6] or list(range(min(3, len(split))))
    rows = []
    for index in chosen:
        labels = split.setups[index] if split.setups else ("",) * 5
        shot = ("cuts" if split.shot_cuts[index] else "continues") if len(split.shot_cuts) else "?"
        pattern = split.patterns[index] if split.patterns else ""
        titles = [f"set-up {label}" if label else f"frame {frame + 1}" for frame, label in enumerate(labels)]
        titles[CONTEXT_FRAMES] = f"target · {titles[CONTEXT_FRAMES]} · {shot}"
        rows.append([(np.asarray(split.frames[index, frame]), title, f"{pattern or 'window'} {index}" if frame == 0 else "")
                     for frame, title in enumerate(titles)])
    return panel_figure(rows, caption_lines=1, title=f"{split.name}: shot structure of one window per pattern "
                                                     f"({split.cut_basis or 'no shot flags'})")
