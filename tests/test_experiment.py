"""The notebook glue writes every contract file at the smoke scale (synthetic data, no network)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from storylib import experiment
from storylib.config import load_config_file
from storylib.provenance import code_revision

CONTRACT_KEYS = {
    "image_mae", "image_mse", "image_ssim", "image_psnr", "text_perplexity", "bleu", "chrf", "rouge_l",
    "prediction_spread", "num_params", "train_seconds", "stories_per_second", "tokenizer", "data_source",
    "num_test_windows", "config_hash", "experiment", "seed", "scale", "versions", "device", "checkpoint",
    "checkpoint_epoch", "bleu_signature", "chrf_signature",
}  # fmt: skip


def test_a_whole_run_writes_the_results_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("STORYLIB_SCALE", "smoke")
    monkeypatch.delenv("STORYLIB_RESULTS_DIR", raising=False)
    run = experiment.setup(
        "baseline", data="synthetic", scale="cpu", seed=3, results_dir=tmp_path, device="cpu",
        overrides={"model.vae": True, "model.vae_samples": 2},
    )  # fmt: skip
    assert run.scale == "smoke" and run.run_dir == tmp_path / "synthetic-smoke" / "baseline" / "seed3"
    assert run.data_dir == tmp_path / "synthetic-smoke"
    saved = load_config_file(run.run_dir / "config.yaml")
    assert saved.data.source == "synthetic" and saved.seed == 3 and saved.data.tokenizer in ("trained", "bert-base-uncased")
    assert not experiment.is_complete(run.run_dir, run.config_hash)

    prepared = experiment.prepare(run)
    floors = json.loads((run.data_dir / "floors.json").read_text())
    assert floors["num_test_windows"] == len(prepared.test) and floors["data_source"] == "synthetic"
    assert len(pd.read_csv(run.data_dir / "floor_windows.csv")) == len(prepared.test)
    with np.load(run.data_dir / "test_windows.npz") as shared:
        assert shared["frames"].dtype == np.uint8 and shared["frames"].shape[1:3] == (5, 3)
    assert list(pd.read_csv(run.data_dir / "test_windows.csv").columns) == [
        "window_index", "story_id", "context_text_1", "context_text_2", "context_text_3", "context_text_4", "target_text",
        "setup_1", "setup_2", "setup_3", "setup_4", "setup_5", "pattern", "shot", "cut_basis",
    ]  # fmt: skip

    model = experiment.build(run, prepared)
    history = experiment.train(run, prepared, model)
    assert len(history) == run.config.train.epochs
    result = experiment.evaluate(run, prepared, model)
    assert list(result.table.index) == [
        "model", "median_image", "mean_image", "copy_last_frame", "motion_extrapolation", "analogue", "oracle_best_context",
        "unigram", "copy_last_description",
    ]  # fmt: skip
    assert experiment.show_visualization(run).name == f"epoch_{run.config.train.epochs:03d}.png"
    experiment.record(run, result)

    metrics = json.loads((run.run_dir / "test_metrics.json").read_text())
    assert CONTRACT_KEYS <= set(metrics)
    assert metrics["tokenizer"] == prepared.tokenizer.name and metrics["num_test_windows"] == len(prepared.test)
    assert metrics["code_revision"] == code_revision()  # this checkout's commit (None outside one)
    predictions = pd.read_csv(run.run_dir / "predictions.csv")
    assert len(predictions) == len(prepared.test)
    with np.load(run.run_dir / "predictions.npz") as arrays:  # no pickle needed
        assert arrays["predicted_frame"].dtype == np.uint8
        assert arrays["vae_samples"].shape[:2] == (len(arrays["window_index"]), 2)
    for name in ("metrics.csv", "loss_curve.png", "checkpoints/best.pt"):
        assert (run.run_dir / name).is_file()
    assert not (run.run_dir / "checkpoints" / "last.pt").exists()      # a complete run keeps best.pt only
    assert experiment.is_complete(run.run_dir, run.config_hash)
    assert not experiment.is_complete(run.run_dir, "another-hash")

    # a second session reuses the finished run instead of training again
    stamp = (run.run_dir / "checkpoints" / "best.pt").stat().st_mtime_ns
    again = experiment.train(run, prepared, experiment.build(run, prepared))
    assert (run.run_dir / "checkpoints" / "best.pt").stat().st_mtime_ns == stamp
    assert not (run.run_dir / "checkpoints" / "last.pt").exists()
    pd.testing.assert_frame_equal(history, again)


def test_environment_overrides_scale_and_results_folder(tmp_path, monkeypatch):
    """nbval passes no parameters: the notebooks' scale and results folder come from the environment."""
    monkeypatch.setenv("STORYLIB_SCALE", "smoke")
    monkeypatch.setenv("STORYLIB_RESULTS_DIR", str(tmp_path / "elsewhere"))
    assert experiment.resolve_scale("cpu") == "smoke"
    assert experiment.resolve_results_dir("../results") == tmp_path / "elsewhere"
    monkeypatch.delenv("STORYLIB_SCALE")
    monkeypatch.delenv("STORYLIB_RESULTS_DIR")
    assert experiment.resolve_scale("cpu") == "cpu"
    assert experiment.resolve_results_dir("../results") == Path("../results")


def test_shared_files_written_for_other_windows_are_rebuilt(tmp_path, monkeypatch):
    """floors.json names its data cache; one from another generator version is not trusted."""
    monkeypatch.delenv("STORYLIB_RESULTS_DIR", raising=False)
    run = experiment.setup("baseline", data="synthetic", scale="smoke", seed=0, results_dir=tmp_path, device="cpu")
    prepared = experiment.prepare(run)
    floors_path = run.data_dir / "floors.json"
    floors = json.loads(floors_path.read_text())
    assert floors["data_cache"] == prepared.cache_dir.name
    floors["data_cache"] = "synthetic-0000000000000000"  # as a version-1 cache would have written it
    floors_path.write_text(json.dumps(floors))
    (run.data_dir / "test_windows.csv").write_text("window_index\n")
    experiment.prepare(run)
    assert json.loads(floors_path.read_text())["data_cache"] == prepared.cache_dir.name
    assert len(pd.read_csv(run.data_dir / "test_windows.csv")) == len(prepared.test)
