# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data exploration
#
# What the models see: the stories of the chosen source, how they are cut into windows
# (4 context frames + the target frame and its description), what was skipped and why, and
# the texts the text decoder must produce. With `STORYLIB_SCALE=smoke` this runs on a small
# synthetic set in seconds.

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
# Parameters (papermill overrides them): data source, scale and results folder.

# %% tags=["parameters"]
data = "auto"
scale = "cpu"
results_dir = "../results"

# %%
import storylib.experiment
from storylib import reporting
from storylib.data import exploration, load_stories, prepare_data, resolve_source
from storylib.floors import compute_floors, shot_split_table

# %% [markdown]
# The data settings every experiment of this scale shares (source made concrete; `STORYLIB_SCALE`
# overrides the scale, as in the experiments).

# %%
data_config = storylib.experiment.planned_config("baseline", data, scale).data

# %% [markdown]
# Those settings: source, image size, window mode, tokenizer, split and size limits.

# %%
data_config

# %% [markdown]
# The raw stories (train and test splits of the source).

# %%
stories, source = load_stories(data_config)
stories

# %% [markdown]
# The windows, cached once and shared by all experiments: stories, windows and skipped stories
# per split.

# %%
prepared = prepare_data(data_config)
exploration.split_table(prepared)

# %% [markdown]
# Skipped stories by reason (`gdi_count_mismatch`: the story text does not describe every
# image; `too_few_frames`: fewer than 5; `undecodable_image`; `empty_description`).

# %%
exploration.skip_table(prepared)

# %% [markdown]
# Frames per story in the training split.

# %%
exploration.frames_per_story(stories["train"]).describe()

# %% [markdown]
# Description lengths in words and tokens per split, and the share cut at `max_text_length`.

# %%
exploration.description_length_table(prepared)

# %% [markdown]
# Vocabulary: the tokenizer, how much of it the training texts use, unknown-token rates.

# %%
exploration.vocabulary_stats(prepared)

# %% [markdown]
# Grounded entities (characters, objects, backgrounds, landmarks) mentioned in the stories.

# %%
exploration.entity_counts(stories["train"])

# %% [markdown]
# One story: every frame with its parsed description.

# %%
exploration.plot_story(stories["train"], 0)

# %% [markdown]
# The prediction task on one window: the model sees the 4 context frames and their descriptions
# and must predict the target frame (right) and its description.

# %%
exploration.plot_window(prepared.test, 0)

# %% [markdown]
# Shot structure: the share of windows whose shot cuts at frame 5 (StoryReasoning: about 85 %)
# and how many windows each shot pattern gave, per split.

# %%
exploration.shot_table(prepared)

# %% [markdown]
# One test window per shot pattern, every frame titled with its camera set-up: which view
# returns at frame 5 follows the pattern.

# %%
exploration.plot_shot_strip(prepared.test)

# %% [markdown]
# The floors on the test windows, split by whether the shot continues or cuts at frame 5: copying
# the last frame is strong where the shot continues and weaker than the median image where it
# cuts. The oracle (the context frame closest to the truth) peeks at the target: a reference.

# %%
floors, _ = compute_floors(prepared)
shot_split_table(floors)

# %% [markdown]
# Where the experiments of this data and scale write their results.

# %%
reporting.results_folder(results_dir, data, scale)
