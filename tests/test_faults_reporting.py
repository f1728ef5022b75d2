"""Stale runs are never averaged in (issue 12, item 2): the report uses only runs whose recorded
hash is what the current parameter files give, and lists the others with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _results_folder import make_results_folder
from storylib import reporting, runner
from storylib.runs import current_config_hash


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return make_results_folder(tmp_path / "synthetic-smoke")


def rewrite_metrics(run_dir: Path, change) -> None:
    path = run_dir / "test_metrics.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def test_a_run_trained_with_another_configuration_is_left_out_and_listed(data_dir, capsys):
    seed1 = data_dir / "baseline" / "seed1"
    assert reporting.collect_runs(data_dir).query("experiment == 'baseline'")["seed"].tolist() == [0, 1]
    # seed 1 was trained before lr changed in params/baseline.yaml: its hash is the old one
    rewrite_metrics(seed1, lambda m: {**m, "config_hash": "0123456789abcdef"})

    runs = reporting.collect_runs(data_dir)
    assert runs.query("experiment == 'baseline'")["seed"].tolist() == [0]
    assert reporting.experiment_table(data_dir).loc["baseline", "n_seeds"] == 1
    assert reporting.summary_table(runs, reporting.load_floors(data_dir)).loc["baseline", "n_seeds"] in (1, "1")
    assert reporting.seed_dirs(data_dir, "baseline") == [data_dir / "baseline" / "seed0"]
    [(folder, why)] = reporting.stale_runs(data_dir)
    assert folder == Path("baseline/seed1")
    assert "trained with another configuration (config hash 0123456789abcdef" in why
    assert current_config_hash(seed1, "baseline") in why

    text = reporting.describe_runs(data_dir)
    assert "baseline (1 seed)" in text and "- baseline/seed1: trained with another configuration" in text
    reporting.write_report_files(data_dir)
    results_md = (data_dir / "Results.md").read_text()
    assert "Left out of the report (1 stale run):" in results_md and "- baseline/seed1:" in results_md
    assert [line.split(",")[:2] for line in (data_dir / "results.csv").read_text().splitlines()[1:]] == [
        ["baseline", "0"], ["enhanced", "0"], ["enhanced", "1"], ["vae", "0"]]

    capsys.readouterr()
    runner.print_summary(data_dir)                     # what run_all.py prints at its end
    out = capsys.readouterr().out
    assert "Left out of the report (1 stale run):" in out and "baseline/seed1" in out


@pytest.mark.parametrize(("content", "why"), [
    ("[]", "metrics.json: holds a JSON list, not an object"),
    ("{\"image_mae\": 0.1", "metrics.json: not valid JSON"),
    (None, "lacks image_mae"),                            # the right hash, but no metrics
])
def test_an_unusable_test_metrics_file_is_a_stale_run_not_a_crash(data_dir, capsys, content, why):
    path = data_dir / "vae" / "seed0" / "test_metrics.json"
    if content is None:
        content = json.dumps({"config_hash": json.loads(path.read_text())["config_hash"]})
    path.write_text(content)
    runs = reporting.collect_runs(data_dir)
    assert "vae" not in set(runs["experiment"]) and len(runs) == 4
    [(folder, reason)] = reporting.stale_runs(data_dir)
    assert folder == Path("vae/seed0") and why in reason and str(path) in reason
    assert "delete it and rerun" in reason
    runner.print_summary(data_dir)
    assert "vae/seed0" in capsys.readouterr().out


def test_a_run_without_config_yaml_or_from_another_version_is_stale(data_dir):
    (data_dir / "vae" / "seed0" / "config.yaml").unlink()
    rewrite_metrics(data_dir / "enhanced" / "seed1", lambda m: {**m, "code_version": "0.0.1"})
    reasons = dict(reporting.stale_runs(data_dir))
    assert "no config.yaml" in reasons[Path("vae/seed0")]
    assert "recorded by storylib 0.0.1" in reasons[Path("enhanced/seed1")]
    assert set(reporting.finished_experiments(data_dir)) == {"baseline", "enhanced"}


def test_an_invalid_floors_file_does_not_crash_run_alls_summary(data_dir, capsys):
    (data_dir / "floors.json").write_text("{\"median_image\": ")
    runner.print_summary(data_dir)
    err = capsys.readouterr().err
    assert f"the metrics summary of {data_dir} cannot be printed (JSONDecodeError" in err
    assert "Traceback" not in err
