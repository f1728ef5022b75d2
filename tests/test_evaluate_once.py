"""Evaluation encodes each batch once, and scores exactly what encoding three times scored."""

import numpy as np
import pytest
import torch

from helpers_fake_data import WORDS, FakeTokenizer, make_split, tiny_config
from storylib.data.dataset import iterate_batches
from storylib.evaluation import evaluate, to_uint8
from storylib.models import build_model


@pytest.mark.parametrize("experiment", ["vae", "crossmodal", "shots"])
def test_one_encoding_per_batch_gives_the_same_predictions_texts_and_samples(experiment, monkeypatch):
    torch.manual_seed(0)
    cfg = tiny_config(experiment)
    split = make_split(6, (20, 24))
    model = build_model(cfg, len(WORDS), (20, 24)).eval()
    tokenizer = FakeTokenizer()

    # the path before this change: every call encodes the batch itself
    frames, texts, samples = [], [], []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for batch in iterate_batches(split, cfg.eval.batch_size):
            frames.append(to_uint8(model(batch).predicted_frame))
            model.sample_frames(batch, cfg.eval.best_of_k)   # best-of-K draws before the saved samples
            generated = model.generate_text(batch, cfg.eval.max_generation_length, eos_id=tokenizer.eos_id)
            texts += [tokenizer.decode(row) for row in generated.tolist()]
            missing = cfg.eval.saved_prediction_windows - sum(len(s) for s in samples)
            if cfg.model.vae and missing > 0:
                part = {k: v[:missing] for k, v in batch.items()}
                samples.append(to_uint8(model.sample_frames(part, cfg.model.vae_samples)))

    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs))
    result = evaluate(model, split, tokenizer, cfg)
    assert len(calls) == 2  # 6 windows in batches of 4
    kept = cfg.eval.saved_prediction_windows
    assert np.array_equal(result.predicted_frames, np.concatenate(frames)[:kept])
    assert result.generated_texts == texts
    if cfg.model.vae:
        assert np.array_equal(result.vae_samples, np.concatenate(samples))
