"""A finished smoke run under faults (issue 12 items 3, 6, 10; issue 9 "Runs" b): shared files
that are missing, damaged or for other data are rebuilt; a damaged checkpoint's advice works
when followed and never suggests unpickling; a deleted metrics.csv is restored from the
checkpoints; a complete run keeps best.pt only and is still reused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from storylib import experiment, runner
from storylib.runs import checkpoint_problem
from storylib.training import CheckpointError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One complete baseline run at the smoke scale on synthetic data (seconds)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("STORYLIB_SCALE", raising=False)
        patch.delenv("STORYLIB_RESULTS_DIR", raising=False)
        patch.delenv("STORYLIB_KEEP_CHECKPOINTS", raising=False)
        results = tmp_path_factory.mktemp("results")
        run = experiment.setup("baseline", data="synthetic", scale="smoke", seed=0, results_dir=results, device="cpu")
        prepared = experiment.prepare(run)
        model = experiment.build(run, prepared)
        experiment.train(run, prepared, model)
        experiment.record(run, experiment.evaluate(run, prepared, model), keep_checkpoints=True)
        yield run, prepared


def copy_run(run: experiment.Run, folder: Path) -> experiment.Run:
    """The finished run copied to ``folder`` (same configuration), so each test damages its own copy."""
    shutil.copytree(run.data_dir, folder / run.data_dir.name)
    data_dir = folder / run.data_dir.name
    return experiment.Run(run.experiment, run.seed, run.scale, run.config, run.config_hash,
                          data_dir / run.experiment / f"seed{run.seed}", data_dir, run.data_source, run.device)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def other_tokenizer(path: Path) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), "tokenizer": "bert-base-uncased"}))


def fewer_rows(path: Path) -> None:
    pd.read_csv(path).head(3).to_csv(path, index=False)


def other_stories(path: Path) -> None:
    table = pd.read_csv(path, keep_default_na=False)
    table["story_id"] = table["story_id"][::-1].tolist()
    table.to_csv(path, index=False)


@pytest.mark.parametrize(("name", "damage", "why"), [
    ("floors.json", Path.unlink, "floors.json: missing"),
    ("floors.json", lambda p: p.write_text("{not json"), "floors.json: not valid JSON"),
    ("floors.json", lambda p: p.write_text("[]"), "floors.json: holds a JSON list, not an object"),
    ("floors.json", lambda p: p.write_text(json.dumps({"median_image": {}})), "floors.json: no entry for mean_image"),
    ("floors.json", other_tokenizer, "floors.json: tokenizer is 'bert-base-uncased', the prepared data has"),
    ("floor_windows.csv", fewer_rows, "floor_windows.csv: 3 rows"),
    ("test_windows.npz", truncate, "test_windows.npz: unreadable"),
    ("test_windows.npz", Path.unlink, "test_windows.npz: missing"),
    ("test_windows.csv", other_stories, "test_windows.csv: its story ids are not those of the prepared test windows"),
    ("test_windows.csv", fewer_rows, "test_windows.csv: 3 rows"),
])
def test_a_damaged_shared_file_is_detected_and_rebuilt(finished, tmp_path, capsys, name, damage, why):
    run, prepared = finished
    copy = copy_run(run, tmp_path)
    original = (copy.data_dir / name).read_bytes()
    damage(copy.data_dir / name)
    capsys.readouterr()
    experiment.prepare(copy)                       # what every notebook 02 does first
    out = capsys.readouterr().out
    assert f"{copy.data_dir}: rebuilt" in out and why in out
    assert (copy.data_dir / name).read_bytes() == original
    assert experiment.ensure_shared_files(copy.data_dir, prepared, copy.config) == []   # usable now


def test_valid_shared_files_are_not_rewritten(finished, tmp_path):
    run, prepared = finished
    copy = copy_run(run, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in copy.data_dir.iterdir() if p.is_file()}
    assert experiment.ensure_shared_files(copy.data_dir, prepared, copy.config) == []
    assert {p.name: p.stat().st_mtime_ns for p in copy.data_dir.iterdir() if p.is_file()} == stamps


def test_damaged_best_checkpoint_advice_works_when_followed(finished, tmp_path):
    run, prepared = finished
    copy = copy_run(run, tmp_path)
    best = copy.run_dir / "checkpoints" / "best.pt"
    truncate(best)
    model = experiment.build(copy, prepared)
    with pytest.raises(CheckpointError) as error:
        experiment.evaluate(copy, prepared, model)
    message = str(error.value)
    assert str(best) in message and "weights_only" not in message and "pickle" not in message
    assert f"delete the folder {best.parent}" in message

    shutil.rmtree(best.parent)                                   # follow the advice
    model = experiment.build(copy, prepared)
    experiment.train(copy, prepared, model)
    result = experiment.evaluate(copy, prepared, model)
    metrics = experiment.record(copy, result)
    assert metrics["image_mae"] == pytest.approx(json.loads((run.run_dir / "test_metrics.json").read_text())["image_mae"])


def test_deleting_only_best_pt_trains_afresh_instead_of_failing(finished, tmp_path, capsys):
    run, prepared = finished
    copy = copy_run(run, tmp_path)
    (copy.run_dir / "checkpoints" / "best.pt").unlink()
    (copy.run_dir / "test_metrics.json").unlink()               # not complete: it must train
    model = experiment.build(copy, prepared)
    experiment.train(copy, prepared, model)
    assert "best.pt is missing; training afresh" in capsys.readouterr().out
    experiment.evaluate(copy, prepared, model)                   # best.pt exists again


@pytest.mark.parametrize("keep_last", [True, False])
def test_record_restores_a_deleted_metrics_csv_from_the_checkpoints(finished, tmp_path, capsys, keep_last):
    run, prepared = finished
    copy = copy_run(run, tmp_path)
    history = pd.read_csv(copy.run_dir / "metrics.csv")
    (copy.run_dir / "metrics.csv").unlink()
    if not keep_last:
        (copy.run_dir / "checkpoints" / "last.pt").unlink()      # best.pt of the last epoch holds the history too
    model = experiment.build(copy, prepared)
    result = experiment.evaluate(copy, prepared, model)
    metrics = experiment.record(copy, result, keep_checkpoints=True)
    assert "metrics.csv is missing or unreadable: restored from" in capsys.readouterr().out
    restored = pd.read_csv(copy.run_dir / "metrics.csv")
    assert restored["epoch"].tolist()[: len(restored)] == history["epoch"].tolist()[: len(restored)]
    assert metrics["train_seconds"] == pytest.approx(restored["epoch_seconds"].sum())


def test_a_complete_run_keeps_best_pt_only_unless_asked_and_is_still_reused(finished, tmp_path, monkeypatch):
    run, prepared = finished
    copy = copy_run(run, tmp_path)
    checkpoints = copy.run_dir / "checkpoints"
    model = experiment.build(copy, prepared)
    result = experiment.evaluate(copy, prepared, model)
    monkeypatch.setenv("STORYLIB_KEEP_CHECKPOINTS", "1")          # run_all.py --keep-checkpoints
    experiment.record(copy, result)
    assert (checkpoints / "last.pt").is_file() and (checkpoints / "best.pt").is_file()
    monkeypatch.delenv("STORYLIB_KEEP_CHECKPOINTS")
    experiment.record(copy, result)
    assert not (checkpoints / "last.pt").exists() and (checkpoints / "best.pt").is_file()
    # reuse is decided by test_metrics.json's hash, not by last.pt
    assert runner.recorded_hash(copy.run_dir) == copy.config_hash
    stamp = (checkpoints / "best.pt").stat().st_mtime_ns
    experiment.train(copy, prepared, experiment.build(copy, prepared))
    assert (checkpoints / "best.pt").stat().st_mtime_ns == stamp and not (checkpoints / "last.pt").exists()


def test_test_metrics_with_the_right_hash_but_no_metrics_is_not_a_finished_run(finished, tmp_path):
    run, _ = finished
    copy = copy_run(run, tmp_path)
    (copy.run_dir / "test_metrics.json").write_text(json.dumps({"config_hash": copy.config_hash}))
    assert not experiment.is_complete(copy.run_dir, copy.config_hash)
    assert runner.recorded_hash(copy.run_dir) is None             # run_all.py runs it again
    (copy.run_dir / "test_metrics.json").write_text("[]")
    assert not experiment.is_complete(copy.run_dir, copy.config_hash)
    assert runner.recorded_hash(copy.run_dir) is None


def test_saved_test_windows_match_the_prepared_frames(finished):
    run, prepared = finished
    with np.load(run.data_dir / "test_windows.npz") as saved:
        count = experiment.saved_window_count(run.config, prepared)
        assert np.array_equal(saved["frames"], prepared.test.frames[:count])


def test_two_kernels_facing_missing_shared_files_build_them_once(finished, tmp_path, monkeypatch):
    import threading

    run, prepared = finished
    copy = copy_run(run, tmp_path)
    (copy.data_dir / "floors.json").unlink()
    real_write, writes = experiment._write_floors, []

    def slow_write(data_dir, prepared):
        writes.append(1)
        real_write(data_dir, prepared)

    monkeypatch.setattr(experiment, "_write_floors", slow_write)
    notes = []
    threads = [threading.Thread(target=lambda: notes.append(experiment.ensure_shared_files(copy.data_dir, prepared,
                                                                                            copy.config)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert writes == [1] and sorted(len(n) for n in notes) == [0, 1]


# --------------------------------------------------------------------------- checkpoint integrity (issue 17)


def test_record_names_the_size_and_sha256_of_best_pt(finished):
    run, _ = finished
    best = run.run_dir / "checkpoints" / "best.pt"
    recorded = json.loads((run.run_dir / "test_metrics.json").read_text())
    assert recorded["checkpoint_bytes"] == best.stat().st_size
    assert recorded["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert checkpoint_problem(run.run_dir) is None and experiment.is_complete(run.run_dir, run.config_hash)


def random_bytes_of_the_same_size(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())


def another_runs_checkpoint(path: Path) -> None:
    """A valid storylib checkpoint of another experiment (as a copied-in ``best.pt`` would be)."""
    from storylib.models import build_model
    from storylib.training import save_checkpoint

    other = experiment.planned_config("enhanced", "synthetic", "smoke")
    save_checkpoint(path, {"model": build_model(other, 80, (16, 24)).state_dict(), "epoch": 1})


@pytest.mark.parametrize(("replace", "why"), [
    (random_bytes_of_the_same_size, "its sha256 is"),
    (another_runs_checkpoint, ": it has "),
])
def test_a_replaced_best_pt_is_not_reused_the_run_trains_again(finished, tmp_path, capsys, replace, why):
    run, prepared = finished
    copy = copy_run(run, tmp_path)                               # last.pt kept (--keep-checkpoints)
    best = copy.run_dir / "checkpoints" / "best.pt"
    recorded = json.loads((copy.run_dir / "test_metrics.json").read_text())
    replace(best)

    problem = checkpoint_problem(copy.run_dir)
    assert problem.startswith(f"{best} is not the checkpoint {copy.run_dir / 'test_metrics.json'} was recorded with "
                              f"({recorded['checkpoint_bytes']} bytes, sha256 {recorded['checkpoint_sha256'][:12]}…): ")
    assert why in problem
    assert not experiment.is_complete(copy.run_dir, copy.config_hash)
    assert runner.recorded_hash(copy.run_dir) is None            # run_all.py does not reuse it
    plan = runner.plan_experiment_runs(["baseline"], 1, "synthetic", "smoke", "results", copy.data_dir, Path("notebooks"),
                                       force=False, planned_hash=lambda *_: copy.config_hash)
    assert not plan[0].reused
    assert f"baseline seed0: {problem}; not reused, it trains again" in capsys.readouterr().err

    model = experiment.build(copy, prepared)
    experiment.train(copy, prepared, model)                      # notebook 02: trains afresh, not from last.pt
    out = capsys.readouterr().out
    assert f"{problem}; removing {copy.run_dir / 'test_metrics.json'} and training this run afresh" in out
    assert "resuming" not in out and "reusing" not in out
    metrics = experiment.record(copy, experiment.evaluate(copy, prepared, model))
    assert metrics["image_mae"] == pytest.approx(recorded["image_mae"])     # the same run, trained again
    assert metrics["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert experiment.is_complete(copy.run_dir, copy.config_hash) and runner.recorded_hash(copy.run_dir) == copy.config_hash


def test_a_run_without_best_pt_or_without_a_recorded_digest_is_still_reused(finished, tmp_path):
    """The committed reference keeps no checkpoints; records written before the digest have none."""
    run, _ = finished
    copy = copy_run(run, tmp_path)
    shutil.rmtree(copy.run_dir / "checkpoints")
    assert checkpoint_problem(copy.run_dir) is None and runner.recorded_hash(copy.run_dir) == copy.config_hash

    older = copy_run(run, tmp_path / "older")
    path = older.run_dir / "test_metrics.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in record.items() if not k.startswith("checkpoint_")}))
    random_bytes_of_the_same_size(older.run_dir / "checkpoints" / "best.pt")
    assert checkpoint_problem(older.run_dir) is None and runner.recorded_hash(older.run_dir) == older.config_hash


def test_a_reference_shrunk_to_a_subset_of_windows_keeps_it_and_a_damaged_subset_is_rebuilt(finished, tmp_path):
    from storylib.results.windows import keep_saved_window_subset

    run, prepared = finished
    copy = copy_run(run, tmp_path)
    kept = keep_saved_window_subset(copy.data_dir, 2)
    assert len(kept) == 2 and len(prepared.test) > 2
    shrunk = (copy.data_dir / "test_windows.npz").read_bytes()
    assert experiment.ensure_shared_files(copy.data_dir, prepared, copy.config) == []   # the subset is usable
    assert (copy.data_dir / "test_windows.npz").read_bytes() == shrunk
    subset_file = copy.data_dir / "saved_windows_subset.json"
    subset_file.write_text(json.dumps({"kept": 2, "of": len(prepared.test), "window_index": [kept[0], kept[0] + 1]}))
    [note] = experiment.ensure_shared_files(copy.data_dir, prepared, copy.config)   # frames of other windows
    assert "rebuilt test_windows.npz" in note and "not the prepared test windows" in note
    assert not subset_file.exists()
    with np.load(copy.data_dir / "test_windows.npz") as saved:
        assert saved["window_index"].tolist() == list(range(len(prepared.test)))
    assert experiment.ensure_shared_files(copy.data_dir, prepared, copy.config) == []
