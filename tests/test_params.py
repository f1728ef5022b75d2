"""Every params/*.yaml builds at full scale with the BERT vocabulary within its parameter budget."""

import pytest

from storylib.config import available_experiments, load_experiment_config
from storylib.models import build_model, count_parameters

BERT_VOCABULARY = 30_522


@pytest.mark.parametrize("experiment", available_experiments())
def test_parameter_budget_with_the_bert_vocabulary(experiment):
    cfg = load_experiment_config(experiment, "full")
    count = count_parameters(build_model(cfg, BERT_VOCABULARY, (cfg.data.image_height, cfg.data.image_width)))
    if experiment == "baseline":
        assert 1_700_000 <= count <= 2_300_000, count
    else:
        assert count < 30_000_000, f"{experiment}: {count:,} parameters"
