"""Training: seeded determinism, exact resume, checkpoints, failure messages, augmentation."""

import pandas as pd
import pytest
import torch

from storylib.augment import augment_batch
from storylib.models import build_model
from storylib.training import (
    METRIC_COLUMNS,
    CheckpointError,
    NonFiniteLossError,
    kl_weight_at,
    load_checkpoint,
    train,
)
from tests.helpers_fake_data import make_batch, make_prepared, make_split, tiny_config

# both: dropout, VAE sampling, cross-modal attention and OneCycle all draw on the RNG / schedule
TRAINING = {"train.epochs": 2, "model.dropout": 0.2, "train.visualize_epochs": [1]}


def test_metrics_files_and_checkpoints_are_written(tmp_path):
    cfg = tiny_config("both", **TRAINING)
    history = train(cfg, make_prepared(), tmp_path)
    assert list(history.columns) == METRIC_COLUMNS and list(history["epoch"]) == [1, 2]
    assert list(pd.read_csv(tmp_path / "metrics.csv").columns) == METRIC_COLUMNS
    for name in ("loss_curve.png", "visualizations/epoch_001.png", "visualizations/epoch_002.png"):
        assert (tmp_path / name).stat().st_size > 0
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert checkpoint["epoch"] == 2 and set(checkpoint["rng"]) >= {"torch", "numpy", "python"}
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    assert history["kl_weight"].tolist() == [kl_weight_at(cfg.train, 1), kl_weight_at(cfg.train, 2)]
    assert 0 < history["kl_weight"][0] < history["kl_weight"][1]  # warm-up over 5 epochs


def test_the_loss_curve_is_drawn_at_the_first_and_last_epoch_and_at_most_once_a_minute_between(tmp_path, monkeypatch):
    """metrics.csv is written every epoch; the PNG (a second to draw) at the last epoch of a call
    and, before it, when LOSS_CURVE_REDRAW_SECONDS have passed since the last drawing."""
    from storylib import training

    drawn_after = []  # epochs in metrics.csv whenever loss_curve.png is drawn
    save_png = training.save_png

    def record(figure, path):
        if path.name == "loss_curve.png":
            drawn_after.append(len(pd.read_csv(path.parent / "metrics.csv")))
        save_png(figure, path)

    monkeypatch.setattr(training, "save_png", record)
    cfg = tiny_config("baseline", **{"train.epochs": 4})
    monkeypatch.setattr(training, "LOSS_CURVE_REDRAW_SECONDS", 1e9)
    train(cfg, make_prepared(), tmp_path / "slow", stop_after_epochs=3)
    assert drawn_after == [1, 3]  # the first epoch, then the last of this call (an interruption)
    train(cfg, make_prepared(), tmp_path / "slow")
    assert drawn_after == [1, 3, 4]  # resumed: its last epoch
    monkeypatch.setattr(training, "LOSS_CURVE_REDRAW_SECONDS", 0.0)
    drawn_after.clear()
    train(cfg, make_prepared(), tmp_path / "fast")
    assert drawn_after == [1, 2, 3, 4]


def test_same_seed_same_metrics_and_resume_continues_the_same_trajectory(tmp_path):
    cfg = tiny_config("both", **TRAINING)
    straight = train(cfg, make_prepared(), tmp_path / "a")
    again = train(cfg, make_prepared(), tmp_path / "b", resume=False)
    columns = [c for c in METRIC_COLUMNS if c not in ("epoch_seconds", "stories_per_second")]
    pd.testing.assert_frame_equal(straight[columns], again[columns])

    interrupted = train(cfg, make_prepared(), tmp_path / "c", stop_after_epochs=1)
    assert len(interrupted) == 1
    resumed = train(cfg, make_prepared(), tmp_path / "c")
    pd.testing.assert_frame_equal(straight[columns], resumed[columns])
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    c = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[name], c[name]) for name in a)


def test_finished_run_is_not_retrained_and_changed_config_starts_afresh(tmp_path, capsys):
    cfg = tiny_config()
    first = train(cfg, make_prepared(), tmp_path)
    stamp = (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = train(cfg, make_prepared(), tmp_path)
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first, again)
    changed = tiny_config(**{"train.lr": 0.002})
    train(changed, make_prepared(), tmp_path)
    assert "different configuration; starting afresh" in capsys.readouterr().out


def test_corrupt_checkpoint_error_names_the_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(path)):
        train(tiny_config(), make_prepared(), tmp_path)


def test_non_finite_loss_names_epoch_step_and_term(tmp_path):
    prepared = make_prepared()
    cfg = tiny_config(**{"train.batch_size": 2})
    model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size)
    forward, calls = model.forward, []

    def poisoned_forward(batch):
        out = forward(batch)
        calls.append(1)
        if len(calls) == 3:
            out.losses["context"] = out.losses["context"] * float("nan")
        return out

    model.forward = poisoned_forward
    with pytest.raises(NonFiniteLossError, match=r"loss term 'context' is nan at epoch 1, step 3"):
        train(cfg, prepared, tmp_path, model=model)


def test_augmentation_is_seeded_and_identical_across_a_window():
    split = make_split(2, (20, 24))
    # a window whose five frames are equal stays five equal frames after augmentation
    split.frames[:] = split.frames[:, :1]
    batch = make_batch(split, 2)
    a = augment_batch(batch, torch.Generator().manual_seed(3))
    b = augment_batch(batch, torch.Generator().manual_seed(3))
    assert torch.equal(a["context_frames"], b["context_frames"]) and torch.equal(a["target_frame"], b["target_frame"])
    assert not torch.equal(a["target_frame"], batch["target_frame"])
    for frame in range(4):
        assert torch.equal(a["context_frames"][:, frame], a["target_frame"])
    assert a["context_frames"].shape == batch["context_frames"].shape
    assert 0.0 <= float(a["target_frame"].min()) and float(a["target_frame"].max()) <= 1.0
    assert torch.equal(a["target_text_ids"], batch["target_text_ids"])
