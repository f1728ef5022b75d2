"""The story continuation model: :class:`StoryPredictor` and its building blocks.

The names below are imported on first use (PEP 562), so that ``storylib.models.registry``,
which config validation reads, imports without torch.
"""

from __future__ import annotations

import importlib

__all__ = ["PredictorOutput", "StoryPredictor", "build_model", "count_parameters", "kl_divergence", "text_loss"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("storylib.models.predictor"), name)
    raise AttributeError(f"module 'storylib.models' has no attribute {name!r}")
