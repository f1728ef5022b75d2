"""Numbers, not only files: the smoke-scale floors and one smoke model, recorded (recommenders
style), so that a change that shifts what the suite computes is seen.

The floors are deterministic arithmetic on the cached windows: they must match to 1e-6. The
model is trained for one epoch on 48 windows; on one machine it reproduces bit for bit, across
machines float rounding in the kernels moves it a little, so its tolerances are wider (and
greedy-decoded chrF, which one flipped token moves by points, is not pinned). When a change is
meant to shift these numbers, rerun the test, check the new values make sense, and record them
here with the reason in the commit message.
"""

from __future__ import annotations

import pytest

from storylib import experiment
from storylib.floors import compute_floors

FLOORS = {  # recorded with the synthetic generator version 2, smoke scale, trained tokenizer
    ("median_image", "image_mae"): 0.18353553116321564,
    ("mean_image", "image_mae"): 0.18514502421021461,
    ("copy_last_frame", "image_mae"): 0.19577873478798816,
    ("motion_extrapolation", "image_mae"): 0.19394537957850844,
    ("analogue", "image_mae"): 0.05454825737979263,
    ("analogue", "chrf"): 71.62716962592566,
    ("oracle_best_context", "image_mae"): 0.06260818572870146,
    ("copy_last_description", "chrf"): 52.432368388808605,
    ("unigram", "text_perplexity"): 75.49774548393185,
}
MODEL = {  # shots, seed 0, smoke scale (its miniature widths), one epoch, CPU: (value, absolute tolerance)
    "image_mae": (0.16056808549910784, 2e-3),
    "image_ssim": (0.4262865136067073, 5e-3),
    "text_perplexity": (6.817708180203805, 0.15),
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.delenv("STORYLIB_RESULTS_DIR", raising=False)
    monkeypatch_module.delenv("STORYLIB_SCALE", raising=False)
    results = tmp_path_factory.mktemp("regression")
    run = experiment.setup("shots", data="synthetic", scale="smoke", seed=0, results_dir=results, device="cpu")
    return run, experiment.prepare(run)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_smoke_floors_are_the_recorded_ones(smoke_run):
    _, prepared = smoke_run
    if prepared.tokenizer.name.startswith("bert"):
        pytest.skip("recorded with the locally trained tokenizer; this machine has bert-base-uncased cached")
    floors, _ = compute_floors(prepared)
    measured = {(name, metric): floors[name][metric] for name, metric in FLOORS}
    assert measured == pytest.approx(FLOORS, rel=1e-6)


def test_a_smoke_model_gives_the_recorded_metrics(smoke_run):
    run, prepared = smoke_run
    if prepared.tokenizer.name.startswith("bert"):
        pytest.skip("recorded with the locally trained tokenizer; this machine has bert-base-uncased cached")
    model = experiment.build(run, prepared)
    experiment.train(run, prepared, model)
    metrics = experiment.evaluate(run, prepared, model).metrics
    for name, (value, tolerance) in MODEL.items():
        assert metrics[name] == pytest.approx(value, abs=tolerance), name
