"""Test-session environment, set before any test or notebook kernel starts.

Tests and notebooks (nbval) never touch the network and run at the ``smoke`` scale; the data
cache lives in a throwaway folder unless ``STORYLIB_CACHE`` is set. Notebook kernels started
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
