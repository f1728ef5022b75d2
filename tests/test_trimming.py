"""Trimming a batch's trailing padding changes no number: every experiment's outputs, losses
and greedy text are the same on a batch cut to its longest description and on the same batch
padded to the cache's full length (float tolerance; the model in eval mode, so that dropout
draws no length-dependent random numbers)."""

import numpy as np
import pytest
import torch

from helpers_fake_data import WORDS, make_split, tiny_config
from storylib.config import available_experiments
from storylib.data.dataset import make_batch, trim_padding
from storylib.models import build_model

SIZE = (20, 24)


def padded(batch: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """The batch with both text tensors zero-padded on the right to ``length`` tokens."""
    def pad(ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(ids, (0, length - ids.shape[-1]))

    return {**batch, "context_text_ids": pad(batch["context_text_ids"]), "target_text_ids": pad(batch["target_text_ids"])}


def test_trim_padding_cuts_after_the_last_real_column():
    ids = np.array([[[1, 5, 2, 0, 0], [1, 2, 0, 0, 0]], [[1, 2, 0, 0, 0], [1, 6, 7, 2, 0]]])
    assert trim_padding(ids).tolist() == ids[..., :4].tolist()
    assert trim_padding(np.zeros((2, 3), dtype=np.int32)).shape == (2, 1)  # all padding: one column stays


@pytest.mark.parametrize("experiment", available_experiments())
def test_outputs_are_the_same_with_and_without_trailing_padding(experiment):
    torch.manual_seed(0)
    model = build_model(tiny_config(experiment), len(WORDS), SIZE).eval()
    split = make_split(5, SIZE, seed=4)
    batch = make_batch(split, np.arange(5))
    assert batch["context_text_ids"].shape[-1] < 12 and batch["target_text_ids"].shape[-1] < 12
    full = padded(batch, 12)
    with torch.no_grad():
        short, long = model(batch), model(full)
        text_steps = batch["target_text_ids"].shape[1] - 1
        # positions whose target is padding are scored by nothing (the copy decoder's "follow"
        # feature sees a pad, not the eos, before the first token of the next context text there)
        real = batch["target_text_ids"][:, 1:] != 0
        assert torch.allclose(short.predicted_frame, long.predicted_frame, atol=1e-6)
        assert torch.allclose(short.predicted_context, long.predicted_context, atol=1e-6)
        assert torch.allclose(short.latent, long.latent, atol=1e-6)
        assert torch.allclose(short.text_logits[real], long.text_logits[:, :text_steps][real], atol=1e-5)
        for name in short.losses:
            assert torch.allclose(short.losses[name], long.losses[name], atol=1e-6), name
        generated_short = model.generate_text(batch, 6, eos_id=2)
        generated_long = model.generate_text(full, 6, eos_id=2)
    assert torch.equal(generated_short, generated_long)
