"""StoryPredictor: every experiment builds, runs forward/backward, and its parts behave."""

import dataclasses

import pytest
import torch

from storylib.config import available_experiments
from storylib.models import StoryPredictor, build_model, count_parameters, kl_divergence
from tests.helpers_fake_data import EOS, WORDS, make_batch, make_split, tiny_config

SIZE = (20, 24)


@pytest.mark.parametrize("experiment", available_experiments())
def test_every_experiment_builds_forwards_and_backwards(experiment):
    torch.manual_seed(0)
    cfg = tiny_config(experiment)
    model = build_model(cfg, len(WORDS), SIZE)
    batch = make_batch(make_split(3, SIZE))
    out = model(batch)
    assert out.predicted_frame.shape == (3, 3, *SIZE)
    assert out.predicted_context.shape == (3, 3, *SIZE)
    assert 0.0 <= float(out.predicted_frame.detach().min()) and float(out.predicted_frame.detach().max()) <= 1.0
    steps = batch["target_text_ids"].shape[1] - 1
    assert out.text_logits.shape == (3, steps, len(WORDS))
    assert set(out.losses) == {"image", "text", "context", "kl"}
    assert all(torch.isfinite(v) for v in out.losses.values())
    sum(out.losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.grad is not None)
    assert (float(out.losses["kl"].detach()) > 0) == cfg.model.vae


def test_odd_image_size_is_decoded_to_that_size():
    for decoder in ("conv", "residual"):
        model = build_model(tiny_config(**{"model.image_decoder": decoder}), len(WORDS), (17, 29))
        out = model(make_batch(make_split(2, (17, 29)), 2))
        assert out.predicted_frame.shape == (2, 3, 17, 29)


def test_kl_divergence_matches_a_hand_computed_value():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, 0.0], [torch.log(torch.tensor(2.0)).item(), 0.0]])
    # window 1: -0.5*[(1+0-1-1) + (1+0-0-1)] = 0.5
    # window 2: -0.5*[(1+ln2-0-2) + (1+0-4-1)] = -0.5*(ln2 - 1 - 4) = 2.5 - 0.5 ln2
    expected = (0.5 + 2.5 - 0.5 * torch.log(torch.tensor(2.0)).item()) / 2
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected, abs=1e-6)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


@pytest.mark.parametrize("experiment", ["crossmodal", "shots"])
def test_padding_positions_change_nothing(experiment):
    """Whatever sits at a padded position (here: a random pad embedding) never reaches the output."""
    torch.manual_seed(0)
    model = build_model(tiny_config(experiment), len(WORDS), SIZE).eval()
    batch = make_batch(make_split(3, SIZE))
    assert (batch["context_text_ids"] == 0).any()
    with torch.no_grad():
        before = model(batch)
        model.embedding.weight[0] = torch.randn(model.embedding.embedding_dim) * 5
        after = model(batch)
    assert torch.allclose(before.predicted_frame, after.predicted_frame, atol=1e-6)
    real_targets = batch["target_text_ids"][:, 1:] != 0
    assert torch.allclose(before.text_logits[real_targets], after.text_logits[real_targets], atol=1e-5)
    for name in before.losses:
        assert torch.allclose(before.losses[name], after.losses[name], atol=1e-6)
    if experiment == "crossmodal":
        weights = before.attention["image_to_text"]  # (B, 4, L)
        assert torch.all(weights[batch["context_text_ids"] == 0] == 0)
        assert weights.sum(-1).allclose(torch.ones(3, 4))
        assert before.attention["text_to_image"].shape[:3] == (3, 4, batch["context_text_ids"].shape[-1])


def test_context_head_is_a_separate_module_with_its_own_output():
    torch.manual_seed(0)
    model = build_model(tiny_config(), len(WORDS), SIZE)
    assert model.context_decoder is not model.image_decoder
    assert not set(map(id, model.context_decoder.parameters())) & set(map(id, model.image_decoder.parameters()))
    out = model(make_batch(make_split(3, SIZE)))
    assert not torch.allclose(out.predicted_frame, out.predicted_context)


def test_residual_decoder_starts_at_the_last_context_frame():
    model = build_model(tiny_config("shots", **{"model.image_decoder": "residual"}), len(WORDS), SIZE)
    batch = make_batch(make_split(2, SIZE), 2)
    out = model(batch)
    assert torch.equal(out.predicted_frame, batch["context_frames"][:, -1])


def test_generate_text_is_greedy_and_pads_after_eos():
    torch.manual_seed(0)
    for decoder in ("lstm", "copy"):
        model = build_model(tiny_config(**{"model.text_decoder": decoder}), len(WORDS), SIZE).eval()
        batch = make_batch(make_split(3, SIZE))
        generated = model.generate_text(batch, max_length=5, eos_id=EOS)
        assert generated.dtype == torch.long and generated.shape[0] == 3 and generated.shape[1] <= 5
        # the first generated token is the argmax of the teacher-forced first step
        first = model(batch).text_logits[:, 0].argmax(-1)
        assert torch.equal(generated[:, 0], first)
        for row in generated.tolist():
            if EOS in row:
                assert all(t == 0 for t in row[row.index(EOS) + 1 :])


def test_copy_decoder_returns_a_normalised_mixture():
    torch.manual_seed(0)
    model = build_model(tiny_config("shots"), len(WORDS), SIZE)
    out = model(make_batch(make_split(3, SIZE)))
    assert torch.allclose(out.text_logits.exp().sum(-1), torch.ones(out.text_logits.shape[:2]), atol=1e-4)


def test_copy_decoder_coverage_is_the_same_in_one_pass_and_step_by_step():
    """Teacher forcing (all steps at once) and generation (one step at a time, coverage carried in
    the state) see the same coverage; the penalty is Σ_j min(a_tj, c_tj), 0 at the first step."""
    torch.manual_seed(0)
    model = build_model(tiny_config("shots"), len(WORDS), SIZE).eval()
    with torch.no_grad():
        model.text_decoder.coverage_weight.fill_(-2.0)  # make coverage matter for the scores
        batch = make_batch(make_split(2, SIZE), 2)
        z, _, _, memory, _ = model.encode(batch, sample=False)
        inputs = batch["target_text_ids"][:, :4]
        scores, (_, _, coverage), penalty = model.text_decoder(inputs, z, memory)
        assert torch.equal(penalty[:, 0], torch.zeros(2))
        assert torch.allclose(coverage.sum(-1), torch.full((2,), 4.0), atol=1e-5)  # four distributions
        state, before, stepped = None, None, []
        for step in range(4):
            step_scores, state, step_penalty = model.text_decoder(inputs[:, step : step + 1], z, memory, state, before)
            before = inputs[:, step]
            stepped.append(step_penalty[:, 0])
            assert torch.allclose(step_scores[:, 0], scores[:, step], atol=1e-5)
        assert torch.allclose(torch.stack(stepped, 1), penalty, atol=1e-6)
        assert bool((penalty >= 0).all()) and bool((penalty[:, 1:] > 0).all())


def test_vae_samples_differ_and_eval_uses_the_mean():
    torch.manual_seed(0)
    model = build_model(tiny_config("vae"), len(WORDS), SIZE).eval()
    batch = make_batch(make_split(2, SIZE), 2)
    samples = model.sample_frames(batch, 3)
    assert samples.shape == (2, 3, 3, *SIZE)
    assert not torch.allclose(samples[:, 0], samples[:, 1])
    with torch.no_grad():
        assert torch.equal(model(batch).predicted_frame, model(batch).predicted_frame)


def test_tied_embeddings_share_the_output_matrix():
    cfg = tiny_config(**{"model.tie_embeddings": True})
    model = StoryPredictor(cfg.model, len(WORDS), SIZE)
    assert model.text_decoder.head.embedding is model.embedding
    untied = StoryPredictor(dataclasses.replace(cfg.model, tie_embeddings=False), len(WORDS), SIZE)
    assert count_parameters(untied) > count_parameters(model)


def test_cross_modal_attention_is_multihead_attention_computed_in_a_cheaper_order():
    """CrossModalAttention never forms the cells or a key and value per cell or token; its
    output, weights and gradients are those of ``nn.MultiheadAttention``'s own forward over the
    cells ``cell_proj(f) + cell_position``, averaged over the real tokens, and over the tokens
    (``plain_forward``: the definition, written out)."""
    from storylib.models.encoders import CrossModalAttention

    torch.manual_seed(0)
    module = CrossModalAttention(text_dim=12, map_channels=5, cells=6, image_dim=7, heads=4)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    token_states, image_vectors = torch.randn(3, 9, 12), torch.randn(3, 7)
    feature_maps = torch.randn(3, 5, 2, 3)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[0, 4:] = True
    padding[1, 1:] = True  # one real token

    results = {}
    for name, function in (("module", module), ("definition", module.plain_forward)):
        module.zero_grad()
        fused, weights = function(token_states, padding, feature_maps, image_vectors)
        (fused * torch.linspace(-1, 1, fused.shape[-1])).sum().backward()
        results[name] = (fused.detach(), weights, {key: p.grad.clone() for key, p in module.named_parameters()})
    (fused, weights, gradients), (ref_fused, ref_weights, ref_gradients) = results["module"], results["definition"]
    assert fused.shape == (3, 2 * module.dim)
    torch.testing.assert_close(fused, ref_fused, rtol=1e-5, atol=1e-5)
    for name in ("text_to_image", "image_to_text"):
        torch.testing.assert_close(weights[name], ref_weights[name], rtol=1e-5, atol=1e-6)
    assert float(weights["image_to_text"][0, 4:].detach().abs().max()) == 0.0  # padding gets no weight
    assert set(gradients) == set(ref_gradients)
    for key in gradients:
        torch.testing.assert_close(gradients[key], ref_gradients[key], rtol=1e-4, atol=1e-5)
