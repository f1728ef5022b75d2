"""Decoders behind one registry, and the retrieve-and-warp decoder of the learning family."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import yaml

from storylib.classical import shift_images
from storylib.config import ConfigError, available_experiments, config_hash, config_to_dict, load_experiment_config
from storylib.data.dataset import WindowSplit
from storylib.evaluation import best_of_k, evaluate, group_means
from storylib.models import build_model
from storylib.models.motion import FRAME_PAIRS, pair_motion
from storylib.models.predictor import gaussian_kl, kl_divergence
from storylib.models.registry import decoder_class, decoder_names
from storylib.models.warp import WarpImageDecoder, translate
from tests.helpers_fake_data import WORDS, FakeTokenizer, make_batch, make_split, tiny_config

SIZE = (24, 40)


def smooth_frames(count: int, size: tuple[int, int] = SIZE, seed: int = 0) -> torch.Tensor:
    """(count, 3, H, W) images of smooth random blobs: textured enough for a shift search to lock on."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size[0] // 4, size[1] // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0.05, 0.95)


# --------------------------------------------------------------------------- the registry


def test_the_registry_names_every_decoder_and_builds_each_from_the_config():
    assert decoder_names("image") == ("conv", "residual", "warp")
    assert decoder_names("text") == ("lstm", "copy")
    assert decoder_class("image", "warp") is WarpImageDecoder
    model = build_model(tiny_config("baseline", **{"model.image_decoder": "warp"}), len(WORDS), SIZE)
    assert isinstance(model.image_decoder, WarpImageDecoder)


def test_an_unknown_decoder_name_names_the_file_the_key_and_the_known_names(tmp_path):
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"model": {"image_decoder": "wrap"}}))
    with pytest.raises(ConfigError) as error:
        load_experiment_config("typo", "cpu", params_dir=tmp_path)
    message = str(error.value)
    assert "typo.yaml" in message and "'model.image_decoder'" in message and "'wrap'" in message
    assert "conv, residual, warp" in message
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"model": {"text_decoder": "gpt"}}))
    with pytest.raises(ConfigError, match=r"typo\.yaml: key 'model\.text_decoder': unknown text decoder 'gpt'; "
                                          r"known text decoders: lstm, copy"):
        load_experiment_config("typo", "cpu", params_dir=tmp_path)


def test_adding_an_experiment_needs_only_its_yaml_file(tmp_path):
    """A new experiment file in a params folder is listed, loads at every scale and builds."""
    import shutil

    from storylib.config import PARAMS_DIR

    shutil.copytree(PARAMS_DIR, tmp_path / "params")
    (tmp_path / "params" / "shots_wide.yaml").write_text("extends: shots\nmodel:\n  latent_dim: 96\n")
    assert "shots_wide" in available_experiments(tmp_path / "params")
    for scale in ("smoke", "cpu", "full"):
        config = load_experiment_config("shots_wide", scale, params_dir=tmp_path / "params")
        assert config.model.latent_dim == 96 and config.model.image_decoder == "warp"
    model = build_model(config, len(WORDS), SIZE)
    assert model.image_decoder.head[0].in_features > 96


def test_a_family_states_its_scale_settings_once_and_its_experiments_inherit_them():
    for experiment in ("shots", "shots_crossmodal", "shots_vae", "shots_both"):
        config = load_experiment_config(experiment, "cpu")
        assert (config.train.epochs, config.train.batch_size) == (12, 32), experiment
        assert load_experiment_config(experiment, "smoke").train.epochs == 1  # the smoke overlay still rules
    assert load_experiment_config("enhanced", "cpu").train.epochs == 3


def test_a_scales_block_naming_an_unknown_scale_is_an_error(tmp_path):
    (tmp_path / "odd.yaml").write_text("scales:\n  gpu:\n    train:\n      epochs: 2\n")
    with pytest.raises(ConfigError, match=r"odd\.yaml: key 'scales\.gpu': no such scale; choose among smoke, cpu, full"):
        load_experiment_config("odd", "cpu", params_dir=tmp_path)
    (tmp_path / "odd.yaml").write_text("scales:\n  cpu:\n    train:\n      epoch: 2\n")
    with pytest.raises(ConfigError, match=r"odd\.yaml \(scales\.cpu\): unknown key 'train\.epoch'"):
        load_experiment_config("odd", "cpu", params_dir=tmp_path)


# --------------------------------------------------------------------------- motion features and the warp


def test_translate_reproduces_a_hand_made_integer_shift():
    images = smooth_frames(2)
    shifts = torch.tensor([[2, 5], [-3, -4]])
    moved = translate(images, shifts.float())
    expected = shift_images(images, shifts)
    assert torch.allclose(moved, expected, atol=1e-5)
    assert torch.allclose(translate(images, torch.zeros(2, 2)), images, atol=1e-6)


def test_pair_motion_finds_a_hand_made_shift_and_gain():
    first = smooth_frames(1, seed=3)
    gain = torch.tensor([1.2, 0.9, 1.0])
    moved = shift_images(first, torch.tensor([[2, 6]]))
    unrelated = smooth_frames(1, seed=4)
    relit = first * gain[None, :, None, None]
    frames = torch.stack([first, moved, unrelated, relit], dim=1)  # (1, 4, 3, H, W)
    motion = pair_motion(frames)
    shifted = FRAME_PAIRS.index((0, 1))
    assert motion["shift"][0, shifted].tolist() == pytest.approx([2.0, 6.0], abs=0.5)
    repeat = FRAME_PAIRS.index((0, 3))  # frame 4 is frame 1 relit: no shift, no cost once gain-corrected
    assert motion["log_gain"][0, repeat].tolist() == pytest.approx(gain.log().tolist(), abs=1e-5)
    # the parabola through an L1 cost's V refines a perfect match by a few hundredths of a pixel
    assert motion["shift"][0, repeat].tolist() == pytest.approx([0.0, 0.0], abs=0.1)
    assert float(motion["best_cost"][0, repeat]) == pytest.approx(0.0, abs=1e-5)
    assert float(motion["zero_cost"][0, shifted]) > 3 * float(motion["best_cost"][0, shifted])
    cut = FRAME_PAIRS.index((1, 2))  # a cut: costly at every shift
    assert float(motion["best_cost"][0, cut]) > 3 * float(motion["best_cost"][0, shifted])


def test_the_untrained_warp_decoder_predicts_frame_4():
    torch.manual_seed(0)
    context = torch.stack([smooth_frames(3, seed=s) for s in range(4)], dim=1)
    decoder = WarpImageDecoder(latent_dim=8, channels=4, hidden=16)
    predicted = decoder(torch.randn(3, 8), context)
    # frame 4's selection weight starts at 1 − 3·e⁻¹⁰: within 2·10⁻⁴ of frame 4 at every pixel
    assert (predicted - context[:, -1]).abs().max().item() < 2e-4
    plan = decoder.plan(torch.randn(3, 8), context)
    assert plan["shift"].abs().max().item() == 0.0 and plan["log_gain"].abs().max().item() == 0.0
    assert plan["weights"][:, -1].tolist() == pytest.approx([1 - 3 * math.exp(-10)] * 3, abs=1e-7)


def test_the_warp_decoder_learns_to_return_an_earlier_view():
    """Shot / reverse shot A B A B → A: a few steps of Adam move the selection off frame 4."""
    torch.manual_seed(0)
    view_a, view_b = smooth_frames(8, seed=1), smooth_frames(8, seed=2)
    context = torch.stack([view_a, view_b, view_a, view_b], dim=1)
    decoder = WarpImageDecoder(latent_dim=4, channels=4, hidden=16)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=0.02)
    z = torch.zeros(8, 4)
    before = (decoder(z, context) - view_a).abs().mean().item()
    for _ in range(60):
        loss = (decoder(z, context) - view_a).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = (decoder(z, context) - view_a).abs().mean().item()
    assert after < 0.2 * before
    weights = decoder.plan(z, context)["weights"]
    assert (weights[:, 0] + weights[:, 2] > 0.9).all()  # the A frames (1 and 3) carry the prediction


# --------------------------------------------------------------------------- best-of-K and patterns


def test_best_of_k_and_diversity_on_hand_made_samples():
    target = torch.zeros(1, 3, 2, 2)
    samples = torch.stack([torch.full((3, 2, 2), v) for v in (0.5, 0.1, 0.3)]).unsqueeze(0)  # (1, 3, 3, 2, 2)
    best, diversity = best_of_k(samples, target)
    assert best.tolist() == pytest.approx([0.1])
    assert diversity.tolist() == pytest.approx([(0.4 + 0.2 + 0.2) / 3])
    best, diversity = best_of_k(samples[:, :1], target)
    assert best.tolist() == pytest.approx([0.5]) and diversity.tolist() == [0.0]


def test_best_of_k_equals_the_mae_of_a_deterministic_model():
    torch.manual_seed(0)
    cfg = tiny_config("shots")
    model = build_model(cfg, len(WORDS), SIZE)
    result = evaluate(model, make_split(5, SIZE), FakeTokenizer(), cfg)
    assert result.metrics["image_mae_best_of_k"] == result.metrics["image_mae"]
    assert result.metrics["sample_diversity"] == 0.0
    assert result.metrics["best_of_k"] == 5


def test_a_vae_samples_different_frames_reproducibly():
    torch.manual_seed(0)
    cfg = tiny_config("shots_vae")
    model = build_model(cfg, len(WORDS), SIZE)
    with torch.no_grad():  # a wide posterior, so the samples differ visibly
        model.to_logvar.bias.fill_(2.0)
        model.image_decoder.head[-1].weight.normal_(0, 0.5)
    split = make_split(5, SIZE)
    result = evaluate(model, split, FakeTokenizer(), cfg)
    assert result.metrics["sample_diversity"] > 0
    # the samples are drawn around μ, not at it: their best differs from the MAE at μ ...
    assert result.metrics["image_mae_best_of_k"] != result.metrics["image_mae"]
    # ... and is drawn from the run's seed, so a second evaluation gives the same figure
    assert evaluate(model, split, FakeTokenizer(), cfg).metrics["image_mae_best_of_k"] == result.metrics["image_mae_best_of_k"]


def test_gaussian_kl_on_hand_made_values():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    # against N(0, I) it is the standard VAE's KL
    assert gaussian_kl(mu, logvar, torch.zeros(1, 2), torch.zeros(1, 2)) == pytest.approx(float(kl_divergence(mu, logvar)))
    assert float(gaussian_kl(mu, logvar, mu, logvar)) == pytest.approx(0.0, abs=1e-7)
    # one dimension: N(1, 1) against N(0, e^2): ½ (2 − 0 + (1 + 1) / e² − 1)
    expected = 0.5 * (2 + 2 / math.exp(2) - 1)
    assert float(gaussian_kl(torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), torch.full((1, 1), 2.0))) == pytest.approx(expected)


def test_the_learned_prior_draws_from_the_posterior_only_while_training():
    """SVG-LP: training decodes a z drawn from a posterior that sees frame 5; evaluation decodes
    the prior's μ, so frame 5 cannot leak into a test prediction, and KL(posterior ‖ prior) is
    the loss term in both modes."""
    torch.manual_seed(0)
    cfg = tiny_config("shots_vae", **{"model.vae_prior": "learned"})
    model = build_model(cfg, len(WORDS), SIZE)
    assert model.to_posterior is not None
    with torch.no_grad():
        model.image_decoder.head[-1].weight.normal_(0, 0.5)  # so z changes the frame
    batch = make_batch(make_split(3, SIZE), 3)
    other = dict(batch, target_frame=batch["target_frame"].flip(0))
    model.eval()
    with torch.no_grad():
        evaluated, evaluated_other = model(batch), model(other)
        z, *_ = model.encode(batch, sample=False)
    assert torch.equal(evaluated.predicted_frame, evaluated_other.predicted_frame)  # frame 5 is not used
    assert torch.equal(evaluated.latent, z)
    assert float(evaluated.losses["kl"]) > 0 and float(evaluated.losses["kl"]) != float(evaluated_other.losses["kl"])
    model.train()
    torch.manual_seed(1)
    trained = model(batch)
    assert not torch.allclose(trained.latent, z)
    trained.losses["kl"].backward()
    assert model.to_posterior.weight.grad is not None and model.to_posterior.weight.grad.abs().sum() > 0


def test_the_standard_prior_leaves_the_config_hash_as_it_was_before_the_setting():
    """vae_prior was added after runs were recorded; at "standard" those runs keep their hash."""
    cfg = load_experiment_config("shots_vae", "cpu")
    without = config_to_dict(cfg)
    del without["model"]["vae_prior"]
    old_style = hashlib.sha256(json.dumps(without, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert config_hash(cfg) == old_style
    learned = load_experiment_config("shots_vae", "cpu", overrides={"model.vae_prior": "learned"})
    assert config_hash(learned) != config_hash(cfg)


def labelled_split(patterns: list[str], cuts: list[bool]) -> WindowSplit:
    split = make_split(len(patterns), SIZE)
    split.patterns = patterns
    split.shot_cuts = np.array(cuts)
    return split


def test_metrics_by_pattern_on_hand_made_windows():
    split = labelled_split(["continuous", "shot_reverse", "shot_reverse", "irregular"], [False, True, True, False])
    values = {"image_mae": np.array([0.1, 0.2, 0.4, 0.8])}
    window_index = np.array([3, 2, 1, 0])  # the values of windows in another order than the split's
    means = group_means(values, window_index, split, ("image_mae",))
    assert means["image_mae_continuous"] == pytest.approx(0.8)
    assert means["image_mae_shot_reverse"] == pytest.approx(0.3)
    assert means["image_mae_irregular"] == pytest.approx(0.1)
    assert means["image_mae_continues"] == pytest.approx(0.45) and means["image_mae_cuts"] == pytest.approx(0.3)
    counts = {key[len("num_windows_"):]: value for key, value in means.items() if key.startswith("num_windows_")}
    assert counts == {"continues": 2, "cuts": 2, "continuous": 1, "irregular": 1, "shot_reverse": 2}


def test_a_group_without_windows_gives_nan_and_a_count_of_zero():
    split = labelled_split(["continuous", "continuous"], [False, False])
    means = group_means({"image_mae": np.array([0.1, 0.3])}, np.array([0, 1]), split, ("image_mae",))
    assert math.isnan(means["image_mae_cuts"]) and means["num_windows_cuts"] == 0
    assert means["image_mae_continuous"] == pytest.approx(0.2)


def test_every_experiment_of_the_learning_family_builds_with_the_warp_and_copy_decoders():
    learning = [e for e in available_experiments() if load_experiment_config(e, "cpu").model.image_decoder == "warp"]
    assert learning == ["shots", "shots_both", "shots_crossmodal", "shots_vae"]
    for experiment in learning:
        model = build_model(tiny_config(experiment), len(WORDS), SIZE)
        out = model(make_batch(make_split(2, SIZE), 2))
        assert out.predicted_frame.shape == (2, 3, *SIZE)
        assert type(model.text_decoder).__name__ == "CopyTextDecoder"


# --------------------------------------------------------------------------- work done once per split


def test_the_motion_precomputed_per_split_is_what_each_batch_would_measure():
    """split_motion over chunks of any size equals pair_motion of every batch, bit for bit, and a
    batch of a split that holds it carries its rows; the warp decoder's output is unchanged."""
    from storylib.data.dataset import CONTEXT_MOTION
    from storylib.data.dataset import make_batch as data_make_batch
    from storylib.models.motion import pack_motion, split_motion, unpack_motion

    split = make_split(7, SIZE, seed=5)
    packed = split_motion(split, chunk=3)
    assert packed.shape == (7, len(FRAME_PAIRS), 7)
    indices = np.array([6, 0, 3])
    plain = data_make_batch(split, indices)
    measured = pair_motion(plain["context_frames"])
    assert torch.equal(packed[indices], pack_motion(measured))
    assert all(torch.equal(unpack_motion(packed[indices])[name], value) for name, value in measured.items())

    model = build_model(tiny_config("shots"), len(WORDS), SIZE)
    model.precompute(split)
    assert torch.equal(split.precomputed[CONTEXT_MOTION], packed)
    carried = data_make_batch(split, indices)
    assert torch.equal(carried[CONTEXT_MOTION], packed[indices])
    assert torch.equal(split.head(2).precomputed[CONTEXT_MOTION], packed[:2])
    torch.manual_seed(0)
    with torch.no_grad():
        z = torch.randn(3, model.config.latent_dim)
        model.image_decoder.head[-1].weight.normal_()  # a trained head: the motion matters
        assert torch.equal(model.decode_frame(z, carried), model.decode_frame(z, plain))


def test_augmentation_drops_the_precomputed_motion_of_the_frames_it_changes():
    from storylib.augment import augment_batch
    from storylib.data.dataset import CONTEXT_MOTION
    from storylib.data.dataset import make_batch as data_make_batch

    split = make_split(3, SIZE)
    build_model(tiny_config("shots"), len(WORDS), SIZE).precompute(split)
    batch = data_make_batch(split, np.arange(3))
    assert CONTEXT_MOTION in batch
    augmented = augment_batch(batch, torch.Generator().manual_seed(0))
    assert CONTEXT_MOTION not in augmented and set(augmented) == set(batch) - {CONTEXT_MOTION}


def test_a_context_head_of_weight_0_runs_without_a_graph_and_changes_no_other_gradient():
    """With context_weight 0 the context head runs without a graph: its term is reported as
    before, its parameters get no gradient (they never change), and every other gradient is
    what the full graph, where the 0-weighted term sent exact zeros, gives."""
    from storylib.training import weighted_loss

    cfg = tiny_config("shots")
    assert cfg.train.context_weight == 0
    torch.manual_seed(0)
    lean = build_model(cfg, len(WORDS), SIZE)
    assert lean.context_head_learns is False
    full = build_model(cfg, len(WORDS), SIZE)
    full.load_state_dict(lean.state_dict())
    full.context_head_learns = True
    batch = make_batch(make_split(4, SIZE, seed=2), count=4)
    gradients, reaches_z, context_terms = {}, {}, {}
    for name, model in (("lean", lean), ("full", full)):
        model.eval()  # no dropout: the two passes see the same numbers
        output = model(batch)
        reaches_z[name] = _graph_reaches(output.predicted_context, output.latent)
        context_terms[name] = float(output.losses["context"].detach())
        weighted_loss(output.losses, cfg.train, 0.0).backward()
        gradients[name] = {key: p.grad for key, p in model.named_parameters()}
    assert reaches_z == {"lean": False, "full": True}
    assert context_terms["lean"] == context_terms["full"] > 0
    head = [key for key in gradients["lean"] if key.startswith("context_decoder.")]
    assert head and all(gradients["lean"][key] is None for key in head)
    assert all(float(gradients["full"][key].abs().max()) == 0.0 for key in head)
    others = [key for key in gradients["lean"] if key not in head and gradients["full"][key] is not None]
    assert others and all(torch.equal(gradients["lean"][key], gradients["full"][key]) for key in others)


def _graph_reaches(output: torch.Tensor, tensor: torch.Tensor) -> bool:
    """Whether autograd would carry a gradient of ``output`` back into ``tensor``."""
    if output.grad_fn is None or tensor.grad_fn is None:
        return False
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is tensor.grad_fn:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return False
