"""The comparison report's API, as notebook 03 and earlier code call it: every name here is
defined in :mod:`storylib.results` (reading a results folder, torch-free) or :mod:`storylib.report`
(statistics, tables, the answer, figures, the report's files); this module only gathers them."""

from __future__ import annotations

from storylib.results.contract import (
    COLLAPSE_FILE,
    CONTRACT_METRICS,
    IMAGE_FLOORS,
    LOWER_IS_BETTER,
    PER_WINDOW_METRICS,
    PLAN_FILE,
    REPORT_INPUTS_FILE,
    SUBSET_FILE,
)
from storylib.results.folder import (
    DEFAULT_SEEDS,
    EXPERIMENT_ORDER,
    FLOOR_ORDER,
    RUN_FACTS,
    UNUSABLE_COLUMNS,
    collect_runs,
    data_and_scale,
    experiment_sort_key,
    finished_experiments,
    is_floor,
    load_floors,
    no_runs_message,
    read_plan,
    report_title,
    results_folder,
    run_folders,
    seed_dirs,
    stale_runs,
    stale_runs_text,
    storylib_version,
    strongest_floor,
    unusable_runs,
    unusable_runs_text,
    write_plan,
)
from storylib.results.windows import (
    ResultsFolder,
    default_windows,
    evenly_spaced,
    frame_to_hwc,
    keep_saved_window_subset,
)
from storylib.report.formatting import (
    DECIMALS,
    format_mean_sd,
    format_single,
)
from storylib.report.stats import (
    PAIRED_COLUMNS,
    PERPLEXITY_DEFINITION,
    TEXT_NLL,
    TEXT_TOKENS,
    VERDICTS,
    WINDOW_MEAN_PERPLEXITY,
    floor_note,
    hierarchical_bootstrap_ci,
    paired_differences,
    per_window_by_seed,
    verdict,
)
from storylib.report.tables import (
    CONFIG_COLUMNS,
    EXPERIMENT_PARTS,
    IMAGE_TABLE,
    TEXT_TABLE,
    describe_runs,
    experiment_table,
    floor_row_label,
    format_paired,
    markdown_table,
    paired_table,
    summary_table,
)
from storylib.report.answer import (
    SHOT_GROUP_WORDS,
    answer,
    answer_text,
)
from storylib.report.figures import (
    CURVE_TERMS,
    FIGURE_DPI,
    MIN_FONT_PT,
    PAGE_WIDTH_INCHES,
    Panel,
    enable_inline_figures,
    mean_history,
    panel_figure,
    plot_loss_curves,
    plot_qualitative_grid,
    short_text,
)
from storylib.report.files import (
    HIDDEN_INPUT_TAGS,
    REFERENCE_FOLDER,
    REPORT_CODE,
    REPORT_FOLDER_FILES,
    REPORT_RUN_FILES,
    is_committed_reference,
    record_report_inputs,
    report_html,
    report_inputs_digest,
    report_is_current,
    write_report_files,
)

__all__ = [
    "COLLAPSE_FILE", "CONFIG_COLUMNS", "CONTRACT_METRICS", "CURVE_TERMS", "DECIMALS", "DEFAULT_SEEDS",
    "EXPERIMENT_ORDER", "EXPERIMENT_PARTS", "FIGURE_DPI", "FLOOR_ORDER", "HIDDEN_INPUT_TAGS",
    "IMAGE_FLOORS", "IMAGE_TABLE", "LOWER_IS_BETTER", "MIN_FONT_PT", "PAGE_WIDTH_INCHES",
    "PAIRED_COLUMNS", "PERPLEXITY_DEFINITION", "PER_WINDOW_METRICS", "PLAN_FILE", "Panel",
    "REFERENCE_FOLDER", "REPORT_CODE", "REPORT_FOLDER_FILES", "REPORT_INPUTS_FILE", "REPORT_RUN_FILES",
    "RUN_FACTS", "ResultsFolder", "SHOT_GROUP_WORDS", "SUBSET_FILE", "TEXT_NLL", "TEXT_TABLE",
    "TEXT_TOKENS", "UNUSABLE_COLUMNS", "VERDICTS", "WINDOW_MEAN_PERPLEXITY", "answer", "answer_text",
    "collect_runs", "data_and_scale", "default_windows", "describe_runs", "enable_inline_figures",
    "evenly_spaced", "experiment_sort_key", "experiment_table", "finished_experiments", "floor_note",
    "floor_row_label", "format_mean_sd", "format_paired", "format_single", "frame_to_hwc",
    "hierarchical_bootstrap_ci", "is_committed_reference", "is_floor", "keep_saved_window_subset",
    "load_floors", "markdown_table", "mean_history", "no_runs_message", "paired_differences",
    "paired_table", "panel_figure", "per_window_by_seed", "plot_loss_curves", "plot_qualitative_grid",
    "read_plan", "record_report_inputs", "report_html", "report_inputs_digest", "report_is_current",
    "report_title", "results_folder", "run_folders", "seed_dirs", "short_text", "stale_runs",
    "stale_runs_text", "storylib_version", "strongest_floor", "summary_table", "unusable_runs",
    "unusable_runs_text", "verdict", "write_plan", "write_report_files",
]
