"""The report's files: ``results.csv``, ``Results.md`` and ``report.html``, and the digest of
everything they are built from, so ``run_all.py`` rebuilds them only when an input changed."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Sequence

from storylib.io import atomic_write_json, atomic_write_text
from storylib.report.answer import answer_text
from storylib.report.stats import paired_differences
from storylib.report.tables import experiment_table, markdown_table, provenance_facts, summary_table
from storylib.results.contract import (
    COLLAPSE_FILE,
    CONFIG_FILE,
    EXECUTED_REPORT,
    FLOORS_FILE,
    FLOOR_WINDOWS_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PLAN_FILE,
    PREDICTIONS_FRAMES,
    PREDICTIONS_TABLE,
    REPORT_HTML,
    REPORT_INPUTS_FILE,
    RESULTS_MARKDOWN,
    RESULTS_TABLE,
    SUBSET_FILE,
    TEST_WINDOWS_FRAMES,
    TEST_WINDOWS_TABLE,
)
from storylib.results.folder import (
    collect_runs,
    load_floors,
    no_runs_message,
    report_title,
    run_folders,
    storylib_version,
    unusable_runs_text,
)


# The committed reference results, relative to the checkout (README, docs/architecture.md).
REFERENCE_FOLDER = Path("results") / "synthetic-cpu"


def is_committed_reference(data_dir: Path | str) -> bool:
    """Whether ``data_dir`` is the committed reference folder of the checkout storylib runs from
    (never true for an installed package, which has no checkout)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "pyproject.toml").is_file():
        return False
    return Path(data_dir).resolve() == (checkout / REFERENCE_FOLDER).resolve()


def write_report_files(data_dir: Path | str, update_reference: bool = False,
                       extra_sections: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``results.csv`` (one row per experiment × seed) and ``Results.md`` (the answer, the
    runs it could not use, the tables, then ``extra_sections``: markdown that modules reading
    this one add, such as :func:`storylib.comparisons.markdown_sections`), and say so; a
    results folder that does not exist stays so (nothing written, an empty dict).

    The committed reference (:data:`REFERENCE_FOLDER`) is rewritten only with
    ``update_reference`` (``run_all.py`` sets it): notebook 03 opened by hand in a checkout
    reads it by default, and must not turn a look into a change to commit.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        print(f"Nothing written: there is no results folder {data_dir.name}.")
        return {}
    if is_committed_reference(data_dir) and not update_reference:
        print(f"Nothing written: {REFERENCE_FOLDER.as_posix()} is the committed reference. Set update_reference = "
              "True in the parameters cell to rewrite its Results.md and results.csv (python run_all.py does), "
              "or choose another results_dir.")
        return {}
    runs = collect_runs(data_dir)
    floors = load_floors(data_dir)
    buffer = StringIO()
    runs.to_csv(buffer, index=False)
    paths = {"results_csv": atomic_write_text(data_dir / RESULTS_TABLE, buffer.getvalue())}
    lines = [f"# Results: {data_dir.name}", ""]
    if not runs.empty:
        lines += [answer_text(data_dir).replace("### The answer", "## The answer"), ""]
    unusable = unusable_runs_text(data_dir)
    if unusable:
        lines += [unusable, ""]
    if runs.empty:
        lines += [no_runs_message(data_dir), ""]
    else:
        facts = provenance_facts(floors, runs)
        if facts:
            lines += ["; ".join(facts), ""]
        lines += ["## Experiments (settings; training time and stories/s as mean ± sd over seeds)", "",
                  markdown_table(experiment_table(data_dir)), "",
                  "## Test metrics (mean ± sd over seeds; floors as rows)", "",
                  markdown_table(summary_table(runs, floors)), ""]
        for reference in ("baseline", "enhanced"):
            differences = paired_differences(data_dir, reference)
            if differences.empty:
                continue
            lines += [f"## Change against `{reference}` (experiment − {reference}; hierarchical bootstrap "
                      "95% CI, resampling seeds and, within them, the paired test windows; `floor_note`: both "
                      "are worse than the strongest floor of the metric, so a \"better\" there is not learning)", "",
                      markdown_table(differences.drop(columns="reference"), index=False), ""]
        lines += list(extra_sections)
    paths["results_md"] = atomic_write_text(data_dir / RESULTS_MARKDOWN, "\n".join(lines))
    print(f"Wrote {', '.join(path.name for path in paths.values())} in {data_dir.name}.")
    return paths


# Beside report.html: the digest of everything the report read when it was last built.
# Files of the folder and of every run folder that notebook 03 reads.
# Beside the runs, when benchmarks/collapse.py wrote it: the published decoder under one-factor changes.
REPORT_FOLDER_FILES = (FLOORS_FILE, FLOOR_WINDOWS_FILE, TEST_WINDOWS_TABLE, TEST_WINDOWS_FRAMES, SUBSET_FILE, PLAN_FILE,
                       COLLAPSE_FILE)


REPORT_RUN_FILES = (METRICS_FILE, CONFIG_FILE, HISTORY_FILE, PREDICTIONS_TABLE, PREDICTIONS_FRAMES)
# The package code that decides what the report shows (paths inside storylib/).
REPORT_CODE = ("reporting.py", "comparisons.py", "widgets.py", "runs.py", "config.py", "report/*.py", "results/*.py")


def report_inputs_digest(data_dir: Path | str, notebook: Path | str, parameters: dict) -> str:
    """sha256 over everything notebook 03 reads: the folder's shared files (floors, saved test
    windows, :data:`PLAN_FILE`), each run folder's record, predictions and curves, which runs are
    current (:func:`run_folders`: that covers ``params/`` and the code version), the notebook,
    its parameters and the report's code. ``run_all.py`` rebuilds the report only when this
    changes, so a rerun that reuses every run starts no kernel for it.

    Content, not mtimes: a file rewritten with the same bytes (a reused run, a rebuilt floors
    file with the same values) keeps the report. A few hundred MB of predictions hash in about a
    second.
    """
    import hashlib

    data_dir = Path(data_dir)
    digest = hashlib.sha256()

    def add_file(path: Path) -> None:
        digest.update(str(path.relative_to(data_dir) if path.is_relative_to(data_dir) else path.name).encode())
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            digest.update(b"<absent>")

    for name in REPORT_FOLDER_FILES:
        add_file(data_dir / name)
    for path in sorted(data_dir.glob("*/seed*")):
        if path.is_dir():
            for name in REPORT_RUN_FILES:
                add_file(path / name)
    digest.update(json.dumps([(name, folder.relative_to(data_dir).as_posix(), why)
                              for name, folder, why in run_folders(data_dir)]).encode())
    add_file(Path(notebook))
    package = Path(__file__).resolve().parents[1]
    for pattern in REPORT_CODE:
        for path in sorted(package.glob(pattern)):
            add_file(path)
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(storylib_version().encode())
    return digest.hexdigest()


def report_is_current(data_dir: Path | str, digest: str) -> bool:
    """Whether report.html and comparison_report.ipynb were built from inputs with ``digest``."""
    data_dir = Path(data_dir)
    try:
        recorded = json.loads((data_dir / REPORT_INPUTS_FILE).read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError, AttributeError):
        return False
    return (recorded == digest and (data_dir / REPORT_HTML).is_file()
            and (data_dir / EXECUTED_REPORT).is_file())


def record_report_inputs(data_dir: Path | str, digest: str) -> Path:
    """Write :data:`REPORT_INPUTS_FILE` after report.html was built from a notebook 03 that finished."""
    return atomic_write_json(Path(data_dir) / REPORT_INPUTS_FILE, {
        "digest": digest, "what": "sha256 of every file notebook 03 read to build report.html "
        "(storylib.reporting.report_inputs_digest); run_all.py rebuilds the report when it changes"})


# Cells whose code report.html leaves out (their outputs stay): the install cell, the default
# parameters and papermill's injected ones (two parameter cells that disagree, and the results
# folder as this machine's path).
HIDDEN_INPUT_TAGS = frozenset({"remove_input", "parameters", "injected-parameters"})


def report_html(notebook: Path | str, data_dir: Path | str) -> str:
    """The executed comparison notebook as a standalone HTML page titled by its data and scale.

    The widget state is dropped: a page has no kernel, so nbconvert then shows the static PNG
    that every widget display of this package carries beside the widget view. The code of the
    cells tagged :data:`HIDDEN_INPUT_TAGS` is left out (nbconvert's ``TagRemovePreprocessor``),
    and so is papermill's record of the parameters: a reader sees the report, not the machine.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    executed = nbformat.read(str(notebook), as_version=4)
    executed.metadata.pop("widgets", None)
    executed.metadata.pop("papermill", None)
    executed.metadata["title"] = report_title(data_dir)
    exporter = HTMLExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags=set(HIDDEN_INPUT_TAGS)), enabled=True)
    body, _ = exporter.from_notebook_node(executed)
    return body
