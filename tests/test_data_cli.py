"""``python -m storylib.data prepare``: the summary, its JSON form, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storylib.data.__main__ import main
from storylib.data.windows import SKIP_REASONS

TINY = ["--set", "synthetic_train_stories=10", "--set", "synthetic_test_stories=5", "--set", "image_height=16", "--set", "image_width=24", "--set", "tokenizer=trained"]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_summary_has_exactly_the_contract_keys(capsys, cache):
    code, out, _ = run(capsys, "prepare", "--data", "synthetic", "--json", *TINY)
    assert code == 0
    summary = json.loads(out)
    assert set(summary) <= {"splits", "cache_dir", "seconds", "source", "tokenizer"}
    assert {"splits", "cache_dir", "seconds"} <= set(summary)
    assert list(summary["splits"]) == ["train", "val", "test"]
    for split in summary["splits"].values():
        assert set(split) == {"stories", "windows", "cut_share", "cut_basis", "skipped"}
        assert split["cut_basis"] == "set-up labels" and 0.0 <= split["cut_share"] <= 1.0
        assert set(split["skipped"]) == set(SKIP_REASONS)
    assert summary["splits"]["test"]["stories"] == 5
    assert summary["splits"]["train"]["stories"] + summary["splits"]["val"]["stories"] <= 10
    assert Path(summary["cache_dir"]).parent == cache and Path(summary["cache_dir"]).is_dir()
    assert summary["source"] == "synthetic" and summary["tokenizer"].startswith("wordpiece-trained-")

    code, again, _ = run(capsys, "prepare", "--data", "synthetic", "--json", *TINY)
    second = json.loads(again)
    assert code == 0 and second["splits"] == summary["splits"] and second["cache_dir"] == summary["cache_dir"]
    assert second["seconds"] < 5


def test_plain_summary_lists_splits_cache_and_seconds(capsys, cache):
    code, out, _ = run(capsys, "prepare", "--data", "synthetic", *TINY, "--set", "window_mode=sliding")
    assert code == 0
    lines = out.splitlines()
    for name in ("train", "val", "test"):
        assert any(line.strip().startswith(f"{name}:") and "stories" in line and "windows" in line for line in lines)
    assert any(line.startswith("cache: ") and str(cache) in line for line in lines)
    assert lines[-1].startswith("seconds: ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prepare", "--data", "/no/such/folder"], "neither one of auto, storyreasoning, synthetic nor an existing folder"),
        (["prepare", "--data", "synthetic", "--set", "window_mode=diagonal"], "'diagonal' is not allowed"),
        (["prepare", "--data", "synthetic", "--set", "no_such_key=1"], "unknown key 'data.no_such_key'"),
        (["prepare", "--data", "synthetic", "--set", "window_mode"], "--set expects KEY=VALUE"),
        (["prepare", "--no-such-flag"], "unrecognized arguments"),
        (["explode"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, expected):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err and err.startswith("python -m storylib.data: error:")


def test_module_entry_point_exits_2_on_a_missing_folder(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "storylib.data", "prepare", "--data", str(tmp_path / "missing"), "--json"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2 and completed.stdout == ""
    assert len(completed.stderr.strip().splitlines()) == 1 and "missing" in completed.stderr
