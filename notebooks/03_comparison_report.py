# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Comparison report
#
# Every finished run under one `<results_dir>/<data>-<scale>` folder: metrics as mean ± sd
# over seeds with the trivial floors as rows, each experiment's change against `baseline` and
# against the capacity control `enhanced` (paired bootstrap over test windows), loss curves,
# a qualitative grid and the frame browser. Writes `Results.md` and `results.csv`.

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
# Parameters (papermill overrides them): which results folder to read.

# %% tags=["parameters"]
data = "auto"
scale = "cpu"
results_dir = "../results"

# %%
from storylib import reporting, widgets

# %% [markdown]
# The results folder and what it holds (or a note that nothing has finished yet).

# %%
data_dir = reporting.results_folder(results_dir, data, scale)
reporting.describe_runs(data_dir);

# %% [markdown]
# The experiments: settings, parameter count, training time and stories/s (mean ± sd over seeds).

# %%
reporting.experiment_table(data_dir)

# %% [markdown]
# Test metrics, mean ± sd over seeds, with the floors as rows of the same table: the median
# image, mean image and last context frame (image metrics), a unigram model (perplexity) and
# the last context description (BLEU, chrF, ROUGE-L).

# %%
runs = reporting.collect_runs(data_dir)
reporting.summary_table(runs, reporting.load_floors(data_dir))

# %% [markdown]
# Change against `baseline` (experiment − baseline, per test window averaged over seeds, 95%
# paired percentile bootstrap CI; "no clear difference" when the interval contains 0).

# %%
reporting.paired_differences(data_dir, "baseline")

# %% [markdown]
# Change against `enhanced`, the capacity control: what the components add at equal capacity
# and settings.

# %%
reporting.paired_differences(data_dir, "enhanced")

# %% [markdown]
# Loss curves of all experiments on shared axes (solid train, dashed validation, mean over seeds).

# %%
reporting.plot_loss_curves(data_dir)

# %% [markdown]
# A few fixed test windows: the 4 context frames, the truth and each experiment's prediction,
# with the descriptions and generated texts.

# %%
reporting.plot_qualitative_grid(data_dir, reporting.default_windows(data_dir))

# %% [markdown]
# The frame browser: any saved test window, in window order or by error, for the chosen
# experiments, beside the floors (a static view of the first window when run headless).

# %%
widgets.browse(data_dir)

# %% [markdown]
# Write `Results.md` and `results.csv` next to the runs.

# %%
reporting.write_report_files(data_dir)
