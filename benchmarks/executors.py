"""The same smoke study through each executor, and Ray's start-up overhead (not a test).

    python benchmarks/executors.py [--only baseline vae] [--jobs 2] [--repeat 3]

Runs ``run_all.py --data synthetic --scale smoke --seeds 1 --only ...`` into fresh temporary
results folders, once with ``--executor local`` and once with ``--executor ray`` (a local Ray
cluster of ``--jobs`` CPUs, started and stopped by run_all.py), and prints each wall time. Then
measures Ray's fixed cost alone, ``--repeat`` times: ``import ray``, ``ray.init`` of a local
cluster, a first task on a fresh worker (what run_all.py does to check where tasks import
storylib from) and ``ray.shutdown``. The data cache (``STORYLIB_CACHE``) is built once first
so that neither executor pays for it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAY_ALONE = """
import time
started = time.perf_counter()
import ray
imported = time.perf_counter()
ray.init(num_cpus={cpus}, include_dashboard=False, log_to_driver=False)
ready = time.perf_counter()
ray.get(ray.remote(lambda: 1).options(num_cpus=0).remote())
tasked = time.perf_counter()
ray.shutdown()
print(imported - started, ready - imported, tasked - ready, time.perf_counter() - tasked)
"""


def run_all(results_dir: Path, only: list[str], jobs: int, *extra: str) -> tuple[float, str]:
    command = [sys.executable, "run_all.py", "--data", "synthetic", "--scale", "smoke", "--seeds", "1",
               "--only", *only, "--jobs", str(jobs), "--results-dir", str(results_dir), *extra]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stdout[-2000:]}{completed.stderr[-3000:]}")
    return seconds, completed.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=["baseline", "vae"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; STORYLIB_CACHE={os.environ.get('STORYLIB_CACHE')}")
    with tempfile.TemporaryDirectory() as scratch:
        run_all(Path(scratch) / "warm-up", args.only[:1], 1)          # data cache built once, for both
        for executor in ("local", "ray"):
            seconds, out = run_all(Path(scratch) / executor, args.only, args.jobs, "--executor", executor)
            lines = [line for line in out.splitlines() if line.startswith(("ray:", "[")) or " notebooks in " in line]
            print(f"\n--executor {executor}: {seconds:.1f} s wall\n  " + "\n  ".join(lines))
    phases = [[float(x) for x in subprocess.run([sys.executable, "-c", RAY_ALONE.format(cpus=args.jobs)], cwd=REPO,
                                                capture_output=True, text=True, check=True).stdout.split()]
              for _ in range(args.repeat)]
    print(f"\nRay alone ({args.repeat} times, median): " + ", ".join(
        f"{name} {statistics.median(p[i] for p in phases):.1f} s"
        for i, name in enumerate(("import ray", "ray.init", "first task", "ray.shutdown"))))


if __name__ == "__main__":
    main()
