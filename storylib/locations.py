"""Where a notebook reads and writes: the scale and the results folder, from its parameters,
the environment (``STORYLIB_SCALE``, ``STORYLIB_RESULTS_DIR``) and, for ``"auto"``, the
machine (a GPU, Colab: :mod:`storylib.colab`); and where the data cache lives
(``STORYLIB_CACHE``).

Its own module, importing neither torch nor the data layer, so that the comparison report
(which needs only these two answers) starts in a fraction of a second: importing
``storylib.experiment`` for them cost notebook 03 up to 16 s on a loaded machine.
"""

from __future__ import annotations

import os
from pathlib import Path


def environment_override(variable: str, parameter: str, value: object) -> str | None:
    """The value of ``variable`` when it is set and differs from ``value``, announced on stdout
    (every time: a notebook whose parameter is overridden says so in its output)."""
    override = os.environ.get(variable)
    if not override or override == str(value):
        return None
    print(f"note: {variable}={override} in the environment overrides the parameter {parameter}={str(value)!r}")
    return override


def resolve_scale(scale: str) -> str:
    """``STORYLIB_SCALE``, when set, overrides ``scale`` (nbval runs the notebooks in smoke mode);
    ``auto`` (the notebooks' default) is ``full`` where a CUDA GPU is there (Colab), else ``cpu``."""
    scale = environment_override("STORYLIB_SCALE", "scale", scale) or scale
    if scale == "auto":
        from storylib.colab import default_scale

        scale = default_scale()
    return scale


def resolve_results_dir(results_dir: str | Path) -> Path:
    """``STORYLIB_RESULTS_DIR``, when set, overrides ``results_dir`` (tests keep the notebooks'
    smoke runs out of the repository's ``results/``); ``auto`` (the notebooks' default) is
    ``/content/results`` in Colab (``../results`` there would be ``/results``, lost on disconnect
    and outside the file browser), else ``../results``, beside ``notebooks/``."""
    chosen = environment_override("STORYLIB_RESULTS_DIR", "results_dir", results_dir) or results_dir
    if str(chosen) == "auto":
        from storylib.colab import default_results_dir

        chosen = default_results_dir()
    return Path(chosen)


def cache_root() -> Path:
    """``$STORYLIB_CACHE`` when set, else ``~/.cache/storylib``."""
    configured = os.environ.get("STORYLIB_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "storylib"
