"""Test-session environment, set before any test or notebook kernel starts.

Tests and notebooks (nbval) never touch the network and run at the ``smoke`` scale; the data
cache and the notebooks' results live in throwaway folders unless ``STORYLIB_CACHE`` /
``STORYLIB_RESULTS_DIR`` are set. Notebook kernels started
by nbval inherit this environment (nbval takes no parameters, the environment does).
"""

import os
import tempfile

for offline_switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[offline_switch] = "1"
os.environ.setdefault("STORYLIB_SCALE", "smoke")
os.environ.setdefault("STORYLIB_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("STORYLIB_CACHE", tempfile.mkdtemp(prefix="storylib-test-cache-"))
os.environ.setdefault("STORYLIB_RESULTS_DIR", tempfile.mkdtemp(prefix="storylib-test-results-"))
