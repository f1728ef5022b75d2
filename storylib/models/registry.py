"""The decoders a model config can name, and where each one lives.

``ModelConfig.image_decoder`` and ``ModelConfig.text_decoder`` are names looked up here. The
table is torch-free (module paths, not classes), so validating a config never imports torch;
:func:`decoder_class` imports the class when a model is built. Every decoder class has a
``from_config`` constructor, so :class:`storylib.models.StoryPredictor` builds any of them the
same way, as nanoGPT builds every block from one config.

A new decoder family is one class with ``from_config``, one line here and one YAML file.
"""

from __future__ import annotations

import importlib

DECODERS: dict[str, dict[str, str]] = {
    "image": {
        "conv": "storylib.models.decoders:ConvImageDecoder",      # from z alone (the published decoder)
        "residual": "storylib.models.decoders:ResidualUNetDecoder",  # frame 4 + a decoded change
        "warp": "storylib.models.warp:WarpImageDecoder",          # retrieve a context frame and warp it
    },
    "text": {
        "lstm": "storylib.models.decoders:LSTMTextDecoder",       # LSTM from z (the published decoder)
        "copy": "storylib.models.decoders:CopyTextDecoder",       # pointer-generator with coverage
    },
}


def decoder_names(kind: str) -> tuple[str, ...]:
    """The registered names of ``kind`` ("image" or "text")."""
    if kind not in DECODERS:
        raise KeyError(f"no decoder kind {kind!r}; kinds: {', '.join(DECODERS)}")
    return tuple(DECODERS[kind])


def decoder_class(kind: str, name: str) -> type:
    """The class registered as ``name`` for ``kind``."""
    if name not in decoder_names(kind):
        raise KeyError(f"unknown {kind} decoder {name!r}; known {kind} decoders: {', '.join(decoder_names(kind))}")
    module_name, class_name = DECODERS[kind][name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
