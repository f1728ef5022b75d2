"""The data layer under faults (issue 12 items 4, 7, 8; issue 9 "Runs" c): null images, a split
without the images column, data that leaves no window, a full cache disk, temporary files of a
crashed build, two builders of one cache entry, and progress while preparing."""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storylib.data import cache as cache_module
from storylib.data import prepare as prepare_module
from storylib.data.__main__ import main as cli
from storylib.data.cache import MANIFEST_FILE, CacheSpaceError
from storylib.data.prepare import prepare_data
from storylib.data.sources import DataSourceError
from test_prepare import hand_made_stories, stories_split, story_row, tiny_config


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def serve(monkeypatch, served: datasets.DatasetDict) -> list[str]:
    calls = []

    def fake_load_stories(config, timeout=3.0):
        calls.append(config.source)
        return served, config.source

    monkeypatch.setattr(prepare_module, "load_stories", fake_load_stories)
    return calls


def test_a_null_images_value_is_skipped_and_counted_not_a_crash(monkeypatch):
    rows = [story_row(k, 6) for k in range(6)]
    rows[2]["images"] = None
    serve(monkeypatch, datasets.DatasetDict(train=stories_split(rows), test=stories_split([story_row(20, 6)])))
    prepared = prepare_data(tiny_config(val_fraction=0.0))
    assert prepared.summary["splits"]["train"]["skipped"]["undecodable_image"] == 1
    assert len(prepared.train) == 5 and "s002" not in prepared.train.story_ids


def test_a_split_with_no_usable_window_is_an_error_naming_split_and_skips(monkeypatch, cache):
    short = [story_row(k, 3) for k in range(4)]
    serve(monkeypatch, datasets.DatasetDict(train=stories_split(short), test=stories_split([story_row(20, 6)])))
    with pytest.raises(DataSourceError) as error:
        prepare_data(tiny_config(val_fraction=0.0))
    assert "the train split gives no usable window (before decoding) (4 stories skipped: too_few_frames 4)" in str(error.value)
    assert not list(cache.glob("*/" + MANIFEST_FILE))           # nothing a later run would trust


def test_a_split_whose_every_image_is_undecodable_is_an_error_after_decoding(monkeypatch):
    broken = [story_row(20 + k, 6, broken="undecodable_image") for k in range(2)]
    serve(monkeypatch, datasets.DatasetDict(train=stories_split([story_row(k, 6) for k in range(4)]),
                                            test=stories_split(broken)))
    with pytest.raises(DataSourceError, match=r"the test split gives no usable window \(after decoding the images\) "
                                              r"\(2 stories skipped: undecodable_image 2\)"):
        prepare_data(tiny_config(val_fraction=0.0))


def write_parquet_folder(folder: Path, drop_test_images: bool) -> Path:
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([story_row(k, 6) for k in range(6)]), folder / "data" / "train-00000.parquet")
    test = [story_row(20 + k, 6) for k in range(3)]
    if drop_test_images:
        test = [{key: value for key, value in row.items() if key != "images"} for row in test]
    pq.write_table(pa.Table.from_pylist(test), folder / "data" / "test-00000.parquet")
    return folder


def test_a_split_without_the_images_column_names_split_file_and_column(tmp_path, capsys):
    folder = write_parquet_folder(tmp_path / "stories", drop_test_images=True)
    with pytest.raises(DataSourceError) as error:
        prepare_data(tiny_config(source=str(folder)))
    message = str(error.value)
    assert message.startswith(f"{folder / 'data' / 'test-00000.parquet'}: the test split lacks the column(s) images")
    with pytest.raises(SystemExit) as stop:
        cli(["prepare", "--data", str(folder), "--scale", "smoke"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "the test split lacks the column(s) images" in err and "Traceback" not in err


def test_a_full_cache_disk_is_a_clear_error_and_leaves_no_temporary_file(monkeypatch, cache, capsys):
    serve(monkeypatch, hand_made_stories())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CacheSpaceError) as error:
        prepare_data(tiny_config())
    message = str(error.value)
    assert message.startswith("no space left for the data cache: writing ")
    assert "frames.npy needs" in message and "1,000" not in message and "0.0 MB free" in message
    assert "STORYLIB_CACHE" in message
    assert not [p for p in cache.rglob("*.tmp")]
    with pytest.raises(SystemExit) as stop:                 # the command line: one line, exit 2
        cli(["prepare", "--data", "synthetic", "--scale", "smoke"])
    assert stop.value.code == 2 and "no space left for the data cache" in capsys.readouterr().err


def test_temporary_files_left_by_a_crashed_build_are_removed_at_the_next_build(monkeypatch, cache, capsys):
    serve(monkeypatch, hand_made_stories())
    prepared = prepare_data(tiny_config())
    leftover = prepared.cache_dir / "train" / ".frames.npy.0123456789abcdef.tmp"
    leftover.write_bytes(b"half a file")
    (prepared.cache_dir / MANIFEST_FILE).unlink()          # the crash happened mid-build
    capsys.readouterr()
    prepare_data(tiny_config())
    assert not leftover.exists()
    assert f"removed {leftover}, left by an interrupted build" in capsys.readouterr().err


def test_two_builders_of_one_cache_entry_build_it_once(monkeypatch, capsys):
    served = hand_made_stories()
    calls, started, release = [], threading.Event(), threading.Event()

    def slow_load_stories(config, timeout=3.0):
        calls.append(config.source)
        started.set()
        release.wait(30)
        return served, config.source

    monkeypatch.setattr(prepare_module, "load_stories", slow_load_stories)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", prepare_data(tiny_config())))
    first.start()
    started.wait(30)
    second = threading.Thread(target=lambda: results.setdefault("second", prepare_data(tiny_config())))
    second.start()
    err, deadline = "", time.monotonic() + 120
    while "another process is building the data cache" not in err and time.monotonic() < deadline:
        time.sleep(0.1)
        err += capsys.readouterr().err
    release.set()
    first.join(120)
    second.join(120)
    assert "another process is building the data cache" in err      # the second said why it waits
    assert calls == ["synthetic"]                        # then loaded the cache the first one built
    assert results["first"].train.story_ids == results["second"].train.story_ids


def test_prepare_shows_a_line_per_split_when_not_interactive_and_a_bar_otherwise(monkeypatch, capsys, cache):
    serve(monkeypatch, hand_made_stories())
    prepare_data(tiny_config(), progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("storylib: prepared")]
    assert [line.split(":")[1].split()[1] for line in lines] == ["train", "val", "test"]
    assert "windows from" in lines[0] and "skipped" in lines[0]
    prepare_data(tiny_config(image_height=16), progress=True)
    err = capsys.readouterr().err
    assert "train frames" in err and "storylib: prepared" not in err    # tqdm over the stories


def test_prepare_help_says_which_scale_it_prepares_by_default(capsys):
    with pytest.raises(SystemExit):
        cli(["prepare", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "by default this prepares the cpu scale" in out and "--scale smoke" in out


def test_an_interrupted_array_write_leaves_no_temporary_file(tmp_path):
    import numpy as np

    target = tmp_path / "split" / "frames.npy"
    with pytest.raises(KeyboardInterrupt):
        with cache_module.AtomicNpyWriter(target, (4, 3), np.uint8) as writer:
            writer.array[:2] = 1
            raise KeyboardInterrupt
    assert list((tmp_path / "split").iterdir()) == []
