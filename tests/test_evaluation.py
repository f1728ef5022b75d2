"""Scoring functions on hand-made images and texts with exact values; evaluate() end to end."""

import math

import numpy as np
import pytest
import torch

from storylib.evaluation import ImageScorer, evaluate, image_window_metrics, perplexity, rouge_l, score_texts, token_nll
from storylib.models import build_model
from tests.helpers_fake_data import WORDS, make_split, tiny_config


def test_constant_offset_image_metrics_are_exact():
    target = torch.rand(3, 3, 16, 16) * 0.75
    metrics = image_window_metrics(target + 0.25, target)
    assert torch.allclose(metrics["image_mae"], torch.full((3,), 0.25))
    assert torch.allclose(metrics["image_mse"], torch.full((3,), 0.0625))
    assert torch.allclose(metrics["image_psnr"], torch.full((3,), 10 * math.log10(1 / 0.0625)), atol=1e-4)
    same = image_window_metrics(target, target)
    assert torch.allclose(same["image_ssim"], torch.ones(3), atol=1e-5)
    assert torch.all(metrics["image_ssim"] < 1)


def test_prediction_spread_is_zero_for_one_image_and_the_pixel_std_otherwise():
    target = torch.rand(4, 3, 12, 12)
    one_image = ImageScorer()
    one_image.update(torch.full((2, 3, 12, 12), 0.3), target[:2])
    one_image.update(torch.full((2, 3, 12, 12), 0.3), target[2:])
    assert one_image.result()["prediction_spread"] == pytest.approx(0.0, abs=1e-7)
    black_and_white = torch.cat([torch.zeros(1, 3, 12, 12), torch.ones(1, 3, 12, 12)])
    two_images = ImageScorer()
    two_images.update(black_and_white, target[:2])
    result = two_images.result()
    assert result["prediction_spread"] == pytest.approx(0.5)
    assert result["image_mae"] == pytest.approx(float((black_and_white - target[:2]).abs().mean()))


def test_uniform_predictor_has_the_vocabulary_size_as_perplexity():
    vocab = 37
    targets = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0]])
    sums, counts = token_nll(torch.zeros(2, 5, vocab), targets)
    assert counts.tolist() == [3, 2]  # tokens after bos, eos included, pads excluded
    assert perplexity(float(sums.sum()), int(counts.sum())) == pytest.approx(vocab)


def test_perplexity_is_over_all_tokens_not_a_mean_of_batch_means():
    logits = torch.randn(2, 4, 9)
    targets = torch.tensor([[1, 3, 4, 5, 2], [1, 2, 0, 0, 0]])
    sums, counts = token_nll(logits, targets)
    log_probs = torch.log_softmax(logits, -1)
    expected = -(
        log_probs[0, 0, 3] + log_probs[0, 1, 4] + log_probs[0, 2, 5] + log_probs[0, 3, 2] + log_probs[1, 0, 2]
    ) / 5
    assert perplexity(float(sums.sum()), int(counts.sum())) == pytest.approx(math.exp(float(expected)), rel=1e-6)


@pytest.mark.parametrize(
    "hypothesis, reference, expected",
    [
        ("the cat sat on the mat", "the cat is on the mat", 100 * 5 / 6),  # LCS 5 of 6 and 6
        ("a b c", "c b a", 100 / 3),  # LCS 1
        ("The Cat.", "the cat", 100.0),  # lowercased words, punctuation ignored
        ("mara walks", "mara walks left now", 100 * 2 * (1.0 * 0.5) / 1.5),  # P 1, R 1/2
        ("", "anything", 0.0),
        ("x y", "z", 0.0),
        ("...", "the cat", 0.0),  # nothing to score
        # Lin (2004), section 3.1: S1 "police killed the gunman", S2 "police kill the gunman"
        # (LCS 3: "police the gunman"), F = 3/4
        ("police kill the gunman", "police killed the gunman", 75.0),
    ],
)
def test_rouge_l_on_known_pairs(hypothesis, reference, expected):
    assert rouge_l(hypothesis, reference) == pytest.approx(expected)


def test_score_texts_corpus_and_per_window():
    references = ["mara walks left near the tree", "theo runs right"]
    perfect, per_window = score_texts(references, references)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    assert perfect["rouge_l"] == pytest.approx(100.0)
    assert "smooth:exp" in perfect["bleu_signature"] and "nc:6" in perfect["chrf_signature"]
    assert list(per_window.columns) == ["bleu", "chrf", "rouge_l"] and len(per_window) == 2
    partial, per_window = score_texts(["mara walks right near the tree", "nobody"], references)
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100
    assert per_window["bleu"][0] > 0  # smoothed sentence BLEU is not 0 on a short text
    assert partial["rouge_l"] == pytest.approx((100 * 5 / 6 + 0.0) / 2)


def test_evaluate_returns_every_metric_and_per_window_rows():
    torch.manual_seed(0)
    cfg = tiny_config("vae")
    split = make_split(5, (20, 24))
    model = build_model(cfg, len(WORDS), (20, 24))
    from tests.helpers_fake_data import FakeTokenizer

    result = evaluate(model, split, FakeTokenizer(), cfg)
    for key in ("image_mae", "image_mse", "image_ssim", "image_psnr", "prediction_spread", "text_perplexity",
                "bleu", "chrf", "rouge_l", "bleu_signature", "chrf_signature"):  # fmt: skip
        assert key in result.metrics
    assert list(result.per_window.columns) == [
        "window_index", "story_id", "image_mae", "image_mse", "image_ssim", "image_psnr", "image_mae_best_of_k",
        "text_perplexity", "text_nll", "text_tokens", "chrf", "bleu", "rouge_l", "generated_text", "target_text",
    ]  # fmt: skip
    # the corpus-level perplexity of the record is recomputable from the per-window columns
    windows = result.per_window
    assert result.metrics["text_perplexity"] == pytest.approx(np.exp(windows["text_nll"].sum() / windows["text_tokens"].sum()))
    assert len(result.per_window) == 5
    assert result.metrics["image_mae"] == pytest.approx(result.per_window["image_mae"].mean())
    assert result.predicted_frames.dtype == np.uint8 and result.predicted_frames.shape == (3, 3, 20, 24)
    assert result.vae_samples.shape == (3, cfg.model.vae_samples, 3, 20, 24)
    assert result.per_window["target_text"][0] == " ".join(split.descriptions[0][4].split())
    assert 1 < result.metrics["text_perplexity"] < 3 * len(WORDS)


def test_ssim_and_psnr_match_torchmetrics():
    """storylib's SSIM and PSNR (written out to spare every kernel torchmetrics' import) give
    torchmetrics' values on random, identical, constant and shifted images."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(5, 3, 60, 125, generator=generator)
    predicted = torch.stack([
        torch.rand(3, 60, 125, generator=generator),
        target[1],
        torch.full((3, 60, 125), 0.5),
        target[3].roll(7, dims=-1),
        (target[4] + 0.1).clamp(0, 1),
    ])
    metrics = image_window_metrics(predicted, target)
    expected_ssim = structural_similarity_index_measure(predicted, target, data_range=1.0, reduction="none")
    assert torch.allclose(metrics["image_ssim"], expected_ssim, atol=1e-6)
    assert metrics["image_ssim"][1] == pytest.approx(1.0, abs=1e-6)
    finite = torch.tensor([0, 2, 3, 4])
    expected_psnr = peak_signal_noise_ratio(predicted, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert torch.allclose(metrics["image_psnr"][finite], expected_psnr[finite], atol=1e-4)
    assert math.isinf(metrics["image_psnr"][1])


@pytest.mark.parametrize("hypothesis, reference", [
    ("A man walks into the old house.", "the man walks slowly into a house"),
    ("Two dogs, three cats!", "three cats and two dogs"),
    ("same words here", "same words here"),
    ("nothing shared", "entirely different text"),
    ("Numbers 12 and 7-up", "numbers 7 up 12"),
])
def test_rouge_l_matches_torchmetrics(hypothesis, reference):
    from torchmetrics.functional.text.rouge import rouge_score

    expected = 100.0 * float(rouge_score(hypothesis, reference, rouge_keys="rougeL")["rougeL_fmeasure"])
    assert rouge_l(hypothesis, reference) == pytest.approx(expected, abs=1e-4)
