"""The story continuation model: :class:`StoryPredictor` and its building blocks."""

from storylib.models.predictor import (
    PredictorOutput,
    StoryPredictor,
    build_model,
    count_parameters,
    kl_divergence,
    text_loss,
)

__all__ = ["PredictorOutput", "StoryPredictor", "build_model", "count_parameters", "kl_divergence", "text_loss"]
