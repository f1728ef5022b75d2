# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · One experiment, one seed
#
# Trains one model of the study (`params/<experiment>.yaml` at the chosen scale), scores it on
# the test windows beside the trivial floors and records the results under
# `<results_dir>/<data>-<scale>/<experiment>/seed<k>/`. `python run_all.py` runs this notebook
# once per experiment and seed; set `STORYLIB_SCALE=smoke` for a run of seconds.

# %% [markdown]
# Works locally, under `python run_all.py` and on Colab: the first cell installs `storylib` only
# when it cannot be imported (from the checkout this notebook sits in, else from the repository).

# %%
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("storylib") is None:
    here = Path.cwd().resolve()
    checkouts = [folder for folder in (here, *here.parents) if (folder / "pyproject.toml").is_file()
                 and 'name = "storylib"' in (folder / "pyproject.toml").read_text(errors="ignore")]
    target = str(checkouts[0]) if checkouts else "git+https://github.com/storylib/storylib"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", target])
    importlib.invalidate_caches()

# %% [markdown]
# Parameters (papermill overrides them): the experiment, data source, scale, seed, results
# folder and device.

# %% tags=["parameters"]
experiment = "baseline"
data = "auto"
scale = "cpu"
seed = 0
results_dir = "../results"
device = "auto"

# %%
import storylib.experiment

# %% [markdown]
# The resolved configuration (data source made concrete, scale overlay, seed) and the run folder;
# its hash decides whether a finished run is reused.

# %%
run = storylib.experiment.setup(experiment=experiment, data=data, scale=scale, seed=seed,
                                results_dir=results_dir, device=device)
run.config_hash, run.run_dir

# %% [markdown]
# The cached windows (4 context frames + target) and the floors on the test windows.

# %%
prepared = storylib.experiment.prepare(run)

# %% [markdown]
# The model and its parameter count.

# %%
model = storylib.experiment.build(run, prepared)

# %% [markdown]
# Training (resumes from the last checkpoint); the loss curves, train and validation per term.

# %%
history = storylib.experiment.train(run, prepared, model)

# %% [markdown]
# Test metrics of the best checkpoint beside the floors: a model no better than the median
# image has learnt nothing about the story's next frame.

# %%
result = storylib.experiment.evaluate(run, prepared, model)

# %% [markdown]
# Predictions of the last epoch on a few validation windows.

# %%
storylib.experiment.show_visualization(run)

# %% [markdown]
# Record the metrics and predictions (written last: their presence marks the run as finished).

# %%
storylib.experiment.record(run, result)
