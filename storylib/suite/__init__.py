"""The suite behind ``python run_all.py``: every notebook, headless, through papermill.

Order: ``01_data_exploration`` (it also builds the data cache the experiments share), then
every experiment × seed of ``02_experiment`` (``--jobs`` kernels at a time), then
``03_comparison_report``, converted to ``report.html``. Executed copies go under the results
folder ``<results-dir>/<data label>-<scale>``, never into ``notebooks/``, so runs of different
data or scale never mix and the jupytext pairs stay clean.

A finished run (``test_metrics.json`` with the config hash this call would produce) is reused
unless ``--force``, so an interrupted call continues where it stopped. The report is rebuilt
only when the digest of what it reads changed (``report_inputs.json``), and ``report.html`` is
built and announced only from a notebook 03 that finished in this call. ``run_plan.json``
records the plan and how each unfinished run ended, for the report. A failing notebook does
not stop the others; the failures are listed at the end (notebook, cell, error) and the exit
status is 1.

Faults: the data source and the results folder are checked before any kernel starts (exit 2
with one paragraph); each run folder is locked while a kernel works in it, so a second
``run_all.py`` on the same folder waits and then reuses the run; the shared files of the
results folder (floors, saved test windows) are validated and rebuilt before the report; the
first Ctrl-C stops starting notebooks, interrupts the running kernels and exits 130 with a
summary, a second Ctrl-C kills the kernels at once. SIGTERM (``kill``, a SLURM time limit) is
handled as Ctrl-C: the same summary, the same resume advice, the same exit status 130.

Working folders: every kernel is started with ``notebooks/`` as its own working folder
(:func:`.execute.kernel_resources`) and this process never changes its own, so kernels started side by
side cannot move each other and the relative ``results_dir`` they are given (relative, so that
executed notebooks name no folder of this machine) always resolves to the results folder.

Modules, in import order: :mod:`.interrupt` (Ctrl-C and SIGTERM, the kernels they reach),
:mod:`.execute` (one notebook through papermill; the local executor), :mod:`.plan` (what to
run and what to reuse; the checks before any kernel starts), :mod:`.finish` (shared files,
report, summary) and :mod:`.cli` (the command line). :mod:`.ray_executor` is the other
executor, behind the same ``execute_all(runs, …, reporter, interruption)``.
"""
