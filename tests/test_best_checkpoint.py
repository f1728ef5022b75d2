"""best.pt holds what scoring and reuse read (weights, config, history), not the optimiser state
that only resuming from last.pt needs: a third of the bytes."""

import torch

from helpers_fake_data import make_prepared, tiny_config
from storylib import training
from storylib.models import build_model


def test_best_checkpoint_has_the_weights_and_history_but_no_optimiser_state(tmp_path):
    cfg = tiny_config("enhanced")
    prepared = make_prepared()
    torch.manual_seed(0)
    model = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size)
    training.train(cfg, prepared, tmp_path, resume=False, model=model)
    best = training.load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    last = training.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert not set(training.RESUME_ONLY_KEYS) & set(best) and set(training.RESUME_ONLY_KEYS) <= set(last)
    assert best["epoch"] == last["epoch"] == 1 and best["history"] == last["history"]
    assert all(torch.equal(best["model"][name], value) for name, value in last["model"].items())
    fresh = build_model(cfg, prepared.tokenizer.vocab_size, prepared.train.image_size)
    fresh.load_state_dict(best["model"])
