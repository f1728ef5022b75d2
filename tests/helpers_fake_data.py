"""Tiny hand-made windows for the model, training, evaluation and floor tests (no data layer run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from storylib.config import ExperimentConfig, load_experiment_config
from storylib.data.dataset import PreparedData, WindowSplit

PAD, BOS, EOS = 0, 1, 2
WORDS = ["<pad>", "<bos>", "<eos>", "mara", "walks", "left", "right", "the", "light", "dims", "brightens", "theo"]


class FakeTokenizer:
    """A word-level tokenizer over :data:`WORDS` with the TextTokenizer interface."""

    name = "fake-words"
    pad_id, bos_id, eos_id, unk_id = PAD, BOS, EOS, PAD
    vocab_size = len(WORDS)

    def encode(self, text: str, max_length: int) -> list[int]:
        ids = [BOS] + [WORDS.index(w) for w in text.split()] + [EOS]
        return ids[:max_length]

    def decode(self, ids) -> str:
        words = []
        for token in ids:
            token = int(token)
            if token == EOS:
                break
            if token in (PAD, BOS):
                continue
            words.append(WORDS[token])
        return " ".join(words)


def make_split(num_windows: int = 6, size: tuple[int, int] = (20, 24), seed: int = 0, name: str = "test") -> WindowSplit:
    """Random frames; descriptions of random lengths drawn from WORDS, 0-padded token ids."""
    rng = np.random.default_rng(seed)
    tokenizer = FakeTokenizer()
    frames = rng.integers(0, 256, size=(num_windows, 5, 3, *size), dtype=np.uint8)
    descriptions = [
        [" ".join(rng.choice(WORDS[3:], size=rng.integers(1, 5))) for _ in range(5)] for _ in range(num_windows)
    ]
    length = 8
    token_ids = np.zeros((num_windows, 5, length), dtype=np.int32)
    for i, window in enumerate(descriptions):
        for j, text in enumerate(window):
            ids = tokenizer.encode(text, length)
            token_ids[i, j, : len(ids)] = ids
    return WindowSplit(
        name=name,
        frames=frames,
        token_ids=token_ids,
        story_ids=[f"story-{i}" for i in range(num_windows)],
        frame_numbers=np.tile(np.arange(1, 6), (num_windows, 1)),
        descriptions=descriptions,
    )


def make_prepared(train: int = 8, val: int = 4, test: int = 6, size: tuple[int, int] = (20, 24)) -> PreparedData:
    return PreparedData(
        train=make_split(train, size, seed=1, name="train"),
        val=make_split(val, size, seed=2, name="val"),
        test=make_split(test, size, seed=3, name="test"),
        tokenizer=FakeTokenizer(),  # type: ignore[arg-type]
        source="fake",
        cache_dir=Path("."),
    )


def tiny_config(experiment: str = "baseline", **overrides) -> ExperimentConfig:
    """``experiment`` shrunk to a few thousand parameters, one epoch, CPU."""
    values = {
        "model.latent_dim": 8,
        "model.image_feature_dim": 8,
        "model.embedding_dim": 8,
        "model.text_hidden": 8,
        "model.gru_hidden": 8,
        "model.backbone_channels": [4, 8, 8],
        "model.decoder_channels": 8,
        "model.attention_heads": 2,
        "train.epochs": 1,
        "train.batch_size": 4,
        "train.device": "cpu",
        "eval.batch_size": 4,
        "eval.max_generation_length": 6,
        "eval.saved_prediction_windows": 3,
    }
    values.update(overrides)
    return load_experiment_config(experiment, "smoke", overrides=values)


def make_batch(split: WindowSplit | None = None, count: int = 3) -> dict[str, torch.Tensor]:
    from storylib.data.dataset import make_batch as data_make_batch

    split = split or make_split(count)
    return data_make_batch(split, np.arange(count))
