"""``python run_all.py --data synthetic --scale smoke --seeds 1`` in a child process, as a user
types it: the end-to-end tests and the Ray executor's tests run the suite this way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE = ["--data", "synthetic", "--scale", "smoke", "--seeds", "1"]


def run_all(results_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "run_all.py", *SMOKE, "--results-dir", str(results_dir), *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500)
