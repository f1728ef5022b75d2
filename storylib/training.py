"""Training loop: weighted loss terms, OneCycle or cosine schedule, checkpoints that resume exactly.

Loss = image_weight·L_image + text_weight·L_text + context_weight·L_context + kl_weight(epoch)·KL,
each term coming unweighted from :meth:`StoryPredictor.forward` and logged per epoch.

Every epoch writes ``metrics.csv``, ``loss_curve.png`` and ``checkpoints/last.pt`` (plus
``best.pt`` when the validation loss improves, and ``visualizations/epoch_XXX.png`` when asked;
best.pt leaves out the optimiser, scheduler and scaler states, which only resuming needs).
A checkpoint holds state dicts only (model, optimiser, scheduler, grad scaler, the three RNG
states, epoch, best validation loss, resolved config, metrics history) and is loaded with
``torch.load(..., weights_only=True)``. Resuming from it continues the same trajectory: the
shuffle order is a function of (seed, epoch) and the RNG states are restored.
"""

from __future__ import annotations

import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from storylib.augment import augment_batch, augmentation_generator
from storylib.config import ExperimentConfig, TrainConfig, config_to_dict
from storylib.data.dataset import PreparedData, WindowSplit, iterate_batches
from storylib.device import apply_thread_setting, autocast, resolve_device
from storylib.io import atomic_write_bytes, atomic_write_text, progress
from storylib.models import StoryPredictor, build_model
from storylib.report.figures import Panel, loss_curve_figure, panel_figure, save_png, short_text
from storylib.results.contract import (
    BEST_CHECKPOINT,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    LOSS_CURVE_FILE,
    LOSS_TERMS,
)

METRIC_COLUMNS = [
    "epoch",
    *(f"train_{t}" for t in ("loss", *LOSS_TERMS)),
    *(f"val_{t}" for t in ("loss", *LOSS_TERMS)),
    "lr",
    "kl_weight",
    "epoch_seconds",
    "stories_per_second",
]
VISUALIZED_WINDOWS = 4
LOSS_CURVE_REDRAW_SECONDS = 60.0  # before the last epoch, loss_curve.png lags metrics.csv by at most this


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite."""


# --------------------------------------------------------------------------- small pieces


def kl_weight_at(train: TrainConfig, epoch: int) -> float:
    """KL weight of 1-based ``epoch``: linear warm-up to ``kl_weight`` over ``kl_warmup_epochs``."""
    if train.kl_warmup_epochs <= 0:
        return train.kl_weight
    return train.kl_weight * min(1.0, epoch / train.kl_warmup_epochs)


def weighted_loss(losses: dict[str, torch.Tensor], train: TrainConfig, kl_weight: float) -> torch.Tensor:
    return (
        train.image_weight * losses["image"]
        + train.text_weight * losses["text"]
        + train.context_weight * losses["context"]
        + kl_weight * losses["kl"]
    )


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return optimizer(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int):
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if train.schedule != "onecycle":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=train.max_lr,
        total_steps=max(1, total_steps),
        pct_start=train.pct_start,
        anneal_strategy=train.anneal_strategy,
        div_factor=train.div_factor,
        final_div_factor=train.final_div_factor,
    )


def rng_state() -> dict:
    """The torch, numpy and python RNG states in types ``torch.load(weights_only=True)`` accepts."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` into memory, then an atomic rename: a crash never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# What best.pt leaves out of a training state: it is read for its weights (scoring, reuse) and
# its history, never resumed from (last.pt is), and AdamW's two moments are twice the weights.
RESUME_ONLY_KEYS = ("optimizer", "scheduler", "scaler")


def best_checkpoint_state(state: dict) -> dict:
    """``state`` without :data:`RESUME_ONLY_KEYS`: a third of the bytes of a full checkpoint."""
    return {key: value for key, value in state.items() if key not in RESUME_ONLY_KEYS}


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the file is unusable
        # torch's own text is not quoted: it suggests weights_only=False, which would run
        # arbitrary code from a file of unknown origin.
        raise CheckpointError(_unusable_checkpoint(path, f"cannot be read ({type(error).__name__}): it is "
                                                         "truncated, damaged or not a storylib checkpoint")) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(_unusable_checkpoint(path, "is not a storylib checkpoint (no 'model' entry)"))
    return checkpoint


def _unusable_checkpoint(path: Path, what: str) -> str:
    """The message for an unusable checkpoint, with advice that works when followed: without
    its folder the run trains afresh (deleting only best.pt would leave a last.pt that says
    training is finished)."""
    return (f"checkpoint {path} {what}. To train this run afresh, delete the folder {path.parent} "
            "(both best.pt and last.pt) and run it again; other runs are not affected.")


def _check_finite(losses: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    values = torch.stack([losses[t].detach().float() for t in LOSS_TERMS])
    if bool(torch.isfinite(values).all()):
        return
    for term, value in zip(LOSS_TERMS, values.tolist()):
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training stopped: loss term '{term}' is {value} at epoch {epoch}, step {step}; "
                "lower the learning rate or check the data"
            )


# --------------------------------------------------------------------------- epochs


def evaluate_losses(
    model: StoryPredictor, split: WindowSplit, cfg: ExperimentConfig, device: torch.device, kl_weight: float
) -> dict[str, float]:
    """Mean of every loss term over ``split`` (weighted by windows per batch), model in eval mode."""
    if len(split) == 0:
        return {t: float("nan") for t in ("loss", *LOSS_TERMS)}
    model.eval()
    sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0)
    with torch.no_grad(), autocast(device, cfg.train.amp):
        for batch in iterate_batches(split, cfg.eval.batch_size, device=device):
            losses = model(batch).losses
            size = batch["target_frame"].shape[0]
            sums["loss"] += float(weighted_loss(losses, cfg.train, kl_weight)) * size
            for term in LOSS_TERMS:
                sums[term] += float(losses[term]) * size
    return {key: value / len(split) for key, value in sums.items()}


def _train_epoch(model, optimizer, scheduler, scaler, split, cfg, device, epoch, kl_weight) -> dict[str, float]:
    model.train()
    sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0)
    steps = math.ceil(len(split) / cfg.train.batch_size)
    batches = iterate_batches(split, cfg.train.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch, device=device)
    for step, batch in enumerate(progress(batches, total=steps, desc=f"epoch {epoch}"), start=1):
        if cfg.train.augment:
            batch = augment_batch(batch, augmentation_generator(cfg.seed, epoch, step))
        with autocast(device, cfg.train.amp):
            losses = model(batch).losses
            loss = weighted_loss(losses, cfg.train, kl_weight)
        _check_finite(losses, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.train.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        size = batch["target_frame"].shape[0]
        sums["loss"] += float(loss.detach()) * size
        for term in LOSS_TERMS:
            sums[term] += float(losses[term].detach()) * size
    return {key: value / max(1, len(split)) for key, value in sums.items()}


# --------------------------------------------------------------------------- figures


def plot_predictions(model: StoryPredictor, split: WindowSplit, tokenizer, cfg: ExperimentConfig, device,
                     title: str = "") -> Figure:
    """Rows of: 4 context frames, the true frame 5, the predicted frame 5; true and generated text."""
    from storylib.data.dataset import make_batch

    count = min(VISUALIZED_WINDOWS, len(split))
    batch = make_batch(split, np.arange(count), device)
    model.eval()
    with torch.no_grad():
        encoded = model.encode(batch, sample=False)  # once for the frame and the text
        predicted = model(batch, encoded=encoded).predicted_frame.float().clamp(0, 1).cpu().numpy()
        generated = model.generate_text(batch, cfg.eval.max_generation_length, eos_id=tokenizer.eos_id, encoded=encoded)
    rows: list[list[Panel]] = []
    for row in range(count):
        context = batch["context_frames"][row].float().cpu().numpy()
        true_text = tokenizer.decode(batch["target_text_ids"][row].tolist())
        rows.append([
            *[(context[i], f"frame {i + 1}", split.story_ids[row][:18] if i == 0 else "") for i in range(len(context))],
            (batch["target_frame"][row].float().cpu().numpy(), "frame 5 (true)", short_text(f"true: {true_text}", width=24)),
            (predicted[row], "frame 5 (predicted)", short_text(f"generated: {tokenizer.decode(generated[row].tolist())}", width=24)),
        ])
    return panel_figure(rows, columns=len(rows[0]) if rows else 6, title=title or None)


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainingState:
    """Everything a checkpoint restores: the model and its optimiser, schedule and scaler, the
    history so far and the best selection loss."""

    model: StoryPredictor
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    history: list[dict] = field(default_factory=list)
    best_val: float = float("inf")
    start_epoch: int = 1

    def checkpoint(self, epoch: int, resolved: dict) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng_state(),
            "epoch": epoch,
            "best_val": self.best_val,
            "config": resolved,
            "history": self.history,
        }


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def new_training_state(cfg: ExperimentConfig, prepared: PreparedData, model: StoryPredictor | None,
                       device: torch.device) -> TrainingState:
    """A fresh model (built from ``cfg`` when None; after :func:`seed_everything`) on ``device``
    with its optimiser, learning-rate schedule and gradient scaler."""
    if model is None:
        model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size)
    model.to(device)
    optimizer = make_optimizer(model, cfg.train)
    steps_per_epoch = math.ceil(len(prepared.train) / cfg.train.batch_size)
    scheduler = make_scheduler(optimizer, cfg.train, steps_per_epoch * cfg.train.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp and device.type == "cuda")
    return TrainingState(model, optimizer, scheduler, scaler)


def resume_training(state: TrainingState, run_dir: Path, resolved: dict, device: torch.device, epochs: int) -> None:
    """Continue ``state`` from ``last.pt`` when it was written for the same configuration and
    ``best.pt`` is beside it; otherwise say why and leave the fresh state as it is."""
    last_path = run_dir / LAST_CHECKPOINT
    if not last_path.is_file():
        return
    checkpoint = load_checkpoint(last_path, map_location=device)
    if checkpoint.get("config") != resolved:
        print(f"{last_path} was written for a different configuration; starting afresh")
        return
    if not (run_dir / BEST_CHECKPOINT).is_file():
        # the first epoch writes best.pt beside last.pt: without it the trajectory cannot
        # be scored (someone deleted it), so it is trained again from the start
        print(f"{run_dir / BEST_CHECKPOINT} is missing; training afresh instead of resuming from {last_path}")
        return
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    if state.scheduler is not None and checkpoint.get("scheduler") is not None:
        state.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):
        state.scaler.load_state_dict(checkpoint["scaler"])
    set_rng_state(checkpoint["rng"])
    state.history = list(checkpoint.get("history", []))
    state.best_val = float(checkpoint["best_val"])
    state.start_epoch = int(checkpoint["epoch"]) + 1
    if state.start_epoch <= epochs:
        print(f"resuming from {last_path} after epoch {checkpoint['epoch']}")


def run_epoch(state: TrainingState, prepared: PreparedData, cfg: ExperimentConfig, device: torch.device,
              epoch: int) -> dict:
    """Train one epoch, score the validation split; the epoch's row of ``metrics.csv``."""
    started = time.perf_counter()
    kl_weight = kl_weight_at(cfg.train, epoch)
    train_terms = _train_epoch(state.model, state.optimizer, state.scheduler, state.scaler, prepared.train, cfg,
                               device, epoch, kl_weight)
    train_seconds = time.perf_counter() - started
    val_terms = evaluate_losses(state.model, prepared.val, cfg, device, kl_weight)
    row = {"epoch": epoch}
    row.update({f"train_{k}": v for k, v in train_terms.items()})
    row.update({f"val_{k}": v for k, v in val_terms.items()})
    row.update(
        lr=state.optimizer.param_groups[0]["lr"],
        kl_weight=kl_weight,
        epoch_seconds=time.perf_counter() - started,
        stories_per_second=len(prepared.train) / max(train_seconds, 1e-9),
    )
    print(
        f"epoch {epoch}/{cfg.train.epochs}: train {row['train_loss']:.4f} val {row['val_loss']:.4f} "
        f"(image {row['val_image']:.4f}, text {row['val_text']:.3f}) "
        f"{row['epoch_seconds']:.1f}s, {row['stories_per_second']:.1f} stories/s",
        flush=True,
    )
    return row


def write_history(run_dir: Path, history: list[dict], draw: bool = True) -> None:
    """``metrics.csv`` of the epochs so far, and their ``loss_curve.png`` when ``draw``."""
    frame = pd.DataFrame(history, columns=METRIC_COLUMNS)
    atomic_write_text(run_dir / HISTORY_FILE, frame.to_csv(index=False))
    if draw:
        save_png(loss_curve_figure({"this run": frame}), run_dir / LOSS_CURVE_FILE)


def train(
    cfg: ExperimentConfig,
    prepared: PreparedData,
    run_dir: Path | str,
    resume: bool = True,
    model: StoryPredictor | None = None,
    stop_after_epochs: int | None = None,
) -> pd.DataFrame:
    """Train ``model`` (built from ``cfg`` when None) and return the metrics history.

    ``resume``: continue from ``run_dir/checkpoints/last.pt`` when it was written for the same
    configuration (a different configuration starts afresh, with a notice). A finished
    trajectory is not retrained: its history is returned and its weights loaded.
    ``stop_after_epochs`` stops early after that many epochs in total (an interruption, for tests).
    After every epoch: ``metrics.csv``, the loss curve, ``last.pt``, and ``best.pt`` when the
    selection loss (validation, else training) improved.
    """
    run_dir = Path(run_dir)
    apply_thread_setting()
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seed)
    state = new_training_state(cfg, prepared, model, device)
    # augmentation changes the training frames every step, so their motion is measured per step
    for split in (prepared.val,) if cfg.train.augment else (prepared.train, prepared.val):
        state.model.precompute(split)
    resolved = config_to_dict(cfg)
    if resume:
        resume_training(state, run_dir, resolved, device, cfg.train.epochs)

    last_epoch = cfg.train.epochs if stop_after_epochs is None else min(cfg.train.epochs, stop_after_epochs)
    visualize = set(cfg.train.visualize_epochs) | {cfg.train.epochs}
    show_split = prepared.val if len(prepared.val) else prepared.train
    drawn = -math.inf
    for epoch in range(state.start_epoch, last_epoch + 1):
        row = run_epoch(state, prepared, cfg, device, epoch)
        state.history.append(row)
        selection_loss = row["val_loss"] if len(prepared.val) else row["train_loss"]
        improved = selection_loss < state.best_val
        state.best_val = min(state.best_val, selection_loss)
        # the curve's PNG takes about a second to draw, a twentieth of an epoch of the learning
        # family: drawn at the last epoch, and before it at most once every LOSS_CURVE_REDRAW_SECONDS
        draw = epoch == last_epoch or time.perf_counter() - drawn >= LOSS_CURVE_REDRAW_SECONDS
        write_history(run_dir, state.history, draw)
        drawn = time.perf_counter() if draw else drawn
        if epoch in visualize:
            figure = plot_predictions(state.model, show_split, prepared.tokenizer, cfg, device, f"{cfg.name}, epoch {epoch}")
            save_png(figure, run_dir / "visualizations" / f"epoch_{epoch:03d}.png")
        checkpoint = state.checkpoint(epoch, resolved)
        save_checkpoint(run_dir / LAST_CHECKPOINT, checkpoint)
        if improved:
            save_checkpoint(run_dir / BEST_CHECKPOINT, best_checkpoint_state(checkpoint))
    return pd.DataFrame(state.history, columns=METRIC_COLUMNS)
